// Shared helpers of the scheduler tests: the two real configs, the fixture JSONs, the README's
// 10-step trajectory loop run against the stored diffusers tensors, resolved-config comparison,
// and the long loop of the memory tests.
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { expect } from "vitest";
import { readConfigFile, type Config } from "../src/io/config.js";
import type { SchedulerMixin, SchedulerOutputWithOriginal } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { TOL, compare, expectClose, fixture, fixtureArrays, loadFixture, nchwToNhwc, nhwcToNchw } from "./helpers.js";

export type CfgName = "sd15" | "ddpm_cat";
export const CFG_NAMES: CfgName[] = ["sd15", "ddpm_cat"];

/** The raw scheduler_config.json dicts the fixtures were made from. */
export function rawConfig(cfg: CfgName): Config {
  return cfg === "sd15"
    ? readConfigFile(fixture("configs/stable-diffusion-v1-5/scheduler/scheduler_config.json"))
    : readConfigFile(fixture("configs/ddpm-cat-256/scheduler_config.json"));
}

export function fixtureJson<T = any>(...parts: string[]): T {
  return JSON.parse(fs.readFileSync(fixture(...parts), "utf8")) as T;
}

/** betas / alphas_cumprod of train_schedules.safetensors as Float32Arrays. */
export function trainSchedule(cfg: CfgName): { betas: Float32Array; alphasCumprod: Float32Array } {
  const t = fixtureArrays("schedulers", "train_schedules.safetensors");
  return { betas: t.get(`${cfg}/betas`)!.data as Float32Array, alphasCumprod: t.get(`${cfg}/alphas_cumprod`)!.data as Float32Array };
}

/** Index and value of the first difference, or null when identical. */
export function firstDiff(a: ArrayLike<number>, b: ArrayLike<number>): { i: number; a: number; b: number } | null {
  if (a.length !== b.length) return { i: -1, a: a.length, b: b.length };
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return { i, a: a[i], b: b[i] };
  return null;
}

/** `x_in * f32(0.1) + f32(0.05 * cos(t / 100))` in float32, as the fixture's fake model. */
export function fakeModel(xIn: tf.Tensor, t: number): tf.Tensor {
  return tf.tidy(() => tf.add(tf.mul(xIn, Math.fround(0.1)), Math.fround(0.05 * Math.cos(t / 100))));
}

export interface TrajectoryReport {
  steps: number;
  worst: Record<string, number>;
}

/**
 * Runs the README's 10-step loop for `variant` (fixture key) with `scheduler`, feeding the stored
 * noise draws as `{ noise }` in call order, and checks model_input / model_output / prev_sample /
 * pred_original_sample of every step (those the fixture stores) at TOL.scheduler. Fixtures are
 * NCHW; our API is NHWC. Returns the number of `step` calls (19 for 10-step Heun) and the worst diffs.
 */
export function runTrajectory(
  cfg: CfgName,
  variant: string,
  scheduler: SchedulerMixin,
  stepKwargs: Record<string, unknown> = {},
): TrajectoryReport {
  const meta = fixtureJson("schedulers", `trajectories_${cfg}.json`).variants[variant];
  const tensors = loadFixture("schedulers", `trajectories_${cfg}.safetensors`);
  const worst: Record<string, number> = { model_input: 0, model_output: 0, prev_sample: 0, pred_original_sample: 0 };
  const { atol, rtol } = TOL.scheduler;
  try {
    const n = meta.num_inference_steps as number;
    scheduler.setTimesteps(n);
    expect(scheduler.timesteps).toEqual(meta.timesteps);
    expect(scheduler.initNoiseSigma).toBe(meta.init_noise_sigma);
    // the fixture stores init_latents already multiplied by init_noise_sigma (sample0 * sigma)
    let latents: tf.Tensor = nchwToNhwc(tensors[`${variant}/init_latents`]);
    for (const [i, t] of scheduler.timesteps.entries()) {
      const stepMeta = meta.steps[i];
      expect(stepMeta.timestep).toBe(t);
      const key = (name: string) => `${variant}/step${String(i).padStart(2, "0")}/${name}`;
      const xIn = scheduler.scaleModelInput(latents, t);
      const mo = fakeModel(xIn, t);
      const calls: number[] = stepMeta.noise_calls;
      expect(calls.length).toBeLessThanOrEqual(1);
      const noise = calls.length === 1 ? nchwToNhwc(tensors[`${variant}/noise/${String(calls[0]).padStart(2, "0")}`]) : undefined;
      const out = scheduler.step(mo, t, latents, { ...stepKwargs, ...(noise ? { noise } : {}) }) as SchedulerOutputWithOriginal;
      const checks: [string, tf.Tensor][] = [
        ["model_input", xIn],
        ["model_output", mo],
        ["prev_sample", out.prevSample],
        ["pred_original_sample", out.predOriginalSample],
      ];
      for (const [name, ours] of checks) {
        if (!stepMeta.outputs.includes(name)) continue;
        const nchw = nhwcToNchw(ours);
        const r = compare(nchw, tensors[key(name)], atol, rtol);
        nchw.dispose();
        worst[name] = Math.max(worst[name], r.maxAbs);
        if (!r.ok) {
          throw new Error(
            `${cfg}/${variant} step ${i} (t=${t}) ${name}: max |diff| ${r.maxAbs.toExponential(3)} at [${r.where}] (ours ${r.actual}, diffusers ${r.expected})`,
          );
        }
      }
      tf.dispose([xIn, mo, noise, latents, out.predOriginalSample]);
      latents = out.prevSample;
    }
    latents.dispose();
    return { steps: scheduler.timesteps.length, worst };
  } finally {
    tf.dispose(Object.values(tensors));
  }
}

/**
 * Our config equals diffusers' resolved one (configs_resolved.json); `_use_default_values` is compared
 * as a set, and the fixture's "-inf" (Python's -inf, DPM-Solver's lambda_min_clipped) as -Infinity.
 */
export function expectResolved(config: Record<string, unknown>, ref: Record<string, unknown>, what?: string): void {
  const { _use_default_values: ours, ...oursRest } = config;
  const { _use_default_values: theirs, ...theirsRest } = ref;
  for (const [k, v] of Object.entries(theirsRest)) if (v === "-inf") theirsRest[k] = -Infinity;
  expect(oursRest, what).toEqual(theirsRest);
  expect([...((ours as string[]) ?? [])].sort(), what).toEqual([...((theirs as string[]) ?? [])].sort());
}

/** diffusers' `Class.from_config(raw)` result for `className` on config `cfg`. */
export function resolvedConfig(cfg: CfgName, className: string): Record<string, unknown> {
  return fixtureJson("schedulers", "configs_resolved.json").resolved[cfg][className];
}

/**
 * The memory tests' long loop over `s.timesteps` (call setTimesteps first): x_T from a seeded
 * Generator times init_noise_sigma, then per timestep scaleModelInput, a fake model output
 * x_in * 0.1 and step (the generator feeds stochastic steps); every output but prevSample is
 * disposed. `afterStep(i, before)` may check what the scheduler keeps. Returns the last sample
 * (finite; the caller disposes it) and tf.memory().numTensors before the loop.
 */
export function runLongLoop(
  s: SchedulerMixin,
  opts: { shape?: number[]; afterStep?: (i: number, before: number) => void } = {},
): { x: tf.Tensor; before: number } {
  const gen = new Generator().manualSeed(1);
  const before = tf.memory().numTensors;
  let x = tf.tidy(() => tf.mul(gen.randn(opts.shape ?? [1, 2, 2, 4]), s.initNoiseSigma));
  for (const [i, t] of s.timesteps.entries()) {
    const xIn = s.scaleModelInput(x, t);
    const mo = tf.mul(xIn, 0.1);
    const out = s.step(mo, t, x, { generator: gen }) as unknown as Record<string, tf.Tensor>;
    tf.dispose([xIn, mo, x, ...Object.entries(out).filter(([k]) => k !== "prevSample").map(([, v]) => v)]);
    x = out.prevSample;
    opts.afterStep?.(i, before);
  }
  expect(Number.isFinite(x.dataSync()[0])).toBe(true);
  return { x, before };
}

/** The step counts schedules_{cfg}.json holds. */
export const SCHEDULE_STEPS = [1, 4, 10, 20, 25, 50];

/**
 * setTimesteps(N) for every N of schedules_{cfg}: timesteps equal diffusers' (values and float32 /
 * int bits), `sigmas` bit for bit where the fixture has them, init_noise_sigma, order and the number
 * of timesteps. `extra(n, ref)` adds a class's own checks; where diffusers raised (`ref.error`)
 * `onError(n, ref)` must check our error instead.
 */
export function expectSchedules(
  cfg: CfgName,
  variant: string,
  s: SchedulerMixin,
  opts: { extra?: (n: number, ref: any) => void; onError?: (n: number, ref: any) => void } = {},
): void {
  const tens = loadFixture("schedulers", `schedules_${cfg}.safetensors`);
  try {
    const steps = fixtureJson("schedulers", `schedules_${cfg}.json`).schedulers[variant].steps;
    for (const n of SCHEDULE_STEPS) {
      const ref = steps[n];
      const what = `${cfg} ${variant} N=${n}`;
      if (ref.error !== undefined) {
        expect(opts.onError, `${what}: diffusers raised ${ref.error}`).toBeDefined();
        opts.onError!(n, ref);
        continue;
      }
      s.setTimesteps(n);
      expect(s.timesteps, what).toEqual(ref.timesteps);
      expect(firstDiff(s.timesteps, tens[`${variant}/steps${n}/timesteps`].dataSync()), what).toBeNull();
      expect(s.timesteps.length, what).toBe(ref.len_timesteps);
      const sigmas = tens[`${variant}/steps${n}/sigmas`];
      if (sigmas) expect(firstDiff((s as unknown as { sigmas: Float32Array }).sigmas, sigmas.dataSync()), `${what} sigmas`).toBeNull();
      expect(s.initNoiseSigma, what).toBe(ref.init_noise_sigma);
      expect(s.order, what).toBe(ref.order);
      opts.extra?.(n, ref);
    }
  } finally {
    tf.dispose(Object.values(tens));
  }
}

// ---------------------------------------------------------------------------------------------
// float64 re-derivations of the update rules on plain arrays (DPM-Solver and UniPC tests)

export type Arr = Float64Array;
/** The sample shape of the re-derivation tests, and its size. */
export const REF_SHAPE = [1, 4, 4, 3];
export const REF_SIZE = REF_SHAPE.reduce((a, b) => a * b);
/** sum_k c_k v_k in float64. */
export const lin = (terms: [number, Arr][]): Arr => {
  const out = new Float64Array(REF_SIZE);
  for (const [c, v] of terms) for (let i = 0; i < REF_SIZE; i++) out[i] += c * v[i];
  return out;
};
/** The fixture's fake model (0.1 x + 0.05 cos(t / 100)) in float64, and the same on tensors. */
export const fakeModel64 = (x: Arr, t: number): Arr => x.map((v) => 0.1 * v + 0.05 * Math.cos(t / 100));
export const fakeModelTf = (x: tf.Tensor, t: number) => tf.tidy(() => tf.add(tf.mul(x, 0.1), 0.05 * Math.cos(t / 100)));
/** torch.randn(REF_SIZE) of `seed` as float64. */
export const randArr = (seed: number): Arr => Float64Array.from(new Generator().manualSeed(seed).randnArray([REF_SIZE]));

/**
 * Our scheduler over its whole n-step schedule with the fake model (float32 tensors), from `x0`;
 * stochastic steps take `noises[k]` or draw from `generator`. Returns the final sample.
 */
export function runOurs(s: SchedulerMixin, n: number, x0: Arr, noises: Arr[] = [], generator?: Generator): Float32Array {
  s.setTimesteps(n);
  let x: tf.Tensor = tf.tensor(Float32Array.from(x0), REF_SHAPE);
  for (const [k, t] of s.timesteps.entries()) {
    const mo = fakeModelTf(x, t);
    const noise = noises[k] ? tf.tensor(Float32Array.from(noises[k]), REF_SHAPE) : undefined;
    const out = s.step(mo, t, x, generator ? { generator } : noise ? { noise } : {});
    tf.dispose([mo, x, noise]);
    x = out.prevSample;
  }
  const r = x.dataSync() as Float32Array;
  x.dispose();
  return r;
}

/** Elementwise closeness relative to the reference's largest magnitude (at least 1). */
export function relClose(ours: ArrayLike<number>, ref: ArrayLike<number>, tol: number, label: string): void {
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]));
  expectClose(ours, ref, tol * Math.max(scale, 1), 0, label);
}
