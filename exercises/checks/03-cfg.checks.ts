// Hidden checks of exercises/03-cfg.ipynb: cfgCombine against the CFG formula on random tensors; generateByHand
// against StableDiffusionPipeline.generate (same seed, prompt, steps, guidance; a random scheduler) on the model the
// notebook loads (SD 1.5 if the Hub or the cache has it, else datasets/sd-tiny). The judge (setup, checks) loads
// its own copy of that model in the grader's process and computes the references there; the kernel parts only call
// the student's functions with the kernel's pipeline and the judge's inputs.
//@@ exercise 03-cfg
//@@ data datasets/sd-tiny
//@@ timeout 400

//@@ setup
// the model the notebook's setup cell loads: SD 1.5 from the Hub (or the cache), else the kit's small shapes model
const MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5", OFFLINE_FOLDER = "../datasets/sd-tiny";
const { pipe, source: model } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, MODEL_ID, OFFLINE_FOLDER, { quiet: true });
const baseConfig = { ...pipe.scheduler.config } as Record<string, unknown>;
// prompts in the offline model's vocabulary (plain English for SD 1.5 too)
const prompt = (c: typeof g): string => lib.shapesPrompt(c);
type Swappable = { className: string; fromConfig(config: Record<string, unknown>): typeof pipe.scheduler };
/** Random arguments of generateByHand with scheduler `name`. */
function args(c: typeof g, name: string) {
  return { scheduler: name, prompt: prompt(c), seed: c.newSeed(), steps: c.int(2, 4), w: Math.round(c.uniform(2, 10) * 100) / 100 };
}
type Args = ReturnType<typeof args>;
/** The pipeline's latents for those arguments (a fresh scheduler of that class from the model's config). */
async function reference(a: Args) {
  pipe.scheduler = (lib.getSchedulerClass(a.scheduler) as unknown as Swappable).fromConfig(baseConfig);
  return (await pipe.generate({ prompt: a.prompt, numInferenceSteps: a.steps, guidanceScale: a.w,
    generator: new lib.Generator().manualSeed(a.seed), outputType: "latent" })).images;
}
const describe = (a: Args) => `generateByHand(pipe, "${a.prompt}", ${a.seed}, ${a.steps}, ${a.w}) with ${a.scheduler} on ${model}`;
return { args, reference, describe };

//@@ kernel-setup
// the same model as the notebook's setup cell and the judge: SD 1.5 from the Hub (or the cache), else datasets/sd-tiny
const { pipe, source } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, "stable-diffusion-v1-5/stable-diffusion-v1-5", "../datasets/sd-tiny", { quiet: true });
console.log(`hidden checks on ${source}`);
const baseConfig = { ...pipe.scheduler.config } as Record<string, unknown>;
type Swappable = { fromConfig(config: Record<string, unknown>): typeof pipe.scheduler };
/** The pipeline with a fresh scheduler of class `name` (what the judge's reference used). */
function withScheduler(name: string) {
  pipe.scheduler = (lib.getSchedulerClass(name) as unknown as Swappable).fromConfig(baseConfig);
  return pipe;
}
return { withScheduler };

//@@ check combine 3 cfgCombine(): ε_∅ + w (ε_c − ε_∅)
const shape = [g.int(1, 2), g.int(2, 8), g.int(2, 8), 4];
const cases = [g.uniform(1.5, 12), 1, 0].map((w) => ({ w: w, u: g.randn(shape), c: g.randn(shape) }));
const calls = cases.map((x) => g.student(`cfgCombine(epsUncond, epsCond, ${x.w})`, "combine", x));
const results = [];
for (const [i, { w, u, c }] of cases.entries()) {
  const got = await calls[i];
  const want = tf.tidy(() => tf.add(u, tf.mul(tf.sub(c, u), w)));
  results.push(g.compare(`cfgCombine(epsUncond, epsCond, ${w.toFixed(3)}) on [${shape}]`, got, want, {
    inputs: { epsUncond: u, epsCond: c }, hint: "ε̂ = ε_∅ + w·(ε_c − ε_∅): w = 1 gives ε_c, w = 0 gives ε_∅.",
  }));
  tf.dispose([u, c, want]);
}
return g.all(...results);
//@@ kernel
return { combine: (a: any) => cfgCombine(a.u, a.c, a.w) };

//@@ check loop 4 generateByHand() gives the pipeline's latents (DDIM, DPM-Solver++ or PNDM)
const a = h.args(g, g.pick(["DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler"]));
const got = g.student("generateByHand", "loop", a);
const want = await h.reference(a);
const result = g.compare(h.describe(a), await got, want, { atol: 1e-3, rtol: 1e-3,
  hint: "embeddings in the order [∅; c]; latents drawn NCHW [1, 4, h, w] from new Generator().manualSeed(seed) and transposed; one UNet call on the doubled latents per step; your cfgCombine with w." });
want.dispose();
return result;
//@@ kernel
return { loop: (a: any) => generateByHand(k.withScheduler(a.scheduler), a.prompt, a.seed, a.steps, a.w) };

//@@ check euler 2 generateByHand() with Euler: initNoiseSigma and scaleModelInput
const a = h.args(g, "EulerDiscreteScheduler");
const got = g.student("generateByHand", "loop", a);
const want = await h.reference(a);
const result = g.compare(h.describe(a), await got, want, { atol: 1e-3, rtol: 1e-3,
  hint: "Euler starts from noise times scheduler.initNoiseSigma (≈ 14.6) and divides the UNet's input by √(σ²+1): call scheduler.scaleModelInput(doubled latents, t) every step." });
want.dispose();
return result;
//@@ kernel
return { loop: (a: any) => generateByHand(k.withScheduler(a.scheduler), a.prompt, a.seed, a.steps, a.w) };

//@@ check by-hand 1 generateByHand() is written with the parts, not the pipeline's own methods
return g.byHand(["loop"], /\b(generate|predictNoise|encodePrompt|prepareLatents|denoise|decodeLatents)\s*\(|\[\s*["'`](generate|predictNoise|encodePrompt|prepareLatents|denoise|decodeLatents)["'`]\s*\]/,
  "call the pipeline's own generate / encodePrompt / prepareLatents / predictNoise / denoise / decodeLatents: write those steps yourself with pipe.tokenizer, pipe.textEncoder, pipe.unet and pipe.scheduler.",
  "the loop is written with the tokenizer, text encoder, UNet and scheduler.");

//@@ check no-leak 1 generateByHand() leaves only its result behind (and is right)
const a = h.args(g, "DDIMScheduler");
const got = g.student<any>("generateByHand", "leak", a);
const want = await h.reference(a);
const right = g.compare(h.describe(a), (await got)?.latents, want, { atol: 1e-3, rtol: 1e-3 });
want.dispose();
if (!right.passed) return g.fail(`The leak check counts only for correct latents. ${right.feedback}`);
const left = (await got).left;
return left === 0
  ? g.pass("a call leaves only the latents it returns.")
  : g.fail(`a call left ${String(left)} tensors behind besides its result: tf.tidy inside the loop, dispose the old latents, the embeddings and predOriginalSample.`);
//@@ kernel
// tensors a call leaves in the kernel besides the latents it returns, and those latents
return {
  leak: async (a: any) => {
    const pipe = k.withScheduler(a.scheduler);
    const before = tf.memory().numTensors;
    const latents = await generateByHand(pipe, a.prompt, a.seed, a.steps, a.w);
    const left = tf.memory().numTensors - before - (latents instanceof tf.Tensor ? 1 : 0);
    return { left: Math.max(0, left), latents: latents };
  },
};
