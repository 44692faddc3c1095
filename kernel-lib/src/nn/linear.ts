// torch.nn.Linear: y = x W^T + b over the last axis (W kept as [in, out], so y = x @ W + b, one 2-D matMul).
import * as tf from "@tensorflow/tfjs";
import { Module, type Parameter } from "./module.js";
import type { OutputHook } from "./output-hook.js";

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
      const a = x.rank === 2 ? (x as unknown as tf.Tensor2D) : (tf.reshape(x, [-1, this.inFeatures]) as tf.Tensor2D);
      let y = tf.fused.matMul({ a, b: this.weight.value as tf.Tensor2D, bias: this.bias?.value }) as tf.Tensor2D;
      if (this.outputHook) y = this.outputHook.addTo(a, y);
      return (x.rank === 2 ? y : tf.reshape(y, [...x.shape.slice(0, -1), this.outFeatures])) as T;
    });
  }
}
