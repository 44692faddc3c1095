// torch.nn.GroupNorm and torch.nn.LayerNorm: y = (x - mean) / sqrt(var + eps) * weight + bias, with the biased
// variance, over a group of channels and the pixels (GroupNorm, Wu & He 2018) or over the last axis (LayerNorm,
// Ba et al. 2016).
import * as tf from "@tensorflow/tfjs";
import { Module, type Parameter } from "./module.js";

/**
 * torch.nn.GroupNorm on NHWC [N, H, W, C] (or [N, L, C]): channels split into G groups of C/G; each
 * (sample, group) is normalised over H, W and its channels. Computed as torch does, y = x * a + b with
 * a = weight / sqrt(var + eps), b = bias - mean * a, and two-pass statistics (mean first, then the mean of
 * (x - mean)^2).
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
      const [n, , , c] = x.shape;
      const g = this.numGroups;
      const cg = c / g;
      // mean over H, W and the group's channels: per-channel means [N, 1, 1, C], averaged within each group
      const groupMean = (t: tf.Tensor4D): tf.Tensor4D => {
        const perChannel = tf.mean(t, [1, 2], true) as tf.Tensor4D;
        return cg === 1 ? perChannel : tf.reshape(tf.tile(tf.mean(tf.reshape(perChannel, [n, g, cg]), 2, true), [1, 1, cg]), [n, 1, 1, c]);
      };
      const mean = groupMean(x);
      const variance = groupMean(tf.squaredDifference(x, mean) as tf.Tensor4D);
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
