// What every pipeline shares (diffusers' DiffusionPipeline): named components that can be swapped,
// a progress bar that can be configured, and the conversion of outputs.
import * as tf from "@tensorflow/tfjs";
import { toImage } from "../display/image.js";
import { ProgressBar, type ProgressOptions } from "../display/progress.js";
import type { AttentionSliceSize } from "../models/attention-slicing.js";
import {
  disableCpuOffload,
  enableModelCpuOffload as modelCpuOffload,
  enableSequentialCpuOffload as sequentialCpuOffload,
  maybeFreeModelHooks as freeModelHooks,
  pipelineModules,
} from "../memory/offload.js";
import {
  announcePlan, applyMemoryKnobs, chooseMemoryPlan, currentKnobs, estimatePlan, isTrivialPlan, MemoryPlanError, planComponents,
  type MemoryMode, type MemoryPlan, type PlannedCall,
} from "../memory/memory-plan.js";
import { memoryBudget, packsWeights, type MemoryBudget } from "../memory/memory-budget.js";

export type OutputType = "png" | "np" | "tensor";

export abstract class DiffusionPipelineBase {
  protected progressBarConfig: ProgressOptions = {};

  /**
   * Memory planning (memory/memory-plan.ts, diffusers' device_map="auto"): "auto" (default) picks the cheapest knobs
   * that fit the backend's budget before each call and says what it chose; "none" never plans or checks; an explicit
   * enable* / disable* call switches to "manual": your knobs are kept, and a call they cannot fit is refused before it runs.
   */
  memory: MemoryMode = "auto";
  /** The plan of the last call: knobs, the estimate of every model call, the peak and the budget. */
  memoryPlan: MemoryPlan | null = null;
  /** Bytes this pipeline's plans may use (default: the backend's budget, memory/memory-budget.ts). */
  memoryBudgetBytes: number | null = null;
  private memoryPlanKey: string | null = null;

  /** The budget the plans of this pipeline fit in. */
  memoryBudget(): MemoryBudget {
    const b = memoryBudget();
    return this.memoryBudgetBytes === null ? b : { ...b, bytes: this.memoryBudgetBytes, source: "the pipeline's memoryBudgetBytes" };
  }

  /**
   * Before a call: plan (memory "auto") or check (memory "manual") the memory of the model calls it will make, before
   * any kernel runs. Throws a MemoryPlanError when nothing fits.
   */
  protected planMemory(what: string, calls: PlannedCall[]): void {
    if (this.memory === "none") return;
    const { components, fixed } = planComponents(this);
    const input = { what, components, calls, fixed };
    const budget = this.memoryBudget();
    if (this.memory === "manual") {
      const plan = estimatePlan(input, currentKnobs(this), budget);
      this.memoryPlan = plan;
      if (!plan.fits && packsWeights()) {
        throw new MemoryPlanError(`${plan.summary}. Nothing was run: past the budget the wasm module aborts and takes every tensor with it. ` +
          `Add savings (enableAttentionSlicing("max"), enableVaeTiling(), enableSequentialCpuOffload()), set pipe.memory = "auto" to let the ` +
          `pipeline choose, or pipe.memory = "none" to run it anyway.`, plan);
      }
      return;
    }
    const previous = this.memoryPlan?.knobs ?? null;
    const plan = chooseMemoryPlan(input, { budget });
    applyMemoryKnobs(this, plan.knobs, (this.constructor as typeof DiffusionPipelineBase).modelCpuOffloadSeq, previous);
    this.memoryPlanKey = announcePlan(plan, this.memoryPlanKey, isTrivialPlan(plan.knobs));
    this.memoryPlan = plan;
  }

  /** An explicit knob call: the pipeline stops planning and keeps the knobs you set (memory "manual"). */
  protected takeMemoryControl(): void {
    if (this.memory === "auto") this.memory = "manual";
  }

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
   * the heads, "max" computes one (batch, head) pair at a time, a number that many (models/attention-slicing.ts).
   */
  enableAttentionSlicing(sliceSize: AttentionSliceSize = "auto"): void {
    this.takeMemoryControl();
    for (const [, m] of pipelineModules(this)) (m as { setAttentionSlice?: (s: AttentionSliceSize) => void }).setAttentionSlice?.(sliceSize);
  }

  disableAttentionSlicing(): void {
    this.enableAttentionSlicing(null);
  }

  /** diffusers' enable_model_cpu_offload: one whole model loaded at a time, in modelCpuOffloadSeq order (memory/offload.ts). */
  enableModelCpuOffload(): void {
    this.takeMemoryControl();
    modelCpuOffload(this, (this.constructor as typeof DiffusionPipelineBase).modelCpuOffloadSeq);
  }

  /** diffusers' enable_sequential_cpu_offload: each layer's weights loaded just for its own forward (memory/offload.ts). */
  enableSequentialCpuOffload(): void {
    this.takeMemoryControl();
    sequentialCpuOffload(this);
  }

  /** Removes model offload: every weight resident again. */
  disableModelCpuOffload(): void {
    this.takeMemoryControl();
    disableCpuOffload(this);
  }

  /** Removes sequential offload: every weight resident again. */
  disableSequentialCpuOffload(): void {
    this.takeMemoryControl();
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
