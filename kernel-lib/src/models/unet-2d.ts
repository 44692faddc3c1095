// UNet2DModel (diffusers models/unets/unet_2d.py): the unconditional DDPM noise predictor
// (Ho et al. 2020; google/ddpm-cat-256). Given a noisy image x_t and the timestep t it predicts the noise:
//   temb = time_embedding(sinusoid(t))                       one vector per image, fed to every ResNet
//   h = conv_in(x);  skips = [h]
//   down blocks: ResNets (+ attention) then halve H, W      every output is kept as a skip
//   mid block:   resnet, attention, resnet
//   up blocks:   ResNets on cat([h, skip]) (+ attention) then double H, W
//   out = conv_out(silu(conv_norm_out(h)))
// Tensors are NHWC: sample [batch, height, width, channels].
import * as tf from "@tensorflow/tfjs";
import { ConfigError, oneOf, type Config, type ConfigSpec } from "../io/config.js";
import { ModelMixin } from "./modeling-utils.js";
import { ModuleList } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { Embedding } from "../nn/embedding.js";
import { GroupNorm } from "../nn/normalization.js";
import { silu } from "../nn/activations.js";
import { TimestepEmbedding, Timesteps } from "./embeddings.js";
import { getDownBlock, getUpBlock, UNetMidBlock2D, type DownBlock, type UpBlock } from "./unet-2d-blocks.js";
import type { TimeEmbeddingNorm } from "./resnet.js";

/** UNet2DModel's config.json (diffusers' `__init__` arguments, snake_case); `unet.config` has this type, frozen. */
export interface UNet2DConfig extends Config {
  /**
   * The picture side the model was trained at (a number in every diffusers config.json this kit loads). diffusers'
   * default is null, and UNet2DModel also takes [height, width]: such a config loads and keeps its value as on disk.
   */
  sample_size: number;
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  time_embedding_type: string;
  freq_shift: number;
  flip_sin_to_cos: boolean;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  mid_block_scale_factor: number;
  downsample_padding: number;
  downsample_type: string;
  upsample_type: string;
  dropout: number;
  act_fn: string;
  attention_head_dim: number | null;
  norm_num_groups: number | null;
  attn_norm_num_groups: number | null;
  norm_eps: number;
  resnet_time_scale_shift: string;
  add_attention: boolean;
  class_embed_type: string | null;
  num_class_embeds: number | null;
  num_train_timesteps: number | null;
}

/** Timesteps as UNet2DModel.forward accepts them. */
export type TimestepInput = number | number[] | Float32Array | Int32Array | tf.Tensor;

export interface UNet2DForwardOptions {
  /** Class labels (class_embed_type / num_class_embeds models): one per batch item. */
  classLabels?: tf.Tensor | number[];
  /**
   * Debug hook: filled with a copy of each top-level module's output (NHWC), named as diffusers' modules
   * ("time_proj", "time_embedding", "conv_in", "down_blocks.0", ..., "mid_block", "up_blocks.0", ...,
   * "conv_norm_out", "conv_out"). The caller disposes them.
   */
  intermediates?: Record<string, tf.Tensor>;
}

/**
 * The timesteps of a call, one per batch item, as diffusers 0.27 reads them: a JS number is a Python number,
 * which UNet2DModel turns into a long tensor (500.5 -> 500, truncated toward zero as torch.tensor(x, dtype=long));
 * a tensor keeps its values (a float 0-dim tensor stays 500.5); arrays are 1-D tensors. One value is broadcast
 * to the batch.
 */
export function timestepsForBatch(timestep: TimestepInput, batch: number): Float32Array {
  let values: ArrayLike<number>;
  if (typeof timestep === "number") {
    if (!Number.isFinite(timestep)) throw new Error(`UNet2DModel: timestep ${timestep} is not a finite number`);
    values = [Math.trunc(timestep)];
  } else if (timestep instanceof tf.Tensor) {
    if (timestep.rank > 1) throw new Error(`UNet2DModel: timestep tensor must be 0-dim or 1-D, got shape [${timestep.shape}]`);
    values = timestep.dataSync() as Float32Array | Int32Array;
  } else {
    values = timestep;
  }
  if (values.length !== 1 && values.length !== batch) {
    throw new Error(`UNet2DModel: ${values.length} timesteps for a batch of ${batch}: pass one timestep, or one per batch item`);
  }
  return Float32Array.from({ length: batch }, (_, i) => values[values.length === 1 ? 0 : i]);
}

export class UNet2DModel extends ModelMixin {
  static readonly className = "UNet2DModel";

  /** The defaults of diffusers' UNet2DModel.__init__ (v0.27.2). */
  static readonly configSpec: ConfigSpec = {
    defaults: {
      sample_size: null,
      in_channels: 3,
      out_channels: 3,
      center_input_sample: false,
      time_embedding_type: "positional",
      freq_shift: 0,
      flip_sin_to_cos: true,
      down_block_types: ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"],
      up_block_types: ["AttnUpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
      block_out_channels: [224, 448, 672, 896],
      layers_per_block: 2,
      mid_block_scale_factor: 1,
      downsample_padding: 1,
      downsample_type: "conv",
      upsample_type: "conv",
      dropout: 0.0,
      act_fn: "silu",
      attention_head_dim: 8,
      norm_num_groups: 32,
      attn_norm_num_groups: null,
      norm_eps: 1e-5,
      resnet_time_scale_shift: "default",
      add_attention: true,
      class_embed_type: null,
      num_class_embeds: null,
      num_train_timesteps: null,
    },
    types: {
      sample_size: "integer|array|null",
      in_channels: "integer",
      out_channels: "integer",
      layers_per_block: "integer",
      downsample_padding: "integer",
      attention_head_dim: "integer|null",
      norm_num_groups: "integer|null",
      attn_norm_num_groups: "integer|null",
      class_embed_type: "string|null",
      num_class_embeds: "integer|null",
      num_train_timesteps: "integer|null",
    },
  };

  declare readonly config: Readonly<UNet2DConfig>;
  readonly conv_in: Conv2d;
  readonly time_proj: Timesteps;
  readonly time_embedding: TimestepEmbedding;
  readonly class_embedding: Embedding | TimestepEmbedding | "identity" | null;
  readonly down_blocks: ModuleList<DownBlock>;
  readonly mid_block: UNetMidBlock2D;
  readonly up_blocks: ModuleList<UpBlock>;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;

  constructor(config: Record<string, unknown> = {}) {
    super(UNet2DModel.className, UNet2DModel.configSpec, config);
    const c = this.config as unknown as UNet2DConfig;
    const name = UNet2DModel.className;
    const boc = c.block_out_channels;
    const timeEmbedDim = boc[0] * 4;
    if (c.down_block_types.length !== c.up_block_types.length) {
      throw new ConfigError(`${name}: down_block_types (${c.down_block_types.length}) and up_block_types (${c.up_block_types.length}) must have the same length`);
    }
    if (boc.length !== c.down_block_types.length) {
      throw new ConfigError(`${name}: block_out_channels (${boc.length}) must have one entry per down block (${c.down_block_types.length})`);
    }
    const timeEmbeddingType = oneOf(name, this.config, "time_embedding_type", ["positional"] as const);
    const shift = oneOf(name, this.config, "resnet_time_scale_shift", ["default", "scale_shift"] as const) as TimeEmbeddingNorm;
    const groups = c.norm_num_groups;
    if (groups === null) throw new ConfigError(`${name}: norm_num_groups null is not supported (the ResNet blocks need a group count)`);

    this.conv_in = this.addModule("conv_in", new Conv2d(c.in_channels, boc[0], 3, { padding: 1 }));

    // time: sinusoidal features of width C0 -> MLP to 4 * C0
    if (timeEmbeddingType !== "positional") throw new ConfigError(`${name}: unsupported time_embedding_type`);
    this.time_proj = new Timesteps(boc[0], c.flip_sin_to_cos, c.freq_shift);
    const timestepInputDim = boc[0];
    this.time_embedding = this.addModule("time_embedding", new TimestepEmbedding(timestepInputDim, timeEmbedDim));

    // class embedding, summed with the time embedding
    if (c.class_embed_type === null && c.num_class_embeds !== null) {
      this.class_embedding = this.addModule("class_embedding", new Embedding(c.num_class_embeds, timeEmbedDim));
    } else if (c.class_embed_type === "timestep") {
      this.class_embedding = this.addModule("class_embedding", new TimestepEmbedding(timestepInputDim, timeEmbedDim));
    } else if (c.class_embed_type === "identity") {
      this.class_embedding = "identity";
    } else if (c.class_embed_type === null) {
      this.class_embedding = null;
    } else {
      throw new ConfigError(`${name}: unknown class_embed_type "${c.class_embed_type}"; supported: null, "timestep", "identity"`);
    }

    const common = {
      tembChannels: timeEmbedDim,
      resnetEps: c.norm_eps,
      resnetActFn: c.act_fn,
      resnetGroups: groups,
      resnetTimeScaleShift: shift,
      dropout: c.dropout,
    };

    // down
    const down: DownBlock[] = [];
    let outputChannel = boc[0];
    c.down_block_types.forEach((type, i) => {
      const inputChannel = outputChannel;
      outputChannel = boc[i];
      down.push(
        getDownBlock(type, {
          ...common,
          numLayers: c.layers_per_block,
          inChannels: inputChannel,
          outChannels: outputChannel,
          addDownsample: i !== boc.length - 1,
          attentionHeadDim: c.attention_head_dim ?? outputChannel,
          downsamplePadding: c.downsample_padding,
          downsampleType: c.downsample_type,
        }),
      );
    });
    this.down_blocks = this.addModule("down_blocks", new ModuleList(down));

    // mid
    this.mid_block = this.addModule(
      "mid_block",
      new UNetMidBlock2D({
        inChannels: boc[boc.length - 1],
        tembChannels: timeEmbedDim,
        resnetEps: c.norm_eps,
        resnetActFn: c.act_fn,
        outputScaleFactor: c.mid_block_scale_factor,
        resnetTimeScaleShift: shift,
        attentionHeadDim: c.attention_head_dim ?? boc[boc.length - 1],
        resnetGroups: groups,
        attnGroups: c.attn_norm_num_groups,
        addAttention: c.add_attention,
      }),
    );

    // up: block i mirrors down block n-1-i; its last ResNet takes the skip of the next-shallower level
    const reversed = [...boc].reverse();
    const up: UpBlock[] = [];
    outputChannel = reversed[0];
    c.up_block_types.forEach((type, i) => {
      const prevOutputChannel = outputChannel;
      outputChannel = reversed[i];
      const inputChannel = reversed[Math.min(i + 1, boc.length - 1)];
      up.push(
        getUpBlock(type, {
          ...common,
          numLayers: c.layers_per_block + 1,
          inChannels: inputChannel,
          outChannels: outputChannel,
          prevOutputChannel,
          addUpsample: i !== boc.length - 1,
          attentionHeadDim: c.attention_head_dim ?? outputChannel,
          upsampleType: c.upsample_type,
        }),
      );
    });
    this.up_blocks = this.addModule("up_blocks", new ModuleList(up));

    // out
    const groupsOut = groups ?? Math.min(Math.floor(boc[0] / 4), 32);
    this.conv_norm_out = this.addModule("conv_norm_out", new GroupNorm(groupsOut, boc[0], c.norm_eps));
    this.conv_out = this.addModule("conv_out", new Conv2d(boc[0], c.out_channels, 3, { padding: 1 }));
  }

  /**
   * One denoising prediction: sample NHWC [B, H, W, in_channels] (H, W divisible by 2^(blocks-1)), timestep
   * as in `timestepsForBatch`. Returns { sample } of shape [B, H, W, out_channels]; nothing else stays allocated.
   */
  forward(sample: tf.Tensor4D, timestep: TimestepInput, opts: UNet2DForwardOptions = {}): { sample: tf.Tensor4D } {
    const c = this.config as unknown as UNet2DConfig;
    if (sample.rank !== 4 || sample.shape[3] !== c.in_channels) {
      throw new Error(`UNet2DModel: sample must be NHWC [batch, height, width, ${c.in_channels}], got [${sample.shape}]`);
    }
    const batch = sample.shape[0];
    const timesteps = timestepsForBatch(timestep, batch);
    const keep = (name: string, t: tf.Tensor) => {
      if (opts.intermediates) opts.intermediates[name] = tf.keep(t.clone());
    };

    return tf.tidy(() => {
      // 0. center the input: [0, 1] -> [-1, 1]
      let x = c.center_input_sample ? (tf.sub(tf.mul(sample, 2), 1) as tf.Tensor4D) : sample;

      // 1. time (computed once per call, shared by every ResNet)
      const tEmb = this.time_proj.forward(timesteps);
      keep("time_proj", tEmb);
      let emb = this.time_embedding.forward(tEmb);
      keep("time_embedding", emb);
      if (this.class_embedding !== null) emb = tf.add(emb, this.classEmbedding(opts.classLabels, batch));
      else if (opts.classLabels !== undefined) throw new Error("UNet2DModel: classLabels given but this model has no class embedding (class_embed_type / num_class_embeds)");
      const ctx = { temb: emb };

      // 2. pre-process
      x = this.conv_in.forward(x);
      keep("conv_in", x);

      // 3. down: every output is a skip for the up path
      const skips: tf.Tensor4D[] = [x];
      this.down_blocks.items.forEach((block, i) => {
        const out = block.forward(x, ctx);
        x = out.hiddenStates;
        skips.push(...out.outputStates);
        keep(`down_blocks.${i}`, x);
      });

      // 4. mid
      x = this.mid_block.forward(x, emb);
      keep("mid_block", x);

      // 5. up: each block consumes as many skips as it has ResNets, deepest first
      this.up_blocks.items.forEach((block, i) => {
        const n = block.resnets.length;
        x = block.forward(x, skips.splice(skips.length - n, n), ctx);
        keep(`up_blocks.${i}`, x);
      });

      // 6. post-process (conv_act is SiLU whatever act_fn says)
      x = this.conv_norm_out.forward(x);
      keep("conv_norm_out", x);
      x = this.conv_out.forward(silu(x));
      keep("conv_out", x);
      return { sample: x };
    });
  }

  private classEmbedding(labels: tf.Tensor | number[] | undefined, batch: number): tf.Tensor2D {
    if (labels === undefined) throw new Error("UNet2DModel: class_labels should be provided when doing class conditioning");
    const t = labels instanceof tf.Tensor ? labels : tf.tensor1d(labels);
    const ce = this.class_embedding!;
    if (ce === "identity") return t as tf.Tensor2D;
    if (ce instanceof Embedding) return ce.forward(t) as tf.Tensor2D;
    // "timestep": labels go through the same sinusoidal projection, then their own MLP
    return ce.forward(this.time_proj.forward(timestepsForBatch(t, batch)));
  }
}
