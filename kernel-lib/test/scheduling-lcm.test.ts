import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { LCMScheduler, type LCMSchedulerOutput } from "../src/schedulers/scheduling-lcm.js";
import { getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { TOL, compare, expectClose, loadFixture, nchwToNhwc, nhwcToNchw } from "./helpers.js";
import { CFG_NAMES, type CfgName, fixtureJson, firstDiff, rawConfig, runTrajectory, trainSchedule } from "./scheduler-fixtures.js";

const resolved = fixtureJson("schedulers", "configs_resolved.json").resolved;
const VARIANT = "LCMScheduler";
const NS = [1, 4, 10, 20, 25, 50];

/**
 * The scheduler as runTrajectory sees it, with `step` also checking LCM's `denoised` output against
 * the fixture (runTrajectory knows prev_sample / pred_original_sample only) and disposing it.
 */
function checkingDenoised(cfg: CfgName, s: LCMScheduler, tensors: Record<string, tf.Tensor>, worst: { v: number }): LCMScheduler {
  let i = 0;
  return new Proxy(s, {
    get(target, prop, receiver) {
      if (prop !== "step") return Reflect.get(target, prop, receiver);
      return (mo: tf.Tensor, t: number, x: tf.Tensor, opts: object) => {
        const out: LCMSchedulerOutput = target.step(mo, t, x, opts);
        const ref = tensors[`${VARIANT}/step${String(i).padStart(2, "0")}/denoised`];
        const nchw = nhwcToNchw(out.denoised);
        const r = compare(nchw, ref, TOL.scheduler.atol, TOL.scheduler.rtol);
        tf.dispose([nchw, out.denoised]);
        worst.v = Math.max(worst.v, r.maxAbs);
        if (!r.ok) throw new Error(`${cfg} LCM step ${i} (t=${t}) denoised: max |diff| ${r.maxAbs} at [${r.where}]`);
        i++;
        return { prevSample: out.prevSample };
      };
    },
  });
}

describe("LCMScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers'`, () => {
      const s = LCMScheduler.fromConfig(rawConfig(cfg));
      const { _use_default_values: ours, ...oursRest } = s.config;
      const { _use_default_values: theirs, ...theirsRest } = resolved[cfg][VARIANT];
      expect(oursRest).toEqual(theirsRest);
      expect([...(ours ?? [])].sort()).toEqual([...theirs].sort());
    });

    it(`${cfg}: betas / alphas_cumprod bit for bit; final_alpha_cumprod per set_alpha_to_one`, () => {
      const s = LCMScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
      expect(s.finalAlphaCumprod).toBe(cfg === "sd15" ? ref.alphasCumprod[0] : 1);
    });

    it(`${cfg}: set_timesteps(N) for N in {${NS}}, init_noise_sigma, order`, () => {
      const tens = loadFixture("schedulers", `schedules_${cfg}.safetensors`);
      try {
        const ref = fixtureJson("schedulers", `schedules_${cfg}.json`).schedulers[VARIANT].steps;
        const s = LCMScheduler.fromConfig(rawConfig(cfg));
        for (const n of NS) {
          s.setTimesteps(n);
          expect(s.timesteps, `N=${n}`).toEqual(ref[n].timesteps);
          expect(s.timesteps).toEqual(Array.from(tens[`${VARIANT}/steps${n}/timesteps`].dataSync()));
          expect(s.numInferenceSteps).toBe(n);
          expect(s.initNoiseSigma).toBe(ref[n].init_noise_sigma);
          expect(s.order).toBe(ref[n].order);
        }
      } finally {
        tf.dispose(Object.values(tens));
      }
    });
  }
});

describe("LCMScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: stored noise on all but the last step; prev_sample and denoised`, () => {
      const meta = fixtureJson("schedulers", `trajectories_${cfg}.json`).variants[VARIANT];
      expect(meta.steps.map((s: { noise_calls: number[] }) => s.noise_calls.length)).toEqual([1, 1, 1, 1, 1, 1, 1, 1, 1, 0]);
      const tensors = loadFixture("schedulers", `trajectories_${cfg}.safetensors`);
      const before = tf.memory().numTensors;
      const worst = { v: 0 };
      const s = LCMScheduler.fromConfig(rawConfig(cfg));
      const r = runTrajectory(cfg, VARIANT, checkingDenoised(cfg, s, tensors, worst));
      expect(r.steps).toBe(10);
      expect(s.stepIndex).toBe(10);
      expect(tf.memory().numTensors).toBe(before);
      tf.dispose(Object.values(tensors));
    });
  }
});
