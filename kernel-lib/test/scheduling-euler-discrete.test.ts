import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import {
  EulerDiscreteScheduler,
  interpOnIndex,
  karrasSigmas,
  logF32,
  sigmaToT,
  sigmasFromAlphasCumprod,
} from "../src/schedulers/scheduling-euler-discrete.js";
import { LMSDiscreteScheduler } from "../src/schedulers/scheduling-lms-discrete.js";
import { HeunDiscreteScheduler } from "../src/schedulers/scheduling-heun-discrete.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { TOL, expectClose, loadFixture, nchwToNhwc } from "./helpers.js";
import { CFG_NAMES, fixtureJson, firstDiff, rawConfig, runTrajectory, trainSchedule, expectResolved, resolvedConfig, runLongLoop, expectSchedules } from "./scheduler-fixtures.js";

const NAME = "EulerDiscreteScheduler";

describe("EulerDiscreteScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (swaps between all ten: scheduler-swaps.test.ts)`, () => {
      const direct = EulerDiscreteScheduler.fromConfig(rawConfig(cfg));
      expectResolved(direct.config, resolvedConfig(cfg, NAME));
      // a chain of swaps changes nothing either
      const chain = EulerDiscreteScheduler.fromConfig(
        HeunDiscreteScheduler.fromConfig(DDIMScheduler.fromConfig(LMSDiscreteScheduler.fromConfig(rawConfig(cfg)).config).config).config,
      );
      expectResolved(chain.config, resolvedConfig(cfg, NAME));
    });

    it(`${cfg}: explicit keys travel through swaps, defaulted ones do not; a saved config makes every key explicit`, () => {
      const e = EulerDiscreteScheduler.fromConfig(rawConfig(cfg), { prediction_type: "v_prediction" });
      const d = DDIMScheduler.fromConfig(e.config);
      expect(d.config.prediction_type).toBe("v_prediction"); // overridden, so passed on
      expect(d.config.timestep_spacing).toBe("leading"); // Euler only defaulted "linspace": DDIM uses its own default
      expect(EulerDiscreteScheduler.fromConfig(d.config).config.timestep_spacing).toBe("linspace");
      const saved = JSON.parse(EulerDiscreteScheduler.fromConfig(rawConfig(cfg)).toJsonString());
      expect(saved._use_default_values).toBeUndefined();
      expect(DDIMScheduler.fromConfig(saved).config.timestep_spacing).toBe("linspace");
    });

    it(`${cfg}: training sigmas from diffusers' alphas_cumprod`, () => {
      const s = EulerDiscreteScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
      // before setTimesteps: all 1000 training sigmas (largest first) and a final 0
      expect(s.sigmas.length).toBe(1001);
      expect(s.sigmas[0]).toBe(Math.fround(Math.sqrt(Math.fround((1 - ref.alphasCumprod[999]) / ref.alphasCumprod[999]))));
      expect(s.sigmas[1000]).toBe(0);
      expect(s.timesteps[0]).toBe(999);
      expect(s.numInferenceSteps).toBeNull();
    });

    it(`${cfg}: set_timesteps(N) for N in {1,4,10,20,25,50}: float32 timesteps, sigmas, init_noise_sigma, order`, () => {
      const s = EulerDiscreteScheduler.fromConfig(rawConfig(cfg));
      expectSchedules(cfg, NAME, s, {
        extra: (n, ref) => {
          expect(ref.timesteps_dtype).toBe("float32");
          expect(s.sigmas[s.sigmas.length - 1]).toBe(0);
          expect(s.numInferenceSteps).toBe(n);
        },
      });
    });
  }

  it("np.interp on the training grid; Karras sigmas (eq. 5) and sigma_to_t", () => {
    expect(Array.from(interpOnIndex([0, 0.5, 2, 2.5, -1, 7], [1, 3, 5]))).toEqual([1, 2, 5, 5, 1, 5]);
    const k = karrasSigmas(0.1, 10, 5);
    expect(k[0]).toBeCloseTo(10, 12);
    expect(k[4]).toBeCloseTo(0.1, 12);
    // equal steps in sigma^(1/7)
    const r = Array.from(k, (x) => x ** (1 / 7));
    for (let i = 1; i < 4; i++) expect(r[i + 1] - r[i]).toBeCloseTo(r[1] - r[0], 12);
    // sigma_to_t inverts the training sigmas (exactly at grid points, log-linearly in between)
    const s = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"));
    const train = sigmasFromAlphasCumprod(s.alphasCumprod);
    const logs = logF32(train);
    expect(sigmaToT(train[500], logs)).toBeCloseTo(500, 5);
    expect(sigmaToT(train[999], logs)).toBeCloseTo(999, 5);
    expect(sigmaToT(train[0], logs)).toBeCloseTo(0, 5);
    const mid = Math.exp((Math.log(train[10]) + Math.log(train[11])) / 2);
    expect(sigmaToT(mid, logs)).toBeCloseTo(10.5, 4);
    expect(sigmaToT(1e6, logs)).toBe(999);
    expect(sigmaToT(0, logs)).toBe(0);
  });

  it("use_karras_sigmas, sigma_min / sigma_max, log_linear, leading / trailing, continuous timesteps", () => {
    const k = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { use_karras_sigmas: true });
    k.setTimesteps(10);
    const base = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"));
    base.setTimesteps(10);
    expect(k.sigmas[0]).toBe(base.sigmas[0]);
    expect(k.sigmas[9]).toBe(base.sigmas[9]);
    expect(k.sigmas[10]).toBe(0);
    expect(k.timesteps[0]).toBeCloseTo(999, 3);
    expect(k.timesteps[9]).toBeCloseTo(0, 3);
    for (let i = 1; i < 10; i++) expect(k.timesteps[i]).toBe(Math.fround(k.timesteps[i])); // float32
    const km = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { use_karras_sigmas: true, sigma_min: 0.1, sigma_max: 10 });
    km.setTimesteps(4);
    expect(km.sigmas[0]).toBe(Math.fround(10));
    expect(km.sigmas[3]).toBeCloseTo(0.1, 6);
    // log_linear (diffusers 0.27.2: n + 1 log-spaced sigmas from sigma_max to sigma_min, then 0)
    const ll = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { interpolation_type: "log_linear" });
    ll.setTimesteps(4);
    expect(ll.sigmas.length).toBe(6);
    expect(ll.sigmas[0]).toBeCloseTo(base.sigmas[0], 4);
    expect(ll.sigmas[4]).toBeCloseTo(base.sigmas[9], 5);
    expect(ll.sigmas[1] / ll.sigmas[0]).toBeCloseTo(ll.sigmas[2] / ll.sigmas[1], 5);
    // leading spacing: integer timesteps + steps_offset and init sigma sqrt(sigma_max^2 + 1)
    const lead = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "leading" });
    lead.setTimesteps(10);
    expect(lead.timesteps).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
    const smax = lead.sigmas[0];
    expect(lead.initNoiseSigma).toBe(Math.fround(Math.sqrt(Math.fround(Math.fround(smax * smax) + 1))));
    const trail = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "trailing" });
    trail.setTimesteps(4);
    expect(trail.timesteps).toEqual([999, 749, 499, 249]);
    expect(trail.initNoiseSigma).toBe(trail.sigmas[0]);
    // EDM-style continuous timesteps for v-prediction: 0.25 log(sigma)
    const cont = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { timestep_type: "continuous", prediction_type: "v_prediction" });
    cont.setTimesteps(4);
    expect(cont.timesteps).toEqual(Array.from(cont.sigmas.slice(0, 4), (x) => Math.fround(0.25 * Math.fround(Math.log(x)))));
    const x = tf.ones([1, 2, 2, 4]);
    const xin = cont.scaleModelInput(x, cont.timesteps[1]);
    expect(xin.dataSync()[0]).toBeCloseTo(1 / Math.sqrt(cont.sigmas[1] ** 2 + 1), 6);
    tf.dispose([x, xin]);
    // rescale_betas_zero_snr: last alpha-bar 2^-24 keeps sigma_max finite
    const z = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { rescale_betas_zero_snr: true });
    expect(z.alphasCumprod[999]).toBe(2 ** -24);
    expect(Number.isFinite(z.sigmas[0])).toBe(true);
    expect(z.sigmas[0]).toBeCloseTo(4096, 0);
  });

  it("errors, registry, compatibles", () => {
    expect(() => EulerDiscreteScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(/"beta_schedule" is "sigmoid"; supported/);
    expect(() => EulerDiscreteScheduler.fromConfig({ interpolation_type: "cubic" })).toThrow(/"interpolation_type" is "cubic"/);
    expect(() => EulerDiscreteScheduler.fromConfig({ timestep_type: "foo" })).toThrow(/"timestep_type" is "foo"/);
    expect(() => EulerDiscreteScheduler.fromConfig({ timestep_spacing: "uniform" })).toThrow(/"timestep_spacing" is "uniform"/);
    expect(() => new EulerDiscreteScheduler({ clip_sample: true })).toThrow(/unexpected config key/);
    const s = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"));
    expect(() => s.setTimesteps(0)).toThrow(/integer >= 1/);
    s.setTimesteps(10);
    const x = tf.zeros([1, 2, 2, 4]);
    expect(() => s.step(x, 500, x)).toThrow(/timestep 500 is not one of the scheduler's timesteps/);
    const it32 = tf.scalar(999, "int32");
    expect(() => s.step(x, it32, x)).toThrow(/integer timestep tensors/);
    expect(() => s.step(tf.zeros([1, 2, 2, 3]), 999, x)).toThrow(/shape \[1,2,2,3\] does not match/);
    expect(() => s.step(x, 999, x, { generator: new Generator(), noise: x })).toThrow(/either generator or noise/);
    expect(EulerDiscreteScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(new EulerDiscreteScheduler().compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass(NAME)).toBe(EulerDiscreteScheduler);
    expect(s.length).toBe(1000);
    tf.dispose([x, it32]);
  });
});

describe("EulerDiscreteScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(cfg, () => {
      const before = tf.memory().numTensors;
      expect(runTrajectory(cfg, NAME, EulerDiscreteScheduler.fromConfig(rawConfig(cfg))).steps).toBe(10);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe("EulerDiscreteScheduler: add_noise vs diffusers", () => {
  it("both configs: original + noise * sigma at timesteps[[0, 6]]", () => {
    const t = loadFixture("schedulers", "add_noise.safetensors");
    const cases = fixtureJson("schedulers", "add_noise.json").cases;
    const original = nchwToNhwc(t.original);
    const noise = nchwToNhwc(t.noise);
    for (const cfg of CFG_NAMES) {
      const key = `${cfg}/${NAME}/add_noise/steps10_idx0_6`;
      const s = EulerDiscreteScheduler.fromConfig(rawConfig(cfg));
      s.setTimesteps(10);
      expect([s.timesteps[0], s.timesteps[6]]).toEqual(cases[key].timesteps);
      expect([s.sigmas[0], s.sigmas[6]]).toEqual(cases[key].sigmas_used);
      const ts = tf.tensor1d([s.timesteps[0], s.timesteps[6]]);
      const out = s.addNoise(original, noise, ts);
      const ref = nchwToNhwc(t[key]);
      expectClose(out, ref, TOL.scheduler.atol, TOL.scheduler.rtol, key);
      // with a begin index (img2img) every item gets sigmas[begin]
      s.setBeginIndex(6);
      const out2 = s.addNoise(original, noise, [999, 999]);
      const exp2 = tf.add(original, tf.mul(noise, s.sigmas[6]));
      expectClose(out2, exp2, 0);
      tf.dispose([out, ref, ts, out2, exp2]);
    }
    tf.dispose([original, noise, ...Object.values(t)]);
  });
});

describe("EulerDiscreteScheduler: step options", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("s_churn: gamma = min(S_churn / (len(sigmas) - 1), sqrt 2 - 1) inside [s_tmin, s_tmax]; generator == NCHW noise", () => {
    const s = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const x = mk(1), mo = mk(2);
    const t = s.timesteps[2];
    const run = (opts: object) => {
      s.setTimesteps(10);
      s.setBeginIndex(2);
      return s.step(mo, t, x, opts);
    };
    const a = run({ sChurn: 5, generator: new Generator().manualSeed(4) });
    const zn = new Generator().manualSeed(4).randn([1, 3, 4, 4]);
    const z = nchwToNhwc(zn);
    const b = run({ sChurn: 5, noise: z });
    expectClose(a.prevSample, b.prevSample, 0);
    // by hand: gamma = 5/10 capped at sqrt2 - 1
    const sigma = s.sigmas[2];
    const gamma = Math.SQRT2 - 1;
    const sh = Math.fround(sigma * Math.fround(gamma + 1));
    const xh = tf.add(x, tf.mul(z, Math.sqrt(sh * sh - sigma * sigma)));
    const x0 = tf.sub(xh, tf.mul(mo, sh));
    const prev = tf.add(xh, tf.mul(tf.div(tf.sub(xh, x0), sh), s.sigmas[3] - sh));
    expectClose(b.prevSample, prev, 1e-4, 1e-5);
    expectClose(b.predOriginalSample, x0, 1e-4, 1e-5);
    // outside [s_tmin, s_tmax]: no churn, same as the plain step
    const c = run({ sChurn: 5, sTmax: sigma / 2, noise: z });
    const d = run({});
    expectClose(c.prevSample, d.prevSample, 0);
    // small churn: gamma = S_churn / 10
    const e = run({ sChurn: 1, sNoise: 0, noise: z });
    const g1 = Math.fround(sigma * Math.fround(0.1 + 1));
    const x0e = tf.sub(x, tf.mul(mo, g1));
    expectClose(e.predOriginalSample, x0e, 1e-5, 1e-6);
    tf.dispose([x, mo, zn, z, xh, x0, prev, x0e, ...[a, b, c, d, e].flatMap((o) => [o.prevSample, o.predOriginalSample])]);
  });

  it("the generator is drawn on every step (as diffusers), also without churn", () => {
    const s = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(4);
    const x = mk(1);
    const g = new Generator().manualSeed(3);
    const out = s.step(x, s.timesteps[0], x, { generator: g });
    const ref = new Generator().manualSeed(3);
    ref.randnArray([1, 3, 4, 4]);
    expect(g.randnArray([3])).toEqual(ref.randnArray([3]));
    tf.dispose([x, out.prevSample, out.predOriginalSample]);
  });

  it("prediction types: sample / original_sample / v_prediction", () => {
    const x = mk(1), mo = mk(2);
    for (const pt of ["sample", "original_sample"]) {
      const s = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: pt });
      s.setTimesteps(10);
      const o = s.step(mo, s.timesteps[0], x);
      expectClose(o.predOriginalSample, mo, 0);
      tf.dispose([o.prevSample, o.predOriginalSample]);
    }
    const v = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    v.setTimesteps(10);
    const sg = v.sigmas[0];
    const o = v.step(mo, v.timesteps[0], x);
    const x0 = tf.add(tf.mul(mo, -sg / Math.sqrt(sg * sg + 1)), tf.div(x, sg * sg + 1));
    expectClose(o.predOriginalSample, x0, 1e-5, 1e-5);
    tf.dispose([x, mo, x0, o.prevSample, o.predOriginalSample]);
  });

  it("a 1000-step loop leaves tf.memory().numTensors where it started", () => {
    const s = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(1000);
    const { x, before } = runLongLoop(s);
    expect(s.stepIndex).toBe(1000);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
