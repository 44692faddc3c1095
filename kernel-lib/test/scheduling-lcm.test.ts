import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { LCMScheduler, type LCMSchedulerOutput } from "../src/schedulers/scheduling-lcm.js";
import { getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { TOL, compare, expectClose, loadFixture, nchwToNhwc, nhwcToNchw } from "./helpers.js";
import { CFG_NAMES, type CfgName, fixtureJson, firstDiff, rawConfig, runTrajectory, trainSchedule, runLongLoop, expectResolved, resolvedConfig, expectSchedules } from "./scheduler-fixtures.js";

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
      expectResolved(LCMScheduler.fromConfig(rawConfig(cfg)).config, resolvedConfig(cfg, VARIANT));
    });

    it(`${cfg}: betas / alphas_cumprod bit for bit; final_alpha_cumprod per set_alpha_to_one`, () => {
      const s = LCMScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
      expect(s.finalAlphaCumprod).toBe(cfg === "sd15" ? ref.alphasCumprod[0] : 1);
    });

    it(`${cfg}: set_timesteps(N) for N in {${NS}}, init_noise_sigma, order`, () => {
      const s = LCMScheduler.fromConfig(rawConfig(cfg));
      expectSchedules(cfg, VARIANT, s, { extra: (n) => expect(s.numInferenceSteps).toBe(n) });
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

describe("LCMScheduler: schedule options", () => {
  it("original_inference_steps, strength and custom timesteps, as diffusers' set_timesteps", () => {
    const s = LCMScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(4, { originalInferenceSteps: 100 }); // k = 10: 9, 19, ..., 999
    expect(s.timesteps).toEqual([999, 749, 499, 249]);
    s.setTimesteps(4, { strength: 0.5 }); // the first 25 of the 50 distillation steps: 19..499
    expect(s.timesteps).toEqual([499, 379, 259, 139]);
    expect(s.numInferenceSteps).toBe(4);
    s.setTimesteps(1);
    expect(s.timesteps).toEqual([999]);
    s.setTimesteps(50);
    expect(s.timesteps).toEqual(Array.from({ length: 50 }, (_, i) => 999 - 20 * i));
    // custom timesteps (warnings for off-schedule ones, as diffusers logs)
    const warn = console.warn;
    const warnings: string[] = [];
    console.warn = (m: string) => warnings.push(m);
    try {
      s.setTimesteps(null, { timesteps: [999, 759, 499, 259] });
      expect(s.timesteps).toEqual([999, 759, 499, 259]);
      expect(s.customTimesteps).toBe(true);
      expect(warnings).toEqual([]);
      s.setTimesteps(null, { timesteps: [900, 500] });
      expect(warnings.length).toBe(2);
      expect(warnings[0]).toMatch(/first custom timestep is 900, not 999/);
      expect(warnings[1]).toMatch(/custom timesteps 500 are not on the distillation schedule/);
      // strength < 1 keeps the last strength * n of them
      s.setTimesteps(null, { timesteps: [999, 759, 499, 259], strength: 0.5 });
      expect(s.timesteps).toEqual([499, 259]);
      expect(s.numInferenceSteps).toBe(4);
    } finally {
      console.warn = warn;
    }
  });

  it("errors", () => {
    const s = LCMScheduler.fromConfig(rawConfig("sd15"));
    const x = tf.zeros([1, 2, 2, 4]);
    expect(() => s.step(x, 999, x)).toThrow(/call setTimesteps\(n\)/);
    expect(() => s.setTimesteps()).toThrow(/exactly one of numInferenceSteps or options.timesteps/);
    expect(() => s.setTimesteps(4, { timesteps: [999] })).toThrow(/only one of/);
    expect(() => s.setTimesteps(51)).toThrow(/original_inference_steps x strength = 50 x 1 is smaller than num_inference_steps 51/);
    expect(() => s.setTimesteps(2000)).toThrow(/cannot be larger than num_train_timesteps 1000/);
    expect(() => s.setTimesteps(4, { originalInferenceSteps: 2000 })).toThrow(/original_inference_steps 2000 cannot be larger/);
    expect(() => s.setTimesteps(4, { strength: 0 })).toThrow(/strength must be in \(0, 1\]/);
    expect(() => s.setTimesteps(null, { timesteps: [500, 900] })).toThrow(/descending/);
    expect(() => s.setTimesteps(null, { timesteps: [1000, 900] })).toThrow(/start below num_train_timesteps 1000/);
    s.setTimesteps(4);
    expect(() => s.step(x, 998, x)).toThrow(/timestep 998 is not in the schedule \[999, 759, 499, 259\]/);
    expect(() => s.step(x, 1000, x)).toThrow(/integer in \[0, 999\]/);
    expect(() => s.step(tf.zeros([1, 2, 2, 1]), 999, x)).toThrow(/modelOutput: shape/);
    expect(() => LCMScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(/"beta_schedule" is "sigmoid"/);
    expect(() => LCMScheduler.fromConfig({ original_inference_steps: 4.5 })).toThrow(/expected integer/);
    expect(LCMScheduler.compatibles).toEqual([]);
    expect(getSchedulerClass("LCMScheduler")).toBe(LCMScheduler);
    x.dispose();
  });
});

describe("LCMScheduler: step", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("boundary-condition scalings c_skip = sigma_d^2 / ((st)^2 + sigma_d^2), c_out = st / sqrt((st)^2 + sigma_d^2); f(x, 0) = x", () => {
    const s = LCMScheduler.fromConfig(rawConfig("sd15"));
    expect(s.getScalingsForBoundaryCondition(0)).toEqual({ cSkip: 1, cOut: 0 });
    for (const t of [1, 99, 999]) {
      const { cSkip, cOut } = s.getScalingsForBoundaryCondition(t);
      const st = 10 * t;
      expect(Math.abs(cSkip / (0.25 / (st * st + 0.25)) - 1)).toBeLessThan(1e-6);
      expect(Math.abs(cOut / (st / Math.sqrt(st * st + 0.25)) - 1)).toBeLessThan(1e-6);
    }
    // ending at t = 0 the last step returns the sample itself
    const warn = console.warn;
    const warnings: string[] = [];
    console.warn = (m: string) => warnings.push(m);
    try {
      s.setTimesteps(null, { timesteps: [999, 0] });
    } finally {
      console.warn = warn;
    }
    expect(warnings).toEqual(["LCMScheduler: custom timesteps 0 are not on the distillation schedule; results may be unexpected"]);
    const x = mk(1), mo = mk(2);
    const a = s.step(mo, 999, x, { noise: mk(3) });
    const b = s.step(mo, 0, a.prevSample);
    expectClose(b.prevSample, a.prevSample, 0);
    expectClose(b.denoised, a.prevSample, 0);
    expect(b.prevSample).not.toBe(b.denoised);
    tf.dispose([x, mo, a.prevSample, a.denoised, b.prevSample, b.denoised]);
  });

  it("{ generator } draws NCHW randn on all but the last step; prediction types agree", () => {
    const s = LCMScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(2);
    const x = mk(1), mo = mk(2);
    const gen = new Generator().manualSeed(9);
    const a = s.step(mo, s.timesteps[0], x, { generator: gen });
    const last = s.step(mo, s.timesteps[1], x, { generator: gen });
    // the last step drew nothing
    const g2 = new Generator().manualSeed(9);
    const zn = g2.randn([1, 3, 4, 4]);
    expect(gen.randnArray([5])).toEqual(g2.randnArray([5]));
    const z = nchwToNhwc(zn);
    s.setTimesteps(2);
    const b = s.step(mo, s.timesteps[0], x, { noise: z });
    expectClose(a.prevSample, b.prevSample, 0);
    expectClose(last.prevSample, last.denoised, 0);

    // epsilon vs v vs sample of the same (x0, eps)
    const x0 = mk(4), eps = mk(5), t = 499;
    const ac = s.alphasCumprod[t];
    const xt = tf.tidy(() => tf.add(tf.mul(x0, Math.sqrt(ac)), tf.mul(eps, Math.sqrt(1 - ac))));
    const v = tf.tidy(() => tf.sub(tf.mul(eps, Math.sqrt(ac)), tf.mul(x0, Math.sqrt(1 - ac))));
    const outs = (["epsilon", "v_prediction", "sample"] as const).map((pt) => {
      const q = LCMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: pt });
      q.setTimesteps(null, { timesteps: [999, t] }); // t is the last step: no noise
      return q.step(pt === "epsilon" ? eps : pt === "sample" ? x0 : v, t, xt);
    });
    expectClose(outs[1].denoised, outs[0].denoised, 1e-5, 1e-5, "v");
    expectClose(outs[2].denoised, outs[0].denoised, 1e-5, 1e-5, "sample");
    const { cSkip, cOut } = s.getScalingsForBoundaryCondition(t);
    const want = tf.tidy(() => tf.add(tf.mul(x0, cOut), tf.mul(xt, cSkip)));
    expectClose(outs[2].denoised, want, 1e-6, 1e-6, "c_out x0 + c_skip x");
    tf.dispose([x, mo, zn, z, x0, eps, xt, v, want, a.prevSample, a.denoised, b.prevSample, b.denoised, last.prevSample, last.denoised]);
    tf.dispose(outs.flatMap((o) => [o.prevSample, o.denoised]));
  });

  it("clip_sample / thresholding bound x_0; addNoise / getVelocity are DDPM's", async () => {
    const { DDPMScheduler } = await import("../src/schedulers/scheduling-ddpm.js");
    const x = mk(1), mo = tf.mul(mk(2), 30);
    for (const kw of [{}, { thresholding: true, sample_max_value: 1.0 }]) {
      const s = LCMScheduler.fromConfig(rawConfig("ddpm_cat"), kw); // clip_sample true
      s.setTimesteps(null, { timesteps: [999, 499] });
      const out = s.step(mo, 499, x);
      const { cSkip, cOut } = s.getScalingsForBoundaryCondition(499);
      const x0 = tf.tidy(() => tf.div(tf.sub(out.denoised, tf.mul(x, cSkip)), cOut));
      expect(tf.max(tf.abs(x0)).dataSync()[0]).toBeLessThanOrEqual(1 + 1e-5);
      tf.dispose([out.prevSample, out.denoised, x0]);
    }
    const l = LCMScheduler.fromConfig(rawConfig("sd15"));
    const d = DDPMScheduler.fromConfig(rawConfig("sd15"));
    const a1 = l.addNoise(x, mo, [10]), a2 = d.addNoise(x, mo, [10]);
    const v1 = l.getVelocity(x, mo, [700]), v2 = d.getVelocity(x, mo, [700]);
    expectClose(a1, a2, 0);
    expectClose(v1, v2, 0);
    tf.dispose([x, mo, a1, a2, v1, v2]);
  });

  it("setBeginIndex starts mid-schedule; a 1000-step loop leaves tf.memory().numTensors where it started", () => {
    const s = LCMScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(4);
    s.setBeginIndex(2);
    const y = tf.ones(shape);
    const o = s.step(y, 499, y, { generator: new Generator().manualSeed(1) });
    expect(s.stepIndex).toBe(3);
    tf.dispose([y, o.prevSample, o.denoised]);

    const m = LCMScheduler.fromConfig(rawConfig("sd15"), { original_inference_steps: 1000 });
    m.setTimesteps(1000);
    expect(m.timesteps[0]).toBe(999);
    expect(m.timesteps[999]).toBe(0);
    const { x, before } = runLongLoop(m, { shape: [1, 2, 2, 3] });
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
