// XNNPACK's packed weights on the wasm backend: kept (fastest) or re-packed at every call (half the memory).
// XNNPACK keeps the packed copy of every conv filter / matMul right operand it has run until that tensor is
// disposed: twice the weights' memory. setKeepPackedWeights(false) keeps weights + one layer, which is what lets
// SD 1.5's UNet (3.2 GiB of float32) run inside wasm's 4 GiB heap: each call hands XNNPACK a throw-away copy of the
// *bias* (zeros when the layer has none). tfjs-wasm keys its packed operator on (weight, bias) and frees it when
// either tensor is disposed, so the packing is freed with that copy, and the weight itself is not copied
// (tfjs-wasm still lists each call's operator key under the weight, a few dozen bytes per call until the weight is
// disposed). The re-pack per call is the cost: XNNPACK packs a matMul weight in one pass, while tfjs-wasm first
// transposes a conv filter with a naive strided loop (2-3x slower). So there 1x1 convs run as the matMul they
// are, and k x k convs with many input channels (SD's 640- and 1280-channel levels) as one matMul per tap, summed:
// the same sums in another order, each matMul with K = cin instead of k*k*cin, which XNNPACK (no blocking over K)
// also runs faster than the conv once k*k*cin is in the thousands (bench/README.md).
import * as tf from "@tensorflow/tfjs";
import { opsKernel, type KernelArgs, type KernelImpl, type WasmOverride } from "./wasm-backend.js";

let keepPackedWeights = true;

/** true (default): the backend may cache packed weights (fastest); false: weights + one layer of memory (see above). */
export function setKeepPackedWeights(keep: boolean): void {
  keepPackedWeights = keep;
}

export function getKeepPackedWeights(): boolean {
  return keepPackedWeights;
}

/** Re-packed k x k convs with at least this many input channels run as one matMul per tap. */
const TAP_MATMUL_MIN_CHANNELS = 640;

/** A fresh copy of the bias (zeros without one: adding 0 changes nothing), disposed after the call with its packing. */
function withFreshBias(builtin: KernelImpl, args: KernelArgs, size: number): tf.TensorInfo | tf.TensorInfo[] {
  const bias = args.inputs.bias as tf.Tensor | undefined;
  const fresh = bias ? tf.clone(bias) : tf.zeros([size]);
  try {
    return builtin({ ...args, inputs: { ...args.inputs, bias: fresh } });
  } finally {
    fresh.dispose();
  }
}

function fusedMatMul(builtin: KernelImpl, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  if (keepPackedWeights) return builtin(args);
  const b = args.inputs.b as tf.TensorInfo;
  const n = (args.attrs as { transposeB: boolean }).transposeB ? b.shape[b.shape.length - 2] : b.shape[b.shape.length - 1];
  return withFreshBias(builtin, args, n);
}

/** y = sum over taps (i, j) of x_pad[:, i:i+ho, j:j+wo, :] W[i, j] + b (stride 1): k*k matMuls with K = cin each. */
const perTapConv = (c: tf.backend_util.Conv2DInfo) => opsKernel((i) => {
  const x = i.x as tf.Tensor4D;
  const w = i.filter as tf.Tensor4D;
  const { filterHeight: k, inChannels: cin, outChannels: cout, outHeight: ho, outWidth: wo, padInfo: p } = c;
  const n = x.shape[0];
  const rows = n * ho * wo;
  const xp = p.top + p.bottom + p.left + p.right === 0 ? x : tf.pad(x, [[0, 0], [p.top, p.bottom], [p.left, p.right], [0, 0]]);
  // each tap of the filter [k, k, cin, out] is a contiguous [cin, out] block; summed a kernel row at a time (addN)
  const tap = (ti: number, tj: number, bias?: tf.Tensor) =>
    tf.tidy(() => {
      const a = tf.reshape(tf.slice(xp, [0, ti, tj, 0], [n, ho, wo, cin]), [rows, cin]) as tf.Tensor2D;
      const wt = tf.reshape(tf.slice(w, [ti, tj, 0, 0], [1, 1, cin, cout]), [cin, cout]) as tf.Tensor2D;
      return tf.fused.matMul({ a, b: wt, bias });
    });
  let y: tf.Tensor | null = null;
  for (let ti = 0; ti < k; ti++) {
    const parts = Array.from({ length: k }, (_, tj) => tap(ti, tj, ti === 0 && tj === 0 ? i.bias : undefined));
    const prev: tf.Tensor | null = y;
    y = tf.addN(prev ? [prev, ...parts] : parts);
    tf.dispose(parts);
    prev?.dispose();
  }
  return tf.reshape(y!, [n, ho, wo, cout]);
});

/** 1x1, stride 1, no padding: y[p] = x[p] W + b for every pixel p, one matMul over the pixels. */
const pointwiseConv = opsKernel((i) => {
  const x = i.x as tf.Tensor4D;
  const [n, h, w, cin] = x.shape;
  const cout = i.filter.shape[3]!;
  const y = tf.fused.matMul({ a: tf.reshape(x, [n * h * w, cin]) as tf.Tensor2D, b: tf.reshape(i.filter, [cin, cout]) as tf.Tensor2D, bias: i.bias });
  return tf.reshape(y, [n, h, w, cout]);
});

function fusedConv2D(builtin: KernelImpl, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  if (keepPackedWeights) return builtin(args);
  const x = args.inputs.x as tf.TensorInfo;
  const filter = args.inputs.filter as tf.TensorInfo;
  const a = args.attrs as unknown as tf.FusedConv2DAttrs;
  const cout = filter.shape[3]!;
  const dilations = a.dilations ?? 1;
  const plain = a.dataFormat !== "NCHW" && (a.activation ?? "linear") === "linear" && !args.inputs.preluActivationWeights &&
    (typeof dilations === "number" ? dilations === 1 : dilations.every((d) => d === 1));
  if (!plain) return withFreshBias(builtin, args, cout);
  const c = tf.backend_util.computeConv2DInfo(x.shape as [number, number, number, number], filter.shape as [number, number, number, number],
    a.strides, 1, a.pad, a.dimRoundingMode, false, "channelsLast");
  const stride1 = c.strideHeight === 1 && c.strideWidth === 1;
  const noPad = c.padInfo.top + c.padInfo.bottom + c.padInfo.left + c.padInfo.right === 0;
  if (c.filterHeight === 1 && c.filterWidth === 1 && stride1 && noPad) return pointwiseConv(args); // its matMul gets the fresh bias
  const rows = x.shape[0] * c.outHeight * c.outWidth;
  // (stride 1: each tap's input is then a plain slice)
  if (!stride1 || c.filterHeight !== c.filterWidth || (c.inChannels < TAP_MATMUL_MIN_CHANNELS && cout < 2 * rows)) return withFreshBias(builtin, args, cout);
  return perTapConv(c)(args);
}

export const PACKED_WEIGHTS: WasmOverride[] = [
  { kernelName: "_FusedMatMul", make: (builtin) => (args) => fusedMatMul(builtin!, args) },
  { kernelName: "FusedConv2D", make: (builtin) => (args) => fusedConv2D(builtin!, args) },
];
