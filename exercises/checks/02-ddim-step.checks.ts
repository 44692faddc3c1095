// Hidden checks of exercises/02-ddim-step.ipynb: ddimSigma against DDIM eq. 16, ddimStep against
// DDIMScheduler.step (diffusers' scheduling_ddim.py) at η = 0 and η > 0 with given noise, on a fresh random
// scheduler config, timestep and tensors every run. The judge (setup, checks) runs in the grader's process; the
// kernel parts only call the student's functions on the judge's inputs.
//@@ exercise 02-ddim-step
//@@ timeout 300

//@@ setup
function randomScheduler(c: typeof g, opts: { clip?: boolean; alphaToOne?: boolean } = {}) {
  const s = new lib.DDIMScheduler({
    num_train_timesteps: c.pick([1000, 500]),
    beta_schedule: c.pick(["linear", "scaled_linear", "squaredcos_cap_v2"]),
    beta_start: c.uniform(0.0001, 0.001),
    beta_end: c.uniform(0.01, 0.03),
    clip_sample: opts.clip ?? false,
    clip_sample_range: c.pick([1, 1.5]),
    set_alpha_to_one: opts.alphaToOne ?? c.rand() < 0.5,
    steps_offset: c.pick([0, 1]),
  });
  s.setTimesteps(c.int(5, 50));
  return s;
}
type DDIM = InstanceType<typeof lib.DDIMScheduler>;
function describe(s: DDIM): string {
  const k = s.config;
  return `DDIMScheduler(${k.beta_schedule}, ${k.num_train_timesteps} train steps, clip_sample ${k.clip_sample}, set_alpha_to_one ${k.set_alpha_to_one}), ${s.numInferenceSteps} steps`;
}
/** What the kernel rebuilds the scheduler from. */
const recipe = (s: DDIM) => ({ config: s.config, steps: s.numInferenceSteps });
function sigma(s: DDIM, t: number, eta: number): number {
  const prevT = t - Math.floor(s.config.num_train_timesteps / s.numInferenceSteps!);
  const a = s.alphasCumprod[t], ap = prevT >= 0 ? s.alphasCumprod[prevT] : s.finalAlphaCumprod;
  return eta * Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
}
/** One step on fresh inputs: asks for the student's x_{t'}; `judge(hint)` compares it with DDIMScheduler.step's. */
function step(c: typeof g, s: DDIM, t: number, eta: number) {
  const shape = [c.int(1, 2), c.int(3, 9), c.int(3, 9), c.pick([1, 3, 4])];
  const x = c.randn(shape, c.uniform(0.5, 2)), eps = c.randn(shape), z = c.randn(shape);
  const got = c.student<unknown>("ddimStep", "step", { scheduler: recipe(s), t: t, eta: eta, x: x, eps: eps, z: z });
  const judge = async (hint: string) => {
    const out = s.step(eps, t, x, eta > 0 ? { eta: eta, noise: z } : { eta: 0 });
    const call = `ddimStep(scheduler, eps, ${t}, x, ${eta.toFixed(3)}, noise) of shape [${x.shape}] for ${describe(s)}`;
    const r = c.compare(call, await got, out.prevSample, { atol: 1e-4, rtol: 1e-4, inputs: { x: x, eps: eps, noise: z }, hint: hint });
    tf.dispose([x, eps, z, out.prevSample, out.predOriginalSample]);
    return r;
  };
  return { judge };
}
return { randomScheduler, describe, recipe, sigma, step };

//@@ kernel-setup
/** The judge's scheduler, rebuilt from its config and number of steps. */
function scheduler(r: { config: Record<string, unknown>; steps: number }) {
  const s = new lib.DDIMScheduler(r.config);
  s.setTimesteps(r.steps);
  return s;
}
return { scheduler };

//@@ check sigma 2 ddimSigma(): σ_t(η) of eq. 16
const s = h.randomScheduler(g);
const cases: [number, number][] = [[g.pick(s.timesteps.slice(0, -1)), g.uniform(0.1, 1)], [s.timesteps[s.timesteps.length - 1], g.uniform(0.1, 1)], [g.pick(s.timesteps), 0]];
const calls = cases.map(([t, eta]) => g.student(`ddimSigma(scheduler, ${t}, ${eta.toFixed(3)})`, "sigma", { scheduler: h.recipe(s), t: t, eta: eta }));
const results = [];
for (const [i, [t, eta]] of cases.entries()) {
  results.push(g.compareNumber(`ddimSigma(scheduler, ${t}, ${eta.toFixed(3)}) for ${h.describe(s)}`, await calls[i], h.sigma(s, t, eta), {
    atol: 1e-9, rtol: 1e-5,
    hint: "t' = t − ⌊T/n⌋; past the end ᾱ_{t'} = scheduler.finalAlphaCumprod; σ = η √((1−ᾱ_{t'})/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'}).",
  }));
}
return g.all(...results);
//@@ kernel
return { sigma: (a: any) => ddimSigma(k.scheduler(a.scheduler), a.t, a.eta) };

//@@ check eta-zero 3 ddimStep() at η = 0 equals DDIMScheduler.step (deterministic DDIM)
const s = h.randomScheduler(g);
const t = g.pick(s.timesteps.slice(0, -1));
return h.step(g, s, t, 0).judge("x_{t'} = √ᾱ_{t'} x̂0 + √(1 − ᾱ_{t'}) eps at η = 0 (no noise term).");
//@@ kernel
return { step: (a: any) => ddimStep(k.scheduler(a.scheduler), a.eps, a.t, a.x, a.eta, a.z) };

//@@ check eta-noise 3 ddimStep() at η > 0 with the given noise equals DDIMScheduler.step
const s = h.randomScheduler(g);
const t = g.pick(s.timesteps.slice(0, -1));
return h.step(g, s, t, g.uniform(0.2, 1)).judge("the direction term is √(1 − ᾱ_{t'} − σ²) eps, and σ·noise is added.");
//@@ kernel
return { step: (a: any) => ddimStep(k.scheduler(a.scheduler), a.eps, a.t, a.x, a.eta, a.z) };

//@@ check final-step 1 ddimStep() uses finalAlphaCumprod after the last timestep
const s = h.randomScheduler(g, { alphaToOne: g.rand() < 0.5 });
const t = s.timesteps[s.timesteps.length - 1];
return h.step(g, s, t, g.pick([0, 0.5])).judge("when t' < 0, ᾱ_{t'} is scheduler.finalAlphaCumprod (1 if set_alpha_to_one, else ᾱ_0).");
//@@ kernel
return { step: (a: any) => ddimStep(k.scheduler(a.scheduler), a.eps, a.t, a.x, a.eta, a.z) };

//@@ check clip 1 ddimStep() clips x̂0 when clip_sample is set
const s = h.randomScheduler(g, { clip: true });
const t = s.timesteps[g.int(0, 2)];
return h.step(g, s, t, 0).judge("clip x̂0 to ±clip_sample_range when scheduler.config.clip_sample is true.");
//@@ kernel
return { step: (a: any) => ddimStep(k.scheduler(a.scheduler), a.eps, a.t, a.x, a.eta, a.z) };

//@@ check by-hand 1 ddimStep() is written by hand, not with the scheduler's own step
return g.byHand(["sigma", "step"], /\.\s*(step|variance)\s*\(|\[\s*["'`](step|variance)["'`]\s*\]/,
  "call the scheduler's step or its variance: the exercise is to write DDIM eq. 12 and 16 yourself with scheduler.alphasCumprod.",
  "the step and σ are computed from the formulas.");
