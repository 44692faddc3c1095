// The mean over H and W of an NHWC tensor on the wasm backend, in one pass.
// tfjs-backend-wasm 4.22 reduces over axes other than the innermost by transposing the whole tensor first (a slow
// strided copy); GroupNorm's statistics are means over H and W. An average pool over the full H x W window computes
// the same means in one fast pass over NHWC. Other means go to the built-in kernel.
import * as tf from "@tensorflow/tfjs";
import { opsKernel, type KernelArgs, type KernelImpl, type WasmOverride } from "./wasm-backend.js";

const fullWindowMean = opsKernel((i, attrs) => {
  const x = i.x as tf.Tensor4D;
  const [n, h, w, c] = x.shape;
  const m = tf.avgPool(x, [h, w], 1, "valid"); // [N, 1, 1, C]
  return attrs.keepDims ? m : tf.reshape(m, [n, c]);
});

function mean(builtin: KernelImpl, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const x = args.inputs.x as tf.TensorInfo;
  const axes = tf.util.parseAxisParam(args.attrs.axis as number | number[], x.shape).sort();
  if (x.shape.length === 4 && x.dtype === "float32" && axes.length === 2 && axes[0] === 1 && axes[1] === 2 && tf.util.sizeFromShape(x.shape) > 0) {
    return fullWindowMean(args);
  }
  return builtin(args);
}

export const SPATIAL_MEAN: WasmOverride = { kernelName: "Mean", make: (builtin) => (args) => mean(builtin!, args) };
