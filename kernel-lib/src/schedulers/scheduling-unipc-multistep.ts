// UniPCMultistepScheduler, as diffusers 0.27.2 scheduling_unipc_multistep.py: the unified
// predictor-corrector of Zhao et al. 2023 ("UniPC"), B(h) variants bh1 (B(h) = h) and bh2
// (B(h) = e^h - 1). Each step first corrects the previous prediction with the new model output
// (the corrector UniC), then predicts the next sample (the predictor UniP), in the data-prediction
// (predict_x0, like DPM-Solver++) or noise-prediction form, with h in lambda = log(alpha/sigma).
//
// In 0.27 the sigma table ends at sigma(t=0) (0.0292 for SD1.5), not 0: there is no
// final_sigmas_type option. Float32 scalars as torch; the small linear systems are solved in
// float32 by LU with partial pivoting (LAPACK getrf/getrs, as torch.linalg.solve).
import * as tf from "@tensorflow/tfjs";
import { checkInteger } from "../utils/check-argument.js";
import { type Config, ConfigError, type ConfigSpec, oneOf } from "../io/config.js";
import {
  IndexedSchedulerMixin,
  KarrasDiffusionSchedulers,
  type PredictionType,
  registerScheduler,
  type SchedulerOutput,
  updateRegisteredConfig,
} from "./scheduling-utils.js";
import { cumprodF32 } from "./float32.js";
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
import { multistepKarrasSchedule, sigmasFromAlphasCumprod, sigmaToAlphaSigmaT, vpAt, vpTables } from "./sigmas.js";
import { multistepAddNoise } from "./add-noise.js";
import { thresholdSample } from "./thresholding.js";
import { asSample, checkShape } from "./sample-layout.js";

const f32 = Math.fround;

export const UNIPC_SOLVER_TYPES = ["bh1", "bh2"] as const;
export type UniPCSolverType = (typeof UNIPC_SOLVER_TYPES)[number];

/** UniPCMultistepScheduler's config (diffusers' `__init__` arguments). */
export interface UniPCMultistepSchedulerConfig extends Config {
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
  predict_x0: boolean;
  solver_type: UniPCSolverType;
  lower_order_final: boolean;
  /** Step indices whose corrector is skipped (the corrector run at the start of step i+1). */
  disable_corrector: number[];
  /** Another scheduler as predictor (UniC only): not supported here, must be null. */
  solver_p: null;
  use_karras_sigmas: boolean | null;
  timestep_spacing: TimestepSpacing;
  steps_offset: number;
}

/** `torch.pow(x, k)` in float32 for the small integer powers UniPC uses (torch special-cases 2 and 3). */
function powF32(x: number, k: number): number {
  if (k === 0) return 1;
  if (k === 1) return x;
  if (k === 2) return f32(x * x);
  if (k === 3) return f32(f32(x * x) * x);
  return f32(Math.pow(x, k));
}

/**
 * Solves A x = b (n x n, float32) as LAPACK sgetrf + sgetrs: LU with partial pivoting (first
 * largest |pivot|, column scaled by the pivot's reciprocal), then unit-lower and upper triangular
 * solves. `a` is row-major and is not modified.
 */
export function solveF32(a: number[][], b: number[]): number[] {
  const n = b.length;
  const A = a.map((row) => row.map(f32));
  const piv: number[] = [];
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(A[i][k]) > Math.abs(A[p][k])) p = i;
    piv.push(p);
    if (p !== k) [A[p], A[k]] = [A[k], A[p]];
    if (A[k][k] === 0) throw new RangeError("solveF32: the matrix is singular");
    const inv = f32(1 / A[k][k]);
    for (let i = k + 1; i < n; i++) {
      A[i][k] = f32(A[i][k] * inv);
      for (let j = k + 1; j < n; j++) A[i][j] = f32(A[i][j] - f32(A[i][k] * A[k][j]));
    }
  }
  const x = b.map(f32);
  for (let k = 0; k < n; k++) if (piv[k] !== k) [x[k], x[piv[k]]] = [x[piv[k]], x[k]];
  for (let k = 0; k < n; k++) for (let i = k + 1; i < n; i++) x[i] = f32(x[i] - f32(x[k] * A[i][k]));
  for (let k = n - 1; k >= 0; k--) {
    x[k] = f32(x[k] / A[k][k]);
    for (let i = 0; i < k; i++) x[i] = f32(x[i] - f32(x[k] * A[i][k]));
  }
  return x;
}

/** sum_k rhos[k] * D[k] (diffusers' einsum "k,bkc...->bc..."). */
function weightedSum(rhos: number[], ds: tf.Tensor[]): tf.Tensor {
  let acc = tf.mul(ds[0], rhos[0]);
  for (let k = 1; k < ds.length; k++) acc = tf.add(acc, tf.mul(ds[k], rhos[k]));
  return acc;
}

export class UniPCMultistepScheduler extends IndexedSchedulerMixin {
  static override readonly className: string = "UniPCMultistepScheduler";
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
      predict_x0: true,
      solver_type: "bh2",
      lower_order_final: true,
      disable_corrector: [],
      solver_p: null,
      use_karras_sigmas: false,
      timestep_spacing: "linspace",
      steps_offset: 0,
    },
    types: {
      num_train_timesteps: "integer",
      trained_betas: "array|null",
      solver_order: "integer",
      steps_offset: "integer",
      disable_corrector: "array",
      use_karras_sigmas: "boolean|null",
    },
  };

  declare readonly config: Readonly<UniPCMultistepSchedulerConfig>;
  readonly betas: Float32Array;
  readonly alphas: Float32Array;
  readonly alphasCumprod: Float32Array;
  /** sqrt(abar), sqrt(1 - abar) and lambda per train step (float32). */
  readonly alphaT: Float32Array;
  readonly sigmaT: Float32Array;
  readonly lambdaT: Float32Array;
  /** sigma per inference step plus the final sigma (sigma of t=0; the last Karras sigma repeated with Karras). */
  sigmas: Float32Array;
  /** Converted model outputs (x_0 with predict_x0, else epsilon) of the last `solver_order` steps, oldest first. */
  modelOutputs: (tf.Tensor | null)[];
  /** The timesteps those outputs belong to. */
  timestepList: (number | null)[];
  /** The (corrected) sample the last predictor started from; the next corrector needs it. */
  lastSample: tf.Tensor | null = null;
  lowerOrderNums = 0;
  /** Order of the last predictor (the next corrector uses it). */
  thisOrder = 0;

  constructor(config: Partial<UniPCMultistepSchedulerConfig> | Record<string, unknown> = {}) {
    super(config);
    const name = UniPCMultistepScheduler.className;
    const c = this.config;
    // any positive order in diffusers; 2 or 3 in practice: 16 keeps a typo (1e9) from allocating the history
    checkInteger(`${name} config`, `"solver_order"`, c.solver_order, 1, 16);
    if (c.solver_p !== null && c.solver_p !== undefined) {
      throw new ConfigError(`${name}: config "solver_p" (another scheduler as UniPC's predictor) is not supported; leave it null`);
    }
    if (!c.disable_corrector.every((i) => Number.isInteger(i))) {
      throw new ConfigError(`${name}: config "disable_corrector" must be a list of step indices, got ${JSON.stringify(c.disable_corrector)}`);
    }
    this.betas = this.configBetas(MULTISTEP_BETA_SCHEDULES);
    this.alphas = alphasFromBetas(this.betas);
    this.alphasCumprod = cumprodF32(this.alphas);
    const T = this.alphasCumprod.length;
    ({ alphaT: this.alphaT, sigmaT: this.sigmaT, lambdaT: this.lambdaT } = vpTables(this.alphasCumprod));
    this.sigmas = sigmasFromAlphasCumprod(this.alphasCumprod);
    this.initNoiseSigma = 1.0;
    this.order = 1;
    // diffusers' config migration: DPM-Solver / DEIS solver types run as bh2
    const solver = c.solver_type as string;
    if (!(UNIPC_SOLVER_TYPES as readonly string[]).includes(solver)) {
      if (["midpoint", "heun", "logrho"].includes(solver)) updateRegisteredConfig(this, { solver_type: "bh2" });
      else oneOf(name, c, "solver_type", UNIPC_SOLVER_TYPES);
    }
    this.timesteps = Array.from({ length: T }, (_, i) => T - 1 - i);
    this.modelOutputs = new Array(c.solver_order).fill(null);
    this.timestepList = new Array(c.solver_order).fill(null);
  }

  /** Timesteps per `timestep_spacing` (or along Karras sigmas) and the sigma table; resets the history. */
  setTimesteps(numInferenceSteps: number): void {
    const name = UniPCMultistepScheduler.className;
    const c = this.config;
    const T = c.num_train_timesteps;
    const n = checkNumInferenceSteps(name, numInferenceSteps, T);
    let timesteps: number[];
    const train = sigmasFromAlphasCumprod(this.alphasCumprod);
    let sig: number[];
    if (c.use_karras_sigmas) {
      ({ sigmas: sig, timesteps } = multistepKarrasSchedule(c, train, n));
      sig.push(sig[sig.length - 1]);
    } else {
      timesteps = multistepTimesteps(name, c.timestep_spacing, T, T, T, n, c.steps_offset);
      sig = timesteps.map((t) => train[Math.min(Math.max(t, 0), train.length - 1)]);
      sig.push(train[0]); // sigma of t = 0, not 0
    }
    this.sigmas = Float32Array.from(sig);
    this.timesteps = timesteps;
    this.numInferenceSteps = timesteps.length;
    this.releaseHistory();
    this.modelOutputs = new Array(c.solver_order).fill(null);
    this.timestepList = new Array(c.solver_order).fill(null);
    this.lowerOrderNums = 0;
    this.resetStepIndex();
  }

  /** Frees the kept model outputs and last sample (the next step starts a fresh history). */
  override dispose(): void {
    this.releaseHistory();
    this.lowerOrderNums = 0;
  }

  private releaseHistory(): void {
    for (let i = 0; i < this.modelOutputs.length; i++) {
      this.modelOutputs[i]?.dispose();
      this.modelOutputs[i] = null;
    }
    this.lastSample?.dispose();
    this.lastSample = null;
  }

  indexForTimestep(timestep: Timestep, scheduleTimesteps: readonly number[] = this.timesteps): number {
    return multistepIndexForTimestep(scheduleTimesteps, timestepValue(timestep, `${UniPCMultistepScheduler.className}.indexForTimestep`));
  }

  /** x_0 (predict_x0) or epsilon from the model output at the current sigma. New tensor. */
  convertModelOutput(modelOutput: tf.Tensor, sample: tf.Tensor): tf.Tensor {
    const c = this.config;
    const [alphaT, sigmaT] = sigmaToAlphaSigmaT(this.sigmas[this._stepIndex as number]);
    return tf.tidy(() => {
      if (c.predict_x0) {
        let x0: tf.Tensor;
        if (c.prediction_type === "epsilon") x0 = tf.div(tf.sub(sample, tf.mul(modelOutput, sigmaT)), alphaT);
        else if (c.prediction_type === "sample") x0 = tf.clone(modelOutput);
        else x0 = tf.sub(tf.mul(sample, alphaT), tf.mul(modelOutput, sigmaT));
        if (c.thresholding) x0 = thresholdSample(x0, c.dynamic_thresholding_ratio, c.sample_max_value);
        return x0;
      }
      if (c.prediction_type === "epsilon") return tf.clone(modelOutput);
      if (c.prediction_type === "sample") return tf.div(tf.sub(sample, tf.mul(modelOutput, alphaT)), sigmaT);
      return tf.add(tf.mul(modelOutput, alphaT), tf.mul(sample, sigmaT));
    });
  }

  private lambdaAt(i: number): { a: number; s: number; l: number } {
    return vpAt(this.sigmas[i]);
  }

  /**
   * The B(h)-scaled coefficients of UniP / UniC (Zhao et al. 2023): rks (ratios r_k = h_k / h, then 1),
   * h phi_1(h) = e^hh - 1, B(h), and b_i = h phi_{i+1}(h) i! / B(h), hh = -h for data prediction.
   */
  private coefficients(h: number, rks: number[], order: number): { R: number[][]; b: number[]; hPhi1: number; Bh: number } {
    const hh = this.config.predict_x0 ? -h : h;
    const hPhi1 = f32(Math.expm1(hh));
    let hPhiK = f32(f32(hPhi1 / hh) - 1);
    let factorial = 1;
    const Bh = this.config.solver_type === "bh1" ? hh : f32(Math.expm1(hh));
    const R: number[][] = [];
    const b: number[] = [];
    for (let i = 1; i <= order; i++) {
      R.push(rks.map((r) => powF32(r, i - 1)));
      b.push(f32(f32(hPhiK * factorial) / Bh));
      factorial *= i + 1;
      hPhiK = f32(f32(hPhiK / hh) - f32(1 / factorial));
    }
    return { R, b, hPhi1, Bh };
  }

  /** UniP-p (B(h) form): predicts the sample at the next sigma from the last `order` outputs. */
  private predictor(sample: tf.Tensor, order: number): tf.Tensor {
    const k = this._stepIndex as number;
    const n = this.modelOutputs.length;
    const m0 = this.modelOutputs[n - 1] as tf.Tensor;
    const t = this.lambdaAt(k + 1);
    const s0 = this.lambdaAt(k);
    const h = f32(t.l - s0.l);
    return tf.tidy(() => {
      const rks: number[] = [];
      const D1s: tf.Tensor[] = [];
      for (let i = 1; i < order; i++) {
        const si = this.lambdaAt(k - i);
        const rk = f32(f32(si.l - s0.l) / h);
        rks.push(rk);
        D1s.push(tf.div(tf.sub(this.modelOutputs[n - 1 - i] as tf.Tensor, m0), rk));
      }
      rks.push(1.0);
      const { R, b, hPhi1, Bh } = this.coefficients(h, rks, order);
      let rhosP: number[] = [];
      if (D1s.length > 0) {
        // order 2 uses the simplified rho = 1/2
        rhosP = order === 2 ? [0.5] : solveF32(R.slice(0, -1).map((r) => r.slice(0, -1)), b.slice(0, -1));
      }
      const x = this.config.predict_x0
        ? tf.sub(tf.mul(sample, f32(t.s / s0.s)), tf.mul(m0, f32(t.a * hPhi1)))
        : tf.sub(tf.mul(sample, f32(t.a / s0.a)), tf.mul(m0, f32(t.s * hPhi1)));
      if (D1s.length === 0) return x;
      const scale = this.config.predict_x0 ? f32(t.a * Bh) : f32(t.s * Bh);
      return tf.sub(x, tf.mul(weightedSum(rhosP, D1s), scale));
    });
  }

  /** UniC-p (B(h) form): corrects the last prediction `thisSample` with its model output `modelT`. */
  private corrector(modelT: tf.Tensor, lastSample: tf.Tensor, order: number): tf.Tensor {
    const k = this._stepIndex as number;
    const n = this.modelOutputs.length;
    const m0 = this.modelOutputs[n - 1] as tf.Tensor;
    const t = this.lambdaAt(k);
    const s0 = this.lambdaAt(k - 1);
    const h = f32(t.l - s0.l);
    return tf.tidy(() => {
      const rks: number[] = [];
      const D1s: tf.Tensor[] = [];
      for (let i = 1; i < order; i++) {
        const si = this.lambdaAt(k - (i + 1));
        const rk = f32(f32(si.l - s0.l) / h);
        rks.push(rk);
        D1s.push(tf.div(tf.sub(this.modelOutputs[n - 1 - i] as tf.Tensor, m0), rk));
      }
      rks.push(1.0);
      const { R, b, hPhi1, Bh } = this.coefficients(h, rks, order);
      // order 1 uses the simplified rho = 1/2
      const rhosC = order === 1 ? [0.5] : solveF32(R, b);
      const x = this.config.predict_x0
        ? tf.sub(tf.mul(lastSample, f32(t.s / s0.s)), tf.mul(m0, f32(t.a * hPhi1)))
        : tf.sub(tf.mul(lastSample, f32(t.a / s0.a)), tf.mul(m0, f32(t.s * hPhi1)));
      const D1t = tf.sub(modelT, m0);
      let corr = tf.mul(D1t, rhosC[rhosC.length - 1]);
      if (D1s.length > 0) corr = tf.add(weightedSum(rhosC.slice(0, -1), D1s), corr);
      const scale = this.config.predict_x0 ? f32(t.a * Bh) : f32(t.s * Bh);
      return tf.sub(x, tf.mul(corr, scale));
    });
  }

  /**
   * One UniPC step: correct `sample` (the previous prediction) with this model output (UniC, unless
   * the step is in disable_corrector), then predict the next sample (UniP). Inputs are not
   * disposed; prevSample is a new tensor.
   */
  step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T): SchedulerOutput<T> {
    const name = UniPCMultistepScheduler.className;
    const c = this.config;
    if (this.numInferenceSteps === null) {
      throw new Error(`${name}.step: the number of inference steps is not set; call setTimesteps(n) after creating the scheduler`);
    }
    const t = checkStepTimestep(name, timestep, c.num_train_timesteps, this.timesteps);
    checkShape(`${name}.step: modelOutput`, modelOutput, sample.shape);
    if (this._stepIndex === null) this.initStepIndex(timestep);
    const k = this._stepIndex as number;
    const len = this.timesteps.length;
    if (k >= len) throw new Error(`${name}.step: all ${len} steps are done; call setTimesteps(n) to start a new schedule`);

    const useCorrector = k > 0 && !c.disable_corrector.includes(k - 1) && this.lastSample !== null;
    const converted = this.convertModelOutput(modelOutput, sample);
    const corrected = useCorrector ? this.corrector(converted, this.lastSample as tf.Tensor, this.thisOrder) : tf.clone(sample);

    this.modelOutputs[0]?.dispose();
    for (let i = 0; i < c.solver_order - 1; i++) {
      this.modelOutputs[i] = this.modelOutputs[i + 1];
      this.timestepList[i] = this.timestepList[i + 1];
    }
    this.modelOutputs[c.solver_order - 1] = converted;
    this.timestepList[c.solver_order - 1] = t;

    // warm up from order 1; with lower_order_final, never look past the end of the schedule
    const order = c.lower_order_final ? Math.min(c.solver_order, len - k) : c.solver_order;
    this.thisOrder = Math.min(order, this.lowerOrderNums + 1);
    this.lastSample?.dispose();
    this.lastSample = corrected;
    const prev = this.predictor(corrected, this.thisOrder);
    if (this.lowerOrderNums < c.solver_order) this.lowerOrderNums += 1;
    this._stepIndex = k + 1;
    if (this._stepIndex === len) this.releaseHistory();
    return { prevSample: asSample(sample, prev) };
  }

  /** Forward noising at the schedule's sigmas: alpha_t x_0 + sigma_t eps (diffusers' add_noise). */
  addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T {
    return multistepAddNoise(
      UniPCMultistepScheduler.className,
      { timesteps: this.timesteps, sigmas: this.sigmas, beginIndex: this._beginIndex, stepIndex: this._stepIndex, numTrain: this.config.num_train_timesteps },
      originalSamples,
      noise,
      timesteps,
    );
  }
}

registerScheduler(UniPCMultistepScheduler);
