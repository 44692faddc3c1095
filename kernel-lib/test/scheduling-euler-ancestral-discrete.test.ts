import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { EulerAncestralDiscreteScheduler } from "../src/schedulers/scheduling-euler-ancestral-discrete.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { expectClose, nchwToNhwc } from "./helpers.js";
import { CFG_NAMES, rawConfig, runTrajectory, expectResolved, resolvedConfig, runLongLoop, expectSchedules } from "./scheduler-fixtures.js";

const NAME = "EulerAncestralDiscreteScheduler";

describe("EulerAncestralDiscreteScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (swaps between all ten: scheduler-swaps.test.ts)`, () => {
      expectResolved(EulerAncestralDiscreteScheduler.fromConfig(rawConfig(cfg)).config, resolvedConfig(cfg, NAME));
    });

    it(`${cfg}: set_timesteps(N) for N in {1,4,10,20,25,50}: float32 timesteps, sigmas, init_noise_sigma, order`, () => {
      const s = EulerAncestralDiscreteScheduler.fromConfig(rawConfig(cfg));
      expect(s.sigmas.length).toBe(1001);
      expect(s.timesteps.length).toBe(1000);
      expectSchedules(cfg, NAME, s);
    });
  }

  it("leading spacing, errors, registry, compatibles", () => {
    const lead = EulerAncestralDiscreteScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "leading" });
    lead.setTimesteps(4);
    expect(lead.timesteps).toEqual([751, 501, 251, 1]);
    const m = lead.sigmas[0];
    expect(lead.initNoiseSigma).toBe(Math.fround(Math.sqrt(Math.fround(Math.fround(m * m) + 1))));
    expect(() => EulerAncestralDiscreteScheduler.fromConfig({ prediction_type: "sample" })).toThrow(
      /"prediction_type" is "sample"; supported: "epsilon", "v_prediction"/,
    );
    expect(() => EulerAncestralDiscreteScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(/"beta_schedule" is "sigmoid"/);
    const s = EulerAncestralDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const x = tf.zeros([1, 2, 2, 4]);
    expect(() => s.step(x, 998, x)).toThrow(/not one of the scheduler's timesteps/);
    expect(() => s.step(x, 999, x, { noise: tf.zeros([1, 2, 2, 1]) })).toThrow(/noise must be a tensor of the sample's shape/);
    expect(EulerAncestralDiscreteScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass(NAME)).toBe(EulerAncestralDiscreteScheduler);
    x.dispose();
  });
});

describe("EulerAncestralDiscreteScheduler: 10-step trajectories vs diffusers (stored noise)", () => {
  for (const cfg of CFG_NAMES) {
    it(cfg, () => {
      const before = tf.memory().numTensors;
      expect(runTrajectory(cfg, NAME, EulerAncestralDiscreteScheduler.fromConfig(rawConfig(cfg))).steps).toBe(10);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe("EulerAncestralDiscreteScheduler: step", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("sigma_up^2 + sigma_down^2 = sigma_next^2; { generator } equals { noise: NCHW draw transposed }; v-prediction", () => {
    const s = EulerAncestralDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const x = mk(1), mo = mk(2);
    const a = s.step(mo, s.timesteps[0], x, { generator: new Generator().manualSeed(8) });
    const zn = new Generator().manualSeed(8).randn([1, 3, 4, 4]);
    const z = nchwToNhwc(zn);
    s.setTimesteps(10);
    const b = s.step(mo, s.timesteps[0], x, { noise: z });
    expectClose(a.prevSample, b.prevSample, 0);
    // by hand (float64): x0 = x - sigma eps; x' = x + (sigma_down - sigma) eps + sigma_up z
    const [sf, st] = [s.sigmas[0], s.sigmas[1]];
    const up = Math.sqrt((st * st * (sf * sf - st * st)) / (sf * sf));
    const down = Math.sqrt(st * st - up * up);
    expect(up * up + down * down).toBeCloseTo(st * st, 9);
    const expected = tf.add(tf.add(x, tf.mul(mo, down - sf)), tf.mul(z, up));
    expectClose(b.prevSample, expected, 1e-5, 1e-5);
    const v = EulerAncestralDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    v.setTimesteps(10);
    const vo = v.step(mo, v.timesteps[0], x, { noise: z });
    const x0 = tf.add(tf.mul(mo, -sf / Math.sqrt(sf * sf + 1)), tf.div(x, sf * sf + 1));
    expectClose(vo.predOriginalSample, x0, 1e-5, 1e-5);
    // the last step (to sigma 0) adds no noise
    v.setTimesteps(10);
    v.setBeginIndex(9);
    const last = v.step(mo, v.timesteps[9], x, { noise: z });
    expectClose(last.prevSample, last.predOriginalSample, 1e-6, 1e-6);
    tf.dispose([x, mo, zn, z, expected, x0, ...[a, b, vo, last].flatMap((o) => [o.prevSample, o.predOriginalSample])]);
  });

  it("a 1000-step stochastic loop leaves tf.memory().numTensors where it started", () => {
    const s = EulerAncestralDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(1000);
    const { x, before } = runLongLoop(s);
    expect(s.stepIndex).toBe(1000);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
