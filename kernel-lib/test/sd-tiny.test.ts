// The captioned-shapes dataset (datasets/generators/shapes.mjs) and the small text-to-image model trained on it
// (datasets/sd-tiny, with its style LoRA datasets/sd-tiny-lora-stripes): the pipeline loads from the
// stable-diffusion folder layout with SD 1.5's configs and the real CLIP tokenizer files, generates without leaking,
// follows the prompt under classifier-free guidance (a red circle is redder at guidance 7 than 1), and the LoRA,
// in both file formats, changes the pictures the same way.
import * as fs from "node:fs";
import * as path from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline } from "../src/pipelines/pipeline-stable-diffusion.js";
import { DiffusionPipeline } from "../src/pipelines/diffusion-pipeline.js";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { Generator } from "../src/random/generator.js";
// @ts-expect-error plain JavaScript module without type declarations
import { shapes, shapeParams, COLOURS } from "../../datasets/generators/shapes.mjs";
// @ts-expect-error plain JavaScript module without type declarations
import { scoreCaptions } from "../../datasets/generators/shapes-judge.mjs";

const DATASETS = path.resolve(__dirname, "../../datasets");
const MODEL = path.join(DATASETS, "sd-tiny");
const LORA = path.join(DATASETS, "sd-tiny-lora-stripes");
const SD15 = path.resolve(__dirname, "../../../shared/fixtures/configs/stable-diffusion-v1-5");
const S = 32;
const D = S * S * 3;

type Shapes = (n: number, o?: { seed?: number; size?: number; start?: number; style?: string }) => { data: Float32Array; shape: number[]; captions: string[] };
const make = shapes as Shapes;

/** Share of pixels within 0.3 (per channel) of a colour: how much of the picture has it. */
function share(pixels: Float32Array, rgb: number[], from = 0, count = pixels.length / 3): number {
  let n = 0;
  for (let i = from; i < from + count; i++) {
    if (Math.abs(pixels[3 * i] - rgb[0]) < 0.3 && Math.abs(pixels[3 * i + 1] - rgb[1]) < 0.3 && Math.abs(pixels[3 * i + 2] - rgb[2]) < 0.3) n++;
  }
  return n / count;
}

describe("shapes generator", () => {
  it("is deterministic per (seed, index); captions name the count, colour, shape and (mostly) the background", () => {
    const a = make(6, { seed: 3, start: 10 });
    expect(a.shape).toEqual([6, S, S, 3]);
    expect(Array.from(make(1, { seed: 3, start: 12 }).data)).toEqual(Array.from(a.data.subarray(2 * D, 3 * D)));
    expect(a.data.every((v) => v >= 0 && v <= 1)).toBe(true);
    const { captions } = make(200, { seed: 0 });
    for (const c of captions) expect(c).toMatch(/^(a|an|two|three) (red|green|blue|yellow|purple|orange|white|black) (circle|square|triangle)s?( on an? (red|green|blue|yellow|purple|orange|white|black) background)?$/);
    expect(captions.filter((c) => c.includes("background")).length / 200).toBeGreaterThan(0.55);
    // the picture shows what the caption says: the named colour covers some of it, the background most of it
    for (let i = 0; i < 20; i++) {
      const p = shapeParams(i, 0);
      expect(share(make(1, { seed: 0, start: i }).data, COLOURS[p.colour])).toBeGreaterThan(0.03);
      expect(share(make(1, { seed: 0, start: i }).data, COLOURS[p.background])).toBeGreaterThan(0.4);
    }
  });

  it("draws the same pictures striped with style 'stripes' (same captions, same background)", () => {
    const plain = make(8, { seed: 1 });
    const striped = make(8, { seed: 1, style: "stripes" });
    expect(striped.captions).toEqual(plain.captions);
    let changed = 0;
    for (let i = 0; i < plain.data.length; i++) if (Math.abs(plain.data[i] - striped.data[i]) > 0.05) changed++;
    expect(changed / plain.data.length).toBeGreaterThan(0.02);
    expect(() => make(1, { style: "dots" })).toThrow(/unknown style "dots"/);
  });
});

const score = scoreCaptions as (pixels: Float32Array, params: ReturnType<typeof shapeParams>[], size?: number) => Record<"colour" | "background" | "count" | "kind" | "stripes", number>;

describe("shapes judge (datasets/generators/shapes-judge.mjs, what scripts/eval-sd-tiny.mjs scores models with)", () => {
  it("reads the generator's own pictures back: colours, background, count and kind; stripes only on striped ones", () => {
    const params = Array.from({ length: 200 }, (_, i) => shapeParams(i, 99));
    const plain = score(make(200, { seed: 99 }).data, params, S);
    expect(plain, "plain pictures").toMatchObject({ colour: 1, background: 1 });
    expect(plain.count, "count").toBeGreaterThan(0.95);
    expect(plain.kind, "kind").toBeGreaterThan(0.95);
    expect(plain.stripes).toBeLessThan(0.1);
    const striped = score(make(200, { seed: 99, style: "stripes" }).data, params, S);
    expect(striped.background, "striped pictures: background").toBe(1);
    expect(striped.stripes, "stripe share of striped shapes (half the bands are light)").toBeGreaterThan(0.4);
  });
});

describe("datasets/sd-tiny (trained text-to-image model)", () => {
  let pipe: StableDiffusionPipeline;
  beforeAll(async () => {
    pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(MODEL);
    pipe.scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config);
    pipe.setProgressBarConfig({ disable: true });
  });

  it("is a stable-diffusion folder: SD 1.5's model_index, scheduler and tokenizer configs, the real CLIP files, a card, < 20 MB", () => {
    const index = JSON.parse(fs.readFileSync(path.join(MODEL, "model_index.json"), "utf8"));
    const sd15 = JSON.parse(fs.readFileSync(path.join(SD15, "model_index.json"), "utf8"));
    for (const k of ["_class_name", "text_encoder", "tokenizer", "unet", "vae", "scheduler"]) expect(index[k], k).toEqual(sd15[k]);
    expect(JSON.parse(fs.readFileSync(path.join(MODEL, "scheduler/scheduler_config.json"), "utf8"))).toEqual(JSON.parse(fs.readFileSync(path.join(SD15, "scheduler/scheduler_config.json"), "utf8")));
    expect(fs.readFileSync(path.join(MODEL, "tokenizer/vocab.json"))).toEqual(fs.readFileSync(path.join(DATASETS, "sd-tiny-random/tokenizer/vocab.json")));
    const vocab = JSON.parse(fs.readFileSync(path.resolve(SD15, "../../tokenizer/vocab.json"), "utf8"));
    expect(pipe.tokenizer.encode("a red circle").inputIds[0]).toEqual(["<|startoftext|>", "a</w>", "red</w>", "circle</w>", "<|endoftext|>"].map((t) => vocab[t]));
    const bytes = (d: string): number => fs.readdirSync(d, { withFileTypes: true }).reduce((s, e) => s + (e.isDirectory() ? bytes(path.join(d, e.name)) : fs.statSync(path.join(d, e.name)).size), 0);
    expect(bytes(MODEL)).toBeLessThan(20 * 2 ** 20);
    expect(fs.readFileSync(path.join(MODEL, "README.md"), "utf8")).toMatch(/npm run train -- sd-tiny/);
    expect(pipe.vaeScaleFactor).toBe(2);
  });

  it("generates 32x32 pictures without leaking tensors", async () => {
    const n0 = tf.memory().numTensors;
    const { images } = await pipe.generate({ prompt: "two yellow triangles", numInferenceSteps: 4, guidanceScale: 7, generator: new Generator().manualSeed(0), outputType: "np" });
    expect(images.shape).toEqual([1, S, S, 3]);
    images.dispose();
    expect(tf.memory().numTensors).toBe(n0);
  });

  it("follows the prompt under classifier-free guidance: 'a red circle' is redder at guidance 7 than at 1", async () => {
    const red = COLOURS.red as number[];
    const redShare = async (g: number) => {
      const { images } = await pipe.generate({ prompt: Array(8).fill("a red circle"), numInferenceSteps: 20, guidanceScale: g, generator: new Generator().manualSeed(1), outputType: "np" });
      const v = share(images.dataSync() as Float32Array, red);
      images.dispose();
      return v;
    };
    const [g1, g7] = [await redShare(1), await redShare(7)];
    expect(g7, `red share of the pictures: guidance 1 ${g1.toFixed(3)}, guidance 7 ${g7.toFixed(3)}`).toBeGreaterThan(g1 * 1.3);
    expect(g7).toBeGreaterThan(0.05);
  });

  it("draws held-out captions' backgrounds, and their colours far more often at guidance 7.5 than at 1 (the shapes judge)", async () => {
    const { colour: c1, background: b1 } = await heldOut(pipe, 1);
    const { colour: c7, background: b7 } = await heldOut(pipe, 7.5);
    const what = `held-out captions right: colour ${c1.toFixed(2)} -> ${c7.toFixed(2)}, background ${b1.toFixed(2)} -> ${b7.toFixed(2)} (guidance 1 -> 7.5)`;
    expect(c7, what).toBeGreaterThan(HELD_OUT_MIN.colour);
    expect(b7, what).toBeGreaterThan(HELD_OUT_MIN.background);
    expect(c7, what).toBeGreaterThan(c1 + 0.1);
  });
});

describe("datasets/sd-tiny-lora-stripes (the style LoRA, both file formats)", () => {
  it("stripes the shapes; the kohya file gives the diffusers file's pictures; unloading restores the base exactly; no leaks", async () => {
    const pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(MODEL);
    pipe.scheduler = DDIMScheduler.fromConfig(pipe.scheduler.config);
    pipe.setProgressBarConfig({ disable: true });
    const n0 = tf.memory().numTensors;
    const base = await heldOut(pipe, 7.5, 24);
    // at adapter weight 2, where this short run's effect is plain (weight 1 adds about a fifth as much: see the card)
    await pipe.loadLoraWeights(LORA, { weightName: "pytorch_lora_weights.safetensors", adapterName: "stripes" });
    pipe.setAdapters("stripes", 2);
    const diffusers = await heldOut(pipe, 7.5, 24);
    pipe.unloadLoraWeights();
    await pipe.loadLoraWeights(LORA, { weightName: "stripes.kohya.safetensors", adapterName: "stripes_kohya" });
    pipe.setAdapters("stripes_kohya", 2);
    const kohya = await heldOut(pipe, 7.5, 24);
    pipe.unloadLoraWeights();
    const again = await heldOut(pipe, 7.5, 24);
    const what = `stripe share of the shapes: base ${base.stripes.toFixed(3)}, with the LoRA at weight 2 ${diffusers.stripes.toFixed(3)} (kohya file ${kohya.stripes.toFixed(3)})`;
    expect(diffusers.stripes, what).toBeGreaterThan(base.stripes + LORA_MIN_STRIPE_GAIN);
    let maxDiff = 0;
    for (let i = 0; i < kohya.pixels.length; i++) maxDiff = Math.max(maxDiff, Math.abs(kohya.pixels[i] - diffusers.pixels[i]));
    expect(maxDiff, "kohya vs diffusers file: the same LoRA, up to float rounding").toBeLessThan(1e-3);
    expect(Array.from(again.pixels)).toEqual(Array.from(base.pixels));
    expect(tf.memory().numTensors).toBe(n0);
  });
});

// what the shipped weights measured (datasets/sd-tiny/README.md), minus a margin: a retrained model must do about as well
const HELD_OUT_MIN = { colour: 0.55, background: 0.9 }; // measured 0.67 and 1.00 (guidance 1: 0.50, 1.00)
const LORA_MIN_STRIPE_GAIN = 0.12; // measured 0.084 -> 0.316 at weight 2 (24 captions)

/** `n` held-out captions (shapes.mjs seed 99; training used seed 0), 20 DDIM steps, seed 2: the judge's verdicts. */
async function heldOut(pipe: StableDiffusionPipeline, guidanceScale: number, n = 48) {
  const params = Array.from({ length: n }, (_, i) => shapeParams(i, 99));
  const { images } = await pipe.generate({ prompt: params.map((p) => p.caption), numInferenceSteps: 20, guidanceScale, generator: new Generator().manualSeed(2), outputType: "np" });
  const pixels = images.dataSync() as Float32Array;
  images.dispose();
  return { ...score(pixels, params, S), pixels };
}
