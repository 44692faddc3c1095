// DDPMPipeline against diffusers' run of the same pipeline (fixtures/pipeline/ddpm_loop): the whole
// loop from a seeded Generator, so the RNG, the UNet and the scheduler must all agree.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { UNet2DModel } from "../src/models/unet-2d.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { DDPMPipeline } from "../src/pipelines/pipeline-ddpm.js";
import { DiffusionPipeline } from "../src/pipelines/diffusion-pipeline.js";
import { Generator } from "../src/random/generator.js";
import { readConfigFile } from "../src/io/config.js";
import { fixture, loadFixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";

const golden = loadFixture("pipeline/ddpm_loop.safetensors");
const datasetPipe = path.resolve(__dirname, "../../datasets/ddpm-cat-tiny-random");
let unet: UNet2DModel;
let pipe: DDPMPipeline;

beforeAll(async () => {
  unet = await UNet2DModel.fromPretrained(fixture("models/unet-ddpm-tiny"));
  const scheduler = DDPMScheduler.fromConfig(readConfigFile(fixture("configs/ddpm-cat-256/scheduler_config.json")));
  pipe = new DDPMPipeline({ unet, scheduler });
  pipe.setProgressBarConfig({ disable: true });
});
afterAll(() => {
  pipe.dispose();
  tf.dispose(Object.values(golden));
});

describe("DDPMPipeline", () => {
  it("reproduces diffusers' image from the same seed (10 steps)", async () => {
    const seen: number[] = [];
    const { images } = await pipe.generate({
      numInferenceSteps: 10, generator: new Generator().manualSeed(0), outputType: "np",
      callbackOnStepEnd: (_i, t) => { seen.push(t); },
    });
    expect(seen).toEqual(Array.from(golden.timesteps.dataSync()));
    expect(images.shape).toEqual([1, 32, 32, 3]);
    expectClose(images, golden.image, TOL.pipeline.atol, 0, "image");
    images.dispose();
  });

  it("by hand: each step's UNet input and output match diffusers", async () => {
    const scheduler = pipe.scheduler;
    scheduler.setTimesteps(10);
    const g = new Generator().manualSeed(0);
    let x = tf.transpose(g.randn([1, 3, 32, 32]), [0, 2, 3, 1]) as tf.Tensor4D;
    const start = nchwToNhwc(golden["randn/00"]);
    expectClose(x, start, TOL.randn.atol, 0, "initial noise");
    start.dispose();
    for (const [i, t] of scheduler.timesteps.entries()) {
      const key = `step${String(i).padStart(2, "0")}`;
      const inRef = nchwToNhwc(golden[`${key}/unet_in`]);
      // the loop compounds float32 rounding: compare the inputs at the pipeline tolerance
      expectClose(x, inRef, TOL.pipeline.atol, 0, `${key}/unet_in`);
      const eps = unet.forward(inRef, t).sample;
      const epsRef = nchwToNhwc(golden[`${key}/model_output`]);
      expectClose(eps, epsRef, TOL.model.atol, 0, `${key}/model_output (from diffusers' input)`);
      const out = scheduler.step(eps, t, x, { generator: g });
      tf.dispose([x, eps, inRef, epsRef, out.predOriginalSample]);
      x = out.prevSample as tf.Tensor4D;
    }
    x.dispose();
  });

  it("a 1000-step run leaves tf.memory().numTensors where it started", async () => {
    const before = tf.memory().numTensors;
    const { images } = await pipe.generate({ generator: new Generator().manualSeed(1), outputType: "np" }); // default: 1000 steps
    expect(images.shape).toEqual([1, 32, 32, 3]);
    images.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("outputType png gives one PNG per picture, and a generator list needs one per picture", async () => {
    const { images } = await pipe.generate({ batchSize: 2, numInferenceSteps: 2, generator: new Generator().manualSeed(3) });
    expect(images).toHaveLength(2);
    const meta = await sharp((images as Buffer[])[0]).metadata();
    expect([meta.format, meta.width, meta.height]).toEqual(["png", 32, 32]);
    await expect(pipe.generate({ batchSize: 2, numInferenceSteps: 2, generator: [new Generator()] }))
      .rejects.toThrow(/generator: a list of 1 generators was given for batchSize 2/);
  });

  it("a list of generators draws each picture's noise from its own generator (diffusers' randn_tensor)", async () => {
    const both = (await pipe.generate({ batchSize: 2, numInferenceSteps: 4, outputType: "np",
      generator: [new Generator().manualSeed(5), new Generator().manualSeed(6)] })).images;
    for (const [i, seed] of [[0, 5], [1, 6]]) {
      const one = (await pipe.generate({ numInferenceSteps: 4, outputType: "np", generator: new Generator().manualSeed(seed) })).images;
      const row = tf.slice(both, [i, 0, 0, 0], [1, -1, -1, -1]);
      expectClose(row, one, 1e-6, 0, `picture ${i}`);
      tf.dispose([one, row]);
    }
    both.dispose();
  });

  it("DiffusionPipeline.fromPretrained reads model_index.json (the offline dataset folder) and gives the same image", async () => {
    const p = await DiffusionPipeline.fromPretrained<DDPMPipeline>(datasetPipe);
    expect(p).toBeInstanceOf(DDPMPipeline);
    p.setProgressBarConfig({ disable: true });
    const { images } = await p.generate({ numInferenceSteps: 10, generator: new Generator().manualSeed(0), outputType: "np" });
    expectClose(images, golden.image, TOL.pipeline.atol, 0, "image");
    images.dispose();
    p.dispose();
  });

  it("loads the old flat layout of google/ddpm-cat-256 (config files at the top of the repo)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ddpm-flat-"));
    fs.copyFileSync(path.join(datasetPipe, "unet/config.json"), path.join(dir, "config.json"));
    fs.copyFileSync(path.join(datasetPipe, "unet/diffusion_pytorch_model.safetensors"), path.join(dir, "diffusion_pytorch_model.safetensors"));
    fs.copyFileSync(path.join(datasetPipe, "scheduler/scheduler_config.json"), path.join(dir, "scheduler_config.json"));
    fs.copyFileSync(path.join(datasetPipe, "model_index.json"), path.join(dir, "model_index.json"));
    const p = await DDPMPipeline.fromPretrained(dir);
    expect(p.unet.config.sample_size).toBe(32);
    expect(p.scheduler.config.clip_sample).toBe(true);
    p.dispose();
    await expect(DiffusionPipeline.fromPretrained(fixture("models/unet-ddpm-tiny"))).rejects.toThrow(/has no model_index.json/);
  });
});
