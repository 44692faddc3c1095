// What every training run of the kit shares, as the loop of diffusers' training scripts (train_unconditional.py,
// train_text_to_image.py, train_text_to_image_lora.py): each step computes a loss and its gradient with respect to
// the trainable parameters (tf.variableGrads over the Parameters' tf.Variables), clips the global gradient norm,
// takes an AdamW step at the scheduled learning rate and updates the EMA copies of the weights.
//
// Reproducible and resumable: step k draws its random numbers from Generator(seed, k) and asks for batch k, so a
// run restored from a checkpoint (weights, EMA, optimizer moments, step, loss history) continues exactly as if it
// had never stopped. Checkpoints use diffusers' folder names:
//   <dir>/checkpoint-<step>/{<model>/, <model>_ema/, optimizer.safetensors, trainer_state.json}
// A subclass says what one step's loss is (prepareStep) and, when its trainable weights are not whole models
// (LoRA), how they are saved (saveWeights / loadWeights).
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { Generator } from "../random/generator.js";
import type { Parameter } from "../nn/module.js";
import { loadStateDictFile, SAFETENSORS_WEIGHTS_NAME, type ModelMixin } from "../models/modeling-utils.js";
import { ProgressBar } from "../display/progress.js";
import { AdamW } from "./adamw.js";
import { EMAModel, type EMAModelOptions } from "./ema-model.js";
import { clipGradNorm } from "./clip-grad-norm.js";
import { lrFactor, type LrScheduleName } from "./lr-schedule.js";
import { prepareTfjsForTraining } from "../runtime/gradient-fixes.js";

export interface TrainerOptions {
  /** seeds the per-step random draws (default 0) */
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
  /** clip the global gradient norm (default 1, as accelerator.clip_grad_norm_ in the scripts); 0 = off */
  maxGradNorm?: number;
}

export interface TrainLogEntry {
  step: number;
  loss: number;
  lr: number;
  gradNorm: number;
  /** seconds this step took */
  seconds: number;
}

/** One step's work: the loss as a function of the trainable weights (called inside tf.variableGrads), then clean-up. */
export interface PreparedStep {
  loss: () => tf.Scalar;
  dispose: () => void;
}

export const CHECKPOINT_PREFIX = "checkpoint-";
const STATE_FILE = "trainer_state.json";
const OPTIMIZER_FILE = "optimizer.safetensors";

type ResolvedOptions = Required<Omit<TrainerOptions, "trainingSteps">> & { trainingSteps?: number };

export abstract class Trainer {
  readonly optimizer: AdamW;
  /** EMA copies, by model name (diffusers' --use_ema: `<name>_ema/` in checkpoints) */
  readonly emas = new Map<string, EMAModel<ModelMixin>>();
  /** optimizer steps taken so far (diffusers' global_step) */
  globalStep = 0;
  /** one entry per step */
  history: TrainLogEntry[] = [];
  /** training seconds summed over every session of this run */
  trainSeconds = 0;
  readonly baseOptions: ResolvedOptions;

  /**
   * `models`: the models whose weights checkpoints save (by folder name); `params`: the trainable [name, Parameter]
   * pairs (names unique across models); `ema`: the models to keep an EMA of, with its options.
   */
  constructor(readonly models: Record<string, ModelMixin>, readonly params: [string, Parameter][], opts: TrainerOptions,
    ema: Record<string, EMAModelOptions> = {}) {
    prepareTfjsForTraining();
    if (params.length === 0) throw new Error(`${this.constructor.name}: no trainable parameters`);
    this.baseOptions = { seed: 0, lr: 1e-4, betas: [0.95, 0.999], weightDecay: 1e-6, eps: 1e-8, lrSchedule: "constant_with_warmup", warmupSteps: 0, maxGradNorm: 1, ...opts };
    this.optimizer = new AdamW(params, { lr: this.baseOptions.lr, betas: this.baseOptions.betas, weightDecay: this.baseOptions.weightDecay, eps: this.baseOptions.eps });
    for (const [name, o] of Object.entries(ema)) {
      const model = models[name];
      if (!model) throw new Error(`${this.constructor.name}: an EMA was asked for "${name}", which is not one of the models (${Object.keys(models).join(", ")})`);
      this.emas.set(name, new EMAModel(model, o));
    }
  }

  /** The loss of step `step`, drawing its random numbers from `generator` (Generator(seed, step)). */
  protected abstract prepareStep(step: number, generator: Generator): PreparedStep;

  /** The learning rate of step `step` (0-based). */
  lrAt(step: number): number {
    const o = this.baseOptions;
    return o.lr * lrFactor(o.lrSchedule, step, { warmupSteps: o.warmupSteps, trainingSteps: o.trainingSteps });
  }

  /** One optimizer step; returns its log entry. Leaves tf.memory().numTensors unchanged. */
  trainStep(): TrainLogEntry {
    const t0 = performance.now();
    const step = this.globalStep;
    const generator = new Generator().manualSeed(BigInt(this.baseOptions.seed) * 4294967296n + BigInt(step));
    const prepared = this.prepareStep(step, generator);
    const byVar = new Map(this.params.map(([name, p]) => [(p.value as tf.Variable).name, name]));
    let grads = new Map<string, tf.Tensor>();
    let lossValue: number;
    try {
      const { value, grads: g } = tf.variableGrads(prepared.loss, this.params.map(([, p]) => p.value as tf.Variable));
      for (const [varName, t] of Object.entries(g)) grads.set(byVar.get(varName)!, t);
      lossValue = value.dataSync()[0];
      value.dispose();
    } finally {
      prepared.dispose();
    }
    if (!Number.isFinite(lossValue)) {
      tf.dispose([...grads.values()]);
      throw new Error(`${this.constructor.name}: the loss is ${lossValue} at step ${step}: lower the learning rate (now ${this.lrAt(step)}) or check the data range ([-1, 1])`);
    }
    let gradNorm = NaN;
    if (this.baseOptions.maxGradNorm > 0) ({ grads, totalNorm: gradNorm } = clipGradNorm(grads, this.baseOptions.maxGradNorm));
    const lr = this.lrAt(step);
    this.optimizer.step(grads, lr);
    tf.dispose([...grads.values()]);
    for (const [name, ema] of this.emas) ema.step(this.models[name]);
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
    onStep?: (e: TrainLogEntry, trainer: Trainer) => void | Promise<void> }): Promise<void> {
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

  /** Writes the trainable weights into a checkpoint folder (default: each model's savePretrained). */
  protected saveWeights(dir: string): void {
    for (const [name, model] of Object.entries(this.models)) model.savePretrained(path.join(dir, name));
  }

  /** Reads what saveWeights wrote. */
  protected loadWeights(dir: string): void {
    for (const [name, model] of Object.entries(this.models)) loadSaved(model, path.join(dir, name));
  }

  /** Writes `<dir>/checkpoint-<step>/` (via a temporary folder, then renamed) and keeps the newest `totalLimit`. */
  saveCheckpoint(dir: string, opts: { totalLimit?: number } = {}): string {
    const final = path.join(dir, `${CHECKPOINT_PREFIX}${this.globalStep}`);
    const tmp = `${final}.tmp`;
    fs.rmSync(tmp, { recursive: true, force: true });
    fs.mkdirSync(tmp, { recursive: true });
    this.saveWeights(tmp);
    for (const [name, ema] of this.emas) ema.shadow.savePretrained(path.join(tmp, `${name}_ema`));
    this.optimizer.save(path.join(tmp, OPTIMIZER_FILE));
    const state = {
      global_step: this.globalStep, train_seconds: this.trainSeconds,
      ema: Object.fromEntries([...this.emas].map(([name, e]) => [name, e.stateDict()])),
      options: this.baseOptions, history: this.history,
    };
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
    if (!fs.existsSync(stateFile)) throw new Error(`${this.constructor.name}.loadCheckpoint: ${checkpoint} has no ${STATE_FILE}; pass a ${CHECKPOINT_PREFIX}<step> folder written by saveCheckpoint`);
    const state = JSON.parse(fs.readFileSync(stateFile, "utf8")) as { global_step: number; train_seconds: number; ema: Record<string, { optimization_step: number }>; history: TrainLogEntry[] };
    this.loadWeights(checkpoint);
    for (const [name, ema] of this.emas) {
      const s = state.ema?.[name];
      if (!s) throw new Error(`${this.constructor.name}.loadCheckpoint: ${checkpoint} has no EMA of "${name}"; resume with the EMA settings the run was started with`);
      loadSaved(ema.shadow, path.join(checkpoint, `${name}_ema`));
      ema.optimizationStep = s.optimization_step;
    }
    this.optimizer.load(path.join(checkpoint, OPTIMIZER_FILE));
    this.globalStep = state.global_step;
    this.trainSeconds = state.train_seconds;
    this.history = state.history;
  }

  /** A model to sample with: its EMA weights when there are some (as the scripts' final pipeline), else the trained ones. */
  samplingModel<M extends ModelMixin>(name: string): M {
    return (this.emas.get(name)?.shadow ?? this.models[name]) as M;
  }

  dispose(): void {
    this.optimizer.dispose();
    for (const ema of this.emas.values()) ema.dispose();
  }
}

/** Loads into `model` the weights its savePretrained wrote into `dir`. */
function loadSaved(model: ModelMixin, dir: string): void {
  const cls = model.constructor as unknown as { safetensorsWeightsName?: string };
  model.loadStateDict(loadStateDictFile(path.join(dir, cls.safetensorsWeightsName ?? SAFETENSORS_WEIGHTS_NAME)), dir);
}

/** The checkpoint-<step> folders of `dir`, oldest first. */
export function listCheckpoints(dir: string): { dir: string; step: number }[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir)
    .filter((f) => f.startsWith(CHECKPOINT_PREFIX) && /^\d+$/.test(f.slice(CHECKPOINT_PREFIX.length)))
    .map((f) => ({ dir: path.join(dir, f), step: Number(f.slice(CHECKPOINT_PREFIX.length)) }))
    .sort((a, b) => a.step - b.step);
}
