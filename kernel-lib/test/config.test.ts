import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveConfig, readConfigFile } from "../src/io/config.js";
import { UNet2DModel } from "../src/models/unet-2d.js";
import { UNet2DConditionModel } from "../src/models/unet-2d-condition.js";
import { AutoencoderKL } from "../src/models/autoencoder-kl.js";
import { CLIPTextModel } from "../src/models/clip-text-model.js";

const spec = { defaults: { num_train_timesteps: 1000, prediction_type: "epsilon", timestep_spacing: "leading", trained_betas: null } };

describe("config", () => {
  it("fills defaults, keeps unknown keys and records _use_default_values as diffusers", () => {
    const c = resolveConfig("DDIMScheduler", spec, { _class_name: "PNDMScheduler", num_train_timesteps: 500, skip_prk_steps: true });
    expect(c.num_train_timesteps).toBe(500);
    expect(c.prediction_type).toBe("epsilon");
    expect(c.skip_prk_steps).toBe(true);
    expect(c._use_default_values).toEqual(["prediction_type", "timestep_spacing", "trained_betas"]);
    // passing the config on: keys that were only defaults are not forced on the next class
    const other = resolveConfig("Euler", { defaults: { ...spec.defaults, timestep_spacing: "linspace" } }, c);
    expect(other.timestep_spacing).toBe("linspace");
    expect(other.num_train_timesteps).toBe(500);
  });
  it("rejects wrong types, naming key and source", () => {
    expect(() => resolveConfig("X", spec, { num_train_timesteps: "1000" }, {}, "scheduler_config.json"))
      .toThrow(/X: scheduler_config.json key "num_train_timesteps" is "1000" \(string\), expected number/);
  });
  it("names a missing required key", () => {
    expect(() => resolveConfig("UNet2DModel", { defaults: {}, required: ["in_channels"] }, {}, {}, "/m/config.json"))
      .toThrow(/UNet2DModel: \/m\/config.json has no "in_channels" key/);
  });
  it("names the file for unreadable configs", () => {
    const d = fs.mkdtempSync(path.join(os.tmpdir(), "cfg-"));
    fs.writeFileSync(path.join(d, "config.json"), "{ nope");
    expect(() => readConfigFile(path.join(d, "config.json"))).toThrow(/config\.json is not valid JSON/);
    expect(() => readConfigFile(path.join(d, "missing.json"))).toThrow(/missing\.json does not exist/);
  });
});

const DATASETS = path.resolve(__dirname, "../../datasets");

describe("model configs", () => {
  it("are typed, frozen deep copies equal to config.json, as the schedulers' configs", async () => {
    const sd = path.join(DATASETS, "sd-tiny-random");
    const unet = await UNet2DConditionModel.fromPretrained(sd, { subfolder: "unet" });
    const vae = await AutoencoderKL.fromPretrained(sd, { subfolder: "vae" });
    const textEncoder = await CLIPTextModel.fromPretrained(sd, { subfolder: "text_encoder" });
    const cat = await UNet2DModel.fromPretrained(path.join(DATASETS, "ddpm-cat-tiny-random"), { subfolder: "unet" });
    try {
      // typed: a lesson reads numbers without casts (npm run typecheck compiles this file)
      const latentSide: number = unet.config.sample_size;
      const channels: number = unet.config.in_channels;
      const levels: number = vae.config.block_out_channels.length;
      const scaling: number = vae.config.scaling_factor;
      const hidden: number = textEncoder.config.hidden_size;
      const catSide: number = cat.config.sample_size;
      expect([latentSide, channels, levels, scaling, hidden, catSide]).toEqual([
        unet.config.sample_size, 4, 4, 0.18215, textEncoder.config.hidden_size, cat.config.sample_size]);
      for (const [model, file] of [[unet, "unet"], [vae, "vae"], [textEncoder, "text_encoder"]] as const) {
        // the on-disk values, key for key (plus the class's defaults for keys the file does not have)
        const disk = JSON.parse(fs.readFileSync(path.join(sd, file, "config.json"), "utf8")) as Record<string, unknown>;
        for (const [k, v] of Object.entries(disk)) expect(model.config[k], `${file} ${k}`).toEqual(v);
        // frozen, nested lists too: a write throws in strict mode and changes nothing
        expect(Object.isFrozen(model.config)).toBe(true);
        expect(() => Object.assign(model.config, { in_channels: 99 })).toThrow(TypeError);
        expect(model.config.in_channels).toBe(disk.in_channels ?? model.config.in_channels);
      }
      expect(() => {
        // @ts-expect-error the config is read-only
        unet.config.in_channels = 99;
      }).toThrow(TypeError);
      expect(unet.config.in_channels).toBe(4);
      expect(() => vae.config.block_out_channels.push(64)).toThrow(TypeError);
      expect(vae.config.block_out_channels).toEqual([16, 32, 32, 32]);
      expect("_class_name" in textEncoder.config).toBe(false); // a transformers config has no diffusers bookkeeping
      // diffusers' register_to_config: a new frozen config with the value replaced
      vae.registerToConfig({ scaling_factor: 0.5 });
      expect(vae.config.scaling_factor).toBe(0.5);
      expect(Object.isFrozen(vae.config)).toBe(true);
      // a config passed in is copied, not frozen in place
      const mine = { ...cat.config, block_out_channels: [...cat.config.block_out_channels] };
      const again = new UNet2DModel(mine);
      mine.block_out_channels.push(1);
      expect(again.config.block_out_channels).toEqual(cat.config.block_out_channels);
      again.dispose();
    } finally {
      for (const m of [unet, vae, textEncoder, cat]) m.dispose();
    }
  });
});
