// DDPMPipeline (diffusers/pipelines/ddpm/pipeline_ddpm.py): start from Gaussian noise x_T and apply
// the scheduler's reverse step with the UNet's noise prediction until x_0 (Ho et al. 2020, Alg. 2).
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import { randnLikeSample } from "../schedulers/noise.js";
import type { UNet2DModel } from "../models/unet-2d.js";
import type { DDPMScheduler } from "../schedulers/scheduling-ddpm.js";
import type { DDIMScheduler } from "../schedulers/scheduling-ddim.js";
import { DiffusionPipelineBase, postprocessImages, type OutputType } from "./pipeline-utils.js";
import { LivePreview } from "../display/preview.js";
import { loadPipelineComponents, type LoadOptions } from "./pipeline-loading.js";
import { checkInteger, MAX_PICTURES_PER_CALL } from "../utils/check-argument.js";
import { checkDenoiseStep } from "../utils/check-finite.js";

export interface DDPMPipelineCallOptions {
  batchSize?: number;
  numInferenceSteps?: number;
  generator?: Generator | Generator[];
  outputType?: OutputType;
  /** called after every step with (step index, timestep, current x_t); return false to stop early */
  callbackOnStepEnd?: (step: number, t: number, latents: tf.Tensor4D) => void | boolean | Promise<void | boolean>;
  /** redraw a live preview every N steps in a notebook (0 = off) */
  previewEvery?: number;
}

export interface DDPMPipelineOutput<T = tf.Tensor4D | Buffer[]> { images: T }

type PixelScheduler = DDPMScheduler | DDIMScheduler;

export class DDPMPipeline extends DiffusionPipelineBase {
  unet: UNet2DModel;
  scheduler: PixelScheduler;

  constructor({ unet, scheduler }: { unet: UNet2DModel; scheduler: PixelScheduler }) {
    super();
    this.unet = unet;
    this.scheduler = scheduler;
  }

  /** Loads a DDPM pipeline folder or repo (model_index.json with unet/ and scheduler/, or the old flat layout). */
  static async fromPretrained(idOrPath: string, opts: LoadOptions = {}): Promise<DDPMPipeline> {
    const components = await loadPipelineComponents(idOrPath, ["unet", "scheduler"], opts);
    const pipe = new DDPMPipeline(components as unknown as { unet: UNet2DModel; scheduler: PixelScheduler });
    pipe.memory = opts.memory ?? "auto";
    pipe.memoryBudgetBytes = opts.memoryBudgetBytes ?? null;
    return pipe;
  }

  /** Plans the memory of a call making `batchSize` pictures (pipeline-utils.ts planMemory). */
  private planMemoryFor(batchSize: number): void {
    const cfg = this.unet.config as { in_channels: number; sample_size: number | number[] };
    const [h, w] = Array.isArray(cfg.sample_size) ? cfg.sample_size : [cfg.sample_size, cfg.sample_size];
    this.planMemory(`DDPMPipeline ${w}x${h}, ${batchSize} picture${batchSize === 1 ? "" : "s"}`,
      [{ component: "unet", call: { kind: "unet", sample: [batchSize, h, w, cfg.in_channels] } }]);
  }

  /** diffusers: `pipe(batch_size, generator, num_inference_steps, output_type)`; returns `{ images }`. */
  async generate(opts: DDPMPipelineCallOptions & { outputType: "np" | "tensor" }): Promise<DDPMPipelineOutput<tf.Tensor4D>>;
  async generate(opts?: DDPMPipelineCallOptions): Promise<DDPMPipelineOutput>;
  async generate(opts: DDPMPipelineCallOptions = {}): Promise<DDPMPipelineOutput> {
    // every number checked before any tensor is made (a bad one leaks nothing)
    const where = "DDPMPipeline.generate";
    const batchSize = checkInteger(where, "batchSize", opts.batchSize ?? 1, 1, MAX_PICTURES_PER_CALL);
    const T = this.scheduler.config.num_train_timesteps as number;
    const steps = checkInteger(where, "numInferenceSteps", opts.numInferenceSteps ?? 1000, 1, T,
      `The scheduler (${this.scheduler.constructor.name}) knows ${T} training timesteps`);
    if (opts.previewEvery !== undefined) checkInteger(where, "previewEvery", opts.previewEvery, 0, Number.MAX_SAFE_INTEGER);
    const outputType = opts.outputType ?? "png";
    const cfg = this.unet.config as { in_channels: number; sample_size: number | number[] };
    const [h, w] = Array.isArray(cfg.sample_size) ? cfg.sample_size : [cfg.sample_size, cfg.sample_size];
    if (Array.isArray(opts.generator) && opts.generator.length !== batchSize) {
      throw new Error(`generator: a list of ${opts.generator.length} generators was given for batchSize ${batchSize}; pass one per picture or a single Generator`);
    }
    this.planMemoryFor(batchSize);
    this.scheduler.setTimesteps(steps);
    // diffusers draws the NCHW shape; we draw the same numbers and move channels last.
    let image = randnLikeSample([batchSize, h, w, cfg.in_channels], opts.generator);
    const timesteps = this.scheduler.timesteps;
    const bar = this.progressBar(timesteps.length);
    const preview = opts.previewEvery ? new LivePreview({ every: opts.previewEvery, total: timesteps.length, range: "-1,1" }) : null;
    try {
      for (let i = 0; i < timesteps.length; i++) {
        const t = timesteps[i];
        const modelOutput = tf.tidy(() => this.unet.forward(image, t).sample);
        let x0: tf.Tensor | undefined;
        try {
          const out = this.scheduler.step(modelOutput, t, image, { generator: opts.generator }); // one or one per picture
          image.dispose();
          image = out.prevSample as tf.Tensor4D;
          x0 = out.predOriginalSample;
          // NaN / Infinity stops the loop at the step that made it, naming the unet or the scheduler
          checkDenoiseStep({ where, index: i, total: timesteps.length, timestep: t, scheduler: this.scheduler.constructor.name,
            modelOutputIs: "noise prediction" }, modelOutput, image);
          if (preview) await preview.update(i, t, image, x0);
        } finally {
          modelOutput.dispose();
          x0?.dispose();
        }
        bar.update(i + 1);
        if (opts.callbackOnStepEnd && (await opts.callbackOnStepEnd(i, t, image)) === false) break;
      }
    } catch (e) {
      image.dispose();
      throw e;
    }
    // x in [-1, 1] -> [0, 1] (diffusers: (image / 2 + 0.5).clamp(0, 1))
    const pictures = tf.tidy(() => image.div(2).add(0.5).clipByValue(0, 1)) as tf.Tensor4D;
    image.dispose();
    return { images: await postprocessImages(pictures, outputType) };
  }

  dispose(): void {
    this.unet.dispose();
  }
}
