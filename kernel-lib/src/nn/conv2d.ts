// torch.nn.Conv2d on NHWC tensors: y[n, p, q, o] = b[o] + sum_{i, j, c} x_pad[n, s p + i, s q + j, c] W[i, j, c, o].
// One fused conv call; how the backend runs it (XNNPACK, re-packed weights, one matMul per tap) is runtime/'s
// business (runtime/wasm/packed-weights.ts).
import * as tf from "@tensorflow/tfjs";
import { Module, type Parameter } from "./module.js";
import type { OutputHook } from "./output-hook.js";

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
      const filter = this.weight.value as tf.Tensor4D;
      const bias = this.bias?.value as tf.Tensor1D | undefined;
      const y = tf.fused.conv2d({ x, filter, strides: this.opts.stride ?? 1, pad: this.pad, bias });
      return this.outputHook ? this.outputHook.addTo(x, y) : y;
    });
  }
}
