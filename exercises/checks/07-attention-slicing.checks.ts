// Hidden checks of exercises/07-attention-slicing.ipynb: attentionHeads and slicedAttention against the kit's
// scaledDotProductAttention (diffusers' AttnProcessor / SlicedAttnProcessor) on fresh random sizes (including
// cross-attention, Lk != Lq, and slice sizes that do not divide the heads), and the sliced call's peak memory
// (measureMemory) against the unsliced one's. The judge (setup, checks) computes the references in the grader's
// process; the kernel parts only call the student's functions on the judge's tensors (and measure their memory
// there, where they run).
//@@ exercise 07-attention-slicing
//@@ timeout 300

//@@ setup
function qkv(c: typeof g, lq: number, lk: number, heads: number, d: number) {
  const q = c.randn([lq, heads * d]) as tf.Tensor2D, k = c.randn([lk, heads * d]) as tf.Tensor2D, v = c.randn([lk, heads * d]) as tf.Tensor2D;
  const want = lib.scaledDotProductAttention(q, k, v, 1, heads, 1 / Math.sqrt(d));
  return { q, k, v, want, dispose: () => tf.dispose([q, k, v, want]) };
}
return { qkv };

//@@ kernel-setup
/** Bytes above the start that fn's tensors peak at. */
async function excessPeak(fn: () => void): Promise<number> {
  const m = await lib.measureMemory(fn);
  return m.peakBytes - m.startBytes;
}
return { excessPeak };

//@@ check attention 3 attentionHeads() equals the kit's attention (self- and cross-attention)
const cases = [false, true].map((cross) => {
  const heads = g.int(1, 8), d = g.pick([2, 4, 8, 16]), lq = g.int(4, 48), lk = cross ? g.int(2, 20) : lq;
  return { heads, d, lq, lk, t: h.qkv(g, lq, lk, heads, d) };
});
const calls = cases.map((c) => g.student("attentionHeads", "attention", { q: c.t.q, k: c.t.k, v: c.t.v, heads: c.heads }));
const results = [];
for (const [i, { heads, d, lq, lk, t }] of cases.entries()) {
  results.push(g.compare(`attentionHeads(q [${lq}, ${heads}·${d}], k and v [${lk}, ${heads}·${d}], ${heads})`, await calls[i], t.want, {
    atol: 1e-5, rtol: 1e-4, inputs: { q: t.q },
    hint: "per head i: columns [i·d, (i+1)·d) of q and k, scores q_i k_iᵀ / √d (d = columns / heads), softmax over the last axis, times v_i; concat the heads along axis 1." }));
  t.dispose();
}
return g.all(...results);
//@@ kernel
return { attention: (a: any) => attentionHeads(a.q, a.k, a.v, a.heads) };

//@@ check sliced 3 slicedAttention() gives the same numbers for any slice size
const heads = g.int(3, 8), d = g.pick([4, 8]), lq = g.int(8, 40);
const t = h.qkv(g, lq, lq, heads, d);
const sizes = [g.int(2, heads - 1), 1, heads];
const calls = sizes.map((s) => g.student("slicedAttention", "sliced", { q: t.q, k: t.k, v: t.v, heads: heads, size: s }));
const results = [];
for (const [i, s] of sizes.entries()) {
  results.push(g.compare(`slicedAttention(q [${lq}, ${heads}·${d}], k, v, ${heads}, ${s})`, await calls[i], t.want, {
    atol: 1e-5, rtol: 1e-4, inputs: { q: t.q },
    hint: heads % s !== 0 ? `${heads} heads in slices of ${s}: the last slice has only ${heads % s} head(s).` : "each slice: the columns of its heads, attentionHeads on them, then concat the slices along axis 1." }));
}
t.dispose();
return g.all(...results);
//@@ kernel
return { sliced: (a: any) => slicedAttention(a.q, a.k, a.v, a.heads, a.size) };

//@@ check memory 3 slicedAttention() at slice 1 peaks at most half as high as all heads at once
const heads = 8, d = 8, L = 384;
const t = h.qkv(g, L, L, heads, d);
const got = await g.student<any>("slicedAttention", "memory", { q: t.q, k: t.k, v: t.v, heads: heads, d: d });
const correct = g.compare(`slicedAttention(q [${L}, 8·8], k, v, 8, 1)`, got?.out, t.want, { atol: 1e-5, rtol: 1e-4 });
t.dispose();
if (!correct.passed) return g.fail(`The memory only counts for a correct result. ${correct.feedback}`);
const sliced = Number(got.sliced), unsliced = Number(got.unsliced);
const mib = (b: number) => `${(b / 2 ** 20).toFixed(1)} MiB`;
return sliced <= 0.5 * unsliced
  ? g.pass(`slice 1 peaked at +${mib(sliced)}, all 8 heads at once at +${mib(unsliced)}.`)
  : g.fail(`slicedAttention(..., 1) peaked at +${mib(sliced)} above the start, all 8 heads at once at +${mib(unsliced)}: ` +
    "the maps of a slice must be freed before the next slice starts — compute each slice inside its own tf.tidy, keeping only its [L, n·d] output.");
//@@ kernel
// the result, and the peaks above the start (in this kernel) of the sliced call and of the kit's unsliced attention
return {
  memory: async (a: any) => {
    const out = slicedAttention(a.q, a.k, a.v, a.heads, 1);
    const unsliced = await k.excessPeak(() => { lib.scaledDotProductAttention(a.q, a.k, a.v, 1, a.heads, 1 / Math.sqrt(a.d)).dispose(); });
    const sliced = await k.excessPeak(() => { slicedAttention(a.q, a.k, a.v, a.heads, 1).dispose(); });
    return { out, sliced, unsliced };
  },
};

//@@ check no-leak 1 slicedAttention() leaves only its result (and is right)
const t = h.qkv(g, 16, 16, 4, 4);
const got = await g.student<any>("slicedAttention", "leak", { q: t.q, k: t.k, v: t.v });
const right = g.compare("slicedAttention(q [16, 4·4], k, v, 4, 2)", got?.out, t.want, { atol: 1e-5, rtol: 1e-4 });
t.dispose();
if (!right.passed) return g.fail(`The leak check counts only for a correct result. ${right.feedback}`);
return got.left === 0 ? g.pass("a call leaves only its result.") : g.fail(`a call left ${String(got.left)} tensors behind besides its result: dispose the slices' outputs after concatenating them.`);
//@@ kernel
// tensors a call leaves in the kernel besides its result, and the result
return {
  leak: (a: any) => {
    const before = tf.memory().numTensors;
    const out = slicedAttention(a.q, a.k, a.v, 4, 2);
    const left = tf.memory().numTensors - before - (out instanceof tf.Tensor ? 1 : 0);
    return { left: Math.max(0, left), out: out };
  },
};

//@@ check by-hand 1 attention is written with tensors, not the kit's attention
return g.byHand(["attention", "sliced"], /scaledDotProductAttention|AttnProcessor|setAttentionSlice|enableAttentionSlicing|attentionSlic|\bAttention\s*\(/,
  "call the kit's attention (scaledDotProductAttention, its processors or slicing): the exercise is to write softmax(q kᵀ / √d) v per head yourself.",
  "attentionHeads and slicedAttention are written with tf ops.");
