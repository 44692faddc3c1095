// Every wasm speed-up of the kit, registered as tfjs kernels for the wasm backend (nothing else changes: the models
// call plain tfjs ops, and switching backend switches the overrides). initBackend installs them.
import * as tf from "@tensorflow/tfjs";
import { installOverrides, overridesInstalled, type WasmOverride } from "./wasm-backend.js";
import { HEAP_VIEW_SLICE } from "./heap-view-slice.js";
import { BATCH_MAT_MUL } from "./batch-mat-mul.js";
import { PACKED_WEIGHTS } from "./packed-weights.js";
import { SPATIAL_MEAN } from "./spatial-mean.js";
import { TRAINING_KERNELS } from "./training-kernels.js";

export { getKeepPackedWeights, setKeepPackedWeights } from "./packed-weights.js";
export { registerWasmTrainingKernels, unregisterWasmTrainingKernels, wasmTrainingKernelsRegistered } from "./training-kernels.js";

export const WASM_KERNELS: WasmOverride[] = [HEAP_VIEW_SLICE, BATCH_MAT_MUL, ...PACKED_WEIGHTS, SPATIAL_MEAN, ...TRAINING_KERNELS];

/**
 * Installs the kit's wasm kernels (idempotent). A no-op until @tensorflow/tfjs-backend-wasm has registered its own
 * kernels (its import does); initBackend calls it, so does backendReport for a wasm backend set by hand.
 */
export function registerWasmKernels(): boolean {
  if (!tf.getKernel("Slice", "wasm")) return false;
  installOverrides(WASM_KERNELS);
  return true;
}

export function wasmKernelsRegistered(): boolean {
  return overridesInstalled(WASM_KERNELS);
}
