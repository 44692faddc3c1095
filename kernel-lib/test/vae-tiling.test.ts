// VAE tiling (diffusers' AutoencoderKL.tiled_encode / tiled_decode with blend_v / blend_h).
//
// What "close to the one-pass decode" means, measured here:
// - The tiling itself (tile positions, cross-fades, crops, joins) is exact: a decoder without spatial context
//   gives the one-pass result to float rounding.
// - A purely convolutional decoder gives the one-pass result exactly wherever no tile border is within its
//   receptive field of the kept pixels; the only differences are in the cross-faded band after each seam
//   (tiles see zero padding where the one-pass decode sees the neighbour).
// - sd-tiny's VAE (random weights) also normalises: every GroupNorm takes its mean and variance over the whole map,
//   and a tile only over itself. With 64-pixel tiles on a 128-pixel picture tiled and one-pass outputs correlate only
//   ~0.3-0.6 (mean |difference| ~0.8 of the output's std); 96-pixel tiles give ~0.55-0.8. A trained VAE with SD's
//   512-pixel tiles sees much more similar statistics per tile; diffusers' own test allows max |difference| < 0.5
//   on [0, 1] pictures. So the tests below check the tiling exactly, the receptive-field effect on a local decoder,
//   and on the real VAE: the trend with tile size, no seams, shapes, memory and errors.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { AutoencoderKL } from "../src/models/autoencoder-kl.js";
import { blendH, blendV, tiledDecode, tiledEncode, type TileableVae } from "../src/models/vae-tiling.js";
import { measureMemory } from "../src/memory/memory-report.js";
import { Generator } from "../src/random/generator.js";
import { fixture, compare } from "./helpers.js";

let vae: AutoencoderKL;
beforeAll(async () => {
  vae = await AutoencoderKL.fromPretrained(fixture("sd-tiny-pipe"), { subfolder: "vae" });
});
afterAll(() => vae.dispose());

/** A latent that varies slowly: a sine / cosine field of `amp` per channel. */
function smoothLatent(n: number, amp = 1): tf.Tensor4D {
  const d = new Float32Array(n * n * 4);
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) for (let k = 0; k < 4; k++) {
    d[(y * n + x) * 4 + k] = amp * Math.sin(2 * Math.PI * (y / n) + k) * Math.cos(Math.PI * (x / n) + 0.7 * k);
  }
  return tf.tensor4d(d, [1, n, n, 4]);
}

function correlation(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => {
    const ma = tf.moments(a), mb = tf.moments(b);
    const cov = tf.mean(tf.mul(tf.sub(a, ma.mean), tf.sub(b, mb.mean)));
    return cov.div(tf.sqrt(tf.mul(ma.variance, mb.variance))).dataSync()[0];
  });
}

/** Mean |x[r+1] - x[r]| across each boundary r|r+1 of rows (axis 1) or columns (axis 2). */
function boundaryGradient(t: tf.Tensor4D, axis: 1 | 2): number[] {
  return tf.tidy(() => {
    const n = t.shape[axis];
    const size = [-1, -1, -1, -1];
    size[axis] = n - 1;
    const from1 = [0, 0, 0, 0];
    from1[axis] = 1;
    const g = tf.abs(tf.sub(tf.slice(t, from1, size), tf.slice(t, [0, 0, 0, 0], size)));
    return Array.from(tf.mean(g, axis === 1 ? [0, 2, 3] : [0, 1, 3]).dataSync());
  });
}

/** A TileableVae over a plain decode function (x8 nearest upsampling first, as the VAE's 3 doublings). */
function fakeVae(decode: (z: tf.Tensor4D) => tf.Tensor4D): TileableVae & { full(z: tf.Tensor4D): tf.Tensor4D } {
  const up = (z: tf.Tensor4D) => tf.tidy(() => decode(tf.image.resizeNearestNeighbor(z, [z.shape[1] * 8, z.shape[2] * 8])));
  return {
    tileSampleMinSize: 64, tileLatentMinSize: 8, tileOverlapFactor: 0.25,
    _decode: up,
    _encode: (x) => tf.tidy(() => tf.avgPool(x, 8, 8, "valid")),
    full: up,
  };
}

describe("blend_v / blend_h", () => {
  it("cross-fade the first rows / columns of b from the last of a with weights y / extent, as diffusers' loops", () => {
    // vertical neighbours share their columns, horizontal ones their rows
    const b = tf.randomNormal([1, 6, 7, 2], 0, 1, "float32", 2) as tf.Tensor4D;
    const above = tf.randomNormal([1, 5, 7, 2], 0, 1, "float32", 1) as tf.Tensor4D;
    const left = tf.randomNormal([1, 6, 4, 2], 0, 1, "float32", 3) as tf.Tensor4D;
    const check = (a: tf.Tensor4D, out: tf.Tensor4D, axis: 1 | 2, extent: number) => {
      const A = a.arraySync(), B = b.arraySync(), O = out.arraySync();
      expect(out.shape).toEqual(b.shape);
      const e = Math.min(a.shape[axis], b.shape[axis], extent);
      for (let y = 0; y < b.shape[1]; y++) for (let x = 0; x < b.shape[2]; x++) for (let c = 0; c < 2; c++) {
        const k = axis === 1 ? y : x;
        let want = B[0][y][x][c];
        if (k < e) {
          const av = axis === 1 ? A[0][a.shape[1] - e + y][x][c] : A[0][y][a.shape[2] - e + x][c];
          want = Math.fround(Math.fround(av * Math.fround(1 - k / e)) + Math.fround(B[0][y][x][c] * Math.fround(k / e)));
        }
        expect(O[0][y][x][c]).toBe(want);
      }
    };
    const v = blendV(above, b, 3), h = blendH(left, b, 3), vAll = blendV(above, b, 99), none = blendH(left, b, 0);
    check(above, v, 1, 3);
    check(left, h, 2, 3);
    check(above, vAll, 1, 99); // the extent is capped by the shorter tile (5 rows)
    check(left, none, 2, 0);
    tf.dispose([above, left, b, v, h, vAll, none]);
  });
});

describe("tiled decode / encode geometry", () => {
  it("is exact for a decoder without spatial context (positions, cross-fades, crops and joins)", () => {
    const w = tf.randomNormal([1, 1, 4, 3], 0, 1, "float32", 3) as tf.Tensor4D;
    const f = fakeVae((x) => tf.tanh(tf.conv2d(x, w, 1, "same")));
    for (const [h, wd] of [[16, 16], [24, 16], [13, 21], [9, 8]]) {
      const z = tf.randomNormal([2, h, wd, 4], 0, 1, "float32", h * 100 + wd) as tf.Tensor4D;
      const one = f.full(z), tiled = tiledDecode(f, z);
      expect(tiled.shape).toEqual(one.shape);
      expect(compare(tiled, one, 0).maxAbs).toBeLessThanOrEqual(1e-6);
      tf.dispose([z, one, tiled]);
    }
    const img = tf.randomUniform([1, 128, 160, 3], -1, 1, "float32", 4) as tf.Tensor4D;
    const oneEnc = f._encode(img), tiledEnc = tiledEncode(f, img);
    expect(tiledEnc.shape).toEqual([1, 16, 20, 3]);
    expect(compare(tiledEnc, oneEnc, 0).maxAbs).toBeLessThanOrEqual(1e-6);
    tf.dispose([w, img, oneEnc, tiledEnc]);
  });

  it("differs from a convolutional decoder's one-pass output only in the cross-faded band after each seam", () => {
    // receptive field: one 3x3 conv on latents (8 px) + two 3x3 convs on pixels (2 px): 10 px < the 16-px cross-fade
    const k1 = tf.randomNormal([3, 3, 4, 8], 0, 0.3, "float32", 5) as tf.Tensor4D;
    const k2 = tf.randomNormal([3, 3, 8, 8], 0, 0.3, "float32", 6) as tf.Tensor4D;
    const k3 = tf.randomNormal([3, 3, 8, 3], 0, 0.3, "float32", 7) as tf.Tensor4D;
    const f: TileableVae = {
      tileSampleMinSize: 64, tileLatentMinSize: 8, tileOverlapFactor: 0.25,
      _encode: (x) => x,
      _decode: (z) => tf.tidy(() => {
        const h = tf.tanh(tf.conv2d(z, k1, 1, "same"));
        const u = tf.image.resizeNearestNeighbor(h, [z.shape[1] * 8, z.shape[2] * 8]);
        return tf.conv2d(tf.tanh(tf.conv2d(u, k2, 1, "same")), k3, 1, "same");
      }),
    };
    const z = smoothLatent(16, 2);
    const one = f._decode(z), tiled = tiledDecode(f, z);
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(tiled, one)), 3).squeeze([0]).arraySync() as number[][]);
    // kept rows/columns 48k .. 48k+15 (k >= 1) are cross-faded; everything else comes from one tile's interior
    const inBand = (r: number) => r >= 48 && r % 48 < 16;
    let outside = 0, inside = 0;
    d.forEach((row, r) => row.forEach((v, c) => {
      if (inBand(r) || inBand(c)) inside = Math.max(inside, v);
      else outside = Math.max(outside, v);
    }));
    expect(outside).toBeLessThanOrEqual(1e-5);
    expect(inside).toBeGreaterThan(1e-3); // the receptive field does reach past the tile edges there
    tf.dispose([k1, k2, k3, z, one, tiled]);
  });

  it("cross-fades away the seams that plain tiles (no overlap) leave", () => {
    const k = tf.randomNormal([3, 3, 4, 3], 0, 0.5, "float32", 8) as tf.Tensor4D;
    const f = fakeVae((x) => tf.conv2d(x, k, 1, "same"));
    f._decode = (z) => tf.tidy(() => tf.image.resizeBilinear(tf.conv2d(z, k, 1, "same"), [z.shape[1] * 8, z.shape[2] * 8], true));
    const z = smoothLatent(16, 2);
    const seamJump = (t: tf.Tensor4D, seams: number[]) => {
      const g = boundaryGradient(t, 1);
      const at = Math.max(...seams.map((s) => g[s - 1]));
      const elsewhere = Math.max(...g.filter((_, r) => !seams.includes(r + 1)));
      return at / elsewhere;
    };
    const blended = tiledDecode(f, z);
    f.tileOverlapFactor = 0; // tiles side by side, nothing to cross-fade
    const plain = tiledDecode(f, z);
    expect(seamJump(plain, [64])).toBeGreaterThan(2); // a visible edge where two tiles meet
    expect(seamJump(blended, [48, 64, 96, 112])).toBeLessThanOrEqual(1); // blended: no larger than elsewhere
    tf.dispose([k, z, blended, plain]);
  });
});

describe("AutoencoderKL.enableTiling on sd-tiny's VAE", () => {
  it("decodes a smooth latent close to the one-pass decode, closer with larger tiles (see the top of this file)", () => {
    const z = smoothLatent(16);
    const one = vae.decode(z).sample;
    const corr: number[] = [];
    try {
      vae.enableTiling();
      for (const latentTile of [8, 12]) {
        vae.tileLatentMinSize = latentTile;
        vae.tileSampleMinSize = 8 * latentTile;
        const tiled = vae.decode(z).sample;
        expect(tiled.shape).toEqual(one.shape);
        expect(Number.isFinite(tf.tidy(() => tf.sum(tiled).dataSync()[0]))).toBe(true);
        corr.push(correlation(tiled, one));
        const meanDiff = tf.tidy(() => tf.mean(tf.abs(tf.sub(tiled, one))).dataSync()[0]);
        const std = tf.tidy(() => tf.sqrt(tf.moments(one).variance).dataSync()[0]);
        expect(meanDiff).toBeLessThan(std); // measured: 0.82 std (8-latent tiles), 0.64 std (12)
        tiled.dispose();
      }
    } finally {
      vae.disableTiling();
      vae.tileLatentMinSize = 8;
      vae.tileSampleMinSize = 64;
    }
    expect(corr[0]).toBeGreaterThan(0.2); // measured 0.32
    expect(corr[1]).toBeGreaterThan(corr[0]); // measured 0.55
    tf.dispose([z, one]);
  });

  it("shows no seam: the gradient across the seam lines is no larger than elsewhere", () => {
    const z = tf.transpose(new Generator().manualSeed(11).randn([1, 4, 16, 16]), [0, 2, 3, 1]) as tf.Tensor4D;
    vae.enableTiling();
    const out = vae.decode(z).sample;
    vae.disableTiling();
    for (const axis of [1, 2] as const) {
      const g = boundaryGradient(out, axis);
      // seams: where kept tiles meet (48, 96) and where the cross-fades end (64, 112)
      const seams = [48, 64, 96, 112];
      const at = Math.max(...seams.map((s) => g[s - 1]));
      const elsewhere = Math.max(...g.filter((_, r) => !seams.includes(r + 1)));
      expect(at).toBeLessThanOrEqual(elsewhere);
    }
    tf.dispose([z, out]);
  });

  it("is used only above the tile size, decodes diffusers' odd shapes, encodes by tiles, leaves only its outputs", () => {
    const small = smoothLatent(8);
    const one = vae.decode(small).sample;
    vae.enableTiling();
    try {
      const same = vae.decode(small).sample; // 8 latents = one tile: the one-pass decode
      expect(compare(same, one, 0).maxAbs).toBe(0);
      tf.dispose(same);
      const before = tf.memory().numTensors;
      for (const [h, w] of [[9, 12], [12, 9], [7, 13]]) { // diffusers' test shapes (73x97, 49x65, ...) scaled to 8-latent tiles
        const zeros = tf.zeros([1, h, w, 4]) as tf.Tensor4D;
        const out = vae.decode(zeros).sample;
        expect(out.shape).toEqual([1, 8 * h, 8 * w, 3]);
        tf.dispose([zeros, out]);
      }
      const img = tf.tidy(() => tf.tanh(tf.randomNormal([1, 128, 128, 3], 0, 1, "float32", 12))) as tf.Tensor4D;
      const dist = vae.encode(img).latentDist;
      expect(dist.mean.shape).toEqual([1, 16, 16, 4]);
      expect(tf.memory().numTensors).toBe(before + 1 + 4); // img and the posterior's 4 tensors
      dist.dispose();
      img.dispose();
    } finally {
      vae.disableTiling();
    }
    tf.dispose([small, one]);
  });

  it("lowers the decode peak, and combines with slicing (batch item, then tiles)", async () => {
    const z = tf.concat([smoothLatent(24), smoothLatent(24, 2)]) as tf.Tensor4D;
    const one = await measureMemory(() => vae.decode(z).sample);
    vae.enableTiling();
    const tiled = await measureMemory(() => vae.decode(z).sample);
    vae.enableSlicing();
    const both = await measureMemory(() => vae.decode(z).sample);
    const perItem = [0, 1].map((i) => {
      const zi = tf.slice(z, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D;
      const o = vae.decode(zi).sample;
      zi.dispose();
      return o;
    });
    vae.disableSlicing();
    vae.disableTiling();
    expect(tiled.peakBytes).toBeLessThan(one.peakBytes);
    expect(both.peakBytes).toBeLessThan(tiled.peakBytes);
    const joined = tf.concat(perItem);
    expect(compare(both.result, joined, 0).maxAbs).toBeLessThanOrEqual(1e-6);
    tf.dispose([z, one.result, tiled.result, both.result, joined, ...perItem]);
  });

  it("rejects tile settings whose tiles cannot join up, and intermediates while tiling", () => {
    const z = smoothLatent(16);
    vae.enableTiling();
    try {
      vae.tileOverlapFactor = 1;
      expect(() => vae.decode(z)).toThrow(/tileOverlapFactor 1 must be in \[0, 1\)/);
      vae.tileOverlapFactor = 0.25;
      vae.tileLatentMinSize = 14;
      vae.tileSampleMinSize = 112;
      expect(() => vae.decode(z)).toThrow(/do not join up/);
      vae.tileLatentMinSize = 8;
      vae.tileSampleMinSize = 64;
      expect(() => vae.decode(z, { intermediates: {} })).toThrow(/disableTiling/);
    } finally {
      vae.disableTiling();
      vae.tileOverlapFactor = 0.25;
      vae.tileLatentMinSize = 8;
      vae.tileSampleMinSize = 64;
    }
    expect(vae.tileLatentMinSize).toBe(8); // diffusers: sample_size 64 / 2^3
    z.dispose();
  });
});
