// Scaled dot-product attention (Vaswani et al. 2017, eq. 1), per (batch item, head):
//   Attention(Q, K, V) = softmax(Q K^T * scale + mask) V
// torch.nn.functional.scaled_dot_product_attention, in the layout of diffusers' AttnProcessor: the heads are moved
// into the batch (head_to_batch_dim), attended, and moved back (batch_to_head_dim). Attention slicing (diffusers'
// SlicedAttnProcessor) takes the (batch, head) pairs `sliceSize` at a time: the same numbers, a smaller peak.
import * as tf from "@tensorflow/tfjs";

/**
 * softmax(q k^T * scale + mask) v for each (batch item, head), with q [B*Lq, heads*d], k and v [B*Lk, heads*d]
 * (rows grouped by batch item, columns by head). The scale is applied to q (the same product as torch's baddbmm
 * alpha, on the smaller tensor). `mask` (optional) is added to the scores before the softmax: [Lq, Lk] for every
 * item, or [B, Lq, Lk]; a row count of 1 ([1, Lk] / [B, 1, Lk], diffusers' key-padding bias) is broadcast over the
 * queries. Memory as diffusers' processors: the B*heads pairs are taken `sliceSize` at a time (all at once when
 * null), and for each slice all its [Lq, Lk] score maps, then all its probability maps, are alive together: a peak
 * of 2 * slice * Lq * Lk floats (64 MiB per map at 4096 tokens). diffusers 0.27 leaves the last
 * B*heads mod sliceSize pairs at zero; every pair is computed here. Returns [B*Lq, heads*dv].
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
  return tf.tidy(() => {
    const lq = q.shape[0] / batch;
    const lk = k.shape[0] / batch;
    const d = q.shape[1] / heads;
    const dv = v.shape[1] / heads;
    const pairs = batch * heads;
    // head_to_batch_dim: [B*L, heads*e] -> [B, L, heads, e] -> [B, heads, L, e] -> [B*heads, L, e]
    const headToBatch = (t: tf.Tensor2D, l: number, e: number): tf.Tensor3D =>
      heads === 1 ? tf.reshape(t, [batch, l, e]) : tf.reshape(tf.transpose(tf.reshape(t, [batch, l, heads, e]), [0, 2, 1, 3]), [pairs, l, e]);
    const qh = headToBatch(tf.mul(q, scale) as tf.Tensor2D, lq, d);
    const kh = headToBatch(k, lk, d);
    const vh = headToBatch(v, lk, dv);
    // the mask of pairs [start, start + n): pair p belongs to batch item floor(p / heads)
    const maskOf = (start: number, n: number): tf.Tensor | null => {
      if (mask === undefined) return null;
      if (mask.rank === 2) return mask;
      return tf.gather(mask, tf.tensor1d(Array.from({ length: n }, (_, i) => Math.floor((start + i) / heads)), "int32"));
    };
    const attend = (start: number, n: number): tf.Tensor3D =>
      tf.tidy(() => {
        const part = (t: tf.Tensor3D) => (n === pairs ? t : tf.slice(t, [start, 0, 0], [n, -1, -1]));
        const scores = tf.matMul(part(qh), part(kh), false, true); // [n, Lq, Lk]
        const m = maskOf(start, n);
        return tf.matMul(tf.softmax(m === null ? scores : tf.add(scores, m)), part(vh)); // [n, Lq, dv]
      });
    const step = sliceSize === null ? pairs : Math.max(1, Math.min(sliceSize, pairs));
    const outs: tf.Tensor3D[] = [];
    for (let start = 0; start < pairs; start += step) outs.push(attend(start, Math.min(step, pairs - start)));
    const out = outs.length === 1 ? outs[0] : tf.concat(outs, 0); // [B*heads, Lq, dv]
    // batch_to_head_dim: [B*heads, Lq, dv] -> [B, heads, Lq, dv] -> [B, Lq, heads, dv] -> [B*Lq, heads*dv]
    if (heads === 1) return tf.reshape(out, [batch * lq, dv]);
    return tf.reshape(tf.transpose(tf.reshape(out, [batch, heads, lq, dv]), [0, 2, 1, 3]), [batch * lq, heads * dv]);
  });
}
