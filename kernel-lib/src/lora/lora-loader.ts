// LoRA files -> one canonical list {component, module, A, B, alpha} (diffusers' lora_state_dict and the
// conversions of loaders/lora_conversion_utils.py and utils/state_dict_utils.py). Key formats read:
//   PEFT / diffusers:  unet.<module>.lora_A.weight [r, in]   unet.<module>.lora_B.weight [out, r]
//   older diffusers:   unet.<module>.lora.down.weight / .lora.up.weight, text_encoder.<module>.lora_linear_layer.down/up,
//                      <attn>.processor.to_q_lora.down.weight (to_q/to_k/to_v/to_out; no prefix = UNet)
//   kohya / A1111:     lora_unet_<module with . -> _>.lora_down.weight / .lora_up.weight / .alpha,
//                      lora_te_... (text encoder)
// Diffusers-format files store no alpha: alpha = r (scale 1). Every module keeps its own rank and alpha (diffusers
// 0.27 + PEFT 0.10 cannot: their rank_pattern / alpha_pattern regexes never match a full module path, so a file
// with mixed ranks fails to load there and mixed alphas all become the most common one). Kohya's underscored names are matched
// against the model's own Linear / Conv2d paths written with "_", never guessed from strings.
// Every key is placed or reported with the reason: a file with a key that cannot be placed is not loaded.
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { Conv2d } from "../nn/conv2d.js";
import { Linear } from "../nn/linear.js";
import type { Module } from "../nn/module.js";
import type { RawTensor } from "../io/safetensors.js";
import { loadStateDictFile } from "../models/modeling-utils.js";
import { hubFileDownload, listRepoFiles, type HubOptions } from "../hub/index.js";
import { expandUser } from "../hub/env.js";
import { loraTargets, type LoraModuleWeights } from "./peft-utils.js";

export type LoraComponent = "unet" | "text_encoder";
export type LoraFormat = "diffusers" | "kohya";

/** The models a LoRA may patch, by the names its keys use. */
export type LoraModels = Partial<Record<LoraComponent, Module | null>>;

/** A LoRA given as a file, folder or Hub repo (with weightName), or as tensors already in memory (torch layout). */
export type LoraSource = string | Map<string, RawTensor> | Record<string, RawTensor | tf.Tensor>;

export interface PlacedLoraModule extends LoraModuleWeights {
  component: LoraComponent;
  /** The file's name for this module (its keys without the .lora_* / .alpha suffixes). */
  key: string;
  /** Every key of the file that went into this module. */
  keys: string[];
  kind: "Linear" | "Conv2d";
  rank: number;
}

export interface UnplacedLoraKey {
  key: string;
  reason: string;
}

export interface ParsedLora {
  format: LoraFormat;
  modules: PlacedLoraModule[];
  unplaced: UnplacedLoraKey[];
}

const KOHYA_PREFIXES: [string, LoraComponent | null][] = [
  ["lora_unet_", "unet"],
  ["lora_te_", "text_encoder"],
  ["lora_te1_", "text_encoder"],
  ["lora_te2_", null],
];

const COMPONENT_NAMES: Record<LoraComponent, string> = { unet: "UNet", text_encoder: "text encoder" };

/** Parts of a LoRA pair collected from the keys before they are checked. */
interface Pending {
  component: LoraComponent | null;
  /** Why the component is missing, when it is. */
  componentReason?: string;
  key: string;
  /** Resolved module path, or null with `moduleReason`. */
  module: string | null;
  moduleReason?: string;
  down?: [string, RawTensor];
  up?: [string, RawTensor];
  alpha?: [string, RawTensor];
}

/** Kohya suffixes that belong to other adapter kinds (LyCORIS and friends), with what they are. */
function unsupportedKohyaSuffix(suffix: string): string {
  if (suffix.startsWith("hada_")) return "LoHa (LyCORIS) weights: only plain LoRA (lora_down / lora_up / alpha) is supported";
  if (suffix.startsWith("lokr_")) return "LoKr (LyCORIS) weights: only plain LoRA (lora_down / lora_up / alpha) is supported";
  if (suffix === "lora_mid.weight") return "LoCon with CP decomposition (lora_mid): not supported";
  if (suffix === "dora_scale") return "DoRA magnitude vector: DoRA is not supported";
  if (suffix === "diff" || suffix === "diff_b") return "a full weight difference (LyCORIS 'full'): not supported";
  return `unknown kohya suffix ".${suffix}" (expected .lora_down.weight, .lora_up.weight or .alpha)`;
}

/** underscored path -> module paths, for kohya names: "to_out_0" <- "to_out.0". */
function underscoredTargets(model: Module): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const path of loraTargets(model).keys()) {
    const u = path.replace(/\./g, "_");
    out.set(u, [...(out.get(u) ?? []), path]);
  }
  return out;
}

function isKohya(keys: string[]): boolean {
  return keys.length > 0 && keys.every((k) => KOHYA_PREFIXES.some(([p]) => k.startsWith(p)));
}

function collectKohya(stateDict: Map<string, RawTensor>, models: LoraModels, unplaced: UnplacedLoraKey[]): Map<string, Pending> {
  const groups = new Map<string, Pending>();
  const lookups = new Map<LoraComponent, Map<string, string[]>>();
  for (const [key, raw] of stateDict) {
    const dot = key.indexOf(".");
    const name = dot < 0 ? key : key.slice(0, dot);
    const suffix = dot < 0 ? "" : key.slice(dot + 1);
    const [prefix, component] = KOHYA_PREFIXES.find(([p]) => name.startsWith(p))!;
    let g = groups.get(name);
    if (!g) {
      g = { component, key: name, module: null };
      if (component === null) g.componentReason = "a second text encoder (text_encoder_2, SDXL): this pipeline has none";
      else if (!models[component]) g.componentReason = `this pipeline has no ${COMPONENT_NAMES[component]}`;
      else {
        if (!lookups.has(component)) lookups.set(component, underscoredTargets(models[component]!));
        const u = name.slice(prefix.length);
        const paths = lookups.get(component)!.get(u) ?? [];
        if (paths.length === 1) g.module = paths[0];
        else if (paths.length > 1) g.moduleReason = `"${u}" is ambiguous: it matches ${paths.join(", ")}`;
        else {
          const ldm = /(^|_)(input_blocks|middle_block|output_blocks)_/.test(u)
            ? " (it uses the original LDM/SGM block names input_blocks / middle_block / output_blocks; only diffusers module names are mapped)"
            : "";
          g.moduleReason = `no Linear or Conv2d of the ${COMPONENT_NAMES[component]} is named "${u}" (its module path with "." written as "_")${ldm}`;
        }
      }
      groups.set(name, g);
    }
    if (suffix === "lora_down.weight") g.down = [key, raw];
    else if (suffix === "lora_up.weight") g.up = [key, raw];
    else if (suffix === "alpha") g.alpha = [key, raw];
    else unplaced.push({ key, reason: unsupportedKohyaSuffix(suffix) });
  }
  return groups;
}

/** UNet attention-processor names (to_q_lora) -> module names; the text encoder's CLIP names differ. */
const PROCESSOR_TARGETS: Record<LoraComponent, Record<string, string>> = {
  unet: { to_q: "to_q", to_k: "to_k", to_v: "to_v", to_out: "to_out.0" },
  text_encoder: { to_q: "q_proj", to_k: "k_proj", to_v: "v_proj", to_out: "out_proj" },
};

/** "<module>.<lora suffix>" -> module and direction, for the diffusers / PEFT spellings. */
function splitDiffusersKey(rest: string, component: LoraComponent): { module: string; dir: "down" | "up" } | null {
  let m = /^(.+)\.lora_([AB])\.weight$/.exec(rest);
  if (m) return { module: m[1], dir: m[2] === "A" ? "down" : "up" };
  m = /^(.+)\.(?:lora|lora_linear_layer)\.(down|up)\.weight$/.exec(rest);
  if (m) return { module: m[1], dir: m[2] as "down" | "up" };
  m = /^(.+?)(?:\.processor)?\.(to_q|to_k|to_v|to_out)_lora\.(down|up)\.weight$/.exec(rest);
  if (m) return { module: `${m[1]}.${PROCESSOR_TARGETS[component][m[2]]}`, dir: m[3] as "down" | "up" };
  return null;
}

function collectDiffusers(stateDict: Map<string, RawTensor>, models: LoraModels, unplaced: UnplacedLoraKey[]): Map<string, Pending> {
  const groups = new Map<string, Pending>();
  const keys = [...stateDict.keys()];
  // no "unet." / "text_encoder." prefix anywhere: the old attention-processor format, UNet only
  const prefixed = keys.some((k) => k.startsWith("unet.") || k.startsWith("text_encoder."));
  for (const [key, raw] of stateDict) {
    let component: LoraComponent;
    let rest: string;
    if (key.startsWith("unet.")) [component, rest] = ["unet", key.slice(5)];
    else if (key.startsWith("text_encoder.")) [component, rest] = ["text_encoder", key.slice(13)];
    else if (key.startsWith("text_encoder_2.")) {
      unplaced.push({ key, reason: "a second text encoder (text_encoder_2, SDXL): this pipeline has none" });
      continue;
    } else if (!prefixed) [component, rest] = ["unet", key];
    else {
      unplaced.push({ key, reason: 'no "unet." or "text_encoder." prefix, while other keys of the file have one' });
      continue;
    }
    const split = splitDiffusersKey(rest, component);
    if (!split) {
      unplaced.push({ key, reason: "not a LoRA weight name (expected <module>.lora_A.weight / .lora_B.weight, .lora.down/up.weight, .lora_linear_layer.down/up.weight or <attention>.processor.to_q_lora.down/up.weight)" });
      continue;
    }
    const id = `${component}.${split.module}`;
    let g = groups.get(id);
    if (!g) {
      g = { component, key: id, module: null };
      const model = models[component];
      if (!model) g.componentReason = `this pipeline has no ${COMPONENT_NAMES[component]}`;
      else if (loraTargets(model).has(split.module)) g.module = split.module;
      else g.moduleReason = `the ${COMPONENT_NAMES[component]} has no Linear or Conv2d "${split.module}"`;
      groups.set(id, g);
    }
    if (g[split.dir]) unplaced.push({ key, reason: `a second ${split.dir} weight for ${id} (the other is ${g[split.dir]![0]})` });
    else g[split.dir] = [key, raw];
  }
  return groups;
}

const shape = (s: readonly number[]) => `[${s.join(", ")}]`;

function isFloat(raw: RawTensor): boolean {
  return raw.data instanceof Float32Array || raw.data instanceof Float64Array;
}

/** Why A / B do not fit the target layer, or null. Conv2d: A [r, in, k, k] (the layer's kernel), B [out, r, 1, 1]. */
function shapeProblem(target: Linear | Conv2d, down: RawTensor, up: RawTensor): string | null {
  const r = down.shape[0];
  const conv = target instanceof Conv2d;
  const wantDown = conv ? [r, target.inChannels, target.kernelSize, target.kernelSize] : [r, (target as Linear).inFeatures];
  const wantUp = conv ? [target.outChannels, r, 1, 1] : [(target as Linear).outFeatures, r];
  if (r >= 1 && shape(down.shape) === shape(wantDown) && shape(up.shape) === shape(wantUp)) return null;
  const expected = conv
    ? `A (down) [r, ${target.inChannels}, ${target.kernelSize}, ${target.kernelSize}] and B (up) [${target.outChannels}, r, 1, 1]`
    : `A (down) [r, ${(target as Linear).inFeatures}] and B (up) [${(target as Linear).outFeatures}, r]`;
  return `shapes do not fit the ${conv ? "Conv2d" : "Linear"}: expected ${expected}, the file has A ${shape(down.shape)} and B ${shape(up.shape)}`;
}

function alphaValue(raw: RawTensor): number | string {
  if (raw.data.length !== 1) return `alpha must hold one number; it has shape ${shape(raw.shape)}`;
  const v = Number(raw.data[0]);
  return Number.isFinite(v) ? v : `alpha is ${v}`;
}

/**
 * Places every key of a LoRA state dict on a module of `models` (checking names, layer kinds, shapes and
 * alphas); keys that cannot be placed come back in `unplaced` with the reason.
 */
export function parseLoraStateDict(stateDict: Map<string, RawTensor>, models: LoraModels): ParsedLora {
  const unplaced: UnplacedLoraKey[] = [];
  const format: LoraFormat = isKohya([...stateDict.keys()]) ? "kohya" : "diffusers";
  const groups = format === "kohya" ? collectKohya(stateDict, models, unplaced) : collectDiffusers(stateDict, models, unplaced);
  const modules: PlacedLoraModule[] = [];
  for (const g of groups.values()) {
    const keys = [g.down, g.up, g.alpha].filter((x) => x !== undefined).map((x) => x![0]);
    const fail = (reason: string) => keys.forEach((key) => unplaced.push({ key, reason }));
    if (g.component === null || g.componentReason) { fail(g.componentReason!); continue; }
    if (g.module === null) { fail(g.moduleReason!); continue; }
    if (!g.down || !g.up) { fail(`${g.down ? "B (up)" : "A (down)"} weight of ${g.key} is missing from the file`); continue; }
    const target = loraTargets(models[g.component]!).get(g.module)!;
    const [down, up] = [g.down[1], g.up[1]];
    if (!isFloat(down) || !isFloat(up)) { fail(`dtype ${down.dtype} / ${up.dtype}: LoRA weights must be floating point`); continue; }
    const problem = shapeProblem(target, down, up);
    if (problem) { fail(problem); continue; }
    let alpha: number | null = null;
    if (g.alpha) {
      const a = alphaValue(g.alpha[1]);
      if (typeof a === "string") { fail(a); continue; }
      alpha = a;
    }
    modules.push({
      component: g.component, module: g.module, key: g.key, keys, down, up, alpha,
      kind: target instanceof Conv2d ? "Conv2d" : "Linear", rank: down.shape[0],
    });
  }
  return { format, modules, unplaced };
}

/** tfjs tensors -> torch-layout raw arrays (a state dict built in memory). */
function toStateDict(src: Exclude<LoraSource, string>): Map<string, RawTensor> {
  if (src instanceof Map) return src;
  const out = new Map<string, RawTensor>();
  for (const [k, v] of Object.entries(src)) {
    out.set(k, v instanceof tf.Tensor ? { dtype: "F32", shape: [...v.shape], data: Float32Array.from(v.dataSync()) } : v);
  }
  return out;
}

export interface LoraFileOptions extends HubOptions {
  /** File name inside the folder / repo ("pytorch_lora_weights.safetensors", "my_lora.safetensors"). */
  weightName?: string;
}

const LORA_WEIGHT_NAMES = ["pytorch_lora_weights.safetensors", "pytorch_lora_weights.bin"];

/** diffusers' _best_guess_weight_name: the folder / repo's only LoRA-looking weights file. */
async function guessWeightName(idOrPath: string, opts: HubOptions): Promise<string> {
  const files = (await listRepoFiles(idOrPath, opts)).filter((f) => !/scheduler|optimizer|checkpoint/.test(f));
  for (const ext of [".safetensors", ".bin"]) {
    const found = files.filter((f) => f.endsWith(ext));
    const standard = found.find((f) => LORA_WEIGHT_NAMES.includes(f));
    if (standard) return standard;
    if (found.length === 1) return found[0];
    if (found.length > 1) {
      throw new Error(`${idOrPath} holds more than one ${ext} file (${found.join(", ")}): pass weightName to say which one is the LoRA`);
    }
  }
  throw new Error(`${idOrPath} holds no .safetensors or .bin file to load as a LoRA; files: ${files.join(", ") || "(none)"}`);
}

/**
 * The LoRA state dict of a file path, a folder / Hub repo (+ weightName, else its only weights file), or
 * tensors in memory, with a name for messages.
 */
export async function loraStateDict(src: LoraSource, opts: LoraFileOptions = {}): Promise<{ stateDict: Map<string, RawTensor>; source: string }> {
  if (typeof src !== "string") return { stateDict: toStateDict(src), source: "the given state dict" };
  const { weightName, ...hub } = opts;
  const asFile = expandUser(src);
  let file: string;
  if (fs.existsSync(asFile) && fs.statSync(asFile).isFile()) file = asFile;
  else file = await hubFileDownload(src, weightName ?? (await guessWeightName(src, hub)), hub);
  return { stateDict: loadStateDictFile(file), source: file };
}

const SHOWN = 12;

/** The error for a file with keys that cannot be placed (nothing is loaded). */
export function unplacedError(source: string, unplaced: UnplacedLoraKey[]): Error {
  const lines = unplaced.slice(0, SHOWN).map((u) => `  ${u.key}: ${u.reason}`);
  if (unplaced.length > SHOWN) lines.push(`  ... and ${unplaced.length - SHOWN} more`);
  return new Error(
    `Cannot load the LoRA ${source}: ${unplaced.length} key(s) could not be placed on the pipeline's models, so nothing was loaded:\n` +
      `${lines.join("\n")}\n` +
      `explainLoraFile(<file>, pipe) lists every key with the module it patches or the reason it does not fit.`,
  );
}

/** One row of explainLoraFile: a module the LoRA patches. */
export interface LoraKeyRow {
  key: string;
  component: LoraComponent;
  module: string;
  kind: "Linear" | "Conv2d";
  rank: number;
  alpha: number;
  /** false: the file stores no alpha, so alpha = rank (diffusers). */
  alphaStored: boolean;
  /** alpha / rank: what B A is multiplied by at adapter weight 1. */
  scale: number;
}

export interface LoraExplanation {
  source: string;
  format: LoraFormat;
  rows: LoraKeyRow[];
  unplaced: UnplacedLoraKey[];
  /** The same as markdown tables (for displayMarkdown; loraExplanationMarkdown shortens them). */
  markdown: string;
}

/** A pipeline's models under the names LoRA keys use. */
export function pipelineLoraModels(pipe: { unet?: Module | null; textEncoder?: Module | null }): LoraModels {
  return { unet: pipe.unet ?? null, text_encoder: pipe.textEncoder ?? null };
}

/** The explanation as markdown tables (modules patched, keys not placed), at most `maxRows` rows of each. */
export function loraExplanationMarkdown(ex: Pick<LoraExplanation, "format" | "rows" | "unplaced">, opts: { maxRows?: number } = {}): string {
  const max = opts.maxRows ?? Infinity;
  const more = (n: number, cols: number) => (n > max ? [`| … ${n - max} more |${" |".repeat(cols - 1)}`] : []);
  const out = [
    `**${ex.format}** format: ${ex.rows.length} module(s) patched, ${ex.unplaced.length} key(s) not placed.`,
    "",
    "| key in the file | patches | layer | rank | alpha | scale alpha/r |",
    "| --- | --- | --- | ---: | ---: | ---: |",
    ...ex.rows.slice(0, max).map((r) => `| \`${r.key}\` | ${r.component}: \`${r.module}\` | ${r.kind} | ${r.rank} | ${r.alpha}${r.alphaStored ? "" : " (= r, none stored)"} | ${+r.scale.toPrecision(6)} |`),
    ...more(ex.rows.length, 6),
  ];
  if (ex.unplaced.length > 0) {
    out.push("", "| key not placed | reason |", "| --- | --- |", ...ex.unplaced.slice(0, max).map((u) => `| \`${u.key}\` | ${u.reason} |`), ...more(ex.unplaced.length, 2));
  }
  return out.join("\n");
}

/**
 * The key map of a LoRA file against a pipeline: every module it patches (key, module, rank, alpha, scale)
 * and every key it could not place with the reason. Loads nothing.
 */
export async function explainLoraFile(src: LoraSource, pipe: { unet?: Module | null; textEncoder?: Module | null }, opts: LoraFileOptions = {}): Promise<LoraExplanation> {
  const { stateDict, source } = await loraStateDict(src, opts);
  const parsed = parseLoraStateDict(stateDict, pipelineLoraModels(pipe));
  const rows = parsed.modules.map((m): LoraKeyRow => {
    const alpha = m.alpha ?? m.rank;
    return { key: m.key, component: m.component, module: m.module, kind: m.kind, rank: m.rank, alpha, alphaStored: m.alpha !== null, scale: alpha / m.rank };
  });
  const ex = { source, format: parsed.format, rows, unplaced: parsed.unplaced };
  return { ...ex, markdown: loraExplanationMarkdown(ex) };
}
