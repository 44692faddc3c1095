// The transformer block of Stable Diffusion's UNet (diffusers models/attention.py and activations.py):
//   h = h + attn1(norm1(h))                      self-attention over the image tokens
//   h = h + attn2(norm2(h), context)             cross-attention: K, V from the text encoder states
//   h = h + ff(norm3(h))                         ff = Linear(inner, C) . GEGLU (Shazeer 2020, "GLU variants")
// Tokens are [B, L, C]. Only norm_type "layer_norm" (the SD 1.x / 2.x / SDXL UNets) is ported.
import * as tf from "@tensorflow/tfjs";
import { Module, ModuleList } from "../nn/module.js";
import { LayerNorm } from "../nn/normalization.js";
import { Linear } from "../nn/linear.js";
import { gelu, geluTanh, quickGelu } from "../nn/activations.js";
import { Attention, type AttentionForwardOptions } from "./attention-processor.js";

/** GELU: proj = Linear(dim_in, dim_out), then gelu (exact erf, or "tanh"). */
export class GELU extends Module {
  readonly proj: Linear;
  constructor(dimIn: number, dimOut: number, readonly approximate: "none" | "tanh" = "none", bias = true) {
    super();
    this.proj = this.addModule("proj", new Linear(dimIn, dimOut, bias));
  }
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const h = this.proj.forward(x);
      return this.approximate === "tanh" ? geluTanh(h) : gelu(h);
    });
  }
}

/** GEGLU: [h, gate] = chunk(proj(x), 2, -1); h * gelu(gate) (exact erf gelu). proj = Linear(dim_in, 2 * dim_out). */
export class GEGLU extends Module {
  readonly proj: Linear;
  constructor(dimIn: number, readonly dimOut: number, bias = true) {
    super();
    this.proj = this.addModule("proj", new Linear(dimIn, dimOut * 2, bias));
  }
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      // freed as soon as used: at 64x64 latents (8192 tokens x 2560) each of these is 84 MB
      const proj = this.proj.forward(x);
      const [rows, cols] = proj.shape;
      const h = tf.slice(proj, [0, 0], [rows, cols / 2]);
      const gate = tf.slice(proj, [0, cols / 2], [rows, cols / 2]);
      proj.dispose();
      const g = gelu(gate);
      gate.dispose();
      return tf.mul(h, g) as tf.Tensor2D;
    });
  }
}

/** ApproximateGELU ("geglu-approximate"): x * sigmoid(1.702 x) after proj = Linear(dim_in, dim_out). */
export class ApproximateGELU extends Module {
  readonly proj: Linear;
  constructor(dimIn: number, dimOut: number, bias = true) {
    super();
    this.proj = this.addModule("proj", new Linear(dimIn, dimOut, bias));
  }
  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => quickGelu(this.proj.forward(x)));
  }
}

type FeedForwardAct = GELU | GEGLU | ApproximateGELU;

export const FEED_FORWARD_ACTIVATIONS = ["geglu", "gelu", "gelu-approximate", "geglu-approximate"] as const;

export interface FeedForwardOptions {
  dimOut?: number;
  /** inner = dim * mult unless innerDim is given. */
  mult?: number;
  innerDim?: number | null;
  activationFn?: string;
  bias?: boolean;
}

/**
 * FeedForward: net.0 = activation with its input projection (dim -> inner), net.1 = dropout (identity at
 * inference, no weights), net.2 = Linear(inner, dim_out).
 */
export class FeedForward extends Module {
  readonly net: ModuleList<FeedForwardAct | Linear | null>;
  private readonly act: FeedForwardAct;
  private readonly out: Linear;

  constructor(readonly dim: number, o: FeedForwardOptions = {}) {
    super();
    const inner = o.innerDim ?? Math.trunc(dim * (o.mult ?? 4));
    const dimOut = o.dimOut ?? dim;
    const bias = o.bias ?? true;
    const fn = o.activationFn ?? "geglu";
    if (fn === "geglu") this.act = new GEGLU(dim, inner, bias);
    else if (fn === "gelu") this.act = new GELU(dim, inner, "none", bias);
    else if (fn === "gelu-approximate") this.act = new GELU(dim, inner, "tanh", bias);
    else if (fn === "geglu-approximate") this.act = new ApproximateGELU(dim, inner, bias);
    else throw new Error(`FeedForward: unknown activation_fn "${fn}"; supported: ${FEED_FORWARD_ACTIVATIONS.map((a) => `"${a}"`).join(", ")}`);
    this.out = new Linear(inner, dimOut, bias);
    this.net = this.addModule("net", new ModuleList<FeedForwardAct | Linear | null>([this.act, null, this.out]));
  }

  /** x: [..., dim] -> [..., dim_out]. */
  forward<T extends tf.Tensor>(x: T): T {
    return tf.tidy(() => {
      const flat = tf.reshape(x, [-1, this.dim]) as tf.Tensor2D;
      const y = this.out.forward(this.act.forward(flat));
      return tf.reshape(y, [...x.shape.slice(0, -1), -1]) as T;
    });
  }
}

export interface BasicTransformerBlockOptions {
  dim: number;
  numAttentionHeads: number;
  attentionHeadDim: number;
  /** Channels of the encoder hidden states; null: no cross-attention (attn2 absent unless doubleSelfAttention). */
  crossAttentionDim?: number | null;
  activationFn?: string;
  attentionBias?: boolean;
  /** attn1 attends to the encoder states too (no self-attention at all). */
  onlyCrossAttention?: boolean;
  /** attn2 is a second self-attention (K, V from its own input dimension). */
  doubleSelfAttention?: boolean;
  /** Computes attention scores in float32: everything here already is. */
  upcastAttention?: boolean;
  normElementwiseAffine?: boolean;
  normType?: string;
  normEps?: number;
  attentionType?: string;
  ffInnerDim?: number | null;
  ffBias?: boolean;
  attentionOutBias?: boolean;
}

export interface TransformerBlockInputs {
  /** Bias [B, 1 | L, L] on self-attention scores (0 keep, -10000 drop). */
  attentionMask?: tf.Tensor3D | null;
  /** Text states [B, Lk, cross_attention_dim]. */
  encoderHiddenStates?: tf.Tensor3D | null;
  /** Bias [B, 1 | L, Lk] on cross-attention scores. */
  encoderAttentionMask?: tf.Tensor3D | null;
  /** diffusers' cross_attention_kwargs, handed to every Attention (scale: the LoRA scale). */
  crossAttentionKwargs?: { scale?: number } | null;
}

export class BasicTransformerBlock extends Module {
  readonly norm1: LayerNorm;
  readonly attn1: Attention;
  readonly norm2: LayerNorm | null;
  readonly attn2: Attention | null;
  readonly norm3: LayerNorm;
  readonly ff: FeedForward;
  readonly onlyCrossAttention: boolean;

  constructor(o: BasicTransformerBlockOptions) {
    super();
    const normType = o.normType ?? "layer_norm";
    if (normType !== "layer_norm") {
      throw new Error(`BasicTransformerBlock: norm_type "${normType}" is not supported; supported: "layer_norm"`);
    }
    const attentionType = o.attentionType ?? "default";
    if (attentionType !== "default") {
      throw new Error(`BasicTransformerBlock: attention_type "${attentionType}" (GLIGEN) is not supported; supported: "default"`);
    }
    const { dim } = o;
    const eps = o.normEps ?? 1e-5;
    const affine = o.normElementwiseAffine ?? true;
    const crossDim = o.crossAttentionDim ?? null;
    this.onlyCrossAttention = o.onlyCrossAttention ?? false;
    const attn = (crossAttentionDim: number | null) =>
      new Attention(dim, {
        heads: o.numAttentionHeads,
        dimHead: o.attentionHeadDim,
        bias: o.attentionBias ?? false,
        crossAttentionDim,
        upcastAttention: o.upcastAttention ?? false,
        outBias: o.attentionOutBias ?? true,
      });

    this.norm1 = this.addModule("norm1", new LayerNorm(dim, eps, affine));
    this.attn1 = this.addModule("attn1", attn(this.onlyCrossAttention ? crossDim : null));
    const hasAttn2 = crossDim !== null || (o.doubleSelfAttention ?? false);
    this.norm2 = this.addModule("norm2", hasAttn2 ? new LayerNorm(dim, eps, affine) : null);
    this.attn2 = this.addModule("attn2", hasAttn2 ? attn(o.doubleSelfAttention ? null : crossDim) : null);
    this.norm3 = this.addModule("norm3", new LayerNorm(dim, eps, affine));
    this.ff = this.addModule("ff", new FeedForward(dim, { activationFn: o.activationFn, innerDim: o.ffInnerDim, bias: o.ffBias }));
  }

  /** hiddenStates [B, L, dim] -> [B, L, dim]. */
  forward(hiddenStates: tf.Tensor3D, inputs: TransformerBlockInputs = {}): tf.Tensor3D {
    const ehs = inputs.encoderHiddenStates ?? null;
    const scale = inputs.crossAttentionKwargs?.scale;
    const selfOpts: AttentionForwardOptions = { attentionMask: inputs.attentionMask ?? null, scale };
    const crossOpts: AttentionForwardOptions = { attentionMask: inputs.encoderAttentionMask ?? null, scale };
    // each residual step keeps only its result (the previous one is freed: less peak memory at 4096 tokens)
    let h = hiddenStates;
    const step = (f: (x: tf.Tensor3D) => tf.Tensor3D) => {
      const prev = h;
      h = tf.tidy(() => f(prev));
      if (prev !== hiddenStates) prev.dispose();
    };
    // 1. self-attention (or cross-attention only)
    step((x) => tf.add(this.attn1.forward(this.norm1.forward(x), this.onlyCrossAttention ? ehs : null, selfOpts), x));
    // 2. cross-attention: queries from the image, keys and values from the text
    const [norm2, attn2] = [this.norm2, this.attn2];
    if (attn2 && norm2) step((x) => tf.add(attn2.forward(norm2.forward(x), ehs, crossOpts), x));
    // 3. feed-forward
    step((x) => tf.add(this.ff.forward(this.norm3.forward(x)), x));
    return h;
  }
}
