// DiffusionPipeline.fromPretrained: read model_index.json and hand over to the pipeline class it names.
import { readModelIndex, type LoadOptions } from "./pipeline-loading.js";
import { DDPMPipeline } from "./pipeline-ddpm.js";

interface PipelineClass { fromPretrained(idOrPath: string, opts?: LoadOptions): Promise<unknown> }

/** Pipeline classes by name; the Stable Diffusion issue adds its pipelines here. */
export const PIPELINE_CLASSES: Record<string, PipelineClass> = { DDPMPipeline };

export class DiffusionPipeline {
  static async fromPretrained(idOrPath: string, opts: LoadOptions = {}): Promise<DDPMPipeline> {
    const index = await readModelIndex(idOrPath, opts);
    const cls = PIPELINE_CLASSES[index._class_name];
    if (!cls) {
      throw new Error(`${idOrPath}: model_index.json names ${index._class_name}, which this kit has no pipeline for (supported: ${Object.keys(PIPELINE_CLASSES).join(", ")})`);
    }
    return cls.fromPretrained(idOrPath, opts) as Promise<DDPMPipeline>;
  }
}
