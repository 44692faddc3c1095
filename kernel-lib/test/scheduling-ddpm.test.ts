import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import {
  KarrasDiffusionSchedulers,
  betasForAlphaBar,
  getSchedulerClass,
  linspaceF32,
  npArange,
  rescaleZeroTerminalSnr,
  spacedTimesteps,
  thresholdSample,
} from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { TOL, expectClose, fixture, loadFixture, nchwToNhwc } from "./helpers.js";
import { CFG_NAMES, fixtureJson, firstDiff, rawConfig, runTrajectory, trainSchedule, runLongLoop, expectResolved, resolvedConfig, expectSchedules } from "./scheduler-fixtures.js";

describe("DDPMScheduler: training schedule (float32 like torch)", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: betas and alphas_cumprod equal diffusers bit for bit`, () => {
      const s = DDPMScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
      expect(s.alphas[0]).toBe(Math.fround(1 - ref.betas[0]));
    });
  }

  it("torch.linspace float32 quirks: fused start + step*i, halves from both ends, 8-wide blocks", () => {
    // ends exact, symmetric construction
    const l = linspaceF32(0.0001, 0.02, 1000);
    expect(l[0]).toBe(Math.fround(0.0001));
    expect(l[999]).toBe(Math.fround(0.02));
    expect(Array.from(linspaceF32(2, 5, 1))).toEqual([2]);
    expect(Array.from(linspaceF32(0, 1, 5))).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(linspaceF32(0, 1, 0).length).toBe(0);
  });

  it("squaredcos_cap_v2 (GLIDE cosine), sigmoid and trained_betas", () => {
    const cos = DDPMScheduler.fromConfig({ beta_schedule: "squaredcos_cap_v2" });
    const abar = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    expect(cos.betas[0]).toBe(Math.fround(1 - abar(0.001) / abar(0)));
    expect(cos.betas[999]).toBe(Math.fround(0.999)); // capped at max_beta
    expect(Array.from(betasForAlphaBar(3, 0.999, "exp"))).toEqual(
      [0, 1, 2].map((i) => Math.fround(1 - Math.exp(-12 * (i + 1) / 3) / Math.exp(-12 * i / 3))),
    );
    const sig = DDPMScheduler.fromConfig({ beta_schedule: "sigmoid", beta_start: 0.0001, beta_end: 0.02 });
    expect(sig.betas[0]).toBeCloseTo(0.0001 + 0.0199 / (1 + Math.exp(6)), 8);
    expect(sig.betas[999]).toBeCloseTo(0.0001 + 0.0199 / (1 + Math.exp(-6)), 8);
    const tb = new DDPMScheduler({ num_train_timesteps: 3, trained_betas: [0.1, 0.2, 0.3] });
    expect(Array.from(tb.betas)).toEqual([0.1, 0.2, 0.3].map(Math.fround));
    expect(tb.alphasCumprod[2]).toBe(Math.fround(0.9 * 0.8 * 0.7));
  });

  it("rescale_betas_zero_snr: last alphas_cumprod 0, first unchanged", () => {
    const s = DDPMScheduler.fromConfig(rawConfig("sd15"), { rescale_betas_zero_snr: true });
    const plain = DDPMScheduler.fromConfig(rawConfig("sd15"));
    expect(s.alphasCumprod[999]).toBe(0);
    expect(s.betas[999]).toBe(1);
    expect(s.alphasCumprod[0]).toBeCloseTo(plain.alphasCumprod[0], 6);
    expect(Array.from(rescaleZeroTerminalSnr(plain.betas))).toEqual(Array.from(s.betas));
  });
});

describe("DDPMScheduler: config", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config (keys, values, _use_default_values) equals diffusers'`, () => {
      const s = DDPMScheduler.fromConfig(rawConfig(cfg));
      expectResolved(s.config, resolvedConfig(cfg, "DDPMScheduler"));
      expect(Object.isFrozen(s.config)).toBe(true);
    });
  }

  it("constructor: partial config, defaults recorded; unknown keys rejected", () => {
    const s = new DDPMScheduler({ prediction_type: "v_prediction", num_train_timesteps: 500 });
    expect(s.config.prediction_type).toBe("v_prediction");
    expect(s.config.beta_schedule).toBe("linear");
    expect(s.config._use_default_values).not.toContain("prediction_type");
    expect(s.config._use_default_values).toContain("beta_schedule");
    expect(s.timesteps.length).toBe(500);
    expect(s.length).toBe(500);
    expect(() => new DDPMScheduler({ predicton_type: "epsilon" })).toThrow(/unexpected config key.*"predicton_type"/);
  });

  it("fromConfig overrides win; other classes' keys are kept; compatibles", () => {
    const s = DDPMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    expect(s.config.prediction_type).toBe("v_prediction");
    expect(s.config._use_default_values).not.toContain("prediction_type");
    expect(s.config.skip_prk_steps).toBe(true); // a PNDM key, kept as diffusers does
    expect(s.config._class_name).toBe("DDPMScheduler");
    expect(() => DDPMScheduler.fromConfig({}, { nope: 1 })).toThrow(/unknown override.*"nope"/);
    expect(DDPMScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(DDPMScheduler.compatibles[1]).toBe("DDPMScheduler");
    expect(s.compatibles).toBe(DDPMScheduler.compatibles);
    expect(getSchedulerClass("DDPMScheduler")).toBe(DDPMScheduler);
  });

  it("swapping classes keeps diffusers' _use_default_values semantics", () => {
    const ddim = DDIMScheduler.fromConfig(rawConfig("ddpm_cat"));
    const back = DDPMScheduler.fromConfig(ddim.config);
    expect(back.config.variance_type).toBe("fixed_small");
    // set_alpha_to_one was only DDIM's default, so it does not travel (diffusers drops _use_default_values keys)
    expect(back.config.set_alpha_to_one).toBeUndefined();
    const explicit = DDPMScheduler.fromConfig(DDIMScheduler.fromConfig(rawConfig("ddpm_cat"), { set_alpha_to_one: false }).config);
    expect(explicit.config.set_alpha_to_one).toBe(false); // an explicit value does, as a hidden key
    expect(back.config._use_default_values).toEqual(
      resolvedKeys(fixtureJson("schedulers", "configs_resolved.json").resolved.ddpm_cat.DDPMScheduler._use_default_values),
    );
  });

  it("errors name the key and the allowed values", () => {
    expect(() => DDPMScheduler.fromConfig({ prediction_type: "foo" })).toThrow(
      /DDPMScheduler: config "prediction_type" is "foo"; supported: "epsilon", "sample", "v_prediction"/,
    );
    expect(() => DDPMScheduler.fromConfig({ beta_schedule: "cubic" })).toThrow(
      /config "beta_schedule" is "cubic"; supported: "linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"/,
    );
    expect(() => DDPMScheduler.fromConfig({ timestep_spacing: "even" })).toThrow(
      /config "timestep_spacing" is "even"; supported: "linspace", "leading", "trailing"/,
    );
    expect(() => DDPMScheduler.fromConfig({ variance_type: "huge" })).toThrow(/config "variance_type" is "huge"; supported: "fixed_small"/);
    expect(() => DDPMScheduler.fromConfig({ num_train_timesteps: "1000" }, {})).toThrow(
      /key "num_train_timesteps" is "1000" \(string\), expected integer/,
    );
    expect(() => DDPMScheduler.fromConfig({ clip_sample: "yes" })).toThrow(/key "clip_sample" is "yes" \(string\), expected boolean/);
    expect(() => DDPMScheduler.fromConfig({ num_train_timesteps: 10.5 })).toThrow(/expected integer/);
    const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"));
    expect(() => s.setTimesteps(2000)).toThrow(/num_inference_steps 2000 cannot be larger than num_train_timesteps 1000/);
    expect(() => s.setTimesteps(0)).toThrow(/integer >= 1/);
    expect(() => s.setTimesteps(10, { timesteps: [5, 1] })).toThrow(/either/);
    expect(() => s.setTimesteps(null, { timesteps: [5, 7] })).toThrow(/descending/);
    expect(() => s.setTimesteps(null, { timesteps: [1000, 7] })).toThrow(/below num_train_timesteps 1000/);
  });
});

function resolvedKeys(k: string[]): string[] {
  return [...k].sort();
}

describe("DDPMScheduler: timesteps", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: set_timesteps(N) for N in {1,4,10,20,25,50}, init_noise_sigma, order`, () => {
      const s = DDPMScheduler.fromConfig(rawConfig(cfg));
      expectSchedules(cfg, "DDPMScheduler", s, { extra: (n) => expect(s.numInferenceSteps).toBe(n) });
    });
  }

  it("spacings: leading + steps_offset, trailing, linspace (numpy rounding, float arange)", () => {
    expect(spacedTimesteps("X", "leading", 1000, 3, 1)).toEqual([667, 334, 1]);
    expect(spacedTimesteps("X", "trailing", 1000, 4, 0)).toEqual([999, 749, 499, 249]);
    expect(spacedTimesteps("X", "trailing", 1000, 3, 0)).toEqual([999, 666, 332]);
    expect(spacedTimesteps("X", "linspace", 1000, 3, 0)).toEqual([999, 500, 0]); // 499.5 rounds to even
    expect(spacedTimesteps("X", "linspace", 1000, 7, 0)).toEqual([999, 832, 666, 500, 333, 166, 0]);
    expect(spacedTimesteps("X", "linspace", 1000, 1, 0)).toEqual([0]);
    // numpy's float arange gives 62 entries for 61 steps (last -1), as diffusers 0.27.2 does
    const t61 = spacedTimesteps("X", "trailing", 1000, 61, 0);
    expect(t61.length).toBe(62);
    expect(t61.slice(-4)).toEqual([48, 32, 15, -1]);
    expect(npArange(1000, 0, -250)).toEqual([1000, 750, 500, 250]);
  });

  it("custom timesteps: previous timestep is the next entry, then -1", () => {
    const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"));
    s.setTimesteps(null, { timesteps: [999, 500, 20, 0] });
    expect(s.customTimesteps).toBe(true);
    expect(s.timesteps).toEqual([999, 500, 20, 0]);
    expect(s.previousTimestep(500)).toBe(20);
    expect(s.previousTimestep(0)).toBe(-1);
    s.setTimesteps(10);
    expect(s.customTimesteps).toBe(false);
    expect(s.previousTimestep(900)).toBe(800);
    const fresh = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"));
    expect(fresh.previousTimestep(999)).toBe(998); // before setTimesteps: every training step
    // a custom-timestep step matches the same step with the default schedule when the prev is the same
    const x = tf.randomNormal([1, 4, 4, 2], 0, 1, "float32", 1);
    const mo = tf.randomNormal([1, 4, 4, 2], 0, 1, "float32", 2);
    const z = tf.randomNormal([1, 4, 4, 2], 0, 1, "float32", 3);
    const c = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"));
    c.setTimesteps(null, { timesteps: [900, 800] });
    const a = c.step(mo, 900, x, { noise: z });
    const b = s.step(mo, 900, x, { noise: z });
    expectClose(a.prevSample, b.prevSample, 0);
    tf.dispose([x, mo, z, a.prevSample, a.predOriginalSample, b.prevSample, b.predOriginalSample]);
  });
});

describe("DDPMScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: model_input, prev_sample, pred_original_sample at TOL.scheduler`, () => {
      const before = tf.memory().numTensors;
      const r = runTrajectory(cfg, "DDPMScheduler", DDPMScheduler.fromConfig(rawConfig(cfg)));
      expect(r.steps).toBe(10);
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe("DDPMScheduler: add_noise / get_velocity vs diffusers", () => {
  it("both configs, t = [10, 500] and [999, 0]", () => {
    const t = loadFixture("schedulers", "add_noise.safetensors");
    const cases = fixtureJson("schedulers", "add_noise.json").cases;
    const original = nchwToNhwc(t.original);
    const noise = nchwToNhwc(t.noise);
    for (const cfg of CFG_NAMES) {
      const s = DDPMScheduler.fromConfig(rawConfig(cfg));
      for (const c of ["t10_500", "t999_0"]) {
        const key = `${cfg}/DDPMScheduler/add_noise/${c}`;
        const ts = cases[key].timesteps as number[];
        const outArr = s.addNoise(original, noise, ts);
        const tsTensor = tf.tensor1d(ts, "int32");
        const outTen = s.addNoise(original, noise, tsTensor);
        expectClose(nchwToNhwc(t[key]), outArr, TOL.scheduler.atol, TOL.scheduler.rtol, key);
        expectClose(outTen, outArr, 0);
        tf.dispose([outArr, outTen, tsTensor]);
      }
      const key = `${cfg}/DDPMScheduler/get_velocity/t10_500`;
      const v = s.getVelocity(original, noise, [10, 500]);
      expectClose(v, nchwToNhwc(t[key]), TOL.scheduler.atol, TOL.scheduler.rtol, key);
      v.dispose();
      // one timestep broadcasts over the batch; a wrong count is an error
      const one = s.addNoise(original, noise, 10);
      one.dispose();
      expect(() => s.addNoise(original, noise, [1, 2, 3])).toThrow(/3 timesteps for a batch of 2/);
      expect(() => s.addNoise(original, noise, [1000, 2])).toThrow(/integer in \[0, 999\]/);
    }
    tf.dispose([original, noise, ...Object.values(t)]);
  });
});

describe("DDPMScheduler: generator path", () => {
  it("{ generator } equals { noise: NCHW randn of the same seed, transposed }", () => {
    const s = DDPMScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const x = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 5);
    const mo = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 6);
    const a = s.step(mo, 901, x, { generator: new Generator().manualSeed(42) });
    const nchw = new Generator().manualSeed(42).randn([2, 4, 8, 8]);
    const z = nchwToNhwc(nchw);
    const b = s.step(mo, 901, x, { noise: z });
    expectClose(a.prevSample, b.prevSample, 0);
    // a list of generators draws one [1, C, H, W] per batch item
    const gens = [new Generator().manualSeed(1), new Generator().manualSeed(2)];
    const c = s.step(mo, 901, x, { generator: gens });
    const rows = tf.concat([new Generator().manualSeed(1).randn([1, 4, 8, 8]), new Generator().manualSeed(2).randn([1, 4, 8, 8])]);
    const zRows = nchwToNhwc(rows);
    const d = s.step(mo, 901, x, { noise: zRows });
    expectClose(c.prevSample, d.prevSample, 0);
    expect(() => s.step(mo, 901, x, { generator: gens, noise: z })).toThrow(/either generator or noise/);
    tf.dispose([x, mo, nchw, z, rows, zRows, a.prevSample, a.predOriginalSample, b.prevSample, b.predOriginalSample]);
    tf.dispose([c.prevSample, c.predOriginalSample, d.prevSample, d.predOriginalSample]);
  });

  it("diffusers' DDPMPipeline loop: one generator (seed 0) gives the initial noise and every step's noise", () => {
    // pipeline/ddpm_loop: stored UNet outputs stand in for the model; our scheduler draws its own noise.
    const t = loadFixture("pipeline", "ddpm_loop.safetensors");
    const meta = fixtureJson("pipeline", "ddpm_loop.json");
    const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"));
    s.setTimesteps(10);
    expect(s.timesteps).toEqual(meta.timesteps);
    const gen = new Generator().manualSeed(0);
    const before = tf.memory().numTensors;
    let image: tf.Tensor = tf.tidy(() => {
      const nchw = gen.randn([1, 3, 32, 32]);
      return nchwToNhwc(nchw);
    });
    const noise0 = nchwToNhwc(t["randn/00"]);
    expectClose(image, noise0, TOL.randn.atol, 0, "initial noise");
    noise0.dispose();
    for (const [i, ts] of s.timesteps.entries()) {
      const k = (n: string) => `step${String(i).padStart(2, "0")}/${n}`;
      const unetIn = nchwToNhwc(t[k("unet_in")]);
      expectClose(image, unetIn, 1e-4, 1e-4, `${k("unet_in")}`);
      unetIn.dispose();
      const mo = nchwToNhwc(t[k("model_output")]);
      const out = s.step(mo, ts, image, { generator: gen });
      tf.dispose([mo, image, out.predOriginalSample]);
      image = out.prevSample;
    }
    const final = tf.tidy(() => tf.clipByValue(tf.add(tf.div(image, 2), 0.5), 0, 1));
    expectClose(final, t.image, 1e-4, 0, "image");
    tf.dispose([image, final]);
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose(Object.values(t));
  });
});

describe("DDPMScheduler: options", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("prediction types: sample passes x_0 through (clipped), v_prediction matches the formula", () => {
    const x = mk(1), mo = mk(2), z = mk(3);
    const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { prediction_type: "sample" });
    s.setTimesteps(10);
    const out = s.step(mo, 500, x, { noise: z });
    const clipped = tf.clipByValue(mo, -1, 1);
    expectClose(out.predOriginalSample, clipped, 0);
    const v = DDPMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    v.setTimesteps(10);
    const vo = v.step(mo, 501, x, { noise: z });
    const a = v.alphasCumprod[501];
    const expected = tf.sub(tf.mul(x, Math.sqrt(a)), tf.mul(mo, Math.sqrt(1 - a)));
    expectClose(vo.predOriginalSample, expected, 1e-6, 1e-6);
    tf.dispose([x, mo, z, out.prevSample, out.predOriginalSample, clipped, vo.prevSample, vo.predOriginalSample, expected]);
  });

  it("variance types: fixed_small(_log), fixed_large, learned(_range) with doubled channels; fixed_large_log refused", () => {
    tf.tidy(() => {
      const x = mk(1), mo = mk(2), z = mk(3);
      const res: Record<string, number> = {};
      for (const vt of ["fixed_small", "fixed_small_log", "fixed_large"]) {
        const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { variance_type: vt });
        s.setTimesteps(10);
        const out = s.step(mo, 500, x, { noise: z });
        const det = s.step(mo, 500, x, { noise: tf.zerosLike(z) });
        // noise scale = std: (prev - mean) / z
        res[vt] = tf.tidy(() => tf.div(tf.sub(out.prevSample, det.prevSample), z).mean().dataSync()[0]);
        tf.dispose([out.prevSample, out.predOriginalSample, det.prevSample, det.predOriginalSample]);
      }
      const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"));
      s.setTimesteps(10);
      const a = s.alphasCumprod[500], ap = s.alphasCumprod[400];
      const beta = 1 - a / ap;
      const tilde = ((1 - ap) / (1 - a)) * beta;
      expect(res.fixed_small).toBeCloseTo(Math.sqrt(tilde), 4);
      expect(res.fixed_small_log).toBeCloseTo(Math.sqrt(tilde), 4);
      expect(res.fixed_large).toBeCloseTo(Math.sqrt(beta), 4);

      const pv = tf.fill(shape, 0.25);
      const mo2 = tf.concat([mo, pv], 3);
      const learned = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { variance_type: "learned" });
      learned.setTimesteps(10);
      const lo = learned.step(mo2, 500, x, { noise: z });
      const ref = s.step(mo, 500, x, { noise: tf.zerosLike(z) });
      expectClose(lo.prevSample, tf.add(ref.prevSample, tf.mul(z, 0.5)), 1e-5, 1e-5);
      const range = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { variance_type: "learned_range" });
      range.setTimesteps(10);
      const pvr = tf.fill(shape, 1); // frac 1 -> max_log = log(beta)
      const ro = range.step(tf.concat([mo, pvr], 3), 500, x, { noise: z });
      expectClose(ro.prevSample, tf.add(ref.prevSample, tf.mul(z, Math.sqrt(beta))), 1e-5, 1e-5);
      expect(() => learned.step(mo, 500, x, { noise: z })).toThrow(/twice the sample's channels/);
      const fll = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { variance_type: "fixed_large_log" });
      fll.setTimesteps(10);
      expect(() => fll.step(mo, 500, x, { noise: z })).toThrow(/fixed_large_log/);
    });
  });

  it("thresholding: per-item quantile of |x_0| (torch linear interpolation), clamp to [1, max], divide", () => {
    // one item of 5 values: |x| sorted 0.5 1 2 3 4; q = 0.5 -> 2; s = clamp(2, 1, 3) = 2
    const x0 = tf.tensor([[-4, 0.5, 2, -1, 3]]);
    const th = thresholdSample(x0, 0.5, 3);
    expectClose(th, [-1, 0.25, 1, -0.5, 1], 1e-7);
    const th2 = thresholdSample(x0, 0.5, 1.5); // s capped at 1.5
    expectClose(th2, [-1, 0.5 / 1.5, 1, -1 / 1.5, 1], 1e-6);
    const small = tf.tensor([[0.1, -0.2], [5, 6]]);
    const th3 = thresholdSample(small, 0.75, 10); // item 0: s -> 1 (plain clip); item 1: 5.75
    expectClose(th3, [0.1, -0.2, 5 / 5.75, 1], 1e-6);
    const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { thresholding: true, sample_max_value: 2 });
    s.setTimesteps(10);
    const x = tf.mul(tf.randomNormal([1, 4, 4, 3], 0, 1, "float32", 1), 10);
    const mo = tf.randomNormal([1, 4, 4, 3], 0, 1, "float32", 2);
    const out = s.step(mo, 0, x);
    expect(tf.max(tf.abs(out.predOriginalSample)).dataSync()[0]).toBeLessThanOrEqual(1 + 1e-6);
    expect(() => DDPMScheduler.fromConfig({ thresholding: true, dynamic_thresholding_ratio: 1.5 })).toThrow(/dynamic_thresholding_ratio/);
    tf.dispose([x0, th, th2, small, th3, x, mo, out.prevSample, out.predOriginalSample]);
  });

  it("scaleModelInput returns a new tensor (identity values)", () => {
    const s = new DDPMScheduler();
    const x = tf.ones([1, 2, 2, 1]);
    const y = s.scaleModelInput(x, 5);
    expect(y).not.toBe(x);
    y.dispose();
    expect(x.isDisposed).toBe(false);
    x.dispose();
  });
});

describe("DDPMScheduler: memory", () => {
  it("a 1000-step loop leaves tf.memory().numTensors where it started", () => {
    const s = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { thresholding: true });
    const { x, before } = runLongLoop(s, { shape: [1, 2, 2, 3] });
    expect(s.timesteps.length).toBe(1000);
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("DDPMScheduler: loading and saving", () => {
  it("fromPretrained reads scheduler_config.json at the root or in scheduler/", async () => {
    const cat = await DDPMScheduler.fromPretrained(fixture("configs/ddpm-cat-256"));
    expect(cat.config).toEqual(DDPMScheduler.fromConfig(rawConfig("ddpm_cat")).config);
    const sd = await DDPMScheduler.fromPretrained(fixture("configs/stable-diffusion-v1-5"));
    expect(sd.config.beta_schedule).toBe("scaled_linear");
    const sd2 = await DDPMScheduler.fromPretrained(fixture("configs/stable-diffusion-v1-5"), {
      subfolder: "scheduler",
      overrides: { prediction_type: "v_prediction" },
    });
    expect(sd2.config.prediction_type).toBe("v_prediction");
    await expect(DDPMScheduler.fromPretrained(fixture("configs/stable-diffusion-v1-5"), { subfolder: "unet" })).rejects.toThrow(
      /scheduler_config\.json/,
    );
  });

  it("saveConfig writes diffusers' JSON (sorted keys, all values, no _use_default_values) and reloads equal", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "ddpm-"));
    const s = DDPMScheduler.fromConfig(rawConfig("sd15"));
    const file = s.saveConfig(dir);
    expect(path.basename(file)).toBe("scheduler_config.json");
    const saved = JSON.parse(fs.readFileSync(file, "utf8"));
    expect(Object.keys(saved)).toEqual([...Object.keys(saved)].sort());
    expect(saved._class_name).toBe("DDPMScheduler");
    expect(saved._diffusers_version).toBe("0.27.2");
    expect(saved._use_default_values).toBeUndefined();
    expect(saved.prediction_type).toBe("epsilon");
    const back = await DDPMScheduler.fromPretrained(dir);
    expect(back.config._use_default_values).toBeUndefined(); // every key explicit now
    expect(Array.from(back.alphasCumprod)).toEqual(Array.from(s.alphasCumprod));
  });
});
