// StableDiffusionPipeline and StableDiffusionImg2ImgPipeline against diffusers' runs of the same tiny
// pipeline (fixtures/pipeline/txt2img and img2img): text embeddings, every step's UNet input and
// latents, the decoded image; schedulers swapped with fromConfig exactly as in the Python runs.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline } from "../src/pipelines/pipeline-stable-diffusion.js";
import { StableDiffusionImg2ImgPipeline } from "../src/pipelines/pipeline-stable-diffusion-img2img.js";
import { DiffusionPipeline } from "../src/pipelines/diffusion-pipeline.js";
import { getSchedulerClass, type SchedulerMixin } from "../src/schedulers/index.js";
import { fixture, loadFixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";
import { ReplayGenerator } from "./replay-generator.js";

const runs = JSON.parse(fs.readFileSync(fixture("pipeline/txt2img.json"), "utf8")).runs as Record<string, any>;
const gold = loadFixture("pipeline/txt2img.safetensors");
let pipe: StableDiffusionPipeline;
let pndm: SchedulerMixin;

beforeAll(async () => {
  pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(fixture("sd-tiny-pipe"));
  pipe.setProgressBarConfig({ disable: true });
  pndm = pipe.scheduler;
});
afterAll(() => {
  pipe.dispose();
  tf.dispose(Object.values(gold));
});

describe("StableDiffusionPipeline (txt2img) vs diffusers", () => {
  it("loads sd-tiny-pipe from model_index.json with the PNDM scheduler of SD 1.5", () => {
    expect(pipe).toBeInstanceOf(StableDiffusionPipeline);
    expect(pndm.constructor.name).toBe("PNDMScheduler");
    expect(pipe.vaeScaleFactor).toBe(8);
  });

  for (const [key, run] of Object.entries(runs)) {
    it(key, async () => {
      const Cls = getSchedulerClass(run.scheduler)!;
      pipe.scheduler = Cls.fromConfig(pndm.config);
      // Python's JSON writes -inf as the string "-inf" (DPM-Solver's lambda_min_clipped default)
      const plain = (c: Record<string, unknown>) => JSON.parse(JSON.stringify(c, (_k, v) => (v === -Infinity ? "-inf" : v)));
      const { _use_default_values: _a, ...mine } = plain(pipe.scheduler.config as Record<string, unknown>);
      const { _use_default_values: _b, ...theirs } = run.scheduler_config_resolved;
      expect(mine).toEqual(theirs);
      const before = tf.memory().numTensors;
      const latentsIn = nchwToNhwc(gold[`${key}/latents_in`]);
      const steps: tf.Tensor[] = [];
      const { images } = await pipe.generate({
        prompt: run.prompt, negativePrompt: run.negative_prompt, guidanceScale: run.guidance_scale,
        numInferenceSteps: run.steps, eta: run.eta, latents: latentsIn as tf.Tensor4D, outputType: "np",
        callbackOnStepEnd: (_i, _t, s) => { steps.push(tf.clone(s.latents)); },
      });
      expect(pipe.scheduler.timesteps.map((t) => Math.fround(t))).toEqual(Array.from(gold[`${key}/timesteps`].dataSync()).map(Math.fround));
      expect(steps).toHaveLength(run.steps);
      steps.forEach((s, i) => {
        const ref = nchwToNhwc(gold[`${key}/step${String(i).padStart(2, "0")}/latents_after`]);
        // latents grow to |z| ~ 15 (Euler's sigma_max): float32 loops agree to ~1e-4 relative
        expectClose(s, ref, TOL.pipeline.atol, TOL.pipeline.atol, `${key} step ${i} latents`);
        ref.dispose();
      });
      expectClose(images, gold[`${key}/image`], TOL.pipeline.atol, 0, `${key} image`);
      tf.dispose([images, ...steps]);
      latentsIn.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("encodes the prompt as diffusers: [uncond(''), cond] under CFG, cond alone at guidance 1", () => {
    const cfg = pipe.encodePrompt(["a watercolor fox"], 1, true, "");
    expectClose(cfg, gold["DDIMScheduler/g7.5/s4/encoder_hidden_states"], TOL.model.atol, 0, "CFG embeddings");
    const plain = pipe.encodePrompt(["a watercolor fox"], 1, false);
    expectClose(plain, gold["DDIMScheduler/g1.0/s4/encoder_hidden_states"], TOL.model.atol, 0, "embeddings");
    tf.dispose([cfg, plain]);
  });

  it("draws the start latents from a seeded Generator as diffusers (NCHW randn, then NHWC)", async () => {
    const { Generator } = await import("../src/random/generator.js");
    pipe.scheduler = getSchedulerClass("DDIMScheduler")!.fromConfig(pndm.config);
    const z = pipe.prepareLatents(1, 64, 64, new Generator().manualSeed(77));
    expectClose(z, nchwToNhwc(gold["DDIMScheduler/g1.0/s4/latents_in"]), TOL.randn.atol, 0, "latents seed 77");
    z.dispose();
  });

  it("rejects sizes that are not multiples of 8, and a wrong generator list, with clear errors", async () => {
    await expect(pipe.generate({ prompt: "x", height: 60, width: 64, numInferenceSteps: 1 })).rejects.toThrow(/height must be a positive multiple of 8.*got 60\. Try 64/);
    const { Generator } = await import("../src/random/generator.js");
    await expect(pipe.generate({ prompt: "x", numInferenceSteps: 1, numImagesPerPrompt: 2, generator: [new Generator()] }))
      .rejects.toThrow(/a list of 1 generators was given for 2 pictures/);
    await expect(pipe.generate({ prompt: ["a", "b"], negativePrompt: ["c"], numInferenceSteps: 1 }))
      .rejects.toThrow(/negativePrompt has 1 entries but prompt has 2/);
  });
});

describe("StableDiffusionImg2ImgPipeline vs diffusers", () => {
  const g = loadFixture("pipeline/img2img.safetensors");
  const meta = JSON.parse(fs.readFileSync(fixture("pipeline/img2img.json"), "utf8")).runs;
  const key = Object.keys(meta)[0];
  const run = meta[key];
  afterAll(() => tf.dispose(Object.values(g)));

  it(key, async () => {
    const img2img = new StableDiffusionImg2ImgPipeline({ ...pipe, scheduler: getSchedulerClass("DDIMScheduler")!.fromConfig(pndm.config) } as any);
    img2img.setProgressBarConfig({ disable: true });
    const before = tf.memory().numTensors;
    const picture = tf.tidy(() => tf.expandDims(g[`${key}/init_image_uint8_HWC`].toFloat().div(255), 0));
    const gen = new ReplayGenerator([g[`${key}/vae_encode_noise`], g[`${key}/add_noise_noise`]], "img2img");
    const seen: number[] = [];
    const { images } = await img2img.generate({
      prompt: run.prompt, negativePrompt: run.negative_prompt, guidanceScale: run.guidance_scale, numInferenceSteps: run.steps,
      strength: run.strength, eta: run.eta, image: picture, generator: gen, outputType: "np",
      callbackOnStepEnd: (i, t, s) => {
        seen.push(t);
        const ref = nchwToNhwc(g[`${key}/step${String(i).padStart(2, "0")}/latents_after`]);
        expectClose(s.latents, ref, TOL.pipeline.atol, TOL.pipeline.atol, `step ${i} latents`);
        ref.dispose();
      },
    });
    expect(seen).toEqual(run.timesteps_used);
    expect(gen.used).toBe(2);
    expectClose(images, g[`${key}/image`], TOL.pipeline.atol, 0, "img2img image");
    tf.dispose([images, picture]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
