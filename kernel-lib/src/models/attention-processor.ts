// Attention (diffusers models/attention_processor.py, with its classic AttnProcessor):
//   x  = group_norm(hidden)                       (when norm_num_groups is set)
//   q = to_q(x), k = to_k(ctx), v = to_v(ctx)     ctx = encoder_hidden_states (cross-attention) or x (self)
//   per head: softmax(q k^T * dim_head^-0.5) v    (Vaswani et al. 2017, eq. 1)
//   out = to_out.0(concat heads)  (+ residual)  / rescale_output_factor
// Images enter as NHWC [B, H, W, C]: its H*W pixels are the tokens, already [B, L, C] after a reshape.
import * as tf from "@tensorflow/tfjs";
import { Module, ModuleList } from "./module.js";
import { GroupNorm, Linear } from "./layers.js";
import { useHeapViewSlice } from "./wasm-slice.js";
import { isRecordingGradients } from "./gradient-tape.js";

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

/**
 * While a gradient is recorded, below this many multiply-adds per (batch, head) pair, attention runs as two
 * rank-3 matMuls over all pairs: wasm runs those in a plain loop (slow per multiply-add) but in one call each,
 * with one tape entry each, which wins when pairs are small (a 16x16-latent model, CLIP's 77 tokens; measured on
 * the sd-tiny training step: 3.7 s -> 2.7 s). Without a tape the per-pair 2-D matMuls take less time on those
 * shapes (thread CPU time, alternating in one process on a loaded machine: CLIP's [2,12,77,64] 0.88x, sd-tiny's
 * 16x16 self-attention [2,8,256,4] 0.48x), and SD 1.5's 64x64 / 32x32 self-attention always uses them (XNNPACK).
 */
const SMALL_PAIR_WORK = 1 << 20;

/**
 * softmax(q k^T * scale) v for each (batch item, head), with q [B*Lq, heads*d], k and v [B*Lk, heads*d]
 * (rows grouped by batch item, columns by head). Runs as 2-D matMuls per (batch, head): on wasm these use
 * XNNPACK while a batched rank-3 matMul or a transposed operand falls back to a naive loop (~35x slower).
 * q, k and v are first laid out head-major by one transpose each (q and v as [B*heads*L, d], k already transposed
 * as [B*heads*d, Lk]), so every pair's operands are contiguous row blocks (a plain copy; a column block of the
 * token-major layout is a row-by-row gather, and k^T would be one more transpose per pair); the pairs' outputs are
 * joined the same way (one concat of row blocks, one transpose back to [B*Lq, heads*dv]).
 * The scale is applied to q (same product as torch's baddbmm alpha, on the smaller tensor).
 * `mask` (optional) is added to the scores before the softmax: [Lq, Lk] for every item, or [B, Lq, Lk];
 * a row count of 1 ([1, Lk] / [B, 1, Lk], diffusers' key-padding bias) is broadcast over the queries.
 * Memory as diffusers' processors: the B*heads (batch, head) pairs are taken `sliceSize` at a time (all at once
 * when null: AttnProcessor; diffusers' SlicedAttnProcessor otherwise), and for each slice all its [Lq, Lk] score
 * maps, then all its probability maps, are alive together (torch's baddbmm, then softmax): a peak of
 * 2 * slice * Lq * Lk floats (64 MiB per map at 4096 tokens). diffusers 0.27 leaves the last B*heads mod sliceSize
 * pairs at zero; every pair is computed here. Returns [B*Lq, heads*d].
 */
export function scaledDotProductAttention(
  q: tf.Tensor2D,
  k: tf.Tensor2D,
  v: tf.Tensor2D,
  batch: number,
  heads: number,
  scale: number,
  mask?: tf.Tensor2D | tf.Tensor3D,
  sliceSize: number | null = null,
): tf.Tensor2D {
  useHeapViewSlice();
  return tf.tidy(() => {
    const lq = q.shape[0] / batch;
    const lk = k.shape[0] / batch;
    const d = q.shape[1] / heads;
    const dv = v.shape[1] / heads;
    const pairs = batch * heads;
    // [B*L, heads*e] -> [B, heads, L, e] (perm [0, 2, 1, 3]) or, for k^T, [B, heads, e, L] (perm [0, 2, 3, 1])
    const headMajor = (t: tf.Tensor2D, l: number, e: number, perm: number[]): tf.Tensor2D =>
      heads === 1 && perm[2] === 1 ? t : (tf.reshape(tf.transpose(tf.reshape(t, [batch, l, heads, e]), perm), [-1, perm[2] === 1 ? e : l]) as tf.Tensor2D);
    const qh = headMajor(tf.mul(q, scale) as tf.Tensor2D, lq, d, [0, 2, 1, 3]); // [pairs*lq, d]
    const kt = headMajor(k, lk, d, [0, 2, 3, 1]); // [pairs*d, lk]
    const vh = headMajor(v, lk, dv, [0, 2, 1, 3]); // [pairs*lk, dv]
    const mRows = (m: tf.Tensor): number => m.shape[m.rank - 2];
    if (sliceSize === null && pairs > 1 && lq * lk * d <= SMALL_PAIR_WORK && isRecordingGradients()) {
      // training, many small pairs (tiny models, text tokens): two rank-3 matMuls over all pairs beat 2 * pairs 2-D calls
      const scores = tf.matMul(tf.reshape(qh, [pairs, lq, d]), tf.reshape(kt, [pairs, d, lk])); // [pairs, lq, lk]
      const masked = mask === undefined ? scores
        : tf.reshape(tf.add(tf.reshape(scores, [batch, heads, lq, lk]), mask.rank === 2 ? mask : tf.reshape(mask, [batch, 1, mRows(mask), lk])), [pairs, lq, lk]);
      const o = tf.matMul(tf.softmax(masked), tf.reshape(vh, [pairs, lk, dv])); // [pairs, lq, dv]
      return tf.reshape(tf.transpose(tf.reshape(o, [batch, heads, lq, dv]), [0, 2, 1, 3]), [batch * lq, heads * dv]) as tf.Tensor2D;
    }
    // while a gradient is recorded the pairs' blocks come from one split: its gradient is one concat, where each
    // slice's is a zero-padded copy of the whole input (pairs times the memory: quadratic in the batch)
    const splits = new Map<tf.Tensor2D, tf.Tensor2D[]>();
    const split = (t: tf.Tensor2D): tf.Tensor2D[] => splits.get(t) ?? splits.set(t, tf.split(t, pairs, 0) as tf.Tensor2D[]).get(t)!;
    const block = (t: tf.Tensor2D, p: number, rows: number): tf.Tensor2D =>
      (pairs === 1 ? t : isRecordingGradients() ? split(t)[p] : tf.slice(t, [p * rows, 0], [rows, t.shape[1]]));
    const step = sliceSize === null ? pairs : Math.max(1, Math.min(sliceSize, pairs));
    const maskOf = (b: number): tf.Tensor2D | null =>
      mask === undefined ? null : mask.rank === 2 ? (mask as tf.Tensor2D) : tf.reshape(tf.slice(mask, [b, 0, 0], [1, mRows(mask), lk]), [mRows(mask), lk]);
    const outs: tf.Tensor2D[] = []; // one [lq, dv] per pair, pair p = b * heads + h (diffusers' head_to_batch_dim order)
    for (let start = 0; start < pairs; start += step) {
      const end = Math.min(start + step, pairs);
      outs.push(
        ...tf.tidy(() => {
          const ids = Array.from({ length: end - start }, (_, i) => start + i);
          const scores = ids.map((p) => {
            const s = tf.matMul(block(qh, p, lq), block(kt, p, d)); // [lq, lk]
            const m = maskOf(Math.floor(p / heads));
            return m === null ? s : tf.add(s, m);
          });
          const probs = scores.map((s) => tf.softmax(s));
          tf.dispose(scores);
          return ids.map((p, i) => tf.matMul(probs[i], block(vh, p, lk)) as tf.Tensor2D); // [lq, dv]
        }),
      );
    }
    const out = outs.length === 1 ? outs[0] : tf.concat(outs, 0); // [B*heads*lq, dv]
    if (heads === 1) return out;
    return tf.reshape(tf.transpose(tf.reshape(out, [batch, heads, lq, dv]), [0, 2, 1, 3]), [batch * lq, heads * dv]) as tf.Tensor2D;
  });
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
