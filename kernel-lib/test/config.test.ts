import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { resolveConfig, readConfigFile } from "../src/io/config.js";

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
