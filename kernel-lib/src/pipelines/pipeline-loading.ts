// Loading a pipeline folder as diffusers does: model_index.json names each component's library and
// class ({"unet": ["diffusers", "UNet2DModel"], ...}); each component loads from its subfolder.
import * as fs from "node:fs";
import { tryHubFile, type HubOptions } from "../hub/index.js";
import { checkConfigClass, readConfigFile } from "../io/config.js";
import { ModelMixin, type WeightPlacement } from "../models/modeling-utils.js";
import { memoryBudget, GIB } from "../memory/memory-budget.js";
import { deviceIsHostMemory, MemoryPlanError } from "../memory/memory-plan.js";
import { formatBytes } from "../memory/memory-report.js";
import { backendReport } from "../runtime/backend.js";
import { UNet2DModel } from "../models/unet-2d.js";
import { UNet2DConditionModel } from "../models/unet-2d-condition.js";
import { AutoencoderKL } from "../models/autoencoder-kl.js";
import { CLIPTextModel } from "../models/clip-text-model.js";
import { CLIPTokenizer } from "../tokenizers/clip.js";
import { getSchedulerClass, registeredSchedulers, SCHEDULER_CONFIG_NAME } from "../schedulers/scheduling-utils.js";
import "../schedulers/index.js"; // every scheduler class registers itself

export interface LoadOptions extends HubOptions {
  /** "fp16": the float16 weight files (half the download); widened to float32 on the device, kept float16 in host memory */
  variant?: string;
  /** "auto" (default): the pipeline plans its memory (memory/memory-plan.ts); "none": all weights on the device, no plan */
  memory?: "auto" | "none";
  /** Bytes the pipeline's plans may use (default: the backend's budget, memory/memory-budget.ts) */
  memoryBudgetBytes?: number;
}

interface Loadable { fromPretrained(idOrPath: string, opts?: LoadOptions & { placement?: "auto" | WeightPlacement }): Promise<unknown> }

/** Activations a pipeline needs at the least beside its weights: below this, loading them all on the device is no plan. */
const MIN_ACTIVATION_BYTES = 0.5 * GIB;

/** Model and tokenizer classes by their diffusers/transformers name, with the file that marks their folder. */
export const COMPONENT_CLASSES: Record<string, { file: string; cls: Loadable }> = {
  UNet2DModel: { file: "config.json", cls: UNet2DModel as unknown as Loadable },
  UNet2DConditionModel: { file: "config.json", cls: UNet2DConditionModel as unknown as Loadable },
  AutoencoderKL: { file: "config.json", cls: AutoencoderKL as unknown as Loadable },
  CLIPTextModel: { file: "config.json", cls: CLIPTextModel as unknown as Loadable },
  CLIPTokenizer: { file: "vocab.json", cls: CLIPTokenizer as unknown as Loadable },
};

/** A component class: a model/tokenizer above, or any registered scheduler. */
function componentClass(name: string): { file: string; cls: Loadable } | undefined {
  const sched = getSchedulerClass(name);
  if (sched) return { file: SCHEDULER_CONFIG_NAME, cls: sched as unknown as Loadable };
  return COMPONENT_CLASSES[name];
}

export type ModelIndex = Record<string, unknown> & { _class_name: string };

/** Reads model_index.json of a repo or folder (error naming the id when absent). */
export async function readModelIndex(idOrPath: string, opts: HubOptions = {}): Promise<ModelIndex> {
  const { subfolder: _ignored, ...rest } = opts;
  const file = await tryHubFile(idOrPath, "model_index.json", rest);
  if (!file) {
    throw new Error(`${idOrPath} has no model_index.json, so it is not a pipeline folder; load its parts with their own classes (e.g. UNet2DModel.fromPretrained)`);
  }
  const index = JSON.parse(fs.readFileSync(file, "utf8")) as ModelIndex;
  if (typeof index._class_name !== "string") throw new Error(`${file}: "_class_name" is missing`);
  return index;
}

/** Where a component's files are: `<name>/`, or the top of old repos (google/ddpm-cat-256). */
async function componentSubfolder(idOrPath: string, name: string, file: string, opts: LoadOptions): Promise<string | undefined> {
  const inSub = await tryHubFile(idOrPath, file, { ...opts, subfolder: name });
  return inSub ? name : (await tryHubFile(idOrPath, file, { ...opts, subfolder: undefined })) ? undefined : name;
}

/**
 * The float32 bytes of each model component, from its config (a module tree without weights), before any weight is
 * read; with memory "none", a MemoryPlanError when they cannot all fit the device with room for a call.
 */
async function weightsBeforeLoading(idOrPath: string, models: [string, { file: string; cls: Loadable }, string | undefined][], opts: LoadOptions): Promise<Record<string, number>> {
  const bytes: Record<string, number> = {};
  for (const [name, { file, cls }, subfolder] of models) {
    const configFile = (await tryHubFile(idOrPath, file, { ...opts, subfolder }))!;
    const config = readConfigFile(configFile);
    const className = (cls as unknown as { className: string }).className;
    checkConfigClass(configFile, config, className, `model_index.json lists "${name}" as a ${className}`);
    bytes[name] = 4 * new (cls as unknown as new (c: Record<string, unknown>) => ModelMixin)(config).numParameters();
  }
  if (opts.memory !== "none") return bytes;
  await backendReport();
  const budget = memoryBudget();
  if (opts.memoryBudgetBytes !== undefined) budget.bytes = opts.memoryBudgetBytes;
  const total = Object.values(bytes).reduce((a, b) => a + b, 0);
  if (!deviceIsHostMemory(budget) && total + MIN_ACTIVATION_BYTES > budget.bytes) {
    throw new MemoryPlanError(`${idOrPath}: its weights (${formatBytes(total)} as float32) and a call's activations do not fit the ${budget.backend} ` +
      `budget of ${formatBytes(budget.bytes)} (${budget.source}), and memory "none" was asked, so nothing was loaded: past the budget the wasm module ` +
      `aborts. Load with memory "auto" (the default): what does not fit stays in host memory and is offloaded.`);
  }
  return bytes;
}

/**
 * Loads the named components. Each comes from `<name>/` (today's layout); old repos such as
 * google/ddpm-cat-256 also keep config.json / scheduler_config.json at the top, which is used when
 * the subfolder has no config. Components of model_index.json this pipeline does not use (SD's safety_checker and
 * feature_extractor) are named in one line and not loaded. With memory "auto" (default) each model goes where it
 * fits (accelerate's device_map="auto"): the smaller models first, each on the device when it fits beside the ones
 * loaded before it, else in host memory under sequential offload (memory/model-memory.ts, said in one line).
 */
export async function loadPipelineComponents(idOrPath: string, names: string[], opts: LoadOptions = {}): Promise<Record<string, unknown>> {
  const index = await readModelIndex(idOrPath, opts);
  const unused = Object.entries(index).filter(([k, v]) => !k.startsWith("_") && !names.includes(k) && Array.isArray(v) && typeof v[1] === "string");
  if (unused.length > 0) {
    console.log(`${idOrPath}: ${unused.map(([k, v]) => `${k} (${(v as string[])[1]})`).join(" and ")} ${unused.length > 1 ? "are" : "is"} listed in ` +
      `model_index.json but not loaded: this pipeline does not use ${unused.length > 1 ? "them" : "it"} (as diffusers with ${unused.map(([k]) => `${k}=None`).join(", ")}).`);
  }
  const { memory: _memory, memoryBudgetBytes: _budget, ...loadOpts } = opts;
  const found: [string, { file: string; cls: Loadable }, string | undefined][] = [];
  for (const name of names) {
    const entry = index[name];
    if (!Array.isArray(entry) || entry.length !== 2 || typeof entry[1] !== "string") {
      throw new Error(`${idOrPath}/model_index.json has no component "${name}" (it lists: ${Object.keys(index).filter((k) => !k.startsWith("_")).join(", ")})`);
    }
    const className = entry[1] as string;
    const known = componentClass(className);
    if (!known) {
      throw new Error(`${idOrPath}/model_index.json: component "${name}" is a ${className}, which this kit cannot load (supported: ${[...Object.keys(COMPONENT_CLASSES), ...registeredSchedulers()].join(", ")})`);
    }
    found.push([name, known, await componentSubfolder(idOrPath, name, known.file, loadOpts)]);
  }
  // the components with weights (ModelMixin subclasses): what the placement decides for
  const isModel = (k: { cls: Loadable }) => (k.cls as unknown as { prototype: object }).prototype instanceof ModelMixin;
  const bytes = await weightsBeforeLoading(idOrPath, found.filter(([, k]) => isModel(k)).map(([n, k, s]) => [n, k, s]), opts);
  const order = [...found].sort((a, b) => (bytes[a[0]] ?? 0) - (bytes[b[0]] ?? 0));
  const memory = opts.memory === "none" ? { placement: "device" as const } : { placement: "auto" as const, memoryBudgetBytes: opts.memoryBudgetBytes };
  const out: Record<string, unknown> = {};
  for (const [name, known, subfolder] of order) {
    out[name] = await known.cls.fromPretrained(idOrPath, { ...loadOpts, subfolder, ...(isModel(known) ? memory : {}) });
  }
  return out;
}
