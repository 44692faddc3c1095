// What the procedural datasets share: a seeded random stream per (seed, picture index), a point-in-triangle
// test, a supersampled rasteriser and a PNG grid writer for the generators' command lines.
//
// License: the kit's.

/** mulberry32: a small, fast 32-bit PRNG; uniform in [0, 1). */
export function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One independent stream per (seed, index): the two are hashed together (splitmix-style). */
export function streamFor(seed, index) {
  let h = (Math.imul(seed | 0, 0x9e3779b1) ^ Math.imul(index | 0, 0x85ebca6b)) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0;
  h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0;
  return mulberry32(h ^ (h >>> 16));
}

/** Is (px, py) inside triangle abc? (the three edge functions agree in sign) */
export function inTriangle(px, py, a, b, c) {
  const d1 = (px - b[0]) * (a[1] - b[1]) - (a[0] - b[0]) * (py - b[1]);
  const d2 = (px - c[0]) * (b[1] - c[1]) - (b[0] - c[0]) * (py - c[1]);
  const d3 = (px - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (py - a[1]);
  return !((d1 < 0 || d2 < 0 || d3 < 0) && (d1 > 0 || d2 > 0 || d3 > 0));
}

/**
 * Renders `shade(x, y) -> [r, g, b]` (x right, y down, both in [0, 1]) into `out` (NHWC, [0, 1]) at `offset`,
 * averaging `supersample` x `supersample` sub-pixels per pixel (anti-aliased edges).
 */
export function rasterize(shade, { size, supersample = 4, out, offset = 0 }) {
  const img = out ?? new Float32Array(size * size * 3);
  const ss = supersample, inv = 1 / (ss * ss);
  for (let yi = 0; yi < size; yi++) {
    for (let xi = 0; xi < size; xi++) {
      let r = 0, g = 0, b = 0;
      for (let sy = 0; sy < ss; sy++) {
        for (let sx = 0; sx < ss; sx++) {
          const c = shade((xi + (sx + 0.5) / ss) / size, (yi + (sy + 0.5) / ss) / size);
          r += c[0]; g += c[1]; b += c[2];
        }
      }
      const o = offset + (yi * size + xi) * 3;
      img[o] = r * inv; img[o + 1] = g * inv; img[o + 2] = b * inv;
    }
  }
  return img;
}

/** Writes n pictures (NHWC in [0, 1], `size` square) as a PNG grid, 4x enlarged, 8 per row. */
export async function writeGrid(file, data, n, size) {
  const { default: sharp } = await import("sharp");
  const cols = 8, pad = 2;
  const rows = Math.ceil(n / cols), cell = size + pad;
  const W = cols * cell + pad, H = rows * cell + pad;
  const buf = Buffer.alloc(W * H * 3, 255);
  for (let i = 0; i < n; i++) for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) for (let c = 0; c < 3; c++) {
    const o = ((pad + Math.floor(i / cols) * cell + y) * W + pad + (i % cols) * cell + x) * 3 + c;
    buf[o] = Math.round(data[((i * size + y) * size + x) * 3 + c] * 255);
  }
  await sharp(buf, { raw: { width: W, height: H, channels: 3 } }).resize(W * 4, H * 4, { kernel: "nearest" }).png().toFile(file);
}

/** The command-line arguments of a generator: the output file and numeric --options. */
export function gridArgs(defaultFile) {
  const args = process.argv.slice(2);
  const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? Number(args[i + 1]) : d; };
  const file = args.find((a, i) => !a.startsWith("--") && !(i > 0 && args[i - 1].startsWith("--"))) ?? defaultFile;
  return { file, opt, args };
}
