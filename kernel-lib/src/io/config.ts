// config.json handling as diffusers' ConfigMixin: the JSON's own snake_case keys, each class's
// defaults for missing keys, unknown keys kept, wrong types rejected, and `_use_default_values`
// so that `Other.fromConfig(x.config)` lets Other use its own defaults for keys x never had.
import * as fs from "node:fs";

export type Config = Record<string, unknown> & {
  _class_name?: string;
  _diffusers_version?: string;
  _use_default_values?: string[];
};

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ConfigError";
  }
}

/** Reads a JSON config file; the error names the file. */
export function readConfigFile(file: string): Config {
  if (!fs.existsSync(file)) throw new ConfigError(`config file ${file} does not exist`);
  let value: unknown;
  try {
    value = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (e) {
    throw new ConfigError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new ConfigError(`${file} must hold a JSON object`);
  }
  return value as Config;
}

/**
 * A model's config.json must name that model's class: one of another class (a VAE folder given to a UNet) builds the
 * wrong model, whose weights then fail to load with a list of missing keys (diffusers); said here, up front.
 * No `_class_name` (transformers configs) is accepted.
 */
export function checkConfigClass(file: string, config: Config, className: string, asked = `${className}.fromPretrained was called`): void {
  const named: unknown = config._class_name;
  if (named === undefined || named === className) return;
  if (typeof named !== "string") {
    throw new ConfigError(`${file}: "_class_name" is ${JSON.stringify(named)}; allowed: a class name string such as "${className}"`);
  }
  throw new ConfigError(
    `${file}: "_class_name" is "${named}", but ${asked}; allowed: "${className}". ` +
      `This folder holds a ${named}: load it with ${named}.fromPretrained, or point ${className}.fromPretrained at the ` +
      `folder of a ${className} (in a pipeline folder each component has its own subfolder, unet, vae, text_encoder, ` +
      `and model_index.json names the class of each).`,
  );
}

/**
 * What a class accepts: default values, plus optional type constraints. A type is a `|`-list of
 * "number" | "integer" | "string" | "boolean" | "array" | "object" | "null"; when absent it is inferred
 * from the default (a null default accepts anything). `required` keys have no default.
 */
export interface ConfigSpec {
  defaults: Record<string, unknown>;
  types?: Record<string, string>;
  required?: string[];
}

function typeOf(v: unknown): string {
  if (v === null || v === undefined) return "null";
  if (Array.isArray(v)) return "array";
  return typeof v;
}

function accepts(type: string, v: unknown): boolean {
  const t = typeOf(v);
  return type.split("|").some((want) => {
    const w = want.trim();
    if (w === "any") return true;
    if (w === "integer") return t === "number" && Number.isInteger(v);
    return w === t;
  });
}

/**
 * diffusers' `Class.from_config(config, **overrides)`: drop the keys the source config had only
 * defaulted (`_use_default_values`), fill this class's defaults, keep unknown keys, check types.
 */
export function resolveConfig(
  className: string,
  spec: ConfigSpec,
  raw: Record<string, unknown>,
  overrides: Record<string, unknown> = {},
  source = "config",
): Config {
  const defaulted = new Set(Array.isArray(raw._use_default_values) ? (raw._use_default_values as string[]) : []);
  const given: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (k === "_use_default_values" || defaulted.has(k)) continue;
    given[k] = v;
  }
  Object.assign(given, overrides);
  for (const k of spec.required ?? []) {
    if (!(k in given)) {
      throw new ConfigError(`${className}: ${source} has no "${k}" key, which is required (add it to the config)`);
    }
  }
  const out: Config = {};
  const usedDefaults: string[] = [];
  for (const [k, def] of Object.entries(spec.defaults)) {
    if (k in given) out[k] = given[k];
    else {
      out[k] = structuredClone(def);
      usedDefaults.push(k);
    }
  }
  for (const [k, v] of Object.entries(given)) if (!(k in out)) out[k] = v; // unknown keys are kept
  for (const k of [...Object.keys(spec.defaults), ...(spec.required ?? [])]) {
    if (!(k in given)) continue;
    const type = spec.types?.[k] ?? (spec.defaults[k] === null || spec.defaults[k] === undefined ? "any" : typeOf(spec.defaults[k]));
    if (!accepts(type, given[k])) {
      throw new ConfigError(
        `${className}: ${source} key "${k}" is ${JSON.stringify(given[k])} (${typeOf(given[k])}), expected ${type}`,
      );
    }
  }
  out._class_name = className; // diffusers' from_config: the class built, whatever the source config's class
  if (raw._diffusers_version !== undefined) out._diffusers_version = raw._diffusers_version as string;
  out._use_default_values = usedDefaults.sort();
  return out;
}

/**
 * Freezes a config and everything in it, so `model.config.in_channels = 99` (or a push onto one of its lists) throws
 * in strict mode instead of leaving a config that no longer describes the model built from it. Returns its argument.
 */
export function deepFreeze<T>(v: T): T {
  if (v !== null && typeof v === "object" && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v as object)) deepFreeze(x);
  }
  return v;
}

/** A config written out as diffusers' save_config does (all keys explicit, `_class_name` first). */
export function configToJson(className: string, config: Config): string {
  const { _use_default_values: _u, _class_name: _c, ...rest } = config;
  return JSON.stringify({ _class_name: className, ...rest }, null, 2) + "\n";
}

/** Reads a config key that must be one of `allowed`, with an error that names the alternatives. */
export function oneOf<T extends string>(className: string, config: Config, key: string, allowed: readonly T[]): T {
  const v = config[key] as T;
  if (!allowed.includes(v)) {
    throw new ConfigError(`${className}: config "${key}" is ${JSON.stringify(v)}; supported: ${allowed.map((a) => JSON.stringify(a)).join(", ")}`);
  }
  return v;
}
