// The cross-attention stages of Stable Diffusion's UNet (diffusers models/unets/unet_2d_blocks.py):
// each ResNet is followed by a Transformer2DModel whose blocks attend to the text encoder states.
//   CrossAttnDownBlock2D:     (ResNet, Transformer2D) x n, then a stride-2 conv; every output is a skip
//   UNetMidBlock2DCrossAttn:  ResNet, then (Transformer2D, ResNet) x n
//   CrossAttnUpBlock2D:       (ResNet on cat([h, skip]), Transformer2D) x n, then nearest x2 + conv
// Importing this module registers the down / up blocks with getDownBlock / getUpBlock.
import * as tf from "@tensorflow/tfjs";
import { Module, ModuleList } from "../nn/module.js";
import { ResnetBlock2D, type TimeEmbeddingNorm } from "./resnet.js";
import { Downsample2D } from "./downsampling.js";
import { Upsample2D } from "./upsampling.js";
import { Transformer2DModel } from "./transformer-2d.js";
import {
  registerDownBlock,
  registerUpBlock,
  type BlockContext,
  type DownBlock,
  type DownBlockArgs,
  type UpBlock,
  type UpBlockArgs,
} from "./unet-2d-blocks.js";

/** What cross-attention blocks read besides temb and encoderHiddenStates (other blocks ignore it). */
export interface CrossAttnBlockContext extends BlockContext {
  /** Self-attention bias [B, 1, L] (diffusers converts the [B, L] mask once in the UNet). */
  attentionMask?: tf.Tensor3D | null;
  /** Cross-attention bias [B, 1, Lk]. */
  encoderAttentionMask?: tf.Tensor3D | null;
  /** cross_attention_kwargs, handed to every Attention (scale: the LoRA scale). */
  crossAttentionKwargs?: { scale?: number } | null;
}

interface ResnetArgs {
  tembChannels: number | null;
  resnetEps: number;
  resnetActFn: string;
  resnetGroups: number;
  resnetTimeScaleShift: TimeEmbeddingNorm;
}

function resnet(a: ResnetArgs, inChannels: number, outChannels: number, outputScaleFactor = 1): ResnetBlock2D {
  return new ResnetBlock2D({
    inChannels,
    outChannels,
    tembChannels: a.tembChannels,
    eps: a.resnetEps,
    groups: a.resnetGroups,
    timeEmbeddingNorm: a.resnetTimeScaleShift,
    nonLinearity: a.resnetActFn,
    outputScaleFactor,
  });
}

interface TransformerArgs {
  numAttentionHeads?: number | null;
  crossAttentionDim?: number | null;
  transformerLayersPerBlock?: number;
  useLinearProjection?: boolean;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
  resnetGroups: number;
}

/** Transformer2DModel(heads, channels // heads, in_channels=channels, ...) as the blocks build it. */
function transformer(a: TransformerArgs, channels: number, onlyCrossAttention = a.onlyCrossAttention ?? false): Transformer2DModel {
  const heads = a.numAttentionHeads ?? 1;
  return new Transformer2DModel({
    num_attention_heads: heads,
    attention_head_dim: Math.floor(channels / heads),
    in_channels: channels,
    num_layers: a.transformerLayersPerBlock ?? 1,
    cross_attention_dim: a.crossAttentionDim ?? null,
    norm_num_groups: a.resnetGroups,
    use_linear_projection: a.useLinearProjection ?? false,
    only_cross_attention: onlyCrossAttention,
    upcast_attention: a.upcastAttention ?? false,
  });
}

function transformerOptions(ctx: CrossAttnBlockContext) {
  return {
    encoderHiddenStates: ctx.encoderHiddenStates ?? null,
    attentionMask: ctx.attentionMask ?? null,
    encoderAttentionMask: ctx.encoderAttentionMask ?? null,
    crossAttentionKwargs: ctx.crossAttentionKwargs ?? null,
  };
}

function requireCrossAttentionDim(block: string, dim: number | null | undefined): void {
  if (dim === null || dim === undefined) throw new Error(`cross_attention_dim must be specified for ${block}`);
}

export class CrossAttnDownBlock2D extends Module implements DownBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Transformer2DModel>;
  readonly downsamplers: ModuleList<Downsample2D> | null;
  readonly hasCrossAttention = true;

  constructor(a: DownBlockArgs) {
    super();
    requireCrossAttentionDim("CrossAttnDownBlock2D", a.crossAttentionDim);
    const res: ResnetBlock2D[] = [];
    const att: Transformer2DModel[] = [];
    for (let i = 0; i < a.numLayers; i++) {
      res.push(resnet(a, i === 0 ? a.inChannels : a.outChannels, a.outChannels));
      att.push(transformer(a, a.outChannels));
    }
    this.resnets = this.addModule("resnets", new ModuleList(res));
    this.attentions = this.addModule("attentions", new ModuleList(att));
    this.downsamplers = this.addModule(
      "downsamplers",
      a.addDownsample ? new ModuleList([new Downsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels, padding: a.downsamplePadding })]) : null,
    );
  }

  forward(hiddenStates: tf.Tensor4D, ctx: CrossAttnBlockContext) {
    return tf.tidy(() => {
      const opts = transformerOptions(ctx);
      const outputStates: tf.Tensor4D[] = [];
      let h = hiddenStates;
      this.resnets.items.forEach((r, i) => {
        const x = h;
        h = tf.tidy(() => this.attentions.items[i].forward(r.forward(x, ctx.temb), opts)); // frees the ResNet output
        outputStates.push(h);
      });
      if (this.downsamplers) {
        for (const d of this.downsamplers.items) h = d.forward(h);
        outputStates.push(h);
      }
      return { hiddenStates: h, outputStates };
    });
  }
}

export class CrossAttnUpBlock2D extends Module implements UpBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Transformer2DModel>;
  readonly upsamplers: ModuleList<Upsample2D> | null;
  readonly hasCrossAttention = true;
  readonly resolutionIdx: number | null;

  constructor(a: UpBlockArgs) {
    super();
    requireCrossAttentionDim("CrossAttnUpBlock2D", a.crossAttentionDim);
    const res: ResnetBlock2D[] = [];
    const att: Transformer2DModel[] = [];
    for (let i = 0; i < a.numLayers; i++) {
      // ResNet i sees cat([h, skip]): h has prev_output_channel (i = 0) or out_channels; the last skip has in_channels
      const resSkip = i === a.numLayers - 1 ? a.inChannels : a.outChannels;
      const resnetIn = i === 0 ? a.prevOutputChannel : a.outChannels;
      res.push(resnet(a, resnetIn + resSkip, a.outChannels));
      att.push(transformer(a, a.outChannels));
    }
    this.resnets = this.addModule("resnets", new ModuleList(res));
    this.attentions = this.addModule("attentions", new ModuleList(att));
    this.upsamplers = this.addModule(
      "upsamplers",
      a.addUpsample ? new ModuleList([new Upsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels })]) : null,
    );
    this.resolutionIdx = a.resolutionIdx ?? null;
  }

  forward(hiddenStates: tf.Tensor4D, resHiddenStates: tf.Tensor4D[], ctx: CrossAttnBlockContext, upsampleSize?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      const opts = transformerOptions(ctx);
      const skips = [...resHiddenStates];
      let h = hiddenStates;
      this.resnets.items.forEach((r, i) => {
        const x = h;
        const skip = skips.pop()!;
        h = tf.tidy(() => this.attentions.items[i].forward(r.forward(tf.concat([x, skip], 3), ctx.temb), opts));
        if (x !== hiddenStates) x.dispose(); // keep only the running state (skips belong to the caller)
      });
      if (this.upsamplers) for (const u of this.upsamplers.items) h = u.forward(h, upsampleSize);
      return h;
    });
  }
}

export interface UNetMidBlock2DCrossAttnArgs {
  inChannels: number;
  tembChannels: number | null;
  numLayers?: number;
  transformerLayersPerBlock?: number;
  resnetEps?: number;
  resnetTimeScaleShift?: TimeEmbeddingNorm;
  resnetActFn?: string;
  /** null: min(in_channels / 4, 32). */
  resnetGroups?: number | null;
  numAttentionHeads?: number;
  outputScaleFactor?: number;
  crossAttentionDim?: number;
  useLinearProjection?: boolean;
  upcastAttention?: boolean;
}

export class UNetMidBlock2DCrossAttn extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Transformer2DModel>;
  readonly hasCrossAttention = true;

  constructor(a: UNetMidBlock2DCrossAttnArgs) {
    super();
    const groups = a.resnetGroups ?? Math.min(Math.floor(a.inChannels / 4), 32);
    const r: ResnetArgs = {
      tembChannels: a.tembChannels,
      resnetEps: a.resnetEps ?? 1e-6,
      resnetActFn: a.resnetActFn ?? "swish",
      resnetGroups: groups,
      resnetTimeScaleShift: a.resnetTimeScaleShift ?? "default",
    };
    const t: TransformerArgs = {
      numAttentionHeads: a.numAttentionHeads ?? 1,
      crossAttentionDim: a.crossAttentionDim ?? 1280,
      transformerLayersPerBlock: a.transformerLayersPerBlock ?? 1,
      useLinearProjection: a.useLinearProjection,
      upcastAttention: a.upcastAttention,
      resnetGroups: groups,
    };
    const scale = a.outputScaleFactor ?? 1;
    const res = [resnet(r, a.inChannels, a.inChannels, scale)];
    const att: Transformer2DModel[] = [];
    for (let i = 0; i < (a.numLayers ?? 1); i++) {
      att.push(transformer(t, a.inChannels, false)); // the mid block never passes only_cross_attention
      res.push(resnet(r, a.inChannels, a.inChannels, scale));
    }
    this.attentions = this.addModule("attentions", new ModuleList(att));
    this.resnets = this.addModule("resnets", new ModuleList(res));
  }

  forward(hiddenStates: tf.Tensor4D, ctx: CrossAttnBlockContext): tf.Tensor4D {
    return tf.tidy(() => {
      const opts = transformerOptions(ctx);
      let h = this.resnets.items[0].forward(hiddenStates, ctx.temb);
      this.attentions.items.forEach((attn, i) => {
        const x = h;
        h = tf.tidy(() => this.resnets.items[i + 1].forward(attn.forward(x, opts), ctx.temb));
        x.dispose();
      });
      return h;
    });
  }
}

registerDownBlock("CrossAttnDownBlock2D", (a) => new CrossAttnDownBlock2D(a));
registerUpBlock("CrossAttnUpBlock2D", (a) => new CrossAttnUpBlock2D(a));
