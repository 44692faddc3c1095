// The UNet's stages (diffusers models/unets/unet_2d_blocks.py). A down block runs its ResNets (each
// optionally followed by an attention) and a downsampler, handing every intermediate output to the up path
// as a skip; an up block concatenates one skip per ResNet on the channel axis, then upsamples.
// getDownBlock / getUpBlock build a block from its config name; later models register more block types
// (CrossAttnDownBlock2D, DownEncoderBlock2D, ...) with registerDownBlock / registerUpBlock.
import * as tf from "@tensorflow/tfjs";
import { Module, ModuleList } from "../nn/module.js";
import { ResnetBlock2D, type TimeEmbeddingNorm } from "./resnet.js";
import { Attention } from "./attention-processor.js";
import { Downsample2D } from "./downsampling.js";
import { Upsample2D } from "./upsampling.js";

/** What blocks may receive besides the hidden states (cross-attention models add their context here). */
export interface BlockContext {
  temb: tf.Tensor2D | null;
  encoderHiddenStates?: tf.Tensor3D | null;
}

export interface DownBlock extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  /** Returns the block output and its skips (one per ResNet, plus the downsampled output). */
  forward(hiddenStates: tf.Tensor4D, ctx: BlockContext): { hiddenStates: tf.Tensor4D; outputStates: tf.Tensor4D[] };
}

export interface UpBlock extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  /** `resHiddenStates` holds exactly resnets.length skips; the last one is used first. */
  forward(hiddenStates: tf.Tensor4D, resHiddenStates: tf.Tensor4D[], ctx: BlockContext, upsampleSize?: [number, number]): tf.Tensor4D;
}

/** get_down_block's arguments (diffusers names in camelCase). */
export interface DownBlockArgs {
  numLayers: number;
  inChannels: number;
  outChannels: number;
  tembChannels: number | null;
  addDownsample: boolean;
  resnetEps: number;
  resnetActFn: string;
  resnetGroups: number;
  resnetTimeScaleShift: TimeEmbeddingNorm;
  downsamplePadding: number;
  downsampleType?: string | null;
  attentionHeadDim?: number | null;
  numAttentionHeads?: number | null;
  dropout?: number;
  // Cross-attention blocks (UNet2DConditionModel) read these.
  crossAttentionDim?: number | null;
  transformerLayersPerBlock?: number;
  useLinearProjection?: boolean;
  onlyCrossAttention?: boolean;
  upcastAttention?: boolean;
}

export interface UpBlockArgs extends Omit<DownBlockArgs, "addDownsample" | "downsamplePadding" | "downsampleType"> {
  prevOutputChannel: number;
  addUpsample: boolean;
  upsampleType?: string | null;
  resolutionIdx?: number;
}

function resnet(a: { resnetEps: number; resnetActFn: string; resnetGroups: number; resnetTimeScaleShift: TimeEmbeddingNorm; tembChannels: number | null }, inChannels: number, outChannels: number, extra: { up?: boolean; down?: boolean } = {}): ResnetBlock2D {
  return new ResnetBlock2D({
    inChannels,
    outChannels,
    tembChannels: a.tembChannels,
    eps: a.resnetEps,
    groups: a.resnetGroups,
    timeEmbeddingNorm: a.resnetTimeScaleShift,
    nonLinearity: a.resnetActFn,
    ...extra,
  });
}

/** The deprecated-style spatial self-attention of AttnDown/AttnUp/mid blocks: group norm, residual, bias. */
function spatialAttention(channels: number, headDim: number, eps: number, groups: number | null): Attention {
  return new Attention(channels, {
    heads: Math.floor(channels / headDim),
    dimHead: headDim,
    eps,
    normNumGroups: groups,
    residualConnection: true,
    bias: true,
    upcastSoftmax: true,
  });
}

// ---- down blocks -------------------------------------------------------------------------------------

/** ResNets, then a stride-2 conv. */
export class DownBlock2D extends Module implements DownBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly downsamplers: ModuleList<Downsample2D> | null;

  constructor(a: DownBlockArgs) {
    super();
    const list: ResnetBlock2D[] = [];
    for (let i = 0; i < a.numLayers; i++) list.push(resnet(a, i === 0 ? a.inChannels : a.outChannels, a.outChannels));
    this.resnets = this.addModule("resnets", new ModuleList(list));
    this.downsamplers = this.addModule(
      "downsamplers",
      a.addDownsample ? new ModuleList([new Downsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels, padding: a.downsamplePadding })]) : null,
    );
  }

  forward(hiddenStates: tf.Tensor4D, ctx: BlockContext) {
    return tf.tidy(() => {
      const outputStates: tf.Tensor4D[] = [];
      let h = hiddenStates;
      for (const r of this.resnets.items) {
        h = r.forward(h, ctx.temb);
        outputStates.push(h);
      }
      if (this.downsamplers) {
        for (const d of this.downsamplers.items) h = d.forward(h);
        outputStates.push(h);
      }
      return { hiddenStates: h, outputStates };
    });
  }
}

/** ResNet + self-attention pairs, then a downsampler ("conv", or "resnet": a ResNet with down=True). */
export class AttnDownBlock2D extends Module implements DownBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Attention>;
  readonly downsamplers: ModuleList<Downsample2D | ResnetBlock2D> | null;

  constructor(a: DownBlockArgs) {
    super();
    const headDim = a.attentionHeadDim ?? a.outChannels;
    const res: ResnetBlock2D[] = [];
    const att: Attention[] = [];
    for (let i = 0; i < a.numLayers; i++) {
      res.push(resnet(a, i === 0 ? a.inChannels : a.outChannels, a.outChannels));
      att.push(spatialAttention(a.outChannels, headDim, a.resnetEps, a.resnetGroups));
    }
    this.resnets = this.addModule("resnets", new ModuleList(res));
    this.attentions = this.addModule("attentions", new ModuleList(att));
    // get_down_block: no downsampler on the last block, else downsample_type or "conv"
    const type = a.addDownsample ? (a.downsampleType ?? "conv") : null;
    let down: Downsample2D | ResnetBlock2D | null = null;
    if (type === "conv") down = new Downsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels, padding: a.downsamplePadding });
    else if (type === "resnet") down = resnet(a, a.outChannels, a.outChannels, { down: true });
    else if (type !== null) throw new Error(`AttnDownBlock2D: unknown downsample_type "${type}"; supported: "conv", "resnet"`);
    this.downsamplers = this.addModule("downsamplers", down ? new ModuleList([down]) : null);
  }

  forward(hiddenStates: tf.Tensor4D, ctx: BlockContext) {
    return tf.tidy(() => {
      const outputStates: tf.Tensor4D[] = [];
      let h = hiddenStates;
      this.resnets.items.forEach((r, i) => {
        h = this.attentions.items[i].forward(r.forward(h, ctx.temb));
        outputStates.push(h);
      });
      if (this.downsamplers) {
        for (const d of this.downsamplers.items) h = d instanceof ResnetBlock2D ? d.forward(h, ctx.temb) : d.forward(h);
        outputStates.push(h);
      }
      return { hiddenStates: h, outputStates };
    });
  }
}

// ---- mid block ---------------------------------------------------------------------------------------

/** resnet, then (attention, resnet) x num_layers, all at the lowest resolution. */
export class UNetMidBlock2D extends Module {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Attention | null>;

  constructor(a: {
    inChannels: number;
    tembChannels: number | null;
    numLayers?: number;
    resnetEps?: number;
    resnetTimeScaleShift?: TimeEmbeddingNorm | "spatial";
    resnetActFn?: string;
    resnetGroups?: number | null;
    attnGroups?: number | null;
    addAttention?: boolean;
    attentionHeadDim?: number | null;
    outputScaleFactor?: number;
  }) {
    super();
    const shift = a.resnetTimeScaleShift ?? "default";
    if (shift === "spatial") throw new Error('UNetMidBlock2D: resnet_time_scale_shift "spatial" (ResnetBlockCondNorm2D) is not supported yet');
    const groups = a.resnetGroups ?? Math.min(Math.floor(a.inChannels / 4), 32);
    const attnGroups = a.attnGroups ?? (shift === "default" ? groups : null);
    const eps = a.resnetEps ?? 1e-6;
    const headDim = a.attentionHeadDim ?? a.inChannels;
    const make = () =>
      new ResnetBlock2D({
        inChannels: a.inChannels,
        outChannels: a.inChannels,
        tembChannels: a.tembChannels,
        eps,
        groups,
        timeEmbeddingNorm: shift,
        nonLinearity: a.resnetActFn ?? "swish",
        outputScaleFactor: a.outputScaleFactor ?? 1,
      });
    const res = [make()];
    const att: (Attention | null)[] = [];
    for (let i = 0; i < (a.numLayers ?? 1); i++) {
      att.push(
        (a.addAttention ?? true)
          ? new Attention(a.inChannels, {
              heads: Math.floor(a.inChannels / headDim),
              dimHead: headDim,
              rescaleOutputFactor: a.outputScaleFactor ?? 1,
              eps,
              normNumGroups: attnGroups,
              residualConnection: true,
              bias: true,
              upcastSoftmax: true,
            })
          : null,
      );
      res.push(make());
    }
    this.attentions = this.addModule("attentions", new ModuleList(att));
    this.resnets = this.addModule("resnets", new ModuleList(res));
  }

  forward(hiddenStates: tf.Tensor4D, temb: tf.Tensor2D | null): tf.Tensor4D {
    return tf.tidy(() => {
      let h = this.resnets.items[0].forward(hiddenStates, temb);
      this.attentions.items.forEach((attn, i) => {
        if (attn) h = attn.forward(h);
        h = this.resnets.items[i + 1].forward(h, temb);
      });
      return h;
    });
  }
}

// ---- up blocks ---------------------------------------------------------------------------------------

/** ResNet i sees cat([h, skip]): prev_output_channel (i = 0) or out_channels, plus the skip's channels. */
function upResnetChannels(a: UpBlockArgs, i: number): number {
  const resSkip = i === a.numLayers - 1 ? a.inChannels : a.outChannels;
  const resnetIn = i === 0 ? a.prevOutputChannel : a.outChannels;
  return resnetIn + resSkip;
}

/** ResNets on [h, skip] concatenations, then nearest x2 + conv. */
export class UpBlock2D extends Module implements UpBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly upsamplers: ModuleList<Upsample2D> | null;

  constructor(a: UpBlockArgs) {
    super();
    const list: ResnetBlock2D[] = [];
    for (let i = 0; i < a.numLayers; i++) list.push(resnet(a, upResnetChannels(a, i), a.outChannels));
    this.resnets = this.addModule("resnets", new ModuleList(list));
    this.upsamplers = this.addModule(
      "upsamplers",
      a.addUpsample ? new ModuleList([new Upsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels })]) : null,
    );
  }

  forward(hiddenStates: tf.Tensor4D, resHiddenStates: tf.Tensor4D[], ctx: BlockContext, upsampleSize?: [number, number]): tf.Tensor4D {
    return tf.tidy(() => {
      const skips = [...resHiddenStates];
      let h = hiddenStates;
      for (const r of this.resnets.items) h = r.forward(tf.concat([h, skips.pop()!], 3), ctx.temb);
      if (this.upsamplers) for (const u of this.upsamplers.items) h = u.forward(h, upsampleSize);
      return h;
    });
  }
}

/** (ResNet on [h, skip], self-attention) pairs, then an upsampler ("conv", or "resnet": a ResNet with up=True). */
export class AttnUpBlock2D extends Module implements UpBlock {
  readonly resnets: ModuleList<ResnetBlock2D>;
  readonly attentions: ModuleList<Attention>;
  readonly upsamplers: ModuleList<Upsample2D | ResnetBlock2D> | null;

  constructor(a: UpBlockArgs) {
    super();
    const headDim = a.attentionHeadDim ?? a.outChannels;
    const res: ResnetBlock2D[] = [];
    const att: Attention[] = [];
    for (let i = 0; i < a.numLayers; i++) {
      res.push(resnet(a, upResnetChannels(a, i), a.outChannels));
      att.push(spatialAttention(a.outChannels, headDim, a.resnetEps, a.resnetGroups));
    }
    this.resnets = this.addModule("resnets", new ModuleList(res));
    this.attentions = this.addModule("attentions", new ModuleList(att));
    const type = a.addUpsample ? (a.upsampleType ?? "conv") : null;
    let up: Upsample2D | ResnetBlock2D | null = null;
    if (type === "conv") up = new Upsample2D(a.outChannels, { useConv: true, outChannels: a.outChannels });
    else if (type === "resnet") up = resnet(a, a.outChannels, a.outChannels, { up: true });
    else if (type !== null) throw new Error(`AttnUpBlock2D: unknown upsample_type "${type}"; supported: "conv", "resnet"`);
    this.upsamplers = this.addModule("upsamplers", up ? new ModuleList([up]) : null);
  }

  forward(hiddenStates: tf.Tensor4D, resHiddenStates: tf.Tensor4D[], ctx: BlockContext): tf.Tensor4D {
    return tf.tidy(() => {
      const skips = [...resHiddenStates];
      let h = hiddenStates;
      this.resnets.items.forEach((r, i) => {
        h = this.attentions.items[i].forward(r.forward(tf.concat([h, skips.pop()!], 3), ctx.temb));
      });
      if (this.upsamplers) for (const u of this.upsamplers.items) h = u instanceof ResnetBlock2D ? u.forward(h, ctx.temb) : u.forward(h);
      return h;
    });
  }
}

// ---- factories ---------------------------------------------------------------------------------------

const DOWN_BLOCKS = new Map<string, (a: DownBlockArgs) => DownBlock>([
  ["DownBlock2D", (a) => new DownBlock2D(a)],
  ["AttnDownBlock2D", (a) => new AttnDownBlock2D(a)],
]);

const UP_BLOCKS = new Map<string, (a: UpBlockArgs) => UpBlock>([
  ["UpBlock2D", (a) => new UpBlock2D(a)],
  ["AttnUpBlock2D", (a) => new AttnUpBlock2D(a)],
]);

/** Adds a down block type to getDownBlock (for models ported later). */
export function registerDownBlock(name: string, make: (a: DownBlockArgs) => DownBlock): void {
  DOWN_BLOCKS.set(name, make);
}

/** Adds an up block type to getUpBlock. */
export function registerUpBlock(name: string, make: (a: UpBlockArgs) => UpBlock): void {
  UP_BLOCKS.set(name, make);
}

function build<A>(kind: string, registry: Map<string, (a: A) => unknown>, type: string, args: A) {
  // diffusers accepts the old "UNetRes" prefix ("UNetResDownBlock2D" = "DownBlock2D")
  const name = type.startsWith("UNetRes") ? type.slice(7) : type;
  const make = registry.get(name);
  if (!make) {
    throw new Error(`Unsupported ${kind} block type "${type}"; supported: ${[...registry.keys()].map((k) => `"${k}"`).join(", ")}`);
  }
  return make(args);
}

/** diffusers' get_down_block. */
export function getDownBlock(type: string, args: DownBlockArgs): DownBlock {
  return build("down", DOWN_BLOCKS, type, args) as DownBlock;
}

/** diffusers' get_up_block. */
export function getUpBlock(type: string, args: UpBlockArgs): UpBlock {
  return build("up", UP_BLOCKS, type, args) as UpBlock;
}
