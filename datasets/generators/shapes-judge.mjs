// Reads a shapes picture back: its background colour, fill colour, how many shapes and of which kind, and how
// striped they are. It measures what a text-to-image model trained on datasets/generators/shapes.mjs draws
// (scripts/eval-sd-tiny.mjs); its own accuracy on the generator's pictures is the ceiling it reports beside.
//
//   import { judgeShapes } from "../datasets/generators/shapes-judge.mjs";
//   const j = judgeShapes(pixels, 32);   // pixels: NHWC [32, 32, 3] in [0, 1]
//   // { background: "blue", colour: "red", count: 2, kind: "circle", stripes: 0.02, fillShare: 0.18 }
//   scoreCaptions(pixels, params, 32)   // n pictures vs shapeParams(i, seed): { colour: 0.68, background: 1, ... }
//
// Colours: each pixel takes the nearest of the 8 caption colours (Euclidean RGB). The background is the commonest
// colour in the ring 1-2 pixels inside the edge; the fill the commonest of the rest. Shapes: 4-connected components of pixels not of the
// background colour that hold at least 4 pixels and a quarter of the largest one. Kind: the generator's circle,
// square or triangle with the same area and centroid, at its best rotation, that overlaps the component most
// (intersection over union). Stripes: of the shape pixels, the share nearer the light band colour
// (0.45 fill + 0.55, as shapes.mjs paints it) than the fill.
import { COLOURS, SQUARE_HALF_SIDE, TRIANGLE, insideUnitShape } from "./shapes.mjs";

const NAMES = Object.keys(COLOURS);
const dist2 = (a, b) => (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2 + (a[2] - b[2]) ** 2;

function commonest(counts, skip = -1) {
  let best = -1;
  for (let c = 0; c < counts.length; c++) if (c !== skip && (best < 0 || counts[c] > counts[best])) best = c;
  return best;
}

// each candidate is placed centroid on centroid: the triangle's centroid is below its frame's origin
const TRIANGLE_CENTROID_V = TRIANGLE.reduce((sum, [, v]) => sum + v, 0) / 3;
const insideUnit = (kind, u, v) => insideUnitShape(kind, u, kind === "triangle" ? v + TRIANGLE_CENTROID_V : v);
const triangleArea = (([a, b, c]) => Math.abs((b[0] - a[0]) * (c[1] - a[1]) - (c[0] - a[0]) * (b[1] - a[1])) / 2)(TRIANGLE);
const UNIT_AREA = { circle: Math.PI, square: (2 * SQUARE_HALF_SIDE) ** 2, triangle: triangleArea };
// rotations tried: a square repeats every 90 degrees, the (nearly equilateral) triangle every 120
const ANGLES = { circle: [0], square: Array.from({ length: 30 }, (_, k) => (k * Math.PI) / 60), triangle: Array.from({ length: 40 }, (_, k) => (k * Math.PI) / 60) };

/**
 * Kind of one component: the generator's circle, square and triangle of the same area, centroid on its centroid,
 * each at the rotation that fits best; the one with the highest intersection over union wins.
 */
function kindOf(pixels, size) {
  let sx = 0, sy = 0;
  for (const p of pixels) { sx += p % size + 0.5; sy += Math.floor(p / size) + 0.5; }
  const cx = sx / pixels.length, cy = sy / pixels.length;
  const mine = new Set(pixels);
  const lo = (c, r) => Math.max(0, Math.floor(c - r)), hi = (c, r) => Math.min(size - 1, Math.ceil(c + r));
  const fits = {};
  for (const kind of Object.keys(UNIT_AREA)) {
    const s = Math.sqrt(pixels.length / UNIT_AREA[kind]);
    const reach = 1.6 * s + 1;
    let best = 0;
    for (const a of ANGLES[kind]) {
      const c = Math.cos(a), sn = Math.sin(a);
      let inter = 0, ideal = 0;
      for (let y = lo(cy, reach); y <= hi(cy, reach); y++) for (let x = lo(cx, reach); x <= hi(cx, reach); x++) {
        const dx = x + 0.5 - cx, dy = y + 0.5 - cy;
        if (!insideUnit(kind, (c * dx + sn * dy) / s, (-sn * dx + c * dy) / s)) continue;
        ideal++;
        if (mine.has(y * size + x)) inter++;
      }
      best = Math.max(best, inter / (ideal + pixels.length - inter));
    }
    fits[kind] = best;
  }
  const kind = Object.keys(fits).reduce((a, b) => (fits[b] > fits[a] ? b : a));
  return { kind, iou: fits[kind], fits };
}

/**
 * Judges one picture: `pixels` NHWC [size, size, 3] in [0, 1] (a Float32Array or any indexable). Returns the
 * background and fill colour names, the number of shapes, the kind of the largest, every component's kind and
 * ratio, the fill pixels' share of the picture and the stripe share of the shape pixels.
 */
export function judgeShapes(pixels, size = 32) {
  const n = size * size;
  const label = new Int8Array(n);
  const rgb = (i) => [pixels[3 * i], pixels[3 * i + 1], pixels[3 * i + 2]];
  for (let i = 0; i < n; i++) {
    const p = rgb(i);
    let best = 0;
    for (let c = 1; c < NAMES.length; c++) if (dist2(p, COLOURS[NAMES[c]]) < dist2(p, COLOURS[NAMES[best]])) best = c;
    label[i] = best;
  }
  const border = new Array(NAMES.length).fill(0), all = new Array(NAMES.length).fill(0);
  for (let i = 0; i < n; i++) {
    const x = i % size, y = Math.floor(i / size);
    const edge = Math.min(x, y, size - 1 - x, size - 1 - y);
    if (edge >= 1 && edge <= 2) border[label[i]]++; // a ring just inside the edge (decoders smear the outermost pixels)
    all[label[i]]++;
  }
  const bg = commonest(border);
  const fg = commonest(all, bg);
  const fill = COLOURS[NAMES[fg]], light = fill.map((v) => 0.45 * v + 0.55), back = COLOURS[NAMES[bg]];
  let lightCount = 0, fillCount = 0;
  for (let i = 0; i < n; i++) {
    const p = rgb(i);
    const dB = dist2(p, back), dF = dist2(p, fill), dL = dist2(p, light);
    if (dB <= dF && dB <= dL) continue;
    if (dL < dF) lightCount++; else fillCount++;
  }
  // components of shape pixels: not background-coloured (4-connected)
  const seen = new Uint8Array(n);
  const comps = [];
  for (let i = 0; i < n; i++) {
    if (seen[i] || label[i] === bg) continue;
    const stack = [i], pix = [];
    seen[i] = 1;
    while (stack.length) {
      const p = stack.pop();
      pix.push(p);
      const x = p % size, y = Math.floor(p / size);
      for (const [dx, dy] of [[1, 0], [-1, 0], [0, 1], [0, -1]]) {
        const u = x + dx, v = y + dy;
        if (u < 0 || v < 0 || u >= size || v >= size) continue;
        const q = v * size + u;
        if (!seen[q] && label[q] !== bg) { seen[q] = 1; stack.push(q); }
      }
    }
    comps.push(pix);
  }
  comps.sort((a, b) => b.length - a.length);
  const largest = comps[0]?.length ?? 0;
  const shapes = comps.filter((c) => c.length >= 4 && c.length >= largest / 4).map((c) => ({ pixels: c.length, ...kindOf(c, size) }));
  return {
    background: NAMES[bg], colour: NAMES[fg], count: shapes.length, kind: shapes[0]?.kind ?? null, shapes,
    fillShare: all[fg] / n, stripes: lightCount + fillCount > 0 ? lightCount / (lightCount + fillCount) : 0,
  };
}

/** Does the judgement match the caption's parameters (from shapes.mjs shapeParams)? Field by field. */
export function judgeAgainst(j, want) {
  return {
    colour: j.colour === want.colour,
    background: j.background === want.background,
    count: j.count === want.count,
    // every shape's kind, so that a picture of two circles and a square is not a picture of circles
    kind: j.shapes.length > 0 && j.shapes.every((s) => s.kind === want.kind),
  };
}

/**
 * Judges n pictures (NHWC [n, size, size, 3] in [0, 1]) against their captions' parameters (shapeParams): the share
 * of pictures right per field (background: of the captions that name one) and the mean stripe share.
 */
export function scoreCaptions(pixels, params, size = 32) {
  const n = params.length, d = size * size * 3;
  const right = { colour: 0, background: 0, count: 0, kind: 0 };
  let withBackground = 0, stripes = 0;
  params.forEach((p, i) => {
    const j = judgeShapes(pixels.subarray(i * d, (i + 1) * d), size);
    const m = judgeAgainst(j, p);
    right.colour += m.colour; right.count += m.count; right.kind += m.kind;
    if (p.caption.endsWith(" background")) { withBackground++; right.background += m.background; }
    stripes += j.stripes;
  });
  return { colour: right.colour / n, background: withBackground ? right.background / withBackground : NaN, count: right.count / n, kind: right.kind / n, stripes: stripes / n };
}
