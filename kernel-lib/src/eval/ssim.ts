// Structural similarity (Wang, Bovik, Sheikh & Simoncelli 2004, eq. 13) on luminance (Rec. 601 weights), square
// box windows, data range 1: how alike two small pictures look, 1 = identical. Used to ask whether a generated picture
// resembles its training data (the nearest of a set of real pictures).
import { ArgumentError } from "../utils/check-argument.js";

const C1 = 0.01 ** 2; // (K1 L)^2, K1 = 0.01, L = 1
const C2 = 0.03 ** 2; // (K2 L)^2, K2 = 0.03

/** One picture's luminance and per-window mean and variance, computed once to compare against many. */
export interface SsimWindows { size: number; win: number; lum: Float32Array; mu: Float32Array; variance: Float32Array }

/** The windows of picture `index` of `pictures` (NHWC RGB in [0, 1], square pictures of side `size`). */
export function ssimWindows(pictures: Float32Array, size: number, index = 0, win = 7): SsimWindows {
  const d = size * size * 3, offset = index * d;
  if (!Number.isInteger(size) || size < win) throw new ArgumentError(`ssimWindows: size must be an integer >= the window (${win}); got ${size}`);
  if (offset + d > pictures.length) throw new ArgumentError(`ssimWindows: picture ${index} of side ${size} needs ${offset + d} values; the array has ${pictures.length}`);
  const lum = Float32Array.from({ length: size * size }, (_, i) => 0.299 * pictures[offset + 3 * i] + 0.587 * pictures[offset + 3 * i + 1] + 0.114 * pictures[offset + 3 * i + 2]);
  const n = size - win + 1, area = win * win;
  const mu = new Float32Array(n * n), variance = new Float32Array(n * n);
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
    let s = 0, q = 0;
    for (let dy = 0; dy < win; dy++) for (let dx = 0; dx < win; dx++) { const v = lum[(y + dy) * size + x + dx]; s += v; q += v * v; }
    mu[y * n + x] = s / area;
    variance[y * n + x] = q / area - (s / area) ** 2;
  }
  return { size, win, lum, mu, variance };
}

/** Mean SSIM over the windows of two pictures (eq. 13 per window, eq. 17's mean). */
export function structuralSimilarity(a: SsimWindows, b: SsimWindows): number {
  if (a.size !== b.size || a.win !== b.win) throw new ArgumentError(`structuralSimilarity: pictures of side ${a.size} and ${b.size} (windows ${a.win}, ${b.win}); both must match`);
  const { size, win } = a, n = size - win + 1, area = win * win;
  let total = 0;
  for (let y = 0; y < n; y++) for (let x = 0; x < n; x++) {
    let c = 0;
    for (let dy = 0; dy < win; dy++) for (let dx = 0; dx < win; dx++) c += a.lum[(y + dy) * size + x + dx] * b.lum[(y + dy) * size + x + dx];
    const k = y * n + x;
    const cov = c / area - a.mu[k] * b.mu[k];
    total += ((2 * a.mu[k] * b.mu[k] + C1) * (2 * cov + C2)) / ((a.mu[k] ** 2 + b.mu[k] ** 2 + C1) * (a.variance[k] + b.variance[k] + C2));
  }
  return total / (n * n);
}

/** Mean over `count` pictures of the SSIM to their most similar picture among `refs`. */
export function nearestStructuralSimilarity(pictures: Float32Array, size: number, count: number, refs: SsimWindows[]): number {
  if (refs.length === 0) throw new ArgumentError("nearestStructuralSimilarity: refs is empty; pass the windows of at least one real picture");
  let sum = 0;
  for (let i = 0; i < count; i++) {
    const w = ssimWindows(pictures, size, i, refs[0].win);
    sum += Math.max(...refs.map((r) => structuralSimilarity(w, r)));
  }
  return sum / count;
}
