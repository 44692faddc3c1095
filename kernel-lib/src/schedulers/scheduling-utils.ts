// SchedulerMixin and ConfigMixin, as diffusers' scheduling_utils.py + configuration_utils.py: config resolution,
// fromConfig / fromPretrained / saveConfig, compatibles, the registry of scheduler classes, and the checks of a
// scheduler config. The math the schedulers share lives beside it, one concern a file (re-exported here):
//   float32.ts (torch's float32 arithmetic), numpy.ts (numpy's float64 arithmetic), betas.ts (beta schedules),
//   timesteps.ts (spacings, timestep checks), sigmas.ts (sigmas, Karras, sigma_to_t, VP alpha/sigma/lambda),
//   add-noise.ts (add_noise, get_velocity), thresholding.ts (clip / dynamic thresholding), noise.ts (step noise),
//   sample-layout.ts (channels-last checks).
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { type Config, type ConfigSpec, ConfigError, deepFreeze, oneOf, readConfigFile, resolveConfig } from "../io/config.js";
import { hubFileDownload, tryHubFile, type HubOptions } from "../hub/index.js";
import { checkFinite, checkInteger } from "../utils/check-argument.js";
import { type BetaSchedule, betasFromConfig } from "./betas.js";
import { TIMESTEP_SPACINGS, type Timestep } from "./timesteps.js";

export * from "./float32.js";
export * from "./numpy.js";
export * from "./betas.js";
export * from "./timesteps.js";
export * from "./sigmas.js";
export * from "./add-noise.js";
export * from "./thresholding.js";
export * from "./noise.js";
export * from "./sample-layout.js";

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

/**
 * `SchedulerOutput`: the sample for the next (earlier) timestep. Caller owns the tensor. `T` is the sample's tensor
 * type: a `tf.Tensor4D` sample gives a `tf.Tensor4D` prevSample, ready for `unet.forward`.
 */
export interface SchedulerOutput<T extends tf.Tensor = tf.Tensor> {
  prevSample: T;
}

/** Output of schedulers that also report their x_0 estimate (DDPM, DDIM, PNDM-less ones...). Caller owns both. */
export interface SchedulerOutputWithOriginal<T extends tf.Tensor = tf.Tensor> extends SchedulerOutput<T> {
  predOriginalSample: T;
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
  /**
   * `Class.from_config(config, **overrides)`: SchedulerMixin's, which every scheduler class inherits. Typed with a
   * plain SchedulerMixin result so that a concrete class (`typeof EulerDiscreteScheduler`) is a SchedulerClass<T>
   * for any T it builds (the generic static's own type is not; exercise 04's checks pass classes so).
   */
  fromConfig(config: Record<string, unknown>, overrides?: Record<string, unknown>): SchedulerMixin;
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
    return this.fromConfig(raw, overrides ?? {}) as T; // fromConfig on `this` builds a T
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
  scaleModelInput<T extends tf.Tensor>(sample: T, _timestep?: Timestep): T {
    return tf.clone(sample);
  }

  /**
   * Frees the tensors a multistep / second-order scheduler keeps between steps (PNDM, LMS, Heun,
   * DPM-Solver, UniPC override it); stateless schedulers keep none. Call it after a loop, or when
   * a loop is abandoned.
   */
  dispose(): void {}

  abstract setTimesteps(numInferenceSteps?: number | null, options?: Record<string, unknown>): void;
  /** One reverse step; the outputs have the sample's shape and tensor type `T` (a Tensor4D sample gives Tensor4D). */
  abstract step<T extends tf.Tensor>(modelOutput: tf.Tensor, timestep: Timestep, sample: T, options?: object): SchedulerOutput<T>;
  /** The forward process q(x_t | x_0); the result has the samples' shape and tensor type `T`. */
  abstract addNoise<T extends tf.Tensor>(originalSamples: T, noise: tf.Tensor, timesteps: number | number[] | tf.Tensor): T;
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
// Config checks

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

/** Replaces config values after construction, as diffusers' `register_to_config` does inside `__init__`. */
export function updateRegisteredConfig(scheduler: SchedulerMixin, updates: Record<string, unknown>): void {
  (scheduler as unknown as { config: Readonly<Config> }).config = Object.freeze({ ...scheduler.config, ...updates });
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
