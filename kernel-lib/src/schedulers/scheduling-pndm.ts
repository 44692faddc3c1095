// PNDMScheduler (Liu et al. 2022, "Pseudo Numerical Methods for Diffusion Models on Manifolds"),
// as diffusers 0.27.2 scheduling_pndm.py. The transfer x_t -> x_{t-delta} is eq. 9 of the paper
// (a DDIM step written with epsilon); epsilon is combined over steps either by a pseudo
// Runge–Kutta warm-up (3 groups of 4 evaluations, eq. 13) and then pseudo linear multistep
// (PLMS, eq. 12: (55 e_t - 59 e_{t-1} + 37 e_{t-2} - 9 e_{t-3}) / 24), or, with skip_prk_steps (Stable
// Diffusion), by PLMS from the start with lower orders first (crowsonkb's PLMS for latent diffusion:
// the second timestep is evaluated twice, the first time for an improved-Euler step).
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec } from "../io/config.js";
import { KarrasDiffusionSchedulers, registerScheduler, SchedulerMixin, type SchedulerOutput } from "./scheduling-utils.js";
import { cumprodF32 } from "./float32.js";
import { alphasFromBetas, type BetaSchedule } from "./betas.js";
import { checkNumInferenceSteps, spacedTimesteps, type Timestep, type TimestepSpacing, timestepValue } from "./timesteps.js";
import { addNoiseWithAlphas } from "./add-noise.js";
import { asSample, checkShape } from "./sample-layout.js";

const f32 = Math.fround;

const PNDM_BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];
/** The prediction types PNDM can step. */
export const PNDM_PREDICTION_TYPES = ["epsilon", "v_prediction"] as const;

/** PNDMScheduler's config (diffusers' `__init__` arguments, snake_case). */
export interface PNDMSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  skip_prk_steps: boolean;
  set_alpha_to_one: boolean;
  prediction_type: (typeof PNDM_PREDICTION_TYPES)[number];
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
}

/** `SchedulerOutput`: prev_sample only (a new tensor the caller owns), as diffusers. */
export type PNDMSchedulerOutput<T extends tf.Tensor = tf.Tensor> = SchedulerOutput<T>;

export class PNDMScheduler extends SchedulerMixin {
  static override readonly className: string = "PNDMScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly predictionTypes: readonly string[] = PNDM_PREDICTION_TYPES;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      skip_prk_steps: false,
      set_alpha_to_one: false,
      prediction_type: "epsilon",
      timestep_spacing: "leading",
      steps_offset: 0,
    },
    types: { num_train_timesteps: "integer", trained_betas: "array|null", steps_offset: "integer" },
  };

  declare readonly config: Readonly<PNDMSchedulerConfig>;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  /** alpha-bar_t (cumulated in double, stored float32, as torch's CPU cumprod). */
  readonly alphasCumprod: Float32Array;
  /** alpha-bar past the last step: 1 with set_alpha_to_one, else alpha-bar_0. */
  readonly finalAlphaCumprod: number;
  /** Order of the pseudo linear multistep method (F-PNDM). */
  readonly pndmOrder = 4;
  /** Spaced timesteps, ascending, before the PRK / PLMS arrangement (diffusers `_timesteps`). */
  spacedSteps: number[];
  /** Timesteps of the Runge–Kutta warm-up (empty with skip_prk_steps). */
  prkTimesteps: number[] = [];
  /** Timesteps of the linear multistep phase. */
  plmsTimesteps: number[] = [];
  /** Steps taken since setTimesteps. */
  counter = 0;
  /** Past model outputs e_t, oldest first (state; owned here). */
  ets: tf.Tensor[] = [];
  /** Running RK combination of the model outputs (state; null = 0). */
  curModelOutput: tf.Tensor | null = null;
  /** x at the start of the RK group / improved-Euler step (state; owned here). */
  curSample: tf.Tensor | null = null;

  constructor(config: Partial<PNDMSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const c = this.config;
    this.betas = this.configBetas(PNDM_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    this.initNoiseSigma = 1.0;
    this.order = 1;
    this.spacedSteps = Array.from({ length: c.num_train_timesteps }, (_, i) => c.num_train_timesteps - 1 - i);
    // timesteps stay empty (None in diffusers) until setTimesteps
  }

  /**
   * Spaces the timesteps per `timestep_spacing`, then arranges them: with skip_prk_steps, the
   * PLMS order [t_{n-1}, t_{n-2}, t_{n-2}, t_{n-3}, ..., t_0] (second one repeated); otherwise
   * 12 RK timesteps (the last 4 spaced steps with their midpoints) followed by the rest.
   * Resets the multistep state.
   */
  setTimesteps(numInferenceSteps: number): void {
    const name = PNDMScheduler.className;
    const c = this.config;
    const T = c.num_train_timesteps;
    const n = checkNumInferenceSteps(name, numInferenceSteps, T);
    // ascending, as diffusers' _timesteps
    const spaced = spacedTimesteps(name, c.timestep_spacing, T, n, c.steps_offset).reverse();
    let prk: number[] = [];
    let plms: number[];
    if (c.skip_prk_steps) {
      plms = [...spaced.slice(0, -1), ...spaced.slice(-2, -1), ...spaced.slice(-1)].reverse();
    } else {
      if (spaced.length < this.pndmOrder) {
        throw new RangeError(
          `${name}.setTimesteps: the Runge-Kutta warm-up (skip_prk_steps false) needs at least ${this.pndmOrder} inference steps, ` +
            `got ${n}; diffusers fails here too ("ValueError: operands could not be broadcast together with shapes ` +
            `(${2 * spaced.length},) (${2 * this.pndmOrder},)"). Use num_inference_steps >= ${this.pndmOrder} or skip_prk_steps: true`,
        );
      }
      // each of the last 4 steps with its midpoint t + (T/n)/2, then every entry but the ends doubled
      const half = Math.floor(Math.floor(T / n) / 2);
      const pairs = spaced.slice(-this.pndmOrder).flatMap((t) => [t, t + half]);
      prk = pairs
        .slice(0, -1)
        .flatMap((t) => [t, t])
        .slice(1, -1)
        .reverse();
      plms = spaced.slice(0, -3).reverse();
    }
    this.numInferenceSteps = n;
    this.spacedSteps = spaced;
    this.prkTimesteps = prk;
    this.plmsTimesteps = plms;
    this.timesteps = [...prk, ...plms];
    this.dispose();
  }

  /** Frees the multistep state (ets, RK accumulator, stored sample) and resets the step counter. */
  override dispose(): void {
    tf.dispose([...this.ets, this.curModelOutput, this.curSample].filter((t): t is tf.Tensor => t !== null));
    this.ets = [];
    this.curModelOutput = null;
    this.curSample = null;
    this.counter = 0;
  }

  /** One step: a Runge–Kutta stage during the warm-up, else a PLMS step. Inputs are not disposed; the output is new. */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T): PNDMSchedulerOutput<T> {
    if (this.counter < this.prkTimesteps.length && !this.config.skip_prk_steps) return this.stepPrk(modelOutput, timestep, sample);
    return this.stepPlms(modelOutput, timestep, sample);
  }

  private checkReady(what: string, modelOutput: tf.Tensor, sample: tf.Tensor): void {
    if (this.numInferenceSteps === null) {
      throw new Error(`PNDMScheduler.${what}: the number of inference steps is not set; call setTimesteps(n) after creating the scheduler`);
    }
    checkShape(`PNDMScheduler.${what}: modelOutput`, modelOutput, sample.shape);
  }

  /**
   * Pseudo Runge–Kutta stage (eq. 13): in each group of 4 the model outputs are combined as
   * (e1 + 2 e2 + 2 e3 + e4) / 6; stages 1-3 step half / full intervals from the group's start x.
   */
  stepPrk<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T): PNDMSchedulerOutput<T> {
    this.checkReady("stepPrk", modelOutput, sample);
    const T = this.config.num_train_timesteps;
    const n = this.numInferenceSteps as number;
    const diffToPrev = this.counter % 2 ? 0 : Math.floor(Math.floor(T / n) / 2);
    const prevT = timestepValue(timestep, "PNDMScheduler.stepPrk") - diffToPrev;
    const t = this.prkTimesteps[Math.floor(this.counter / 4) * 4];
    this.checkTransfer(t, prevT);
    const phase = this.counter % 4;
    let mo: tf.Tensor = modelOutput;
    let ownMo = false;
    if (phase === 0) {
      this.replaceCurModelOutput(tf.mul(modelOutput, f32(1 / 6)));
      this.ets.push(tf.clone(modelOutput));
      this.curSample?.dispose();
      this.curSample = tf.clone(sample);
    } else if (phase === 1 || phase === 2) {
      this.replaceCurModelOutput(tf.tidy(() => tf.add(this.curModelOutput as tf.Tensor, tf.mul(modelOutput, f32(1 / 3)))));
    } else {
      mo = tf.tidy(() => tf.add(this.curModelOutput as tf.Tensor, tf.mul(modelOutput, f32(1 / 6))));
      ownMo = true;
      this.replaceCurModelOutput(null);
    }
    const base = this.curSample ?? sample;
    const prevSample = this.prevSample(base, t, prevT, mo);
    if (ownMo) mo.dispose();
    this.counter++;
    return { prevSample: asSample(sample, prevSample) };
  }

  private replaceCurModelOutput(t: tf.Tensor | null): void {
    this.curModelOutput?.dispose();
    this.curModelOutput = t;
  }

  /**
   * Pseudo linear multistep step (eq. 12), lower orders while fewer past outputs exist:
   * 1st: e_t (x kept), then (e_t + e_{t'}) / 2 from the kept x (improved Euler), then
   * (3 e_1 - e_2) / 2, (23 e_1 - 16 e_2 + 5 e_3) / 12, (55 e_1 - 59 e_2 + 37 e_3 - 9 e_4) / 24.
   */
  stepPlms<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T): PNDMSchedulerOutput<T> {
    const name = PNDMScheduler.className;
    this.checkReady("stepPlms", modelOutput, sample);
    if (!this.config.skip_prk_steps && this.ets.length < 3) {
      throw new Error(
        `${name}.stepPlms: can only run after the scheduler has taken its 12 Runge-Kutta warm-up steps (skip_prk_steps is false); ` +
          `call step() from the first timestep of scheduler.timesteps`,
      );
    }
    const T = this.config.num_train_timesteps;
    const ratio = Math.floor(T / (this.numInferenceSteps as number));
    let t = timestepValue(timestep, `${name}.stepPlms`);
    let prevT = t - ratio;
    if (this.counter === 1) {
      prevT = t;
      t = t + ratio;
    }
    this.checkTransfer(t, prevT);
    if (this.counter !== 1) {
      while (this.ets.length > 3) this.ets.shift()?.dispose();
      this.ets.push(tf.clone(modelOutput));
    }
    const e = this.ets;
    const k = e.length;
    let x: tf.Tensor = sample;
    let mo: tf.Tensor;
    let dropCurSample = false;
    if (k === 1 && this.counter === 0) {
      mo = tf.clone(modelOutput);
      this.curSample?.dispose();
      this.curSample = tf.clone(sample);
    } else if (k === 1 && this.counter === 1) {
      mo = tf.tidy(() => tf.div(tf.add(modelOutput, e[k - 1]), 2));
      x = this.curSample as tf.Tensor;
      dropCurSample = true;
    } else if (k === 2) {
      mo = tf.tidy(() => tf.div(tf.sub(tf.mul(e[1], 3), e[0]), 2));
    } else if (k === 3) {
      mo = tf.tidy(() => tf.div(tf.add(tf.sub(tf.mul(e[2], 23), tf.mul(e[1], 16)), tf.mul(e[0], 5)), 12));
    } else {
      mo = tf.tidy(() =>
        tf.mul(tf.sub(tf.add(tf.sub(tf.mul(e[3], 55), tf.mul(e[2], 59)), tf.mul(e[1], 37)), tf.mul(e[0], 9)), f32(1 / 24)),
      );
    }
    const prevSample = this.prevSample(x, t, prevT, mo);
    mo.dispose();
    if (dropCurSample) {
      this.curSample?.dispose();
      this.curSample = null;
    }
    this.counter++;
    return { prevSample: asSample(sample, prevSample) };
  }

  /**
   * Eq. 9: x_{t-delta} = sqrt(abar_prev / abar_t) x_t - (abar_prev - abar_t) e /
   * (abar_t sqrt(1 - abar_prev) + sqrt(abar_t (1 - abar_t) abar_prev)), float32 scalars as torch.
   */
  private prevSample(sample: tf.Tensor, t: number, prevT: number, modelOutput: tf.Tensor): tf.Tensor {
    const a = this.alphasCumprod[t];
    const ap = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const b = f32(1 - a);
    const bp = f32(1 - ap);
    const sampleCoeff = f32(Math.sqrt(f32(ap / a)));
    const denom = f32(f32(a * f32(Math.sqrt(bp))) + f32(Math.sqrt(f32(f32(a * b) * ap))));
    const diff = f32(ap - a);
    return tf.tidy(() => {
      let e = modelOutput;
      if (this.config.prediction_type === "v_prediction") {
        e = tf.add(tf.mul(modelOutput, f32(Math.sqrt(a))), tf.mul(sample, f32(Math.sqrt(b))));
      }
      return tf.sub(tf.mul(sample, sampleCoeff), tf.div(tf.mul(e, diff), denom));
    });
  }

  /** Both timesteps of a transfer must index alphas_cumprod (prev may be negative: then the final alpha-bar). */
  private checkTransfer(t: number, prevT: number): void {
    const T = this.alphasCumprod.length;
    for (const [what, v] of [["timestep", t], ["previous timestep", prevT]] as const) {
      if (!Number.isInteger(v) || v >= T || (what === "timestep" && v < 0)) {
        throw new RangeError(`PNDMScheduler.step: ${what} ${v} must be an integer in [0, ${T - 1}] (pass values from scheduler.timesteps)`);
      }
    }
  }

  /** Forward process q(x_t | x_0) (as DDPM): one timestep per batch item (or one for all). */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return addNoiseWithAlphas(PNDMScheduler.className, this.alphasCumprod, originalSamples, noise, timesteps);
  }
}

registerScheduler(PNDMScheduler);
