// VAE tiling (diffusers AutoencoderKL.tiled_encode / tiled_decode, v0.27.2). The picture (or latent) is cut into
// overlapping square tiles, each tile goes through the encoder / decoder alone, and neighbouring tiles are
// cross-faded over their overlap (blend_v / blend_h: linear weights y / extent) before they are cropped and joined.
// Memory then depends on the tile size, not the picture size; the price is that each tile only sees itself
// (the mid-block attention and the convolutions' receptive field stop at the tile's edge), so the result is
// close to, not equal to, the one-pass decode, and the cross-fade hides the seams.
//
// Sizes as diffusers (latent and picture sides differ by the VAE's 2^n):
//   decode: tiles of tile_latent_min_size latents every floor(tile_latent_min_size * (1 - overlap)) latents,
//           blended over floor(tile_sample_min_size * overlap) pixels, each cropped to tile_sample_min_size - blend;
//   encode: the same with the picture and latent sides swapped.
// Tensors are NHWC: rows are axis 1, columns axis 2.
// Model code, as in diffusers (methods of AutoencoderKL); the memory layer only switches it (vae.enableTiling()).
import * as tf from "@tensorflow/tfjs";

/** What tiling needs from the VAE (AutoencoderKL): its tile settings and its per-tile encode / decode. */
export interface TileableVae {
  tileSampleMinSize: number;
  tileLatentMinSize: number;
  tileOverlapFactor: number;
  /** quant_conv(encoder(x)): moments of a tile */
  _encode(x: tf.Tensor4D): tf.Tensor4D;
  /** decoder(post_quant_conv(z)): pixels of a tile */
  _decode(z: tf.Tensor4D): tf.Tensor4D;
}

/** Per-row (axis 1) or per-column (axis 2) weights f(0..extent-1) of a rank-4 tensor, float32 as torch casts the scalars. */
function weights(extent: number, axis: 1 | 2, f: (i: number) => number): tf.Tensor4D {
  return tf.tensor4d(Float32Array.from({ length: extent }, (_, i) => f(i)), axis === 1 ? [1, extent, 1, 1] : [1, 1, extent, 1]);
}

function blend(a: tf.Tensor4D, b: tf.Tensor4D, blendExtent: number, axis: 1 | 2): tf.Tensor4D {
  const extent = Math.min(a.shape[axis], b.shape[axis], blendExtent);
  if (extent <= 0) return b.clone();
  return tf.tidy(() => {
    const begin = [0, 0, 0, 0];
    begin[axis] = a.shape[axis] - extent;
    const size: number[] = [...a.shape];
    size[axis] = extent;
    const aEnd = tf.slice(a, begin, size);
    const bHead = tf.slice(b, [0, 0, 0, 0], axis === 1 ? [-1, extent, -1, -1] : [-1, -1, extent, -1]);
    // b[y] = a[-extent + y] * (1 - y / extent) + b[y] * (y / extent)
    const mixed = tf.add(tf.mul(aEnd, weights(extent, axis, (y) => 1 - y / extent)), tf.mul(bHead, weights(extent, axis, (y) => y / extent)));
    if (extent === b.shape[axis]) return mixed as tf.Tensor4D;
    const rest = tf.slice(b, axis === 1 ? [0, extent, 0, 0] : [0, 0, extent, 0], [-1, -1, -1, -1]);
    return tf.concat([mixed, rest], axis) as tf.Tensor4D;
  });
}

/** diffusers' blend_v: the first rows of `b` fade in from the last rows of `a` (the tile above). Returns a new b. */
export function blendV(a: tf.Tensor4D, b: tf.Tensor4D, blendExtent: number): tf.Tensor4D {
  return blend(a, b, blendExtent, 1);
}

/** diffusers' blend_h: the first columns of `b` fade in from the last columns of `a` (the tile on the left). */
export function blendH(a: tf.Tensor4D, b: tf.Tensor4D, blendExtent: number): tf.Tensor4D {
  return blend(a, b, blendExtent, 2);
}

/**
 * The step between tiles (input side) and the blend extent (output side), checked: the factor must be in [0, 1),
 * and each tile's kept part (outTile - blend) must cover exactly one step, or the joined picture has the wrong size
 * (diffusers joins such tiles anyway: tile_latent_min_size 14 gives a 132-pixel picture for 16 latents).
 */
function tileGeometry(inTile: number, outTile: number, factor: number, what: string): { step: number; blendExtent: number } {
  const step = Math.floor(inTile * (1 - factor));
  const blendExtent = Math.floor(outTile * factor);
  const hint = "use tile sizes divisible by 4 with tileOverlapFactor 0.25 (SD: tileSampleMinSize 512 / tileLatentMinSize 64, or 256 / 32)";
  if (!(factor >= 0 && factor < 1) || step < 1) {
    throw new Error(`VAE tiling: tileOverlapFactor ${factor} must be in [0, 1) and leave a step of at least 1 (${what} tiles of ${inTile}); ${hint}`);
  }
  if ((outTile - blendExtent) * inTile !== step * outTile) {
    throw new Error(`VAE tiling: ${what} tiles of ${inTile} every ${step} give outputs of ${outTile} cropped to ${outTile - blendExtent}, which do not join up (tileSampleMinSize ${what === "latent" ? outTile : inTile}, tileLatentMinSize ${what === "latent" ? inTile : outTile}, tileOverlapFactor ${factor}); ${hint}`);
  }
  return { step, blendExtent };
}

/**
 * Runs `run` on overlapping tiles of x (side `inTile` every `step`), then blends (extent `blendExtent`) and crops to
 * `outTile - blendExtent` per tile, joining rows then columns. All tile outputs are kept until blended, as diffusers.
 */
function tiled(x: tf.Tensor4D, inTile: number, step: number, outTile: number, blendExtent: number, run: (t: tf.Tensor4D) => tf.Tensor4D): tf.Tensor4D {
  const [, H, W] = x.shape;
  const rowLimit = outTile - blendExtent;
  const rows: tf.Tensor4D[][] = [];
  try {
    for (let i = 0; i < H; i += step) {
      const row: tf.Tensor4D[] = [];
      rows.push(row);
      for (let j = 0; j < W; j += step) {
        const tile = tf.slice(x, [0, i, j, 0], [-1, Math.min(inTile, H - i), Math.min(inTile, W - j), -1]);
        row.push(run(tile));
        tile.dispose();
      }
    }
    const resultRows: tf.Tensor4D[] = [];
    for (let i = 0; i < rows.length; i++) {
      const cropped: tf.Tensor4D[] = [];
      for (let j = 0; j < rows[i].length; j++) {
        // in place as diffusers: the blended tile replaces the original and is what its neighbours blend with
        if (i > 0) rows[i][j] = swap(rows[i][j], blendV(rows[i - 1][j], rows[i][j], blendExtent));
        if (j > 0) rows[i][j] = swap(rows[i][j], blendH(rows[i][j - 1], rows[i][j], blendExtent));
        const t = rows[i][j];
        cropped.push(tf.slice(t, [0, 0, 0, 0], [-1, Math.min(rowLimit, t.shape[1]), Math.min(rowLimit, t.shape[2]), -1]));
      }
      resultRows.push(tf.concat(cropped, 2));
      tf.dispose(cropped);
    }
    const out = tf.concat(resultRows, 1);
    tf.dispose(resultRows);
    return out;
  } finally {
    tf.dispose(rows.flat());
  }
}

function swap(old: tf.Tensor4D, next: tf.Tensor4D): tf.Tensor4D {
  old.dispose();
  return next;
}

/** diffusers' tiled_encode: the moments [B, h, w, 2C] of a picture x [B, H, W, C] encoded tile by tile. */
export function tiledEncode(vae: TileableVae, x: tf.Tensor4D): tf.Tensor4D {
  const { step, blendExtent } = tileGeometry(vae.tileSampleMinSize, vae.tileLatentMinSize, vae.tileOverlapFactor, "sample");
  return tiled(x, vae.tileSampleMinSize, step, vae.tileLatentMinSize, blendExtent, (t) => vae._encode(t));
}

/** diffusers' tiled_decode: pixels [B, H, W, 3] of latents z [B, h, w, C] decoded tile by tile. */
export function tiledDecode(vae: TileableVae, z: tf.Tensor4D): tf.Tensor4D {
  const { step, blendExtent } = tileGeometry(vae.tileLatentMinSize, vae.tileSampleMinSize, vae.tileOverlapFactor, "latent");
  return tiled(z, vae.tileLatentMinSize, step, vae.tileSampleMinSize, blendExtent, (t) => vae._decode(t));
}
