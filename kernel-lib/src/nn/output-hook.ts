// A side path a layer adds to its own output (LoRA's low-rank update, lora/lora-layer.ts): y' = y + hook(x).
import type * as tf from "@tensorflow/tfjs";

/**
 * An extra term a layer adds to its own output: LoRA's low-rank side path (lora/lora-layer.ts). It gets the layer's
 * input and output (Linear: 2-D [N, in] and [N, out]; Conv2d: NHWC) and returns the new output. null: plain layer.
 */
export interface OutputHook<T extends tf.Tensor> {
  addTo(x: T, y: T): T;
}
