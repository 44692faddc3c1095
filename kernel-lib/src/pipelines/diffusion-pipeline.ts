// DiffusionPipeline.fromPretrained: read model_index.json and hand over to the pipeline class it names.
import { readModelIndex, type LoadOptions } from "./pipeline-loading.js";
import { DDPMPipeline } from "./pipeline-ddpm.js";
import { StableDiffusionPipeline } from "./pipeline-stable-diffusion.js";
import { StableDiffusionImg2ImgPipeline } from "./pipeline-stable-diffusion-img2img.js";
import { StableDiffusionInpaintPipeline } from "./pipeline-stable-diffusion-inpaint.js";

interface PipelineClass { fromPretrained(idOrPath: string, opts?: LoadOptions): Promise<unknown> }

/** Pipeline classes by the `_class_name` of model_index.json. */
export const PIPELINE_CLASSES: Record<string, PipelineClass> = {
  DDPMPipeline,
  StableDiffusionPipeline,
  StableDiffusionImg2ImgPipeline,
  StableDiffusionInpaintPipeline,
};

export type AnyPipeline = DDPMPipeline | StableDiffusionPipeline;

export class DiffusionPipeline {
  /** diffusers' DiffusionPipeline.from_pretrained: reads model_index.json and returns the class it names. */
  static async fromPretrained<P extends AnyPipeline = AnyPipeline>(idOrPath: string, opts: LoadOptions = {}): Promise<P> {
    const index = await readModelIndex(idOrPath, opts);
    const cls = PIPELINE_CLASSES[index._class_name];
    if (!cls) {
      throw new Error(`${idOrPath}: model_index.json names ${index._class_name}, which this kit has no pipeline for (supported: ${Object.keys(PIPELINE_CLASSES).join(", ")})`);
    }
    return cls.fromPretrained(idOrPath, opts) as Promise<P>;
  }
}
