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
//   tensor is disposed: twice the weights' memory. setKeepPackedWeights(false) runs Conv2d and Linear on a
//   throw-away copy of the weight instead (freed with its packing after the call): weights + one layer, which
//   is what lets SD 1.5's UNet (3.2 GiB of float32) run inside wasm's 4 GiB heap. Costs a copy + re-pack per call.
import * as tf from "@tensorflow/tfjs";
import { Module, type Parameter } from "./module.js";

let keepPackedWeights = true;

/** true (default): the backend may cache packed weights (fastest); false: weights + one layer of memory (see above). */
export function setKeepPackedWeights(keep: boolean): void {
  keepPackedWeights = keep;
}

export function getKeepPackedWeights(): boolean {
  return keepPackedWeights;
}

/** A weight as a conv / matMul operand: itself, or a copy freed by the caller's tidy when packed weights are not kept. */
function weightOperand(p: Parameter): tf.Tensor {
  return keepPackedWeights ? p.value : tf.clone(p.value);
}

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
      const y = tf.fused.conv2d({
        x,
        filter: weightOperand(this.weight) as tf.Tensor4D,
        strides: this.opts.stride ?? 1,
        pad: this.pad,
        bias: this.bias?.value,
      });
      return this.outputHook ? this.outputHook.addTo(x, y) : y;
    });
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
      let y = tf.fused.matMul({ a, b: weightOperand(this.weight) as tf.Tensor2D, bias: this.bias?.value }) as tf.Tensor2D;
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
