// Hidden checks of exercises/01-ddpm-step.ipynb (see grader/src/checks-file.ts for the format).
// Every run draws a new scheduler config, timesteps and tensors; the student's functions are compared with
// DDPMScheduler.step (diffusers' scheduling_ddpm.py) and with DDPM eq. 7. The judge (setup, checks) runs in the
// grader's process; the kernel parts only call the student's functions on the judge's inputs.
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
/** What the kernel rebuilds the scheduler from (its config and step count) and the step's inputs. */
function stepArgs(s: InstanceType<typeof lib.DDPMScheduler>, t: number, i: ReturnType<typeof inputs>) {
  return { scheduler: { config: s.config, steps: s.numInferenceSteps }, t: t, x: i.x, eps: i.eps, z: i.z };
}
/** One step: asks for the student's x_{t'}, and `judge(hint)` compares it with DDPMScheduler.step's. */
function step(c: typeof g, s: InstanceType<typeof lib.DDPMScheduler>, t: number) {
  const i = inputs(c);
  const got = c.student<unknown>("ddpmStep", "step", stepArgs(s, t, i));
  const judge = async (hint: string) => {
    const out = s.step(i.eps, t, i.x, { noise: i.z });
    const call = `ddpmStep(scheduler, eps, ${t}, x, noise) of shape [${i.x.shape}] for ${describe(s)}`;
    const r = c.compare(call, await got, out.prevSample, { atol: 1e-4, rtol: 1e-4, inputs: { x: i.x, eps: i.eps, noise: i.z }, hint: hint });
    tf.dispose([i.x, i.eps, i.z, out.prevSample, out.predOriginalSample]);
    return r;
  };
  return { judge };
}
return { randomScheduler, describe, inputs, stepArgs, step };

//@@ kernel-setup
/** The judge's scheduler, rebuilt from its config and number of inference steps. */
function scheduler(r: { config: Record<string, unknown>; steps: number }) {
  const s = new lib.DDPMScheduler(r.config);
  s.setTimesteps(r.steps);
  return s;
}
return { scheduler };

//@@ check posterior 3 posterior(): the coefficients and variance of DDPM eq. 7
const s = h.randomScheduler(g, false);
const ts = [g.pick(s.timesteps.slice(0, -1)), g.pick(s.timesteps.slice(0, -1)), s.timesteps[s.timesteps.length - 1]];
const calls = ts.map((t: number) => g.student(`posterior(alphasCumprod, ${t}, ${s.previousTimestep(t)})`, "posterior", { alphasCumprod: s.alphasCumprod, t: t, prevT: s.previousTimestep(t) }));
const results = [];
for (const [i, t] of ts.entries()) {
  const got = await calls[i];
  const prevT = s.previousTimestep(t);
  const a = s.alphasCumprod[t], ap = prevT >= 0 ? s.alphasCumprod[prevT] : 1;
  const beta = 1 - a / ap;
  const call = `posterior(alphasCumprod, ${t}, ${prevT}) for ${h.describe(s)}:`;
  const hint = prevT < 0 ? "t' < 0 here: use ᾱ_{t'} = 1." : "α'_t = ᾱ_t / ᾱ_{t'} and β'_t = 1 − α'_t (not betas[t]: the step spans several training steps).";
  results.push(
    g.compareNumber(`${call} x0Coeff`, got?.x0Coeff, (Math.sqrt(ap) * beta) / (1 - a), { atol: 1e-9, rtol: 1e-5, hint }),
    g.compareNumber(`${call} xtCoeff`, got?.xtCoeff, (Math.sqrt(a / ap) * (1 - ap)) / (1 - a), { atol: 1e-9, rtol: 1e-5, hint }),
    g.compareNumber(`${call} variance`, got?.variance, ((1 - ap) / (1 - a)) * beta, { atol: 1e-12, rtol: 1e-5, hint }),
  );
}
return g.all(...results);
//@@ kernel
return { posterior: (a: any) => posterior(a.alphasCumprod, a.t, a.prevT) };

//@@ check step 4 ddpmStep() equals DDPMScheduler.step (t > 0, no clipping)
const s = h.randomScheduler(g, false);
const t = g.pick(s.timesteps.slice(0, -1));
return h.step(g, s, t).judge("x̂0 = (x − √(1−ᾱ_t)·eps)/√ᾱ_t, μ̃ = x0Coeff·x̂0 + xtCoeff·x, then + √β̃·noise.");
//@@ kernel
return { step: (a: any) => ddpmStep(k.scheduler(a.scheduler), a.eps, a.t, a.x, a.z) };

//@@ check clip 2 ddpmStep() clips x̂0 when the config says clip_sample
const s = h.randomScheduler(g, true);
const t = s.timesteps[g.int(0, 3)];   // early (noisy) steps: x̂0 goes far outside the clip range
return h.step(g, s, t).judge(`when scheduler.config.clip_sample is true, clip x̂0 to [−clip_sample_range, clip_sample_range] (here ±${s.config.clip_sample_range}) before μ̃.`);
//@@ kernel
return { step: (a: any) => ddpmStep(k.scheduler(a.scheduler), a.eps, a.t, a.x, a.z) };

//@@ check last-step 1 ddpmStep() adds no noise at t = 0
const s = h.randomScheduler(g, false);
const t = s.timesteps[s.timesteps.length - 1];
return h.step(g, s, t).judge("the noise term is added only when t > 0.");
//@@ kernel
return { step: (a: any) => ddpmStep(k.scheduler(a.scheduler), a.eps, a.t, a.x, a.z) };

//@@ check no-leak 1 ddpmStep() leaves no tensors behind (and is right)
const s = h.randomScheduler(g, false);
const i = h.inputs(g);
const ts = s.timesteps.slice(0, 3);
const got = await g.student<any>("ddpmStep", "leak", { ...h.stepArgs(s, 0, i), ts: ts });
const want = s.step(i.eps, ts[0], i.x, { noise: i.z });
const right = g.compare(`ddpmStep(scheduler, eps, ${ts[0]}, x, noise)`, got?.first, want.prevSample, { atol: 1e-4, rtol: 1e-4 });
tf.dispose([i.x, i.eps, i.z, want.prevSample, want.predOriginalSample]);
if (!right.passed) return g.fail(`The leak check counts only for a correct step. ${right.feedback}`);
const left = got.left;
return left === 0
  ? g.pass("three calls left no tensor behind.")
  : g.fail(`three calls left ${left} tensors behind (${Number(left) / 3} per call): wrap the body in tf.tidy(() => { ...; return result; }).`);
//@@ kernel
// tensors three calls leave in the kernel besides their results, and the first result
return {
  leak: (a: any) => {
    const s = k.scheduler(a.scheduler);
    const before = tf.memory().numTensors;
    const outs: unknown[] = a.ts.map((t: number) => ddpmStep(s, a.eps, t, a.x, a.z));
    const left = tf.memory().numTensors - before - outs.filter((o) => o instanceof tf.Tensor).length;
    tf.dispose(outs.slice(1) as tf.Tensor[]);
    return { left: left, first: outs[0] };
  },
};

//@@ check by-hand 1 ddpmStep() is written by hand, not with the scheduler's own step
return g.byHand(["posterior", "step"], /\.\s*step\s*\(|\[\s*["'`]step["'`]\s*\]|addNoise\s*\(/,
  "call the scheduler's step: the exercise is to write DDPM eq. 7 yourself with scheduler.alphasCumprod.",
  "the step is computed from the formulas.");
