import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { UniPCMultistepScheduler, solveF32 } from "../src/schedulers/scheduling-unipc-multistep.js";
import { DPMSolverMultistepScheduler } from "../src/schedulers/scheduling-dpmsolver-multistep.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { expectClose, loadFixture } from "./helpers.js";
import { CFG_NAMES, fixtureJson, firstDiff, rawConfig, runTrajectory, trainSchedule } from "./scheduler-fixtures.js";

const resolved = fixtureJson("schedulers", "configs_resolved.json").resolved;
const VARIANT = "UniPCMultistepScheduler";
const NS = [1, 4, 10, 20, 25, 50];

describe("UniPCMultistepScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers'`, () => {
      const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg));
      const { _use_default_values: ours, ...oursRest } = s.config;
      const { _use_default_values: theirs, ...theirsRest } = resolved[cfg][VARIANT];
      expect(oursRest).toEqual(theirsRest);
      expect([...(ours ?? [])].sort()).toEqual([...theirs].sort());
    });

    it(`${cfg}: betas / alphas_cumprod bit for bit`, () => {
      const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
    });

    it(`${cfg}: timesteps, sigmas (ending at sigma(t=0), not 0), init_noise_sigma, order for N in {${NS}}`, () => {
      const tens = loadFixture("schedulers", `schedules_${cfg}.safetensors`);
      try {
        const ref = fixtureJson("schedulers", `schedules_${cfg}.json`).schedulers[VARIANT].steps;
        const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg));
        for (const n of NS) {
          s.setTimesteps(n);
          expect(s.timesteps, `N=${n}`).toEqual(ref[n].timesteps);
          expect(s.timesteps).toEqual(Array.from(tens[`${VARIANT}/steps${n}/timesteps`].dataSync()));
          expect(s.numInferenceSteps).toBe(ref[n].len_timesteps);
          expect(s.initNoiseSigma).toBe(ref[n].init_noise_sigma);
          expect(s.order).toBe(ref[n].order);
          expect(firstDiff(s.sigmas, tens[`${VARIANT}/steps${n}/sigmas`].dataSync()), `N=${n} sigmas`).toBeNull();
          expect(s.sigmas[n]).toBe(Math.fround(Math.sqrt(Math.fround((1 - s.alphasCumprod[0]) / s.alphasCumprod[0]))));
          expect(s.sigmas[n]).toBeGreaterThan(0);
        }
      } finally {
        tf.dispose(Object.values(tens));
      }
    });
  }
});

describe("UniPCMultistepScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: bh2, order 2, predict_x0`, () => {
      const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg));
      const before = tf.memory().numTensors;
      const r = runTrajectory(cfg, VARIANT, s);
      expect(r.steps).toBe(10);
      expect(s.modelOutputs.every((m) => m === null)).toBe(true);
      expect(s.lastSample).toBeNull();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
