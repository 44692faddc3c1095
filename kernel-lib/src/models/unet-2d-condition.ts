// UNet2DConditionModel (diffusers models/unets/unet_2d_condition.py): the text-conditioned noise predictor of
// Stable Diffusion (Rombach et al. 2022, "latent diffusion"). Like UNet2DModel, plus cross-attention:
//   temb = time_embedding(sinusoid(t))                 flip_sin_to_cos true, freq_shift 0 for SD
//   h = conv_in(z);  skips = [h]
//   down: CrossAttnDownBlock2D x3 (ResNet -> Transformer2D attending to the text) + DownBlock2D
//   mid:  ResNet, Transformer2D, ResNet
//   up:   UpBlock2D + CrossAttnUpBlock2D x3 on cat([h, skip])
//   eps = conv_out(act(conv_norm_out(h)))
// Latents are NHWC [batch, height, width, 4]; text states [batch, 77, cross_attention_dim].
import * as tf from "@tensorflow/tfjs";
import { ConfigError, oneOf, type Config, type ConfigSpec } from "../io/config.js";
import { applyLoraScale, ModelMixin } from "./modeling-utils.js";
import { ModuleList } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { GroupNorm } from "../nn/normalization.js";
import { getActivation, type Activation } from "../nn/activations.js";
import { TimestepEmbedding, Timesteps } from "./embeddings.js";
import { getDownBlock, getUpBlock, UNetMidBlock2D, type DownBlock, type UpBlock } from "./unet-2d-blocks.js";
import { UNetMidBlock2DCrossAttn, type CrossAttnBlockContext } from "./unet-2d-blocks-cross-attn.js";
import { attentionMaskToBias } from "./transformer-2d.js";
import type { TimestepInput } from "./unet-2d.js";
import type { TimeEmbeddingNorm } from "./resnet.js";
import { setAttentionSlice, type AttentionSliceSize } from "./attention-slicing.js";

/** UNet2DConditionModel's config.json (diffusers' `__init__` arguments, snake_case); `unet.config` has this type, frozen. */
export interface UNet2DConditionConfig extends Config {
  /**
   * The picture side the model was trained at (a number in every diffusers config.json this kit loads). diffusers'
   * default is null, and this port also takes [height, width]: such a config loads and keeps its value as on disk.
   */
  sample_size: number;
  in_channels: number;
  out_channels: number;
  center_input_sample: boolean;
  flip_sin_to_cos: boolean;
  freq_shift: number;
  down_block_types: string[];
  mid_block_type: string | null;
  up_block_types: string[];
  only_cross_attention: boolean | boolean[];
  block_out_channels: number[];
  layers_per_block: number | number[];
  downsample_padding: number;
  mid_block_scale_factor: number;
  dropout: number;
  act_fn: string;
  norm_num_groups: number | null;
  norm_eps: number;
  cross_attention_dim: number | number[];
  transformer_layers_per_block: number | (number | number[])[];
  reverse_transformer_layers_per_block: (number | number[])[] | null;
  encoder_hid_dim: number | null;
  encoder_hid_dim_type: string | null;
  attention_head_dim: number | (number | null)[] | null;
  num_attention_heads: number | number[] | null;
  dual_cross_attention: boolean;
  use_linear_projection: boolean;
  class_embed_type: string | null;
  addition_embed_type: string | null;
  addition_time_embed_dim: number | null;
  num_class_embeds: number | null;
  upcast_attention: boolean;
  resnet_time_scale_shift: string;
  resnet_skip_time_act: boolean;
  resnet_out_scale_factor: number;
  time_embedding_type: string;
  time_embedding_dim: number | null;
  time_embedding_act_fn: string | null;
  timestep_post_act: string | null;
  time_cond_proj_dim: number | null;
  conv_in_kernel: number;
  conv_out_kernel: number;
  projection_class_embeddings_input_dim: number | null;
  attention_type: string;
  class_embeddings_concat: boolean;
  mid_block_only_cross_attention: boolean | null;
  cross_attention_norm: string | null;
  addition_embed_type_num_heads: number;
}

export interface UNet2DConditionForwardOptions {
  /** Self-attention mask [B, L] (1 keep, 0 drop); SD does not use it. L must be the tokens of every attention (one resolution). */
  attentionMask?: tf.Tensor | null;
  /** Cross-attention mask over the text tokens [B, Lk] (1 keep, 0 drop); SD does not use it. */
  encoderAttentionMask?: tf.Tensor | null;
  /** diffusers' cross_attention_kwargs: `scale` reaches every Attention of the transformer blocks (the LoRA scale). */
  crossAttentionKwargs?: { scale?: number } | null;
  /**
   * Debug hook: filled with a copy of each top-level module's output (NHWC), named as diffusers' modules
   * ("time_proj", "time_embedding", "conv_in", "down_blocks.0", ..., "mid_block", "up_blocks.0", ...,
   * "conv_norm_out", "conv_out"). The caller disposes them.
   */
  intermediates?: Record<string, tf.Tensor>;
}

type MidBlock = UNetMidBlock2DCrossAttn | UNetMidBlock2D;

/**
 * The timesteps of a call, one per batch item, as UNet2DConditionModel.get_time_embed reads them: a JS number
 * is a Python number, kept as it is (a float stays fractional: 500.5); a 0-dim or 1-D tensor or an array gives
 * its values. One value is broadcast to the batch.
 */
export function conditionTimesteps(timestep: TimestepInput, batch: number): Float32Array {
  let values: ArrayLike<number>;
  if (typeof timestep === "number") values = [timestep];
  else if (timestep instanceof tf.Tensor) {
    if (timestep.rank > 1) throw new Error(`UNet2DConditionModel: timestep tensor must be 0-dim or 1-D, got shape [${timestep.shape}]`);
    values = timestep.dataSync() as Float32Array | Int32Array;
  } else values = timestep;
  if (values.length !== 1 && values.length !== batch) {
    throw new Error(`UNet2DConditionModel: ${values.length} timesteps for a batch of ${batch}: pass one timestep, or one per batch item`);
  }
  const out = Float32Array.from({ length: batch }, (_, i) => values[values.length === 1 ? 0 : i]);
  if (!out.every(Number.isFinite)) throw new Error(`UNet2DConditionModel: timestep ${Array.from(values)} is not finite`);
  return out;
}

/** An int-or-list config value as one entry per block (diffusers turns ints into tuples). */
function perBlock<T>(name: string, key: string, value: T | T[], n: number): T[] {
  if (!Array.isArray(value)) return Array.from({ length: n }, () => value);
  if (value.length !== n) throw new ConfigError(`${name}: ${key} has ${value.length} entries, one per down block (${n}) is needed`);
  return value;
}

export class UNet2DConditionModel extends ModelMixin {
  static readonly className = "UNet2DConditionModel";

  /** The defaults of diffusers' UNet2DConditionModel.__init__ (v0.27.2). */
  static readonly configSpec: ConfigSpec = {
    defaults: {
      sample_size: null,
      in_channels: 4,
      out_channels: 4,
      center_input_sample: false,
      flip_sin_to_cos: true,
      freq_shift: 0,
      down_block_types: ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
      mid_block_type: "UNetMidBlock2DCrossAttn",
      up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
      only_cross_attention: false,
      block_out_channels: [320, 640, 1280, 1280],
      layers_per_block: 2,
      downsample_padding: 1,
      mid_block_scale_factor: 1,
      dropout: 0.0,
      act_fn: "silu",
      norm_num_groups: 32,
      norm_eps: 1e-5,
      cross_attention_dim: 1280,
      transformer_layers_per_block: 1,
      reverse_transformer_layers_per_block: null,
      encoder_hid_dim: null,
      encoder_hid_dim_type: null,
      attention_head_dim: 8,
      num_attention_heads: null,
      dual_cross_attention: false,
      use_linear_projection: false,
      class_embed_type: null,
      addition_embed_type: null,
      addition_time_embed_dim: null,
      num_class_embeds: null,
      upcast_attention: false,
      resnet_time_scale_shift: "default",
      resnet_skip_time_act: false,
      resnet_out_scale_factor: 1.0,
      time_embedding_type: "positional",
      time_embedding_dim: null,
      time_embedding_act_fn: null,
      timestep_post_act: null,
      time_cond_proj_dim: null,
      conv_in_kernel: 3,
      conv_out_kernel: 3,
      projection_class_embeddings_input_dim: null,
      attention_type: "default",
      class_embeddings_concat: false,
      mid_block_only_cross_attention: null,
      cross_attention_norm: null,
      addition_embed_type_num_heads: 64,
    },
    types: {
      sample_size: "integer|array|null",
      in_channels: "integer",
      out_channels: "integer",
      freq_shift: "number",
      mid_block_type: "string|null",
      only_cross_attention: "boolean|array",
      layers_per_block: "integer|array",
      downsample_padding: "integer",
      mid_block_scale_factor: "number",
      norm_num_groups: "integer|null",
      cross_attention_dim: "integer|array",
      transformer_layers_per_block: "integer|array",
      reverse_transformer_layers_per_block: "array|null",
      encoder_hid_dim: "integer|null",
      encoder_hid_dim_type: "string|null",
      attention_head_dim: "integer|array|null",
      num_attention_heads: "integer|array|null",
      class_embed_type: "string|null",
      addition_embed_type: "string|null",
      addition_time_embed_dim: "integer|null",
      num_class_embeds: "integer|null",
      resnet_out_scale_factor: "number",
      time_embedding_dim: "integer|null",
      time_embedding_act_fn: "string|null",
      timestep_post_act: "string|null",
      time_cond_proj_dim: "integer|null",
      conv_in_kernel: "integer",
      conv_out_kernel: "integer",
      projection_class_embeddings_input_dim: "integer|null",
      mid_block_only_cross_attention: "boolean|null",
      cross_attention_norm: "string|null",
      addition_embed_type_num_heads: "integer",
    },
  };

  declare readonly config: Readonly<UNet2DConditionConfig>;
  readonly conv_in: Conv2d;
  readonly time_proj: Timesteps;
  readonly time_embedding: TimestepEmbedding;
  readonly down_blocks: ModuleList<DownBlock>;
  readonly mid_block: MidBlock | null;
  readonly up_blocks: ModuleList<UpBlock>;
  readonly conv_norm_out: GroupNorm;
  readonly conv_out: Conv2d;
  /** How many up blocks double the resolution (inputs not divisible by 2^numUpsamplers pass explicit sizes). */
  readonly numUpsamplers: number;
  private readonly timeEmbedAct: Activation | null;
  private readonly convAct: Activation;

  constructor(config: Record<string, unknown> = {}) {
    super(UNet2DConditionModel.className, UNet2DConditionModel.configSpec, config);
    const c = this.config as unknown as UNet2DConditionConfig;
    const name = UNet2DConditionModel.className;
    const boc = c.block_out_channels;
    const n = c.down_block_types.length;

    // 0. what this port supports (SD 1.x / 2.x): every other option names itself
    if (c.num_attention_heads !== null) {
      throw new ConfigError(
        `${name}: num_attention_heads cannot be set (diffusers 0.27 raises too, see diffusers issue 2011): give the number of heads as attention_head_dim, which UNet2DConditionModel reads as the number of heads`,
      );
    }
    const unsupported: [string, boolean][] = [
      ["encoder_hid_dim / encoder_hid_dim_type (Kandinsky / IP-Adapter projections)", c.encoder_hid_dim !== null || c.encoder_hid_dim_type !== null],
      ["addition_embed_type (SDXL / Kandinsky added embeddings)", c.addition_embed_type !== null],
      ["class_embed_type / num_class_embeds (class conditioning)", c.class_embed_type !== null || c.num_class_embeds !== null],
      ["time_cond_proj_dim (LCM guidance embedding)", c.time_cond_proj_dim !== null],
      ["dual_cross_attention", c.dual_cross_attention],
      [`attention_type "${c.attention_type}" (GLIGEN)`, c.attention_type !== "default"],
    ];
    for (const [what, on] of unsupported) if (on) throw new ConfigError(`${name}: ${what} is not supported by this port (SD 1.x / 2.x UNets)`);
    oneOf(name, this.config, "time_embedding_type", ["positional"] as const);
    const shift = oneOf(name, this.config, "resnet_time_scale_shift", ["default", "scale_shift"] as const) as TimeEmbeddingNorm;
    if (c.down_block_types.length !== c.up_block_types.length) {
      throw new ConfigError(`${name}: down_block_types (${c.down_block_types.length}) and up_block_types (${c.up_block_types.length}) must have the same length`);
    }
    if (boc.length !== n) throw new ConfigError(`${name}: block_out_channels (${boc.length}) must have one entry per down block (${n})`);
    const groups = c.norm_num_groups;
    if (groups === null) throw new ConfigError(`${name}: norm_num_groups null is not supported (the ResNet blocks need a group count)`);

    // int-or-list options, one entry per block; attention_head_dim is the number of heads unless num_attention_heads is set
    const heads = perBlock(name, "attention_head_dim", c.attention_head_dim, n);
    const crossDims = perBlock(name, "cross_attention_dim", c.cross_attention_dim, n);
    const layers = perBlock(name, "layers_per_block", c.layers_per_block, n);
    const onlyCross = perBlock(name, "only_cross_attention", c.only_cross_attention, n);
    const tLayers = perBlock(name, "transformer_layers_per_block", c.transformer_layers_per_block, n);
    const flatLayers = (list: (number | number[])[], key: string): number[] =>
      list.map((v) => {
        if (Array.isArray(v)) throw new ConfigError(`${name}: ${key} with one value per layer (asymmetric UNets) is not supported; give one value per block`);
        return v;
      });
    const tLayersDown = flatLayers(tLayers, "transformer_layers_per_block");
    const tLayersUp = c.reverse_transformer_layers_per_block === null
      ? [...tLayersDown].reverse()
      : flatLayers(c.reverse_transformer_layers_per_block, "reverse_transformer_layers_per_block");

    // 1. input
    const padIn = Math.floor((c.conv_in_kernel - 1) / 2);
    this.conv_in = this.addModule("conv_in", new Conv2d(c.in_channels, boc[0], c.conv_in_kernel, { padding: padIn }));

    // 2. time: sinusoidal features of width C0 -> MLP to time_embedding_dim (default 4 * C0)
    const timeEmbedDim = c.time_embedding_dim ?? boc[0] * 4;
    this.time_proj = new Timesteps(boc[0], c.flip_sin_to_cos, c.freq_shift);
    this.time_embedding = this.addModule(
      "time_embedding",
      new TimestepEmbedding(boc[0], timeEmbedDim, { actFn: c.act_fn, postActFn: c.timestep_post_act }),
    );
    this.timeEmbedAct = c.time_embedding_act_fn === null ? null : getActivation(c.time_embedding_act_fn);

    const common = {
      tembChannels: timeEmbedDim,
      resnetEps: c.norm_eps,
      resnetActFn: c.act_fn,
      resnetGroups: groups,
      resnetTimeScaleShift: shift,
      dropout: c.dropout,
      useLinearProjection: c.use_linear_projection,
      upcastAttention: c.upcast_attention,
    };

    // 3. down
    const down: DownBlock[] = [];
    let outputChannel = boc[0];
    c.down_block_types.forEach((type, i) => {
      const inputChannel = outputChannel;
      outputChannel = boc[i];
      down.push(
        getDownBlock(type, {
          ...common,
          numLayers: layers[i],
          transformerLayersPerBlock: tLayersDown[i],
          inChannels: inputChannel,
          outChannels: outputChannel,
          addDownsample: i !== n - 1,
          crossAttentionDim: crossDims[i],
          numAttentionHeads: heads[i],
          downsamplePadding: c.downsample_padding,
          onlyCrossAttention: onlyCross[i],
          attentionHeadDim: heads[i] ?? outputChannel,
        }),
      );
    });
    this.down_blocks = this.addModule("down_blocks", new ModuleList(down));

    // 4. mid
    const last = boc[n - 1];
    const midArgs = {
      inChannels: last,
      tembChannels: timeEmbedDim,
      resnetEps: c.norm_eps,
      resnetActFn: c.act_fn,
      resnetGroups: groups,
      outputScaleFactor: c.mid_block_scale_factor,
      resnetTimeScaleShift: shift,
    };
    let mid: MidBlock | null;
    if (c.mid_block_type === "UNetMidBlock2DCrossAttn") {
      if (heads[n - 1] === null) throw new ConfigError(`${name}: attention_head_dim (the number of heads) is null for the last block`);
      mid = new UNetMidBlock2DCrossAttn({
        ...midArgs,
        transformerLayersPerBlock: tLayersDown[n - 1],
        numAttentionHeads: heads[n - 1]!,
        crossAttentionDim: crossDims[n - 1],
        useLinearProjection: c.use_linear_projection,
        upcastAttention: c.upcast_attention,
      });
    } else if (c.mid_block_type === "UNetMidBlock2D") {
      mid = new UNetMidBlock2D({ ...midArgs, numLayers: 0, addAttention: false });
    } else if (c.mid_block_type === null) {
      mid = null;
    } else {
      throw new ConfigError(`${name}: unknown mid_block_type "${c.mid_block_type}"; supported: "UNetMidBlock2DCrossAttn", "UNetMidBlock2D", null`);
    }
    this.mid_block = this.addModule("mid_block", mid);

    // 5. up: block i mirrors down block n-1-i; per-block lists are reversed (attention_head_dim is not, as in diffusers)
    const rBoc = [...boc].reverse();
    const rHeads = [...heads].reverse();
    const rLayers = [...layers].reverse();
    const rCross = [...crossDims].reverse();
    const rOnlyCross = [...onlyCross].reverse();
    const up: UpBlock[] = [];
    let numUpsamplers = 0;
    outputChannel = rBoc[0];
    c.up_block_types.forEach((type, i) => {
      const isFinal = i === n - 1;
      const prevOutputChannel = outputChannel;
      outputChannel = rBoc[i];
      const inputChannel = rBoc[Math.min(i + 1, n - 1)];
      if (!isFinal) numUpsamplers++;
      up.push(
        getUpBlock(type, {
          ...common,
          numLayers: rLayers[i] + 1,
          transformerLayersPerBlock: tLayersUp[i],
          inChannels: inputChannel,
          outChannels: outputChannel,
          prevOutputChannel,
          addUpsample: !isFinal,
          resolutionIdx: i,
          crossAttentionDim: rCross[i],
          numAttentionHeads: rHeads[i],
          onlyCrossAttention: rOnlyCross[i],
          attentionHeadDim: heads[i] ?? outputChannel,
        }),
      );
    });
    this.up_blocks = this.addModule("up_blocks", new ModuleList(up));
    this.numUpsamplers = numUpsamplers;

    // 6. out
    this.conv_norm_out = this.addModule("conv_norm_out", new GroupNorm(groups, boc[0], c.norm_eps));
    this.convAct = getActivation(c.act_fn);
    const padOut = Math.floor((c.conv_out_kernel - 1) / 2);
    this.conv_out = this.addModule("conv_out", new Conv2d(boc[0], c.out_channels, c.conv_out_kernel, { padding: padOut }));
  }

  /** diffusers' set_attention_slice: "auto" (half the heads), "max" (one), a number, a list per layer, or null. */
  setAttentionSlice(sliceSize: AttentionSliceSize = "auto"): void {
    setAttentionSlice(this, sliceSize);
  }

  /** The text width the cross-attention blocks expect (cross_attention_dim; one value per block if it is a list). */
  get crossAttentionDim(): number | number[] {
    return (this.config as unknown as UNet2DConditionConfig).cross_attention_dim;
  }

  /**
   * One noise prediction: sample NHWC [B, H, W, in_channels], timestep as in `conditionTimesteps`,
   * encoderHiddenStates [B, tokens, cross_attention_dim] (the text encoder's last_hidden_state; under CFG the
   * batch is [uncond, cond]). Returns { sample } of shape [B, H, W, out_channels]; nothing else stays allocated.
   */
  forward(sample: tf.Tensor4D, timestep: TimestepInput, encoderHiddenStates: tf.Tensor3D, opts: UNet2DConditionForwardOptions = {}): { sample: tf.Tensor4D } {
    const c = this.config as unknown as UNet2DConditionConfig;
    const name = UNet2DConditionModel.className;
    if (sample.rank !== 4 || sample.shape[3] !== c.in_channels) {
      throw new Error(`${name}: sample must be NHWC [batch, height, width, ${c.in_channels}], got [${sample.shape}]`);
    }
    const batch = sample.shape[0];
    const crossDim = c.cross_attention_dim;
    if (!encoderHiddenStates || encoderHiddenStates.rank !== 3) {
      throw new Error(`${name}: encoder_hidden_states must be [batch, tokens, ${crossDim}] (the text encoder's last_hidden_state), got ${encoderHiddenStates ? `[${encoderHiddenStates.shape}]` : encoderHiddenStates}`);
    }
    if (typeof crossDim === "number" && encoderHiddenStates.shape[2] !== crossDim) {
      throw new Error(
        `${name}: encoder_hidden_states has last dimension ${encoderHiddenStates.shape[2]} but this UNet expects cross_attention_dim ${crossDim} ` +
          `(shape [${encoderHiddenStates.shape}]): the text encoder's hidden size must equal the UNet's cross_attention_dim (SD 1.x: 768, SD 2.x: 1024)`,
      );
    }
    if (encoderHiddenStates.shape[0] !== batch) {
      throw new Error(`${name}: encoder_hidden_states has batch ${encoderHiddenStates.shape[0]} but the sample has batch ${batch} (under CFG both are [uncond, cond])`);
    }
    const timesteps = conditionTimesteps(timestep, batch);
    const keep = (key: string, t: tf.Tensor) => {
      if (opts.intermediates) opts.intermediates[key] = tf.keep(t.clone());
    };

    // diffusers: scale_lora_layers(self, cross_attention_kwargs["scale"]) for this call (installed by lora/peft-utils.ts)
    return applyLoraScale(this, opts.crossAttentionKwargs?.scale, () => tf.tidy(() => {
      // 0. masks become additive biases once: (1 - mask) * -10000, [B, 1, L]
      const ctx: CrossAttnBlockContext = {
        temb: null,
        encoderHiddenStates,
        attentionMask: attentionMaskToBias(opts.attentionMask),
        encoderAttentionMask: attentionMaskToBias(opts.encoderAttentionMask),
        crossAttentionKwargs: opts.crossAttentionKwargs ?? null,
      };
      // inputs whose size is not a multiple of 2^numUpsamplers get explicit upsample sizes
      const factor = 2 ** this.numUpsamplers;
      const forwardUpsampleSize = sample.shape[1] % factor !== 0 || sample.shape[2] % factor !== 0;

      let x = c.center_input_sample ? (tf.sub(tf.mul(sample, 2), 1) as tf.Tensor4D) : sample;

      // 1. time
      const tEmb = this.time_proj.forward(timesteps);
      keep("time_proj", tEmb);
      let emb = this.time_embedding.forward(tEmb);
      keep("time_embedding", emb);
      if (this.timeEmbedAct) emb = this.timeEmbedAct(emb) as tf.Tensor2D;
      ctx.temb = emb;

      // 2. pre-process
      x = this.conv_in.forward(x);
      keep("conv_in", x);

      // 3. down
      const skips: tf.Tensor4D[] = [x];
      this.down_blocks.items.forEach((block, i) => {
        const out = block.forward(x, ctx);
        x = out.hiddenStates;
        skips.push(...out.outputStates);
        keep(`down_blocks.${i}`, x);
      });

      // 4. mid
      if (this.mid_block instanceof UNetMidBlock2DCrossAttn) x = this.mid_block.forward(x, ctx);
      else if (this.mid_block) x = this.mid_block.forward(x, emb);
      if (this.mid_block) keep("mid_block", x);

      // 5. up: each block consumes as many skips as it has ResNets, deepest first; consumed skips and the
      //    block's input are freed right away (what Python's refcounting does), which lowers the peak
      this.up_blocks.items.forEach((block, i) => {
        const k = block.resnets.length;
        const res = skips.splice(skips.length - k, k);
        const isFinal = i === this.up_blocks.length - 1;
        const size: [number, number] | undefined =
          !isFinal && forwardUpsampleSize ? [skips[skips.length - 1].shape[1], skips[skips.length - 1].shape[2]] : undefined;
        const prev = x;
        x = block.forward(prev, res, ctx, size);
        for (const t of new Set([prev, ...res])) if (t !== sample) t.dispose();
        keep(`up_blocks.${i}`, x);
      });

      // 6. post-process
      x = this.conv_norm_out.forward(x);
      keep("conv_norm_out", x);
      x = this.conv_out.forward(this.convAct(x) as tf.Tensor4D);
      keep("conv_out", x);
      return { sample: x };
    }));
  }
}
