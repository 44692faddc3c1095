// StableDiffusionInpaintPipeline on datasets/sd-tiny-random (random weights, real SD 1.5 layout):
// mask blending with a 4-channel UNet (known latents pasted back after every step, RePaint-style),
// a 9-channel inpainting UNet fed [latents, mask, masked-picture latents], errors, and memory.
// The random draws are replayed by hand in diffusers' order (picture latents, start noise,
// masked-picture latents) to check every blended latent exactly.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionInpaintPipeline } from "../src/pipelines/pipeline-stable-diffusion-inpaint.js";
import { img2imgTimesteps } from "../src/pipelines/pipeline-stable-diffusion-img2img.js";
import { normalize } from "../src/pipelines/image-processor.js";
import { UNet2DConditionModel } from "../src/models/unet-2d-condition.js";
import { DDIMScheduler, type SchedulerMixin } from "../src/schedulers/index.js";
import { Generator } from "../src/random/generator.js";
import { loadImage } from "../src/display/image.js";
import { getOffloadMode } from "../src/memory/offload.js";
import { memoryReport } from "../src/memory/memory-report.js";
import { expectClose, TOL } from "./helpers.js";

const SD_TINY = path.resolve(__dirname, "../../datasets/sd-tiny-random");
const PHOTO = path.resolve(__dirname, "../../datasets/images/chelsea.png");
const SIZE = 64; // pixels; latents are 8x8

let pipe: StableDiffusionInpaintPipeline;
let pndm: SchedulerMixin;
let photo: tf.Tensor4D;
let mask: tf.Tensor4D;       // [1,64,64,1]: 1 (repaint) in rows/cols 16..39, 0 elsewhere
let latentMask: tf.Tensor4D; // the same rectangle on the 8x8 latent grid: rows/cols 2..4

function rectMask(size: number, from: number, to: number): tf.Tensor4D {
  return tf.tidy(() => {
    const r = tf.range(0, size);
    const inside = tf.logicalAnd<tf.Tensor1D>(tf.greaterEqual(r, from), tf.less(r, to)).toFloat();
    return tf.reshape(tf.outerProduct(inside, inside), [1, size, size, 1]) as tf.Tensor4D;
  });
}

/** Values of `a` where `keep` is 1 (a per-position mask broadcast over channels), as a flat array. */
function where(a: tf.Tensor4D, keep: tf.Tensor4D): number[] {
  const v = a.arraySync();
  const m = keep.arraySync();
  const out: number[] = [];
  v.forEach((img) => img.forEach((row, y) => row.forEach((px, x) => {
    if (m[0][y][x][0] === 1) out.push(...px);
  })));
  return out;
}

const ddim = () => DDIMScheduler.fromConfig(pndm.config);

beforeAll(async () => {
  pipe = await StableDiffusionInpaintPipeline.fromPretrained(SD_TINY);
  pipe.setProgressBarConfig({ disable: true });
  pndm = pipe.scheduler;
  photo = await loadImage(PHOTO, { width: SIZE, height: SIZE });
  mask = rectMask(SIZE, 16, 40);
  latentMask = rectMask(SIZE / 8, 2, 5);
});
afterAll(() => {
  pipe.dispose();
  tf.dispose([photo, mask, latentMask]);
});

describe("StableDiffusionInpaintPipeline, 4-channel UNet (mask blending)", () => {
  it("keeps every pixel outside the mask equal to the input picture (keepUnmaskedPixels, the default)", async () => {
    pipe.scheduler = ddim();
    const before = tf.memory().numTensors;
    const { images } = await pipe.generate({ prompt: "a cat", image: photo, maskImage: mask, numInferenceSteps: 3,
      generator: new Generator().manualSeed(0), outputType: "np" });
    expect(images.shape).toEqual([1, SIZE, SIZE, 3]);
    const keep = tf.tidy(() => tf.sub(1, mask) as tf.Tensor4D);
    expect(where(images, keep)).toEqual(where(photo, keep)); // exactly
    // inside the mask the picture was repainted
    const changed = tf.tidy(() => tf.max(tf.abs(tf.sub(images, photo).mul(mask))).dataSync()[0]);
    expect(changed).toBeGreaterThan(0.05);
    tf.dispose([images, keep]);
    expect(tf.memory().numTensors).toBe(before);
  });

  for (const strength of [1.0, 0.6]) {
    it(`blends the noised picture latents back outside the latent mask after every step (strength ${strength})`, async () => {
      pipe.scheduler = ddim();
      const n = 5;
      const before = tf.memory().numTensors;
      // diffusers' draws: picture latents (VAE sample), then the start noise
      const g = new Generator().manualSeed(3);
      const x = normalize(photo);
      const imageLatents = pipe.encodeImageLatents(x, 1, g);
      const noise = tf.tidy(() => tf.transpose(g.randn([1, 4, SIZE / 8, SIZE / 8]), [0, 2, 3, 1]) as tf.Tensor4D);
      const sched = ddim();
      sched.setTimesteps(n);
      const { timesteps } = img2imgTimesteps(sched.timesteps, n, strength);
      const keep = tf.tidy(() => tf.sub(1, latentMask) as tf.Tensor4D);
      const seen: number[] = [];
      const { images: latents } = await pipe.generate({ prompt: "a cat", image: photo, maskImage: mask, strength,
        numInferenceSteps: n, generator: new Generator().manualSeed(3), outputType: "latent", keepUnmaskedPixels: false,
        callbackOnStepEnd: (i, t, s) => {
          seen.push(t);
          // z = (1 − m)·q(z_known | t_{i+1}) + m·z; the last step pastes the clean picture latents
          const known = i < timesteps.length - 1 ? pipe.scheduler.addNoise(imageLatents, noise, [timesteps[i + 1]]) as tf.Tensor4D : tf.clone(imageLatents);
          expectClose(where(s.latents, keep), where(known, keep), 1e-6, 0, `step ${i} latents outside the mask`);
          known.dispose();
        } });
      expect(seen).toEqual(timesteps);
      expect(latents.shape).toEqual([1, SIZE / 8, SIZE / 8, 4]);
      expect(where(latents, keep)).toEqual(where(imageLatents, keep)); // the end: the picture's own latents, exactly
      // inside the mask the latents are the model's, not the picture's
      const inside = tf.tidy(() => tf.max(tf.abs(tf.sub(latents, imageLatents).mul(latentMask))).dataSync()[0]);
      expect(inside).toBeGreaterThan(1e-3);
      tf.dispose([latents, imageLatents, noise, x, keep]);
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("without keepUnmaskedPixels the decoded pixels outside the mask are the VAE's, not the input's", async () => {
    pipe.scheduler = ddim();
    const before = tf.memory().numTensors;
    const opts = { prompt: "a cat", image: photo, maskImage: mask, numInferenceSteps: 2, outputType: "np" as const };
    const { images: kept } = await pipe.generate({ ...opts, generator: new Generator().manualSeed(1) });
    const { images: raw } = await pipe.generate({ ...opts, generator: new Generator().manualSeed(1), keepUnmaskedPixels: false });
    // the same run, pasted or not: equal inside the mask, different outside
    expectClose(where(kept, mask), where(raw, mask), 0, 0, "inside the mask");
    const keep = tf.tidy(() => tf.sub(1, mask) as tf.Tensor4D);
    const outside = tf.tidy(() => tf.max(tf.abs(tf.sub(kept, raw).mul(keep))).dataSync()[0]);
    expect(outside).toBeGreaterThan(1e-3);
    tf.dispose([kept, raw, keep]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("StableDiffusionInpaintPipeline, 9-channel inpainting UNet", () => {
  it("feeds the UNet [latents, mask, masked-picture latents] (9 channels) and returns the picture", async () => {
    const unet9 = UNet2DConditionModel.fromConfig({ ...pipe.unet.config, in_channels: 9 }, { init: "random", seed: 0 });
    const inpaint9 = new StableDiffusionInpaintPipeline({ vae: pipe.vae, textEncoder: pipe.textEncoder, tokenizer: pipe.tokenizer, unet: unet9, scheduler: ddim() });
    inpaint9.setProgressBarConfig({ disable: true });
    const inputs: tf.Tensor4D[] = [];
    const forward = unet9.forward.bind(unet9);
    unet9.forward = (sample, t, embeds, o) => {
      inputs.push(tf.keep(tf.clone(sample)));
      return forward(sample, t, embeds, o);
    };
    const before = tf.memory().numTensors;
    const { images } = await inpaint9.generate({ prompt: "a cat", image: photo, maskImage: mask, numInferenceSteps: 2,
      generator: new Generator().manualSeed(5), outputType: "np" });
    expect(images.shape).toEqual([1, SIZE, SIZE, 3]);
    expect(inputs.map((x) => x.shape)).toEqual([[2, 8, 8, 9], [2, 8, 8, 9]]); // CFG doubles the batch
    // strength 1: draws are the start noise, then the masked picture's VAE sample
    const g = new Generator().manualSeed(5);
    g.randn([1, 4, 8, 8]).dispose();
    const masked = tf.tidy(() => tf.mul(normalize(photo), tf.sub(1, mask)) as tf.Tensor4D);
    const maskedLatents = inpaint9.encodeImageLatents(masked, 1, g);
    for (const x of inputs) {
      for (const b of [0, 1]) {
        const item = tf.slice(x, [b, 0, 0, 0], [1, -1, -1, -1]);
        const [zt, m, z] = tf.split(item, [4, 1, 4], 3);
        expect(Array.from(m.dataSync())).toEqual(Array.from(latentMask.dataSync()));
        expectClose(z, maskedLatents, 1e-6, 0, "masked-picture latents channels");
        tf.dispose([item, zt, m, z]);
      }
    }
    tf.dispose([images, masked, maskedLatents, ...inputs]);
    expect(tf.memory().numTensors).toBe(before);
    unet9.dispose();
  });
});

describe("StableDiffusionInpaintPipeline errors", () => {
  it("rejects a mask of another size, a size not a multiple of 8, and a UNet with a wrong channel count, leaking nothing", async () => {
    pipe.scheduler = ddim();
    const before = tf.memory().numTensors;
    const small = rectMask(32, 8, 16);
    await expect(pipe.generate({ prompt: "x", image: photo, maskImage: small, numInferenceSteps: 1 }))
      .rejects.toThrow(/maskImage is 32x32 but image is 64x64/);
    const odd = tf.zeros([1, 60, 60, 3]);
    const oddMask = tf.zeros([1, 60, 60, 1]);
    await expect(pipe.generate({ prompt: "x", image: odd, maskImage: oddMask, numInferenceSteps: 1 }))
      .rejects.toThrow(/image is 60x60; its width and height must be multiples of 8/);
    const unet5 = UNet2DConditionModel.fromConfig({ ...pipe.unet.config, in_channels: 5 }, { init: "random", seed: 0 });
    const bad = new StableDiffusionInpaintPipeline({ vae: pipe.vae, textEncoder: pipe.textEncoder, tokenizer: pipe.tokenizer, unet: unet5, scheduler: ddim() });
    await expect(bad.generate({ prompt: "x", image: photo, maskImage: mask, numInferenceSteps: 1 }))
      .rejects.toThrow(/the UNet takes 5 input channels: inpainting needs 4 \(mask blending\) or 9/);
    unet5.dispose();
    tf.dispose([small, odd, oddMask]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rejects bad arguments found after the pictures were read, leaking nothing", async () => {
    pipe.scheduler = ddim();
    const before = tf.memory().numTensors;
    const base = { image: photo, maskImage: mask, numInferenceSteps: 4 };
    await expect(pipe.generate({ ...base, prompt: "a", strength: 0.1 })).rejects.toThrow(/strength 0.1 with 4 steps leaves no denoising step/);
    expect(tf.memory().numTensors).toBe(before);
    await expect(pipe.generate({ ...base, prompt: "a", numImagesPerPrompt: 2, generator: [new Generator()] }))
      .rejects.toThrow(/a list of 1 generators was given for 2 pictures/);
    expect(tf.memory().numTensors).toBe(before);
    const gray = tf.zeros([1, SIZE, SIZE, 1]);
    await expect(pipe.generate({ ...base, prompt: "a", image: gray })).rejects.toThrow(/image must have 3 channels/);
    gray.dispose();
    expect(tf.memory().numTensors).toBe(before);
    await expect(pipe.generate({ ...base, prompt: "a", strength: 0 })).rejects.toThrow(/strength must be in \(0, 1\]; got 0/);
    expect(tf.memory().numTensors).toBe(before);
  });

  // encodePrompt checks the negative prompts before it makes any tensor.
  it("frees everything when negativePrompt does not match the prompts", async () => {
    pipe.scheduler = ddim();
    const before = tf.memory().numTensors;
    await expect(pipe.generate({ image: photo, maskImage: mask, numInferenceSteps: 4, prompt: ["a", "b"], negativePrompt: ["c"] }))
      .rejects.toThrow(/negativePrompt has 1 entries but prompt has 2/);
    expect(tf.memory().numTensors).toBe(before);
  });
});

// As test/memory.test.ts checks for the text-to-image pipeline: after a call with model offload every weight is back
// in host memory (diffusers' maybe_free_model_hooks at the end of the call), here also after a failed call.
describe("StableDiffusionInpaintPipeline with model CPU offload", () => {
  it("releases the offload hooks at the end of generate, after a picture and after an error, as text-to-image does", async () => {
    pipe.scheduler = ddim();
    const weights = memoryReport(pipe).weightBytes;
    const memoryMode = pipe.memory;
    pipe.enableModelCpuOffload();
    try {
      expect(getOffloadMode(pipe)).toBe("model");
      const before = tf.memory().numTensors;
      const { images } = await pipe.generate({ prompt: "a cat", image: photo, maskImage: mask, numInferenceSteps: 2,
        generator: new Generator().manualSeed(0), outputType: "np" });
      expect(images.shape).toEqual([1, SIZE, SIZE, 3]);
      images.dispose();
      const after = memoryReport(pipe);
      expect([after.residentBytes, after.hostBytes]).toEqual([0, weights]); // no model left loaded
      expect(tf.memory().numTensors).toBe(before);
      // the generator check fails after the text encoder ran (and was loaded): its weights are freed all the same
      await expect(pipe.generate({ prompt: "a", image: photo, maskImage: mask, numInferenceSteps: 2, numImagesPerPrompt: 2,
        generator: [new Generator()] })).rejects.toThrow(/a list of 1 generators was given for 2 pictures/);
      const failed = memoryReport(pipe);
      expect([failed.residentBytes, failed.hostBytes]).toEqual([0, weights]);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      pipe.disableModelCpuOffload();
      pipe.memory = memoryMode;
    }
    expect(memoryReport(pipe).residentBytes).toBe(weights);
  });
});
