// A procedural dataset of cartoon cat faces: a head, two triangular ears with pink insides, eyes with slit
// pupils, a pink nose, a mouth and whiskers, with random fur / eye / background colours, sizes, positions and a
// rotation. Image i depends only on (seed, i), so any slice of the dataset can be made again anywhere.
// Plain JavaScript rasterisation with 4x4 supersampling (anti-aliased edges); ~1 ms per 32x32 picture.
//
//   import { catFaces, catFace } from "../datasets/generators/cat-faces.mjs";
//   const { data, shape } = catFaces(64, { seed: 0, size: 32 });   // Float32Array NHWC in [0, 1], [64, 32, 32, 3]
//
// License: the kit's (this generator and every picture it makes).

import { streamFor, inTriangle, rasterize, writeGrid, gridArgs } from "./procedural.mjs";

const FUR = [
  [0.93, 0.55, 0.2], // orange
  [0.55, 0.56, 0.6], // grey
  [0.13, 0.13, 0.15], // black
  [0.95, 0.94, 0.9], // white
  [0.5, 0.33, 0.2], // brown
  [0.93, 0.83, 0.62], // cream
  [0.35, 0.3, 0.28], // dark tabby
];
const IRIS = [
  [0.45, 0.8, 0.3], // green
  [0.95, 0.8, 0.2], // yellow
  [0.35, 0.65, 0.95], // blue
  [0.9, 0.55, 0.15], // amber
];
const PINK = [0.96, 0.6, 0.68];

const clamp01 = (v) => Math.min(1, Math.max(0, v));
const luminance = (c) => 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
const jitter = (c, r, amount) => c.map((v) => clamp01(v + (r() - 0.5) * 2 * amount));

function hsv(h, s, v) {
  const f = (n) => {
    const k = (n + h * 6) % 6;
    return v - v * s * Math.max(0, Math.min(k, 4 - k, 1));
  };
  return [f(5), f(3), f(1)];
}

/** The random parameters of picture `index` (all lengths in units of the picture's width). */
export function catFaceParams(index, seed = 0) {
  const r = streamFor(seed, index);
  const pick = (list) => list[Math.floor(r() * list.length)];
  const fur = jitter(pick(FUR), r, 0.06);
  // background: a pastel or a dark colour, far enough from the fur in brightness, with a vertical gradient
  let bg = hsv(r(), 0.25 + 0.45 * r(), 0.35 + 0.6 * r());
  if (Math.abs(luminance(bg) - luminance(fur)) < 0.25) bg = luminance(fur) > 0.5 ? bg.map((v) => v * 0.45) : bg.map((v) => 0.55 + 0.45 * v);
  const bg2 = jitter(bg, r, 0.12);
  const rx = 0.25 + 0.09 * r();
  const dark = luminance(fur) < 0.3;
  return {
    bg, bg2,
    fur,
    muzzle: r() < 0.45 ? jitter([0.97, 0.96, 0.93], r, 0.03) : null,
    innerEar: jitter(PINK, r, 0.06),
    cx: 0.5 + (r() - 0.5) * 0.1,
    cy: 0.53 + (r() - 0.5) * 0.1,
    rx,
    ry: rx * (0.82 + 0.14 * r()),
    angle: (r() - 0.5) * 0.6, // radians, about +-17 degrees
    earSpread: 0.55 + 0.25 * r(), // angle of each ear from vertical (radians)
    earHeight: 0.55 + 0.35 * r(), // relative to rx
    earWidth: 0.5 + 0.2 * r(), // half-angle of the base (radians)
    eyeDx: 0.36 + 0.1 * r(),
    eyeDy: -0.05 + 0.12 * r(),
    eyeR: 0.16 + 0.07 * r(),
    iris: jitter(pick(IRIS), r, 0.05),
    pupilW: 0.2 + 0.35 * r(),
    nose: jitter(PINK, r, 0.05),
    whisker: dark ? [0.9, 0.9, 0.9] : [0.12, 0.1, 0.1],
    whiskerTilt: (r() - 0.5) * 0.2,
  };
}

/** Signed distance to segment ab (thickness handled by the caller). */
function segDist(px, py, ax, ay, bx, by) {
  const vx = bx - ax, vy = by - ay;
  const t = Math.max(0, Math.min(1, ((px - ax) * vx + (py - ay) * vy) / (vx * vx + vy * vy)));
  const dx = px - ax - t * vx, dy = py - ay - t * vy;
  return Math.sqrt(dx * dx + dy * dy);
}

/** The colour at point (x, y) of the picture (x right, y down, both in [0, 1]). */
function shade(p, ears, x, y) {
  // into the face's frame: centred on the head, unrotated, in units of rx
  const cos = p.cos, sin = p.sin;
  const dx = x - p.cx, dy = y - p.cy;
  const u = (cos * dx + sin * dy) / p.rx;
  const v = (-sin * dx + cos * dy) / p.rx;
  let col = p.bg.map((c, i) => c + (p.bg2[i] - c) * y);
  const ry = p.ry / p.rx;
  for (const ear of ears) {
    if (inTriangle(u, v, ear.outer[0], ear.outer[1], ear.outer[2])) col = p.fur;
    if (inTriangle(u, v, ear.inner[0], ear.inner[1], ear.inner[2])) col = p.innerEar;
  }
  // whiskers are drawn over the head edge and the background, so test them last but keep them thin
  const inHead = u * u + (v * v) / (ry * ry) <= 1;
  if (inHead) {
    col = p.fur;
    if (p.muzzle) {
      const mu = u / 0.45, mv = (v - 0.38 * ry) / 0.3;
      if (mu * mu + mv * mv <= 1) col = p.muzzle;
    }
    for (const side of [-1, 1]) {
      const ex = (u - side * p.eyeDx) / p.eyeR, ey = (v - p.eyeDy) / (p.eyeR * 1.1);
      const e2 = ex * ex + ey * ey;
      if (e2 <= 1) {
        col = e2 > 0.8 ? [0.1, 0.08, 0.08] : p.iris;
        const px = ex / p.pupilW, py = ey / 0.85;
        if (px * px + py * py <= 1) col = [0.05, 0.04, 0.05];
        if ((ex + 0.35) ** 2 + (ey + 0.35) ** 2 < 0.04) col = [1, 1, 1]; // highlight
      }
    }
  }
  // nose: a downward triangle, then a small "w" mouth under it
  const noseY = p.eyeDy + 0.32;
  if (v > noseY - 0.04 && v < noseY + 0.08 && inTriangle(u, v, [-0.11, noseY - 0.04], [0.11, noseY - 0.04], [0, noseY + 0.08])) col = p.nose;
  const mouthCol = luminance(p.fur) < 0.3 ? [0.85, 0.8, 0.8] : [0.15, 0.08, 0.08];
  const lw = 0.035;
  if (inHead && (segDist(u, v, 0, noseY + 0.08, 0, noseY + 0.17) < lw
    || segDist(u, v, 0, noseY + 0.17, -0.13, noseY + 0.24) < lw
    || segDist(u, v, 0, noseY + 0.17, 0.13, noseY + 0.24) < lw)) col = mouthCol;
  for (const side of [-1, 1]) {
    for (let k = -1; k <= 1; k++) {
      const ax = side * 0.25, ay = noseY + 0.1 + 0.07 * k;
      const bx = side * 1.25, by = ay + (0.12 * k + p.whiskerTilt * side) ;
      if (segDist(u, v, ax, ay, bx, by) < 0.028) col = p.whisker;
    }
  }
  return col;
}

function earTriangles(p) {
  const ry = p.ry / p.rx;
  return [-1, 1].map((side) => {
    const a = side * p.earSpread; // direction of the ear from the head centre (0 = straight up)
    const base = (t) => [Math.sin(a + t) * 0.95, -Math.cos(a + t) * ry * 0.95];
    const l = base(-p.earWidth), rgt = base(p.earWidth);
    const tip = [Math.sin(a) * (1 + p.earHeight), -Math.cos(a) * (ry + p.earHeight)];
    const mid = [(l[0] + rgt[0]) / 2, (l[1] + rgt[1]) / 2];
    const shrink = (q, k) => [mid[0] + (q[0] - mid[0]) * k, mid[1] + (q[1] - mid[1]) * k];
    return { outer: [l, rgt, tip], inner: [shrink(l, 0.55), shrink(rgt, 0.55), shrink(tip, 0.7)] };
  });
}

/**
 * Renders picture `index` into `out` (NHWC, [0, 1]) at `offset`. `supersample` sub-pixels per side are averaged.
 */
export function renderCatFace(index, { seed = 0, size = 32, supersample = 4, out, offset = 0 } = {}) {
  const p = catFaceParams(index, seed);
  p.cos = Math.cos(p.angle);
  p.sin = Math.sin(p.angle);
  const ears = earTriangles(p);
  return rasterize((x, y) => shade(p, ears, x, y), { size, supersample, out, offset });
}

/** One picture as a Float32Array [size, size, 3] in [0, 1]. */
export function catFace(index, opts = {}) {
  return renderCatFace(index, opts);
}

/**
 * `n` pictures starting at index `start`: { data: Float32Array NHWC in [0, 1], shape: [n, size, size, 3] }.
 * Wrap with tf.tensor4d(data, shape); for a DDPM, map to [-1, 1] (x * 2 - 1) as diffusers' training scripts do.
 */
export function catFaces(n, { seed = 0, size = 32, start = 0, supersample = 4 } = {}) {
  const data = new Float32Array(n * size * size * 3);
  for (let i = 0; i < n; i++) renderCatFace(start + i, { seed, size, supersample, out: data, offset: i * size * size * 3 });
  return { data, shape: [n, size, size, 3] };
}

// node datasets/generators/cat-faces.mjs [out.png] [--n 64] [--seed 0]: a grid of the first n pictures (4x enlarged)
if (process.argv[1] && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href) {
  const { file, opt } = gridArgs("cat-faces-grid.png");
  const n = opt("--n", 64), seed = opt("--seed", 0), size = 32;
  await writeGrid(file, catFaces(n, { seed, size }).data, n, size);
  console.log(`${n} cat faces (seed ${seed}) -> ${file}`);
}
