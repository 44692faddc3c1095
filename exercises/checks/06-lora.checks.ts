// Hidden checks of exercises/06-lora.ipynb: loraForward against the kit's Linear + LoraLayer (PEFT's lora.Linear)
// and mergeLora against LoraLayer.merge (PEFT's merge, behind fuseLora), on fresh random sizes, ranks, alphas,
// scales and weights every run. The judge (setup, checks) builds the kit's layers in the grader's process; the
// kernel parts only call the student's functions on the judge's tensors.
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
  const args = { x: x, W: W, b: b, A: A, B: B, alpha: alpha, scale: scale };
  return { x, W, b, A, B, alpha, scale, linear, lora, what, args, dispose: () => { tf.dispose([x, W, b, A, B]); linear.dispose(); } };
}
return { layer };

//@@ check forward 3 loraForward() equals the kit's Linear with a LoRA layer (scale 1)
const L = h.layer(g, 1);
const pending = g.student("loraForward", "forward", L.args);
const want = L.linear.forward(L.x);
const base = tf.tidy(() => tf.add(tf.matMul(L.x, L.W, false, true), L.b));
const r = g.compare(`loraForward(${L.what})`, await pending, want, { atol: 1e-4, rtol: 1e-4, lookalikes: { "x Wᵀ + b, the base layer without its LoRA term": base },
  hint: "x Wᵀ + b + (alpha / r)·(x Aᵀ) Bᵀ, with r = A.shape[0]; tf.matMul(a, b, false, true) is a · bᵀ." });
tf.dispose([want, base]);
L.dispose();
return r;
//@@ kernel
return { forward: (a: any) => loraForward(a.x, a.W, a.b, a.A, a.B, a.alpha, a.scale) };

//@@ check scale 1 loraForward() applies the LoRA scale
const L = h.layer(g, g.uniform(0.1, 2));
const pending = g.student("loraForward", "forward", L.args);
const want = L.linear.forward(L.x);
const r = g.compare(`loraForward(${L.what})`, await pending, want, { atol: 1e-4, rtol: 1e-4, hint: "the low-rank term is multiplied by scale · alpha / r (the base layer is not scaled)." });
want.dispose();
L.dispose();
return r;
//@@ kernel
return { forward: (a: any) => loraForward(a.x, a.W, a.b, a.A, a.B, a.alpha, a.scale) };

//@@ check merge 3 mergeLora() equals the kit's fused weight (LoraLayer.merge, PEFT's merge)
const L = h.layer(g, 1);
const scale = g.uniform(0.2, 1.5);
const pending = g.student("mergeLora", "merge", { ...L.args, scale: scale });
L.lora.merge(["ex"], scale);
const fused = tf.tensor(L.linear.weight.toTorch(), [L.W.shape[0], L.W.shape[1]]);
const r = g.compare(`mergeLora(W, A, B, ${L.alpha}, ${scale.toFixed(3)}) with ${L.what.replace(/, scale [^,]*/, "")}`, await pending, fused, {
  atol: 1e-4, rtol: 1e-4, inputs: { W: L.W }, hint: "W + scale · (alpha / r) · B A: B [out, r] times A [r, in] gives [out, in]." });
fused.dispose();
L.dispose();
return r;
//@@ kernel
return { merge: (a: any) => mergeLora(a.W, a.A, a.B, a.alpha, a.scale) };

//@@ check no-leak 1 loraForward() and mergeLora() leave no tensors behind (and are right)
const L = h.layer(g, 1);
const got = await g.student<any>("loraForward and mergeLora", "leak", L.args);
const y = L.linear.forward(L.x);
L.lora.merge(["ex"], 1);
const fused = tf.tensor(L.linear.weight.toTorch(), [L.W.shape[0], L.W.shape[1]]);
const right = g.all(g.compare(`loraForward(${L.what})`, got?.y, y, { atol: 1e-4, rtol: 1e-4 }), g.compare(`mergeLora(W, A, B, ${L.alpha}, 1)`, got?.m, fused, { atol: 1e-4, rtol: 1e-4 }));
tf.dispose([y, fused]);
L.dispose();
if (!right.passed) return g.fail(`The leak check counts only for correct results. ${right.feedback}`);
return got.left === 0 ? g.pass("both leave only their result.") : g.fail(`the two calls left ${String(got.left)} tensors behind besides their results: wrap each body in tf.tidy.`);
//@@ kernel
// tensors the two calls leave in the kernel besides their results, and the results
return {
  leak: (a: any) => {
    const before = tf.memory().numTensors;
    const y = loraForward(a.x, a.W, a.b, a.A, a.B, a.alpha, 1);
    const m = mergeLora(a.W, a.A, a.B, a.alpha, 1);
    const left = tf.memory().numTensors - before - [y, m].filter((t) => t instanceof tf.Tensor).length;
    return { left: Math.max(0, left), y: y, m: m };
  },
};

//@@ check by-hand 1 the LoRA maths is written with tensors, not the kit's LoRA layer
return g.byHand(["forward", "merge"], /LoraLayer|fuseLora|loadLoraWeights|\bLinear\s*\(|\.\s*merge\s*\(|\[\s*["'`](merge|fuseLora)["'`]\s*\]/,
  "use the kit's LoRA layer (LoraLayer, Linear, merge, fuseLora): the exercise is to write W x + (alpha / r) B A x and the merge with tf ops.",
  "loraForward and mergeLora are written with tf ops.");
