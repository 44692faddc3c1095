// A small CNN that reads a handwritten digit (LeCun et al. 1998's task, MNIST's 28x28 framing): the kit's judge of
// the offline digits model (issue 16) reads generated pictures back with it. Not a diffusers model; written on the
// same nn/ layers, saved and loaded the same way (config.json + safetensors, torch layout).
//   x [N, 28, 28, 1] ink in [0, 1]
//   -> conv 3x3 (16) ReLU -> conv 3x3 stride 2 (32) ReLU -> conv 3x3 stride 2 (32) ReLU   (28 -> 14 -> 7)
//   -> flatten (torch's C, H, W order) -> linear (hidden) ReLU -> linear (10): logits of the digits 0-9
// Strided convolutions instead of pooling: the same shrinking, and every gradient the kit's backends have.
import * as tf from "@tensorflow/tfjs";
import type { Config, ConfigSpec } from "../io/config.js";
import { ModelMixin } from "./modeling-utils.js";
import { Conv2d } from "../nn/conv2d.js";
import { Linear } from "../nn/linear.js";

export interface DigitClassifierConfig extends Config {
  sample_size: number;
  in_channels: number;
  channels: number[];
  hidden_size: number;
  num_classes: number;
}

export class DigitClassifier extends ModelMixin {
  static readonly className = "DigitClassifier";
  static readonly configSpec: ConfigSpec = {
    defaults: { sample_size: 28, in_channels: 1, channels: [16, 32, 32], hidden_size: 64, num_classes: 10 },
    types: { sample_size: "integer", in_channels: "integer", hidden_size: "integer", num_classes: "integer" },
  };

  declare readonly config: Readonly<DigitClassifierConfig>;
  readonly conv1: Conv2d;
  readonly conv2: Conv2d;
  readonly conv3: Conv2d;
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(config: Record<string, unknown> = {}) {
    super(DigitClassifier.className, DigitClassifier.configSpec, config, { diffusersKeys: false });
    const c = this.config;
    if (c.channels.length !== 3) throw new Error(`DigitClassifier: channels must list 3 widths, got [${c.channels}]`);
    if (c.sample_size % 4 !== 0) throw new Error(`DigitClassifier: sample_size ${c.sample_size} must be a multiple of 4 (two stride-2 convolutions)`);
    const [a, b, d] = c.channels;
    this.conv1 = this.addModule("conv1", new Conv2d(c.in_channels, a, 3, { padding: 1 }));
    this.conv2 = this.addModule("conv2", new Conv2d(a, b, 3, { stride: 2, padding: 1 }));
    this.conv3 = this.addModule("conv3", new Conv2d(b, d, 3, { stride: 2, padding: 1 }));
    const side = c.sample_size / 4;
    this.fc1 = this.addModule("fc1", new Linear(d * side * side, c.hidden_size));
    this.fc2 = this.addModule("fc2", new Linear(c.hidden_size, c.num_classes));
  }

  /** Logits [N, num_classes] of x [N, side, side, in_channels] (ink in [0, 1]). */
  forward(x: tf.Tensor4D): tf.Tensor2D {
    const c = this.config;
    if (x.rank !== 4 || x.shape[1] !== c.sample_size || x.shape[2] !== c.sample_size || x.shape[3] !== c.in_channels) {
      throw new Error(`DigitClassifier.forward: x must be [N, ${c.sample_size}, ${c.sample_size}, ${c.in_channels}], got [${x.shape}]`);
    }
    return tf.tidy(() => {
      let h = tf.relu(this.conv1.forward(x));
      h = tf.relu(this.conv2.forward(h));
      h = tf.relu(this.conv3.forward(h));
      // torch's flatten order (C, H, W), so the saved fc1 weight means what it would in torch
      const flat = tf.reshape(tf.transpose(h, [0, 3, 1, 2]), [x.shape[0], -1]) as tf.Tensor2D;
      return this.fc2.forward(tf.relu(this.fc1.forward(flat)) as tf.Tensor2D) as tf.Tensor2D;
    });
  }

  /** The most likely digit of each picture, and its probability. */
  predict(x: tf.Tensor4D): { digits: number[]; confidence: number[] } {
    return tf.tidy(() => {
      const p = tf.softmax(this.forward(x));
      const digits = Array.from(tf.argMax(p, 1).dataSync());
      const confidence = Array.from(tf.max(p, 1).dataSync());
      return { digits, confidence };
    });
  }
}
