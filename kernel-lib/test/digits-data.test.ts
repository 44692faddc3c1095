// The coloured-digits data (issue 16): real MNIST handwriting from the `mnist` package, coloured and captioned by
// datasets/generators/digits.mjs with the grammar of src/utils/digits-captions.ts. The grammar round-trips, the
// held-out digits never reach the train split, pictures depend only on (seed, split, index), and each picture is
// what its caption says (digit colour, background colour, thick strokes), measured on the pixels.
import { describe, it, expect } from "vitest";
import { DIGIT_COLOURS, DIGIT_COLOUR_NAMES, digitCaption, digitPrompt, parseDigitCaption, type DigitColour } from "../src/utils/digits-captions.js";

// the generator is an .mjs file beside the datasets (it requires kernel-lib's build, made before the tests)
// @ts-expect-error plain JavaScript module without type declarations
const gen = await import("../../datasets/generators/digits.mjs");

describe("the caption grammar", () => {
  it("says a digit, its colour, thick strokes and the background, and parses back", () => {
    expect(digitCaption({ digit: 7, colour: "red", background: "blue", thick: false })).toBe("a red 7 on a blue background");
    expect(digitCaption({ digit: 3, colour: "green", background: null, thick: true })).toBe("a thick green 3");
    expect(digitCaption({ digit: 0, colour: "orange", background: "white", thick: false })).toBe("an orange 0 on a white background");
    for (const digit of [0, 8]) for (const colour of DIGIT_COLOUR_NAMES) for (const background of [null, "black" as DigitColour]) for (const thick of [false, true]) {
      const p = { digit, colour, background, thick };
      expect(parseDigitCaption(digitCaption(p))).toEqual(p);
    }
    expect(parseDigitCaption("a red circle")).toBeNull();
    expect(() => digitCaption({ digit: 10, colour: "red", background: null, thick: false })).toThrow(/digit 10 must be an integer from 0 to 9/);
    expect(() => digitCaption({ digit: 1, colour: "teal" as DigitColour, background: null, thick: false })).toThrow(/colour "teal" is not one of red/);
  });

  it("draws prompts of the grammar from a seeded source", () => {
    let i = 0;
    const r = { rand: () => ((i = (i * 7 + 3) % 10) / 10), pick: <T>(xs: readonly T[]) => xs[(i = (i * 7 + 3) % 10) % xs.length] };
    for (let k = 0; k < 20; k++) expect(parseDigitCaption(digitPrompt(r))).not.toBeNull();
  });
});

describe("the digits and their split", () => {
  it("10,000 real digits, the last 20 % of each class held out, never drawn for training", () => {
    const split = gen.digitSplit();
    expect(split.reduce((s: number, p: { count: number }) => s + p.count, 0)).toBe(10000);
    for (const p of split) expect((p.count - p.heldOutStart) / p.count).toBeCloseTo(0.2, 2);
    const train = gen.digitSet("train"), held = gen.digitSet("held-out");
    expect(train.count + held.count).toBe(10000);
    for (let i = 0; i < 400; i++) {
      const t = gen.digitParams(i, { seed: 3, split: "train" }), h = gen.digitParams(i, { seed: 3, split: "held-out" });
      expect(t.sample).toBeLessThan(split[t.digit].heldOutStart);
      expect(h.sample).toBeGreaterThanOrEqual(split[h.digit].heldOutStart);
    }
  });

  it("the style LoRA's data: the same pictures drawn thick, captions that never say so", () => {
    const plain = gen.digits(40, { seed: 4 }), thick = gen.digits(40, { seed: 4, style: "thick" });
    thick.params.forEach((p: { thick: boolean; digit: number; sample: number; colour: string }, i: number) => {
      const q = plain.params[i];
      expect([p.thick, p.digit, p.sample, p.colour]).toEqual([true, q.digit, q.sample, q.colour]);
      expect(parseDigitCaption(thick.captions[i])).toEqual({ ...parseDigitCaption(plain.captions[i]), thick: false });
      expect(thick.captions[i]).not.toMatch(/thick/);
    });
  });

  it("a picture depends only on (seed, split, index)", () => {
    const a = gen.digits(4, { seed: 1, start: 10 }), b = gen.digits(4, { seed: 1, start: 10 }), c = gen.digits(4, { seed: 2, start: 10 });
    expect(Array.from(a.data)).toEqual(Array.from(b.data));
    expect(a.captions).toEqual(b.captions);
    expect(a.captions).not.toEqual(c.captions);
    expect(gen.digits(1, { seed: 1, start: 12 }).captions[0]).toBe(a.captions[2]);
  });

  it("each picture is what its caption says: background at the corners, the digit's colour in its strokes, thick strokes wider", () => {
    const size = 32;
    const { data, params } = gen.digits(60, { seed: 0, size });
    const rgb = (name: DigitColour) => [...DIGIT_COLOURS[name]];
    const dist = (p: number[], q: number[]) => Math.hypot(p[0] - q[0], p[1] - q[1], p[2] - q[2]);
    params.forEach((p: { colour: DigitColour; background: DigitColour; caption: string }, i: number) => {
      const px = (x: number, y: number) => Array.from(data.subarray(((i * size + y) * size + x) * 3, ((i * size + y) * size + x) * 3 + 3)) as number[];
      expect(dist(px(0, 0), rgb(p.background)), p.caption).toBeLessThan(0.02);
      // the pixel farthest from the background is the digit's colour (its stroke centre)
      let far = px(0, 0), best = 0;
      for (let y = 0; y < size; y++) for (let x = 0; x < size; x++) { const v = px(x, y), d = dist(v, rgb(p.background)); if (d > best) { best = d; far = v; } }
      // ... a blend of background and the caption's colour, mostly the latter: bg + a (fg - bg) with a > 0.5
      const bg = rgb(p.background), fg = rgb(p.colour), e = fg.map((v, c) => v - bg[c]);
      const a = far.reduce((s, v, c) => s + (v - bg[c]) * e[c], 0) / e.reduce((s, v) => s + v * v, 0);
      expect(a, p.caption).toBeGreaterThan(0.5);
      expect(dist(far, bg.map((v, c) => v + a * e[c])), p.caption).toBeLessThan(0.02);
    });
    const thin = gen.thicken(gen.digitSample(3, 0)) as Float32Array, base = gen.digitSample(3, 0) as Float32Array;
    const ink = (g: Float32Array) => g.filter((v) => v > 0.5).length;
    expect(ink(thin)).toBeGreaterThan(1.3 * ink(base));
  });
});
