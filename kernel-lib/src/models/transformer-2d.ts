// Transformer2DModel (diffusers models/transformers/transformer_2d.py), continuous input: the spatial
// transformer that Stable Diffusion's UNet puts after its ResNets (Rombach et al. 2022, fig. 3):
//   x = proj_in(GroupNorm(h))          eps 1e-6 whatever norm_eps says; 1x1 conv, or Linear (SD 2.x)
//   x = BasicTransformerBlock^n(x)     over the H*W pixels as tokens, cross-attending to the text
//   out = proj_out(x) + h
// Works on NHWC: the pixels of [B, H, W, C] are already the tokens [B, H*W, C] after a reshape.
import * as tf from "@tensorflow/tfjs";
import { ConfigError, type Config, type ConfigSpec } from "../io/config.js";
import { ModelMixin } from "./modeling-utils.js";
import { ModuleList } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { GroupNorm } from "../nn/normalization.js";
import { Linear } from "../nn/linear.js";
import { BasicTransformerBlock, type TransformerBlockInputs } from "./attention.js";

export interface Transformer2DConfig extends Config {
  num_attention_heads: number;
  attention_head_dim: number;
  in_channels: number | null;
  out_channels: number | null;
  num_layers: number;
  dropout: number;
  norm_num_groups: number;
  cross_attention_dim: number | null;
  attention_bias: boolean;
  sample_size: number | null;
  num_vector_embeds: number | null;
  patch_size: number | null;
  activation_fn: string;
  num_embeds_ada_norm: number | null;
  use_linear_projection: boolean;
  only_cross_attention: boolean;
  double_self_attention: boolean;
  upcast_attention: boolean;
  norm_type: string;
  norm_elementwise_affine: boolean;
  norm_eps: number;
  attention_type: string;
  caption_channels: number | null;
  interpolation_scale: number | null;
}

/** diffusers' mask convention: a [B, Lk] keep-mask (1 keep, 0 drop) becomes a bias [B, 1, Lk] = (1 - m) * -10000; a rank-3 tensor is already a bias. */
export function attentionMaskToBias(mask: tf.Tensor | null | undefined): tf.Tensor3D | null {
  if (mask === null || mask === undefined) return null;
  if (mask.rank === 3) return mask as tf.Tensor3D;
  if (mask.rank !== 2) throw new Error(`attention mask must be [batch, key_tokens] (1 keep, 0 discard) or a bias [batch, 1, key_tokens], got shape [${mask.shape}]`);
  return tf.tidy(() => tf.expandDims(tf.mul(tf.sub(1, tf.cast(mask, "float32")), -10000), 1) as tf.Tensor3D);
}

export interface Transformer2DForwardOptions {
  /** [B, Lk, cross_attention_dim]; without it attn2 attends to the image itself. */
  encoderHiddenStates?: tf.Tensor3D | null;
  /** Self-attention mask [B, H*W] (1 keep, 0 drop) or bias [B, 1, H*W]. */
  attentionMask?: tf.Tensor | null;
  /** Cross-attention mask [B, Lk] (1 keep, 0 drop) or bias [B, 1, Lk]. */
  encoderAttentionMask?: tf.Tensor | null;
  /** Handed to every Attention; scale is the LoRA scale. */
  crossAttentionKwargs?: { scale?: number } | null;
}

export class Transformer2DModel extends ModelMixin {
  static readonly className = "Transformer2DModel";

  /** The defaults of diffusers' Transformer2DModel.__init__ (v0.27.2). */
  static readonly configSpec: ConfigSpec = {
    defaults: {
      num_attention_heads: 16,
      attention_head_dim: 88,
      in_channels: null,
      out_channels: null,
      num_layers: 1,
      dropout: 0.0,
      norm_num_groups: 32,
      cross_attention_dim: null,
      attention_bias: false,
      sample_size: null,
      num_vector_embeds: null,
      patch_size: null,
      activation_fn: "geglu",
      num_embeds_ada_norm: null,
      use_linear_projection: false,
      only_cross_attention: false,
      double_self_attention: false,
      upcast_attention: false,
      norm_type: "layer_norm",
      norm_elementwise_affine: true,
      norm_eps: 1e-5,
      attention_type: "default",
      caption_channels: null,
      interpolation_scale: null,
    },
    types: {
      in_channels: "integer|null",
      out_channels: "integer|null",
      cross_attention_dim: "integer|null",
      sample_size: "integer|null",
      num_vector_embeds: "integer|null",
      patch_size: "integer|null",
      num_embeds_ada_norm: "integer|null",
      caption_channels: "integer|null",
      interpolation_scale: "number|null",
    },
  };

  readonly norm: GroupNorm;
  declare readonly config: Readonly<Transformer2DConfig>;
  readonly proj_in: Conv2d | Linear;
  readonly transformer_blocks: ModuleList<BasicTransformerBlock>;
  readonly proj_out: Conv2d | Linear;
  readonly inChannels: number;
  readonly innerDim: number;

  constructor(config: Record<string, unknown> = {}) {
    super(Transformer2DModel.className, Transformer2DModel.configSpec, config);
    const c = this.config as unknown as Transformer2DConfig;
    const name = Transformer2DModel.className;
    if (c.num_vector_embeds !== null) throw new ConfigError(`${name}: discrete inputs (num_vector_embeds) are not supported; only continuous inputs (in_channels)`);
    if (c.patch_size !== null) throw new ConfigError(`${name}: patched inputs (patch_size, DiT / PixArt) are not supported; only continuous inputs (in_channels)`);
    if (c.in_channels === null) throw new ConfigError(`${name}: in_channels is required (continuous inputs)`);
    if (c.num_embeds_ada_norm !== null || c.norm_type !== "layer_norm") {
      throw new ConfigError(`${name}: norm_type "${c.norm_type}"${c.num_embeds_ada_norm !== null ? " with num_embeds_ada_norm" : ""} is not supported; supported: "layer_norm"`);
    }
    if (c.caption_channels !== null) throw new ConfigError(`${name}: caption_channels (PixArt caption projection) is not supported`);
    const inner = c.num_attention_heads * c.attention_head_dim;
    this.inChannels = c.in_channels;
    this.innerDim = inner;

    // the GroupNorm eps is fixed at 1e-6 in diffusers (norm_eps is for the LayerNorms)
    this.norm = this.addModule("norm", new GroupNorm(c.norm_num_groups, c.in_channels, 1e-6));
    this.proj_in = this.addModule("proj_in", c.use_linear_projection ? new Linear(c.in_channels, inner) : new Conv2d(c.in_channels, inner, 1));
    const blocks: BasicTransformerBlock[] = [];
    for (let i = 0; i < c.num_layers; i++) {
      blocks.push(
        new BasicTransformerBlock({
          dim: inner,
          numAttentionHeads: c.num_attention_heads,
          attentionHeadDim: c.attention_head_dim,
          crossAttentionDim: c.cross_attention_dim,
          activationFn: c.activation_fn,
          attentionBias: c.attention_bias,
          onlyCrossAttention: c.only_cross_attention,
          doubleSelfAttention: c.double_self_attention,
          upcastAttention: c.upcast_attention,
          normType: c.norm_type,
          normElementwiseAffine: c.norm_elementwise_affine,
          normEps: c.norm_eps,
          attentionType: c.attention_type,
        }),
      );
    }
    this.transformer_blocks = this.addModule("transformer_blocks", new ModuleList(blocks));
    // diffusers projects back to in_channels (its TODO: out_channels is ignored for continuous inputs)
    this.proj_out = this.addModule("proj_out", c.use_linear_projection ? new Linear(inner, c.in_channels) : new Conv2d(inner, c.in_channels, 1));
  }

  /** hiddenStates NHWC [B, H, W, in_channels] -> same shape. */
  forward(hiddenStates: tf.Tensor4D, opts: Transformer2DForwardOptions = {}): tf.Tensor4D {
    const [batch, height, width, channels] = hiddenStates.shape;
    if (channels !== this.inChannels) {
      throw new Error(`Transformer2DModel expects ${this.inChannels} channels, got input of shape [${hiddenStates.shape}] (NHWC)`);
    }
    const ehs = opts.encoderHiddenStates ?? null;
    const crossDim = (this.config as unknown as Transformer2DConfig).cross_attention_dim;
    if (ehs && crossDim !== null) {
      if (ehs.rank !== 3 || ehs.shape[2] !== crossDim) {
        throw new Error(`Transformer2DModel: encoder_hidden_states must be [batch, tokens, ${crossDim}] (cross_attention_dim ${crossDim}), got [${ehs.shape}]`);
      }
      if (ehs.shape[0] !== batch) throw new Error(`Transformer2DModel: encoder_hidden_states has batch ${ehs.shape[0]} but the sample has batch ${batch}`);
    }
    return tf.tidy(() => {
      const inputs: TransformerBlockInputs = {
        encoderHiddenStates: ehs,
        attentionMask: attentionMaskToBias(opts.attentionMask),
        encoderAttentionMask: attentionMaskToBias(opts.encoderAttentionMask),
        crossAttentionKwargs: opts.crossAttentionKwargs,
      };
      // 1. input: NHWC pixels are the tokens (no permute needed)
      let x = tf.tidy(() => {
        const normed = this.norm.forward(hiddenStates);
        if (this.proj_in instanceof Conv2d) return tf.reshape(this.proj_in.forward(normed), [batch, height * width, this.innerDim]) as tf.Tensor3D;
        return this.proj_in.forward(tf.reshape(normed, [batch, height * width, channels]) as tf.Tensor3D);
      });
      // 2. blocks (each intermediate freed once the next block has it)
      for (const block of this.transformer_blocks.items) {
        const prev = x;
        x = block.forward(prev, inputs);
        prev.dispose();
      }
      // 3. output + residual
      let out: tf.Tensor4D;
      if (this.proj_out instanceof Conv2d) out = this.proj_out.forward(tf.reshape(x, [batch, height, width, this.innerDim]));
      else out = tf.reshape(this.proj_out.forward(x), [batch, height, width, channels]);
      return tf.add(out, hiddenStates);
    });
  }
}
