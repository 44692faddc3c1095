// Hidden checks of exercises/04-scheduler-swap.ipynb: keysPassedOn / swapScheduler against the kit's fromConfig
// (diffusers' from_config with _use_default_values) on random scheduler configs and class pairs, plus SD 1.5's
// real config; measureTradeOff against the grader's own runs (UNet calls counted, RMS distances) on the model the
// notebook loads (SD 1.5 if the Hub or the cache has it, else datasets/sd-tiny, whose scheduler config is SD 1.5's).
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
/** A scheduler of a random class built from a random raw config (a random subset of the common keys). */
function randomSource(c: typeof g): Sched {
  const A = cls(c.pick(NAMES));
  const choices: Record<string, unknown[]> = {
    num_train_timesteps: [1000, 500], beta_start: [0.00085, 0.0001, 0.0005], beta_end: [0.012, 0.02, 0.015],
    beta_schedule: ["linear", "scaled_linear"], timestep_spacing: ["leading", "linspace", "trailing"], steps_offset: [0, 1],
    prediction_type: ["epsilon"],
  };
  const raw: Record<string, unknown> = { _class_name: A.className };
  for (const [k, vs] of Object.entries(choices)) if (c.rand() < 0.5) raw[k] = c.pick(vs);
  for (const [k, v] of Object.entries(A.configSpec.defaults)) if (!(k in raw) && typeof v === "boolean" && c.rand() < 0.3) raw[k] = v;
  return A.fromConfig(raw);
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
/** Compares a scheduler built by the student with Target.fromConfig(source.config): class, known keys, timesteps. */
function sameScheduler(what: string, got: unknown, source: Sched, Target: Cls): ReturnType<typeof g.pass> {
  const ref = Target.fromConfig(source.config as Record<string, unknown>);
  if (!(got instanceof (Target as unknown as new (...a: unknown[]) => object))) {
    return g.fail(`${what} should be a new ${Target.className}, but it is ${got === source ? "the source scheduler itself (returned unchanged)" : String((got as object)?.constructor?.name ?? got)}.`);
  }
  const mine = got as Sched;
  const diff = Object.keys(Target.configSpec.defaults).filter((k) => JSON.stringify(mine.config[k]) !== JSON.stringify(ref.config[k]));
  if (diff.length) {
    return g.fail(`${what}: config differs from ${Target.className}.fromConfig(source.config) in ` +
      diff.map((k) => `${k} = ${JSON.stringify(mine.config[k])} (expected ${JSON.stringify(ref.config[k])})`).join(", ") + ".");
  }
  const n = g.int(4, 30);
  mine.setTimesteps(n);
  ref.setTimesteps(n);
  return g.compareArray(`${what} timesteps for ${n} steps`, mine.timesteps, ref.timesteps);
}
// the model the notebook's setup cell loads: SD 1.5 from the Hub (or the cache), else the kit's small shapes model
const MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5", OFFLINE_FOLDER = "../datasets/sd-tiny";
const { pipe, source: model } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, MODEL_ID, OFFLINE_FOLDER, { quiet: true });
console.log(`hidden checks on ${model}`);
const sdScheduler = await lib.PNDMScheduler.fromPretrained(model, { subfolder: "scheduler" });   // SD 1.5's scheduler_config.json
// prompts in the offline model's vocabulary (plain English for SD 1.5 too)
const prompt = (c: typeof g): string => lib.shapesPrompt(c);
const baseConfig = { ...pipe.scheduler.config } as Record<string, unknown>;
/** Counts calls of pipe.unet.forward while fn runs (the student's own counter may wrap this one). */
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
/** The grader's own trade-off rows for scheduler `name`, then a fresh scheduler of that class for the student. */
async function tradeOff(c: typeof g, name: string) {
  const args = { stepCounts: [c.int(2, 3), c.int(4, 5)], referenceSteps: c.int(6, 8), prompt: prompt(c), seed: c.newSeed(), guidance: Math.round(c.uniform(3, 9) * 10) / 10 };
  const run = (steps: number) => counting(async () => (await pipe.generate({ prompt: args.prompt, numInferenceSteps: steps, guidanceScale: args.guidance,
    generator: new lib.Generator().manualSeed(args.seed), outputType: "latent" })).images);
  pipe.scheduler = cls(name).fromConfig(baseConfig);
  const ref = await run(args.referenceSteps);
  const rows: { steps: number; modelCalls: number; distance: number }[] = [];
  for (const steps of args.stepCounts) {
    const r = await run(steps);
    rows.push({ steps: steps, modelCalls: r.calls, distance: tf.tidy(() => tf.sqrt(tf.mean(tf.square(tf.sub(r.result, ref.result)))).dataSync()[0]) });
    r.result.dispose();
  }
  ref.result.dispose();
  pipe.scheduler = cls(name).fromConfig(baseConfig);
  const call = `measureTradeOff(pipe, [${args.stepCounts}], ${args.referenceSteps}, "${args.prompt}", ${args.seed}, ${args.guidance}) with ${name} on ${model}`;
  return { ...args, rows, call };
}
return { NAMES, cls, randomSource, passedByLibrary, keyFeedback, sameScheduler, sdScheduler, pipe, tradeOff };

//@@ check keys 3 keysPassedOn() lists the keys fromConfig takes over
const results = [];
for (let i = 0; i < 3; i++) {
  const source = h.randomSource(g);
  const Target = h.cls(g.pick(h.NAMES));
  const got = await g.student("keysPassedOn", () => keysPassedOn(source.config, Target));
  results.push(h.keyFeedback(`keysPassedOn(${source.constructor.name} config with _use_default_values [${source.config._use_default_values ?? ""}], ${Target.className})`, got, h.passedByLibrary(source, Target), source));
}
return g.all(...results);

//@@ check swap 3 swapScheduler() builds what fromConfig builds (random pairs, and SD 1.5's PNDM config -> Euler)
const results = [];
const cases: [ReturnType<typeof h.randomSource>, ReturnType<typeof h.cls>][] = [[h.sdScheduler, h.cls("EulerDiscreteScheduler")], [h.randomSource(g), h.cls(g.pick(h.NAMES))], [h.randomSource(g), h.cls(g.pick(h.NAMES))]];
for (const [source, Target] of cases) {
  const got = await g.student("swapScheduler", () => swapScheduler(source, Target));
  results.push(h.sameScheduler(`swapScheduler(${source.constructor.name}, ${Target.className})`, got, source, Target));
}
return g.all(...results);

//@@ check by-hand 1 the swap is written without fromConfig
const used = ["keys", "swap"].filter((t) => /fromConfig\s*\(|schedulerFromName\s*\(/.test(g.todoCode(t)));
return used.length === 0
  ? g.pass("keysPassedOn and swapScheduler do the key filtering themselves.")
  : g.fail(`the TODO cell(s) ${used.join(", ")} call fromConfig: the exercise is to do what it does by hand (filter the keys, then new Target(...)).`);

//@@ check calls 2 measureTradeOff() counts UNet calls (Heun: two per step)
const r = await h.tradeOff(g, "HeunDiscreteScheduler");
const got = await g.student("measureTradeOff", () => measureTradeOff(h.pipe, r.stepCounts, r.referenceSteps, r.prompt, r.seed, r.guidance));
if (!Array.isArray(got) || got.length !== r.rows.length) return g.fail(`${r.call} should return ${r.rows.length} rows, one per step count; got ${Array.isArray(got) ? got.length + " rows" : typeof got}.`);
return g.all(
  g.compareArray(`${r.call}: steps`, got.map((x) => x?.steps), r.rows.map((x) => x.steps)),
  g.compareArray(`${r.call}: modelCalls`, got.map((x) => x?.modelCalls), r.rows.map((x) => x.modelCalls), {
    atol: 0, rtol: 0, hint: "count the calls of pipe.unet.forward during each run (countUnetCalls): Heun calls the UNet twice per step (2n − 1 in all)." }),
);

//@@ check distance 2 measureTradeOff() measures the distance to the reference run
const r = await h.tradeOff(g, g.pick(["EulerDiscreteScheduler", "DPMSolverMultistepScheduler", "DDIMScheduler"]));
const got = await g.student("measureTradeOff", () => measureTradeOff(h.pipe, r.stepCounts, r.referenceSteps, r.prompt, r.seed, r.guidance));
if (!Array.isArray(got) || got.length !== r.rows.length) return g.fail(`${r.call} should return ${r.rows.length} rows, one per step count; got ${Array.isArray(got) ? got.length + " rows" : typeof got}.`);
return g.compareArray(`${r.call}: distance`, got.map((x) => x?.distance), r.rows.map((x) => x.distance), {
  atol: 1e-5, rtol: 1e-3, hint: "the same seed for every run (a new Generator().manualSeed(seed) each time), outputType \"latent\", and rmsDistance to the referenceSteps run.",
});
