// Hidden checks of exercises/07-attention-slicing.ipynb: attentionHeads and slicedAttention against the kit's
// scaledDotProductAttention (diffusers' AttnProcessor / SlicedAttnProcessor) on fresh random sizes (including
// cross-attention, Lk != Lq, and slice sizes that do not divide the heads), and the sliced call's peak memory
// (measureMemory) against the unsliced one's.
//@@ exercise 07-attention-slicing
//@@ timeout 300

//@@ setup
function qkv(c: typeof g, lq: number, lk: number, heads: number, d: number) {
  const q = c.randn([lq, heads * d]) as tf.Tensor2D, k = c.randn([lk, heads * d]) as tf.Tensor2D, v = c.randn([lk, heads * d]) as tf.Tensor2D;
  const want = lib.scaledDotProductAttention(q, k, v, 1, heads, 1 / Math.sqrt(d));
  return { q, k, v, want, dispose: () => tf.dispose([q, k, v, want]) };
}
async function excessPeak(fn: () => void): Promise<number> {
  const m = await lib.measureMemory(fn);
  return m.peakBytes - m.startBytes;
}
return { qkv, excessPeak };

//@@ check attention 3 attentionHeads() equals the kit's attention (self- and cross-attention)
const results = [];
for (const cross of [false, true]) {
  const heads = g.int(1, 8), d = g.pick([2, 4, 8, 16]), lq = g.int(4, 48), lk = cross ? g.int(2, 20) : lq;
  const t = h.qkv(g, lq, lk, heads, d);
  const got = await g.student("attentionHeads", () => attentionHeads(t.q, t.k, t.v, heads));
  results.push(g.compare(`attentionHeads(q [${lq}, ${heads}·${d}], k and v [${lk}, ${heads}·${d}], ${heads})`, got, t.want, {
    atol: 1e-5, rtol: 1e-4, inputs: { q: t.q },
    hint: "per head i: columns [i·d, (i+1)·d) of q and k, scores q_i k_iᵀ / √d (d = columns / heads), softmax over the last axis, times v_i; concat the heads along axis 1." }));
  tf.dispose(got as tf.Tensor);
  t.dispose();
}
return g.all(...results);

//@@ check sliced 3 slicedAttention() gives the same numbers for any slice size
const results = [];
const heads = g.int(3, 8), d = g.pick([4, 8]), lq = g.int(8, 40);
const t = h.qkv(g, lq, lq, heads, d);
for (const s of [g.int(2, heads - 1), 1, heads]) {
  const got = await g.student("slicedAttention", () => slicedAttention(t.q, t.k, t.v, heads, s));
  results.push(g.compare(`slicedAttention(q [${lq}, ${heads}·${d}], k, v, ${heads}, ${s})`, got, t.want, {
    atol: 1e-5, rtol: 1e-4, inputs: { q: t.q },
    hint: heads % s !== 0 ? `${heads} heads in slices of ${s}: the last slice has only ${heads % s} head(s).` : "each slice: the columns of its heads, attentionHeads on them, then concat the slices along axis 1." }));
  tf.dispose(got as tf.Tensor);
}
t.dispose();
return g.all(...results);

//@@ check memory 3 slicedAttention() at slice 1 peaks at most half as high as all heads at once
const heads = 8, d = 8, L = 384;
const t = h.qkv(g, L, L, heads, d);
const got = await g.student("slicedAttention", () => slicedAttention(t.q, t.k, t.v, heads, 1));
const correct = g.compare(`slicedAttention(q [${L}, 8·8], k, v, 8, 1)`, got, t.want, { atol: 1e-5, rtol: 1e-4 });
tf.dispose(got as tf.Tensor);
if (!correct.passed) { t.dispose(); return g.fail(`The memory only counts for a correct result. ${correct.feedback}`); }
const unsliced = await h.excessPeak(() => { lib.scaledDotProductAttention(t.q, t.k, t.v, 1, heads, 1 / Math.sqrt(d)).dispose(); });
const sliced = await h.excessPeak(() => { slicedAttention(t.q, t.k, t.v, heads, 1).dispose(); });
t.dispose();
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
return sliced <= 0.5 * unsliced
  ? g.pass(`slice 1 peaked at +${mib(sliced)}, all 8 heads at once at +${mib(unsliced)}.`)
  : g.fail(`slicedAttention(..., 1) peaked at +${mib(sliced)} above the start, all 8 heads at once at +${mib(unsliced)}: ` +
    "the maps of a slice must be freed before the next slice starts — compute each slice inside its own tf.tidy, keeping only its [L, n·d] output.");

//@@ check no-leak 1 slicedAttention() leaves only its result
const t = h.qkv(g, 16, 16, 4, 4);
const before = tf.memory().numTensors;
const got = await g.student("slicedAttention", () => slicedAttention(t.q, t.k, t.v, 4, 2));
const left = tf.memory().numTensors - before - (got instanceof tf.Tensor ? 1 : 0);
tf.dispose(got as tf.Tensor);
t.dispose();
return left <= 0 ? g.pass("a call leaves only its result.") : g.fail(`a call left ${left} tensors behind besides its result: dispose the slices' outputs after concatenating them.`);
