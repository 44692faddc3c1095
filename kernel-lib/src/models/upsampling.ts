// Upsample2D (diffusers models/upsampling.py): nearest-neighbour x2 (each pixel copied to a 2x2 block),
// optionally followed by a 3x3 conv.
import * as tf from "@tensorflow/tfjs";
import { Module } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";

export class Upsample2D extends Module {
  readonly conv: Conv2d | null;
  readonly outChannels: number;

  constructor(
    readonly channels: number,
    opts: { useConv?: boolean; useConvTranspose?: boolean; outChannels?: number; kernelSize?: number; padding?: number; bias?: boolean } = {},
  ) {
    super();
    const { useConv = false, kernelSize = 3, padding = 1, bias = true } = opts;
    if (opts.useConvTranspose) throw new Error("Upsample2D: use_conv_transpose is not supported yet");
    this.outChannels = opts.outChannels ?? channels;
    this.conv = useConv ? this.addModule("conv", new Conv2d(channels, this.outChannels, kernelSize, { padding, bias })) : null;
  }

  /** `outputSize` [H, W] replaces the x2 factor (UNet2DConditionModel passes it for odd sizes). */
  forward(hiddenStates: tf.Tensor4D, outputSize?: [number, number]): tf.Tensor4D {
    const [, h, w, c] = hiddenStates.shape;
    if (c !== this.channels) {
      throw new Error(`Upsample2D expects ${this.channels} channels, got input of shape [${hiddenStates.shape}] (NHWC)`);
    }
    return tf.tidy(() => {
      // torch "nearest": source index floor(i * in / out), which is what tfjs computes without align_corners / half-pixel centers
      const up = tf.image.resizeNearestNeighbor(hiddenStates, outputSize ?? [2 * h, 2 * w], false, false);
      return this.conv ? this.conv.forward(up) : up;
    });
  }
}
