// Bad numbers given to the pipelines (issue 13, section 1), on the tiny fixture pipelines: each call fails
// before any tensor is made, with an error that names the argument, what was given and what is allowed;
// tf.memory().numTensors is unchanged after it and the next valid call works. A NaN / Infinity that a
// component produces mid-loop stops the loop at that step, naming the step and the component.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline, type StableDiffusionCallOptions } from "../src/pipelines/pipeline-stable-diffusion.js";
import { StableDiffusionImg2ImgPipeline } from "../src/pipelines/pipeline-stable-diffusion-img2img.js";
import { StableDiffusionInpaintPipeline } from "../src/pipelines/pipeline-stable-diffusion-inpaint.js";
import { DiffusionPipeline } from "../src/pipelines/diffusion-pipeline.js";
import { DDPMPipeline } from "../src/pipelines/pipeline-ddpm.js";
import { UNet2DModel } from "../src/models/unet-2d.js";
import { UNet2DConditionModel } from "../src/models/unet-2d-condition.js";
import { AutoencoderKL } from "../src/models/autoencoder-kl.js";
import { CLIPTextModel } from "../src/models/clip-text-model.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { DPMSolverMultistepScheduler } from "../src/schedulers/scheduling-dpmsolver-multistep.js";
import { readConfigFile } from "../src/io/config.js";
import type { ModelClass, ModelMixin } from "../src/models/modeling-utils.js";
import { fixture } from "./helpers.js";

let pipe: StableDiffusionPipeline;
let ddpm: DDPMPipeline;
const OK: StableDiffusionCallOptions = { prompt: "a cat", numInferenceSteps: 2, outputType: "np" };

beforeAll(async () => {
  pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(fixture("sd-tiny-pipe"));
  pipe.setProgressBarConfig({ disable: true });
  const unet = await UNet2DModel.fromPretrained(fixture("models/unet-ddpm-tiny"));
  const scheduler = DDPMScheduler.fromConfig(readConfigFile(fixture("configs/ddpm-cat-256/scheduler_config.json")));
  ddpm = new DDPMPipeline({ unet, scheduler });
  ddpm.setProgressBarConfig({ disable: true });
});
afterAll(() => {
  pipe.dispose();
  ddpm.dispose();
});

/**
 * tf.memory().numTensors once the scheduler's kept history is freed: PNDM keeps its last model outputs
 * after a loop until the next setTimesteps or dispose(); a failed loop frees them (schedulers' dispose()).
 */
function tensorCount(p: { scheduler: { dispose(): void } } = pipe): number {
  p.scheduler.dispose();
  return tf.memory().numTensors;
}

/** A valid call still works (and leaves no tensor behind once its output is freed). */
async function expectValidCallWorks(p: StableDiffusionPipeline = pipe): Promise<void> {
  const before = tensorCount(p);
  const { images } = await p.generate(OK as StableDiffusionCallOptions & { outputType: "np" });
  expect(images.shape).toEqual([1, 64, 64, 3]);
  expect(Array.from(images.dataSync()).every(Number.isFinite)).toBe(true);
  images.dispose();
  expect(tensorCount(p)).toBe(before);
}

/** `call` rejects with `pattern`, leaves tf.memory().numTensors unchanged, and the next valid call works. */
async function expectCleanRejection(call: () => Promise<unknown>, pattern: RegExp, p: StableDiffusionPipeline = pipe): Promise<void> {
  const before = tensorCount(p);
  await expect(call()).rejects.toThrow(pattern);
  expect(tensorCount(p)).toBe(before);
  await expectValidCallWorks(p);
}

describe("StableDiffusionPipeline.generate: arguments checked before any tensor", () => {
  it("numInferenceSteps 1e9 (the PNDM default scheduler used to abort Node), 0, 2.5, NaN, 1001", async () => {
    for (const bad of [1e9, 0, 2.5, NaN, 1001]) {
      await expectCleanRejection(() => pipe.generate({ ...OK, numInferenceSteps: bad }),
        new RegExp(`generate: numInferenceSteps must be an integer in \\[1, 1000\\]; got ${bad}`));
    }
  });

  it("guidanceScale NaN (silently unguided) and Infinity (silently black)", async () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      await expectCleanRejection(() => pipe.generate({ ...OK, guidanceScale: bad }), new RegExp(`guidanceScale must be a finite number; got ${bad}`));
    }
  });

  it("numImagesPerPrompt -1 (was 'memory access out of bounds', breaking the next call), 0 (was 'divide by zero'), 1.5, 1e9", async () => {
    for (const bad of [-1, 0, 1.5, 1e9]) {
      await expectCleanRejection(() => pipe.generate({ ...OK, numImagesPerPrompt: bad }),
        new RegExp(`numImagesPerPrompt must be an integer in \\[1, 1024\\]; got ${bad}`));
    }
  });

  it("height / width not positive multiples of the VAE's factor, or too large", async () => {
    for (const [key, bad] of [["height", 60], ["height", 1e9], ["width", -8], ["width", NaN], ["width", 0]] as const) {
      await expectCleanRejection(() => pipe.generate({ ...OK, [key]: bad }),
        new RegExp(`${key} must be a positive multiple of 8 .*at most 16384; got ${bad}\\. Try \\d+`));
    }
  });

  it("eta outside [0, 1], a NaN LoRA scale (was a black picture)", async () => {
    for (const bad of [NaN, -0.5, 2]) {
      await expectCleanRejection(() => pipe.generate({ ...OK, eta: bad }), new RegExp(`eta must be a finite number in \\[0, 1\\]; got ${bad}`));
    }
    for (const bad of [NaN, Infinity]) {
      await expectCleanRejection(() => pipe.generate({ ...OK, crossAttentionKwargs: { scale: bad } }),
        new RegExp(`crossAttentionKwargs.scale must be a finite number; got ${bad}`));
    }
  });

  it("a prompt that is not text (a numeric prompt was a bare TypeError)", async () => {
    const bads: unknown[] = [42, [], ["a", 3], { text: "a" }];
    for (const bad of bads) {
      await expectCleanRejection(() => pipe.generate({ ...OK, prompt: bad as string }), /prompt must be a string or a non-empty array of strings; got /);
    }
    await expectCleanRejection(() => pipe.generate({ ...OK, negativePrompt: 7 as unknown as string }),
      /negativePrompt must be a string or a non-empty array of strings; got 7/);
  });

  it("latents or prompt embeddings holding NaN", async () => {
    const latents = tf.fill([1, 8, 8, 4], NaN) as tf.Tensor4D;
    await expectCleanRejection(() => pipe.generate({ ...OK, latents }), /latents must hold only finite numbers; got NaN or Infinity/);
    latents.dispose();
  });
});

describe("img2img and inpainting: strength and picture values", () => {
  let img2img: StableDiffusionImg2ImgPipeline;
  let inpaint: StableDiffusionInpaintPipeline;
  beforeAll(() => {
    img2img = new StableDiffusionImg2ImgPipeline(pipe);
    inpaint = new StableDiffusionInpaintPipeline(pipe);
    for (const p of [img2img, inpaint]) p.setProgressBarConfig({ disable: true });
  });

  it("strength outside [0, 1] or NaN", async () => {
    const image = tf.fill([1, 64, 64, 3], 0.5);
    for (const bad of [1.5, -0.1, NaN]) {
      await expectCleanRejection(() => img2img.generate({ ...OK, image, strength: bad }), new RegExp(`strength must be in \\[0, 1\\]; got ${bad}`));
    }
    image.dispose();
  });

  it("picture values in [0, 255] or [-1, 1] (diffusers warns) or NaN: a clear error saying how to rescale", async () => {
    const bytes = tf.fill([1, 64, 64, 3], 200);
    await expectCleanRejection(() => img2img.generate({ ...OK, image: bytes }),
      /image values must be in \[0, 1\].*got values in \[200, 200\]\. They look like 0\.\.255 pixel values: divide the tensor by 255/);
    const signed = tf.fill([1, 64, 64, 3], -0.5);
    await expectCleanRejection(() => img2img.generate({ ...OK, image: signed }), /image values must be in \[0, 1\].*\[-1, 1\] range/);
    const nan = tf.fill([1, 64, 64, 3], NaN);
    await expectCleanRejection(() => img2img.generate({ ...OK, image: nan }), /image must hold only finite numbers/);
    const gray = tf.fill([1, 64, 64, 3], 0.5);
    await expectCleanRejection(() => inpaint.generate({ ...OK, image: gray, maskImage: bytes }), /maskImage values must be in \[0, 1\]/);
    await expectCleanRejection(() => inpaint.generate({ ...OK, image: gray, maskImage: gray, numImagesPerPrompt: 0 }), /numImagesPerPrompt must be an integer/);
    tf.dispose([bytes, signed, nan, gray]);
  });
});

describe("NaN / Infinity produced mid-loop: stopped at that step, the component named", () => {
  /** Replaces `obj[key]` for one test (the prototype's method comes back on delete). */
  async function withPatched<T extends object>(obj: T, key: keyof T, fn: unknown, body: () => Promise<void>): Promise<void> {
    (obj as Record<string, unknown>)[key as string] = fn;
    try {
      await body();
    } finally {
      delete (obj as Record<string, unknown>)[key as string];
    }
  }

  it("the unet's output at step 2 of 3", async () => {
    const forward = pipe.unet.forward.bind(pipe.unet);
    let calls = 0;
    const poisoned = (...args: Parameters<typeof forward>) => {
      const out = forward(...args);
      return calls++ === 1 ? { ...out, sample: tf.mul(out.sample, NaN) } : out; // inside predictNoise's tidy
    };
    await withPatched(pipe.unet, "forward", poisoned, async () => {
      const before = tensorCount();
      await expect(pipe.generate({ ...OK, numInferenceSteps: 3 })).rejects.toThrow(
        /generate: step 2 of 4 \(timestep \d+\): the unet's output holds NaN or Infinity \(noise prediction after classifier-free guidance, guidanceScale 7.5\)/);
      expect(tensorCount()).toBe(before);
    });
    await expectValidCallWorks();
  });

  it("the scheduler's step (a multistep history is freed too)", async () => {
    const dpm = new StableDiffusionPipeline({ ...pipe, scheduler: DPMSolverMultistepScheduler.fromConfig(pipe.scheduler.config) });
    dpm.setProgressBarConfig({ disable: true });
    const step = dpm.scheduler.step.bind(dpm.scheduler);
    let calls = 0;
    const poisoned = (...args: Parameters<typeof step>) => {
      const out = step(...args);
      if (calls++ !== 1) return out;
      const bad = tf.mul(out.prevSample, Infinity);
      out.prevSample.dispose();
      return { prevSample: bad };
    };
    await withPatched(dpm.scheduler, "step", poisoned, async () => {
      const before = tensorCount(dpm);
      await expect(dpm.generate({ ...OK, numInferenceSteps: 3 })).rejects.toThrow(
        /step 2 of 3 \(timestep \d+\): the scheduler DPMSolverMultistepScheduler turned a finite unet output into NaN or Infinity/);
      expect(tensorCount(dpm)).toBe(before);
    });
    await expectValidCallWorks(dpm);
  });

  it("the vae's decode", async () => {
    const decode = pipe.vae.decode.bind(pipe.vae);
    const poisoned = (...args: Parameters<typeof decode>) => {
      const out = decode(...args);
      return { ...out, sample: tf.div(out.sample, 0) }; // inside decodeLatents' tidy
    };
    await withPatched(pipe.vae, "decode", poisoned, async () => {
      const before = tensorCount();
      await expect(pipe.generate(OK)).rejects.toThrow(/decodeLatents: the vae decoded NaN or Infinity from finite latents/);
      expect(tensorCount()).toBe(before);
    });
    await expectValidCallWorks();
  });
});

describe("DDPMPipeline.generate", () => {
  it("batchSize -1, 0, 1e9 and numInferenceSteps 1e9 fail before any tensor; the next call works", async () => {
    for (const [opts, pattern] of [
      [{ batchSize: -1 }, /batchSize must be an integer in \[1, 1024\]; got -1/],
      [{ batchSize: 0 }, /batchSize must be an integer in \[1, 1024\]; got 0/],
      [{ batchSize: 1e9 }, /batchSize must be an integer in \[1, 1024\]; got 1000000000/],
      [{ numInferenceSteps: 1e9 }, /numInferenceSteps must be an integer in \[1, 1000\]; got 1000000000/],
      [{ numInferenceSteps: NaN }, /numInferenceSteps must be an integer in \[1, 1000\]; got NaN/],
    ] as const) {
      const before = tf.memory().numTensors;
      await expect(ddpm.generate(opts)).rejects.toThrow(pattern);
      expect(tf.memory().numTensors).toBe(before);
    }
    const { images } = await ddpm.generate({ numInferenceSteps: 2, outputType: "np" });
    expect(Array.from(images.dataSync()).every(Number.isFinite)).toBe(true);
    images.dispose();
  });
});

describe("model configs: sizes bounded before any layer is built", () => {
  const tiny = (part: string) => readConfigFile(fixture("sd-tiny-pipe", part, "config.json"));
  // each class's fromConfig, typed for any model class (a union of the classes has no common `this`)
  const MODELS: { cls: ModelClass<ModelMixin> & Pick<typeof ModelMixin, "fromConfig">; config: () => Record<string, unknown> }[] = [
    { cls: UNet2DConditionModel, config: () => tiny("unet") },
    { cls: AutoencoderKL, config: () => tiny("vae") },
    { cls: CLIPTextModel, config: () => tiny("text_encoder") },
    { cls: UNet2DModel, config: () => readConfigFile(fixture("models/unet-ddpm-tiny/config.json")) },
  ];
  for (const { cls, config } of MODELS) {
    it(`${cls.className}: a huge layer count or width, a NaN float fail at once; the fixture's config still builds`, () => {
      const layers = cls === CLIPTextModel ? "num_hidden_layers" : "layers_per_block";
      const width = cls === CLIPTextModel ? "hidden_size" : "block_out_channels";
      const floatKey = cls === CLIPTextModel ? "layer_norm_eps" : cls === AutoencoderKL ? "scaling_factor" : "norm_eps";
      const hugeWidth = cls === CLIPTextModel ? 1e9 : [1e9];
      const before = tf.memory().numTensors;
      expect(() => cls.fromConfig({ ...config(), [layers]: 1e9 })).toThrow(new RegExp(`${cls.className} config: "${layers}" must be an integer in \\[1, \\d+\\]; got 1000000000`));
      expect(() => cls.fromConfig({ ...config(), [layers]: 0 })).toThrow(new RegExp(`"${layers}" must be an integer in \\[1, `));
      expect(() => cls.fromConfig({ ...config(), [width]: hugeWidth })).toThrow(new RegExp(`"${width}"(\\[0\\])? must be an integer in \\[1, 16384\\]; got 1000000000`));
      expect(() => cls.fromConfig({ ...config(), [floatKey]: NaN })).toThrow(new RegExp(`"${floatKey}" must be a finite number; got NaN`));
      expect(tf.memory().numTensors).toBe(before);
      const model = cls.fromConfig(config());
      expect(model.config[layers]).toBe(config()[layers]);
      model.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
