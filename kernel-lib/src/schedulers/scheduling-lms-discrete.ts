// LMSDiscreteScheduler, as diffusers 0.27.2 scheduling_lms_discrete.py: k-diffusion's
// `sample_lms`, a linear multistep (Adams–Bashforth type) solver of the probability-flow ODE
// dx/dsigma = (x - x_0) / sigma (Karras et al. 2022 eq. 3 with sigma(t) = t). With the last
// `order` derivatives d_{i-k}, x_{i+1} = x_i + sum_k c_k d_{i-k}, where c_k is the integral from
// sigma_i to sigma_{i+1} of the Lagrange basis polynomial through sigma_i, ..., sigma_{i-order+1}
// that is 1 at sigma_{i-k}.
//
// diffusers integrates c_k with scipy.integrate.quad (adaptive Gauss–Kronrod). The integrand is a
// polynomial of degree order-1, so an m-point Gauss–Legendre rule with 2m - 1 >= order - 1 is exact;
// we use that (float64), which agrees with quad to its roundoff.
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec } from "../io/config.js";
import {
  KarrasDiffusionSchedulers,
  type PredictionType,
  registerScheduler,
  type SchedulerOutputWithOriginal,
} from "./scheduling-utils.js";
import { cumprodF32 } from "./float32.js";
import { alphasFromBetas, type BetaSchedule } from "./betas.js";
import { checkNumInferenceSteps, type Timestep, type TimestepSpacing } from "./timesteps.js";
import { asSample, checkShape } from "./sample-layout.js";
import { SIGMA_BETA_SCHEDULES, SigmaDiscreteScheduler, vPredictionX0 } from "./scheduling-euler-discrete.js";

/** LMSDiscreteScheduler's config (diffusers' `__init__` arguments, snake_case). */
export interface LMSDiscreteSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  use_karras_sigmas: boolean | null;
  prediction_type: PredictionType;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
}

/** prev_sample and pred_original_sample (new tensors the caller owns). */
export type LMSDiscreteSchedulerOutput<T extends tf.Tensor = tf.Tensor> = SchedulerOutputWithOriginal<T>;

export interface LMSDiscreteStepOptions {
  /** Order of the multistep method (how many past derivatives are combined). Default 4. */
  order?: number;
}

const glCache = new Map<number, { nodes: Float64Array; weights: Float64Array }>();

/**
 * Nodes and weights of the m-point Gauss–Legendre rule on [-1, 1] (exact for polynomials of
 * degree <= 2m - 1): roots of P_m by Newton's method from Chebyshev-like guesses,
 * w_i = 2 / ((1 - x_i^2) P_m'(x_i)^2).
 */
export function gaussLegendre(m: number): { nodes: Float64Array; weights: Float64Array } {
  if (!Number.isInteger(m) || m < 1) throw new RangeError(`gaussLegendre: m must be an integer >= 1, got ${m}`);
  const hit = glCache.get(m);
  if (hit) return hit;
  const nodes = new Float64Array(m);
  const weights = new Float64Array(m);
  for (let i = 0; i < m; i++) {
    let x = Math.cos((Math.PI * (i + 0.75)) / (m + 0.5));
    let dp = 0;
    for (let iter = 0; iter < 100; iter++) {
      // P_m(x) and P_m'(x) by the three-term recurrence
      let p0 = 1;
      let p1 = x;
      for (let k = 2; k <= m; k++) {
        const p2 = ((2 * k - 1) * x * p1 - (k - 1) * p0) / k;
        p0 = p1;
        p1 = p2;
      }
      const pm = m === 1 ? x : p1;
      const pm1 = m === 1 ? 1 : p0;
      dp = (m * (x * pm - pm1)) / (x * x - 1);
      const dx = pm / dp;
      x -= dx;
      if (Math.abs(dx) < 1e-16) break;
    }
    nodes[i] = x;
    weights[i] = 2 / ((1 - x * x) * dp * dp);
  }
  const rule = { nodes, weights };
  glCache.set(m, rule);
  return rule;
}

export class LMSDiscreteScheduler extends SigmaDiscreteScheduler {
  static override readonly className: string = "LMSDiscreteScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      use_karras_sigmas: false,
      prediction_type: "epsilon",
      timestep_spacing: "linspace",
      steps_offset: 0,
    },
    types: { num_train_timesteps: "integer", trained_betas: "array|null", use_karras_sigmas: "boolean|null", steps_offset: "integer" },
  };

  declare readonly config: Readonly<LMSDiscreteSchedulerConfig>;
  /** The derivatives d = (x - x_0) / sigma of the last steps, oldest first (state; owned here). */
  derivatives: tf.Tensor[] = [];

  constructor(config: Partial<LMSDiscreteSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const c = this.config;
    this.betas = this.configBetas(SIGMA_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    this.order = 1;
    // as diffusers: the constructor already sets a schedule of num_train_timesteps steps
    this.setTimesteps(c.num_train_timesteps);
  }

  /**
   * Timesteps per `timestep_spacing` (float32), sigmas interpolated linearly in t (or Karras
   * sigmas, then float64 timesteps from sigma_to_t), a final 0. Frees the stored derivatives.
   */
  setTimesteps(numInferenceSteps: number): void {
    const name = LMSDiscreteScheduler.className;
    const n = checkNumInferenceSteps(name, numInferenceSteps, this.config.num_train_timesteps as number);
    const { timesteps, sigmas } = this.interpolatedSchedule(n);
    this.setSchedule(n, timesteps, sigmas);
    this.dispose();
  }

  /** Frees the stored derivatives (the scheduler stays usable: the next step starts at first order). */
  override dispose(): void {
    tf.dispose(this.derivatives);
    this.derivatives = [];
  }

  /**
   * `get_lms_coefficient(order, t, current_order)`: integral over [sigma_t, sigma_{t+1}] of the
   * Lagrange basis polynomial through sigma_t, ..., sigma_{t-order+1} that is 1 at
   * sigma_{t-current_order} (exact Gauss–Legendre quadrature, float64).
   */
  getLmsCoefficient(order: number, t: number, currentOrder: number): number {
    const s = this.sigmas;
    if (!Number.isInteger(order) || order < 1 || t - order + 1 < 0 || t + 1 >= s.length || currentOrder < 0 || currentOrder >= order) {
      throw new RangeError(`${LMSDiscreteScheduler.className}.getLmsCoefficient: bad arguments (order ${order}, t ${t}, current_order ${currentOrder})`);
    }
    const basis = (tau: number): number => {
      let prod = 1;
      for (let k = 0; k < order; k++) {
        if (k === currentOrder) continue;
        prod *= (tau - s[t - k]) / (s[t - currentOrder] - s[t - k]);
      }
      return prod;
    };
    const a = s[t];
    const b = s[t + 1];
    const { nodes, weights } = gaussLegendre(Math.max(1, Math.ceil(order / 2)));
    const half = (b - a) / 2;
    const mid = (a + b) / 2;
    let sum = 0;
    for (let i = 0; i < nodes.length; i++) sum += weights[i] * basis(mid + half * nodes[i]);
    return sum * half;
  }

  /**
   * One LMS step: x_0 from the model output, d = (x - x_0) / sigma stored, then
   * x_{i+1} = x_i + sum_k c_k d_{i-k} over min(i + 1, order) derivatives.
   * Inputs are not disposed; both outputs are new tensors.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T, options: LMSDiscreteStepOptions = {}): LMSDiscreteSchedulerOutput<T> {
    const name = LMSDiscreteScheduler.className;
    const order = options.order ?? 4;
    if (!Number.isInteger(order) || order < 1) throw new RangeError(`${name}.step: order must be an integer >= 1, got ${String(order)}`);
    checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    const sigma = this.currentSigma(timestep);
    const i = this._stepIndex as number;
    const pt = this.config.prediction_type;
    const { x0, derivative } = tf.tidy(() => {
      let x0: tf.Tensor;
      if (pt === "epsilon") x0 = tf.sub(sample, tf.mul(modelOutput, sigma));
      else if (pt === "v_prediction") x0 = vPredictionX0(modelOutput, sample, sigma);
      else x0 = tf.clone(modelOutput);
      return { x0, derivative: tf.div(tf.sub(sample, x0), sigma) };
    });
    this.derivatives.push(derivative);
    if (this.derivatives.length > order) this.derivatives.shift()?.dispose();
    const used = Math.min(i + 1, order);
    const coeffs = Array.from({ length: used }, (_, k) => this.getLmsCoefficient(used, i, k));
    const prevSample = tf.tidy(() => {
      // sum_k c_k d_{i-k}, newest derivative first (zip stops at the shorter list)
      let acc: tf.Tensor | null = null;
      const n = Math.min(coeffs.length, this.derivatives.length);
      for (let k = 0; k < n; k++) {
        const term = tf.mul(this.derivatives[this.derivatives.length - 1 - k], coeffs[k]);
        acc = acc === null ? term : tf.add(acc, term);
      }
      return acc === null ? tf.clone(sample) : tf.add(sample, acc);
    });
    this._stepIndex = i + 1;
    return { prevSample: asSample(sample, prevSample), predOriginalSample: asSample(sample, x0) };
  }
}

registerScheduler(LMSDiscreteScheduler);
