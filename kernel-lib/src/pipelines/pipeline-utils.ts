// What every pipeline shares (diffusers' DiffusionPipeline): named components that can be swapped,
// a progress bar that can be configured, and the conversion of outputs.
import * as tf from "@tensorflow/tfjs";
import { toImage } from "../display/image.js";
import { ProgressBar, type ProgressOptions } from "../display/progress.js";
import type { AttentionSliceSize } from "../memory/attention-slicing.js";
import {
  disableCpuOffload,
  enableModelCpuOffload as modelCpuOffload,
  enableSequentialCpuOffload as sequentialCpuOffload,
  maybeFreeModelHooks as freeModelHooks,
  pipelineModules,
} from "../memory/offload.js";

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

  /** diffusers' model_cpu_offload_seq: the order model offload loads components in (null: declaration order). */
  static readonly modelCpuOffloadSeq: string | null = null;

  /**
   * diffusers' enable_attention_slicing on every component that has setAttentionSlice (the UNet): "auto" halves
   * the heads, "max" computes one (batch, head) pair at a time, a number that many (memory/attention-slicing.ts).
   */
  enableAttentionSlicing(sliceSize: AttentionSliceSize = "auto"): void {
    for (const [, m] of pipelineModules(this)) (m as { setAttentionSlice?: (s: AttentionSliceSize) => void }).setAttentionSlice?.(sliceSize);
  }

  disableAttentionSlicing(): void {
    this.enableAttentionSlicing(null);
  }

  /** diffusers' enable_model_cpu_offload: one whole model loaded at a time, in modelCpuOffloadSeq order (memory/offload.ts). */
  enableModelCpuOffload(): void {
    modelCpuOffload(this, (this.constructor as typeof DiffusionPipelineBase).modelCpuOffloadSeq);
  }

  /** diffusers' enable_sequential_cpu_offload: each layer's weights loaded just for its own forward (memory/offload.ts). */
  enableSequentialCpuOffload(): void {
    sequentialCpuOffload(this);
  }

  /** Removes model offload: every weight resident again. */
  disableModelCpuOffload(): void {
    disableCpuOffload(this);
  }

  /** Removes sequential offload: every weight resident again. */
  disableSequentialCpuOffload(): void {
    disableCpuOffload(this);
  }

  /** diffusers' maybe_free_model_hooks, at the end of a call: offloaded models free their loaded weights. */
  maybeFreeModelHooks(): void {
    freeModelHooks(this);
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
