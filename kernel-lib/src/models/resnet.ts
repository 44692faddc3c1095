// ResnetBlock2D (diffusers models/resnet.py), the workhorse of every UNet and VAE:
//   h = conv1(act(norm1(x)))
//   h = h + time_emb_proj(act(temb))                       time_embedding_norm "default"
//   h = act(norm2(h))            or  act(norm2(h) * (1 + scale) + shift)   "scale_shift" (scale, shift = chunk(proj(temb), 2))
//   out = (shortcut(x) + conv2(h)) / output_scale_factor   shortcut = 1x1 conv when the channels change
// Dropout sits before conv2 in diffusers; it is the identity at inference, so it is not modelled here.
import * as tf from "@tensorflow/tfjs";
import { Module } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { GroupNorm } from "../nn/normalization.js";
import { Linear } from "../nn/linear.js";
import { getActivation, type Activation } from "../nn/activations.js";
import { Upsample2D } from "./upsampling.js";
import { Downsample2D } from "./downsampling.js";

export type TimeEmbeddingNorm = "default" | "scale_shift";

export interface ResnetBlock2DOptions {
  inChannels: number;
  outChannels?: number;
  /** null: no time embedding (the VAE). */
  tembChannels?: number | null;
  groups?: number;
  groupsOut?: number;
  eps?: number;
  nonLinearity?: string;
  skipTimeAct?: boolean;
  timeEmbeddingNorm?: TimeEmbeddingNorm;
  outputScaleFactor?: number;
  useInShortcut?: boolean;
  /** Nearest x2 before conv1 (on both paths). */
  up?: boolean;
  /** 2x2 average pool before conv1 (on both paths). */
  down?: boolean;
  convShortcutBias?: boolean;
  conv2dOutChannels?: number;
}

export class ResnetBlock2D extends Module {
  readonly norm1: GroupNorm;
  readonly conv1: Conv2d;
  readonly time_emb_proj: Linear | null;
  readonly norm2: GroupNorm;
  readonly conv2: Conv2d;
  readonly conv_shortcut: Conv2d | null;
  readonly inChannels: number;
  readonly outChannels: number;
  private readonly act: Activation;
  private readonly upsample: Upsample2D | null;
  private readonly downsample: Downsample2D | null;
  private readonly timeEmbeddingNorm: TimeEmbeddingNorm;
  private readonly outputScaleFactor: number;
  private readonly skipTimeAct: boolean;

  constructor(o: ResnetBlock2DOptions) {
    super();
    const timeEmbeddingNorm = o.timeEmbeddingNorm ?? "default";
    if (timeEmbeddingNorm !== "default" && timeEmbeddingNorm !== "scale_shift") {
      throw new Error(`ResnetBlock2D: unknown time_embedding_norm "${timeEmbeddingNorm}"; supported: "default", "scale_shift" ("ada_group" and "spatial" need ResnetBlockCondNorm2D)`);
    }
    const inC = o.inChannels;
    const outC = o.outChannels ?? inC;
    const groups = o.groups ?? 32;
    const eps = o.eps ?? 1e-6;
    const tembChannels = o.tembChannels === undefined ? 512 : o.tembChannels;
    const conv2dOut = o.conv2dOutChannels ?? outC;
    this.inChannels = inC;
    this.outChannels = conv2dOut;
    this.timeEmbeddingNorm = timeEmbeddingNorm;
    this.outputScaleFactor = o.outputScaleFactor ?? 1;
    this.skipTimeAct = o.skipTimeAct ?? false;

    this.norm1 = this.addModule("norm1", new GroupNorm(groups, inC, eps));
    this.conv1 = this.addModule("conv1", new Conv2d(inC, outC, 3, { padding: 1 }));
    this.time_emb_proj = this.addModule(
      "time_emb_proj",
      tembChannels === null ? null : new Linear(tembChannels, timeEmbeddingNorm === "scale_shift" ? 2 * outC : outC),
    );
    this.norm2 = this.addModule("norm2", new GroupNorm(o.groupsOut ?? groups, outC, eps));
    this.conv2 = this.addModule("conv2", new Conv2d(outC, conv2dOut, 3, { padding: 1 }));
    this.act = getActivation(o.nonLinearity ?? "swish");
    this.upsample = o.up ? new Upsample2D(inC, { useConv: false }) : null;
    this.downsample = !o.up && o.down ? new Downsample2D(inC, { useConv: false }) : null;
    const useInShortcut = o.useInShortcut ?? inC !== conv2dOut;
    this.conv_shortcut = this.addModule(
      "conv_shortcut",
      useInShortcut ? new Conv2d(inC, conv2dOut, 1, { bias: o.convShortcutBias ?? true }) : null,
    );
  }

  forward(inputTensor: tf.Tensor4D, temb: tf.Tensor2D | null): tf.Tensor4D {
    return tf.tidy(() => {
      let x = inputTensor;
      let h = this.act(this.norm1.forward(x)) as tf.Tensor4D;
      if (this.upsample) {
        x = this.upsample.forward(x);
        h = this.upsample.forward(h);
      } else if (this.downsample) {
        x = this.downsample.forward(x);
        h = this.downsample.forward(h);
      }
      h = this.conv1.forward(h);

      let t: tf.Tensor4D | null = null;
      if (this.time_emb_proj && temb) {
        const proj = this.time_emb_proj.forward(this.skipTimeAct ? temb : (this.act(temb) as tf.Tensor2D));
        t = tf.reshape(proj, [proj.shape[0], 1, 1, proj.shape[1]]); // temb[:, :, None, None] in NHWC
      }
      if (this.timeEmbeddingNorm === "default") {
        if (t) h = tf.add(h, t);
        h = this.norm2.forward(h);
      } else {
        if (!t) throw new Error('ResnetBlock2D: temb is required when time_embedding_norm is "scale_shift"');
        const [scale, shift] = tf.split(t, 2, 3);
        h = tf.add(tf.mul(this.norm2.forward(h), tf.add(scale, 1)), shift);
      }
      h = this.act(h) as tf.Tensor4D;
      h = this.conv2.forward(h);

      if (this.conv_shortcut) x = this.conv_shortcut.forward(x);
      const out = tf.add(x, h) as tf.Tensor4D;
      return this.outputScaleFactor === 1 ? out : tf.div(out, this.outputScaleFactor);
    });
  }
}
