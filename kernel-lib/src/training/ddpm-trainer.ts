// Training an unconditional DDPM, as diffusers' examples/unconditional_image_generation/train_unconditional.py:
// each step takes a batch of clean pictures, draws eps and t (ddpm-loss.ts), computes L_simple and its gradient
// with respect to every UNet parameter (tf.variableGrads over the Parameters' tf.Variables), clips the gradient
// norm, takes an AdamW step at the scheduled learning rate and updates the EMA of the weights.
//
// Reproducible and resumable: step k draws its noise and timesteps from Generator(seed, k) and asks the data
// callback for batch k, so a run restored from a checkpoint (weights, EMA, optimizer moments, step, loss history)
// continues exactly as if it had never stopped. Checkpoints use diffusers' folder names:
//   <dir>/checkpoint-<step>/{unet/, unet_ema/, optimizer.safetensors, trainer_state.json}
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { Generator } from "../random/generator.js";
import { UNet2DModel } from "../models/unet-2d.js";
import { loadStateDictFile, SAFETENSORS_WEIGHTS_NAME } from "../models/modeling-utils.js";
import type { DDPMScheduler } from "../schedulers/scheduling-ddpm.js";
import { DIFFUSERS_VERSION } from "../schedulers/scheduling-utils.js";
import { ProgressBar } from "../display/progress.js";
import { ddpmLoss, sampleNoiseAndTimesteps } from "./ddpm-loss.js";
import { AdamW } from "./adamw.js";
import { EMAModel, type EMAModelOptions } from "./ema-model.js";
import { clipGradNorm } from "./clip-grad-norm.js";
import { lrFactor, type LrScheduleName } from "./lr-schedule.js";
import { prepareTfjsForTraining } from "./tfjs-gradients.js";

/** Clean pictures of step `step`: NHWC [batchSize, H, W, C] in [-1, 1] (a typed array or a tensor the trainer disposes). */
export type BatchSource = (step: number, batchSize: number) => Float32Array | tf.Tensor4D;

export interface DDPMTrainerOptions {
  data: BatchSource;
  batchSize: number;
  /** seeds the per-step noise / timestep draws (default 0) */
  seed?: number;
  /** AdamW (diffusers' script defaults: lr 1e-4, betas (0.95, 0.999), weight decay 1e-6, eps 1e-8) */
  lr?: number;
  betas?: [number, number];
  weightDecay?: number;
  eps?: number;
  lrSchedule?: LrScheduleName;
  warmupSteps?: number;
  /** the run's length, for cosine / linear schedules */
  trainingSteps?: number;
  /** clip the global gradient norm (default 1, as accelerator.clip_grad_norm_ in the script); 0 = off */
  maxGradNorm?: number;
  /** EMA of the weights (default: diffusers' script: warmup, inv_gamma 1, power 3/4, max decay 0.9999); false = none */
  ema?: EMAModelOptions | false;
}

export interface TrainLogEntry {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** seconds this step took */
  seconds: number;
}

export const CHECKPOINT_PREFIX = "checkpoint-";
const STATE_FILE = "trainer_state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";

export class DDPMTrainer {
  readonly optimizer: AdamW;
  readonly ema: EMAModel<UNet2DModel> | null;
  /** optimizer steps taken so far (diffusers' global_step) */
  globalStep = 0;
  /** one entry per step */
  history: TrainLogEntry[] = [];
  /** training seconds summed over every session of this run */
  trainSeconds = 0;
  readonly opts: Required<Omit<DDPMTrainerOptions, "ema" | "trainingSteps">> & { ema: EMAModelOptions | false; trainingSteps?: number };

  constructor(readonly unet: UNet2DModel, readonly scheduler: DDPMScheduler, opts: DDPMTrainerOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`DDPMTrainer: batchSize must be a positive integer, got ${opts.batchSize}`);
    prepareTfjsForTraining();
    this.opts = {
      seed: 0, lr: 1e-4, betas: [0.95, 0.999], weightDecay: 1e-6, eps: 1e-8, lrSchedule: "constant_with_warmup", warmupSteps: 0,
      maxGradNorm: 1, ...opts, ema: opts.ema === false ? false : { useEmaWarmup: true, invGamma: 1, power: 3 / 4, decay: 0.9999, ...opts.ema },
    };
    this.optimizer = new AdamW(unet.namedParameters(), { lr: this.opts.lr, betas: this.opts.betas, weightDecay: this.opts.weightDecay, eps: this.opts.eps });
    this.ema = this.opts.ema === false ? null : new EMAModel(unet, this.opts.ema);
  }

  /** The learning rate of step `step` (0-based). */
  lrAt(step: number): number {
    return this.opts.lr * lrFactor(this.opts.lrSchedule, step, { warmupSteps: this.opts.warmupSteps, trainingSteps: this.opts.trainingSteps });
  }

  /** The clean batch of step `step` as a tensor, checked against the UNet's config. */
  private batch(step: number): tf.Tensor4D {
    const c = this.unet.config as { in_channels: number; sample_size: number | number[] };
    const [h, w] = Array.isArray(c.sample_size) ? c.sample_size : [c.sample_size, c.sample_size];
    const shape: [number, number, number, number] = [this.opts.batchSize, h, w, c.in_channels];
    const d = this.opts.data(step, this.opts.batchSize);
    if (d instanceof tf.Tensor) {
      if (d.shape.join() !== shape.join()) throw new Error(`DDPMTrainer: the data callback returned shape [${d.shape}] for step ${step}; expected [${shape}] (NHWC, in [-1, 1])`);
      return d;
    }
    if (d.length !== shape.reduce((a, b) => a * b, 1)) throw new Error(`DDPMTrainer: the data callback returned ${d.length} values for step ${step}; expected [${shape}] = ${shape.reduce((a, b) => a * b, 1)} (NHWC, in [-1, 1])`);
    return tf.tensor4d(d, shape);
  }

  /** One optimizer step; returns its log entry. Leaves tf.memory().numTensors unchanged. */
  trainStep(): TrainLogEntry {
    const t0 = performance.now();
    const step = this.globalStep;
    const x0 = this.batch(step);
    const generator = new Generator().manualSeed(BigInt(this.opts.seed) * 4294967296n + BigInt(step));
    const draw = sampleNoiseAndTimesteps(generator, x0.shape, this.scheduler.config.num_train_timesteps);
    const params = this.unet.namedParameters();
    const byVar = new Map(params.map(([name, p]) => [(p.value as tf.Variable).name, name]));
    let grads = new Map<string, tf.Tensor>();
    let lossValue: number;
    try {
      const { value, grads: g } = tf.variableGrads(() => ddpmLoss(this.unet, this.scheduler, x0, draw), params.map(([, p]) => p.value as tf.Variable));
      for (const [varName, t] of Object.entries(g)) grads.set(byVar.get(varName)!, t);
      lossValue = value.dataSync()[0];
      value.dispose();
    } finally {
      x0.dispose();
      draw.noise.dispose();
    }
    if (!Number.isFinite(lossValue)) {
      tf.dispose([...grads.values()]);
      throw new Error(`DDPMTrainer: the loss is ${lossValue} at step ${step}: lower the learning rate (now ${this.lrAt(step)}) or check the data range ([-1, 1])`);
    }
    let gradNorm = NaN;
    if (this.opts.maxGradNorm > 0) ({ grads, totalNorm: gradNorm } = clipGradNorm(grads, this.opts.maxGradNorm));
    const lr = this.lrAt(step);
    this.optimizer.step(grads, lr);
    tf.dispose([...grads.values()]);
    this.ema?.step(this.unet);
    this.globalStep++;
    const entry = { step: this.globalStep, loss: lossValue, lr, gradNorm, seconds: (performance.now() - t0) / 1000 };
    this.trainSeconds += entry.seconds;
    this.history.push(entry);
    return entry;
  }

  /**
   * Trains until `globalStep === steps` (or `maxSeconds` of this call have passed), calling `onStep` after each
   * step and writing a checkpoint into `checkpointDir` every `checkpointEvery` steps and at the end.
   */
  async train(opts: { steps: number; checkpointDir?: string; checkpointEvery?: number; checkpointsTotalLimit?: number; maxSeconds?: number; progress?: boolean;
    onStep?: (e: TrainLogEntry, trainer: DDPMTrainer) => void | Promise<void> }): Promise<void> {
    const start = performance.now();
    const bar = opts.progress === false ? null : new ProgressBar(opts.steps - this.globalStep, { desc: "training" });
    const first = this.globalStep;
    while (this.globalStep < opts.steps) {
      const e = this.trainStep();
      bar?.update(this.globalStep - first);
      await opts.onStep?.(e, this);
      const done = this.globalStep >= opts.steps || (opts.maxSeconds !== undefined && (performance.now() - start) / 1000 >= opts.maxSeconds);
      if (opts.checkpointDir && (done || (opts.checkpointEvery && this.globalStep % opts.checkpointEvery === 0))) {
        this.saveCheckpoint(opts.checkpointDir, { totalLimit: opts.checkpointsTotalLimit });
      }
      if (done) break;
    }
  }

  /** Writes `<dir>/checkpoint-<step>/` (via a temporary folder, then renamed) and keeps the newest `totalLimit`. */
  saveCheckpoint(dir: string, opts: { totalLimit?: number } = {}): string {
    const final = path.join(dir, `${CHECKPOINT_PREFIX}${this.globalStep}`);
    const tmp = `${final}.tmp`;
    fs.rmSync(tmp, { recursive: true, force: true });
    this.unet.savePretrained(path.join(tmp, "unet"));
    this.ema?.shadow.savePretrained(path.join(tmp, "unet_ema"));
    this.optimizer.save(path.join(tmp, OPTIMIZER_FILE));
    const state = { global_step: this.globalStep, train_seconds: this.trainSeconds, ema: this.ema?.stateDict() ?? null, options: { ...this.opts, data: undefined }, history: this.history };
    fs.writeFileSync(path.join(tmp, STATE_FILE), JSON.stringify(state) + "\n");
    fs.rmSync(final, { recursive: true, force: true });
    fs.renameSync(tmp, final);
    const limit = opts.totalLimit ?? 0;
    if (limit > 0) for (const old of listCheckpoints(dir).slice(0, -limit)) fs.rmSync(old.dir, { recursive: true, force: true });
    return final;
  }

  /** Restores weights, EMA, optimizer moments, step and history from a checkpoint folder (see saveCheckpoint). */
  loadCheckpoint(checkpoint: string): void {
    const stateFile = path.join(checkpoint, STATE_FILE);
    if (!fs.existsSync(stateFile)) throw new Error(`DDPMTrainer.loadCheckpoint: ${checkpoint} has no ${STATE_FILE}; pass a ${CHECKPOINT_PREFIX}<step> folder written by saveCheckpoint`);
    const state = JSON.parse(fs.readFileSync(stateFile, "utf8")) as { global_step: number; train_seconds: number; ema: { optimization_step: number } | null; history: TrainLogEntry[] };
    this.unet.loadStateDict(loadStateDictFile(path.join(checkpoint, "unet", SAFETENSORS_WEIGHTS_NAME)), path.join(checkpoint, "unet"));
    if (this.ema) {
      if (!state.ema) throw new Error(`DDPMTrainer.loadCheckpoint: ${checkpoint} was trained without EMA; resume with ema: false`);
      this.ema.shadow.loadStateDict(loadStateDictFile(path.join(checkpoint, "unet_ema", SAFETENSORS_WEIGHTS_NAME)), path.join(checkpoint, "unet_ema"));
      this.ema.optimizationStep = state.ema.optimization_step;
    }
    this.optimizer.load(path.join(checkpoint, OPTIMIZER_FILE));
    this.globalStep = state.global_step;
    this.trainSeconds = state.train_seconds;
    this.history = state.history;
  }

  /** The model to sample with: the EMA weights when there are some (as the script's pipeline), else the trained ones. */
  get samplingUnet(): UNet2DModel {
    return this.ema?.shadow ?? this.unet;
  }

  dispose(): void {
    this.optimizer.dispose();
    this.ema?.dispose();
  }
}

/** The checkpoint-<step> folders of `dir`, oldest first. */
export function listCheckpoints(dir: string): { dir: string; step: number }[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .filter((f) => f.startsWith(CHECKPOINT_PREFIX) && /^\d+$/.test(f.slice(CHECKPOINT_PREFIX.length)))
    .map((f) => ({ dir: path.join(dir, f), step: Number(f.slice(CHECKPOINT_PREFIX.length)) }))
    .sort((a, b) => a.step - b.step);
}

/** A DDPMPipeline folder in diffusers' layout: model_index.json, unet/ (config + safetensors), scheduler/. */
export function saveDDPMPipeline(dir: string, unet: UNet2DModel, scheduler: DDPMScheduler): void {
  fs.mkdirSync(dir, { recursive: true });
  const index = { _class_name: "DDPMPipeline", _diffusers_version: DIFFUSERS_VERSION, scheduler: ["diffusers", "DDPMScheduler"], unet: ["diffusers", "UNet2DModel"] };
  fs.writeFileSync(path.join(dir, "model_index.json"), JSON.stringify(index, null, 2) + "\n");
  unet.savePretrained(path.join(dir, "unet"));
  scheduler.savePretrained(path.join(dir, "scheduler"));
}
