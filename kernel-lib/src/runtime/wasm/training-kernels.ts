// The kernels training needs on the wasm backend (tfjs-backend-wasm 4.22), written as
// forward convolutions, which wasm runs on XNNPACK. Measured on [16,32,32,32] 3x3 32->32 (forward 7.5 ms):
// - Conv2DBackpropFilter is not registered for wasm at all (any conv weight gradient fails there). As a conv:
//   dW[i, j, ci, co] = sum_{n,p,q} xpad[n, i + s p, j + s q, ci] dy[n, p, q, co]
//   is a "valid" conv of x^T [Ci, Hp, Wp, N] (batch <-> channels) with dy^T [Ho, Wo, N, Co] as the filter and
//   dilation = stride, giving [Ci, kh, kw, Co]: 16 ms (im2col + one 2-D matMul: 48 ms; per-tap matMuls: 32 ms).
// - Conv2DBackpropInput exists but is a plain single-thread loop (80 ms). As a conv: dx = dy, zero-dilated by the
//   stride, convolved (stride 1) with the filter flipped in space and with in/out channels swapped,
//   padded by k - 1 - pad: 17 ms.
// - UnsortedSegmentSum (the gradient of tf.gather, i.e. of every embedding table) is not registered for wasm: it
//   is a ScatterNd of the rows onto their segment ids, which sums rows sharing an id.
// All are exact reformulations (same sums, another order): they match the cpu kernels to float32 rounding.
import * as tf from "@tensorflow/tfjs";
import { installOverrides, opsKernel, overridesInstalled, uninstallOverrides, type WasmOverride } from "./wasm-backend.js";

type Pad = "same" | "valid" | number | tf.backend_util.ExplicitPadding;
type Shape4 = [number, number, number, number];
type Rounding = "floor" | "round" | "ceil" | undefined;

interface ConvGradAttrs {
  strides: number | [number, number];
  pad: Pad;
  dataFormat?: "NHWC" | "NCHW";
  dimRoundingMode?: Rounding;
}

function convInfo(where: string, xShape: Shape4, filterShape: Shape4, a: ConvGradAttrs): tf.backend_util.Conv2DInfo {
  if (a.dataFormat === "NCHW") throw new Error(`${where} (kit wasm kernel): only NHWC is supported (the kit's layout); got dataFormat NCHW`);
  return tf.backend_util.computeConv2DInfo(xShape, filterShape, a.strides, 1, a.pad, a.dimRoundingMode, false, "channelsLast");
}

/** x padded (top/left by the conv's padding) and cut so that tap i reads rows i, i + s, ..., i + (Ho - 1) s exactly. */
function padForTaps(x: tf.Tensor4D, c: tf.backend_util.Conv2DInfo): tf.Tensor4D {
  const hp = (c.outHeight - 1) * c.strideHeight + c.filterHeight;
  const wp = (c.outWidth - 1) * c.strideWidth + c.filterWidth;
  const bottom = hp - c.inHeight - c.padInfo.top;
  const right = wp - c.inWidth - c.padInfo.left;
  let xp = x;
  if (c.padInfo.top > 0 || c.padInfo.left > 0 || bottom > 0 || right > 0) {
    xp = tf.pad(x, [[0, 0], [c.padInfo.top, Math.max(bottom, 0)], [c.padInfo.left, Math.max(right, 0)], [0, 0]]);
  }
  return bottom < 0 || right < 0 ? tf.slice(xp, [0, 0, 0, 0], [-1, hp, wp, -1]) : xp;
}

/** dL/dW of y = conv2d(x, W, strides, pad) given dL/dy (NHWC x and dy; W [kh, kw, Ci, Co]). */
export function conv2dBackpropFilterViaConv(x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: Shape4, attrs: ConvGradAttrs): tf.Tensor4D {
  return tf.tidy(() => {
    const c = convInfo("Conv2DBackpropFilter", x.shape, filterShape, attrs);
    const xt = tf.transpose(padForTaps(x, c), [3, 1, 2, 0]) as tf.Tensor4D; // [Ci, Hp, Wp, N]
    const dyt = tf.transpose(dy, [1, 2, 0, 3]) as tf.Tensor4D; // [Ho, Wo, N, Co]
    const dw = tf.conv2d(xt, dyt, 1, "valid", "NHWC", [c.strideHeight, c.strideWidth]); // [Ci, kh, kw, Co]
    return tf.transpose(dw, [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/** dL/dx of y = conv2d(x, W, strides, pad) given dL/dy (x of shape `inputShape`, NHWC). */
export function conv2dBackpropInputViaConv(inputShape: Shape4, dy: tf.Tensor4D, filter: tf.Tensor4D, attrs: ConvGradAttrs): tf.Tensor4D {
  return tf.tidy(() => {
    const c = convInfo("Conv2DBackpropInput", inputShape, filter.shape, attrs);
    const { strideHeight: sh, strideWidth: sw, filterHeight: kh, filterWidth: kw } = c;
    const [n, ho, wo, co] = dy.shape;
    let d: tf.Tensor4D = dy;
    if (sh > 1 || sw > 1) {
      // insert s - 1 zeros between rows / columns: [N, Ho, 1, Wo, 1, C] padded to [N, Ho, sh, Wo, sw, C]
      const spread = tf.pad(tf.reshape(dy, [n, ho, 1, wo, 1, co]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
      d = tf.slice(tf.reshape(spread, [n, ho * sh, wo * sw, co]) as tf.Tensor4D, [0, 0, 0, 0], [-1, (ho - 1) * sh + 1, (wo - 1) * sw + 1, -1]);
    }
    const top = kh - 1 - c.padInfo.top;
    const left = kw - 1 - c.padInfo.left;
    const bottom = c.inHeight + kh - 1 - top - d.shape[1];
    const right = c.inWidth + kw - 1 - left - d.shape[2];
    if (top < 0 || left < 0) {
      throw new Error(`Conv2DBackpropInput (kit wasm kernel): padding ${JSON.stringify(c.padInfo)} larger than the filter - 1 is not supported`);
    }
    const flipped = tf.transpose(tf.reverse(filter, [0, 1]), [0, 1, 3, 2]) as tf.Tensor4D; // [kh, kw, Co, Ci]
    const dx = tf.conv2d(d, flipped, 1, [[0, 0], [top, Math.max(bottom, 0)], [left, Math.max(right, 0)], [0, 0]]);
    // rows of x the forward conv never read get a zero gradient; rows past the output are cut
    if (bottom < 0 || right < 0) return tf.slice(dx, [0, 0, 0, 0], [-1, c.inHeight, c.inWidth, -1]);
    return dx;
  });
}

const SEGMENT_SUM = opsKernel((i, a) => {
  const x = i.x;
  const ids = tf.reshape(tf.cast(i.segmentIds, "int32"), [-1, 1]);
  if (ids.shape[0] !== x.shape[0]) throw new Error(`UnsortedSegmentSum (kit wasm kernel): ${ids.shape[0]} segment ids for ${x.shape[0]} rows; only 1-D segment ids are supported`);
  return tf.scatterND(ids, x, [a.numSegments as number, ...x.shape.slice(1)]);
});

/**
 * Conv2DBackpropFilter (missing in wasm), Conv2DBackpropInput (replacing the built-in loop) and UnsortedSegmentSum
 * (missing in wasm): gradients of every conv2d then run on XNNPACK; conv2dTranspose uses the new
 * Conv2DBackpropInput too.
 */
export const TRAINING_KERNELS: WasmOverride[] = [
  { kernelName: "Conv2DBackpropFilter", make: () => opsKernel((i, a) => conv2dBackpropFilterViaConv(i.x as tf.Tensor4D, i.dy as tf.Tensor4D, a.filterShape as Shape4, a as unknown as ConvGradAttrs)) },
  { kernelName: "Conv2DBackpropInput", make: () => opsKernel((i, a) => conv2dBackpropInputViaConv(a.inputShape as Shape4, i.dy as tf.Tensor4D, i.filter as tf.Tensor4D, a as unknown as ConvGradAttrs)) },
  { kernelName: "UnsortedSegmentSum", make: (builtin) => builtin ?? SEGMENT_SUM },
];

/** FOR TESTS: the built-in kernels back (no Conv2DBackpropFilter for wasm), and the kit's again. */
export function unregisterWasmTrainingKernels(): void {
  uninstallOverrides(TRAINING_KERNELS);
}
export function registerWasmTrainingKernels(): void {
  installOverrides(TRAINING_KERNELS);
}
export function wasmTrainingKernelsRegistered(): boolean {
  return overridesInstalled(TRAINING_KERNELS);
}
