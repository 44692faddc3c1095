// Gradients tfjs 4.22 gets wrong or slow, fixed for training, and the one call a trainer makes before its first step.
// - SquaredDifference: tfjs returns 2 (a - b) dy at the broadcast shape for both inputs, without summing over
//   the broadcast axes, so (x - mean)^2 with mean [N, 1, 1, C] (GroupNorm, LayerNorm) fails with "The gradient of
//   input 'b' has shape ..., which does not match". d/da (a - b)^2 = 2 (a - b), d/db = -2 (a - b), each summed
//   over the axes its input was broadcast along (as tfjs' own Sub gradient does).
// - AvgPool over the whole H x W window (how the kit's GroupNorm takes spatial means): wasm's AvgPoolGrad loops
//   over every (output, window) pair and took 60 % of a training step; the gradient of a full-window mean is
//   dy / (H W) broadcast over the window. Other poolings keep tfjs' gradient.
// - BatchMatMul: tfjs differentiates a @ b as dy @ b^T and a^T @ dy with transpose flags,
//   which wasm runs in a naive loop (half of a tiny SD training step). Here the operands are transposed
//   explicitly, so both products are flag-free (XNNPACK for 2-D); the right operand is always a fresh tensor
//   (XNNPACK caches packed right operands by data, ignoring shape: see models/layers.ts).
import * as tf from "@tensorflow/tfjs";
import { registerWasmTrainingKernels } from "./wasm-kernels.js";

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

/** tfjs' AvgPool gradient, with the full-window case done as a broadcast. */
function avgPoolGrad(original: tf.GradConfig): tf.GradConfig {
  return {
    kernelName: "AvgPool",
    inputsToSave: ["x"],
    gradFunc: (dy, saved, attrs) => {
      const [x] = saved;
      const a = attrs as { filterSize: number | [number, number]; strides: number | [number, number]; pad: unknown };
      const [fh, fw] = typeof a.filterSize === "number" ? [a.filterSize, a.filterSize] : a.filterSize;
      const valid = a.pad === "valid" || a.pad === 0;
      if (x.rank === 4 && valid && fh === x.shape[1] && fw === x.shape[2]) {
        // zeros + dy: wasm's broadcasting add takes 3 ms where its Tile (tf.broadcastTo) takes 96 ms on [16,32,32,64]
        return { x: () => tf.add(tf.zeros(x.shape), tf.div(dy as tf.Tensor, fh * fw)) };
      }
      return original.gradFunc(dy, saved, attrs);
    },
  };
}

/** The last two axes swapped. */
const swapLast = (t: tf.Tensor): tf.Tensor => tf.transpose(t, [...t.shape.keys()].map((i, _, a) => (i < a.length - 2 ? i : i === a.length - 2 ? a.length - 1 : a.length - 2)));

/** d(a @ b) for flag-free a, b of equal rank (no broadcasting of batch axes): dy @ b^T and a^T @ dy. */
function matMulGrads(dy: tf.Tensor, a: tf.Tensor, b: tf.Tensor): { a: () => tf.Tensor; b: () => tf.Tensor } {
  return { a: () => tf.matMul(dy, swapLast(b)), b: () => tf.matMul(swapLast(a), tf.mul(dy, 1)) };
}

const plainMatMul = (a: tf.Tensor, b: tf.Tensor, attrs: Record<string, unknown>): boolean =>
  !attrs.transposeA && !attrs.transposeB && a.rank === b.rank && a.shape.slice(0, -2).join() === b.shape.slice(0, -2).join();

function batchMatMulGrad(original: tf.GradConfig): tf.GradConfig {
  return {
    kernelName: "BatchMatMul",
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved, attrs) => {
      const [a, b] = saved;
      if (!plainMatMul(a, b, attrs as Record<string, unknown>)) return original.gradFunc(dy, saved, attrs);
      return matMulGrads(dy as tf.Tensor, a, b);
    },
  };
}

let fixed = false;

/** Registers the gradients above in place of tfjs' own (idempotent; same values where tfjs' were right). */
export function registerGradientFixes(): void {
  if (fixed) return;
  tf.registerGradient(SQUARED_DIFFERENCE_GRAD);
  tf.registerGradient(avgPoolGrad(tf.getGradient("AvgPool")));
  tf.registerGradient(batchMatMulGrad(tf.getGradient("BatchMatMul")));
  fixed = true;
}

/** Everything training through the kit's models needs from tfjs: the gradient fixes and the wasm conv-gradient kernels. */
export function prepareTfjsForTraining(): void {
  registerGradientFixes();
  registerWasmTrainingKernels();
}
