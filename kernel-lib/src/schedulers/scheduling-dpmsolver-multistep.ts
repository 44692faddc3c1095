// DPMSolverMultistepScheduler, as diffusers 0.27.2 scheduling_dpmsolver_multistep.py:
// multistep DPM-Solver (Lu et al. 2022, "DPM-Solver", noise-prediction form) and DPM-Solver++
// (Lu et al. 2022, "DPM-Solver++", data-prediction form), orders 1-3, plus their SDE variants.
// Everything is written in the half-log-SNR lambda = log(alpha_t / sigma_t); h = lambda_t - lambda_s.
//
// Numerics follow diffusers: the train sigmas and Karras / Lu schedules are numpy (float64 ramps,
// float32 tables), every step coefficient is a float32 torch scalar, and tensors are float32.
// The history of converted model outputs is kept between steps (and released after the last one,
// on setTimesteps, or by dispose()).
import * as tf from "@tensorflow/tfjs";
import { type Config, ConfigError, type ConfigSpec, oneOf } from "../io/config.js";
import {
  IndexedSchedulerMixin,
  KarrasDiffusionSchedulers,
  type PredictionType,
  registerScheduler,
  type SchedulerOutput,
  updateRegisteredConfig,
} from "./scheduling-utils.js";
import { cumprodF32, logF32 } from "./float32.js";
import { npLinspace, roundHalfEven } from "./numpy.js";
import { alphasFromBetas, type BetaSchedule, MULTISTEP_BETA_SCHEDULES } from "./betas.js";
import {
  checkNumInferenceSteps,
  checkStepTimestep,
  multistepIndexForTimestep,
  multistepTimesteps,
  type Timestep,
  type TimestepSpacing,
  timestepValue,
} from "./timesteps.js";
import { karrasSigmas, multistepKarrasSchedule, sigmasFromAlphasCumprod, sigmaToAlphaSigmaT, sigmaToT, vpAt, vpTables } from "./sigmas.js";
import { multistepAddNoise } from "./add-noise.js";
import { thresholdSample } from "./thresholding.js";
import { type NoiseOptions, stepNoise } from "./noise.js";
import { channelAxis, asSample, checkShape } from "./sample-layout.js";

// shared helpers under the names this file had for them (its tests import them from here)
export { karrasSigmas as multistepKarrasSigmas, multistepIndexForTimestep, multistepTimesteps, sigmaToAlphaSigmaT, sigmaToT as multistepSigmaToT };

const f32 = Math.fround;

/** Reads a `lambda_min_clipped` config value: a number, "-inf"/"inf" strings (Python's float repr), null = -inf. */
export function parseLambdaMinClipped(className: string, v: unknown): number {
  if (v === null || v === undefined) return -Infinity;
  if (typeof v === "number" && !Number.isNaN(v)) return v;
  if (typeof v === "string") {
    const s = v.trim().toLowerCase();
    if (s === "-inf" || s === "-infinity") return -Infinity;
    if (s === "inf" || s === "infinity" || s === "+inf") return Infinity;
    const x = Number(s);
    if (s !== "" && !Number.isNaN(x)) return x;
  }
  throw new ConfigError(`${className}: config "lambda_min_clipped" is ${JSON.stringify(v)}; expected a number (or "-inf")`);
}

// ---------------------------------------------------------------------------------------------

export const DPM_ALGORITHM_TYPES = ["dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"] as const;
export type DPMAlgorithmType = (typeof DPM_ALGORITHM_TYPES)[number];
export const DPM_SOLVER_TYPES = ["midpoint", "heun"] as const;
export type DPMSolverType = (typeof DPM_SOLVER_TYPES)[number];
export const DPM_FINAL_SIGMAS_TYPES = ["zero", "sigma_min"] as const;
export type DPMFinalSigmasType = (typeof DPM_FINAL_SIGMAS_TYPES)[number];

/** DPMSolverMultistepScheduler's config (diffusers' `__init__` arguments). */
export interface DPMSolverMultistepSchedulerConfig extends Config {
  num_train_timesteps: number;
  beta_start: number;
  beta_end: number;
  beta_schedule: BetaSchedule;
  trained_betas: number[] | null;
  solver_order: number;
  prediction_type: PredictionType;
  thresholding: boolean;
  dynamic_thresholding_ratio: number;
  sample_max_value: number;
  algorithm_type: DPMAlgorithmType;
  solver_type: DPMSolverType;
  lower_order_final: boolean;
  euler_at_final: boolean;
  use_karras_sigmas: boolean | null;
  use_lu_lambdas: boolean | null;
  final_sigmas_type: DPMFinalSigmasType;
  /** Python's -inf; JSON has no infinity, so "-inf" strings and null are read as -inf. */
  lambda_min_clipped: number | string | null;
  variance_type: "learned" | "learned_range" | string | null;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
  rescale_betas_zero_snr: boolean;
}

export interface DPMSolverMultistepStepOptions extends NoiseOptions {
  /** diffusers' `variance_noise`: the SDE noise itself, in the sample's layout (same as `noise`). */
  varianceNoise?: tf.Tensor;
}

export class DPMSolverMultistepScheduler extends IndexedSchedulerMixin {
  static override readonly className: string = "DPMSolverMultistepScheduler";
  static override readonly compatibles: readonly string[] = KarrasDiffusionSchedulers;
  static override readonly configSpec: ConfigSpec = {
    defaults: {
      num_train_timesteps: 1000,
      beta_start: 0.0001,
      beta_end: 0.02,
      beta_schedule: "linear",
      trained_betas: null,
      solver_order: 2,
      prediction_type: "epsilon",
      thresholding: false,
      dynamic_thresholding_ratio: 0.995,
      sample_max_value: 1.0,
      algorithm_type: "dpmsolver++",
      solver_type: "midpoint",
      lower_order_final: true,
      euler_at_final: false,
      use_karras_sigmas: false,
      use_lu_lambdas: false,
      final_sigmas_type: "zero",
      lambda_min_clipped: -Infinity,
      variance_type: null,
      timestep_spacing: "linspace",
      steps_offset: 0,
      rescale_betas_zero_snr: false,
    },
    types: {
      num_train_timesteps: "integer",
      trained_betas: "array|null",
      solver_order: "integer",
      steps_offset: "integer",
      use_karras_sigmas: "boolean|null",
      use_lu_lambdas: "boolean|null",
      final_sigmas_type: "string|null",
      lambda_min_clipped: "number|string|null",
      variance_type: "string|null",
    },
  };

  declare readonly config: Readonly<DPMSolverMultistepSchedulerConfig>;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  /** alpha-bar_t (the last one is 2^-24 with rescale_betas_zero_snr, so sigma_max stays finite). */
  readonly alphasCumprod: Float32Array;
  /** sqrt(abar), sqrt(1 - abar) and their log ratio per train step (float32). */
  readonly alphaT: Float32Array;
  readonly sigmaT: Float32Array;
  readonly lambdaT: Float32Array;
  /** sigma per inference step plus the final sigma (length n+1 after setTimesteps; train sigmas before). */
  sigmas: Float32Array;
  /** Converted model outputs (x_0 for ++, epsilon otherwise) of the last `solver_order` steps, oldest first. */
  modelOutputs: (tf.Tensor | null)[];
  lowerOrderNums = 0;

  constructor(config: Partial<DPMSolverMultistepSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const name = DPMSolverMultistepScheduler.className;
    const c = this.config;
    if (!(c.solver_order >= 1 && c.solver_order <= 3)) {
      throw new ConfigError(`${name}: config "solver_order" is ${c.solver_order}; supported: 1, 2, 3`);
    }
    parseLambdaMinClipped(name, c.lambda_min_clipped);
    this.betas = this.configBetas(MULTISTEP_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    // zero terminal SNR: keep the last abar just above 0 (the fp16 smallest subnormal) so sigma is finite
    if (c.rescale_betas_zero_snr) this.alphasCumprod[this.alphasCumprod.length - 1] = 2 ** -24;
    const T = this.alphasCumprod.length;
    ({ alphaT: this.alphaT, sigmaT: this.sigmaT, lambdaT: this.lambdaT } = vpTables(this.alphasCumprod));
    this.sigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    this.initNoiseSigma = 1.0;
    this.order = 1;

    // diffusers' config migrations: "deis" runs as dpmsolver++, UniPC / DEIS solver types as midpoint
    const algo = c.algorithm_type as string;
    if (!(DPM_ALGORITHM_TYPES as readonly string[]).includes(algo)) {
      if (algo === "deis") updateRegisteredConfig(this, { algorithm_type: "dpmsolver++" });
      else oneOf(name, c, "algorithm_type", DPM_ALGORITHM_TYPES);
    }
    const solver = c.solver_type as string;
    if (!(DPM_SOLVER_TYPES as readonly string[]).includes(solver)) {
      if (["logrho", "bh1", "bh2"].includes(solver)) updateRegisteredConfig(this, { solver_type: "midpoint" });
      else oneOf(name, c, "solver_type", DPM_SOLVER_TYPES);
    }
    // (diffusers checks the algorithm_type as given, so a "deis" config also needs "sigma_min")
    if (algo !== "dpmsolver++" && algo !== "sde-dpmsolver++" && c.final_sigmas_type === "zero") {
      throw new ConfigError(
        `${name}: final_sigmas_type "zero" is not supported for algorithm_type ${JSON.stringify(algo)}; set final_sigmas_type "sigma_min"`,
      );
    }
    oneOf(name, c, "final_sigmas_type", DPM_FINAL_SIGMAS_TYPES);

    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
    this.modelOutputs = new Array(c.solver_order).fill(null);
  }

  /**
   * Timesteps per `timestep_spacing` (or along Karras / uniform-lambda sigmas), and the sigma table
   * with its final entry (0 or sigma_min). Resets the solver history.
   */
  setTimesteps(numInferenceSteps: number): void {
    const name = DPMSolverMultistepScheduler.className;
    const c = this.config;
    const T = c.num_train_timesteps;
    const n = checkNumInferenceSteps(name, numInferenceSteps, T);
    // clip lambda(t) from below (needed by the cosine schedule): searchsorted on the flipped lambdas
    const lambdaMin = parseLambdaMinClipped(name, c.lambda_min_clipped);
    let clipped = 0;
    for (let i = this.lambdaT.length - 1; i >= 0 && this.lambdaT[i] < lambdaMin; i--) clipped++;
    const last = T - clipped;
    let timesteps: number[];

    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    const logSigmas = logF32(train);
    let sig: number[];
    if (c.use_karras_sigmas) {
      ({ sigmas: sig, timesteps } = multistepKarrasSchedule(c, train, n));
    } else if (c.use_lu_lambdas) {
      // Lu et al. 2022: uniform steps in log sigma (= -lambda up to the alpha factor)
      const lmin = logSigmas[0];
      const lmax = logSigmas[logSigmas.length - 1];
      sig = npLinspace(0, 1, n).map((r) => Math.exp(lmax + r * (lmin - lmax)));
      timesteps = sig.map((s) => roundHalfEven(sigmaToT(s, logSigmas)));
    } else {
      timesteps = multistepTimesteps(name, c.timestep_spacing, last, last, T, n, c.steps_offset);
      sig = timesteps.map((t) => train[Math.min(Math.max(t, 0), train.length - 1)]); // np.interp at integer points
    }
    const sigmaLast = c.final_sigmas_type === "sigma_min" ? train[0] : 0;
    this.sigmas = Float32Array.from([...sig, sigmaLast]);
    this.timesteps = timesteps;
    this.numInferenceSteps = timesteps.length;
    this.releaseHistory();
    this.modelOutputs = new Array(c.solver_order).fill(null);
    this.lowerOrderNums = 0;
    this.resetStepIndex();
  }

  /** Frees the kept model outputs (the scheduler stays usable; the next step starts a fresh history). */
  override dispose(): void {
    this.releaseHistory();
    this.lowerOrderNums = 0;
  }

  private releaseHistory(): void {
    for (let i = 0; i < this.modelOutputs.length; i++) {
      this.modelOutputs[i]?.dispose();
      this.modelOutputs[i] = null;
    }
  }

  /** diffusers `index_for_timestep` on the current schedule. */
  indexForTimestep(timestep: Timestep, scheduleTimesteps: readonly number[] = this.timesteps): number {
    return multistepIndexForTimestep(scheduleTimesteps, timestepValue(timestep, `${DPMSolverMultistepScheduler.className}.indexForTimestep`));
  }

  /**
   * The model output converted to what the solver integrates: x_0 (DPM-Solver++, data prediction) or
   * epsilon (DPM-Solver, noise prediction), at the current step's sigma. New tensor.
   */
  convertModelOutput(modelOutput: tf.Tensor, sample: tf.Tensor): tf.Tensor {
    const c = this.config;
    const [alphaT, sigmaT] = sigmaToAlphaSigmaT(this.sigmas[this._stepIndex as number]);
    const learned = c.variance_type === "learned" || c.variance_type === "learned_range";
    // only the "mean" channels of a learned-variance output (diffusers takes channels :3)
    const mean = (x: tf.Tensor) => {
      const ax = channelAxis(x);
      return tf.slice(x, x.shape.map(() => 0), x.shape.map((d, i) => (i === ax ? Math.min(3, d) : -1)));
    };
    return tf.tidy(() => {
      if (c.algorithm_type === "dpmsolver++" || c.algorithm_type === "sde-dpmsolver++") {
        let x0: tf.Tensor;
        if (c.prediction_type === "epsilon") {
          const eps = learned ? mean(modelOutput) : modelOutput;
          x0 = tf.div(tf.sub(sample, tf.mul(eps, sigmaT)), alphaT);
        } else if (c.prediction_type === "sample") {
          x0 = tf.clone(modelOutput);
        } else {
          x0 = tf.sub(tf.mul(sample, alphaT), tf.mul(modelOutput, sigmaT));
        }
        if (c.thresholding) x0 = thresholdSample(x0, c.dynamic_thresholding_ratio, c.sample_max_value);
        return x0;
      }
      let eps: tf.Tensor;
      if (c.prediction_type === "epsilon") eps = learned ? mean(modelOutput) : tf.clone(modelOutput);
      else if (c.prediction_type === "sample") eps = tf.div(tf.sub(sample, tf.mul(modelOutput, alphaT)), sigmaT);
      else eps = tf.add(tf.mul(modelOutput, alphaT), tf.mul(sample, sigmaT));
      if (c.thresholding) {
        const x0 = thresholdSample(tf.div(tf.sub(sample, tf.mul(eps, sigmaT)), alphaT), c.dynamic_thresholding_ratio, c.sample_max_value);
        eps = tf.div(tf.sub(sample, tf.mul(x0, alphaT)), sigmaT);
      }
      return eps;
    });
  }

  /** alpha, sigma and lambda at sigmas[i]. */
  private at(i: number): { a: number; s: number; l: number } {
    return vpAt(this.sigmas[i]);
  }

  /** First-order update: DPM-Solver-1 / DPM-Solver++(1), both = DDIM (Lu et al. 2022); SDE forms add fresh noise. */
  private firstOrder(m0: tf.Tensor, sample: tf.Tensor, noise: tf.Tensor | null): tf.Tensor {
    const k = this._stepIndex as number;
    const t = this.at(k + 1);
    const s = this.at(k);
    const h = f32(t.l - s.l);
    const algo = this.config.algorithm_type;
    return tf.tidy(() => {
      if (algo === "dpmsolver++") {
        // x_t = (sigma_t/sigma_s) x - alpha_t (e^{-h} - 1) x0
        return tf.sub(tf.mul(sample, f32(t.s / s.s)), tf.mul(m0, f32(t.a * f32(f32(Math.exp(-h)) - 1))));
      }
      if (algo === "dpmsolver") {
        // x_t = (alpha_t/alpha_s) x - sigma_t (e^{h} - 1) eps
        return tf.sub(tf.mul(sample, f32(t.a / s.a)), tf.mul(m0, f32(t.s * f32(f32(Math.exp(h)) - 1))));
      }
      const z = noise as tf.Tensor;
      if (algo === "sde-dpmsolver++") {
        // SDE-DPM-Solver++(1): x_t = (sigma_t/sigma_s) e^{-h} x + alpha_t (1 - e^{-2h}) x0 + sigma_t sqrt(1 - e^{-2h}) z
        const e2 = f32(Math.exp(f32(-2 * h)));
        return tf.add(
          tf.add(tf.mul(sample, f32(f32(t.s / s.s) * f32(Math.exp(-h)))), tf.mul(m0, f32(t.a * f32(1 - e2)))),
          tf.mul(z, f32(t.s * f32(Math.sqrt(f32(1 - e2))))),
        );
      }
      // SDE-DPM-Solver-1: x_t = (alpha_t/alpha_s) x - 2 sigma_t (e^h - 1) eps + sigma_t sqrt(e^{2h} - 1) z
      return tf.add(
        tf.sub(tf.mul(sample, f32(t.a / s.a)), tf.mul(m0, f32(2 * f32(t.s * f32(f32(Math.exp(h)) - 1))))),
        tf.mul(z, f32(t.s * f32(Math.sqrt(f32(f32(Math.exp(f32(2 * h))) - 1))))),
      );
    });
  }

  /** Second-order multistep update: DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) and its DPM-Solver / heun / SDE forms. */
  private secondOrder(sample: tf.Tensor, noise: tf.Tensor | null): tf.Tensor {
    const k = this._stepIndex as number;
    const t = this.at(k + 1);
    const s0 = this.at(k);
    const s1 = this.at(k - 1);
    const n = this.modelOutputs.length;
    const m0 = this.modelOutputs[n - 1] as tf.Tensor;
    const m1 = this.modelOutputs[n - 2] as tf.Tensor;
    const h = f32(t.l - s0.l);
    const h0 = f32(s0.l - s1.l);
    const r0 = f32(h0 / h);
    const { algorithm_type: algo, solver_type: solver } = this.config;
    const emh = f32(Math.exp(-h));
    const eh = f32(Math.exp(h));
    return tf.tidy(() => {
      // D0 = m0, D1 = (m0 - m1) / r0
      const D1 = tf.mul(tf.sub(m0, m1), f32(1 / r0));
      if (algo === "dpmsolver++") {
        const c0 = f32(t.a * f32(emh - 1));
        const c1 = solver === "midpoint" ? f32(0.5 * c0) : f32(t.a * f32(f32(f32(emh - 1) / h) + 1));
        const x = tf.sub(tf.mul(sample, f32(t.s / s0.s)), tf.mul(m0, c0));
        return solver === "midpoint" ? tf.sub(x, tf.mul(D1, c1)) : tf.add(x, tf.mul(D1, c1));
      }
      if (algo === "dpmsolver") {
        const c0 = f32(t.s * f32(eh - 1));
        const c1 = solver === "midpoint" ? f32(0.5 * c0) : f32(t.s * f32(f32(f32(eh - 1) / h) - 1));
        return tf.sub(tf.sub(tf.mul(sample, f32(t.a / s0.a)), tf.mul(m0, c0)), tf.mul(D1, c1));
      }
      const z = noise as tf.Tensor;
      if (algo === "sde-dpmsolver++") {
        const e2 = f32(Math.exp(f32(-2 * h)));
        const c0 = f32(t.a * f32(1 - e2));
        const c1 = solver === "midpoint" ? f32(0.5 * c0) : f32(t.a * f32(f32(f32(1 - e2) / f32(-2 * h)) + 1));
        const x = tf.add(tf.add(tf.mul(sample, f32(f32(t.s / s0.s) * emh)), tf.mul(m0, c0)), tf.mul(D1, c1));
        return tf.add(x, tf.mul(z, f32(t.s * f32(Math.sqrt(f32(1 - e2))))));
      }
      // sde-dpmsolver
      const c0 = f32(2 * f32(t.s * f32(eh - 1)));
      const c1 = solver === "midpoint" ? f32(t.s * f32(eh - 1)) : f32(2 * f32(t.s * f32(f32(f32(eh - 1) / h) - 1)));
      const x = tf.sub(tf.sub(tf.mul(sample, f32(t.a / s0.a)), tf.mul(m0, c0)), tf.mul(D1, c1));
      return tf.add(x, tf.mul(z, f32(t.s * f32(Math.sqrt(f32(f32(Math.exp(f32(2 * h))) - 1))))));
    });
  }

  /** Third-order multistep update: DPM-Solver++(3M) / multistep DPM-Solver-3 (Lu et al. 2022); ODE forms only. */
  private thirdOrder(sample: tf.Tensor): tf.Tensor {
    const name = DPMSolverMultistepScheduler.className;
    const { algorithm_type: algo } = this.config;
    if (algo !== "dpmsolver++" && algo !== "dpmsolver") {
      // diffusers 0.27 has no third-order SDE branch (it fails with an unbound x_t here)
      throw new Error(`${name}.step: algorithm_type ${JSON.stringify(algo)} has no third-order update; use solver_order 1 or 2`);
    }
    const k = this._stepIndex as number;
    const t = this.at(k + 1);
    const s0 = this.at(k);
    const s1 = this.at(k - 1);
    const s2 = this.at(k - 2);
    const n = this.modelOutputs.length;
    const m0 = this.modelOutputs[n - 1] as tf.Tensor;
    const m1 = this.modelOutputs[n - 2] as tf.Tensor;
    const m2 = this.modelOutputs[n - 3] as tf.Tensor;
    const h = f32(t.l - s0.l);
    const h0 = f32(s0.l - s1.l);
    const h1 = f32(s1.l - s2.l);
    const r0 = f32(h0 / h);
    const r1 = f32(h1 / h);
    const r01 = f32(r0 + r1);
    return tf.tidy(() => {
      const D10 = tf.mul(tf.sub(m0, m1), f32(1 / r0));
      const D11 = tf.mul(tf.sub(m1, m2), f32(1 / r1));
      const dd = tf.sub(D10, D11);
      const D1 = tf.add(D10, tf.mul(dd, f32(r0 / r01)));
      const D2 = tf.mul(dd, f32(1 / r01));
      const hh = f32(h * h);
      if (algo === "dpmsolver++") {
        const em = f32(f32(Math.exp(-h)) - 1);
        const c0 = f32(t.a * em);
        const c1 = f32(t.a * f32(f32(em / h) + 1));
        const c2 = f32(t.a * f32(f32(f32(em + h) / hh) - 0.5));
        const x = tf.add(tf.sub(tf.mul(sample, f32(t.s / s0.s)), tf.mul(m0, c0)), tf.mul(D1, c1));
        return tf.sub(x, tf.mul(D2, c2));
      }
      const ep = f32(f32(Math.exp(h)) - 1);
      const c0 = f32(t.s * ep);
      const c1 = f32(t.s * f32(f32(ep / h) - 1));
      const c2 = f32(t.s * f32(f32(f32(ep - h) / hh) - 0.5));
      const x = tf.sub(tf.sub(tf.mul(sample, f32(t.a / s0.a)), tf.mul(m0, c0)), tf.mul(D1, c1));
      return tf.sub(x, tf.mul(D2, c2));
    });
  }

  /**
   * One multistep DPM-Solver step from `timestep` to the next. The order is 1 for the first step,
   * then up to `solver_order` (lowered at the end per lower_order_final / euler_at_final /
   * final_sigmas_type "zero"). SDE variants draw noise from `generator` unless `noise` /
   * `varianceNoise` is given. Inputs are not disposed; prevSample is a new tensor.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T, options: DPMSolverMultistepStepOptions = {}): SchedulerOutput<T> {
    const name = DPMSolverMultistepScheduler.className;
    const c = this.config;
    if (this.numInferenceSteps === null) {
      throw new Error(`${name}.step: the number of inference steps is not set; call setTimesteps(n) after creating the scheduler`);
    }
    checkStepTimestep(name, timestep, c.num_train_timesteps, this.timesteps);
    if (options.noise !== undefined && options.varianceNoise !== undefined) {
      throw new Error(`${name}.step: pass noise or varianceNoise (the same thing), not both`);
    }
    const learned = c.variance_type === "learned" || c.variance_type === "learned_range";
    if (!learned) checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    if (this._stepIndex === null) {
      this.initStepIndex(timestep);
    }
    const k = this._stepIndex as number;
    const len = this.timesteps.length;
    if (k >= len) {
      throw new Error(`${name}.step: all ${len} steps are done; call setTimesteps(n) to start a new schedule`);
    }
    // lower orders at the end for stability with few steps
    const lowerOrderFinal = k === len - 1 && (c.euler_at_final || (c.lower_order_final && len < 15) || c.final_sigmas_type === "zero");
    const lowerOrderSecond = k === len - 2 && c.lower_order_final && len < 15;

    const converted = this.convertModelOutput(modelOutput, sample);
    this.modelOutputs[0]?.dispose();
    for (let i = 0; i < c.solver_order - 1; i++) this.modelOutputs[i] = this.modelOutputs[i + 1];
    this.modelOutputs[c.solver_order - 1] = converted;

    const sde = c.algorithm_type === "sde-dpmsolver++" || c.algorithm_type === "sde-dpmsolver";
    const noise = sde ? stepNoise(name, sample.shape, { generator: options.generator, noise: options.varianceNoise ?? options.noise }) : null;
    let prev: tf.Tensor;
    try {
      if (c.solver_order === 1 || this.lowerOrderNums < 1 || lowerOrderFinal) prev = this.firstOrder(converted, sample, noise);
      else if (c.solver_order === 2 || this.lowerOrderNums < 2 || lowerOrderSecond) prev = this.secondOrder(sample, noise);
      else prev = this.thirdOrder(sample);
    } finally {
      noise?.dispose();
    }
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums += 1;
    this._stepIndex = k + 1;
    // past the final step the history can never be used again: free it
    if (this._stepIndex === len) this.releaseHistory();
    return { prevSample: asSample(sample, prev) };
  }

  /** Forward noising at the schedule's sigmas: alpha_t x_0 + sigma_t eps (diffusers' add_noise). */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return multistepAddNoise(
      DPMSolverMultistepScheduler.className,
      { timesteps: this.timesteps, sigmas: this.sigmas, beginIndex: this._beginIndex, stepIndex: this._stepIndex, numTrain: this.config.num_train_timesteps },
      originalSamples,
      noise,
      timesteps,
    );
  }
}

registerScheduler(DPMSolverMultistepScheduler);
