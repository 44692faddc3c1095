// A procedural dataset of captioned pictures for a small text-to-image model: one to three circles, squares or
// triangles of one colour on a background of another, with a caption that says so ("a red circle on a blue
// background", "two yellow triangles", ...). Picture i and its caption depend only on (seed, i).
// `style: "stripes"` draws the same pictures (same captions) with striped shapes: the data of the style LoRA.
//
//   import { shapes, COLOURS, SHAPES } from "../datasets/generators/shapes.mjs";
//   const { data, shape, captions } = shapes(64, { seed: 0, size: 32 });  // NHWC in [0, 1], [64, 32, 32, 3]
//
// The captions' grammar (words, and how they combine) is kernel-lib's src/utils/shapes-captions.ts, which the hidden
// checks' prompts use too; this file requires its build, so run `npm run build` first.
//
// License: the kit's (this generator and every picture it makes).
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { streamFor, inTriangle, rasterize, writeGrid, gridArgs } from "./procedural.mjs";

const grammarFile = fileURLToPath(new URL("../../kernel-lib/dist/utils/shapes-captions.js", import.meta.url));
let grammar;
try {
  grammar = createRequire(import.meta.url)(grammarFile);
} catch (e) {
  throw new Error(`shapes.mjs needs the caption grammar ${grammarFile} (kernel-lib's build): run npm run build (${e.message})`);
}
const { SHAPE_COLOURS, SHAPE_KINDS, SHAPE_BACKGROUND_SHARE, shapesCaption } = grammar;

/** The RGB in [0, 1] of each colour word (kernel-lib's src/utils/colour-words.ts). */
const RGB = createRequire(import.meta.url)(fileURLToPath(new URL("../../kernel-lib/dist/utils/colour-words.js", import.meta.url))).COLOUR_RGB;
/** The colour words (in the grammar's order) and their RGB in [0, 1]. */
export const COLOURS = Object.fromEntries(SHAPE_COLOURS.map((name) => {
  if (!RGB[name]) throw new Error(`shapes.mjs: the caption grammar's colour "${name}" has no RGB here`);
  return [name, RGB[name]];
}));
export const SHAPES = [...SHAPE_KINDS];

const clamp01 = (v) => Math.min(1, Math.max(0, v));
const jitter = (c, r, amount) => c.map((v) => clamp01(v + (r() - 0.5) * 2 * amount));

/** The random parameters of picture `index`: its caption and every shape (centres and radii in picture widths). */
export function shapeParams(index, seed = 0) {
  const r = streamFor(seed, index);
  const pick = (list) => list[Math.floor(r() * list.length)];
  const colour = pick(SHAPE_COLOURS);
  let background = pick(SHAPE_COLOURS);
  while (background === colour) background = pick(SHAPE_COLOURS);
  const kind = pick(SHAPE_KINDS);
  const u = r();
  const count = u < 0.5 ? 1 : u < 0.8 ? 2 : 3;
  const sayBackground = r() < SHAPE_BACKGROUND_SHARE;
  const caption = shapesCaption({ count, colour, kind, background: sayBackground ? background : null });
  const fill = jitter(COLOURS[colour], r, 0.05);
  const bg = jitter(COLOURS[background], r, 0.05);
  // place the shapes without overlap (rejection sampling, then accept the last try)
  const items = [];
  const size = count === 1 ? 0.2 + 0.12 * r() : count === 2 ? 0.14 + 0.06 * r() : 0.11 + 0.04 * r();
  for (let k = 0; k < count; k++) {
    let cx = 0, cy = 0;
    for (let attempt = 0; attempt < 50; attempt++) {
      cx = size + (1 - 2 * size) * r();
      cy = size + (1 - 2 * size) * r();
      if (items.every((o) => Math.hypot(o.cx - cx, o.cy - cy) > o.size + size + 0.02)) break;
    }
    items.push({ cx, cy, size, angle: (r() - 0.5) * 0.5 });
  }
  return { caption, colour, background, kind, count, fill, bg, items, stripeAngle: r() * Math.PI, stripePhase: r() };
}

/** The shapes at unit size, in their own (rotated) frame: a square's half-side and a triangle's corners. */
export const SQUARE_HALF_SIDE = 0.85;
export const TRIANGLE = [[0, -1.05], [-1.05, 0.8], [1.05, 0.8]];

/** Is (u, v), in units of the shape's size in its own frame, inside a unit circle, square or triangle? */
export function insideUnitShape(kind, u, v) {
  if (kind === "circle") return u * u + v * v <= 1;
  if (kind === "square") return Math.abs(u) <= SQUARE_HALF_SIDE && Math.abs(v) <= SQUARE_HALF_SIDE;
  return inTriangle(u, v, ...TRIANGLE);
}

/** Is (x, y) inside one shape (a circle of radius `size`, a square of half-side 0.85 size, or a triangle)? */
function inside(kind, o, x, y) {
  const dx = x - o.cx, dy = y - o.cy;
  if (kind === "circle") return dx * dx + dy * dy <= o.size * o.size;
  const c = Math.cos(o.angle), s = Math.sin(o.angle);
  return insideUnitShape(kind, (c * dx + s * dy) / o.size, (-s * dx + c * dy) / o.size);
}

/** Renders picture `index` into `out` (NHWC, [0, 1]) at `offset`; returns its caption. */
export function renderShapes(index, { seed = 0, size = 32, supersample = 4, style = "plain", out, offset = 0 } = {}) {
  if (style !== "plain" && style !== "stripes") throw new Error(`shapes: unknown style "${style}"; use "plain" or "stripes"`);
  const p = shapeParams(index, seed);
  // stripes: bands 0.16 picture widths apart, alternating the fill with a light version of it
  const light = p.fill.map((v) => 0.45 * v + 0.55);
  const ca = Math.cos(p.stripeAngle), sa = Math.sin(p.stripeAngle);
  rasterize((x, y) => {
    for (const o of p.items) {
      if (inside(p.kind, o, x, y)) {
        if (style === "stripes" && (((x * ca + y * sa) / 0.16 + p.stripePhase) % 1 + 1) % 1 < 0.5) return light;
        return p.fill;
      }
    }
    return p.bg;
  }, { size, supersample, out, offset });
  return p.caption;
}

/**
 * `n` pictures starting at index `start`: { data: Float32Array NHWC in [0, 1], shape: [n, size, size, 3],
 * captions: string[] }. For a diffusion model map the pixels to [-1, 1] (x * 2 - 1).
 */
export function shapes(n, { seed = 0, size = 32, start = 0, supersample = 4, style = "plain" } = {}) {
  const data = new Float32Array(n * size * size * 3);
  const captions = [];
  for (let i = 0; i < n; i++) captions.push(renderShapes(start + i, { seed, size, supersample, style, out: data, offset: i * size * size * 3 }));
  return { data, shape: [n, size, size, 3], captions };
}

// node datasets/generators/shapes.mjs [out.png] [--n 64] [--seed 0] [--stripes 1]: a grid and its captions
if (process.argv[1] && import.meta.url === (await import("node:url")).pathToFileURL(process.argv[1]).href) {
  const { file, opt } = gridArgs("shapes-grid.png");
  const n = opt("--n", 64), seed = opt("--seed", 0), size = 32;
  const { data, captions } = shapes(n, { seed, size, style: opt("--stripes", 0) ? "stripes" : "plain" });
  await writeGrid(file, data, n, size);
  console.log(captions.map((c, i) => `${i}: ${c}`).join("\n"));
  console.log(`${n} pictures (seed ${seed}) -> ${file}`);
}
