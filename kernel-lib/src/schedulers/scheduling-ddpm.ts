// DDPMScheduler (Ho et al. 2020, "Denoising Diffusion Probabilistic Models"), as diffusers 0.27.2
// scheduling_ddpm.py: ancestral sampling x_{t-1} ~ N(mu_t(x_t, x_0), sigma_t^2) with x_0 predicted
// from the model output (eq. 15), mu_t from eq. 7 and the variance choices of eq. 6/7.
// Scalars (alphas, coefficients) are computed in float32 as torch does; tensors are float32.
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec, ConfigError, oneOf } from "../io/config.js";
import {
  KarrasDiffusionSchedulers,
  type PredictionType,
  registerScheduler,
  SchedulerMixin,
  type SchedulerOutputWithOriginal,
} from "./scheduling-utils.js";
import { cumprodF32 } from "./float32.js";
import { alphasFromBetas, type BetaSchedule } from "./betas.js";
import { checkNumInferenceSteps, integerTimestep, spacedTimesteps, type Timestep, type TimestepSpacing } from "./timesteps.js";
import { addNoiseWithAlphas, velocityWithAlphas } from "./add-noise.js";
import { clipOrThreshold } from "./thresholding.js";
import { type NoiseOptions, stepNoise } from "./noise.js";
import { channelAxis, asSample, checkShape } from "./sample-layout.js";

const f32 = Math.fround;

export const DDPM_VARIANCE_TYPES = [
  "fixed_small",
  "fixed_small_log",
  "fixed_large",
  "fixed_large_log",
  "learned",
  "learned_range",
] as const;
export type DDPMVarianceType = (typeof DDPM_VARIANCE_TYPES)[number];

const DDPM_BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"];

/** DDPMScheduler's config (diffusers' `__init__` arguments, snake_case as in scheduler_config.json). */
export interface DDPMSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  variance_type: DDPMVarianceType;
  clip_sample: boolean;
  prediction_type: PredictionType;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  clip_sample_range: number;
  sample_max_value: number;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
}

/** `DDPMSchedulerOutput`: prev_sample and pred_original_sample (both new tensors the caller owns). */
export type DDPMSchedulerOutput<T extends tf.Tensor = tf.Tensor> = SchedulerOutputWithOriginal<T>;

/** Step options: `generator` draws the variance noise (NCHW order), or pass it as `noise` (sample layout). */
export type DDPMStepOptions = NoiseOptions;

export class DDPMScheduler extends SchedulerMixin {
  static override readonly className: string = "DDPMScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      variance_type: "fixed_small",
      clip_sample: true,
      prediction_type: "epsilon",
      thresholding: false,
      dynamic_thresholding_ratio: 0.995,
      clip_sample_range: 1.0,
      sample_max_value: 1.0,
      timestep_spacing: "leading",
      steps_offset: 0,
      rescale_betas_zero_snr: false,
    },
    types: { num_train_timesteps: "integer", trained_betas: "array|null", steps_offset: "integer" },
  };

  declare readonly config: Readonly<DDPMSchedulerConfig>;
  /** beta_t, float32 (torch's numbers exactly). */
  readonly betas: Float32Array;
  /** alpha_t = 1 - beta_t. */
  readonly alphas: Float32Array;
  /** alpha-bar_t = prod_{s<=t} alpha_s (cumulated in double, stored float32, as torch's CPU cumprod). */
  readonly alphasCumprod: Float32Array;
  /** True after setTimesteps({ timesteps }). */
  customTimesteps = false;
  readonly varianceType: DDPMVarianceType;

  constructor(config: Partial<DDPMSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const name = DDPMScheduler.className;
    const c = this.config;
    this.varianceType = oneOf(name, c, "variance_type", DDPM_VARIANCE_TYPES);
    this.betas = this.configBetas(DDPM_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.initNoiseSigma = 1.0;
    this.order = 1;
    this.timesteps = Array.from({ length: c.num_train_timesteps }, (_, i) => c.num_train_timesteps - 1 - i);
  }

  /**
   * Inference timesteps: `setTimesteps(n)` spaces n steps per `timestep_spacing`; or
   * `setTimesteps(null, { timesteps })` uses custom descending integer timesteps (then
   * `numInferenceSteps` is left as it was, as in diffusers).
   */
  setTimesteps(numInferenceSteps?: number | null, options: { timesteps?: number[] } = {}): void {
    const name = DDPMScheduler.className;
    const T = this.config.num_train_timesteps;
    const custom = options.timesteps;
    const hasN = numInferenceSteps !== undefined && numInferenceSteps !== null;
    if (hasN && custom !== undefined) {
      throw new Error(`${name}.setTimesteps: pass either num_inference_steps or custom timesteps, not both`);
    }
    if (custom !== undefined) {
      if (!Array.isArray(custom) || custom.length === 0 || !custom.every((t) => Number.isInteger(t) && t >= 0)) {
        throw new RangeError(`${name}.setTimesteps: custom timesteps must be a non-empty array of integers >= 0`);
      }
      for (let i = 1; i < custom.length; i++) {
        if (custom[i] >= custom[i - 1]) {
          throw new RangeError(`${name}.setTimesteps: custom timesteps must be in descending order (${custom[i - 1]} then ${custom[i]})`);
        }
      }
      if (custom[0] >= T) {
        throw new RangeError(`${name}.setTimesteps: custom timesteps must start below num_train_timesteps ${T}, got ${custom[0]}`);
      }
      this.timesteps = [...custom];
      this.customTimesteps = true;
      return;
    }
    if (!hasN) throw new Error(`${name}.setTimesteps: pass num_inference_steps or { timesteps }`);
    const n = checkNumInferenceSteps(name, numInferenceSteps, T);
    this.numInferenceSteps = n;
    this.customTimesteps = false;
    this.timesteps = spacedTimesteps(name, this.config.timestep_spacing, T, n, this.config.steps_offset);
  }

  /** The timestep after `t` in the chain (negative past the end). */
  previousTimestep(t: number): number {
    if (this.customTimesteps) {
      const i = this.timesteps.indexOf(t);
      if (i < 0) throw new RangeError(`DDPMScheduler.step: timestep ${t} is not one of the custom timesteps [${this.timesteps}]`);
      return i === this.timesteps.length - 1 ? -1 : this.timesteps[i + 1];
    }
    const n = this.numInferenceSteps ? this.numInferenceSteps : this.config.num_train_timesteps;
    return t - Math.floor(this.config.num_train_timesteps / n);
  }

  /**
   * One reverse step x_t -> x_{t-1}. `modelOutput` has the sample's shape (or twice its channels,
   * last axis, for learned variances). Noise is drawn for t > 0 only (from `generator`, or `noise`).
   * Inputs are not disposed; both outputs are new tensors.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T, options: DDPMStepOptions = {}): DDPMSchedulerOutput<T> {
    const name = DDPMScheduler.className;
    const c = this.config;
    const t = integerTimestep(name, timestep, this.alphasCumprod.length);
    const prevT = this.previousTimestep(t);
    const vt = this.varianceType;
    const ax = channelAxis(sample);
    const split =
      (vt === "learned" || vt === "learned_range") &&
      modelOutput.rank === sample.rank &&
      modelOutput.shape[ax] === 2 * sample.shape[ax];
    if (!split) checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    if (t > 0 && (vt === "learned" || vt === "learned_range") && !split) {
      throw new RangeError(
        `${name}.step: variance_type "${vt}" needs a model output with twice the sample's channels (last axis) holding the predicted variance`,
      );
    }
    if (t > 0 && vt === "fixed_large_log") {
      // diffusers 0.27.2 takes sqrt(log(beta_t)) here, which is NaN for every beta_t < 1.
      throw new ConfigError(`${name}: variance_type "fixed_large_log" cannot be sampled with step() (diffusers yields NaN); use "fixed_large"`);
    }

    // 1. alphas, betas (float32 scalars)
    const a = this.alphasCumprod[t];
    const ap = prevT >= 0 ? this.alphasCumprod[prevT] : 1;
    const bt = f32(1 - a);
    const btPrev = f32(1 - ap);
    const curAlpha = f32(a / ap);
    const curBeta = f32(1 - curAlpha);

    return tf.tidy(() => {
      let mo = modelOutput;
      let predictedVariance: tf.Tensor | null = null;
      if (split) [mo, predictedVariance] = tf.split(modelOutput, 2, ax);

      // 2. x_0 from the model output (eq. 15 for epsilon)
      let x0: tf.Tensor;
      if (c.prediction_type === "epsilon") {
        x0 = tf.div(tf.sub(sample, tf.mul(mo, f32(Math.sqrt(bt)))), f32(Math.sqrt(a)));
      } else if (c.prediction_type === "sample") {
        x0 = mo;
      } else {
        x0 = tf.sub(tf.mul(sample, f32(Math.sqrt(a))), tf.mul(mo, f32(Math.sqrt(bt))));
      }
      // 3. clip or dynamically threshold x_0
      const predOriginalSample = clipOrThreshold(c, x0);

      // 4-5. posterior mean (eq. 7): mu = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x_0 + sqrt(alpha_t)(1 - abar_{t-1}) / (1 - abar_t) x_t
      const x0Coeff = f32(f32(f32(Math.sqrt(ap)) * curBeta) / bt);
      const xtCoeff = f32(f32(f32(Math.sqrt(curAlpha)) * btPrev) / bt);
      let prev = tf.add(tf.mul(predOriginalSample, x0Coeff), tf.mul(sample, xtCoeff));

      // 6. add sigma_t z (eq. 6/7 variances), only for t > 0
      if (t > 0) {
        const z = stepNoise(name, sample.shape, options);
        // beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t, clamped >= 1e-20 (it is logged)
        const variance = Math.max(f32(f32(btPrev / bt) * curBeta), f32(1e-20));
        let noiseTerm: tf.Tensor;
        if (vt === "fixed_small") noiseTerm = tf.mul(z, f32(Math.sqrt(variance)));
        else if (vt === "fixed_small_log") noiseTerm = tf.mul(z, f32(Math.exp(f32(0.5 * f32(Math.log(variance))))));
        else if (vt === "fixed_large") noiseTerm = tf.mul(z, f32(Math.sqrt(curBeta)));
        else if (vt === "learned") noiseTerm = tf.mul(tf.sqrt(predictedVariance!), z);
        else {
          // learned_range: interpolate log-variances, frac = (v + 1) / 2 (Improved DDPM eq. 15)
          const minLog = f32(Math.log(variance));
          const maxLog = f32(Math.log(curBeta));
          const frac = tf.div(tf.add(predictedVariance!, 1), 2);
          const logVar = tf.add(tf.mul(frac, maxLog), tf.mul(tf.sub(1, frac), minLog));
          noiseTerm = tf.mul(tf.exp(tf.mul(logVar, 0.5)), z);
        }
        prev = tf.add(prev, noiseTerm);
      }
      return { prevSample: asSample(sample, prev), predOriginalSample: asSample(sample, predOriginalSample) };
    });
  }

  /** Forward process q(x_t | x_0) for training / img2img: one timestep per batch item (or one for all). */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return addNoiseWithAlphas(DDPMScheduler.className, this.alphasCumprod, originalSamples, noise, timesteps);
  }

  /** The v-prediction target for `sample` (= x_0) and `noise` at `timesteps`. */
  getVelocity<T extends tf.Tensor>(sample: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return velocityWithAlphas(DDPMScheduler.className, this.alphasCumprod, sample, noise, timesteps);
  }
}

registerScheduler(DDPMScheduler);
