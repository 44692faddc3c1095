// Shared scheduler machinery, as diffusers' scheduling_utils.py + configuration_utils.py:
// SchedulerMixin (config resolution, fromConfig / fromPretrained / saveConfig, compatibles),
// beta schedules reproduced in torch's float32 arithmetic, timestep spacings reproduced in
// numpy's float64 arithmetic, and helpers every alpha-based scheduler needs (add_noise,
// get_velocity, dynamic thresholding, layout-aware noise drawing).
//
// Layout: samples are NHWC (channels last). Scheduler math is element-wise; the only
// layout-dependent parts are drawing noise (drawn channels-first as diffusers does, then
// transposed, so one seed gives diffusers' numbers) and learned-variance channel splits.
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec, ConfigError, oneOf, readConfigFile, resolveConfig } from "../io/config.js";
import { type Generator, randnTensor } from "../random/generator.js";
import { hubFileDownload, tryHubFile, type HubOptions } from "../hub/index.js";
import { ArgumentError, argumentError, checkFinite, checkInteger, showValue } from "../utils/check-argument.js";

export const SCHEDULER_CONFIG_NAME = "scheduler_config.json";
/** The diffusers version whose behaviour (and saved `_diffusers_version`) we reproduce. */
export const DIFFUSERS_VERSION = "0.27.2";

/** diffusers' `KarrasDiffusionSchedulers` enum, names in enum order (values 1..15). */
export const KarrasDiffusionSchedulers = [
  "DDIMScheduler",
  "DDPMScheduler",
  "PNDMScheduler",
  "LMSDiscreteScheduler",
  "EulerDiscreteScheduler",
  "HeunDiscreteScheduler",
  "EulerAncestralDiscreteScheduler",
  "DPMSolverMultistepScheduler",
  "DPMSolverSinglestepScheduler",
  "KDPM2DiscreteScheduler",
  "KDPM2AncestralDiscreteScheduler",
  "DEISMultistepScheduler",
  "UniPCMultistepScheduler",
  "DPMSolverSDEScheduler",
  "EDMEulerScheduler",
] as const;
export type KarrasDiffusionSchedulerName = (typeof KarrasDiffusionSchedulers)[number];

// ---------------------------------------------------------------------------------------------
// Output and option types

/** `SchedulerOutput`: the sample for the next (earlier) timestep. Caller owns the tensor. */
export interface SchedulerOutput {
  prevSample: tf.Tensor;
}

/** Output of schedulers that also report their x_0 estimate (DDPM, DDIM, PNDM-less ones...). Caller owns both. */
export interface SchedulerOutputWithOriginal extends SchedulerOutput {
  predOriginalSample: tf.Tensor;
}

/** A timestep as pipelines pass it: a number (from `scheduler.timesteps`) or a 0-d / 1-element tensor. */
export type Timestep = number | tf.Tensor;

/** Randomness for stochastic steps: a torch-exact generator (or one per batch item), or the noise itself. */
export interface NoiseOptions {
  /** Draws the step noise (NCHW order, transposed to NHWC for rank-4 samples). */
  generator?: Generator | Generator[];
  /** The step noise itself, in the sample's own layout (takes the place of the random draw). */
  noise?: tf.Tensor;
}

/** Options of `fromPretrained`: the hub options (revision, cacheDir, localFilesOnly, token, ...) plus overrides. */
export interface SchedulerFromPretrainedOptions extends HubOptions {
  /**
   * Folder of `scheduler_config.json` inside the repo / local folder. When omitted, the root is tried
   * first (diffusers' default, e.g. google/ddpm-cat-256) and then `scheduler/` (pipeline repos such as
   * stable-diffusion-v1-5). Pass "" for the root only.
   */
  subfolder?: string;
  /** from_config keyword overrides, applied after loading. */
  overrides?: Record<string, unknown>;
}

// ---------------------------------------------------------------------------------------------
// The base class

/** Static side every scheduler class has (for fromConfig / fromPretrained and the registry). */
export interface SchedulerClass<T extends SchedulerMixin = SchedulerMixin> {
  new (config?: Record<string, unknown>): T;
  readonly className: string;
  readonly configSpec: ConfigSpec;
  readonly compatibles: readonly string[];
  readonly predictionTypes: readonly string[];
  /** `Class.from_config(config, **overrides)`: SchedulerMixin's, which every scheduler class inherits. */
  readonly fromConfig: typeof SchedulerMixin.fromConfig;
}

const RESOLVED = Symbol("resolvedSchedulerConfig");
const registry = new Map<string, SchedulerClass>();

/** Makes a scheduler class findable by its diffusers name (each scheduler module registers itself). */
export function registerScheduler(cls: SchedulerClass): void {
  registry.set(cls.className, cls);
}

/** The registered scheduler class called `name` (e.g. a `_class_name` from model_index.json), or undefined. */
export function getSchedulerClass(name: string): SchedulerClass | undefined {
  return registry.get(name);
}

/** Names of all registered scheduler classes. */
export function registeredSchedulers(): string[] {
  return [...registry.keys()];
}

function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}

/**
 * Base of all schedulers (diffusers SchedulerMixin + ConfigMixin). A subclass declares
 * `static className`, `static configSpec` (its `__init__` defaults, in signature order, plus types)
 * and implements setTimesteps / step / addNoise. Construction:
 *   - `new X(partial)`: like `X(**kwargs)`; unknown keys are an error (catches typos);
 *   - `X.fromConfig(raw, overrides)`: like `X.from_config(raw, **overrides)`: keys the source
 *     only defaulted (`_use_default_values`) are dropped, unknown keys are kept (as diffusers keeps
 *     other classes' keys), `_class_name` becomes X.
 * `config` is a frozen deep copy with snake_case keys exactly as diffusers' `scheduler.config`.
 */
export abstract class SchedulerMixin {
  static readonly className: string = "SchedulerMixin";
  static readonly configSpec: ConfigSpec = { defaults: {} };
  /** Class names that can be built from this class's config (diffusers `_compatibles`). */
  static readonly compatibles: readonly string[] = [];
  /** The `prediction_type`s this class can step (diffusers 0.27.2's `step` raises for the others). */
  static readonly predictionTypes: readonly string[] = ["epsilon", "sample", "v_prediction"];
  static readonly configName = SCHEDULER_CONFIG_NAME;

  readonly config: Readonly<Config>;
  /** How many model evaluations one `step` needs (1 for DDPM/DDIM). */
  order = 1;
  /** Standard deviation of the initial noise (latents are multiplied by it). */
  initNoiseSigma = 1.0;
  /** The inference timesteps, largest first (integers for DDPM/DDIM). */
  timesteps: number[] = [];
  /** Set by setTimesteps; null before. */
  numInferenceSteps: number | null = null;

  constructor(config: Record<string, unknown> = {}) {
    const cls = new.target as unknown as SchedulerClass;
    let resolved: Config;
    if ((config as { [RESOLVED]?: boolean })[RESOLVED]) {
      resolved = config as Config;
    } else {
      const known = new Set(Object.keys(cls.configSpec.defaults));
      const unknown = Object.keys(config).filter((k) => !known.has(k) && !k.startsWith("_"));
      if (unknown.length > 0) {
        throw new ConfigError(
          `${cls.className}: unexpected config key(s) ${unknown.map((k) => JSON.stringify(k)).join(", ")}; ` +
            `accepted: ${[...known].join(", ")} (use ${cls.className}.fromConfig() for a config of another class)`,
        );
      }
      resolved = finishResolved(cls, resolveConfig(cls.className, cls.configSpec, config, {}, "constructor arguments"));
    }
    // numbers first: a huge num_train_timesteps must fail before any table is built
    const own = cls.configSpec.defaults;
    checkConfigNumbers(cls.className, resolved, own);
    this.config = deepFreeze(structuredClone(resolved));
    // keys many classes share, checked once here (each class checks its own keys)
    if ("prediction_type" in own) oneOf(cls.className, this.config, "prediction_type", cls.predictionTypes);
    if ("timestep_spacing" in own) oneOf(cls.className, this.config, "timestep_spacing", TIMESTEP_SPACINGS);
    if ("dynamic_thresholding_ratio" in own && this.config.thresholding) {
      checkRange(cls.className, this.config, "dynamic_thresholding_ratio", 0, 1);
    }
  }

  /** `Class.from_config(config, **overrides)`; `config` may be a raw JSON dict or another scheduler's `.config`. */
  static fromConfig<T extends SchedulerMixin>(
    this: SchedulerClass<T>,
    config: Record<string, unknown>,
    overrides: Record<string, unknown> = {},
  ): T {
    if (config === null || typeof config !== "object" || Array.isArray(config)) {
      throw new ConfigError(`${this.className}.fromConfig: config must be an object, got ${JSON.stringify(config)}`);
    }
    const known = Object.keys(this.configSpec.defaults);
    const badOverride = Object.keys(overrides).filter((k) => !known.includes(k));
    if (badOverride.length > 0) {
      throw new ConfigError(
        `${this.className}.fromConfig: unknown override(s) ${badOverride.map((k) => JSON.stringify(k)).join(", ")}; accepted: ${known.join(", ")}`,
      );
    }
    checkIsSchedulerConfig(this.className, config);
    const from = typeof config._class_name === "string" ? config._class_name : null;
    const source = from !== null ? `${from} config` : "config";
    const resolved = finishResolved(this, resolveConfig(this.className, this.configSpec, config, overrides, source));
    const swap = from !== null && from !== this.className ? `${this.className}.fromConfig(${from} config): ` : "";
    const prediction = resolved.prediction_type;
    if ("prediction_type" in this.configSpec.defaults && !this.predictionTypes.includes(prediction as string)) {
      const others = schedulersSupporting(prediction as string);
      throw new ConfigError(
        `${swap}${this.className}: config "prediction_type" is ${JSON.stringify(prediction)}; supported: ` +
          this.predictionTypes.map((p) => JSON.stringify(p)).join(", ") +
          (others.length === 0
            ? ""
            : `. ${this.className} cannot step a model that predicts ${JSON.stringify(prediction)} (diffusers 0.27.2 raises in step); ` +
              `prediction_type is what the model was trained to predict, so keep it and pick a scheduler that supports it (${others.join(", ")})`),
      );
    }
    try {
      return new this(Object.assign(resolved, { [RESOLVED]: true }));
    } catch (e) {
      // a value valid for the source class but not for this one (beta_schedule, timestep_spacing...)
      if (e instanceof ConfigError && swap !== "") {
        throw new ConfigError(`${swap}${e.message} (a value the ${from} config may hold but ${this.className} does not accept)`);
      }
      throw e;
    }
  }

  /**
   * `Class.from_pretrained(idOrPath, subfolder=...)`: reads `scheduler_config.json` from a local
   * folder or a Hub repo and calls fromConfig.
   */
  static async fromPretrained<T extends SchedulerMixin>(
    this: SchedulerClass<T>,
    idOrPath: string,
    options: SchedulerFromPretrainedOptions = {},
  ): Promise<T> {
    const { overrides, ...hubOptions } = options;
    const file = await locateConfigFile(idOrPath, hubOptions);
    const raw = readConfigFile(file);
    return this.fromConfig(raw, overrides ?? {});
  }

  /**
   * The training betas of this scheduler's config (`betasFromConfig`). `rescale_betas_zero_snr` counts
   * only for classes that have that key: one another class left in the config (fromConfig keeps
   * unknown keys) must not switch it on, as diffusers passes such keys to no `__init__`.
   */
  protected configBetas(allowed: readonly BetaSchedule[]): Float32Array {
    const cls = this.constructor as SchedulerClass;
    const own = "rescale_betas_zero_snr" in cls.configSpec.defaults;
    return betasFromConfig(cls.className, own ? this.config : { ...this.config, rescale_betas_zero_snr: false }, allowed);
  }

  /** Class names compatible with this scheduler (diffusers `scheduler.compatibles`, as names). */
  get compatibles(): readonly string[] {
    return (this.constructor as SchedulerClass).compatibles;
  }

  /** diffusers `__len__`: the number of training timesteps. */
  get length(): number {
    return this.config.num_train_timesteps as number;
  }

  /** The config as diffusers' `to_json_string` writes it: sorted keys, no `_use_default_values`. */
  toJsonString(): string {
    const cls = this.constructor as SchedulerClass;
    const out: Record<string, unknown> = {};
    const all: Record<string, unknown> = { ...this.config, _class_name: cls.className, _diffusers_version: DIFFUSERS_VERSION };
    for (const k of Object.keys(all).sort()) {
      if (k === "_use_default_values" || k === "_ignore_files") continue;
      out[k] = all[k];
    }
    return JSON.stringify(out, null, 2) + "\n";
  }

  /** `save_config(dir)` / `save_pretrained(dir)`: writes `<dir>/scheduler_config.json`; returns the file path. */
  saveConfig(directory: string): string {
    if (fs.existsSync(directory) && !fs.statSync(directory).isDirectory()) {
      throw new Error(`saveConfig: ${directory} is a file; pass a directory`);
    }
    fs.mkdirSync(directory, { recursive: true });
    const file = path.join(directory, SCHEDULER_CONFIG_NAME);
    fs.writeFileSync(file, this.toJsonString());
    return file;
  }

  savePretrained(directory: string): string {
    return this.saveConfig(directory);
  }

  /**
   * Model input scaling for schedulers that need it (Euler-style divide by sqrt(sigma^2+1)).
   * Always returns a NEW tensor the caller owns and must dispose (for identity schedulers a
   * `tf.clone`, which shares the data), never the input itself, so pipelines can dispose the
   * model input unconditionally.
   */
  scaleModelInput(sample: tf.Tensor, _timestep?: Timestep): tf.Tensor {
    return tf.clone(sample);
  }

  /**
   * Frees the tensors a multistep / second-order scheduler keeps between steps (PNDM, LMS, Heun,
   * DPM-Solver, UniPC override it); stateless schedulers keep none. Call it after a loop, or when
   * a loop is abandoned.
   */
  dispose(): void {}

  abstract setTimesteps(numInferenceSteps?: number | null, options?: Record<string, unknown>): void;
  abstract step(modelOutput: tf.Tensor, timestep: Timestep, sample: tf.Tensor, options?: object): SchedulerOutput;
  abstract addNoise(originalSamples: tf.Tensor, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): tf.Tensor;
}

/**
 * Base of the schedulers that track their position in `timesteps` (diffusers' `_step_index` and
 * `_begin_index`: the Euler family, DPM-Solver, UniPC, LCM). The index is found from the first
 * timestep a step sees (`indexForTimestep`), or set by a pipeline that starts mid-schedule
 * (img2img) with `setBeginIndex`; `setTimesteps` resets both.
 */
export abstract class IndexedSchedulerMixin extends SchedulerMixin {
  protected _stepIndex: number | null = null;
  protected _beginIndex: number | null = null;

  /** Index of the next step in `timesteps` (null until the first step). */
  get stepIndex(): number | null {
    return this._stepIndex;
  }

  /** First step index, when a pipeline set one (img2img); null otherwise. */
  get beginIndex(): number | null {
    return this._beginIndex;
  }

  /** diffusers `set_begin_index`: start at timesteps[beginIndex] instead of looking the timestep up. */
  setBeginIndex(beginIndex = 0): void {
    if (!Number.isInteger(beginIndex) || beginIndex < 0) {
      const name = (this.constructor as SchedulerClass).className;
      throw new RangeError(`${name}.setBeginIndex: begin index must be an integer >= 0, got ${beginIndex}`);
    }
    this._beginIndex = beginIndex;
  }

  /** Index of `timestep` in `scheduleTimesteps` (each class has diffusers' rule for repeated timesteps). */
  abstract indexForTimestep(timestep: Timestep, scheduleTimesteps?: readonly number[]): number;

  /** Sets the step index on the first step: the begin index, else the position of `timestep`. */
  protected initStepIndex(timestep: Timestep): void {
    this._stepIndex = this._beginIndex ?? this.indexForTimestep(timestep);
  }

  /** A new schedule starts from its first step. */
  protected resetStepIndex(): void {
    this._stepIndex = null;
    this._beginIndex = null;
  }
}

/** Keys of a noise schedule: a scheduler config has at least one (or none at all: every default). */
const SCHEDULE_KEYS = ["num_train_timesteps", "beta_start", "beta_end", "beta_schedule", "trained_betas"];
/** Keys only other components' configs have (UNet, VAE, text encoder, tokenizer, feature extractor). */
const MODEL_CONFIG_KEYS = [
  "block_out_channels",
  "down_block_types",
  "up_block_types",
  "layers_per_block",
  "in_channels",
  "out_channels",
  "latent_channels",
  "sample_size",
  "cross_attention_dim",
  "hidden_size",
  "num_hidden_layers",
  "vocab_size",
  "architectures",
  "model_type",
  "feature_extractor_type",
  "tokenizer_class",
  "bos_token",
];

/**
 * Rejects a config that is not a scheduler's: a model's config.json (UNet, VAE, text encoder) or a
 * pipeline's model_index.json. (diffusers would warn about unexpected keys and build a scheduler
 * with the default linear schedule, the wrong noise schedule for most models.)
 */
function checkIsSchedulerConfig(className: string, config: Record<string, unknown>): void {
  // (UNet2DModel configs saved by diffusers carry "num_train_timesteps": null, so a key counts when set)
  if (SCHEDULE_KEYS.some((k) => config[k] !== undefined && config[k] !== null)) return;
  const hint =
    `Pass the scheduler's own config: ${className}.fromConfig(pipe.scheduler.config), or ` +
    `${className}.fromPretrained(<model>, { subfolder: "scheduler" }) for a pipeline folder's scheduler/scheduler_config.json`;
  const components = Object.entries(config).filter(
    ([k, v]) => !k.startsWith("_") && Array.isArray(v) && v.length === 2 && v.every((x) => typeof x === "string" || x === null),
  );
  if (components.length > 0) {
    throw new ConfigError(
      `${className}.fromConfig: this is a pipeline's model_index.json (components ${components.map(([k]) => k).join(", ")}), not a scheduler config. ${hint}`,
    );
  }
  const modelKeys = MODEL_CONFIG_KEYS.filter((k) => k in config);
  const cls = config._class_name;
  const foreign = typeof cls === "string" && !cls.endsWith("Scheduler");
  if (modelKeys.length > 0 || foreign) {
    const arch = Array.isArray(config.architectures) ? config.architectures[0] : undefined; // transformers' config.json
    const what = typeof cls === "string" ? `a ${cls} config` : typeof arch === "string" ? `a ${arch} config` : "a model config";
    throw new ConfigError(
      `${className}.fromConfig: this is ${what}, not a scheduler config: it has ` +
        (modelKeys.length > 0 ? `keys of a model's config (${modelKeys.map((k) => JSON.stringify(k)).join(", ")}) and ` : "") +
        `none of the noise-schedule keys (${SCHEDULE_KEYS.join(", ")}). ${hint}`,
    );
  }
}

/** Registered classes that can step `predictionType`, for error messages. */
function schedulersSupporting(predictionType: string): string[] {
  return [...registry.values()].filter((c) => c.predictionTypes.includes(predictionType)).map((c) => c.className);
}

/** diffusers' bookkeeping after from_config: `_class_name` is the new class; no empty `_use_default_values`. */
function finishResolved(cls: SchedulerClass, c: Config): Config {
  c._class_name = cls.className;
  if (Array.isArray(c._use_default_values) && c._use_default_values.length === 0) delete c._use_default_values;
  return c;
}

// ---------------------------------------------------------------------------------------------
// Locating scheduler_config.json

/** Path of scheduler_config.json: `subfolder` when given, else the root, then `scheduler/`. */
async function locateConfigFile(idOrPath: string, options: Omit<SchedulerFromPretrainedOptions, "overrides">): Promise<string> {
  const { subfolder, ...hub } = options;
  if (subfolder !== undefined) return hubFileDownload(idOrPath, SCHEDULER_CONFIG_NAME, { ...hub, subfolder });
  const atRoot = await tryHubFile(idOrPath, SCHEDULER_CONFIG_NAME, hub);
  if (atRoot !== null) return atRoot;
  return hubFileDownload(idOrPath, SCHEDULER_CONFIG_NAME, { ...hub, subfolder: "scheduler" });
}

// ---------------------------------------------------------------------------------------------
// float32 helpers (torch computes schedules in float32)

const f32 = Math.fround;
const fbuf = new Float32Array(1);
const ubuf = new Uint32Array(fbuf.buffer);

/** The float32 neighbour of finite float32 `x` in direction `up`. */
function nextF32(x: number, up: boolean): number {
  if (x === 0) return up ? 1.401298464324817e-45 : -1.401298464324817e-45;
  fbuf[0] = x;
  // positive: bits +1 moves away from zero; negative: the same moves toward -inf
  if ((x > 0) === up) ubuf[0] += 1;
  else ubuf[0] -= 1;
  return fbuf[0];
}

/**
 * Correctly rounded float32 fused multiply-add a*b + c for float32 a and integer-valued b
 * (a*b is exact in double). torch's AVX2 kernels are compiled with FMA contraction.
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // two-sum: s + err == p + c exactly
  const r = f32(s);
  if (err === 0 || r === s) return r;
  const other = nextF32(r, s > r);
  if (Math.abs(s - r) !== Math.abs(other - s)) return r; // not a tie: double rounding is harmless
  return err > 0 === other > r ? other : r;
}

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` on CPU (torch 1.13, AVX2 build): step =
 * (end - start) / (steps - 1) in float32; element i = start + step*i for i < steps/2, else
 * end - step*(steps-1-i), each a fused multiply-add; blocks of 8 in the vectorized loop take the
 * first element that way and add j*step (float32) for the others; the tail (< 16) is scalar.
 */
export function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const a = f32(start);
  const b = f32(end);
  if (steps === 1) {
    out[0] = a;
    return out;
  }
  const step = f32(f32(b - a) / (steps - 1));
  const half = Math.floor(steps / 2);
  const at = (i: number) => (i < half ? fmaF32(step, i, a) : fmaF32(-step, steps - 1 - i, b));
  let i = 0;
  for (; i + 16 <= steps; i += 16) {
    for (const base of [i, i + 8]) {
      const v0 = at(base);
      out[base] = v0;
      for (let j = 1; j < 8; j++) out[base + j] = f32(v0 + f32(j * step));
    }
  }
  for (; i < steps; i++) out[i] = at(i);
  return out;
}

/** `torch.cumprod(x, 0)` on CPU for float32: the product accumulates in DOUBLE, rounded only when stored. */
export function cumprodF32(x: ArrayLike<number>): Float32Array {
  const out = new Float32Array(x.length);
  let acc = 1;
  for (let i = 0; i < x.length; i++) {
    acc *= x[i];
    out[i] = acc;
  }
  return out;
}

/** alphas = 1 - betas (float32). */
export function alphasFromBetas(betas: ArrayLike<number>): Float32Array {
  const out = new Float32Array(betas.length);
  for (let i = 0; i < betas.length; i++) out[i] = 1 - betas[i];
  return out;
}

// ---------------------------------------------------------------------------------------------
// Beta schedules

export type AlphaTransformType = "cosine" | "exp";

/**
 * `betas_for_alpha_bar`: beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta) in float64, stored as float32.
 * cosine ("squaredcos_cap_v2", Nichol & Dhariwal 2021 eq. 17): abar(t) = cos((t + 0.008)/1.008 * pi/2)^2;
 * exp: abar(t) = exp(-12 t).
 */
export function betasForAlphaBar(
  numDiffusionTimesteps: number,
  maxBeta = 0.999,
  alphaTransformType: AlphaTransformType = "cosine",
): Float32Array {
  let abar: (t: number) => number;
  if (alphaTransformType === "cosine") {
    abar = (t) => {
      const c = Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2));
      return c * c;
    };
  } else if (alphaTransformType === "exp") {
    abar = (t) => Math.exp(t * -12.0);
  } else {
    throw new ConfigError(`betasForAlphaBar: alpha_transform_type ${JSON.stringify(alphaTransformType)}; supported: "cosine", "exp"`);
  }
  const out = new Float32Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps;
    const t2 = (i + 1) / numDiffusionTimesteps;
    out[i] = Math.min(1 - abar(t2) / abar(t1), maxBeta);
  }
  return out;
}

/** "linear": torch.linspace(beta_start, beta_end, T) in float32 (DDPM, Ho et al. 2020 sec. 4). */
export function linearBetas(betaStart: number, betaEnd: number, n: number): Float32Array {
  return linspaceF32(betaStart, betaEnd, n);
}

/** "scaled_linear" (latent diffusion): torch.linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2 in float32. */
export function scaledLinearBetas(betaStart: number, betaEnd: number, n: number): Float32Array {
  const s = linspaceF32(Math.sqrt(betaStart), Math.sqrt(betaEnd), n);
  for (let i = 0; i < n; i++) s[i] = s[i] * s[i];
  return s;
}

/** "sigmoid" (GeoDiff): sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start, float32. */
export function sigmoidBetas(betaStart: number, betaEnd: number, n: number): Float32Array {
  const x = linspaceF32(-6, 6, n);
  const scale = f32(betaEnd - betaStart);
  const start = f32(betaStart);
  for (let i = 0; i < n; i++) {
    const sig = f32(1 / f32(1 + f32(Math.exp(-x[i]))));
    x[i] = f32(sig * scale) + start;
  }
  return x;
}

/**
 * Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
 * Flawed", Algorithm 1), in float32: shift sqrt(alphas_cumprod) so the last is 0, rescale so the
 * first is unchanged, then undo the cumprod.
 */
export function rescaleZeroTerminalSnr(betas: ArrayLike<number>): Float32Array {
  const n = betas.length;
  const sqrtAbar = cumprodF32(alphasFromBetas(betas));
  for (let i = 0; i < n; i++) sqrtAbar[i] = Math.sqrt(sqrtAbar[i]);
  const first = sqrtAbar[0];
  const last = sqrtAbar[n - 1];
  const scale = f32(first / f32(first - last));
  const abar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32(sqrtAbar[i] - last) * scale);
    abar[i] = v * v;
  }
  const out = new Float32Array(n);
  out[0] = 1 - abar[0];
  for (let i = 1; i < n; i++) out[i] = 1 - f32(abar[i] / abar[i - 1]);
  return out;
}

/** Every beta_schedule a diffusers scheduler may accept (each class lists its own subset). */
export const BETA_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"] as const;
export type BetaSchedule = (typeof BETA_SCHEDULES)[number];

/**
 * The training betas of a config: `trained_betas` when given, else `beta_schedule` (which must be
 * in `allowed`), then `rescale_betas_zero_snr` when set. Float32, as torch.
 */
export function betasFromConfig(className: string, config: Readonly<Config>, allowed: readonly BetaSchedule[]): Float32Array {
  const n = config.num_train_timesteps as number;
  if (!Number.isInteger(n) || n < 1) {
    throw new ConfigError(`${className}: config "num_train_timesteps" is ${JSON.stringify(n)}; it must be an integer >= 1`);
  }
  let betas: Float32Array;
  const trained = config.trained_betas;
  if (trained !== null && trained !== undefined) {
    if (!Array.isArray(trained) || trained.length === 0 || !trained.every((b) => typeof b === "number" && Number.isFinite(b))) {
      throw new ConfigError(`${className}: config "trained_betas" must be null or a non-empty array of numbers`);
    }
    betas = Float32Array.from(trained as number[]);
  } else {
    const schedule = config.beta_schedule as BetaSchedule;
    if (!allowed.includes(schedule)) {
      throw new ConfigError(
        `${className}: config "beta_schedule" is ${JSON.stringify(schedule)}; supported: ${allowed.map((a) => JSON.stringify(a)).join(", ")} (or set "trained_betas")`,
      );
    }
    const b0 = config.beta_start as number;
    const b1 = config.beta_end as number;
    if (schedule === "linear") betas = linearBetas(b0, b1, n);
    else if (schedule === "scaled_linear") betas = scaledLinearBetas(b0, b1, n);
    else if (schedule === "squaredcos_cap_v2") betas = betasForAlphaBar(n);
    else betas = sigmoidBetas(b0, b1, n);
  }
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

// ---------------------------------------------------------------------------------------------
// Timestep spacing (numpy float64 semantics)

export const TIMESTEP_SPACINGS = ["linspace", "leading", "trailing"] as const;
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

/** numpy's round (half to even). */
export function roundHalfEven(x: number): number {
  if (Math.abs(x % 1) === 0.5) return 2 * Math.round(x / 2);
  return Math.round(x);
}

/** `np.linspace(start, stop, num)` (endpoint=True): i*step + start, last element exactly stop. */
export function npLinspace(start: number, stop: number, num: number): number[] {
  const out: number[] = [];
  const div = num - 1;
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out.push(div > 0 ? i * step + start : start);
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** `np.arange(start, stop, step)` for floats: length ceil((stop-start)/step), x_i = start + i*((start+step)-start). */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out: number[] = [];
  if (len > 0) out.push(start);
  if (len > 1) out.push(start + step);
  const delta = start + step - start;
  for (let i = 2; i < len; i++) out.push(start + i * delta);
  return out;
}

/**
 * Integer inference timesteps, largest first, for the spacings of Lin et al. 2023 Table 2 (as
 * DDPM/DDIM set_timesteps):
 *   linspace: round(linspace(0, T-1, n)) reversed;
 *   leading:  arange(n) * (T // n) reversed, + steps_offset;
 *   trailing: round(arange(T, 0, -T/n)) - 1 (numpy's float arange can give n+1 entries, the last -1:
 *             diffusers 0.27.2 does, and so do we).
 */
export function spacedTimesteps(
  className: string,
  spacing: string,
  numTrainTimesteps: number,
  numInferenceSteps: number,
  stepsOffset: number,
): number[] {
  const T = numTrainTimesteps;
  const n = numInferenceSteps;
  if (spacing === "linspace") return npLinspace(0, T - 1, n).map(roundHalfEven).reverse();
  if (spacing === "leading") {
    const ratio = Math.floor(T / n);
    const out: number[] = [];
    for (let i = n - 1; i >= 0; i--) out.push(i * ratio + stepsOffset);
    return out;
  }
  if (spacing === "trailing") return npArange(T, 0, -(T / n)).map((x) => roundHalfEven(x) - 1);
  throw new ConfigError(
    `${className}: config "timestep_spacing" is ${JSON.stringify(spacing)}; supported: ${TIMESTEP_SPACINGS.map((s) => JSON.stringify(s)).join(", ")}`,
  );
}

/**
 * Checks `num_inference_steps`: an integer in [1, num_train_timesteps], with diffusers' message past
 * the top (DDPM, DDIM and LCM raise there; the kit holds every scheduler to it, so a huge count fails
 * here instead of as an out-of-memory abort while the schedule is built).
 */
export function checkNumInferenceSteps(className: string, n: unknown, numTrainTimesteps: number): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw new ArgumentError(
      `${className}.setTimesteps: num_inference_steps must be an integer >= 1 and at most num_train_timesteps: in [1, ${numTrainTimesteps}]; got ${showValue(n)}`,
    );
  }
  if (n > numTrainTimesteps) {
    throw new ArgumentError(
      `${className}.setTimesteps: num_inference_steps ${n} cannot be larger than num_train_timesteps ${numTrainTimesteps} ` +
        `(the model was trained on ${numTrainTimesteps} timesteps); use an integer in [1, ${numTrainTimesteps}]`,
    );
  }
  return n;
}

/** Largest training timestep a config may ask for: a bound that keeps the per-timestep tables small (diffusers' models use 1000-4000). */
export const MAX_TRAIN_TIMESTEPS = 100_000;

/**
 * The numbers of a scheduler config, checked when a scheduler is built (before any table is
 * allocated): num_train_timesteps an integer in [1, MAX_TRAIN_TIMESTEPS], steps_offset an integer in
 * [0, num_train_timesteps), beta_start / beta_end in [0, 1], every other number finite.
 */
export function checkConfigNumbers(className: string, config: Readonly<Config>, own: Readonly<Record<string, unknown>>): void {
  const where = `${className} config`;
  const T = checkInteger(where, `"num_train_timesteps"`, config.num_train_timesteps, 1, MAX_TRAIN_TIMESTEPS);
  if ("steps_offset" in own) checkInteger(where, `"steps_offset"`, config.steps_offset, 0, T - 1);
  for (const key of ["beta_start", "beta_end"]) if (key in own) checkFinite(where, `"${key}"`, config[key], 0, 1);
  for (const [key, def] of Object.entries(own)) {
    // lambda_min_clipped is -inf by default (DPM-Solver), read by parseLambdaMinClipped
    if (typeof def === "number" && typeof config[key] === "number" && key !== "lambda_min_clipped") checkFinite(where, `"${key}"`, config[key]);
  }
}

/**
 * A timestep passed to step(): a finite number within the training range [0, T - 1] (or up to the
 * schedule's first timestep, which a steps_offset may put at T). The multistep solvers look it up
 * once per schedule and take the last index when it is absent, as diffusers; a NaN or out-of-range
 * timestep is a caller's mistake, not a position.
 */
export function checkStepTimestep(className: string, timestep: Timestep, numTrain: number, schedule: readonly number[]): number {
  const v = timestepValue(timestep, `${className}.step`);
  const top = Math.max(numTrain - 1, schedule[0] ?? 0);
  if (!(Number.isFinite(v) && v >= 0 && v <= top)) {
    throw argumentError(`${className}.step`, "timestep", `a finite number in [0, ${top}] (a value of scheduler.timesteps)`, v);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Timestep / tensor helpers

/** A timestep as a plain number (reads a 0-d or 1-element tensor). */
export function timestepValue(t: Timestep, what = "timestep"): number {
  if (typeof t === "number") return t;
  if (t instanceof tf.Tensor) {
    if (t.size !== 1) throw new RangeError(`${what}: expected a single timestep, got a tensor of shape [${t.shape}]`);
    return t.dataSync()[0];
  }
  throw new TypeError(`${what}: expected a number or a tf.Tensor, got ${String(t)}`);
}

/** An integer timestep in [0, T): the only kind an alphas_cumprod table can be indexed with. */
export function integerTimestep(className: string, t: Timestep, numTrain: number): number {
  const v = timestepValue(t, `${className}.step`);
  if (!Number.isInteger(v) || v < 0 || v >= numTrain) {
    throw new RangeError(`${className}.step: timestep ${v} must be an integer in [0, ${numTrain - 1}]`);
  }
  return v;
}

/** Timesteps for add_noise-style calls as integers (a number, an array or a 0/1-d tensor). */
export function timestepList(className: string, timesteps: number | number[] | tf.Tensor, numTrain: number): number[] {
  let list: number[];
  if (typeof timesteps === "number") list = [timesteps];
  else if (Array.isArray(timesteps)) list = timesteps;
  else if (timesteps instanceof tf.Tensor) list = Array.from(timesteps.dataSync());
  else throw new TypeError(`${className}: timesteps must be a number, an array or a tf.Tensor`);
  for (const t of list) {
    if (!Number.isInteger(t) || t < 0 || t >= numTrain) {
      throw new RangeError(`${className}: timestep ${t} must be an integer in [0, ${numTrain - 1}]`);
    }
  }
  return list;
}

/** Per-batch-item scalars as a [k, 1, ..., 1] tensor broadcasting against a tensor of `rank`. */
function perItem(className: string, values: number[], shape: number[]): tf.Tensor {
  if (values.length !== 1 && values.length !== shape[0]) {
    throw new RangeError(`${className}: ${values.length} timesteps for a batch of ${shape[0]}; pass one per batch item (or one for all)`);
  }
  return tf.tensor(values, [values.length, ...shape.slice(1).map(() => 1)], "float32");
}

/**
 * `add_noise` of alpha-based schedulers (DDPM eq. 4 / closed form of q(x_t | x_0)):
 * x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, one t per batch item. Returns a new tensor.
 */
export function addNoiseWithAlphas(
  className: string,
  alphasCumprod: Float32Array,
  originalSamples: tf.Tensor,
  noise: tf.Tensor,
  timesteps: number | number[] | tf.Tensor,
): tf.Tensor {
  const ts = timestepList(`${className}.addNoise`, timesteps, alphasCumprod.length);
  return tf.tidy(() => {
    const sa = ts.map((t) => f32(Math.sqrt(alphasCumprod[t])));
    const s1 = ts.map((t) => f32(Math.sqrt(1 - alphasCumprod[t])));
    const shape = originalSamples.shape;
    return tf.add(tf.mul(perItem(className, sa, shape), originalSamples), tf.mul(perItem(className, s1, shape), noise));
  });
}

/** `get_velocity` (Salimans & Ho 2022, v-parameterisation): v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0. */
export function velocityWithAlphas(
  className: string,
  alphasCumprod: Float32Array,
  sample: tf.Tensor,
  noise: tf.Tensor,
  timesteps: number | number[] | tf.Tensor,
): tf.Tensor {
  const ts = timestepList(`${className}.getVelocity`, timesteps, alphasCumprod.length);
  return tf.tidy(() => {
    const sa = ts.map((t) => f32(Math.sqrt(alphasCumprod[t])));
    const s1 = ts.map((t) => f32(Math.sqrt(1 - alphasCumprod[t])));
    const shape = sample.shape;
    return tf.sub(tf.mul(perItem(className, sa, shape), noise), tf.mul(perItem(className, s1, shape), sample));
  });
}

/**
 * Dynamic thresholding (Imagen, Saharia et al. 2022, sec. 2.3) as diffusers `_threshold_sample`:
 * per batch item s = quantile(|x0|, ratio) (torch linear interpolation, float32), clamped to
 * [1, sample_max_value]; x0 = clamp(x0, -s, s) / s. Layout-independent (all elements per item).
 */
export function thresholdSample(sample: tf.Tensor, ratio: number, sampleMaxValue: number): tf.Tensor {
  const batch = sample.shape[0];
  const per = sample.size / batch;
  const data = sample.dataSync();
  const q = f32(ratio);
  const rank = f32(q * f32(per - 1));
  const below = Math.trunc(rank);
  const above = Math.ceil(rank);
  const w = f32(rank - below);
  const s: number[] = [];
  for (let b = 0; b < batch; b++) {
    const row = new Float32Array(per);
    for (let i = 0; i < per; i++) row[i] = Math.abs(data[b * per + i]);
    row.sort();
    const lo = row[below];
    const hi = row[above];
    const diff = f32(hi - lo);
    const v = w < 0.5 ? f32(lo + f32(w * diff)) : f32(hi - f32(diff * f32(1 - w)));
    s.push(Math.min(Math.max(v, 1), f32(sampleMaxValue)));
  }
  return tf.tidy(() => {
    const st = tf.tensor(s, [batch, ...sample.shape.slice(1).map(() => 1)], "float32");
    return tf.div(tf.minimum(tf.maximum(sample, tf.neg(st)), st), st);
  });
}

/**
 * Noise of `shape` (our channels-last layout) drawn as diffusers draws it: channels-first
 * ([N, C, ...spatial]) with `randn_tensor(generator)`, then moved to channels-last. For rank < 3
 * the shape is drawn as is.
 */
export function randnLikeSample(shape: number[], generator?: Generator | Generator[]): tf.Tensor {
  if (shape.length < 3) return randnTensor(shape, { generator });
  const r = shape.length;
  const cf = [shape[0], shape[r - 1], ...shape.slice(1, r - 1)];
  return tf.tidy(() => {
    const x = randnTensor(cf, { generator });
    const perm = [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1];
    return tf.transpose(x, perm);
  });
}

/**
 * The noise a stochastic step uses: `noise` when given (checked against `shape`, cloned so the
 * caller keeps ownership), else a draw from `generator` (or torch's default generator).
 */
export function stepNoise(className: string, shape: number[], opts: NoiseOptions): tf.Tensor {
  if (opts.noise !== undefined) {
    if (opts.generator !== undefined) {
      throw new Error(`${className}.step: pass either generator or noise, not both`);
    }
    if (!(opts.noise instanceof tf.Tensor) || opts.noise.shape.join() !== shape.join()) {
      throw new RangeError(
        `${className}.step: noise must be a tensor of the sample's shape [${shape}], got ${opts.noise instanceof tf.Tensor ? `[${opts.noise.shape}]` : String(opts.noise)}`,
      );
    }
    return opts.noise.clone();
  }
  return randnLikeSample(shape, opts.generator);
}

/** Clip or dynamically threshold a predicted x_0 per the config (DDPM/DDIM step 3/4). Returns a new tensor. */
export function clipOrThreshold(config: Readonly<Config>, x0: tf.Tensor): tf.Tensor {
  if (config.thresholding) {
    return thresholdSample(x0, config.dynamic_thresholding_ratio as number, config.sample_max_value as number);
  }
  if (config.clip_sample) {
    const r = config.clip_sample_range as number;
    return tf.clipByValue(x0, -r, r);
  }
  return x0.clone();
}

/** What a model's output means (diffusers `prediction_type`). */
export const PREDICTION_TYPES = ["epsilon", "sample", "v_prediction"] as const;
export type PredictionType = (typeof PREDICTION_TYPES)[number];

/** Checks a config value of type "number" lies in [lo, hi], naming the key. */
export function checkRange(className: string, config: Readonly<Config>, key: string, lo: number, hi: number): void {
  const v = config[key] as number;
  if (!(v >= lo && v <= hi)) {
    throw new ConfigError(`${className}: config "${key}" is ${JSON.stringify(v)}; it must be in [${lo}, ${hi}]`);
  }
}

/** The channel axis of our channels-last layout. */
export function channelAxis(t: tf.Tensor): number {
  return t.rank - 1;
}

/** Throws unless `a` has exactly `shape`, naming both. */
export function checkShape(what: string, a: tf.Tensor, shape: number[]): void {
  if (a.shape.join() !== shape.join()) {
    throw new RangeError(`${what}: shape [${a.shape}] does not match the sample's shape [${shape}]`);
  }
}
