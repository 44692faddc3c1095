// What every pipeline shares (diffusers' DiffusionPipeline): named components that can be swapped,
// a progress bar that can be configured, and the conversion of outputs.
import * as tf from "@tensorflow/tfjs";
import { toImage } from "../display/image.js";
import { ProgressBar, type ProgressOptions } from "../display/progress.js";

export type OutputType = "png" | "np" | "tensor";

export abstract class DiffusionPipelineBase {
  protected progressBarConfig: ProgressOptions = {};

  /** diffusers: pipe.set_progress_bar_config(disable=True) */
  setProgressBarConfig(cfg: ProgressOptions): void {
    this.progressBarConfig = { ...cfg };
  }

  protected progressBar(total: number): ProgressBar {
    return new ProgressBar(total, this.progressBarConfig);
  }

  /** Frees every component's weights. */
  abstract dispose(): void;
}

/**
 * Turns pictures [B,H,W,3] in [0,1] into the requested output: "np" (the float tensor itself, as
 * diffusers' numpy output), "tensor" (the same), or "png" (one PNG per picture, like PIL images).
 * Takes ownership of `images` (disposes it for "png").
 */
export async function postprocessImages(images: tf.Tensor4D, outputType: OutputType): Promise<tf.Tensor4D | Buffer[]> {
  if (outputType === "np" || outputType === "tensor") return images;
  if (outputType !== "png") throw new Error(`outputType must be "png", "np" or "tensor"; got ${JSON.stringify(outputType)}`);
  const pngs: Buffer[] = [];
  for (let i = 0; i < images.shape[0]; i++) {
    const one = tf.slice(images, [i, 0, 0, 0], [1, -1, -1, -1]);
    pngs.push(await toImage(one));
    one.dispose();
  }
  images.dispose();
  return pngs;
}
