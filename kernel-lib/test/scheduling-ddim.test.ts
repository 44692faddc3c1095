import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { TOL, expectClose, fixture, loadFixture, nchwToNhwc } from "./helpers.js";
import { CFG_NAMES, fixtureJson, firstDiff, rawConfig, runTrajectory, trainSchedule, expectResolved, resolvedConfig, expectSchedules } from "./scheduler-fixtures.js";

describe("DDIMScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (both variants)`, () => {
      for (const variant of ["DDIMScheduler", "DDIMScheduler_eta0.5"]) {
        expectResolved(DDIMScheduler.fromConfig(rawConfig(cfg)).config, resolvedConfig(cfg, variant));
      }
    });

    it(`${cfg}: betas / alphas_cumprod bit for bit; final_alpha_cumprod per set_alpha_to_one`, () => {
      const s = DDIMScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
      // sd15 says set_alpha_to_one false; ddpm_cat has no key, so DDIM's default true applies
      expect(s.finalAlphaCumprod).toBe(cfg === "sd15" ? ref.alphasCumprod[0] : 1);
    });

    it(`${cfg}: set_timesteps(N) for N in {1,4,10,20,25,50}, init_noise_sigma, order`, () => {
      for (const variant of ["DDIMScheduler", "DDIMScheduler_eta0.5"]) {
        const s = DDIMScheduler.fromConfig(rawConfig(cfg));
        expectSchedules(cfg, variant, s, { extra: (n) => expect(s.numInferenceSteps).toBe(n) });
      }
    });
  }

  it("trailing / linspace spacings and other beta schedules", () => {
    const s = DDIMScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "trailing" });
    s.setTimesteps(4);
    expect(s.timesteps).toEqual([999, 749, 499, 249]);
    const l = DDIMScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "linspace" });
    l.setTimesteps(4);
    expect(l.timesteps).toEqual([999, 666, 333, 0]);
    const c = DDIMScheduler.fromConfig({ beta_schedule: "squaredcos_cap_v2" });
    expect(Array.from(c.betas)).toEqual(Array.from(DDPMScheduler.fromConfig({ beta_schedule: "squaredcos_cap_v2" }).betas));
    const z = DDIMScheduler.fromConfig(rawConfig("sd15"), { rescale_betas_zero_snr: true });
    expect(z.alphasCumprod[999]).toBe(0);
  });

  it("errors: DDIM has no sigmoid schedule; bad keys; step before setTimesteps; too many steps", () => {
    expect(() => DDIMScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(
      /DDIMScheduler: config "beta_schedule" is "sigmoid"; supported: "linear", "scaled_linear", "squaredcos_cap_v2"/,
    );
    expect(() => DDIMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "foo" })).toThrow(
      /config "prediction_type" is "foo"; supported: "epsilon", "sample", "v_prediction"/,
    );
    expect(() => DDIMScheduler.fromConfig({ timestep_spacing: "uniform" })).toThrow(/"timestep_spacing" is "uniform"; supported/);
    expect(() => DDIMScheduler.fromConfig({ set_alpha_to_one: 1 })).toThrow(/key "set_alpha_to_one" is 1 \(number\), expected boolean/);
    expect(() => DDIMScheduler.fromConfig({ trained_betas: "0.1" })).toThrow(/key "trained_betas" is "0.1" \(string\), expected array\|null/);
    const s = DDIMScheduler.fromConfig(rawConfig("sd15"));
    const x = tf.zeros([1, 2, 2, 4]);
    expect(() => s.step(x, 901, x)).toThrow(/call setTimesteps\(n\)/);
    expect(() => s.setTimesteps(2000)).toThrow(/num_inference_steps 2000 cannot be larger than num_train_timesteps 1000/);
    s.setTimesteps(10);
    expect(() => s.step(x, 1000, x)).toThrow(/timestep 1000 must be an integer in \[0, 999\]/);
    expect(() => s.step(x, 500.5, x)).toThrow(/must be an integer/);
    expect(() => s.step(tf.zeros([1, 2, 2, 3]), 901, x)).toThrow(/modelOutput: shape \[1,2,2,3\] does not match/);
    expect(() => s.step(x, 901, x, { eta: 0.5, generator: new Generator(), noise: x })).toThrow(/both generator and variance noise/);
    expect(() => s.step(x, 901, x, { eta: 0.5, noise: x, varianceNoise: x })).toThrow(/not both/);
    expect(() => s.step(x, 901, x, { eta: 0.5, noise: tf.zeros([1, 2, 2, 1]) })).toThrow(/noise must be a tensor of the sample's shape/);
    expect(DDIMScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass("DDIMScheduler")).toBe(DDIMScheduler);
    x.dispose();
  });
});

describe("DDIMScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: eta 0`, () => {
      const before = tf.memory().numTensors;
      const r = runTrajectory(cfg, "DDIMScheduler", DDIMScheduler.fromConfig(rawConfig(cfg)), { eta: 0 });
      expect(r.steps).toBe(10);
      expect(tf.memory().numTensors).toBe(before);
    });
    it(`${cfg}: eta 0.5 with the stored noise`, () => {
      const before = tf.memory().numTensors;
      const r = runTrajectory(cfg, "DDIMScheduler_eta0.5", DDIMScheduler.fromConfig(rawConfig(cfg)), { eta: 0.5 });
      expect(r.steps).toBe(10);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe("DDIMScheduler: add_noise / get_velocity vs diffusers", () => {
  it("both configs", () => {
    const t = loadFixture("schedulers", "add_noise.safetensors");
    const cases = fixtureJson("schedulers", "add_noise.json").cases;
    const original = nchwToNhwc(t.original);
    const noise = nchwToNhwc(t.noise);
    for (const cfg of CFG_NAMES) {
      const s = DDIMScheduler.fromConfig(rawConfig(cfg));
      for (const c of ["t10_500", "t999_0"]) {
        const key = `${cfg}/DDIMScheduler/add_noise/${c}`;
        const out = s.addNoise(original, noise, cases[key].timesteps);
        const ref = nchwToNhwc(t[key]);
        expectClose(out, ref, TOL.scheduler.atol, TOL.scheduler.rtol, key);
        tf.dispose([out, ref]);
      }
      const key = `${cfg}/DDIMScheduler/get_velocity/t10_500`;
      const ts = tf.tensor1d([10, 500], "int32");
      const v = s.getVelocity(original, noise, ts);
      const ref = nchwToNhwc(t[key]);
      expectClose(v, ref, TOL.scheduler.atol, TOL.scheduler.rtol, key);
      tf.dispose([v, ref, ts]);
    }
    tf.dispose([original, noise, ...Object.values(t)]);
  });
});

describe("DDIMScheduler: step options", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("{ generator } equals { noise / varianceNoise: NCHW randn of the same seed, transposed }", () => {
    const s = DDIMScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const x = mk(1), mo = mk(2);
    const a = s.step(mo, 501, x, { eta: 0.7, generator: new Generator().manualSeed(9) });
    const zn = new Generator().manualSeed(9).randn([1, 3, 4, 4]);
    const z = nchwToNhwc(zn);
    const b = s.step(mo, 501, x, { eta: 0.7, noise: z });
    const c = s.step(mo, 501, x, { eta: 0.7, varianceNoise: z });
    expectClose(a.prevSample, b.prevSample, 0);
    expectClose(c.prevSample, b.prevSample, 0);
    // eta = 0 ignores noise and never draws
    const g = new Generator().manualSeed(3);
    const d0 = s.step(mo, 501, x, { generator: g });
    const d1 = s.step(mo, 501, x, { noise: z });
    expectClose(d0.prevSample, d1.prevSample, 0);
    expect(g.randnArray([3])).toEqual(new Generator().manualSeed(3).randnArray([3]));
    tf.dispose([x, mo, zn, z, a, b, c, d0, d1].flatMap((o) => (o instanceof tf.Tensor ? [o] : [o.prevSample, o.predOriginalSample])));
  });

  it("eta = 1 reproduces DDPM's fixed_small step (same x_0, same noise, same posterior)", () => {
    const ddim = DDIMScheduler.fromConfig(rawConfig("sd15"));
    const ddpm = DDPMScheduler.fromConfig(rawConfig("sd15"));
    ddim.setTimesteps(10);
    ddpm.setTimesteps(10);
    const x = mk(1), mo = mk(2), z = mk(3);
    const a = ddim.step(mo, 501, x, { eta: 1, noise: z });
    const b = ddpm.step(mo, 501, x, { noise: z });
    expectClose(a.predOriginalSample, b.predOriginalSample, 1e-6, 1e-6);
    expectClose(a.prevSample, b.prevSample, 2e-5, 1e-5);
    tf.dispose([x, mo, z, a.prevSample, a.predOriginalSample, b.prevSample, b.predOriginalSample]);
  });

  it("prediction types, clipping and use_clipped_model_output", () => {
    const x = mk(1), mo = mk(2);
    const a0 = (s: DDIMScheduler, t: number) => s.alphasCumprod[t];
    // sample prediction: x_0 = model output; epsilon derived back from it
    const s = DDIMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "sample" });
    s.setTimesteps(10);
    const out = s.step(mo, 501, x);
    expectClose(out.predOriginalSample, mo, 0);
    // v prediction: x_0 = sqrt(a) x - sqrt(1-a) v
    const v = DDIMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    v.setTimesteps(10);
    const vo = v.step(mo, 501, x);
    const a = a0(v, 501);
    const x0 = tf.sub(tf.mul(x, Math.sqrt(a)), tf.mul(mo, Math.sqrt(1 - a)));
    expectClose(vo.predOriginalSample, x0, 1e-6, 1e-6);
    // with clipping, use_clipped_model_output re-derives epsilon from the clipped x_0: then the step
    // equals sqrt(a_prev) x0c + sqrt(1 - a_prev) (x - sqrt(a) x0c) / sqrt(1 - a)
    const big = tf.mul(mo, 20);
    const cl = DDIMScheduler.fromConfig(rawConfig("ddpm_cat"));
    cl.setTimesteps(10);
    const plain = cl.step(big, 500, x);
    const clipped = cl.step(big, 500, x, { useClippedModelOutput: true });
    expect(tf.max(tf.abs(plain.predOriginalSample)).dataSync()[0]).toBeLessThanOrEqual(1);
    const at = cl.alphasCumprod[500], ap = cl.alphasCumprod[400];
    const eps = tf.div(tf.sub(x, tf.mul(clipped.predOriginalSample, Math.sqrt(at))), Math.sqrt(1 - at));
    const expected = tf.add(tf.mul(clipped.predOriginalSample, Math.sqrt(ap)), tf.mul(eps, Math.sqrt(1 - ap)));
    expectClose(clipped.prevSample, expected, 1e-5, 1e-5);
    expect(tf.max(tf.abs(tf.sub(plain.prevSample, clipped.prevSample))).dataSync()[0]).toBeGreaterThan(1e-3);
    tf.dispose([x, mo, out.prevSample, out.predOriginalSample, vo.prevSample, vo.predOriginalSample, x0, big]);
    tf.dispose([plain.prevSample, plain.predOriginalSample, clipped.prevSample, clipped.predOriginalSample, eps, expected]);
  });

  it("thresholding bounds x_0 by sample_max_value", () => {
    const s = DDIMScheduler.fromConfig(rawConfig("ddpm_cat"), { thresholding: true, sample_max_value: 1.5 });
    s.setTimesteps(10);
    const x = tf.mul(mk(1), 10), mo = mk(2);
    const out = s.step(mo, 900, x);
    expect(tf.max(tf.abs(out.predOriginalSample)).dataSync()[0]).toBeLessThanOrEqual(1 + 1e-6);
    tf.dispose([x, mo, out.prevSample, out.predOriginalSample]);
  });

  it("a stochastic 50-step loop leaves tf.memory().numTensors where it started", async () => {
    const s = await DDIMScheduler.fromPretrained(fixture("configs/stable-diffusion-v1-5"), { subfolder: "scheduler" });
    s.setTimesteps(50);
    const gen = new Generator().manualSeed(1);
    const before = tf.memory().numTensors;
    let x = gen.randn([2, 3, 3, 4]);
    for (const t of s.timesteps) {
      const xIn = s.scaleModelInput(x, t);
      const mo = tf.mul(xIn, 0.1);
      const out = s.step(mo, t, x, { eta: 0.3, generator: gen });
      tf.dispose([xIn, mo, x, out.predOriginalSample]);
      x = out.prevSample;
    }
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
