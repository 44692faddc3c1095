// Hidden checks of exercises/02-ddim-step.ipynb: ddimSigma against DDIM eq. 16, ddimStep against
// DDIMScheduler.step (diffusers' scheduling_ddim.py) at η = 0 and η > 0 with given noise, on a fresh random
// scheduler config, timestep and tensors every run.
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
function describe(s: InstanceType<typeof lib.DDIMScheduler>): string {
  const k = s.config;
  return `DDIMScheduler(${k.beta_schedule}, ${k.num_train_timesteps} train steps, clip_sample ${k.clip_sample}, set_alpha_to_one ${k.set_alpha_to_one}), ${s.numInferenceSteps} steps`;
}
function inputs(c: typeof g) {
  const shape = [c.int(1, 2), c.int(3, 9), c.int(3, 9), c.pick([1, 3, 4])];
  return { x: c.randn(shape, c.uniform(0.5, 2)), eps: c.randn(shape), z: c.randn(shape) };
}
function sigma(s: InstanceType<typeof lib.DDIMScheduler>, t: number, eta: number): number {
  const prevT = t - Math.floor(s.config.num_train_timesteps / s.numInferenceSteps!);
  const a = s.alphasCumprod[t], ap = prevT >= 0 ? s.alphasCumprod[prevT] : s.finalAlphaCumprod;
  return eta * Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
}
/** Fresh inputs for one step, and `judge(got, hint)`: the student's x_{t'} against DDIMScheduler.step's. */
function reference(c: typeof g, s: InstanceType<typeof lib.DDIMScheduler>, t: number, eta: number) {
  const { x, eps, z } = inputs(c);
  const out = s.step(eps, t, x, eta > 0 ? { eta: eta, noise: z } : { eta: 0 });
  out.predOriginalSample.dispose();
  const call = `ddimStep(scheduler, eps, ${t}, x, ${eta.toFixed(3)}, noise) of shape [${x.shape}] for ${describe(s)}`;
  const judge = (got: unknown, hint: string) => {
    const r = c.compare(call, got, out.prevSample, { atol: 1e-4, rtol: 1e-4, inputs: { x: x, eps: eps, noise: z }, hint: hint });
    tf.dispose([x, eps, z, out.prevSample]);
    return r;
  };
  return { x, eps, z, judge };
}
return { randomScheduler, describe, sigma, reference };

//@@ check sigma 2 ddimSigma(): σ_t(η) of eq. 16
const s = h.randomScheduler(g);
const results = [];
for (const [t, eta] of [[g.pick(s.timesteps.slice(0, -1)), g.uniform(0.1, 1)], [s.timesteps[s.timesteps.length - 1], g.uniform(0.1, 1)], [g.pick(s.timesteps), 0]]) {
  const got = await g.student(`ddimSigma(scheduler, ${t}, ${eta.toFixed(3)})`, () => ddimSigma(s, t, eta));
  results.push(g.compareNumber(`ddimSigma(scheduler, ${t}, ${eta.toFixed(3)}) for ${h.describe(s)}`, got, h.sigma(s, t, eta), {
    atol: 1e-9, rtol: 1e-5,
    hint: "t' = t − ⌊T/n⌋; past the end ᾱ_{t'} = scheduler.finalAlphaCumprod; σ = η √((1−ᾱ_{t'})/(1−ᾱ_t)) √(1 − ᾱ_t/ᾱ_{t'}).",
  }));
}
return g.all(...results);

//@@ check eta-zero 3 ddimStep() at η = 0 equals DDIMScheduler.step (deterministic DDIM)
const s = h.randomScheduler(g);
const t = g.pick(s.timesteps.slice(0, -1));
const eta = 0;
const r = h.reference(g, s, t, eta);
return r.judge(await g.student("ddimStep", () => ddimStep(s, r.eps, t, r.x, eta, r.z)), "x_{t'} = √ᾱ_{t'} x̂0 + √(1 − ᾱ_{t'}) eps at η = 0 (no noise term).");

//@@ check eta-noise 3 ddimStep() at η > 0 with the given noise equals DDIMScheduler.step
const s = h.randomScheduler(g);
const t = g.pick(s.timesteps.slice(0, -1));
const eta = g.uniform(0.2, 1);
const r = h.reference(g, s, t, eta);
return r.judge(await g.student("ddimStep", () => ddimStep(s, r.eps, t, r.x, eta, r.z)), "the direction term is √(1 − ᾱ_{t'} − σ²) eps, and σ·noise is added.");

//@@ check final-step 1 ddimStep() uses finalAlphaCumprod after the last timestep
const s = h.randomScheduler(g, { alphaToOne: g.rand() < 0.5 });
const t = s.timesteps[s.timesteps.length - 1];
const eta = g.pick([0, 0.5]);
const r = h.reference(g, s, t, eta);
return r.judge(await g.student("ddimStep", () => ddimStep(s, r.eps, t, r.x, eta, r.z)), "when t' < 0, ᾱ_{t'} is scheduler.finalAlphaCumprod (1 if set_alpha_to_one, else ᾱ_0).");

//@@ check clip 1 ddimStep() clips x̂0 when clip_sample is set
const s = h.randomScheduler(g, { clip: true });
const t = s.timesteps[g.int(0, 2)];
const eta = 0;
const r = h.reference(g, s, t, eta);
return r.judge(await g.student("ddimStep", () => ddimStep(s, r.eps, t, r.x, eta, r.z)), "clip x̂0 to ±clip_sample_range when scheduler.config.clip_sample is true.");
