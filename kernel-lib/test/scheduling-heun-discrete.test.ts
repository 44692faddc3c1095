import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { HeunDiscreteScheduler } from "../src/schedulers/scheduling-heun-discrete.js";
import { KarrasDiffusionSchedulers, betasForAlphaBar, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { expectClose } from "./helpers.js";
import { CFG_NAMES, rawConfig, runTrajectory, expectResolved, resolvedConfig, runLongLoop, expectSchedules } from "./scheduler-fixtures.js";

const NAME = "HeunDiscreteScheduler";

describe("HeunDiscreteScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (swaps between all ten: scheduler-swaps.test.ts)`, () => {
      expectResolved(HeunDiscreteScheduler.fromConfig(rawConfig(cfg)).config, resolvedConfig(cfg, NAME));
    });

    it(`${cfg}: set_timesteps(N) for N in {1,4,10,20,25,50}: repeated float32 timesteps and sigmas, init_noise_sigma, order 2`, () => {
      const s = HeunDiscreteScheduler.fromConfig(rawConfig(cfg));
      expect(s.numInferenceSteps).toBe(1000); // the constructor's schedule, as diffusers
      expect(s.timesteps.length).toBe(1999);
      expectSchedules(cfg, NAME, s, {
        extra: (n) => {
          expect(s.timesteps.length).toBe(2 * n - 1);
          expect(s.order).toBe(2);
        },
      });
    });
  }

  it("exp beta schedule, karras sigmas, errors, registry", () => {
    const e = HeunDiscreteScheduler.fromConfig({ beta_schedule: "exp" });
    expect(Array.from(e.betas)).toEqual(Array.from(betasForAlphaBar(1000, 0.999, "exp")));
    const k = HeunDiscreteScheduler.fromConfig(rawConfig("sd15"), { use_karras_sigmas: true });
    k.setTimesteps(4);
    expect(k.timesteps.length).toBe(7);
    expect(k.timesteps[1]).toBe(k.timesteps[2]);
    expect(k.sigmas.length).toBe(8);
    expect(k.sigmas[7]).toBe(0);
    expect(() => HeunDiscreteScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(/"beta_schedule" is "sigmoid"/);
    expect(() => HeunDiscreteScheduler.fromConfig({ prediction_type: "x0" })).toThrow(/"prediction_type" is "x0"/);
    expect(HeunDiscreteScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass(NAME)).toBe(HeunDiscreteScheduler);
  });
});

describe("HeunDiscreteScheduler: 10-step trajectories vs diffusers (19 model evaluations)", () => {
  for (const cfg of CFG_NAMES) {
    it(cfg, () => {
      const s = HeunDiscreteScheduler.fromConfig(rawConfig(cfg));
      const before = tf.memory().numTensors;
      expect(runTrajectory(cfg, NAME, s).steps).toBe(19);
      // the last call is a first-order (Euler) step to sigma 0: diffusers keeps its state, so do we
      expect(s.stateInFirstOrder).toBe(false);
      expect(tf.memory().numTensors).toBe(before + 2);
      s.dispose();
      expect(s.stateInFirstOrder).toBe(true);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe("HeunDiscreteScheduler: step", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("two stages = Karras Alg. 1: x + (s1 - s0) (d(x, s0) + d(x', s1)) / 2; clip_sample; prediction types", () => {
    const x = mk(1);
    const model = (xs: tf.Tensor) => tf.tidy(() => tf.add(tf.mul(xs, 0.3), 0.1));
    const s = HeunDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const [s0, s1] = [s.sigmas[0], s.sigmas[1]];
    expect(s.stateInFirstOrder).toBe(true);
    const m0 = model(x);
    const a = s.step(m0, s.timesteps[0], x);
    expect(s.stateInFirstOrder).toBe(false);
    const m1 = model(a.prevSample);
    const b = s.step(m1, s.timesteps[1], a.prevSample);
    expect(s.stateInFirstOrder).toBe(true);
    expect(s.stepIndex).toBe(2);
    // epsilon model: d = eps; Euler predictor then trapezoid
    const xp = tf.add(x, tf.mul(m0, s1 - s0));
    expectClose(a.prevSample, xp, 1e-5, 1e-5);
    const xn = tf.add(x, tf.mul(tf.div(tf.add(m0, m1), 2), s1 - s0));
    expectClose(b.prevSample, xn, 1e-5, 1e-5);
    expect("predOriginalSample" in b).toBe(false); // SchedulerOutput, as diffusers
    // clip_sample: x_0 clipped to +-range, so d = (x - clip(x - sigma eps)) / sigma
    const c = HeunDiscreteScheduler.fromConfig(rawConfig("sd15"), { clip_sample: true, clip_sample_range: 0.5 });
    c.setTimesteps(10);
    const big = tf.mul(x, 10);
    const co = c.step(m0, c.timesteps[0], big);
    const x0c = tf.clipByValue(tf.sub(big, tf.mul(m0, s0)), -0.5, 0.5);
    const exp = tf.add(big, tf.mul(tf.div(tf.sub(big, x0c), s0), s1 - s0));
    expectClose(co.prevSample, exp, 1e-4, 1e-5);
    // sample prediction: x_0 = model output; v-prediction uses sigma_next in the second stage
    const sp = HeunDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "sample" });
    sp.setTimesteps(10);
    const so = sp.step(m0, sp.timesteps[0], x);
    expectClose(so.prevSample, tf.add(x, tf.mul(tf.div(tf.sub(x, m0), s0), s1 - s0)), 1e-5, 1e-5);
    const vp = HeunDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    vp.setTimesteps(10);
    const v1 = vp.step(m0, vp.timesteps[0], x);
    const v2 = vp.step(m1, vp.timesteps[1], v1.prevSample);
    const x0v = (mo: tf.Tensor, xs: tf.Tensor, sg: number) => tf.add(tf.mul(mo, -sg / Math.sqrt(sg * sg + 1)), tf.div(xs, sg * sg + 1));
    const d0 = tf.div(tf.sub(x, x0v(m0, x, s0)), s0);
    const d1 = tf.div(tf.sub(v1.prevSample, x0v(m1, v1.prevSample, s1)), s1);
    expectClose(v2.prevSample, tf.add(x, tf.mul(tf.div(tf.add(d0, d1), 2), s1 - s0)), 1e-4, 1e-5);
    tf.dispose([x, m0, m1, a.prevSample, b.prevSample, xp, xn, big, co.prevSample, x0c, exp, so.prevSample, v1.prevSample, v2.prevSample, d0, d1]);
    [s, c, sp, vp].forEach((q) => q.dispose());
  });

  it("setBeginIndex / a repeated timestep picks its second occurrence; step past the end throws", () => {
    const s = HeunDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(4);
    expect(s.indexForTimestep(s.timesteps[0])).toBe(0);
    expect(s.indexForTimestep(666)).toBe(2); // 666 occurs at 1 and 2
    const x = tf.zeros([1, 2, 2, 4]);
    s.setBeginIndex(6);
    const o = s.step(x, 0, x);
    expect(() => s.step(x, 0, x)).toThrow(/past the last timestep/);
    tf.dispose([x, o.prevSample]);
    s.dispose();
  });

  it("a 1000-step loop (1999 calls) leaves tf.memory().numTensors where it started", () => {
    const s = HeunDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(1000);
    const { x, before } = runLongLoop(s, {
      afterStep: (_, before0) => expect(tf.memory().numTensors).toBe(before0 + 1 + (s.stateInFirstOrder ? 0 : 2)),
    });
    expect(s.stepIndex).toBe(1999);
    x.dispose();
    s.setTimesteps(1000); // frees the kept state
    expect(tf.memory().numTensors).toBe(before);
  });
});
