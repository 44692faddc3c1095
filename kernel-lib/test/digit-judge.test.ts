// The judge of the coloured-digits data (src/eval/digit-judge.ts): on real pictures of the data it reads back the
// caption's colours exactly and an ink map that is the digit's own; with the kit-trained classifier
// (datasets/digit-classifier, scripts/train-recipes.mjs "digit-classifier") it reads the digits of held-out writers'
// pictures at the ceiling measured in datasets/digit-classifier/eval.json.
import { describe, it, expect, beforeAll } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { inkMap, readDigitPictures, describeDigitReading, matchDigitCaption } from "../src/eval/digit-judge.js";
import { DigitClassifier } from "../src/models/digit-classifier.js";
import { crossEntropyLoss } from "../src/training/classifier-trainer.js";
import { DIGIT_COLOURS, DIGIT_COLOUR_NAMES, type DigitColour } from "../src/utils/digits-captions.js";
import { initBackend } from "../src/runtime/backend.js";

// @ts-expect-error plain JavaScript module without type declarations
const gen = await import("../../datasets/generators/digits.mjs");
const MODEL = path.resolve(__dirname, "../../datasets/digit-classifier");

beforeAll(async () => {
  await initBackend();
});

describe("reading a picture's colours and ink", () => {
  it("the background and digit colours of 200 held-out pictures are the caption's, and the ink is the digit's", () => {
    const size = 32;
    const { data, params } = gen.digits(200, { seed: 5, size, split: "held-out" });
    const nearest = (rgb: number[]) => DIGIT_COLOUR_NAMES.reduce((best, name) => {
      const d = (n: DigitColour) => Math.hypot(...DIGIT_COLOURS[n].map((v, c) => v - rgb[c]));
      return d(name) < d(best) ? name : best;
    }, DIGIT_COLOUR_NAMES[0]);
    params.forEach((p: { colour: DigitColour; background: DigitColour; caption: string }, i: number) => {
      const m = inkMap(data.subarray(i * size * size * 3, (i + 1) * size * size * 3), size, size);
      expect([nearest(m.colour), nearest(m.background)], p.caption).toEqual([p.colour, p.background]);
      // the generator's own blend factor: the same picture drawn white on black
      const wb = gen.renderDigit({ ...p, colour: "white", background: "black" }, size);
      const alpha = Array.from({ length: size * size }, (_, k) => (wb[3 * k] - 0.07) / (0.96 - 0.07));
      const ink = Array.from(m.ink);
      const mean = (xs: number[]) => xs.reduce((s, v) => s + v, 0) / xs.length;
      const [ma, mi] = [mean(alpha), mean(ink)];
      const cov = mean(alpha.map((v, k) => (v - ma) * (ink[k] - mi)));
      const corr = cov / Math.sqrt(mean(alpha.map((v) => (v - ma) ** 2)) * mean(ink.map((v) => (v - mi) ** 2)));
      expect(corr, p.caption).toBeGreaterThan(0.98);
    });
    expect(() => inkMap(new Float32Array(10), 2, 2)).toThrow(/10 values for a 2x2x3 picture \(needs 12\)/);
  });

  it("cross-entropy is the negative log-likelihood of the labels", () => {
    const logits = tf.tensor2d([[2, 0, -1], [0.5, 0.5, 3]]);
    const labels = tf.tensor1d([0, 2], "int32");
    const p = [Math.exp(2) / (Math.exp(2) + 1 + Math.exp(-1)), Math.exp(3) / (2 * Math.exp(0.5) + Math.exp(3))];
    expect(crossEntropyLoss(logits, labels).dataSync()[0]).toBeCloseTo(-(Math.log(p[0]) + Math.log(p[1])) / 2, 5);
    tf.dispose([logits, labels]);
  });
});

describe.runIf(fs.existsSync(path.join(MODEL, "config.json")))("the kit-trained classifier as the judge", () => {
  it("reads digit, colour and background of held-out pictures at its measured ceiling", async () => {
    const model = await DigitClassifier.fromPretrained(MODEL);
    const ceiling = JSON.parse(fs.readFileSync(path.join(MODEL, "eval.json"), "utf8")).judgeCeiling;
    const { data, shape, params } = gen.digits(500, { seed: 0, size: 32, split: "held-out" });
    const images = tf.tensor4d(data, shape as [number, number, number, number]);
    const before = tf.memory().numTensors;
    const read = readDigitPictures(model, images);
    expect(tf.memory().numTensors).toBe(before);
    images.dispose();
    const share = (f: (r: (typeof read)[number], i: number) => boolean) => read.filter(f).length / read.length;
    // the first 500 of the 2000 pictures eval-digits measured: within 2 points of the whole set's share
    expect(share((r, i) => r.digit === params[i].digit)).toBeGreaterThanOrEqual(ceiling.digit - 0.02);
    expect(share((r, i) => r.colour === params[i].colour)).toBeGreaterThanOrEqual(ceiling.colour - 0.02);
    expect(share((r, i) => r.background === params[i].background)).toBeGreaterThanOrEqual(ceiling.background - 0.02);
    expect(share((r, i) => r.thick === params[i].thick)).toBeGreaterThanOrEqual(ceiling.thick - 0.02);
    expect(ceiling.digit).toBeGreaterThan(0.95);
    model.dispose();
  });
});

describe("a reading against its caption", () => {
  const reading = { digit: 7, confidence: 0.931, colour: "red", background: "orange", contrast: 0.8, strokeWidth: 3, thick: false } as const;
  it("describes the reading in the grammar's words", () => {
    expect(describeDigitReading(reading)).toBe("a red 7 on an orange background (digit p = 0.93)");
    expect(describeDigitReading({ ...reading, colour: "orange", thick: true })).toBe("a thick orange 7 on an orange background (digit p = 0.93)");
  });
  it("matches each part; the background only when the caption names it", () => {
    expect(matchDigitCaption(reading, "a red 7 on an orange background")).toEqual({ digit: true, colour: true, background: true, thick: true, all: true });
    expect(matchDigitCaption(reading, "a red 7")).toEqual({ digit: true, colour: true, background: null, thick: true, all: true });
    expect(matchDigitCaption(reading, "a thick red 1 on a blue background")).toEqual({ digit: false, colour: true, background: false, thick: false, all: false });
  });
  it("refuses a sentence outside the grammar, quoting it", () => {
    expect(() => matchDigitCaption(reading, "a red circle")).toThrow(/"a red circle" is not a sentence of the digits grammar/);
  });
});
