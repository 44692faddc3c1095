// Hidden checks of exercises/01-ddpm-step.ipynb (see grader/src/checks-file.ts for the format).
// Every run draws a new scheduler config, timesteps and tensors; the student's functions are compared with
// DDPMScheduler.step (diffusers' scheduling_ddpm.py) and with DDPM eq. 7.
//@@ exercise 01-ddpm-step
//@@ timeout 300

//@@ setup
/** A DDPMScheduler with a random beta schedule, length and number of inference steps. */
function randomScheduler(c: typeof g, clip: boolean) {
  const s = new lib.DDPMScheduler({
    num_train_timesteps: c.pick([1000, 500]),
    beta_schedule: c.pick(["linear", "scaled_linear", "squaredcos_cap_v2"]),
    beta_start: c.uniform(0.0001, 0.001),
    beta_end: c.uniform(0.01, 0.03),
    clip_sample: clip,
    clip_sample_range: c.pick([1, 1.5]),
  });
  s.setTimesteps(c.int(10, 60));
  return s;
}
function describe(s: InstanceType<typeof lib.DDPMScheduler>): string {
  const k = s.config;
  return `DDPMScheduler(${k.beta_schedule}, ${k.num_train_timesteps} train steps, clip_sample ${k.clip_sample}), ${s.numInferenceSteps} inference steps`;
}
/** Random NHWC inputs: x_t, the noise prediction and the step noise. */
function inputs(c: typeof g) {
  const shape = [c.int(1, 2), c.int(3, 9), c.int(3, 9), c.pick([1, 3, 4])];
  return { x: c.randn(shape, c.uniform(0.5, 2)), eps: c.randn(shape), z: c.randn(shape) };
}
/** Fresh inputs for one step, and `judge(got, hint)`: the student's x_{t'} against DDPMScheduler.step's. */
function reference(c: typeof g, s: InstanceType<typeof lib.DDPMScheduler>, t: number) {
  const { x, eps, z } = inputs(c);
  const out = s.step(eps, t, x, { noise: z });
  out.predOriginalSample.dispose();
  const call = `ddpmStep(scheduler, eps, ${t}, x, noise) of shape [${x.shape}] for ${describe(s)}`;
  const judge = (got: unknown, hint: string) => {
    const r = c.compare(call, got, out.prevSample, { atol: 1e-4, rtol: 1e-4, inputs: { x: x, eps: eps, noise: z }, hint: hint });
    tf.dispose([x, eps, z, out.prevSample]);
    return r;
  };
  return { x, eps, z, judge };
}
return { randomScheduler, describe, inputs, reference };

//@@ check posterior 3 posterior(): the coefficients and variance of DDPM eq. 7
const s = h.randomScheduler(g, false);
const results = [];
const ts = [g.pick(s.timesteps.slice(0, -1)), g.pick(s.timesteps.slice(0, -1)), s.timesteps[s.timesteps.length - 1]];
for (const t of ts) {
  const prevT = s.previousTimestep(t);
  const a = s.alphasCumprod[t], ap = prevT >= 0 ? s.alphasCumprod[prevT] : 1;
  const beta = 1 - a / ap;
  const got = await g.student(`posterior(alphasCumprod, ${t}, ${prevT})`, () => posterior(s.alphasCumprod, t, prevT));
  const call = `posterior(alphasCumprod, ${t}, ${prevT}) for ${h.describe(s)}:`;
  const hint = prevT < 0 ? "t' < 0 here: use ᾱ_{t'} = 1." : "α'_t = ᾱ_t / ᾱ_{t'} and β'_t = 1 − α'_t (not betas[t]: the step spans several training steps).";
  results.push(
    g.compareNumber(`${call} x0Coeff`, got?.x0Coeff, (Math.sqrt(ap) * beta) / (1 - a), { atol: 1e-9, rtol: 1e-5, hint }),
    g.compareNumber(`${call} xtCoeff`, got?.xtCoeff, (Math.sqrt(a / ap) * (1 - ap)) / (1 - a), { atol: 1e-9, rtol: 1e-5, hint }),
    g.compareNumber(`${call} variance`, got?.variance, ((1 - ap) / (1 - a)) * beta, { atol: 1e-12, rtol: 1e-5, hint }),
  );
}
return g.all(...results);

//@@ check step 4 ddpmStep() equals DDPMScheduler.step (t > 0, no clipping)
const s = h.randomScheduler(g, false);
const t = g.pick(s.timesteps.slice(0, -1));
const r = h.reference(g, s, t);
return r.judge(await g.student("ddpmStep", () => ddpmStep(s, r.eps, t, r.x, r.z)),
  "x̂0 = (x − √(1−ᾱ_t)·eps)/√ᾱ_t, μ̃ = x0Coeff·x̂0 + xtCoeff·x, then + √β̃·noise.");

//@@ check clip 2 ddpmStep() clips x̂0 when the config says clip_sample
const s = h.randomScheduler(g, true);
const t = s.timesteps[g.int(0, 3)];   // early (noisy) steps: x̂0 goes far outside the clip range
const r = h.reference(g, s, t);
return r.judge(await g.student("ddpmStep", () => ddpmStep(s, r.eps, t, r.x, r.z)),
  `when scheduler.config.clip_sample is true, clip x̂0 to [−clip_sample_range, clip_sample_range] (here ±${s.config.clip_sample_range}) before μ̃.`);

//@@ check last-step 1 ddpmStep() adds no noise at t = 0
const s = h.randomScheduler(g, false);
const t = s.timesteps[s.timesteps.length - 1];
const r = h.reference(g, s, t);
return r.judge(await g.student("ddpmStep", () => ddpmStep(s, r.eps, t, r.x, r.z)), "the noise term is added only when t > 0.");

//@@ check no-leak 1 ddpmStep() leaves no tensors behind
const s = h.randomScheduler(g, false);
const { x, eps, z } = h.inputs(g);
const before = tf.memory().numTensors;
for (const t of s.timesteps.slice(0, 3)) {
  const out = await g.student("ddpmStep", () => ddpmStep(s, eps, t, x, z));
  if (!(out instanceof tf.Tensor)) return g.fail(`ddpmStep returned ${typeof out}, not a tensor`);
  out.dispose();
}
const left = tf.memory().numTensors - before;
tf.dispose([x, eps, z]);
return left === 0
  ? g.pass("three calls left no tensor behind.")
  : g.fail(`three calls left ${left} tensors behind (${left / 3} per call): wrap the body in tf.tidy(() => { ...; return result; }).`);
