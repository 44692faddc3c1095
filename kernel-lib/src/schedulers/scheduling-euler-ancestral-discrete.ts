// EulerAncestralDiscreteScheduler, as diffusers 0.27.2 scheduling_euler_ancestral_discrete.py:
// k-diffusion's `sample_euler_ancestral` (Karras et al. 2022 sigma parameterisation; the
// ancestral split of Song et al. 2021): each step goes deterministically to sigma_down and adds
// fresh noise of std sigma_up, with sigma_up^2 + sigma_down^2 = sigma_next^2 and
// sigma_up = sigma_next sqrt((sigma^2 - sigma_next^2) / sigma^2).
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec } from "../io/config.js";
import { KarrasDiffusionSchedulers, registerScheduler, type SchedulerOutputWithOriginal } from "./scheduling-utils.js";
import { cumprodF32 } from "./float32.js";
import { alphasFromBetas, type BetaSchedule } from "./betas.js";
import { checkNumInferenceSteps, type Timestep, type TimestepSpacing } from "./timesteps.js";
import { sigmasFromAlphasCumprod } from "./sigmas.js";
import { type NoiseOptions, stepNoise } from "./noise.js";
import { asSample, checkShape } from "./sample-layout.js";
import { SIGMA_BETA_SCHEDULES, SigmaDiscreteScheduler, vPredictionX0 } from "./scheduling-euler-discrete.js";

const f32 = Math.fround;

/** The prediction types Euler ancestral can step ("sample" is not implemented in diffusers 0.27.2). */
export const EULER_ANCESTRAL_PREDICTION_TYPES = ["epsilon", "v_prediction"] as const;

/** EulerAncestralDiscreteScheduler's config (diffusers' `__init__` arguments, snake_case). */
export interface EulerAncestralDiscreteSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  prediction_type: (typeof EULER_ANCESTRAL_PREDICTION_TYPES)[number];
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
}

/** prev_sample and pred_original_sample (new tensors the caller owns). */
export type EulerAncestralDiscreteSchedulerOutput<T extends tf.Tensor = tf.Tensor> = SchedulerOutputWithOriginal<T>;

/** Step options: `generator` draws the ancestral noise (NCHW order), or pass it as `noise` (sample layout). */
export type EulerAncestralDiscreteStepOptions = NoiseOptions;

export class EulerAncestralDiscreteScheduler extends SigmaDiscreteScheduler {
  static override readonly className: string = "EulerAncestralDiscreteScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly predictionTypes: readonly string[] = EULER_ANCESTRAL_PREDICTION_TYPES;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      prediction_type: "epsilon",
      timestep_spacing: "linspace",
      steps_offset: 0,
      rescale_betas_zero_snr: false,
    },
    types: { num_train_timesteps: "integer", trained_betas: "array|null", steps_offset: "integer" },
  };

  declare readonly config: Readonly<EulerAncestralDiscreteSchedulerConfig>;

  constructor(config: Partial<EulerAncestralDiscreteSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const c = this.config;
    this.betas = this.configBetas(SIGMA_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    // zero terminal SNR: keep the last sigma finite (2^-24)
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    const T = c.num_train_timesteps;
    this.sigmas = new Float32Array(T + 1);
    this.sigmas.set(sigmasFromAlphasCumprod(this.alphasCumprod).reverse());
    // before setTimesteps: every training step (float64 in diffusers, integer-valued)
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
    this.order = 1;
    this.updateInitNoiseSigma();
  }

  /** Timesteps per `timestep_spacing` (float32), sigmas linearly interpolated in t, then a final 0. */
  setTimesteps(numInferenceSteps: number): void {
    const name = EulerAncestralDiscreteScheduler.className;
    const n = checkNumInferenceSteps(name, numInferenceSteps, this.config.num_train_timesteps as number);
    const { timesteps, sigmas } = this.interpolatedSchedule(n);
    this.setSchedule(n, timesteps, sigmas);
  }

  /**
   * One ancestral Euler step: x_0 from the model output, d = (x - x_0) / sigma,
   * x' = x + (sigma_down - sigma) d + sigma_up z. The noise z comes from `generator` (NCHW
   * order) or `noise`. Inputs are not disposed; both outputs are new tensors.
   */
  step<T extends tf.Tensor>(
    modelOutput: tf.Tensor,
    timestep: Timestep,
    sample: T,
    options: EulerAncestralDiscreteStepOptions = {},
  ): EulerAncestralDiscreteSchedulerOutput<T> {
    const name = EulerAncestralDiscreteScheduler.className;
    if (timestep instanceof tf.Tensor && timestep.dtype === "int32") {
      throw new TypeError(
        `${name}.step: integer timestep tensors (indices from enumerate(timesteps)) are not supported; pass one of scheduler.timesteps`,
      );
    }
    checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    const sigma = this.currentSigma(timestep);
    const i = this._stepIndex as number;
    // sigma_up / sigma_down (float32 scalars, as torch)
    const sigmaTo = this.sigmas[i + 1];
    const to2 = f32(sigmaTo * sigmaTo);
    const from2 = f32(sigma * sigma);
    const sigmaUp = f32(Math.sqrt(f32(f32(to2 * f32(from2 - to2)) / from2)));
    const sigmaDown = f32(Math.sqrt(f32(to2 - f32(sigmaUp * sigmaUp))));
    const noise = stepNoise(name, sample.shape, options);
    const out = tf.tidy(() => {
      const x0 =
        this.config.prediction_type === "epsilon"
          ? tf.sub(sample, tf.mul(modelOutput, sigma))
          : vPredictionX0(modelOutput, sample, sigma);
      const derivative = tf.div(tf.sub(sample, x0), sigma);
      const dt = f32(sigmaDown - sigma);
      const prev = tf.add(tf.add(sample, tf.mul(derivative, dt)), tf.mul(noise, sigmaUp));
      return { prevSample: asSample(sample, prev), predOriginalSample: asSample(sample, x0) };
    });
    noise.dispose();
    this._stepIndex = i + 1;
    return out;
  }
}

registerScheduler(EulerAncestralDiscreteScheduler);
