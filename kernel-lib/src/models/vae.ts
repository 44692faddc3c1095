// The two halves of Stable Diffusion's VAE and its posterior (diffusers models/autoencoders/vae.py), plus the
// plain ResNet blocks they are built from (DownEncoderBlock2D / UpDecoderBlock2D of unet_2d_blocks.py, added
// to getDownBlock / getUpBlock when this file is loaded). Kingma & Welling 2014; Rombach et al. 2022 §3.
//   Encoder: conv_in -> down blocks (ResNets, stride-2 conv; no skips) -> mid (resnet, attention, resnet)
//            -> GroupNorm -> SiLU -> conv_out to 2 * latent channels (mean, log-variance)
//   Decoder: conv_in -> mid -> up blocks (ResNets, nearest x2 + conv) -> GroupNorm -> SiLU -> conv_out
// No time embedding anywhere (the ResNets run with temb = null). Tensors are NHWC.
import * as tf from "@tensorflow/tfjs";
import { Module, ModuleList } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { GroupNorm } from "../nn/normalization.js";
import { getActivation, silu, type Activation } from "../nn/activations.js";
import { ResnetBlock2D } from "./resnet.js";
import { Downsample2D } from "./downsampling.js";
import { Upsample2D } from "./upsampling.js";
import {
  UNetMidBlock2D,
  getDownBlock,
  getUpBlock,
  registerDownBlock,
  registerUpBlock,
  type BlockContext,
  type DownBlock,
  type DownBlockArgs,
  type UpBlock,
  type UpBlockArgs,
} from "./unet-2d-blocks.js";
import { randnTensor, type Generator } from "../random/generator.js";

/** Debug hook: copies of module outputs (NHWC) under diffusers' module paths; the caller disposes them. */
export type Intermediates = Record<string, tf.Tensor>;

function keeper(intermediates: Intermediates | undefined, prefix: string) {
  return (name: string, t: tf.Tensor) => {
    if (intermediates) intermediates[prefix + name] = tf.keep(t.clone());
  };
}

function vaeResnet(a: { resnetEps: number; resnetActFn: string; resnetGroups: number; tembChannels: number | null }, inChannels: number, outChannels: number) {
  return new ResnetBlock2D({ inChannels, outChannels, tembChannels: a.tembChannels, eps: a.resnetEps, groups: a.resnetGroups, nonLinearity: a.resnetActFn });
}

function checkShift(block: string, shift: string): void {
  if (shift !== "default") throw new Error(`${block}: resnet_time_scale_shift "${shift}" is not supported (only "default"; "spatial" needs ResnetBlockCondNorm2D)`);
}

// ---- blocks ------------------------------------------------------------------------------------------

/** ResNets without time embedding, then a stride-2 conv. Returns no skips (diffusers returns the hidden states only). */
export class DownEncoderBlock2D extends Module implements DownBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly downsamplers: ModuleList<Downsample2D> | null;

  constructor(a: DownBlockArgs) {
    super();
    checkShift("DownEncoderBlock2D", a.resnetTimeScaleShift);
    const list: ResnetBlock2D[] = [];
    for (let i = 0; i < a.numLayers; i++) list.push(vaeResnet({ ...a, tembChannels: null }, i === 0 ? a.inChannels : a.outChannels, a.outChannels));
    this.resnets = this.addModule("resnets", new ModuleList(list));
    this.downsamplers = this.addModule(
      "downsamplers",
      a.addDownsample ? new ModuleList([new Downsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels, padding: a.downsamplePadding })]) : null,
    );
  }

  forward(hiddenStates: tf.Tensor4D, _ctx?: BlockContext): { hiddenStates: tf.Tensor4D; outputStates: tf.Tensor4D[] } {
    return tf.tidy(() => {
      let h = hiddenStates;
      for (const r of this.resnets.items) h = r.forward(h, null);
      if (this.downsamplers) for (const d of this.downsamplers.items) h = d.forward(h);
      return { hiddenStates: h, outputStates: [] };
    });
  }
}

/** ResNets without skips (the first maps in_channels -> out_channels), then nearest x2 + conv. */
export class UpDecoderBlock2D extends Module implements UpBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly upsamplers: ModuleList<Upsample2D> | null;

  constructor(a: UpBlockArgs) {
    super();
    checkShift("UpDecoderBlock2D", a.resnetTimeScaleShift);
    const list: ResnetBlock2D[] = [];
    for (let i = 0; i < a.numLayers; i++) list.push(vaeResnet(a, i === 0 ? a.inChannels : a.outChannels, a.outChannels));
    this.resnets = this.addModule("resnets", new ModuleList(list));
    this.upsamplers = this.addModule(
      "upsamplers",
      a.addUpsample ? new ModuleList([new Upsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels })]) : null,
    );
  }

  /** `resHiddenStates` is ignored (no skips in a decoder); the ResNets get ctx.temb (null in the VAE). */
  forward(hiddenStates: tf.Tensor4D, _resHiddenStates: tf.Tensor4D[] = [], ctx: BlockContext = { temb: null }): tf.Tensor4D {
    return tf.tidy(() => {
      let h = hiddenStates;
      for (const r of this.resnets.items) h = r.forward(h, ctx.temb);
      if (this.upsamplers) for (const u of this.upsamplers.items) h = u.forward(h);
      return h;
    });
  }
}

registerDownBlock("DownEncoderBlock2D", (a) => new DownEncoderBlock2D(a));
registerUpBlock("UpDecoderBlock2D", (a) => new UpDecoderBlock2D(a));

// ---- encoder / decoder -------------------------------------------------------------------------------

export interface EncoderOptions {
  inChannels?: number;
  /** Latent channels; conv_out gives twice as many when doubleZ. */
  outChannels?: number;
  downBlockTypes?: string[];
  blockOutChannels?: number[];
  layersPerBlock?: number;
  normNumGroups?: number;
  actFn?: string;
  doubleZ?: boolean;
  midBlockAddAttention?: boolean;
}

export class Encoder extends Module {
  readonly conv_in: Conv2d;
  readonly down_blocks: ModuleList<DownBlock>;
  readonly mid_block: UNetMidBlock2D;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  readonly inChannels: number;
  private readonly act: Activation = silu; // conv_act is nn.SiLU whatever act_fn says

  constructor(o: EncoderOptions = {}) {
    super();
    const { inChannels = 3, outChannels = 3, downBlockTypes = ["DownEncoderBlock2D"], blockOutChannels = [64] } = o;
    const { layersPerBlock = 2, normNumGroups = 32, actFn = "silu", doubleZ = true, midBlockAddAttention = true } = o;
    if (downBlockTypes.length !== blockOutChannels.length) {
      throw new Error(`Encoder: down_block_types (${downBlockTypes.length}) and block_out_channels (${blockOutChannels.length}) must have the same length`);
    }
    getActivation(actFn); // rejects an unknown act_fn early
    this.inChannels = inChannels;
    const last = blockOutChannels[blockOutChannels.length - 1];
    this.conv_in = this.addModule("conv_in", new Conv2d(inChannels, blockOutChannels[0], 3, { padding: 1 }));

    const down: DownBlock[] = [];
    let outputChannel = blockOutChannels[0];
    downBlockTypes.forEach((type, i) => {
      const inputChannel = outputChannel;
      outputChannel = blockOutChannels[i];
      down.push(
        getDownBlock(type, {
          numLayers: layersPerBlock,
          inChannels: inputChannel,
          outChannels: outputChannel,
          addDownsample: i !== blockOutChannels.length - 1,
          resnetEps: 1e-6,
          downsamplePadding: 0, // pad (0, 1, 0, 1), then a stride-2 3x3 conv: H -> floor(H / 2)
          resnetActFn: actFn,
          resnetGroups: normNumGroups,
          resnetTimeScaleShift: "default",
          attentionHeadDim: outputChannel,
          tembChannels: null,
        }),
      );
    });
    this.down_blocks = this.addModule("down_blocks", new ModuleList(down));

    this.mid_block = this.addModule(
      "mid_block",
      new UNetMidBlock2D({
        inChannels: last,
        tembChannels: null,
        resnetEps: 1e-6,
        resnetActFn: actFn,
        outputScaleFactor: 1,
        resnetTimeScaleShift: "default",
        attentionHeadDim: last, // one head over the H*W tokens
        resnetGroups: normNumGroups,
        addAttention: midBlockAddAttention,
      }),
    );
    this.conv_norm_out = this.addModule("conv_norm_out", new GroupNorm(normNumGroups, last, 1e-6));
    this.conv_out = this.addModule("conv_out", new Conv2d(last, doubleZ ? 2 * outChannels : outChannels, 3, { padding: 1 }));
  }

  /** sample [B, H, W, in_channels] -> [B, H / 2^(blocks-1), W / 2^(blocks-1), (2 x) latent channels] (sizes floored). */
  forward(sample: tf.Tensor4D, intermediates?: Intermediates, prefix = "encoder."): tf.Tensor4D {
    const keep = keeper(intermediates, prefix);
    return tf.tidy(() => {
      let h = this.conv_in.forward(sample);
      keep("conv_in", h);
      this.down_blocks.items.forEach((block, i) => {
        h = block.forward(h, { temb: null }).hiddenStates;
        keep(`down_blocks.${i}`, h);
      });
      h = this.mid_block.forward(h, null);
      keep("mid_block", h);
      h = this.conv_norm_out.forward(h);
      keep("conv_norm_out", h);
      h = this.conv_out.forward(this.act(h) as tf.Tensor4D);
      keep("conv_out", h);
      return h;
    });
  }
}

export interface DecoderOptions {
  /** Latent channels. */
  inChannels?: number;
  outChannels?: number;
  upBlockTypes?: string[];
  blockOutChannels?: number[];
  layersPerBlock?: number;
  normNumGroups?: number;
  actFn?: string;
  /** "group" only ("spatial" is the MoVQ decoder's SpatialNorm). */
  normType?: string;
  midBlockAddAttention?: boolean;
}

export class Decoder extends Module {
  readonly conv_in: Conv2d;
  readonly mid_block: UNetMidBlock2D;
  readonly up_blocks: ModuleList<UpBlock>;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  readonly inChannels: number;
  private readonly act: Activation = silu;

  constructor(o: DecoderOptions = {}) {
    super();
    const { inChannels = 3, outChannels = 3, upBlockTypes = ["UpDecoderBlock2D"], blockOutChannels = [64] } = o;
    const { layersPerBlock = 2, normNumGroups = 32, actFn = "silu", normType = "group", midBlockAddAttention = true } = o;
    if (normType !== "group") throw new Error(`Decoder: norm_type "${normType}" is not supported (only "group")`);
    if (upBlockTypes.length !== blockOutChannels.length) {
      throw new Error(`Decoder: up_block_types (${upBlockTypes.length}) and block_out_channels (${blockOutChannels.length}) must have the same length`);
    }
    getActivation(actFn);
    this.inChannels = inChannels;
    const last = blockOutChannels[blockOutChannels.length - 1];
    this.conv_in = this.addModule("conv_in", new Conv2d(inChannels, last, 3, { padding: 1 }));
    const mid = new UNetMidBlock2D({
      inChannels: last,
      tembChannels: null,
      resnetEps: 1e-6,
      resnetActFn: actFn,
      outputScaleFactor: 1,
      resnetTimeScaleShift: "default",
      attentionHeadDim: last,
      resnetGroups: normNumGroups,
      addAttention: midBlockAddAttention,
    });

    const reversed = [...blockOutChannels].reverse();
    const up: UpBlock[] = [];
    let outputChannel = reversed[0];
    upBlockTypes.forEach((type, i) => {
      const prevOutputChannel = outputChannel;
      outputChannel = reversed[i];
      up.push(
        getUpBlock(type, {
          numLayers: layersPerBlock + 1,
          inChannels: prevOutputChannel,
          outChannels: outputChannel,
          prevOutputChannel, // diffusers passes None; decoder blocks read in_channels only
          addUpsample: i !== blockOutChannels.length - 1,
          resnetEps: 1e-6,
          resnetActFn: actFn,
          resnetGroups: normNumGroups,
          attentionHeadDim: outputChannel,
          tembChannels: null,
          resnetTimeScaleShift: "default",
        }),
      );
    });
    // torch registers up_blocks before mid_block (mid_block is first set to None): that is the state_dict order
    this.up_blocks = this.addModule("up_blocks", new ModuleList(up));
    this.mid_block = this.addModule("mid_block", mid);
    this.conv_norm_out = this.addModule("conv_norm_out", new GroupNorm(normNumGroups, blockOutChannels[0], 1e-6));
    this.conv_out = this.addModule("conv_out", new Conv2d(blockOutChannels[0], outChannels, 3, { padding: 1 }));
  }

  /** z [B, h, w, latent channels] -> [B, h * 2^(blocks-1), w * 2^(blocks-1), out_channels]. */
  forward(z: tf.Tensor4D, intermediates?: Intermediates, prefix = "decoder."): tf.Tensor4D {
    const keep = keeper(intermediates, prefix);
    return tf.tidy(() => {
      let h = this.conv_in.forward(z);
      keep("conv_in", h);
      h = this.mid_block.forward(h, null);
      keep("mid_block", h);
      this.up_blocks.items.forEach((block, i) => {
        h = block.forward(h, [], { temb: null });
        keep(`up_blocks.${i}`, h);
      });
      h = this.conv_norm_out.forward(h);
      keep("conv_norm_out", h);
      h = this.conv_out.forward(this.act(h) as tf.Tensor4D);
      keep("conv_out", h);
      return h;
    });
  }
}

// ---- posterior ---------------------------------------------------------------------------------------

/**
 * The encoder's diagonal Gaussian q(z | x) = N(mean, diag(var)), from the moments [B, h, w, 2C] (channels
 * 0..C-1 the mean, C..2C-1 the log-variance, as torch.chunk(parameters, 2, dim=1)):
 *   logvar = clamp(logvar, -30, 20),  std = exp(0.5 logvar),  var = exp(logvar)
 * `deterministic`: std = var = 0, so sample() = mean. Owns mean, logvar, std, var (NHWC); dispose() frees them.
 * The moments tensor is not kept (diffusers' `parameters`).
 */
export class DiagonalGaussianDistribution {
  readonly mean: tf.Tensor4D;
  readonly logvar: tf.Tensor4D;
  readonly std: tf.Tensor4D;
  readonly var: tf.Tensor4D;

  constructor(parameters: tf.Tensor4D, readonly deterministic = false) {
    const c = parameters.shape[3];
    if (c % 2 !== 0) throw new Error(`DiagonalGaussianDistribution: parameters need an even channel count (mean, logvar), got [${parameters.shape}] (NHWC)`);
    const [mean, logvar, std, variance] = tf.tidy(() => {
      const [m, lv] = tf.split(parameters, 2, 3) as tf.Tensor4D[];
      const l = tf.clipByValue(lv, -30, 20) as tf.Tensor4D;
      if (deterministic) return [m, l, tf.zerosLike(m), tf.zerosLike(m)] as tf.Tensor4D[];
      return [m, l, tf.exp(tf.mul(l, 0.5)), tf.exp(l)] as tf.Tensor4D[];
    });
    this.mean = mean;
    this.logvar = logvar;
    this.std = std;
    this.var = variance;
  }

  /**
   * mean + std * eps, eps = randn_tensor of the mean's NCHW shape [B, C, h, w] (diffusers draws in NCHW), transposed
   * to NHWC, so a seeded Generator gives torch's numbers. A list of generators draws one batch item from each.
   */
  sample(generator?: Generator | Generator[]): tf.Tensor4D {
    const [b, h, w, c] = this.mean.shape;
    return tf.tidy(() => {
      const eps = tf.transpose(randnTensor([b, c, h, w], { generator }) as tf.Tensor4D, [0, 2, 3, 1]);
      return tf.add(this.mean, tf.mul(this.std, eps)) as tf.Tensor4D;
    });
  }

  /** The mean (a new handle the caller disposes). */
  mode(): tf.Tensor4D {
    return this.mean.clone();
  }

  /**
   * KL divergence per batch item [B]: to N(0, I), 0.5 * sum(mean^2 + var - 1 - logvar); to another diagonal
   * Gaussian, 0.5 * sum((mean - m2)^2 / var2 + var / var2 - 1 - logvar + logvar2). Zero [1] when deterministic.
   */
  kl(other?: DiagonalGaussianDistribution): tf.Tensor1D {
    return tf.tidy(() => {
      if (this.deterministic) return tf.zeros([1]) as tf.Tensor1D;
      const terms = other
        ? tf.add(tf.sub(tf.sub(tf.add(tf.div(tf.square(tf.sub(this.mean, other.mean)), other.var), tf.div(this.var, other.var)), 1), this.logvar), other.logvar)
        : tf.sub(tf.sub(tf.add(tf.square(this.mean), this.var), 1), this.logvar);
      return tf.mul(tf.sum(terms, [1, 2, 3]), 0.5) as tf.Tensor1D;
    });
  }

  /** Negative log-likelihood per batch item [B]: 0.5 * sum(log 2pi + logvar + (sample - mean)^2 / var). */
  nll(sample: tf.Tensor4D): tf.Tensor1D {
    return tf.tidy(() => {
      if (this.deterministic) return tf.zeros([1]) as tf.Tensor1D;
      const terms = tf.add(tf.add(tf.div(tf.square(tf.sub(sample, this.mean)), this.var), this.logvar), Math.log(2 * Math.PI));
      return tf.mul(tf.sum(terms, [1, 2, 3]), 0.5) as tf.Tensor1D;
    });
  }

  dispose(): void {
    tf.dispose([this.mean, this.logvar, this.std, this.var]);
  }
}
