// LCMScheduler (Luo et al. 2023, "Latent Consistency Models"), as diffusers 0.27.2 scheduling_lcm.py.
// The model is a consistency function f(x_t, t) = c_skip(t) x_t + c_out(t) x_0(x_t, t) with the
// boundary-condition scalings of consistency models (Song et al. 2023), as LCM uses them:
// c_skip = sigma_data^2 / ((s t)^2 + sigma_data^2), c_out = s t / sqrt((s t)^2 + sigma_data^2),
// sigma_data = 0.5, s = timestep_scaling. Multistep consistency sampling: denoise to
// f(x_t, t), then re-noise to the next timestep with fresh noise (all but the last step).
// Timesteps are a subset of the `original_inference_steps`-step distillation schedule (the
// config's timestep_spacing / steps_offset are not used). Float32 scalars as torch.
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec } from "../io/config.js";
import { IndexedSchedulerMixin, type PredictionType, registerScheduler, type SchedulerOutput } from "./scheduling-utils.js";
import { cumprodF32 } from "./float32.js";
import { alphasFromBetas, BETA_SCHEDULES, type BetaSchedule } from "./betas.js";
import { checkNumInferenceSteps, integerTimestep, type Timestep, type TimestepSpacing, timestepValue } from "./timesteps.js";
import { addNoiseWithAlphas, velocityWithAlphas } from "./add-noise.js";
import { clipOrThreshold } from "./thresholding.js";
import { type NoiseOptions, stepNoise } from "./noise.js";
import { asSample, checkShape } from "./sample-layout.js";

const f32 = Math.fround;

const LCM_BETA_SCHEDULES: readonly BetaSchedule[] = BETA_SCHEDULES.filter((b) => b !== "sigmoid");

/** LCMScheduler's config (diffusers' `__init__` arguments). */
export interface LCMSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  original_inference_steps: number;
  clip_sample: boolean;
  clip_sample_range: number;
  set_alpha_to_one: boolean;
  steps_offset: number;
  prediction_type: PredictionType;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  timestep_spacing: TimestepSpacing;
  timestep_scaling: number;
  rescale_betas_zero_snr: boolean;
}

/** `LCMSchedulerOutput`: the next sample and the consistency-function output (both new tensors). */
export interface LCMSchedulerOutput<T extends tf.Tensor = tf.Tensor> extends SchedulerOutput<T> {
  /** f(x_t, t) = c_skip x_t + c_out x_0: the model's denoised estimate. */
  denoised: T;
}

export interface LCMSetTimestepsOptions {
  /** Size of the distillation schedule the timesteps are taken from (default: the config's). */
  originalInferenceSteps?: number;
  /** Custom descending timesteps (then numInferenceSteps must be null). */
  timesteps?: number[];
  /** img2img strength in (0, 1]: uses the first strength * original steps of the schedule. */
  strength?: number;
}

export class LCMScheduler extends IndexedSchedulerMixin {
  static override readonly className: string = "LCMScheduler";
  /** diffusers' LCMScheduler declares no `_compatibles`. */
  static override readonly compatibles: readonly string[] = [];
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: "scaled_linear",
      trained_betas: null,
      original_inference_steps: 50,
      clip_sample: false,
      clip_sample_range: 1.0,
      set_alpha_to_one: true,
      steps_offset: 0,
      prediction_type: "epsilon",
      thresholding: false,
      dynamic_thresholding_ratio: 0.995,
      sample_max_value: 1.0,
      timestep_spacing: "leading",
      timestep_scaling: 10.0,
      rescale_betas_zero_snr: false,
    },
    types: {
      num_train_timesteps: "integer",
      trained_betas: "array|null",
      original_inference_steps: "integer",
      steps_offset: "integer",
    },
  };

  declare readonly config: Readonly<LCMSchedulerConfig>;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** alpha-bar past the end of the schedule: 1 with set_alpha_to_one, else alpha-bar_0. */
  readonly finalAlphaCumprod: number;
  /** sigma_data of the boundary-condition scalings. */
  readonly sigmaData = 0.5;
  /** True after setTimesteps with custom timesteps. */
  customTimesteps = false;

  constructor(config: Partial<LCMSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const c = this.config;
    this.betas = this.configBetas(LCM_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.finalAlphaCumprod = c.set_alpha_to_one ? 1 : this.alphasCumprod[0];
    this.initNoiseSigma = 1.0;
    this.order = 1;
    const T = this.alphasCumprod.length;
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
  }

  /**
   * The LCM schedule: the distillation timesteps k-1, 2k-1, ..., (strength * original) k - 1 with
   * k = T // original_inference_steps, reversed, then `numInferenceSteps` of them at evenly spaced
   * indices (floor(linspace(0, len, n, endpoint=False))). Or custom descending `timesteps`.
   */
  setTimesteps(numInferenceSteps?: number | null, options: LCMSetTimestepsOptions = {}): void {
    const name = LCMScheduler.className;
    const c = this.config;
    const T = c.num_train_timesteps;
    const custom = options.timesteps;
    const strength = options.strength ?? 1.0;
    if ((numInferenceSteps === undefined || numInferenceSteps === null) && custom === undefined) {
      throw new RangeError(`${name}.setTimesteps: pass exactly one of numInferenceSteps or options.timesteps`);
    }
    if (numInferenceSteps !== undefined && numInferenceSteps !== null && custom !== undefined) {
      throw new RangeError(`${name}.setTimesteps: pass only one of numInferenceSteps or options.timesteps`);
    }
    if (typeof strength !== "number" || !(strength > 0 && strength <= 1)) {
      throw new RangeError(`${name}.setTimesteps: strength must be in (0, 1], got ${String(strength)}`);
    }
    const original = options.originalInferenceSteps ?? c.original_inference_steps;
    if (!Number.isInteger(original) || original < 1) {
      throw new RangeError(`${name}.setTimesteps: original_inference_steps must be an integer >= 1, got ${String(original)}`);
    }
    if (original > T) {
      throw new RangeError(
        `${name}.setTimesteps: original_inference_steps ${original} cannot be larger than num_train_timesteps ${T} ` +
          `(the model was trained on ${T} timesteps)`,
      );
    }
    const k = Math.floor(T / original);
    const origin: number[] = [];
    for (let i = 1; i <= Math.trunc(original * strength); i++) origin.push(i * k - 1);

    let timesteps: number[];
    if (custom !== undefined) {
      if (!Array.isArray(custom) || custom.length === 0 || !custom.every((t) => Number.isInteger(t) && t >= 0)) {
        throw new RangeError(`${name}.setTimesteps: timesteps must be a non-empty array of integers >= 0`);
      }
      const train = new Set(origin);
      const offSchedule: number[] = [];
      for (let i = 1; i < custom.length; i++) {
        if (custom[i] >= custom[i - 1]) throw new RangeError(`${name}.setTimesteps: custom timesteps must be in descending order`);
        if (!train.has(custom[i])) offSchedule.push(custom[i]);
      }
      if (custom[0] >= T) throw new RangeError(`${name}.setTimesteps: timesteps must start below num_train_timesteps ${T}`);
      if (strength === 1 && custom[0] !== T - 1) {
        console.warn(`${name}: the first custom timestep is ${custom[0]}, not ${T - 1}; results may be unexpected`);
      }
      if (offSchedule.length > 0) {
        console.warn(`${name}: custom timesteps ${offSchedule.join(", ")} are not on the distillation schedule; results may be unexpected`);
      }
      if (custom.length > original) {
        console.warn(`${name}: ${custom.length} custom timesteps exceed the ${original}-step distillation schedule; results may be unexpected`);
      }
      this.numInferenceSteps = custom.length;
      this.customTimesteps = true;
      const init = Math.min(Math.trunc(custom.length * strength), custom.length);
      const tStart = Math.max(custom.length - init, 0);
      timesteps = custom.slice(tStart * this.order);
    } else {
      const n = checkNumInferenceSteps(name, numInferenceSteps, T);
      if (Math.floor(origin.length / n) < 1) {
        throw new RangeError(
          `${name}.setTimesteps: original_inference_steps x strength = ${original} x ${strength} is smaller than ` +
            `num_inference_steps ${n}; use fewer steps than ${Math.trunc(original * strength)} or a strength above ${n / original}`,
        );
      }
      if (n > original) {
        throw new RangeError(
          `${name}.setTimesteps: num_inference_steps ${n} cannot be larger than original_inference_steps ${original} ` +
            `(the schedule is a subset of the ${original}-step distillation schedule)`,
        );
      }
      const reversed = origin.slice().reverse();
      const stepSize = reversed.length / n; // np.linspace(0, len, n, endpoint=False)
      timesteps = Array.from({ length: n }, (_, i) => reversed[Math.floor(i * stepSize)]);
      this.numInferenceSteps = n;
      this.customTimesteps = false;
    }
    this.timesteps = timesteps;
    this.resetStepIndex();
  }

  /** c_skip and c_out at `timestep` (float32, as torch with a tensor timestep). */
  getScalingsForBoundaryCondition(timestep: number): { cSkip: number; cOut: number } {
    const st = f32(f32(timestep) * f32(this.config.timestep_scaling));
    const d = f32(f32(st * st) + f32(this.sigmaData * this.sigmaData));
    return { cSkip: f32(f32(1 / d) * f32(this.sigmaData * this.sigmaData)), cOut: f32(st / f32(Math.sqrt(d))) };
  }

  /** diffusers `index_for_timestep`: the second match when the timestep repeats. */
  indexForTimestep(timestep: Timestep, scheduleTimesteps: readonly number[] = this.timesteps): number {
    const t = timestepValue(timestep, `${LCMScheduler.className}.indexForTimestep`);
    const hits = scheduleTimesteps.flatMap((x, i) => (x === t ? [i] : []));
    if (hits.length === 0) {
      throw new RangeError(`${LCMScheduler.className}: timestep ${t} is not in the schedule [${scheduleTimesteps.join(", ")}]`);
    }
    return hits.length > 1 ? hits[1] : hits[0];
  }

  /**
   * One LCM step: x_0 from the model output, the consistency output denoised = c_out x_0 + c_skip x_t,
   * then (except at the last step) re-noise to the next timestep: sqrt(abar_prev) denoised +
   * sqrt(1 - abar_prev) z. z comes from `generator` (NCHW order) unless given as `noise`.
   * Inputs are not disposed; both outputs are new tensors.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T, options: NoiseOptions = {}): LCMSchedulerOutput<T> {
    const name = LCMScheduler.className;
    const c = this.config;
    if (this.numInferenceSteps === null) {
      throw new Error(`${name}.step: the number of inference steps is not set; call setTimesteps(n) after creating the scheduler`);
    }
    checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    const t = integerTimestep(name, timestep, this.alphasCumprod.length);
    if (this._stepIndex === null) this.initStepIndex(t);
    const k = this._stepIndex as number;
    // 1. the next timestep (the same one at the end)
    const prevT = k + 1 < this.timesteps.length ? this.timesteps[k + 1] : t;
    // 2. alphas, betas
    const a = this.alphasCumprod[t];
    const ap = prevT >= 0 ? this.alphasCumprod[prevT] : this.finalAlphaCumprod;
    const sqrtA = f32(Math.sqrt(a));
    const sqrtB = f32(Math.sqrt(f32(1 - a)));
    // 3. boundary-condition scalings
    const { cSkip, cOut } = this.getScalingsForBoundaryCondition(t);
    const last = k === this.numInferenceSteps - 1;
    const noise = last ? null : stepNoise(name, sample.shape, options);
    const out = tf.tidy(() => {
      // 4. x_0 from the parameterisation
      let x0: tf.Tensor;
      if (c.prediction_type === "epsilon") x0 = tf.div(tf.sub(sample, tf.mul(modelOutput, sqrtB)), sqrtA);
      else if (c.prediction_type === "sample") x0 = modelOutput;
      else x0 = tf.sub(tf.mul(sample, sqrtA), tf.mul(modelOutput, sqrtB));
      // 5. clip or threshold x_0
      x0 = clipOrThreshold(c, x0);
      // 6. consistency function output
      const denoised = tf.add(tf.mul(x0, cOut), tf.mul(sample, cSkip));
      // 7. inject noise for the next step (multistep consistency sampling)
      const prevSample =
        noise === null
          ? tf.clone(denoised)
          : tf.add(tf.mul(denoised, f32(Math.sqrt(ap))), tf.mul(noise, f32(Math.sqrt(f32(1 - ap)))));
      return { prevSample: asSample(sample, prevSample), denoised: asSample(sample, denoised) };
    });
    noise?.dispose();
    this._stepIndex = k + 1;
    return out;
  }

  /** Forward process q(x_t | x_0): one timestep per batch item (or one for all). */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return addNoiseWithAlphas(LCMScheduler.className, this.alphasCumprod, originalSamples, noise, timesteps);
  }

  /** The v-prediction target for `sample` (= x_0) and `noise` at `timesteps`. */
  getVelocity<T extends tf.Tensor>(sample: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return velocityWithAlphas(LCMScheduler.className, this.alphasCumprod, sample, noise, timesteps);
  }
}

registerScheduler(LCMScheduler);

