// Scheduler swaps, `Other.fromConfig(scheduler.config)`, across all ten classes: every pair works on
// both real configs and gives what diffusers' from_config gives from the raw config (the
// `_use_default_values` rule), compatibles are diffusers' `_compatibles`, and swaps that cannot work
// (a model's or a pipeline's config, an unsupported prediction_type or beta_schedule) fail clearly.
import * as path from "node:path";
import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { ConfigError, readConfigFile } from "../src/io/config.js";
import {
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  HeunDiscreteScheduler,
  KarrasDiffusionSchedulers,
  LCMScheduler,
  LMSDiscreteScheduler,
  PNDMScheduler,
  type SchedulerMixin,
  UniPCMultistepScheduler,
  getSchedulerClass,
} from "../src/schedulers/index.js";
import { fixture } from "./helpers.js";
import { CFG_NAMES, expectResolved, fixtureJson, rawConfig, resolvedConfig } from "./scheduler-fixtures.js";

type Swappable = {
  className: string;
  compatibles: readonly string[];
  predictionTypes: readonly string[];
  fromConfig(config: Record<string, unknown>, overrides?: Record<string, unknown>): SchedulerMixin;
};

const TEN: Swappable[] = [
  DDPMScheduler,
  DDIMScheduler,
  PNDMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  LMSDiscreteScheduler,
  HeunDiscreteScheduler,
  DPMSolverMultistepScheduler,
  UniPCMultistepScheduler,
  LCMScheduler,
];

describe("scheduler swaps: compatibles", () => {
  it("KarrasDiffusionSchedulers is diffusers 0.27.2's enum, in order", () => {
    expect([...KarrasDiffusionSchedulers]).toEqual([
      "DDIMScheduler",
      "DDPMScheduler",
      "PNDMScheduler",
      "LMSDiscreteScheduler",
      "EulerDiscreteScheduler",
      "HeunDiscreteScheduler",
      "EulerAncestralDiscreteScheduler",
      "DPMSolverMultistepScheduler",
      "DPMSolverSinglestepScheduler",
      "KDPM2DiscreteScheduler",
      "KDPM2AncestralDiscreteScheduler",
      "DEISMultistepScheduler",
      "UniPCMultistepScheduler",
      "DPMSolverSDEScheduler",
      "EDMEulerScheduler",
    ]);
  });

  it("every class's compatibles is its diffusers _compatibles (LCM declares none); all ten are registered", () => {
    for (const cls of TEN) {
      const expected = cls === LCMScheduler ? [] : [...KarrasDiffusionSchedulers];
      expect([...cls.compatibles], cls.className).toEqual(expected);
      expect(getSchedulerClass(cls.className), cls.className).toBe(cls);
    }
  });

  it("prediction types each class can step (diffusers 0.27.2): PNDM and Euler a lack \"sample\"", () => {
    const table = Object.fromEntries(TEN.map((c) => [c.className, [...c.predictionTypes].sort()]));
    const all = ["epsilon", "sample", "v_prediction"];
    expect(table).toEqual({
      DDPMScheduler: all,
      DDIMScheduler: all,
      PNDMScheduler: ["epsilon", "v_prediction"],
      EulerDiscreteScheduler: ["epsilon", "original_sample", "sample", "v_prediction"],
      EulerAncestralDiscreteScheduler: ["epsilon", "v_prediction"],
      LMSDiscreteScheduler: all,
      HeunDiscreteScheduler: all,
      DPMSolverMultistepScheduler: all,
      UniPCMultistepScheduler: all,
      LCMScheduler: all,
    });
  });
});

describe("scheduler swaps: every pair of the ten", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: B.fromConfig(A.fromConfig(raw).config) equals diffusers' B.from_config(raw) for all 100 pairs, and steps`, () => {
      const schedules = fixtureJson("schedulers", `schedules_${cfg}.json`).schedulers;
      const before = tf.memory().numTensors;
      for (const A of TEN) {
        const a = A.fromConfig(rawConfig(cfg));
        for (const B of TEN) {
          const b = B.fromConfig(a.config);
          const what = `${cfg}: ${A.className} -> ${B.className}`;
          expect(b).toBeInstanceOf(B as unknown as typeof DDPMScheduler);
          expect(b.config._class_name, what).toBe(B.className);
          expectResolved(b.config, resolvedConfig(cfg, B.className), what);
          // and the swapped scheduler runs: diffusers' 10-step timesteps, one step on a small sample
          b.setTimesteps(10);
          expect(b.timesteps, what).toEqual(schedules[B.className].steps[10].timesteps);
          const x = tf.ones([1, 4, 4, 4]);
          const noise = tf.zerosLike(x);
          const t = b.timesteps[0];
          const xIn = b.scaleModelInput(x, t);
          const modelOutput = tf.mul(xIn, 0.1);
          const out = b.step(modelOutput, t, x, { noise });
          expect(out.prevSample.shape, what).toEqual([1, 4, 4, 4]);
          tf.dispose([x, noise, xIn, modelOutput, ...Object.values(out)]);
          b.dispose(); // the state multistep / second-order schedulers keep
        }
      }
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("a chain of swaps through all ten changes nothing; explicit overrides travel, defaults do not", () => {
    for (const cfg of CFG_NAMES) {
      let config: Record<string, unknown> = rawConfig(cfg);
      for (const B of [...TEN, ...[...TEN].reverse()]) config = B.fromConfig(config).config;
      expectResolved(config, resolvedConfig(cfg, "DDPMScheduler"), `${cfg}: chain`);
    }
    const v = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "v_prediction" });
    for (const B of TEN) expect(B.fromConfig(v.config).config.prediction_type, B.className).toBe("v_prediction");
  });
});

describe("scheduler swaps: keys the target class does not have", () => {
  const abar = (s: SchedulerMixin) => Array.from((s as unknown as { alphasCumprod: Float32Array }).alphasCumprod);

  it("rescale_betas_zero_snr left by DDIM is kept in the config but changes nothing where diffusers 0.27.2 has no such argument", () => {
    const raw = rawConfig("sd15");
    const zsnr = DDIMScheduler.fromConfig(raw, { rescale_betas_zero_snr: true }).config;
    for (const B of TEN) {
      const swapped = B.fromConfig(zsnr);
      expect(swapped.config.rescale_betas_zero_snr, B.className).toBe(true);
      const hasKey = "rescale_betas_zero_snr" in (B as unknown as { configSpec: { defaults: object } }).configSpec.defaults;
      const same = abar(swapped).every((v, i) => v === abar(B.fromConfig(raw))[i]);
      expect(same, `${B.className} ${hasKey ? "rescales" : "ignores the key"}`).toBe(!hasKey);
    }
  });

  it("use_karras_sigmas left by LMS does not switch Karras sigmas on in Euler a (which has no such option)", () => {
    const raw = rawConfig("sd15");
    const karras = LMSDiscreteScheduler.fromConfig(raw, { use_karras_sigmas: true }).config;
    const a = EulerAncestralDiscreteScheduler.fromConfig(karras);
    const b = EulerAncestralDiscreteScheduler.fromConfig(raw);
    a.setTimesteps(10);
    b.setTimesteps(10);
    expect(a.timesteps).toEqual(b.timesteps);
    expect(Array.from(a.sigmas)).toEqual(Array.from(b.sigmas));
    const h = HeunDiscreteScheduler.fromConfig(karras); // Heun has the option: it follows it
    h.setTimesteps(10);
    expect(h.config.use_karras_sigmas).toBe(true);
    expect(h.timesteps[1]).not.toBe(b.timesteps[1]);
  });
});

describe("scheduler swaps that cannot work fail clearly", () => {
  const sd = (...p: string[]) => readConfigFile(fixture("configs", "stable-diffusion-v1-5", ...p));
  const others: [string, Record<string, unknown>][] = [
    ["SD 1.5 UNet config.json", sd("unet", "config.json")],
    ["SD 1.5 VAE config.json", sd("vae", "config.json")],
    ["SD 1.5 text encoder config.json (transformers)", sd("text_encoder", "config.json")],
    ["SD 1.5 tokenizer_config.json", sd("tokenizer", "tokenizer_config.json")],
    ["ddpm-cat-256 UNet config.json", readConfigFile(fixture("configs", "ddpm-cat-256", "config.json"))],
    // saved by diffusers: it has "num_train_timesteps": null
    ["UNet2DModel config.json saved by diffusers", readConfigFile(path.resolve(__dirname, "../../datasets/ddpm-cat-tiny-random/unet/config.json"))],
  ];

  for (const [name, config] of others) {
    it(`a ${name} handed to a scheduler: "not a scheduler config", naming the class and the model keys`, () => {
      for (const B of TEN) {
        let err: unknown;
        try {
          B.fromConfig(config);
        } catch (e) {
          err = e;
        }
        expect(err, `${B.className} <- ${name}`).toBeInstanceOf(ConfigError);
        const msg = (err as Error).message;
        expect(msg).toContain(`${B.className}.fromConfig`);
        expect(msg).toMatch(/not a scheduler config/);
        expect(msg).toMatch(/pipe\.scheduler\.config/);
        if ("block_out_channels" in config) expect(msg).toContain('"block_out_channels"');
        if (typeof config._class_name === "string") expect(msg).toContain(config._class_name);
      }
    });
  }

  it("a pipeline's model_index.json is named as such", () => {
    expect(() => DDIMScheduler.fromConfig(sd("model_index.json"))).toThrow(
      /DDIMScheduler\.fromConfig: this is a pipeline's model_index\.json \(components .*scheduler.*\), not a scheduler config/,
    );
  });

  it("an empty config and a config of scheduler keys only still work (every default, as diffusers)", () => {
    expect(DDIMScheduler.fromConfig({}).config.beta_schedule).toBe("linear");
    expect(EulerDiscreteScheduler.fromConfig({ beta_schedule: "scaled_linear" }).config.beta_schedule).toBe("scaled_linear");
  });

  it('prediction_type "sample" into PNDM or Euler a: an error naming both classes and the key; the others accept it', () => {
    const src = DDIMScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "sample" });
    for (const B of TEN) {
      if (B.predictionTypes.includes("sample")) {
        expect(B.fromConfig(src.config).config.prediction_type, B.className).toBe("sample");
        continue;
      }
      expect(() => B.fromConfig(src.config)).toThrow(ConfigError);
      expect(() => B.fromConfig(src.config)).toThrow(
        new RegExp(`^${B.className}\\.fromConfig\\(DDIMScheduler config\\): ${B.className}: config "prediction_type" is "sample"; supported: "epsilon", "v_prediction"\\. ${B.className} cannot step`),
      );
      expect(() => B.fromConfig(src.config)).toThrow(/pick a scheduler that supports it \(DDPMScheduler, DDIMScheduler, EulerDiscreteScheduler/);
    }
    // a raw config and a direct override are checked the same way (no source class to name)
    expect(() => PNDMScheduler.fromConfig({ prediction_type: "sample" })).toThrow(/^PNDMScheduler: config "prediction_type" is "sample".*cannot step/);
    expect(() => EulerAncestralDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "sample" })).toThrow(/cannot step/);
    // Euler's "original_sample" is Euler's own spelling: the other classes reject it
    const e = EulerDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: "original_sample" });
    expect(() => DDIMScheduler.fromConfig(e.config)).toThrow(/^DDIMScheduler\.fromConfig\(EulerDiscreteScheduler config\): DDIMScheduler: config "prediction_type" is "original_sample"/);
    // a value no class knows gets no scheduler suggestion
    expect(() => DDIMScheduler.fromConfig({ prediction_type: "x0" })).toThrow(/^DDIMScheduler: config "prediction_type" is "x0"; supported: "epsilon", "sample", "v_prediction"$/);
  });

  it("a beta_schedule the target lacks: the error names both classes and the key", () => {
    const ddpm = DDPMScheduler.fromConfig(rawConfig("ddpm_cat"), { beta_schedule: "sigmoid" });
    expect(() => DDIMScheduler.fromConfig(ddpm.config)).toThrow(
      /^DDIMScheduler\.fromConfig\(DDPMScheduler config\): DDIMScheduler: config "beta_schedule" is "sigmoid".*DDIMScheduler does not accept/,
    );
    // a wrong type from another class is named with its source too
    expect(() => DDIMScheduler.fromConfig({ _class_name: "DDPMScheduler", num_train_timesteps: "1000" })).toThrow(
      /DDIMScheduler: DDPMScheduler config key "num_train_timesteps" is "1000"/,
    );
  });
});
