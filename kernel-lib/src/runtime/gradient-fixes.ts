// The gradient tfjs 4.22 gets wrong, fixed for training, and the one call a trainer makes before its first step.
// - SquaredDifference: tfjs returns 2 (a - b) dy at the broadcast shape for both inputs, without summing over
//   the broadcast axes, so (x - mean)^2 with mean [N, 1, 1, C] (GroupNorm, LayerNorm) fails with "The gradient of
//   input 'b' has shape ..., which does not match". d/da (a - b)^2 = 2 (a - b), d/db = -2 (a - b), each summed
//   over the axes its input was broadcast along (as tfjs' own Sub gradient does).
// The slow gradients of tfjs on wasm (transposed matMuls, full-window means) are fast kernels in runtime/wasm/.
import * as tf from "@tensorflow/tfjs";
import { registerWasmKernels } from "./wasm/index.js";

function reduceTo(g: tf.Tensor, shape: number[], outShape: number[]): tf.Tensor {
  const axes = tf.backend_util.getReductionAxes(shape, outShape);
  return tf.reshape(axes.length > 0 ? tf.sum(g, axes) : g, shape);
}

const SQUARED_DIFFERENCE_GRAD: tf.GradConfig = {
  kernelName: "SquaredDifference",
  inputsToSave: ["a", "b"],
  gradFunc: (dy, saved) => {
    const [a, b] = saved;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a.shape, b.shape);
    const twoDiff = () => tf.mul(dy as tf.Tensor, tf.mul(tf.sub(a, b), 2));
    return { a: () => reduceTo(twoDiff(), a.shape, outShape), b: () => tf.neg(reduceTo(twoDiff(), b.shape, outShape)) };
  },
};
let fixed = false;

/** Registers the gradients above in place of tfjs' own (idempotent; same values where tfjs' were right). */
export function registerGradientFixes(): void {
  if (fixed) return;
  tf.registerGradient(SQUARED_DIFFERENCE_GRAD);
  fixed = true;
}

/** Everything training through the kit's models needs from tfjs: the gradient fixes, and on wasm the conv-gradient kernels. */
export function prepareTfjsForTraining(): void {
  registerGradientFixes();
  registerWasmKernels();
}
