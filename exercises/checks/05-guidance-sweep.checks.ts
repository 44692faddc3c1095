// Hidden checks of exercises/05-guidance-sweep.ipynb: guidanceGrid and guidanceEffect against the grader's own
// pipeline runs (random scales, seed, prompt and steps) on the model the notebook loads (SD 1.5 if the Hub or the
// cache has it, else datasets/sd-tiny). The judge (setup, checks) runs those references in the grader's process with
// its own copy of the model; the kernel parts only call the student's functions with the kernel's pipeline.
//@@ exercise 05-guidance-sweep
//@@ data datasets/sd-tiny
//@@ timeout 400

//@@ setup
// the model the notebook's setup cell loads: SD 1.5 from the Hub (or the cache), else the kit's small shapes model
const MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5", OFFLINE_FOLDER = "../datasets/sd-tiny";
const { pipe, source: model } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, MODEL_ID, OFFLINE_FOLDER, { quiet: true });
// prompts in the offline model's vocabulary (plain English for SD 1.5 too)
const prompt = (c: typeof g): string => lib.shapesPrompt(c);
function args(c: typeof g) {
  const scales = [1 + Math.round(c.uniform(0, 3) * 2) / 2, Math.round(c.uniform(4, 8) * 2) / 2, Math.round(c.uniform(9, 14) * 2) / 2];
  return { prompt: prompt(c), scales, seed: c.newSeed(), steps: c.int(2, 3) };
}
type Args = ReturnType<typeof args>;
const describe = (name: string, a: Args) => `${name}(pipe, "${a.prompt}", [${a.scales}], ${a.seed}, ${a.steps}) on ${model}`;
async function run(a: Args, w: number, outputType: "np" | "latent") {
  return (await pipe.generate({ prompt: a.prompt, guidanceScale: w, numInferenceSteps: a.steps, generator: new lib.Generator().manualSeed(a.seed), outputType })).images;
}
async function effect(a: Args): Promise<number[]> {
  const base = await run(a, 1, "latent");
  const out: number[] = [];
  for (const w of a.scales) {
    const z = await run(a, w, "latent");
    out.push(tf.tidy(() => tf.sqrt(tf.mean(tf.square(tf.sub(z, base)))).dataSync()[0]));
    z.dispose();
  }
  base.dispose();
  return out;
}
return { args, describe, run, effect };

//@@ kernel-setup
// the same model as the notebook's setup cell and the judge: SD 1.5 from the Hub (or the cache), else datasets/sd-tiny
const { pipe, source } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, "stable-diffusion-v1-5/stable-diffusion-v1-5", "../datasets/sd-tiny", { quiet: true });
console.log(`hidden checks on ${source}`);
return { pipe };

//@@ check grid 3 guidanceGrid(): one picture per scale, all from the same seed
const a = h.args(g);
const pending = g.student("guidanceGrid", "grid", a);
const pics = [];
for (const w of a.scales) pics.push(await h.run(a, w, "np"));
const want = tf.concat(pics, 0);
tf.dispose(pics);
const r = g.compare(h.describe("guidanceGrid", a), await pending, want, { atol: 1e-3, rtol: 1e-3,
  hint: "one pipe.generate per scale with outputType \"np\" and a NEW Generator().manualSeed(seed) for each (a used generator has moved on), then tf.concat along axis 0." });
want.dispose();
return r;
//@@ kernel
return { grid: (a: any) => guidanceGrid(k.pipe, a.prompt, a.scales, a.seed, a.steps) };

//@@ check effect 3 guidanceEffect(): RMS distance of the latents to the unguided ones
const a = h.args(g);
const pending = g.student("guidanceEffect", "effect", a);
const want = await h.effect(a);
return g.compareArray(h.describe("guidanceEffect", a), await pending, want, { atol: 1e-5, rtol: 1e-3,
  hint: "final latents (outputType \"latent\") at w and at w = 1, the same seed for both, then √mean((z_w − z_1)²)." });
//@@ kernel
return { effect: (a: any) => guidanceEffect(k.pipe, a.prompt, a.scales, a.seed, a.steps) };

//@@ check unguided 1 guidanceEffect() is 0 at w = 1 (the same seed gives the same run)
const a = { ...h.args(g), scales: [1] };
return g.compareArray(`guidanceEffect(pipe, "${a.prompt}", [1], ${a.seed}, ${a.steps})`, await g.student("guidanceEffect", "effect", a), [0], { atol: 1e-6, rtol: 0,
  hint: "both runs must start from the same noise: a new Generator().manualSeed(seed) for each run." });
//@@ kernel
return { effect: (a: any) => guidanceEffect(k.pipe, a.prompt, a.scales, a.seed, a.steps) };
