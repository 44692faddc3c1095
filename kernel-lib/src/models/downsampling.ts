// Downsample2D (diffusers models/downsampling.py): halve H and W with a stride-2 3x3 conv, or a 2x2 average.
import * as tf from "@tensorflow/tfjs";
import { Module } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";

export class Downsample2D extends Module {
  readonly conv: Conv2d | null;
  readonly outChannels: number;

  /**
   * `padding` as diffusers: with a conv, padding 0 means pad one zero row/column at the bottom/right only,
   * (0, 1, 0, 1), then convolve without padding (old checkpoints such as ddpm-cat-256); padding 1 pads all sides.
   * The asymmetric padding is given to the conv itself (tfjs explicit padding), saving a copy of the input.
   */
  constructor(
    readonly channels: number,
    opts: { useConv?: boolean; outChannels?: number; padding?: number; kernelSize?: number; bias?: boolean } = {},
  ) {
    super();
    const { useConv = false, padding = 1, kernelSize = 3, bias = true } = opts;
    this.outChannels = opts.outChannels ?? channels;
    if (useConv) {
      this.conv = this.addModule(
        "conv",
        new Conv2d(channels, this.outChannels, kernelSize, { stride: 2, padding: padding === 0 ? [0, 1, 0, 1] : padding, bias }),
      );
    } else {
      if (this.outChannels !== channels) throw new Error(`Downsample2D without conv keeps the channels (${channels}), got out_channels ${this.outChannels}`);
      this.conv = null; // AvgPool2d(kernel_size=2, stride=2)
    }
  }

  forward(hiddenStates: tf.Tensor4D): tf.Tensor4D {
    if (hiddenStates.shape[3] !== this.channels) {
      throw new Error(`Downsample2D expects ${this.channels} channels, got input of shape [${hiddenStates.shape}] (NHWC)`);
    }
    return this.conv ? this.conv.forward(hiddenStates) : tf.avgPool(hiddenStates, 2, 2, "valid");
  }
}
