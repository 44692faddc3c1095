// Attention (diffusers models/attention_processor.py, with its classic AttnProcessor):
//   x  = group_norm(hidden)                       (when norm_num_groups is set)
//   q = to_q(x), k = to_k(ctx), v = to_v(ctx)     ctx = encoder_hidden_states (cross-attention) or x (self)
//   per head: softmax(q k^T * dim_head^-0.5) v    (Vaswani et al. 2017, eq. 1)
//   out = to_out.0(concat heads)  (+ residual)  / rescale_output_factor
// Images enter as NHWC [B, H, W, C]: its H*W pixels are the tokens, already [B, L, C] after a reshape.
import * as tf from "@tensorflow/tfjs";
import { Module, ModuleList } from "../nn/module.js";
import { Linear } from "../nn/linear.js";
import { GroupNorm } from "../nn/normalization.js";
import { scaledDotProductAttention } from "../nn/scaled-dot-product-attention.js";

export interface AttentionOptions {
  /** Channels of encoder_hidden_states; undefined for self-attention. */
  crossAttentionDim?: number | null;
  heads?: number;
  dimHead?: number;
  /** Bias on to_q / to_k / to_v. */
  bias?: boolean;
  upcastAttention?: boolean;
  upcastSoftmax?: boolean;
  normNumGroups?: number | null;
  outBias?: boolean;
  scaleQk?: boolean;
  eps?: number;
  rescaleOutputFactor?: number;
  residualConnection?: boolean;
  outDim?: number;
}

/** Per-call inputs of Attention.forward (diffusers' attention_mask and cross_attention_kwargs). */
export interface AttentionForwardOptions {
  /** Additive bias on the scores, [B, 1 | Lq, Lk] (0 keep, -10000 drop), as diffusers prepares attention masks. */
  attentionMask?: tf.Tensor3D | null;
  /** cross_attention_kwargs.scale: the LoRA scale. Plain projections have no LoRA layers and ignore it. */
  scale?: number;
}

export class Attention extends Module {
  readonly group_norm: GroupNorm | null;
  readonly to_q: Linear;
  readonly to_k: Linear;
  readonly to_v: Linear;
  readonly to_out: ModuleList<Linear>;
  readonly heads: number;
  readonly scale: number;
  readonly queryDim: number;
  private readonly residualConnection: boolean;
  private readonly rescaleOutputFactor: number;
  /** Attention slicing (models/attention-slicing.ts): (batch, head) pairs computed at once; null = all of them. */
  sliceSize: number | null = null;

  constructor(queryDim: number, o: AttentionOptions = {}) {
    super();
    const heads = o.heads ?? 8;
    const dimHead = o.dimHead ?? 64;
    const innerDim = o.outDim ?? dimHead * heads;
    const crossDim = o.crossAttentionDim ?? queryDim;
    const outDim = o.outDim ?? queryDim;
    this.queryDim = queryDim;
    this.heads = o.outDim !== undefined ? o.outDim / dimHead : heads;
    this.scale = (o.scaleQk ?? true) ? dimHead ** -0.5 : 1;
    this.residualConnection = o.residualConnection ?? false;
    this.rescaleOutputFactor = o.rescaleOutputFactor ?? 1;
    // upcast_attention / upcast_softmax compute in float32: everything here already is.

    const groups = o.normNumGroups ?? null;
    this.group_norm = this.addModule("group_norm", groups === null ? null : new GroupNorm(groups, queryDim, o.eps ?? 1e-5));
    const bias = o.bias ?? false;
    this.to_q = this.addModule("to_q", new Linear(queryDim, innerDim, bias));
    this.to_k = this.addModule("to_k", new Linear(crossDim, innerDim, bias));
    this.to_v = this.addModule("to_v", new Linear(crossDim, innerDim, bias));
    // to_out = [Linear, Dropout]; the dropout (identity at inference) has no weights.
    this.to_out = this.addModule("to_out", new ModuleList([new Linear(innerDim, outDim, o.outBias ?? true)]));
  }

  /** diffusers' sliceable_head_dim: the number of heads. */
  get sliceableHeadDim(): number {
    return this.heads;
  }

  /** diffusers' Attention.set_attention_slice: a SlicedAttnProcessor of `sliceSize` pairs, or null for one pass. */
  setAttentionSlice(sliceSize: number | null): void {
    if (sliceSize !== null && (!Number.isInteger(sliceSize) || sliceSize < 1 || sliceSize > this.sliceableHeadDim)) {
      throw new Error(`Attention.setAttentionSlice: slice_size ${sliceSize} has to be an integer from 1 to the number of heads, ${this.sliceableHeadDim}`);
    }
    this.sliceSize = sliceSize;
  }

  /**
   * hiddenStates: NHWC [B, H, W, C] or tokens [B, L, C]; encoderHiddenStates [B, Lk, cross_attention_dim] for
   * cross-attention. Returns the same shape as hiddenStates.
   */
  forward<T extends tf.Tensor3D | tf.Tensor4D>(hiddenStates: T, encoderHiddenStates?: tf.Tensor3D | null, opts: AttentionForwardOptions = {}): T {
    return tf.tidy(() => {
      const residual = hiddenStates;
      const batch = hiddenStates.shape[0];
      const channels = hiddenStates.shape[hiddenStates.rank - 1];
      let x: tf.Tensor = hiddenStates;
      if (this.group_norm) x = this.group_norm.forward(x);
      const tokens = tf.reshape(x, [-1, channels]) as tf.Tensor2D; // [B*L, C]
      const context = encoderHiddenStates ? (tf.reshape(encoderHiddenStates, [-1, encoderHiddenStates.shape[2]]) as tf.Tensor2D) : tokens;
      const q = this.to_q.forward(tokens);
      const k = this.to_k.forward(context);
      const v = this.to_v.forward(context);
      const mask = opts.attentionMask ?? undefined;
      if (mask && (mask.shape[0] !== batch || mask.shape[2] !== k.shape[0] / batch)) {
        throw new Error(`Attention: attention mask of shape [${mask.shape}] does not fit a batch of ${batch} with ${k.shape[0] / batch} key tokens (expected [${batch}, 1, ${k.shape[0] / batch}])`);
      }
      const attn = scaledDotProductAttention(q, k, v, batch, this.heads, this.scale, mask, this.sliceSize);
      let out: tf.Tensor = tf.reshape(this.to_out.items[0].forward(attn), [...hiddenStates.shape.slice(0, -1), -1]);
      if (this.residualConnection) out = tf.add(out, residual);
      if (this.rescaleOutputFactor !== 1) out = tf.div(out, this.rescaleOutputFactor);
      return out as T;
    });
  }
}
