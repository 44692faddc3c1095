// Hidden checks of exercises/03-cfg.ipynb: cfgCombine against the CFG formula on random tensors; generateByHand
// against StableDiffusionPipeline.generate (same seed, prompt, steps, guidance; a random scheduler) on the model the
// notebook loads (SD 1.5 if the Hub or the cache has it, else datasets/sd-tiny). References are computed at grading
// time, before the student's code runs (it gets the grader's pipeline).
//@@ exercise 03-cfg
//@@ data datasets/sd-tiny
//@@ timeout 400

//@@ setup
// the model the notebook's setup cell loads: SD 1.5 from the Hub (or the cache), else the kit's small shapes model
const MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5", OFFLINE_FOLDER = "../datasets/sd-tiny";
const { pipe, source: model } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, MODEL_ID, OFFLINE_FOLDER, { quiet: true });
console.log(`hidden checks on ${model}`);
const baseConfig = { ...pipe.scheduler.config } as Record<string, unknown>;
// prompts in the offline model's vocabulary (plain English for SD 1.5 too)
const prompt = (c: typeof g): string => lib.shapesPrompt(c);
type Swappable = { className: string; fromConfig(config: Record<string, unknown>): typeof pipe.scheduler };
/** The pipeline's latents for one call, with a fresh scheduler of class `name`; then a fresh scheduler again for the student. */
async function reference(c: typeof g, name: string) {
  const cls = lib.getSchedulerClass(name) as unknown as Swappable;
  const args = { prompt: prompt(c), seed: c.newSeed(), steps: c.int(2, 4), w: Math.round(c.uniform(2, 10) * 100) / 100 };
  pipe.scheduler = cls.fromConfig(baseConfig);
  const want = (await pipe.generate({ prompt: args.prompt, numInferenceSteps: args.steps, guidanceScale: args.w,
    generator: new lib.Generator().manualSeed(args.seed), outputType: "latent" })).images;
  pipe.scheduler = cls.fromConfig(baseConfig);
  const call = `generateByHand(pipe, "${args.prompt}", ${args.seed}, ${args.steps}, ${args.w}) with ${name} on ${model}`;
  return { ...args, want, call };
}
return { pipe, prompt, reference };

//@@ check combine 3 cfgCombine(): ε_∅ + w (ε_c − ε_∅)
const shape = [g.int(1, 2), g.int(2, 8), g.int(2, 8), 4];
const results = [];
for (const w of [g.uniform(1.5, 12), 1, 0]) {
  const u = g.randn(shape), c = g.randn(shape);
  const want = tf.tidy(() => tf.add(u, tf.mul(tf.sub(c, u), w)));
  const got = await g.student(`cfgCombine(epsUncond, epsCond, ${w})`, () => cfgCombine(u, c, w));
  results.push(g.compare(`cfgCombine(epsUncond, epsCond, ${w.toFixed(3)}) on [${shape}]`, got, want, {
    inputs: { epsUncond: u, epsCond: c }, hint: "ε̂ = ε_∅ + w·(ε_c − ε_∅): w = 1 gives ε_c, w = 0 gives ε_∅.",
  }));
  tf.dispose([u, c, want]);
  if (got instanceof tf.Tensor) got.dispose();
}
return g.all(...results);

//@@ check loop 4 generateByHand() gives the pipeline's latents (DDIM, DPM-Solver++ or PNDM)
const r = await h.reference(g, g.pick(["DDIMScheduler", "DPMSolverMultistepScheduler", "PNDMScheduler"]));
const got = await g.student("generateByHand", () => generateByHand(h.pipe, r.prompt, r.seed, r.steps, r.w));
const result = g.compare(r.call, got, r.want, { atol: 1e-3, rtol: 1e-3,
  hint: "embeddings in the order [∅; c]; latents drawn NCHW [1, 4, h, w] from new Generator().manualSeed(seed) and transposed; one UNet call on the doubled latents per step; your cfgCombine with w." });
tf.dispose([r.want, got as tf.Tensor]);
return result;

//@@ check euler 2 generateByHand() with Euler: initNoiseSigma and scaleModelInput
const r = await h.reference(g, "EulerDiscreteScheduler");
const got = await g.student("generateByHand", () => generateByHand(h.pipe, r.prompt, r.seed, r.steps, r.w));
const result = g.compare(r.call, got, r.want, { atol: 1e-3, rtol: 1e-3,
  hint: "Euler starts from noise times scheduler.initNoiseSigma (≈ 14.6) and divides the UNet's input by √(σ²+1): call scheduler.scaleModelInput(doubled latents, t) every step." });
tf.dispose([r.want, got as tf.Tensor]);
return result;

//@@ check by-hand 1 generateByHand() is written with the parts, not the pipeline's own methods
const src = g.todoCode("loop");
const used = ["generate(", "predictNoise(", "encodePrompt(", "prepareLatents(", "denoise(", "decodeLatents("].filter((m) => src.includes(m));
return used.length === 0
  ? g.pass("the loop is written with the tokenizer, text encoder, UNet and scheduler.")
  : g.fail(`your loop calls the pipeline's ${used.join(", ")}: write those steps yourself with pipe.tokenizer, pipe.textEncoder, pipe.unet and pipe.scheduler.`);

//@@ check no-leak 1 generateByHand() leaves only its result behind
const r = await h.reference(g, "DDIMScheduler");
r.want.dispose();
const before = tf.memory().numTensors;
const got = await g.student("generateByHand", () => generateByHand(h.pipe, r.prompt, r.seed, r.steps, r.w));
const left = tf.memory().numTensors - before - (got instanceof tf.Tensor ? 1 : 0);
if (got instanceof tf.Tensor) got.dispose();
return left <= 0
  ? g.pass("a call leaves only the latents it returns.")
  : g.fail(`a call left ${left} tensors behind besides its result: tf.tidy inside the loop, dispose the old latents, the embeddings and predOriginalSample.`);
