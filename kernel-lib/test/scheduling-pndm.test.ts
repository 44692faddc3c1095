import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { PNDMScheduler } from "../src/schedulers/scheduling-pndm.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { expectClose } from "./helpers.js";
import { CFG_NAMES, firstDiff, rawConfig, runTrajectory, trainSchedule, expectResolved, resolvedConfig, runLongLoop, expectSchedules } from "./scheduler-fixtures.js";

const NAME = "PNDMScheduler";

describe("PNDMScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (swaps between all ten: scheduler-swaps.test.ts)`, () => {
      expectResolved(PNDMScheduler.fromConfig(rawConfig(cfg)).config, resolvedConfig(cfg, NAME));
      const s = PNDMScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
      expect(s.finalAlphaCumprod).toBe(ref.alphasCumprod[0]); // set_alpha_to_one false for both
      expect(s.timesteps).toEqual([]); // None until setTimesteps
    });

    it(`${cfg}: set_timesteps(N) for N in {1,4,10,20,25,50} (and diffusers' error case)`, () => {
      const s = PNDMScheduler.fromConfig(rawConfig(cfg));
      expectSchedules(cfg, NAME, s, {
        // ddpm_cat: skip_prk_steps false and N = 1 -> numpy broadcast error in diffusers
        onError: (n, ref) => {
          expect(ref.error).toMatch(/operands could not be broadcast together with shapes \(2,\) \(8,\)/);
          expect(() => s.setTimesteps(n)).toThrow(/Runge-Kutta warm-up .* needs at least 4 inference steps, got 1.*shapes \(2,\) \(8,\)/);
        },
      });
    });
  }

  it("PRK timesteps: the last 4 spaced steps with midpoints; N = 2, 3 fail too; spacings", () => {
    const p = PNDMScheduler.fromConfig(rawConfig("ddpm_cat"));
    p.setTimesteps(4);
    expect(p.prkTimesteps).toEqual([750, 625, 625, 500, 500, 375, 375, 250, 250, 125, 125, 0]);
    expect(p.plmsTimesteps).toEqual([0]);
    expect(() => p.setTimesteps(2)).toThrow(/shapes \(4,\) \(8,\)/);
    expect(() => p.setTimesteps(3)).toThrow(/shapes \(6,\) \(8,\)/);
    expect(p.timesteps.length).toBe(13); // a failed call leaves the previous schedule
    const sd = PNDMScheduler.fromConfig(rawConfig("sd15"));
    sd.setTimesteps(10);
    expect(sd.prkTimesteps).toEqual([]);
    expect(sd.timesteps).toEqual([901, 801, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    const lin = PNDMScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "linspace" });
    lin.setTimesteps(4);
    expect(lin.timesteps).toEqual([999, 666, 666, 333, 0]);
    const tr = PNDMScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "trailing" });
    tr.setTimesteps(4);
    expect(tr.timesteps).toEqual([999, 749, 749, 499, 249]);
  });

  it("errors, registry, compatibles", () => {
    expect(() => PNDMScheduler.fromConfig({ prediction_type: "sample" })).toThrow(/"prediction_type" is "sample"; supported: "epsilon", "v_prediction"/);
    expect(() => PNDMScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(/"beta_schedule" is "sigmoid"/);
    const s = PNDMScheduler.fromConfig(rawConfig("ddpm_cat"));
    const x = tf.zeros([1, 2, 2, 3]);
    expect(() => s.step(x, 900, x)).toThrow(/call setTimesteps\(n\)/);
    s.setTimesteps(10);
    expect(() => s.stepPlms(x, 600, x)).toThrow(/12 Runge-Kutta warm-up steps/);
    expect(() => s.step(tf.zeros([1, 2, 2, 4]), 900, x)).toThrow(/does not match/);
    const sd = PNDMScheduler.fromConfig(rawConfig("sd15"));
    sd.setTimesteps(10);
    expect(() => sd.step(x, 1000.5, x)).toThrow(/timestep 1000.5 must be an integer/);
    sd.setTimesteps(1000);
    expect(sd.timesteps[0]).toBe(1000);
    expect(() => sd.step(x, 1000, x)).toThrow(/timestep 1000 must be an integer in \[0, 999\]/);
    expect(sd.ets.length).toBe(0); // nothing stored by the failed call
    expect(PNDMScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass(NAME)).toBe(PNDMScheduler);
    x.dispose();
  });
});

describe("PNDMScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: ${cfg === "sd15" ? "PLMS (skip_prk_steps), 11 calls" : "PRK warm-up + PLMS, 19 calls"}`, () => {
      const s = PNDMScheduler.fromConfig(rawConfig(cfg));
      const before = tf.memory().numTensors;
      const r = runTrajectory(cfg, NAME, s);
      expect(r.steps).toBe(cfg === "sd15" ? 11 : 19);
      expect(s.ets.length).toBe(4);
      s.dispose();
      expect(s.counter).toBe(0);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe("PNDMScheduler: step", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("eq. 9 is the DDIM (eta 0) step written with epsilon; the first PLMS pair is improved Euler", () => {
    const x = mk(1), e0 = mk(2), e1 = mk(3);
    const p = PNDMScheduler.fromConfig(rawConfig("sd15"));
    const d = DDIMScheduler.fromConfig(rawConfig("sd15"));
    p.setTimesteps(10);
    d.setTimesteps(10);
    const a = p.step(e0, 901, x);
    const ref = d.step(e0, 901, x);
    expectClose(a.prevSample, ref.prevSample, 1e-5, 1e-5);
    // second call at 801 restarts from x with (e0 + e1) / 2 over 901 -> 801
    const b = p.step(e1, 801, a.prevSample);
    const avg = tf.div(tf.add(e0, e1), 2);
    const ref2 = d.step(avg, 901, x);
    expectClose(b.prevSample, ref2.prevSample, 1e-5, 1e-5);
    expect(p.curSample).toBeNull();
    // v-prediction: eps = sqrt(abar) v + sqrt(1 - abar) x
    const pv = PNDMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    pv.setTimesteps(10);
    const v = pv.step(e0, 901, x);
    const ab = pv.alphasCumprod[901];
    const eps = tf.add(tf.mul(e0, Math.sqrt(ab)), tf.mul(x, Math.sqrt(1 - ab)));
    const ref3 = d.step(eps, 901, x);
    expectClose(v.prevSample, ref3.prevSample, 1e-5, 1e-5);
    tf.dispose([x, e0, e1, avg, eps, a.prevSample, b.prevSample, v.prevSample, ref, ref2, ref3].flatMap((o) => (o instanceof tf.Tensor ? [o] : [o.prevSample, o.predOriginalSample])));
    p.dispose();
    pv.dispose();
  });

  it("add_noise is DDPM's q(x_t | x_0)", () => {
    const x = mk(1), n = mk(2);
    const a = PNDMScheduler.fromConfig(rawConfig("sd15")).addNoise(x, n, [10]);
    const b = DDPMScheduler.fromConfig(rawConfig("sd15")).addNoise(x, n, [10]);
    expectClose(a, b, 0);
    tf.dispose([x, n, a, b]);
  });

  for (const cfg of CFG_NAMES) {
    it(`${cfg}: a 1000-step loop keeps at most 4 past outputs and leaves tf.memory().numTensors where it started`, () => {
      // sd15 at N = 1000: leading + steps_offset 1 gives t = 1000, out of range (an IndexError in diffusers too)
      const s = PNDMScheduler.fromConfig(rawConfig(cfg), cfg === "sd15" ? { steps_offset: 0 } : {});
      s.setTimesteps(1000);
      expect(s.timesteps.length).toBe(cfg === "sd15" ? 1001 : 1009);
      const { x, before } = runLongLoop(s, {
        afterStep: (_, before0) => {
          expect(s.ets.length).toBeLessThanOrEqual(4);
          expect(tf.memory().numTensors).toBeLessThanOrEqual(before0 + 1 + 4 + 2);
        },
      });
      x.dispose();
      s.setTimesteps(10); // frees the state
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
