// DDIMScheduler (Song et al. 2020, "Denoising Diffusion Implicit Models"), as diffusers 0.27.2
// scheduling_ddim.py: the generalised update of eq. 12 with sigma_t(eta) from eq. 16; eta = 0 is
// deterministic DDIM, eta = 1 matches DDPM's variance. Float32 scalars and tensors, as torch.
import * as tf from "@tensorflow/tfjs";
import { checkFinite } from "../utils/check-argument.js";
import { type Config, type ConfigSpec } from "../io/config.js";
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
import { asSample, checkShape } from "./sample-layout.js";

const f32 = Math.fround;

const DDIM_BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];

/** DDIMScheduler's config (diffusers' `__init__` arguments, snake_case as in scheduler_config.json). */
export interface DDIMSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  clip_sample: boolean;
  set_alpha_to_one: boolean;
  steps_offset: number;
  prediction_type: PredictionType;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  clip_sample_range: number;
  sample_max_value: number;
  timestep_spacing: TimestepSpacing;
  rescale_betas_zero_snr: boolean;
}

/** `DDIMSchedulerOutput`: prev_sample and pred_original_sample (both new tensors the caller owns). */
export type DDIMSchedulerOutput<T extends tf.Tensor = tf.Tensor> = SchedulerOutputWithOriginal<T>;

export interface DDIMStepOptions extends NoiseOptions {
  /** eta in eq. 16 (0 = deterministic DDIM, 1 = DDPM-like). Default 0. */
  eta?: number;
  /** Re-derive epsilon from the clipped x_0 (as GLIDE). Default false. */
  useClippedModelOutput?: boolean;
  /** diffusers' name for `noise`: the variance noise itself, in the sample's layout. */
  varianceNoise?: tf.Tensor;
}

export class DDIMScheduler extends SchedulerMixin {
  static override readonly className: string = "DDIMScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      clip_sample: true,
      set_alpha_to_one: true,
      steps_offset: 0,
      prediction_type: "epsilon",
      thresholding: false,
      dynamic_thresholding_ratio: 0.995,
      clip_sample_range: 1.0,
      sample_max_value: 1.0,
      timestep_spacing: "leading",
      rescale_betas_zero_snr: false,
    },
    types: { num_train_timesteps: "integer", trained_betas: "array|null", steps_offset: "integer" },
  };

  declare readonly config: Readonly<DDIMSchedulerConfig>;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  /** alpha-bar_t (cumulated in double, stored float32, as torch's CPU cumprod). */
  readonly alphasCumprod: Float32Array;
  /** alpha-bar used past the last step: 1 with set_alpha_to_one, else alpha-bar_0. */
  readonly finalAlphaCumprod: number;

  constructor(config: Partial<DDIMSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const c = this.config;
    this.betas = this.configBetas(DDIM_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    this.initNoiseSigma = 1.0;
    this.order = 1;
    this.timesteps = Array.from({ length: c.num_train_timesteps }, (_, i) => c.num_train_timesteps - 1 - i);
  }

  /** Spaces `numInferenceSteps` timesteps per `timestep_spacing` (+ `steps_offset` for "leading"). */
  setTimesteps(numInferenceSteps: number): void {
    const name = DDIMScheduler.className;
    const T = this.config.num_train_timesteps;
    const n = checkNumInferenceSteps(name, numInferenceSteps, T);
    this.numInferenceSteps = n;
    this.timesteps = spacedTimesteps(name, this.config.timestep_spacing, T, n, this.config.steps_offset);
  }

  /** sigma_t^2 / eta^2 of eq. 16: (1 - abar_prev)/(1 - abar_t) * (1 - abar_t/abar_prev), float32. */
  private variance(a: number, ap: number): number {
    return f32(f32(f32(1 - ap) / f32(1 - a)) * f32(1 - f32(a / ap)));
  }

  /**
   * One DDIM step x_t -> x_{t - T/n} (eq. 12). Needs setTimesteps first. With eta > 0 noise is
   * drawn from `generator` (NCHW order) unless given as `noise` / `varianceNoise`.
   * Inputs are not disposed; both outputs are new tensors.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T, options: DDIMStepOptions = {}): DDIMSchedulerOutput<T> {
    const name = DDIMScheduler.className;
    const c = this.config;
    if (this.numInferenceSteps === null) {
      throw new Error(`${name}.step: the number of inference steps is not set; call setTimesteps(n) after creating the scheduler`);
    }
    const eta = options.eta ?? 0;
    checkFinite(`${name}.step`, "eta", eta, 0, Infinity, "0 is deterministic DDIM, 1 is DDPM-like");
    if (options.noise !== undefined && options.varianceNoise !== undefined) {
      throw new Error(`${name}.step: pass noise or varianceNoise (the same thing), not both`);
    }
    const noise = options.varianceNoise ?? options.noise;
    if (noise !== undefined && options.generator !== undefined) {
      throw new Error(`${name}.step: cannot pass both generator and variance noise; leave one of them unset`);
    }
    checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    const t = integerTimestep(name, timestep, this.alphasCumprod.length);

    // 1. previous step value
    const prevT = t - Math.floor(c.num_train_timesteps / this.numInferenceSteps);
    // 2. alphas, betas (float32 scalars)
    const a = this.alphasCumprod[t];
    const ap = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const bt = f32(1 - a);
    const sqrtA = f32(Math.sqrt(a));
    const sqrtB = f32(Math.sqrt(bt));
    // 5. sigma_t(eta) (eq. 16)
    const std = f32(f32(eta) * f32(Math.sqrt(this.variance(a, ap))));

    return tf.tidy(() => {
      // 3. x_0 and epsilon from the model output ("predicted x_0" of eq. 12)
      let x0: tf.Tensor;
      let eps: tf.Tensor;
      if (c.prediction_type === "epsilon") {
        x0 = tf.div(tf.sub(sample, tf.mul(modelOutput, sqrtB)), sqrtA);
        eps = modelOutput;
      } else if (c.prediction_type === "sample") {
        x0 = modelOutput;
        eps = tf.div(tf.sub(sample, tf.mul(x0, sqrtA)), sqrtB);
      } else {
        x0 = tf.sub(tf.mul(sample, sqrtA), tf.mul(modelOutput, sqrtB));
        eps = tf.add(tf.mul(modelOutput, sqrtA), tf.mul(sample, sqrtB));
      }
      // 4. clip or dynamically threshold x_0
      const predOriginalSample = clipOrThreshold(c, x0);
      if (options.useClippedModelOutput) {
        eps = tf.div(tf.sub(sample, tf.mul(predOriginalSample, sqrtA)), sqrtB);
      }
      // 6. "direction pointing to x_t": sqrt(1 - abar_prev - sigma_t^2) eps
      const dirCoeff = f32(Math.sqrt(f32(f32(1 - ap) - f32(std * std))));
      // 7. x_{t-1} = sqrt(abar_prev) x_0 + direction (+ sigma_t z)
      let prev = tf.add(tf.mul(predOriginalSample, f32(Math.sqrt(ap))), tf.mul(eps, dirCoeff));
      if (eta > 0) {
        const z = stepNoise(name, sample.shape, { generator: options.generator, noise });
        prev = tf.add(prev, tf.mul(z, std));
      }
      return { prevSample: asSample(sample, prev), predOriginalSample: asSample(sample, predOriginalSample) };
    });
  }

  /** Forward process q(x_t | x_0): one timestep per batch item (or one for all). */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return addNoiseWithAlphas(DDIMScheduler.className, this.alphasCumprod, originalSamples, noise, timesteps);
  }

  /** The v-prediction target for `sample` (= x_0) and `noise` at `timesteps`. */
  getVelocity<T extends tf.Tensor>(sample: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return velocityWithAlphas(DDIMScheduler.className, this.alphasCumprod, sample, noise, timesteps);
  }
}

registerScheduler(DDIMScheduler);
