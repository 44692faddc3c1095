// Shared helpers of the scheduler parity tests: the two real configs, the fixture JSONs, and the
// README's 10-step trajectory loop run against the stored diffusers tensors.
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { expect } from "vitest";
import { readConfigFile, type Config } from "../src/io/config.js";
import type { SchedulerMixin, SchedulerOutputWithOriginal } from "../src/schedulers/scheduling-utils.js";
import { TOL, compare, fixture, fixtureArrays, loadFixture, nchwToNhwc, nhwcToNchw } from "./helpers.js";

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
