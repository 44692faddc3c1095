// Hidden checks of exercises/04-scheduler-swap.ipynb: keysPassedOn / swapScheduler against the kit's fromConfig
// (diffusers' from_config with _use_default_values) on random scheduler configs and class pairs, plus SD 1.5's
// real config; measureTradeOff against the grader's own runs (UNet calls counted, RMS distances) on the model the
// notebook loads (SD 1.5 if the Hub or the cache has it, else datasets/sd-tiny, whose scheduler config is SD 1.5's).
// The judge (setup, checks) runs in the grader's process with its own copy of the model; the kernel parts rebuild
// the judge's schedulers from their recipes and only call the student's functions.
//@@ exercise 04-scheduler-swap
//@@ data datasets/sd-tiny
//@@ timeout 480

//@@ setup
const NAMES = ["DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
  "LMSDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "LCMScheduler"];
type Sched = ReturnType<typeof lib.schedulerFromName>;
type Cls = {
  new (config?: Record<string, unknown>): Sched;
  className: string; configSpec: { defaults: Record<string, unknown> }; compatibles: readonly string[]; predictionTypes: readonly string[];
  fromConfig(config: Record<string, unknown>): Sched;
};
const cls = (name: string) => lib.getSchedulerClass(name) as Cls;
/** A scheduler of a random class from a random raw config (a random subset of the common keys), and its recipe. */
function randomSource(c: typeof g): { source: Sched; recipe: { className: string; raw: Record<string, unknown> } } {
  const A = cls(c.pick(NAMES));
  const choices: Record<string, unknown[]> = {
    num_train_timesteps: [1000, 500], beta_start: [0.00085, 0.0001, 0.0005], beta_end: [0.012, 0.02, 0.015],
    beta_schedule: ["linear", "scaled_linear"], timestep_spacing: ["leading", "linspace", "trailing"], steps_offset: [0, 1],
    prediction_type: ["epsilon"],
  };
  const raw: Record<string, unknown> = { _class_name: A.className };
  for (const [k, vs] of Object.entries(choices)) if (c.rand() < 0.5) raw[k] = c.pick(vs);
  for (const [k, v] of Object.entries(A.configSpec.defaults)) if (!(k in raw) && typeof v === "boolean" && c.rand() < 0.3) raw[k] = v;
  return { source: A.fromConfig(raw), recipe: { className: A.className, raw: raw } };
}
/** What the kit's fromConfig passed on: Target's keys it did not default. */
function passedByLibrary(source: Sched, Target: Cls): string[] {
  const ref = Target.fromConfig(source.config as Record<string, unknown>);
  const defaulted = new Set((ref.config._use_default_values as string[] | undefined) ?? []);
  return Object.keys(Target.configSpec.defaults).filter((k) => !defaulted.has(k)).sort();
}
/** Missing and extra keys as feedback. */
function keyFeedback(what: string, got: unknown, want: string[], source: Sched): ReturnType<typeof g.pass> {
  if (!Array.isArray(got)) return g.fail(`${what} should return an array of key names, but returned ${typeof got}.`);
  const have = new Set(got.map(String));
  const missing = want.filter((k) => !have.has(k));
  const extra = [...have].filter((k) => !want.includes(k));
  if (missing.length === 0 && extra.length === 0) return g.pass(`${what} = [${want.join(", ")}] matches.`);
  const defaulted = (source.config._use_default_values as string[] | undefined) ?? [];
  const extraWhy = extra.map((k) => `${k}${defaulted.includes(k) ? " (only defaulted by the source)" : !(k in source.config) ? " (not in the config)" : " (not a key of the target class)"}`);
  return g.fail(`${what}: expected [${want.join(", ")}]` + (missing.length ? `; missing ${missing.join(", ")}` : "") +
    (extra.length ? `; should not contain ${extraWhy.join(", ")}` : "") + ". The source's config._use_default_values lists the keys it only defaulted.");
}
/** Compares what the kernel reported of the student's scheduler with Target.fromConfig(source.config). */
function sameScheduler(what: string, got: any, source: Sched, Target: Cls, n: number): ReturnType<typeof g.pass> {
  const ref = Target.fromConfig(source.config as Record<string, unknown>);
  if (!got || got.className !== Target.className) {
    return g.fail(`${what} should be a new ${Target.className}, but it is ${got?.same ? "the source scheduler itself (returned unchanged)" : String(got?.className ?? got)}.`);
  }
  const diff = Object.keys(Target.configSpec.defaults).filter((k) => JSON.stringify(got.config?.[k]) !== JSON.stringify(ref.config[k]));
  if (diff.length) {
    return g.fail(`${what}: config differs from ${Target.className}.fromConfig(source.config) in ` +
      diff.map((k) => `${k} = ${JSON.stringify(got.config?.[k])} (expected ${JSON.stringify(ref.config[k])})`).join(", ") + ".");
  }
  ref.setTimesteps(n);
  return g.compareArray(`${what} timesteps for ${n} steps`, got.timesteps, ref.timesteps);
}
// the model the notebook's setup cell loads: SD 1.5 from the Hub (or the cache), else the kit's small shapes model
const MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5", OFFLINE_FOLDER = "../datasets/sd-tiny";
const { pipe, source: model } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, MODEL_ID, OFFLINE_FOLDER, { quiet: true });
const sdScheduler = await lib.PNDMScheduler.fromPretrained(model, { subfolder: "scheduler" });   // SD 1.5's scheduler_config.json
// prompts in the offline model's vocabulary (plain English for SD 1.5 too)
const prompt = (c: typeof g): string => lib.shapesPrompt(c);
const baseConfig = { ...pipe.scheduler.config } as Record<string, unknown>;
/** Counts calls of pipe.unet.forward while fn runs. */
async function counting<T>(fn: () => Promise<T>): Promise<{ result: T; calls: number }> {
  const unet = pipe.unet;
  const forward = unet.forward;
  let calls = 0;
  unet.forward = function (this: typeof unet, ...args: Parameters<typeof forward>) { calls++; return forward.apply(this, args); };
  try {
    const result = await fn();
    return { result: result, calls: calls };
  } finally {
    unet.forward = forward;
  }
}
/** Random arguments of measureTradeOff with scheduler `name`. */
function tradeOffArgs(c: typeof g, name: string) {
  return { scheduler: name, stepCounts: [c.int(2, 3), c.int(4, 5)], referenceSteps: c.int(6, 8), prompt: prompt(c), seed: c.newSeed(), guidance: Math.round(c.uniform(3, 9) * 10) / 10 };
}
/** The judge's own trade-off rows for those arguments. */
async function tradeOff(a: ReturnType<typeof tradeOffArgs>) {
  const run = (steps: number) => counting(async () => (await pipe.generate({ prompt: a.prompt, numInferenceSteps: steps, guidanceScale: a.guidance,
    generator: new lib.Generator().manualSeed(a.seed), outputType: "latent" })).images);
  pipe.scheduler = cls(a.scheduler).fromConfig(baseConfig);
  const ref = await run(a.referenceSteps);
  const rows: { steps: number; modelCalls: number; distance: number }[] = [];
  for (const steps of a.stepCounts) {
    const r = await run(steps);
    rows.push({ steps: steps, modelCalls: r.calls, distance: tf.tidy(() => tf.sqrt(tf.mean(tf.square(tf.sub(r.result, ref.result)))).dataSync()[0]) });
    r.result.dispose();
  }
  ref.result.dispose();
  const call = `measureTradeOff(pipe, [${a.stepCounts}], ${a.referenceSteps}, "${a.prompt}", ${a.seed}, ${a.guidance}) with ${a.scheduler} on ${model}`;
  return { rows, call };
}
return { NAMES, cls, randomSource, passedByLibrary, keyFeedback, sameScheduler, sdScheduler, tradeOffArgs, tradeOff };

//@@ kernel-setup
// the same model as the notebook's setup cell and the judge: SD 1.5 from the Hub (or the cache), else datasets/sd-tiny
const { pipe, source: model } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, "stable-diffusion-v1-5/stable-diffusion-v1-5", "../datasets/sd-tiny", { quiet: true });
console.log(`hidden checks on ${model}`);
const sdScheduler = await lib.PNDMScheduler.fromPretrained(model, { subfolder: "scheduler" });
const baseConfig = { ...pipe.scheduler.config } as Record<string, unknown>;
type Cls = { className: string; fromConfig(config: Record<string, unknown>): typeof pipe.scheduler };
const cls = (name: string) => lib.getSchedulerClass(name) as unknown as Cls;
/** The judge's source scheduler: SD 1.5's, or a class and raw config. */
const source = (r: { sd?: boolean; className: string; raw: Record<string, unknown> }) => (r.sd ? sdScheduler : cls(r.className).fromConfig(r.raw));
/** What the judge needs of the scheduler a student's swap returned: its class, config and timesteps for n steps. */
function report(got: any, src: unknown, n: number) {
  if (!got || typeof got !== "object") return got;
  let timesteps: unknown = null;
  try { got.setTimesteps(n); timesteps = Array.from(got.timesteps); } catch { timesteps = null; }
  return { className: got.constructor?.className ?? got.constructor?.name, same: got === src, config: got.config, timesteps: timesteps };
}
/** The pipeline with a fresh scheduler of class `name` from the model's config. */
function withScheduler(name: string) {
  pipe.scheduler = cls(name).fromConfig(baseConfig);
  return pipe;
}
return { cls, source, report, withScheduler };

//@@ check keys 3 keysPassedOn() lists the keys fromConfig takes over
const cases = [0, 1, 2].map(() => ({ ...h.randomSource(g), Target: h.cls(g.pick(h.NAMES)) }));
const calls = cases.map((c) => g.student("keysPassedOn", "keys", { source: c.recipe, target: c.Target.className }));
const results = [];
for (const [i, c] of cases.entries()) {
  results.push(h.keyFeedback(`keysPassedOn(${c.source.constructor.name} config with _use_default_values [${c.source.config._use_default_values ?? ""}], ${c.Target.className})`,
    await calls[i], h.passedByLibrary(c.source, c.Target), c.source));
}
return g.all(...results);
//@@ kernel
return { keys: (a: any) => keysPassedOn(k.source(a.source).config, k.cls(a.target) as any) };

//@@ check swap 3 swapScheduler() builds what fromConfig builds (random pairs, and SD 1.5's PNDM config -> Euler)
const cases = [
  { source: h.sdScheduler, recipe: { sd: true, className: "PNDMScheduler", raw: {} }, Target: h.cls("EulerDiscreteScheduler") },
  { ...h.randomSource(g), Target: h.cls(g.pick(h.NAMES)) },
  { ...h.randomSource(g), Target: h.cls(g.pick(h.NAMES)) },
].map((c) => ({ ...c, n: g.int(4, 30) }));
const calls = cases.map((c) => g.student("swapScheduler", "swap", { source: c.recipe, target: c.Target.className, n: c.n }));
const results = [];
for (const [i, c] of cases.entries()) {
  results.push(h.sameScheduler(`swapScheduler(${c.source.constructor.name}, ${c.Target.className})`, await calls[i], c.source, c.Target, c.n));
}
return g.all(...results);
//@@ kernel
return {
  swap: (a: any) => {
    const src = k.source(a.source);
    return k.report(swapScheduler(src as any, k.cls(a.target) as any), src, a.n);
  },
};

//@@ check by-hand 1 the swap is written without fromConfig
return g.byHand(["keys", "swap"], /fromConfig\s*\(|schedulerFromName\s*\(|\[\s*["'`](fromConfig|schedulerFromName)["'`]\s*\]/,
  "call fromConfig: the exercise is to do what it does by hand (filter the keys, then new Target(...)).",
  "keysPassedOn and swapScheduler do the key filtering themselves.");

//@@ check calls 2 measureTradeOff() counts UNet calls (Heun: two per step)
const a = h.tradeOffArgs(g, "HeunDiscreteScheduler");
const pending = g.student<any>("measureTradeOff", "tradeoff", a);
const r = await h.tradeOff(a);
const got = await pending;
if (!Array.isArray(got) || got.length !== r.rows.length) return g.fail(`${r.call} should return ${r.rows.length} rows, one per step count; got ${Array.isArray(got) ? got.length + " rows" : typeof got}.`);
return g.all(
  g.compareArray(`${r.call}: steps`, got.map((x) => x?.steps), r.rows.map((x) => x.steps)),
  g.compareArray(`${r.call}: modelCalls`, got.map((x) => x?.modelCalls), r.rows.map((x) => x.modelCalls), {
    atol: 0, rtol: 0, hint: "count the calls of pipe.unet.forward during each run (countUnetCalls): Heun calls the UNet twice per step (2n − 1 in all)." }),
);
//@@ kernel
return { tradeoff: (a: any) => measureTradeOff(k.withScheduler(a.scheduler), a.stepCounts, a.referenceSteps, a.prompt, a.seed, a.guidance) };

//@@ check distance 2 measureTradeOff() measures the distance to the reference run
const a = h.tradeOffArgs(g, g.pick(["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler"]));
const pending = g.student<any>("measureTradeOff", "tradeoff", a);
const r = await h.tradeOff(a);
const got = await pending;
if (!Array.isArray(got) || got.length !== r.rows.length) return g.fail(`${r.call} should return ${r.rows.length} rows, one per step count; got ${Array.isArray(got) ? got.length + " rows" : typeof got}.`);
return g.compareArray(`${r.call}: distance`, got.map((x) => x?.distance), r.rows.map((x) => x.distance), {
  atol: 1e-5, rtol: 1e-3, hint: "the same seed for every run (a new Generator().manualSeed(seed) each time), outputType \"latent\", and rmsDistance to the referenceSteps run.",
});
//@@ kernel
return { tradeoff: (a: any) => measureTradeOff(k.withScheduler(a.scheduler), a.stepCounts, a.referenceSteps, a.prompt, a.seed, a.guidance) };
