// The torch.nn layers the diffusion models are built from, holding converted weights, on NHWC tensors.
//
// wasm notes (tfjs-backend-wasm 4.22, measured):
// - tf.matMul is fast (XNNPACK) only for 2-D operands without transpose flags; rank-3 batches and
//   transposeA/B run a naive loop (~35x slower). So every matMul here is 2-D and flag-free.
// - XNNPACK caches the packed right operand of matMul per tensor *data*, ignoring its shape: never pass
//   tf.reshape(t, s) as the right operand when t (or another reshape of it) was already a right operand
//   under another shape, or the result is wrong. Weights have one shape; activations go on the left.
// - Reductions over non-innermost axes transpose the whole tensor first (slow); avgPool over the full
//   H x W window reduces NHWC spatially in one fast pass, so GroupNorm uses it.
// - XNNPACK also keeps the packed copy of every conv filter / matMul right operand it has run until that
//   tensor is disposed: twice the weights' memory. setKeepPackedWeights(false) keeps weights + one layer, which
//   is what lets SD 1.5's UNet (3.2 GiB of float32) run inside wasm's 4 GiB heap: each call hands XNNPACK a
//   throw-away copy of the *bias* (zeros when the layer has none). tfjs-wasm keys its packed operator on
//   (weight, bias) and frees it when either tensor is disposed, so the packing is freed with that copy, and the
//   weight itself is not copied (tfjs-wasm still lists each call's operator key under the weight, a few dozen
//   bytes per call until the weight is disposed; copying the weight instead listed it under the bias alike).
//   The re-pack per call is the cost: XNNPACK packs a matMul weight in one pass, while tfjs-wasm first
//   transposes a conv filter with a naive strided loop (2-3x slower). So there 1x1 convs run as the matMul
//   they are, and k x k convs with many input channels (SD's 640- and 1280-channel levels) as one matMul per
//   tap, summed: the same sums in another order, each matMul with K = cin instead of k*k*cin, which XNNPACK
//   (no blocking over K) also runs faster than the conv once k*k*cin is in the thousands (bench/README.md).
import * as tf from "@tensorflow/tfjs";
import { Module, type Parameter } from "./module.js";
import { useHeapViewSlice } from "./wasm-slice.js";
import { isRecordingGradients } from "./gradient-tape.js";

/**
 * a @ b + bias (2-D, flag-free): tf.fused.matMul, except while a gradient is recorded, where it is a plain matMul
 * and add (tf.fused.matMul's built-in gradient uses transpose flags, a naive loop on wasm; BatchMatMul's gradient
 * is the kit's flag-free one, training/tfjs-gradients.ts).
 */
function matMulBias(a: tf.Tensor2D, b: tf.Tensor2D, bias?: tf.Tensor): tf.Tensor2D {
  if (!isRecordingGradients()) return tf.fused.matMul({ a, b, bias }) as tf.Tensor2D;
  const y = tf.matMul(a, b);
  return (bias ? tf.add(y, bias) : y) as tf.Tensor2D;
}

let keepPackedWeights = true;

/** true (default): the backend may cache packed weights (fastest); false: weights + one layer of memory (see above). */
export function setKeepPackedWeights(keep: boolean): void {
  keepPackedWeights = keep;
}

export function getKeepPackedWeights(): boolean {
  return keepPackedWeights;
}

/**
 * The bias operand of a conv / matMul: the layer's own (its packing stays cached with the weight), or, when packed
 * weights are not kept, a fresh copy (zeros without a bias: adding 0 changes nothing) that the caller's tidy
 * frees, and with it the operator XNNPACK packed for this call.
 */
function biasOperand(bias: Parameter | null, size: number): tf.Tensor1D | undefined {
  if (keepPackedWeights) return bias?.value as tf.Tensor1D | undefined;
  return (bias ? tf.clone(bias.value) : tf.zeros([size])) as tf.Tensor1D;
}

/** Re-packed k x k convs with at least this many input channels run as one matMul per tap (see Conv2d.repackedConv). */
const TAP_MATMUL_MIN_CHANNELS = 640;

/**
 * An extra term a layer adds to its own output: LoRA's low-rank side path (lora/lora-layer.ts). It gets the layer's
 * input and output (Linear: 2-D [N, in] and [N, out]; Conv2d: NHWC) and returns the new output. null: plain layer.
 */
export interface OutputHook<T extends tf.Tensor> {
  addTo(x: T, y: T): T;
}

/** torch padding: one number for all sides, or [top, bottom, left, right] (F.pad then padding 0). */
export type Conv2dPadding = number | [number, number, number, number];

/** torch.nn.Conv2d on NHWC input; weight stored as the tfjs filter [kh, kw, in, out], bias fused into the conv. */
export class Conv2d extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  /** tfjs form of the padding (a LoRA down-projection convolves with the same stride and padding). */
  readonly pad: number | [[number, number], [number, number], [number, number], [number, number]];
  outputHook: OutputHook<tf.Tensor4D> | null = null;

  constructor(
    readonly inChannels: number,
    readonly outChannels: number,
    readonly kernelSize: number,
    readonly opts: { stride?: number; padding?: Conv2dPadding; bias?: boolean } = {},
  ) {
    super();
    this.weight = this.addParameter("weight", [outChannels, inChannels, kernelSize, kernelSize], "conv2d", "fan_in");
    this.bias = (opts.bias ?? true) ? this.addParameter("bias", [outChannels], "same", "zeros") : null;
    const p = opts.padding ?? 0;
    this.pad = typeof p === "number" ? p : [[0, 0], [p[0], p[1]], [p[2], p[3]], [0, 0]];
  }

  forward(x: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const y = keepPackedWeights ? this.conv(x) : this.repackedConv(x);
      return this.outputHook ? this.outputHook.addTo(x, y) : y;
    });
  }

  private conv(x: tf.Tensor4D, bias = biasOperand(this.bias, this.outChannels)): tf.Tensor4D {
    return tf.fused.conv2d({ x, filter: this.weight.value as tf.Tensor4D, strides: this.opts.stride ?? 1, pad: this.pad, bias });
  }

  /** The conv when XNNPACK re-packs the weight at every call (setKeepPackedWeights(false)): see the notes above. */
  private repackedConv(x: tf.Tensor4D): tf.Tensor4D {
    const k = this.kernelSize;
    const s = this.opts.stride ?? 1;
    const [n, h, w, cin] = x.shape;
    const bias = biasOperand(this.bias, this.outChannels);
    const [pt, pb, pl, pr] = typeof this.pad === "number" ? [this.pad, this.pad, this.pad, this.pad] : [...this.pad[1], ...this.pad[2]];
    const ho = Math.floor((h + pt + pb - k) / s) + 1;
    const wo = Math.floor((w + pl + pr - k) / s) + 1;
    const rows = n * ho * wo;
    if (k === 1 && s === 1 && pt + pb + pl + pr === 0) {
      // a 1x1 conv is y[p] = x[p] W + b for every pixel p: one matMul over the pixels
      const y = matMulBias(tf.reshape(x, [rows, cin]) as tf.Tensor2D, tf.reshape(this.weight.value, [cin, this.outChannels]) as tf.Tensor2D, bias);
      return tf.reshape(y, [n, ho, wo, this.outChannels]);
    }
    // (stride 1 only: tfjs has no gradient for the strided slices a strided version would need)
    if (s !== 1 || (cin < TAP_MATMUL_MIN_CHANNELS && this.outChannels < 2 * rows)) return this.conv(x, bias);
    // y = sum over taps (i, j) of xpad[:, i:i+ho, j:j+wo, :] W[i, j] + b: k*k matMuls with K = cin each, summed a
    // kernel row at a time (addN; fewer outputs alive at once). Each tap of the filter [k, k, cin, out] is a
    // contiguous [cin, out] block (a plain copy); a tap's input and weight copies are freed right after its matMul.
    useHeapViewSlice();
    const xp = pt + pb + pl + pr === 0 ? x : tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]]);
    const tap = (i: number, j: number, b?: tf.Tensor1D) =>
      tf.tidy(() => {
        const a = tf.reshape(tf.slice(xp, [0, i, j, 0], [n, ho, wo, cin]), [rows, cin]) as tf.Tensor2D;
        const wt = tf.reshape(tf.slice(this.weight.value, [i, j, 0, 0], [1, 1, cin, this.outChannels]), [cin, this.outChannels]) as tf.Tensor2D;
        return matMulBias(a, wt, b);
      });
    let y: tf.Tensor2D | null = null;
    for (let i = 0; i < k; i++) {
      const parts = Array.from({ length: k }, (_, j) => tap(i, j, i === 0 && j === 0 ? bias : undefined));
      const prev: tf.Tensor2D | null = y;
      y = tf.addN(prev ? [prev, ...parts] : parts) as tf.Tensor2D;
      tf.dispose(parts);
      prev?.dispose();
    }
    return tf.reshape(y!, [n, ho, wo, this.outChannels]);
  }
}

/** torch.nn.Linear on [..., in]; weight stored as [in, out] so y = x @ W + b is one 2-D matMul. */
export class Linear extends Module {
  readonly weight: Parameter;
  readonly bias: Parameter | null;
  outputHook: OutputHook<tf.Tensor2D> | null = null;

  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true) {
    super();
    this.weight = this.addParameter("weight", [outFeatures, inFeatures], "linear", "fan_in");
    this.bias = bias ? this.addParameter("bias", [outFeatures], "same", "zeros") : null;
  }

  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const a = x.rank === 2 ? (x as unknown as tf.Tensor2D) : tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D;
      let y = matMulBias(a, this.weight.value as tf.Tensor2D, biasOperand(this.bias, this.outFeatures));
      if (this.outputHook) y = this.outputHook.addTo(a, y);
      return (x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), this.outFeatures])) as T;
    });
  }
}

/**
 * torch.nn.GroupNorm on NHWC [N, H, W, C] (or [N, L, C]): channels split into G groups of C/G; each
 * (sample, group) is normalised over H, W and its channels: y = (x - mean) / sqrt(var + eps) * weight + bias,
 * with the biased variance. Computed as torch does, y = x * a + b with a = weight / sqrt(var + eps),
 * b = bias - mean * a, and two-pass statistics (mean first, then the mean of (x - mean)^2).
 */
export class GroupNorm extends Module {
  readonly weight: Parameter | null;
  readonly bias: Parameter | null;

  constructor(readonly numGroups: number, readonly numChannels: number, readonly eps = 1e-5, affine = true) {
    super();
    if (numChannels % numGroups !== 0) {
      throw new Error(`GroupNorm: num_channels ${numChannels} is not divisible by num_groups ${numGroups}`);
    }
    this.weight = affine ? this.addParameter("weight", [numChannels], "same", "ones") : null;
    this.bias = affine ? this.addParameter("bias", [numChannels], "same", "zeros") : null;
  }

  forward<T extends tf.Tensor>(input: T): T {
    return tf.tidy(() => {
      const x = (input.rank === 3 ? tf.expandDims(input, 2) : input) as tf.Tensor4D; // [N, L, C] -> [N, L, 1, C]
      const [n, h, w, c] = x.shape;
      const g = this.numGroups;
      const cg = c / g;
      // per-channel spatial mean [N, 1, 1, C] -> mean over each group's channels, repeated per channel
      const groupMean = (perChannel: tf.Tensor4D): tf.Tensor4D =>
        cg === 1
          ? perChannel
          : tf.reshape(tf.tile(tf.mean(tf.reshape(perChannel, [n, g, cg]), 2, true), [1, 1, cg]), [n, 1, 1, c]);
      const spatialMean = (t: tf.Tensor4D) => tf.avgPool(t, [h, w], 1, "valid");
      const mean = groupMean(spatialMean(x));
      const variance = groupMean(spatialMean(tf.squaredDifference(x, mean) as tf.Tensor4D));
      let a: tf.Tensor = tf.rsqrt(tf.add(variance, this.eps));
      if (this.weight) a = tf.mul(a, this.weight.value);
      let b: tf.Tensor = tf.neg(tf.mul(mean, a));
      if (this.bias) b = tf.add(b, this.bias.value);
      const y = tf.add(tf.mul(x, a), b);
      return tf.reshape(y, input.shape) as T;
    });
  }
}

/** torch.nn.LayerNorm over the last axis: (x - mean) / sqrt(var + eps) * weight + bias. */
export class LayerNorm extends Module {
  readonly weight: Parameter | null;
  readonly bias: Parameter | null;

  constructor(readonly normalizedShape: number, readonly eps = 1e-5, elementwiseAffine = true, bias = true) {
    super();
    this.weight = elementwiseAffine ? this.addParameter("weight", [normalizedShape], "same", "ones") : null;
    this.bias = elementwiseAffine && bias ? this.addParameter("bias", [normalizedShape], "same", "zeros") : null;
  }

  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const mean = tf.mean(x, -1, true);
      const variance = tf.mean(tf.squaredDifference(x, mean), -1, true);
      let y: tf.Tensor = tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, this.eps)));
      if (this.weight) y = tf.mul(y, this.weight.value);
      if (this.bias) y = tf.add(y, this.bias.value);
      return y as T;
    });
  }
}

/** torch.nn.Embedding: row lookup in a [num, dim] table. */
export class Embedding extends Module {
  readonly weight: Parameter;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number) {
    super();
    this.weight = this.addParameter("weight", [numEmbeddings, embeddingDim], "same", "normal");
  }

  forward(indices: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.gather(this.weight.value, tf.cast(indices, "int32")));
  }
}

export type Activation = (x: tf.Tensor) => tf.Tensor;

/** SiLU / swish: x * sigmoid(x). */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/** GELU, exact erf form as torch's default: x/2 * (1 + erf(x / sqrt 2)). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** GELU, tanh approximation (torch approximate="tanh", transformers gelu_new): x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))). */
export function geluTanh<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  });
}

/** QuickGELU (OpenAI CLIP; diffusers' ApproximateGELU): x * sigmoid(1.702 x). */
export function quickGelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

/** Mish: x * tanh(softplus(x)). */
export function mish<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.tanh(tf.softplus(x))));
}

const ACTIVATIONS: Record<string, Activation> = { swish: silu, silu, mish, gelu, relu: (x) => tf.relu(x) };

/** diffusers' get_activation: "swish" | "silu" | "mish" | "gelu" | "relu". */
export function getActivation(name: string): Activation {
  const f = ACTIVATIONS[name.toLowerCase()];
  if (!f) throw new Error(`Unsupported activation function "${name}"; supported: ${Object.keys(ACTIVATIONS).map((k) => `"${k}"`).join(", ")}`);
  return f;
}
