// EulerDiscreteScheduler (Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based
// Generative Models", Algorithm 2 with the churn of eq. 5 / Alg. 2 lines 4-6), as diffusers 0.27.2
// scheduling_euler_discrete.py. The VP model is run in the VE parameterisation
// x = x_0 + sigma * eps with sigma_t = sqrt((1 - abar_t) / abar_t), the model input scaled by
// 1 / sqrt(sigma^2 + 1).
//
// This file also holds what the k-diffusion style schedulers (Euler, Euler ancestral, LMS, Heun)
// share: their base class (the sigma schedule, the step index bookkeeping and add_noise: diffusers
// repeats that code in every class); the sigma helpers themselves are in sigmas.ts.
import * as tf from "@tensorflow/tfjs";
import { checkFinite, checkNumber } from "../utils/check-argument.js";
import { type Config, type ConfigSpec, oneOf } from "../io/config.js";
import {
  IndexedSchedulerMixin,
  KarrasDiffusionSchedulers,
  registerScheduler,
  type SchedulerClass,
  type SchedulerOutputWithOriginal,
} from "./scheduling-utils.js";
import { cumprodF32, linspaceF32, logF32 } from "./float32.js";
import { interpOnIndex } from "./numpy.js";
import { alphasFromBetas, type BetaSchedule } from "./betas.js";
import { checkNumInferenceSteps, sigmaTimesteps, type Timestep, type TimestepSpacing, timestepValue } from "./timesteps.js";
import { karrasSigmas, sigmasFromAlphasCumprod, sigmaToT } from "./sigmas.js";
import { type NoiseOptions, stepNoise } from "./noise.js";
import { asSample, checkShape } from "./sample-layout.js";

// the sigma helpers under the names this file had for them (its tests import them from here)
export { interpOnIndex, karrasSigmas, logF32, sigmasFromAlphasCumprod, sigmaToT };

const f32 = Math.fround;

// ---------------------------------------------------------------------------------------------
// Shared with the Euler ancestral, LMS and Heun schedulers

/** Beta schedules the sigma schedulers accept (Heun adds "exp"). */
export const SIGMA_BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];

/** The largest entry of a float array. */
function maxOf(a: ArrayLike<number>): number {
  let m = -Infinity;
  for (let i = 0; i < a.length; i++) if (a[i] > m) m = a[i];
  return m;
}

/** x_0 for v-prediction in the sigma parameterisation: c_out * v + c_skip * x with c_out = -sigma / sqrt(sigma^2 + 1), c_skip = 1 / (sigma^2 + 1). */
export function vPredictionX0(modelOutput: tf.Tensor, sample: tf.Tensor, sigma: number): tf.Tensor {
  const s2p1 = f32(f32(sigma * sigma) + 1);
  return tf.tidy(() => tf.add(tf.mul(modelOutput, f32(-sigma / f32(Math.sqrt(s2p1)))), tf.div(sample, s2p1)));
}

/**
 * Base of the k-diffusion style schedulers: training betas / alphas-bar, the float32 `sigmas`
 * (one per inference timestep, then 0), the step index (found from the first timestep seen, or
 * `setBeginIndex`), `scaleModelInput` (x / sqrt(sigma^2 + 1)) and `addNoise` (x_0 + sigma eps).
 */
export abstract class SigmaDiscreteScheduler extends IndexedSchedulerMixin {
  /** beta_t, float32. */
  betas!: Float32Array;
  /** alpha_t = 1 - beta_t. */
  alphas!: Float32Array;
  /** alpha-bar_t (cumulated in double, stored float32, as torch's CPU cumprod). */
  alphasCumprod!: Float32Array;
  /** Noise levels of the inference steps, largest first, then the final 0 (float32). */
  sigmas: Float32Array = new Float32Array(0);
  /** dtype of torch's `timesteps` here: equality in indexForTimestep is float32 unless float64. */
  protected timestepDtype: "float32" | "float64" = "float32";

  protected get name(): string {
    return (this.constructor as unknown as { className: string }).className;
  }

  /**
   * Index of `timestep` in `scheduleTimesteps` (default: `timesteps`); when it occurs more than
   * once the second occurrence (so a schedule entered mid-way never skips a sigma).
   */
  indexForTimestep(timestep: Timestep, scheduleTimesteps: readonly number[] = this.timesteps): number {
    const v = timestepValue(timestep, `${this.name}.indexForTimestep`);
    const key = this.timestepDtype === "float32" ? f32(v) : v;
    let first = -1;
    for (let i = 0; i < scheduleTimesteps.length; i++) {
      if (scheduleTimesteps[i] !== key) continue;
      if (first >= 0) return i;
      first = i;
    }
    if (first < 0) {
      throw new RangeError(
        `${this.name}: timestep ${v} is not one of the scheduler's timesteps; call setTimesteps(n) and pass values from scheduler.timesteps`,
      );
    }
    return first;
  }

  /** The sigma at the current step index (the index is set from `timestep` on first use). */
  protected currentSigma(timestep: Timestep): number {
    if (this._stepIndex === null) this.initStepIndex(timestep);
    const i = this._stepIndex as number;
    if (i >= this.sigmas.length - 1) {
      throw new RangeError(
        `${this.name}: step index ${i} is past the last timestep (${this.timesteps.length} timesteps); call setTimesteps(n) to start a new run`,
      );
    }
    return this.sigmas[i];
  }

  /**
   * Timesteps per `timestep_spacing` (float32) with sigmas interpolated linearly in t; with
   * `use_karras_sigmas`, Karras sigmas between the interpolated ends and float64 timesteps from
   * sigma_to_t (as LMS and Heun; `timestepDtype` follows). Without the final 0.
   */
  protected interpolatedSchedule(n: number): { timesteps: number[]; sigmas: Float64Array } {
    const c = this.config as Readonly<Config> & { timestep_spacing: string; num_train_timesteps: number; steps_offset: number };
    let timesteps = sigmaTimesteps(this.name, c.timestep_spacing, c.num_train_timesteps, n, c.steps_offset);
    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    let sigmas: Float64Array = interpOnIndex(timesteps, train);
    this.timestepDtype = "float32";
    // (a use_karras_sigmas key another class left in the config does not count: Euler a has none)
    if (c.use_karras_sigmas && "use_karras_sigmas" in (this.constructor as SchedulerClass).configSpec.defaults) {
      sigmas = karrasSigmas(sigmas[sigmas.length - 1], sigmas[0], n);
      const logSigmas = logF32(train);
      timesteps = Array.from(sigmas, (s) => sigmaToT(s, logSigmas));
      this.timestepDtype = "float64"; // torch.from_numpy of a float64 array
    }
    return { timesteps, sigmas };
  }

  /**
   * Installs a new schedule: `timesteps`, the float32 `sigmas` plus the final 0, the step count;
   * resets the step index and updates init_noise_sigma.
   */
  protected setSchedule(n: number, timesteps: number[], sigmas: ArrayLike<number>): void {
    this.numInferenceSteps = n;
    this.timesteps = timesteps;
    this.sigmas = new Float32Array(sigmas.length + 1);
    this.sigmas.set(sigmas);
    this.resetStepIndex();
    this.updateInitNoiseSigma();
  }

  /** Euler input scaling: x / sqrt(sigma^2 + 1) (Karras et al. 2022 Table 1, c_in for VP). New tensor. */
  override scaleModelInput<T extends tf.Tensor>(sample: T, timestep?: Timestep): T {
    if (timestep === undefined && this._stepIndex === null && this._beginIndex === null) {
      throw new Error(`${this.name}.scaleModelInput: pass the timestep (the first call finds the step index from it)`);
    }
    const sigma = this.currentSigma(timestep as Timestep);
    return tf.div(sample, f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  }

  /** init_noise_sigma: sigma_max for linspace / trailing spacing, else sqrt(sigma_max^2 + 1) (float32). */
  protected updateInitNoiseSigma(): void {
    const m = f32(maxOf(this.sigmas));
    const spacing = this.config.timestep_spacing;
    this.initNoiseSigma = spacing === "linspace" || spacing === "trailing" ? m : f32(Math.sqrt(f32(f32(m * m) + 1)));
  }

  /**
   * Forward process in the sigma parameterisation: x_0 + sigma(t) * noise, one timestep per batch
   * item (or one for all). Timesteps are looked up in `timesteps` (or taken from the begin / step
   * index when a pipeline set one). Returns a new tensor.
   */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    checkShape(`${this.name}.addNoise: noise`, noise, originalSamples.shape);
    let list: number[];
    if (typeof timesteps === "number") list = [timesteps];
    else if (Array.isArray(timesteps)) list = timesteps;
    else if (timesteps instanceof tf.Tensor) list = Array.from(timesteps.dataSync());
    else throw new TypeError(`${this.name}.addNoise: timesteps must be a number, an array or a tf.Tensor`);
    let idx: number[];
    if (this._beginIndex === null) idx = list.map((t) => this.indexForTimestep(t));
    else idx = list.map(() => (this._stepIndex ?? this._beginIndex) as number);
    const shape = originalSamples.shape;
    if (idx.length !== 1 && idx.length !== shape[0]) {
      throw new RangeError(`${this.name}.addNoise: ${idx.length} timesteps for a batch of ${shape[0]}; pass one per batch item (or one for all)`);
    }
    const sig = idx.map((i) => this.sigmas[i]);
    return tf.tidy(() =>
      tf.add(originalSamples, tf.mul(noise, tf.tensor(sig, [sig.length, ...shape.slice(1).map(() => 1)], "float32"))),
    );
  }
}

// ---------------------------------------------------------------------------------------------
// EulerDiscreteScheduler

export const EULER_INTERPOLATION_TYPES = ["linear", "log_linear"] as const;
export type EulerInterpolationType = (typeof EULER_INTERPOLATION_TYPES)[number];
export const EULER_TIMESTEP_TYPES = ["discrete", "continuous"] as const;
/** Euler also takes the legacy name "original_sample" for "sample". */
export const EULER_PREDICTION_TYPES = ["epsilon", "sample", "original_sample", "v_prediction"] as const;

/** EulerDiscreteScheduler's config (diffusers' `__init__` arguments, snake_case). */
export interface EulerDiscreteSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  prediction_type: (typeof EULER_PREDICTION_TYPES)[number];
  interpolation_type: EulerInterpolationType;
  use_karras_sigmas: boolean | null;
  sigma_min: number | null;
  sigma_max: number | null;
  timestep_spacing: TimestepSpacing;
  timestep_type: (typeof EULER_TIMESTEP_TYPES)[number];
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
}

/** `EulerDiscreteSchedulerOutput`: prev_sample and pred_original_sample (new tensors the caller owns). */
export type EulerDiscreteSchedulerOutput<T extends tf.Tensor = tf.Tensor> = SchedulerOutputWithOriginal<T>;

/** Step options: the churn of Karras et al. 2022 Alg. 2 (S_churn, S_tmin, S_tmax, S_noise) and its noise. */
export interface EulerDiscreteStepOptions extends NoiseOptions {
  /** S_churn: gamma = min(S_churn / (len(sigmas) - 1), sqrt(2) - 1). Default 0 (deterministic). */
  sChurn?: number;
  /** Churn only where S_tmin <= sigma <= S_tmax. Defaults 0 and Infinity. */
  sTmin?: number;
  sTmax?: number;
  /** S_noise: scale of the churn noise. Default 1. */
  sNoise?: number;
}

export class EulerDiscreteScheduler extends SigmaDiscreteScheduler {
  static override readonly className: string = "EulerDiscreteScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly predictionTypes: readonly string[] = EULER_PREDICTION_TYPES;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      prediction_type: "epsilon",
      interpolation_type: "linear",
      use_karras_sigmas: false,
      sigma_min: null,
      sigma_max: null,
      timestep_spacing: "linspace",
      timestep_type: "discrete",
      steps_offset: 0,
      rescale_betas_zero_snr: false,
    },
    types: {
      num_train_timesteps: "integer",
      trained_betas: "array|null",
      use_karras_sigmas: "boolean|null",
      sigma_min: "number|null",
      sigma_max: "number|null",
      steps_offset: "integer",
    },
  };

  declare readonly config: Readonly<EulerDiscreteSchedulerConfig>;

  constructor(config: Partial<EulerDiscreteSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const name = EulerDiscreteScheduler.className;
    const c = this.config;
    oneOf(name, c, "interpolation_type", EULER_INTERPOLATION_TYPES);
    oneOf(name, c, "timestep_type", EULER_TIMESTEP_TYPES);
    this.betas = this.configBetas(SIGMA_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    // zero terminal SNR: keep the last sigma finite (2^-24, the smallest fp16 subnormal)
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    const T = c.num_train_timesteps;
    const sig = sigmasFromAlphasCumprod(this.alphasCumprod).reverse();
    this.timesteps = this.continuousTimesteps(sig) ?? Array.from({ length: T }, (_, i) => T - 1 - i);
    this.sigmas = new Float32Array(T + 1);
    this.sigmas.set(sig);
    this.order = 1;
    this.updateInitNoiseSigma();
  }

  /** EDM-style timesteps for timestep_type "continuous" with v-prediction: 0.25 log(sigma) (float32). */
  private continuousTimesteps(sigmas: ArrayLike<number>): number[] | null {
    const c = this.config;
    if (c.timestep_type !== "continuous" || c.prediction_type !== "v_prediction") return null;
    return Array.from(sigmas, (s) => f32(0.25 * f32(Math.log(s))));
  }

  /**
   * Timesteps per `timestep_spacing` (float32, fractional for linspace), their sigmas interpolated
   * from the training sigmas (linear in t, or log-linear), optionally replaced by Karras sigmas
   * (then timesteps = sigma_to_t), then a final sigma 0. Resets the step index.
   */
  setTimesteps(numInferenceSteps: number): void {
    const name = EulerDiscreteScheduler.className;
    const c = this.config;
    const n = checkNumInferenceSteps(name, numInferenceSteps, this.config.num_train_timesteps as number);
    const T = c.num_train_timesteps;
    let timesteps = sigmaTimesteps(name, c.timestep_spacing, T, n, c.steps_offset);
    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    const logSigmas = logF32(train);
    let sig: ArrayLike<number>;
    if (c.interpolation_type === "linear") {
      sig = interpOnIndex(timesteps, train);
    } else {
      // diffusers 0.27.2: torch.linspace(log sigma_max, log sigma_min, n + 1).exp() (n + 1 sigmas)
      sig = linspaceF32(f32(Math.log(train[T - 1])), f32(Math.log(train[0])), n + 1).map((x) => f32(Math.exp(x)));
    }
    if (c.use_karras_sigmas) {
      const smin = c.sigma_min ?? sig[sig.length - 1];
      const smax = c.sigma_max ?? sig[0];
      sig = karrasSigmas(smin, smax, n);
      timesteps = Array.from(sig, (s) => f32(sigmaToT(s, logSigmas)));
    }
    const sig32 = Float32Array.from(sig);
    this.setSchedule(n, this.continuousTimesteps(sig32) ?? timesteps, sig32);
  }

  /**
   * One Euler step (Karras et al. 2022 Alg. 2 lines 4-8 without the Heun correction):
   * sigma_hat = sigma (1 + gamma), x_hat = x + sqrt(sigma_hat^2 - sigma^2) S_noise z,
   * d = (x_hat - x_0) / sigma_hat, x_next = x_hat + (sigma_next - sigma_hat) d.
   * Noise is drawn on every step (from `generator`, as diffusers does, so the generator's stream
   * stays in step) unless given as `noise`; it only matters when gamma > 0.
   * Inputs are not disposed; both outputs are new tensors.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T, options: EulerDiscreteStepOptions = {}): EulerDiscreteSchedulerOutput<T> {
    const name = EulerDiscreteScheduler.className;
    if (timestep instanceof tf.Tensor && timestep.dtype === "int32") {
      throw new TypeError(
        `${name}.step: integer timestep tensors (indices from enumerate(timesteps)) are not supported; pass one of scheduler.timesteps`,
      );
    }
    checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    const where = `${name}.step`;
    const sChurn = checkFinite(where, "sChurn", options.sChurn ?? 0, 0);
    const sTmin = checkNumber(where, "sTmin", options.sTmin ?? 0);
    const sTmax = checkNumber(where, "sTmax", options.sTmax ?? Infinity);
    const sNoise = checkFinite(where, "sNoise", options.sNoise ?? 1);
    const sigma = this.currentSigma(timestep);
    const i = this._stepIndex as number;
    const gamma = sTmin <= sigma && sigma <= sTmax ? Math.min(sChurn / (this.sigmas.length - 1), 2 ** 0.5 - 1) : 0;
    const noise = stepNoise(name, sample.shape, options);
    const sigmaHat = f32(sigma * f32(gamma + 1));
    const pt = this.config.prediction_type;
    const out = tf.tidy(() => {
      let x = sample;
      if (gamma > 0) {
        const eps = tf.mul(noise, f32(sNoise));
        x = tf.add(x, tf.mul(eps, f32(Math.sqrt(f32(f32(sigmaHat * sigmaHat) - f32(sigma * sigma))))));
      }
      // 1. x_0 from the model output
      let x0: tf.Tensor;
      if (pt === "sample" || pt === "original_sample") x0 = tf.clone(modelOutput);
      else if (pt === "epsilon") x0 = tf.sub(x, tf.mul(modelOutput, sigmaHat));
      else x0 = vPredictionX0(modelOutput, x, sigma);
      // 2. ODE derivative d = (x - x_0) / sigma_hat, Euler step to sigma_next
      const derivative = tf.div(tf.sub(x, x0), sigmaHat);
      const dt = f32(this.sigmas[i + 1] - sigmaHat);
      return { prevSample: asSample(sample, tf.add(x, tf.mul(derivative, dt))), predOriginalSample: asSample(sample, x0) };
    });
    noise.dispose();
    this._stepIndex = i + 1;
    return out;
  }
}

registerScheduler(EulerDiscreteScheduler);
