import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import {
  DPMSolverMultistepScheduler,
  multistepIndexForTimestep,
  multistepKarrasSigmas,
  multistepTimesteps,
  parseLambdaMinClipped,
  sigmaToAlphaSigmaT,
  multistepSigmaToT,
} from "../src/schedulers/scheduling-dpmsolver-multistep.js";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { expectClose, fixture, loadFixture, nchwToNhwc } from "./helpers.js";
import { CFG_NAMES, fixtureJson, firstDiff, rawConfig, runTrajectory, trainSchedule } from "./scheduler-fixtures.js";

const resolved = fixtureJson("schedulers", "configs_resolved.json").resolved;
const VARIANTS: Record<string, Record<string, unknown>> = {
  DPMSolverMultistepScheduler: {},
  DPMSolverMultistepScheduler_karras: { use_karras_sigmas: true },
};
const NS = [1, 4, 10, 20, 25, 50];

/** Python's -inf is written "-inf" in the fixture JSON. */
function normalise(c: Record<string, unknown>): Record<string, unknown> {
  const { _use_default_values: _u, ...rest } = c;
  return { ...rest, lambda_min_clipped: parseLambdaMinClipped("test", rest.lambda_min_clipped) };
}

describe("DPMSolverMultistepScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (default and karras)`, () => {
      for (const [variant, kw] of Object.entries(VARIANTS)) {
        const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg), kw);
        const theirs = resolved[cfg][variant];
        expect(normalise(s.config)).toEqual(normalise(theirs));
        expect(s.config.lambda_min_clipped).toBe(-Infinity);
        expect([...(s.config._use_default_values ?? [])].sort()).toEqual([...theirs._use_default_values].sort());
      }
    });

    it(`${cfg}: betas / alphas_cumprod bit for bit`, () => {
      const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
    });

    it(`${cfg}: timesteps, sigmas, init_noise_sigma, order for N in {${NS}} (default and karras)`, () => {
      const tens = loadFixture("schedulers", `schedules_${cfg}.safetensors`);
      try {
        for (const variant of Object.keys(VARIANTS)) {
          const ref = fixtureJson("schedulers", `schedules_${cfg}.json`).schedulers[variant].steps;
          const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg), VARIANTS[variant]);
          for (const n of NS) {
            s.setTimesteps(n);
            expect(s.timesteps, `${variant} N=${n}`).toEqual(ref[n].timesteps);
            expect(s.timesteps).toEqual(Array.from(tens[`${variant}/steps${n}/timesteps`].dataSync()));
            expect(s.numInferenceSteps).toBe(ref[n].len_timesteps);
            expect(s.initNoiseSigma).toBe(ref[n].init_noise_sigma);
            expect(s.order).toBe(ref[n].order);
            const sig = tens[`${variant}/steps${n}/sigmas`].dataSync();
            expect(firstDiff(s.sigmas, sig), `${variant} N=${n} sigmas`).toBeNull();
          }
        }
      } finally {
        tf.dispose(Object.values(tens));
      }
    });
  }
});

describe("DPMSolverMultistepScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    for (const [variant, kw] of Object.entries(VARIANTS)) {
      it(`${cfg}: ${variant}`, () => {
        const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg), kw);
        const before = tf.memory().numTensors;
        const r = runTrajectory(cfg, variant, s);
        expect(r.steps).toBe(10);
        expect(s.stepIndex).toBe(10);
        // the history is released after the final step
        expect(s.modelOutputs.every((m) => m === null)).toBe(true);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }
});
