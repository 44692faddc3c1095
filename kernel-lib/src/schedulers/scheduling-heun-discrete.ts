// HeunDiscreteScheduler, as diffusers 0.27.2 scheduling_heun_discrete.py: Karras et al. 2022
// Algorithm 1 (deterministic 2nd-order Heun sampler, no churn). Every interval but the last takes
// two model evaluations: an Euler predictor x' = x + (sigma_next - sigma) d(x, sigma), then the
// trapezoidal corrector x_next = x + (sigma_next - sigma) (d(x, sigma) + d(x', sigma_next)) / 2;
// the last interval (to sigma 0) is a plain Euler step. So the timesteps (and sigmas) are
// repeated: t_0, t_1, t_1, t_2, t_2, ... and `step` is called 2N - 1 times for N steps.
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec } from "../io/config.js";
import { KarrasDiffusionSchedulers, type PredictionType, registerScheduler, type SchedulerOutput } from "./scheduling-utils.js";
import { cumprodF32 } from "./float32.js";
import { alphasFromBetas, type BetaSchedule, betasForAlphaBar } from "./betas.js";
import { checkNumInferenceSteps, type Timestep, type TimestepSpacing } from "./timesteps.js";
import { asSample, checkShape } from "./sample-layout.js";
import { SIGMA_BETA_SCHEDULES, SigmaDiscreteScheduler, vPredictionX0 } from "./scheduling-euler-discrete.js";

const f32 = Math.fround;

/** Heun's beta schedules: the sigma schedulers' plus "exp" (alpha-bar(t) = exp(-12 t)). */
export type HeunBetaSchedule = BetaSchedule | "exp";

/** HeunDiscreteScheduler's config (diffusers' `__init__` arguments, snake_case). */
export interface HeunDiscreteSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: HeunBetaSchedule;
  trained_betas: number[] | null;
  prediction_type: PredictionType;
  use_karras_sigmas: boolean | null;
  clip_sample: boolean | null;
  clip_sample_range: number;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
}

/** `SchedulerOutput`: prev_sample only (a new tensor the caller owns), as diffusers. */
export type HeunDiscreteSchedulerOutput<T extends tf.Tensor = tf.Tensor> = SchedulerOutput<T>;

export class HeunDiscreteScheduler extends SigmaDiscreteScheduler {
  static override readonly className: string = "HeunDiscreteScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.00085,
      beta_end: 0.012,
      beta_schedule: "linear",
      trained_betas: null,
      prediction_type: "epsilon",
      use_karras_sigmas: false,
      clip_sample: false,
      clip_sample_range: 1.0,
      timestep_spacing: "linspace",
      steps_offset: 0,
    },
    types: {
      num_train_timesteps: "integer",
      trained_betas: "array|null",
      use_karras_sigmas: "boolean|null",
      clip_sample: "boolean|null",
      steps_offset: "integer",
    },
  };

  declare readonly config: Readonly<HeunDiscreteSchedulerConfig>;
  /** First-order derivative d(x, sigma) kept for the corrector (state; owned here). */
  prevDerivative: tf.Tensor | null = null;
  /** sigma_next - sigma of the interval in progress (null in first-order state). */
  dt: number | null = null;
  /** x at the start of the interval in progress (state; owned here). */
  sample: tf.Tensor | null = null;

  constructor(config: Partial<HeunDiscreteSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const c = this.config;
    this.betas =
      c.beta_schedule === "exp" && (c.trained_betas === null || c.trained_betas === undefined)
        ? betasForAlphaBar(c.num_train_timesteps, 0.999, "exp")
        : this.configBetas(SIGMA_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.order = 2;
    // as diffusers: the constructor already sets a schedule of num_train_timesteps steps
    this.setTimesteps(c.num_train_timesteps);
  }

  /** diffusers `state_in_first_order`: true when the next step is a predictor (Euler) step. */
  get stateInFirstOrder(): boolean {
    return this.dt === null;
  }

  /**
   * N timesteps per `timestep_spacing`, sigmas interpolated linearly in t (or Karras sigmas, with
   * float64 timesteps from sigma_to_t), then repeated for the two stages:
   * sigmas [s_0, s_1, s_1, ..., s_{N-1}, s_{N-1}, 0], timesteps [t_0, t_1, t_1, ..., t_{N-1}, t_{N-1}].
   * Frees the stored state.
   */
  setTimesteps(numInferenceSteps: number): void {
    const name = HeunDiscreteScheduler.className;
    const n = checkNumInferenceSteps(name, numInferenceSteps, this.config.num_train_timesteps as number);
    const { timesteps, sigmas: sig } = this.interpolatedSchedule(n);
    const m = sig.length;
    const sigmas = new Float32Array(2 * m - 1); // setSchedule appends the final 0
    sigmas[0] = sig[0];
    for (let k = 1; k < m; k++) sigmas[2 * k - 1] = sigmas[2 * k] = sig[k];
    const ts = [timesteps[0]];
    for (let k = 1; k < timesteps.length; k++) ts.push(timesteps[k], timesteps[k]);
    this.setSchedule(n, ts, sigmas);
    this.dispose();
  }

  /** Frees the stored state (first-order state again). */
  override dispose(): void {
    tf.dispose([this.prevDerivative, this.sample].filter((t): t is tf.Tensor => t !== null));
    this.prevDerivative = null;
    this.sample = null;
    this.dt = null;
  }

  /**
   * One Heun stage. First order: d = (x - x_0) / sigma, x' = x + (sigma_next - sigma) d (d, dt and
   * x are kept). Second order: d' = (x' - x_0') / sigma_next, x_next = x + dt (d + d') / 2.
   * x_0 is clipped to +-clip_sample_range when clip_sample. Inputs are not disposed; the output is new.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T): HeunDiscreteSchedulerOutput<T> {
    const name = HeunDiscreteScheduler.className;
    checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    if (this._stepIndex === null) this.initStepIndex(timestep);
    const i = this._stepIndex as number;
    const first = this.stateInFirstOrder;
    if (i >= this.timesteps.length) {
      throw new RangeError(`${name}: step index ${i} is past the last timestep; call setTimesteps(n) to start a new run`);
    }
    const sigma = first ? this.sigmas[i] : this.sigmas[i - 1];
    const sigmaNext = first ? this.sigmas[i + 1] : this.sigmas[i];
    const sigmaHat = sigma; // gamma = 0
    const sigmaInput = first ? sigmaHat : sigmaNext;
    const c = this.config;
    const x0 = (): tf.Tensor => {
      let x0: tf.Tensor;
      if (c.prediction_type === "epsilon") x0 = tf.sub(sample, tf.mul(modelOutput, sigmaInput));
      else if (c.prediction_type === "v_prediction") x0 = vPredictionX0(modelOutput, sample, sigmaInput);
      else x0 = modelOutput;
      if (c.clip_sample) x0 = tf.clipByValue(x0, -c.clip_sample_range, c.clip_sample_range);
      return x0;
    };
    let prevSample: tf.Tensor;
    if (first) {
      const dt = f32(sigmaNext - sigmaHat);
      const r = tf.tidy(() => {
        const derivative = tf.div(tf.sub(sample, x0()), sigmaHat);
        return { prev: tf.add(sample, tf.mul(derivative, dt)), derivative, kept: tf.clone(sample) };
      });
      this.prevDerivative = r.derivative;
      this.sample = r.kept;
      this.dt = dt;
      prevSample = r.prev;
    } else {
      const prevDerivative = this.prevDerivative as tf.Tensor;
      const start = this.sample as tf.Tensor;
      const dt = this.dt as number;
      prevSample = tf.tidy(() => {
        const d2 = tf.div(tf.sub(sample, x0()), sigmaNext);
        const derivative = tf.div(tf.add(prevDerivative, d2), 2);
        return tf.add(start, tf.mul(derivative, dt));
      });
      this.dispose();
    }
    this._stepIndex = i + 1;
    return { prevSample: asSample(sample, prevSample) };
  }
}

registerScheduler(HeunDiscreteScheduler);
