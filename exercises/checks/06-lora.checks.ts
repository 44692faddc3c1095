// Hidden checks of exercises/06-lora.ipynb: loraForward against the kit's Linear + LoraLayer (PEFT's lora.Linear)
// and mergeLora against LoraLayer.merge (PEFT's merge, behind fuseLora), on fresh random sizes, ranks, alphas,
// scales and weights every run.
//@@ exercise 06-lora
//@@ timeout 300

//@@ setup
/** Random sizes and torch-layout weights, and the kit's layer holding them. */
function layer(c: typeof g, scale: number) {
  const inF = c.int(3, 24), outF = c.int(2, 20), rank = c.int(1, 6), n = c.int(1, 6);
  let alpha = c.int(1, 32);
  if (alpha === rank) alpha += 3;   // alpha != r, so a forgotten α/r shows
  const x = c.randn([n, inF]) as tf.Tensor2D;
  const W = c.randn([outF, inF], 0.3) as tf.Tensor2D;
  const b = c.randn([outF]) as tf.Tensor1D;
  const A = c.randn([rank, inF], 0.3) as tf.Tensor2D;
  const B = c.randn([outF, rank], 0.3) as tf.Tensor2D;
  const linear = new lib.Linear(inF, outF);
  linear.weight.setFromTorch(W.dataSync() as Float32Array);
  linear.bias!.setFromTorch(b.dataSync() as Float32Array);
  const lora = lib.LoraLayer.attach(linear, { callScale: scale, disabled: false });
  lora.addAdapter("ex", { dtype: "F32", shape: [rank, inF], data: A.dataSync() as Float32Array },
    { dtype: "F32", shape: [outF, rank], data: B.dataSync() as Float32Array }, alpha);
  const what = `in ${inF}, out ${outF}, rank ${rank}, alpha ${alpha}, scale ${scale.toFixed(3)}, x [${n}, ${inF}]`;
  return { x, W, b, A, B, alpha, scale, linear, lora, what, dispose: () => { tf.dispose([x, W, b, A, B]); linear.dispose(); } };
}
return { layer };

//@@ check forward 3 loraForward() equals the kit's Linear with a LoRA layer (scale 1)
const L = h.layer(g, 1);
const want = L.linear.forward(L.x);
const base = tf.tidy(() => tf.add(tf.matMul(L.x, L.W, false, true), L.b));
const got = await g.student("loraForward", () => loraForward(L.x, L.W, L.b, L.A, L.B, L.alpha, 1));
const r = g.compare(`loraForward(${L.what})`, got, want, { atol: 1e-4, rtol: 1e-4, lookalikes: { "x Wᵀ + b, the base layer without its LoRA term": base },
  hint: "x Wᵀ + b + (alpha / r)·(x Aᵀ) Bᵀ, with r = A.shape[0]; tf.matMul(a, b, false, true) is a · bᵀ." });
tf.dispose([want, base, got as tf.Tensor]);
L.dispose();
return r;

//@@ check scale 1 loraForward() applies the LoRA scale
const L = h.layer(g, g.uniform(0.1, 2));
const want = L.linear.forward(L.x);
const got = await g.student("loraForward", () => loraForward(L.x, L.W, L.b, L.A, L.B, L.alpha, L.scale));
const r = g.compare(`loraForward(${L.what})`, got, want, { atol: 1e-4, rtol: 1e-4, hint: "the low-rank term is multiplied by scale · alpha / r (the base layer is not scaled)." });
tf.dispose([want, got as tf.Tensor]);
L.dispose();
return r;

//@@ check merge 3 mergeLora() equals the kit's fused weight (LoraLayer.merge, PEFT's merge)
const L = h.layer(g, 1);
const scale = g.uniform(0.2, 1.5);
L.lora.merge(["ex"], scale);
const fused = tf.tensor(L.linear.weight.toTorch(), [L.W.shape[0], L.W.shape[1]]);
const got = await g.student("mergeLora", () => mergeLora(L.W, L.A, L.B, L.alpha, scale));
const r = g.compare(`mergeLora(W, A, B, ${L.alpha}, ${scale.toFixed(3)}) with ${L.what.replace(/, scale [^,]*/, "")}`, got, fused, {
  atol: 1e-4, rtol: 1e-4, inputs: { W: L.W }, hint: "W + scale · (alpha / r) · B A: B [out, r] times A [r, in] gives [out, in]." });
tf.dispose([fused, got as tf.Tensor]);
L.dispose();
return r;

//@@ check no-leak 1 loraForward() and mergeLora() leave no tensors behind
const L = h.layer(g, 1);
const before = tf.memory().numTensors;
const y = await g.student("loraForward", () => loraForward(L.x, L.W, L.b, L.A, L.B, L.alpha, 1));
const m = await g.student("mergeLora", () => mergeLora(L.W, L.A, L.B, L.alpha, 1));
const left = tf.memory().numTensors - before - [y, m].filter((t) => t instanceof tf.Tensor).length;
tf.dispose([y as tf.Tensor, m as tf.Tensor]);
L.dispose();
return left <= 0 ? g.pass("both leave only their result.") : g.fail(`the two calls left ${left} tensors behind besides their results: wrap each body in tf.tidy.`);
