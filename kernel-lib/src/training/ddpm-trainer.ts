// Training an unconditional DDPM, as diffusers' examples/unconditional_image_generation/train_unconditional.py:
// each step takes a batch of clean pictures, draws eps and t (ddpm-loss.ts) and minimises L_simple over every
// UNet parameter; the loop, checkpoints (unet/, unet_ema/, optimizer, state) and resuming are trainer.ts'.
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import type { UNet2DModel } from "../models/unet-2d.js";
import type { DDPMScheduler } from "../schedulers/scheduling-ddpm.js";
import { DIFFUSERS_VERSION } from "../schedulers/scheduling-utils.js";
import { ddpmLoss, sampleNoiseAndTimesteps } from "./ddpm-loss.js";
import type { EMAModel, EMAModelOptions } from "./ema-model.js";
import { Trainer, type PreparedStep, type TrainerOptions } from "./trainer.js";

/** Clean pictures of step `step`: NHWC [batchSize, H, W, C] in [-1, 1] (a typed array or a tensor the trainer disposes). */
export type BatchSource = (step: number, batchSize: number) => Float32Array | tf.Tensor4D;

export interface DDPMTrainerOptions extends TrainerOptions {
  data: BatchSource;
  batchSize: number;
  /** EMA of the weights (default: diffusers' script: warmup, inv_gamma 1, power 3/4, max decay 0.9999); false = none */
  ema?: EMAModelOptions | false;
}

/** Checks a data callback's batch against the expected NHWC shape and makes it a tensor. */
export function batchTensor(where: string, d: Float32Array | tf.Tensor4D, shape: [number, number, number, number], step: number): tf.Tensor4D {
  if (d instanceof tf.Tensor) {
    if (d.shape.join() !== shape.join()) throw new Error(`${where}: the data callback returned shape [${d.shape}] for step ${step}; expected [${shape}] (NHWC, in [-1, 1])`);
    return d;
  }
  const n = shape.reduce((a, b) => a * b, 1);
  if (d.length !== n) throw new Error(`${where}: the data callback returned ${d.length} values for step ${step}; expected [${shape}] = ${n} (NHWC, in [-1, 1])`);
  return tf.tensor4d(d, shape);
}

export class DDPMTrainer extends Trainer {
  readonly opts: DDPMTrainerOptions & { seed: number };

  constructor(readonly unet: UNet2DModel, readonly scheduler: DDPMScheduler, opts: DDPMTrainerOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`DDPMTrainer: batchSize must be a positive integer, got ${opts.batchSize}`);
    const ema: Record<string, EMAModelOptions> = opts.ema === false ? {} : { unet: { useEmaWarmup: true, invGamma: 1, power: 3 / 4, decay: 0.9999, ...opts.ema } };
    super({ unet }, unet.namedParameters(), opts, ema);
    this.opts = { seed: 0, ...opts };
  }

  get ema(): EMAModel<UNet2DModel> | null {
    return (this.emas.get("unet") as EMAModel<UNet2DModel> | undefined) ?? null;
  }

  protected prepareStep(step: number, generator: Generator): PreparedStep {
    const c = this.unet.config as { in_channels: number; sample_size: number | number[] };
    const [h, w] = Array.isArray(c.sample_size) ? c.sample_size : [c.sample_size, c.sample_size];
    const x0 = batchTensor("DDPMTrainer", this.opts.data(step, this.opts.batchSize), [this.opts.batchSize, h, w, c.in_channels], step);
    const draw = sampleNoiseAndTimesteps(generator, x0.shape, this.scheduler.config.num_train_timesteps);
    return { loss: () => ddpmLoss(this.unet, this.scheduler, x0, draw), dispose: () => tf.dispose([x0, draw.noise]) };
  }

  /** The model to sample with: the EMA weights when there are some (as the script's pipeline), else the trained ones. */
  get samplingUnet(): UNet2DModel {
    return this.samplingModel<UNet2DModel>("unet");
  }
}

/** A DDPMPipeline folder in diffusers' layout: model_index.json, unet/ (config + safetensors), scheduler/. */
export function saveDDPMPipeline(dir: string, unet: UNet2DModel, scheduler: DDPMScheduler): void {
  fs.mkdirSync(dir, { recursive: true });
  const index = { _class_name: "DDPMPipeline", _diffusers_version: DIFFUSERS_VERSION, scheduler: ["diffusers", "DDPMScheduler"], unet: ["diffusers", "UNet2DModel"] };
  fs.writeFileSync(path.join(dir, "model_index.json"), JSON.stringify(index, null, 2) + "\n");
  unet.savePretrained(path.join(dir, "unet"));
  scheduler.savePretrained(path.join(dir, "scheduler"));
}
