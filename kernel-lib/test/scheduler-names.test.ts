import * as fs from "node:fs";
import * as path from "node:path";
import { describe, it, expect, beforeAll } from "vitest";
import {
  DIFFUSERS_SCHEDULER_MODULES,
  SCHEDULER_NAMES,
  UnsupportedSchedulerError,
  findSchedulerName,
  normalizeSchedulerName,
  resolveSchedulerName,
  schedulerFromName,
  supportedSchedulerNames,
} from "../src/schedulers/scheduler-names.js";
import { DPMSolverMultistepScheduler } from "../src/schedulers/scheduling-dpmsolver-multistep.js";
import { UniPCMultistepScheduler } from "../src/schedulers/scheduling-unipc-multistep.js";
import { LCMScheduler } from "../src/schedulers/scheduling-lcm.js";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { fixtureJson, rawConfig } from "./scheduler-fixtures.js";

/** Our file for a diffusers class, by the naming convention (scheduling_euler_discrete -> scheduling-euler-discrete.ts). */
function moduleFile(className: string): string {
  return path.resolve(__dirname, "../src/schedulers", `${DIFFUSERS_SCHEDULER_MODULES[className].replace(/_/g, "-")}.ts`);
}

const expectedClass = (name: string) => findSchedulerName(name)?.className;

// Schedulers written elsewhere in the kit register themselves when their module is imported:
// import those that exist so their names are tested too (names of absent classes must fail clearly).
beforeAll(async () => {
  for (const cls of Object.keys(DIFFUSERS_SCHEDULER_MODULES)) {
    const file = moduleFile(cls);
    if (getSchedulerClass(cls) === undefined && fs.existsSync(file)) {
      try {
        await import(file);
      } catch {
        // a module that does not load yet simply stays unregistered
      }
    }
  }
});

describe("scheduler names: the table", () => {
  it("every spelling is unique after normalisation; every class has its diffusers module", () => {
    const seen = new Map<string, string>();
    for (const e of SCHEDULER_NAMES) {
      for (const n of [e.name, ...e.aliases]) {
        const k = normalizeSchedulerName(n);
        expect(seen.has(k) && seen.get(k) !== e.name, `${n} clashes with ${seen.get(k)}`).toBe(false);
        seen.set(k, e.name);
      }
      if (e.className !== null) expect(DIFFUSERS_SCHEDULER_MODULES[e.className], e.className).toBeDefined();
      else expect(e.note).toBeTruthy();
    }
    expect(Object.isFrozen(SCHEDULER_NAMES[0].overrides)).toBe(true);
  });

  it("A1111, ComfyUI and InvokeAI spellings, case / separators / parentheses ignored", () => {
    expect(normalizeSchedulerName("  DPM++_2M-SDE (Karras) ")).toBe("dpm++ 2m sde karras");
    const cases: [string, string | null, Record<string, unknown>][] = [
      ["DPM++ 2M", "DPMSolverMultistepScheduler", {}],
      ["dpmpp_2m", "DPMSolverMultistepScheduler", {}],
      ["DPM++ 2M Karras", "DPMSolverMultistepScheduler", { use_karras_sigmas: true }],
      ["dpm++ 2m karras", "DPMSolverMultistepScheduler", { use_karras_sigmas: true }],
      ["dpmpp_2m_karras", "DPMSolverMultistepScheduler", { use_karras_sigmas: true }],
      ["DPM++ 2M SDE", "DPMSolverMultistepScheduler", { algorithm_type: "sde-dpmsolver++" }],
      ["DPM++ 2M SDE (Karras)", "DPMSolverMultistepScheduler", { algorithm_type: "sde-dpmsolver++", use_karras_sigmas: true }],
      ["dpmpp_2m_sde_gpu", "DPMSolverMultistepScheduler", { algorithm_type: "sde-dpmsolver++" }],
      ["DPM++ SDE", "DPMSolverSDEScheduler", {}],
      ["Euler", "EulerDiscreteScheduler", {}],
      ["Euler a", "EulerAncestralDiscreteScheduler", {}],
      ["euler_ancestral", "EulerAncestralDiscreteScheduler", {}],
      ["Heun", "HeunDiscreteScheduler", {}],
      ["LMS", "LMSDiscreteScheduler", {}],
      ["LMS Karras", "LMSDiscreteScheduler", { use_karras_sigmas: true }],
      ["DDIM", "DDIMScheduler", {}],
      ["DDPM", "DDPMScheduler", {}],
      ["PLMS", "PNDMScheduler", { skip_prk_steps: true }],
      ["PNDM", "PNDMScheduler", {}],
      ["UniPC", "UniPCMultistepScheduler", {}],
      ["uni_pc", "UniPCMultistepScheduler", { solver_type: "bh1" }],
      ["uni_pc_bh2", "UniPCMultistepScheduler", {}],
      ["LCM", "LCMScheduler", {}],
      ["DPM2", "KDPM2DiscreteScheduler", {}],
      ["DPM2 a", "KDPM2AncestralDiscreteScheduler", {}],
      ["DPM2 a Karras", "KDPM2AncestralDiscreteScheduler", { use_karras_sigmas: true }],
      ["DPM++ 2S a", null, {}],
      ["DPM fast", null, {}],
    ];
    for (const [name, cls, overrides] of cases) {
      const e = findSchedulerName(name);
      expect(e, name).toBeDefined();
      expect(e!.className, name).toBe(cls);
      expect(e!.overrides, name).toEqual(overrides);
    }
    expect(findSchedulerName("DPM++ 2M Turbo")).toBeUndefined();
  });
});

describe("schedulerFromName", () => {
  it("builds the kit's classes from a raw config with the table's overrides", () => {
    const sd = rawConfig("sd15");
    const resolved = fixtureJson("schedulers", "configs_resolved.json").resolved.sd15;
    const a = schedulerFromName("DPM++ 2M", sd);
    expect(a).toBeInstanceOf(DPMSolverMultistepScheduler);
    expect(a.config).toEqual(DPMSolverMultistepScheduler.fromConfig(sd).config);
    const k = schedulerFromName("DPM++ 2M Karras", sd) as DPMSolverMultistepScheduler;
    expect(k.config.use_karras_sigmas).toBe(true);
    k.setTimesteps(10);
    expect(k.timesteps).toEqual(fixtureJson("schedulers", "trajectories_sd15.json").variants.DPMSolverMultistepScheduler_karras.timesteps);
    expect([...k.config._use_default_values!].sort()).toEqual([...resolved.DPMSolverMultistepScheduler_karras._use_default_values].sort());
    const sde = schedulerFromName("DPM++ 2M SDE Karras", sd) as DPMSolverMultistepScheduler;
    expect([sde.config.algorithm_type, sde.config.use_karras_sigmas]).toEqual(["sde-dpmsolver++", true]);
    expect((schedulerFromName("uni_pc", sd) as UniPCMultistepScheduler).config.solver_type).toBe("bh1");
    expect((schedulerFromName("UniPC", sd) as UniPCMultistepScheduler).config.solver_type).toBe("bh2");
    expect(schedulerFromName("LCM", sd)).toBeInstanceOf(LCMScheduler);
    expect(schedulerFromName("ddim", sd)).toBeInstanceOf(DDIMScheduler);
    expect(schedulerFromName("DDPM", rawConfig("ddpm_cat"))).toBeInstanceOf(DDPMScheduler);
    // a registered diffusers class name works too; extra overrides win over the table's
    expect(schedulerFromName("UniPCMultistepScheduler", sd)).toBeInstanceOf(UniPCMultistepScheduler);
    const o = schedulerFromName("DPM++ 2M Karras", sd, { use_karras_sigmas: false, solver_order: 3 }) as DPMSolverMultistepScheduler;
    expect([o.config.use_karras_sigmas, o.config.solver_order]).toEqual([false, 3]);
  });

  it("swapping a pipeline's scheduler: pass the scheduler (or its config); its defaulted keys stay the new class's", () => {
    const pndmLike = DDIMScheduler.fromConfig(rawConfig("sd15"));
    const dpm = schedulerFromName("DPM++ 2M", pndmLike) as DPMSolverMultistepScheduler;
    // DDIM's defaulted timestep_spacing "leading" is not carried over: DPM keeps its own "linspace"
    expect(pndmLike.config.timestep_spacing).toBe("leading");
    expect(dpm.config.timestep_spacing).toBe("linspace");
    expect(dpm.config).toEqual(schedulerFromName("DPM++ 2M", pndmLike.config).config);
    expect(dpm.config.beta_schedule).toBe("scaled_linear");
  });

  it("the other kit schedulers' names work once their classes are registered", () => {
    const sd = rawConfig("sd15");
    for (const [name, overrides] of [
      ["Euler", {}],
      ["Euler a", {}],
      ["Heun", {}],
      ["LMS", {}],
      ["LMS Karras", { use_karras_sigmas: true }],
      ["PLMS", { skip_prk_steps: true }],
      ["PNDM", {}],
    ] as [string, Record<string, unknown>][]) {
      const cls = getSchedulerClass(expectedClass(name)!);
      if (cls === undefined) {
        expect(() => schedulerFromName(name, sd)).toThrow(/which this kit does not implement/);
        continue;
      }
      const s = schedulerFromName(name, sd);
      expect(s).toBeInstanceOf(cls);
      for (const [k, v] of Object.entries(overrides)) expect(s.config[k], `${name} ${k}`).toBe(v);
      expect(supportedSchedulerNames()).toContain(name);
    }
  });

  it("unsupported names fail with the list of supported ones", () => {
    const supported = supportedSchedulerNames();
    for (const n of ["DPM++ 2M", "DPM++ 2M Karras", "DPM++ 2M SDE", "DPM++ 2M SDE Karras", "DDIM", "DDPM", "UniPC", "LCM"]) {
      expect(supported).toContain(n);
    }
    expect(supported).not.toContain("DPM2");
    const err = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        return e as UnsupportedSchedulerError;
      }
      throw new Error("expected a throw");
    };
    const unknown = err(() => schedulerFromName("DPM++ 2M Turbo", {}));
    expect(unknown).toBeInstanceOf(UnsupportedSchedulerError);
    expect(unknown.message).toMatch(/unknown sampler name "DPM\+\+ 2M Turbo"; supported names: "DPM\+\+ 2M", "DPM\+\+ 2M Karras"/);
    expect(unknown.message).toMatch(/"LCM"/);
    expect(unknown.supported).toEqual(supported);
    expect(() => schedulerFromName("DPM2 a Karras", {})).toThrow(
      /"DPM2 a Karras" is diffusers' KDPM2AncestralDiscreteScheduler, which this kit does not implement .*supported names: "DPM\+\+ 2M"/,
    );
    expect(() => schedulerFromName("dpmpp_2s_ancestral", {})).toThrow(/"DPM\+\+ 2S a" has no equivalent in diffusers 0.27 \(no diffusers equivalent/);
    expect(() => schedulerFromName("DPM++ 3M SDE", {})).toThrow(/no third-order SDE update/);
    expect(() => schedulerFromName("DPM++ SDE", {})).toThrow(/DPMSolverSDEScheduler, which this kit does not implement/);
    expect(() => schedulerFromName("", {})).toThrow(/expected a sampler name/);
    expect(() => resolveSchedulerName("DEIS")).toThrow(/DEISMultistepScheduler/);
  });
});
