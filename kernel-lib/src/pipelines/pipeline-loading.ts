// Loading a pipeline folder as diffusers does: model_index.json names each component's library and
// class ({"unet": ["diffusers", "UNet2DModel"], ...}); each component loads from its subfolder.
import * as fs from "node:fs";
import { tryHubFile, type HubOptions } from "../hub/index.js";
import { UNet2DModel } from "../models/unet-2d.js";
import { DDPMScheduler } from "../schedulers/scheduling-ddpm.js";
import { DDIMScheduler } from "../schedulers/scheduling-ddim.js";

export interface LoadOptions extends HubOptions { variant?: string }

interface Loadable { fromPretrained(idOrPath: string, opts?: LoadOptions): Promise<unknown> }

/** Component classes by their diffusers/transformers name; later issues add SD's parts here. */
export const COMPONENT_CLASSES: Record<string, { file: string; cls: Loadable }> = {
  UNet2DModel: { file: "config.json", cls: UNet2DModel as unknown as Loadable },
  DDPMScheduler: { file: "scheduler_config.json", cls: DDPMScheduler as unknown as Loadable },
  DDIMScheduler: { file: "scheduler_config.json", cls: DDIMScheduler as unknown as Loadable },
};

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
    const known = COMPONENT_CLASSES[className];
    if (!known) {
      throw new Error(`${idOrPath}/model_index.json: component "${name}" is a ${className}, which this kit cannot load (supported: ${Object.keys(COMPONENT_CLASSES).join(", ")})`);
    }
    const inSub = await tryHubFile(idOrPath, known.file, { ...opts, subfolder: name });
    const subfolder = inSub ? name : (await tryHubFile(idOrPath, known.file, { ...opts, subfolder: undefined })) ? undefined : name;
    out[name] = await known.cls.fromPretrained(idOrPath, { ...opts, subfolder });
  }
  return out;
}
