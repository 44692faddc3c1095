// Loading a pipeline folder as diffusers does: model_index.json names each component's library and
// class ({"unet": ["diffusers", "UNet2DModel"], ...}); each component loads from its subfolder.
import * as fs from "node:fs";
import { tryHubFile, type HubOptions } from "../hub/index.js";
import { UNet2DModel } from "../models/unet-2d.js";
import { UNet2DConditionModel } from "../models/unet-2d-condition.js";
import { AutoencoderKL } from "../models/autoencoder-kl.js";
import { CLIPTextModel } from "../models/clip-text-model.js";
import { CLIPTokenizer } from "../tokenizers/clip.js";
import { getSchedulerClass, registeredSchedulers, SCHEDULER_CONFIG_NAME } from "../schedulers/scheduling-utils.js";
import "../schedulers/index.js"; // every scheduler class registers itself

export interface LoadOptions extends HubOptions { variant?: string }

interface Loadable { fromPretrained(idOrPath: string, opts?: LoadOptions): Promise<unknown> }

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

/**
 * Loads the named components. Each comes from `<name>/` (today's layout); old repos such as
 * google/ddpm-cat-256 also keep config.json / scheduler_config.json at the top, which is used when
 * the subfolder has no config.
 */
export async function loadPipelineComponents(idOrPath: string, names: string[], opts: LoadOptions = {}): Promise<Record<string, unknown>> {
  const index = await readModelIndex(idOrPath, opts);
  const out: Record<string, unknown> = {};
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
    const inSub = await tryHubFile(idOrPath, known.file, { ...opts, subfolder: name });
    const subfolder = inSub ? name : (await tryHubFile(idOrPath, known.file, { ...opts, subfolder: undefined })) ? undefined : name;
    out[name] = await known.cls.fromPretrained(idOrPath, { ...opts, subfolder });
  }
  return out;
}
