// Attention slicing (diffusers' enable_attention_slicing / UNet2DConditionModel.set_attention_slice).
// Attention needs one [Lq, Lk] map of scores and one of probabilities per (batch item, head): at 512x512 the
// UNet's first level has Lq = Lk = 64*64 = 4096 tokens, so 4096^2 * 4 bytes = 64 MiB per map, and with CFG
// (batch 2) and 8 heads a one-pass attention holds 2 * 16 * 64 MiB = 2 GiB. Slicing computes `sliceSize`
// (batch, head) pairs at a time (diffusers' SlicedAttnProcessor): the same numbers, 2 * sliceSize maps alive.
// Model code, as in diffusers (a method of the model); the memory layer (memory/memory-plan.ts, the pipeline's
// enableAttentionSlicing) only chooses the size.
import { Attention } from "./attention-processor.js";
import type { Module } from "../nn/module.js";

/**
 * "auto": half the heads of each layer (at least 1); "max": one pair at a time; a number: that many pairs in every
 * layer; a list: one entry per attention layer (null = unsliced); null: no slicing.
 */
export type AttentionSliceSize = number | "auto" | "max" | null | (number | null)[];

/** The Attention layers of a model in torch's module order (what diffusers' recursive walk visits). */
export function attentionLayers(model: Module): [string, Attention][] {
  return model.namedModules().filter((e): e is [string, Attention] => e[1] instanceof Attention);
}

/** diffusers' set_attention_slice on every Attention layer of `model`, with its checks and error messages. */
export function setAttentionSlice(model: Module, sliceSize: AttentionSliceSize = "auto"): void {
  const layers = attentionLayers(model);
  const dims = layers.map(([, a]) => a.sliceableHeadDim);
  let sizes: (number | null)[];
  if (sliceSize === "auto") sizes = dims.map((d) => Math.max(1, Math.floor(d / 2)));
  else if (sliceSize === "max") sizes = dims.map(() => 1);
  else if (Array.isArray(sliceSize)) sizes = sliceSize;
  else sizes = dims.map(() => sliceSize);
  if (sizes.length !== dims.length) {
    throw new Error(`setAttentionSlice: ${sizes.length} slice sizes were given but the model has ${dims.length} attention layers; give one per layer (in module order) or a single number`);
  }
  sizes.forEach((size, i) => {
    if (size !== null && (!Number.isInteger(size) || size < 1 || size > dims[i])) {
      throw new Error(`setAttentionSlice: size ${size} for "${layers[i][0]}" has to be an integer from 1 to its ${dims[i]} heads (or "auto" / "max")`);
    }
  });
  layers.forEach(([, a], i) => a.setAttentionSlice(sizes[i]));
}

/** The slice size of each attention layer (null = one pass), by module path. */
export function getAttentionSlices(model: Module): Record<string, number | null> {
  return Object.fromEntries(attentionLayers(model).map(([name, a]) => [name, a.sliceSize]));
}
