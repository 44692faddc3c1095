// The sampler names people search for (AUTOMATIC1111 / k-diffusion, ComfyUI, InvokeAI) as data:
// each maps to a diffusers scheduler class plus from_config overrides, after the table in
// diffusers 0.27.2 docs/source/en/api/schedulers/overview.md. `schedulerFromName` builds the
// scheduler through the registry (`getSchedulerClass`), so a name works as soon as its class's
// module has been imported (the package index imports all of them).
import { ConfigError } from "../io/config.js";
import { type SchedulerClass, SchedulerMixin, getSchedulerClass, registeredSchedulers } from "./scheduling-utils.js";
// the schedulers that live next to this file register themselves on import
import "./scheduling-ddpm.js";
import "./scheduling-ddim.js";
import "./scheduling-dpmsolver-multistep.js";
import "./scheduling-unipc-multistep.js";
import "./scheduling-lcm.js";

/** One searchable sampler name. */
export interface SchedulerNameEntry {
  /** The name as A1111 shows it (or ComfyUI, for names A1111 does not have). */
  readonly name: string;
  /** Other spellings: ComfyUI sampler (+ " karras" scheduler) names, InvokeAI names, k-diffusion's k_ names. */
  readonly aliases: readonly string[];
  /** The diffusers class, or null when diffusers 0.27 has no equivalent. */
  readonly className: string | null;
  /** `Class.from_config(config, **overrides)` keyword overrides. */
  readonly overrides: Readonly<Record<string, unknown>>;
  /** What differs from the original sampler, when something does. */
  readonly note?: string;
}

const KARRAS = { use_karras_sigmas: true } as const;
const SDE = { algorithm_type: "sde-dpmsolver++" } as const;
const DPM = "DPMSolverMultistepScheduler";

/** The table (A1111 order, then the diffusers-only ones). */
export const SCHEDULER_NAMES: readonly SchedulerNameEntry[] = Object.freeze([
  { name: "DPM++ 2M", aliases: ["dpmpp_2m", "k_dpmpp_2m"], className: DPM, overrides: {} },
  { name: "DPM++ 2M Karras", aliases: ["dpmpp_2m karras", "dpmpp_2m_k"], className: DPM, overrides: KARRAS },
  {
    name: "DPM++ 2M SDE",
    aliases: ["dpmpp_2m_sde", "dpmpp_2m_sde_gpu"],
    className: DPM,
    overrides: SDE,
    note: "diffusers draws plain Gaussian noise per step; A1111 / ComfyUI use a Brownian-tree noise sampler, so seeds do not match",
  },
  {
    name: "DPM++ 2M SDE Karras",
    aliases: ["dpmpp_2m_sde karras", "dpmpp_2m_sde_gpu karras", "dpmpp_2m_sde_k"],
    className: DPM,
    overrides: { ...SDE, ...KARRAS },
    note: "diffusers draws plain Gaussian noise per step; A1111 / ComfyUI use a Brownian-tree noise sampler, so seeds do not match",
  },
  {
    name: "DPM++ 3M SDE",
    aliases: ["dpmpp_3m_sde", "dpmpp_3m_sde_gpu"],
    className: null,
    overrides: {},
    note: "diffusers 0.27's DPMSolverMultistepScheduler has no third-order SDE update",
  },
  {
    name: "DPM++ 2S a",
    aliases: ["dpmpp_2s_ancestral"],
    className: null,
    overrides: {},
    note: "no diffusers equivalent (DPMSolverSinglestepScheduler is similar but not the same)",
  },
  {
    name: "DPM++ 2S a Karras",
    aliases: ["dpmpp_2s_ancestral karras"],
    className: null,
    overrides: {},
    note: "no diffusers equivalent (DPMSolverSinglestepScheduler with use_karras_sigmas is similar)",
  },
  {
    name: "DPM++ SDE",
    aliases: ["dpmpp_sde", "dpmpp_sde_gpu"],
    className: "DPMSolverSDEScheduler",
    overrides: {},
    note: "k-diffusion's sample_dpmpp_sde; diffusers' port is DPMSolverSDEScheduler (needs torchsde; the 0.27 docs table lists DPMSolverSinglestepScheduler)",
  },
  {
    name: "DPM++ SDE Karras",
    aliases: ["dpmpp_sde karras", "dpmpp_sde_gpu karras", "dpmpp_sde_k"],
    className: "DPMSolverSDEScheduler",
    overrides: KARRAS,
    note: "see DPM++ SDE",
  },
  { name: "DPM2", aliases: ["dpm_2", "kdpm_2", "k_dpm_2"], className: "KDPM2DiscreteScheduler", overrides: {} },
  { name: "DPM2 Karras", aliases: ["dpm_2 karras", "kdpm_2_k"], className: "KDPM2DiscreteScheduler", overrides: KARRAS },
  { name: "DPM2 a", aliases: ["dpm_2_ancestral", "kdpm_2_a", "k_dpm_2_a"], className: "KDPM2AncestralDiscreteScheduler", overrides: {} },
  { name: "DPM2 a Karras", aliases: ["dpm_2_ancestral karras", "kdpm_2_a_k"], className: "KDPM2AncestralDiscreteScheduler", overrides: KARRAS },
  { name: "DPM fast", aliases: ["dpm_fast"], className: null, overrides: {}, note: "no diffusers equivalent" },
  { name: "DPM adaptive", aliases: ["dpm_adaptive"], className: null, overrides: {}, note: "no diffusers equivalent" },
  { name: "Euler", aliases: ["euler", "k_euler"], className: "EulerDiscreteScheduler", overrides: {} },
  { name: "Euler Karras", aliases: ["euler karras", "euler_k"], className: "EulerDiscreteScheduler", overrides: KARRAS },
  {
    name: "Euler a",
    aliases: ["euler_ancestral", "euler_a", "k_euler_a", "Euler Ancestral"],
    className: "EulerAncestralDiscreteScheduler",
    overrides: {},
  },
  { name: "Heun", aliases: ["heun", "k_heun"], className: "HeunDiscreteScheduler", overrides: {} },
  { name: "Heun Karras", aliases: ["heun karras", "heun_k"], className: "HeunDiscreteScheduler", overrides: KARRAS },
  { name: "LMS", aliases: ["lms", "k_lms"], className: "LMSDiscreteScheduler", overrides: {} },
  { name: "LMS Karras", aliases: ["lms karras", "lms_k"], className: "LMSDiscreteScheduler", overrides: KARRAS },
  { name: "DDIM", aliases: ["ddim"], className: "DDIMScheduler", overrides: {} },
  { name: "DDPM", aliases: ["ddpm"], className: "DDPMScheduler", overrides: {} },
  {
    name: "PLMS",
    aliases: ["plms"],
    className: "PNDMScheduler",
    overrides: { skip_prk_steps: true },
    note: "PNDM's linear multistep part without the Runge-Kutta warm-up (LDM's PLMS warms up differently)",
  },
  { name: "PNDM", aliases: ["pndm"], className: "PNDMScheduler", overrides: {} },
  {
    name: "UniPC",
    aliases: ["unipc", "uni_pc_bh2"],
    className: "UniPCMultistepScheduler",
    overrides: {},
    note: "diffusers' default solver_type bh2 (A1111's default UniPC variant and ComfyUI's uni_pc are bh1)",
  },
  { name: "uni_pc", aliases: ["UniPC bh1"], className: "UniPCMultistepScheduler", overrides: { solver_type: "bh1" }, note: "ComfyUI's uni_pc: the bh1 variant" },
  { name: "LCM", aliases: ["lcm"], className: "LCMScheduler", overrides: {} },
  { name: "DEIS", aliases: ["deis"], className: "DEISMultistepScheduler", overrides: {} },
].map((e) => Object.freeze({ ...e, aliases: Object.freeze(e.aliases), overrides: Object.freeze(e.overrides) })));

/** diffusers' module for each class the table names (where to read the reference source). */
export const DIFFUSERS_SCHEDULER_MODULES: Readonly<Record<string, string>> = Object.freeze({
  DDPMScheduler: "scheduling_ddpm",
  DDIMScheduler: "scheduling_ddim",
  PNDMScheduler: "scheduling_pndm",
  DPMSolverMultistepScheduler: "scheduling_dpmsolver_multistep",
  DPMSolverSinglestepScheduler: "scheduling_dpmsolver_singlestep",
  DPMSolverSDEScheduler: "scheduling_dpmsolver_sde",
  UniPCMultistepScheduler: "scheduling_unipc_multistep",
  DEISMultistepScheduler: "scheduling_deis_multistep",
  EulerDiscreteScheduler: "scheduling_euler_discrete",
  EulerAncestralDiscreteScheduler: "scheduling_euler_ancestral_discrete",
  HeunDiscreteScheduler: "scheduling_heun_discrete",
  LMSDiscreteScheduler: "scheduling_lms_discrete",
  KDPM2DiscreteScheduler: "scheduling_k_dpm_2_discrete",
  KDPM2AncestralDiscreteScheduler: "scheduling_k_dpm_2_ancestral_discrete",
  LCMScheduler: "scheduling_lcm",
});

/** Case, "_" / "-" / repeated spaces and parentheses do not matter: "DPM++ 2M SDE (Karras)" = "dpm++_2m_sde_karras". */
export function normalizeSchedulerName(name: string): string {
  return name
    .toLowerCase()
    .replace(/[()]/g, " ")
    .replace(/[\s_\-]+/g, " ")
    .trim();
}

const byName = new Map<string, SchedulerNameEntry>();
for (const e of SCHEDULER_NAMES) {
  for (const n of [e.name, ...e.aliases]) {
    const k = normalizeSchedulerName(n);
    if (byName.has(k) && byName.get(k) !== e) throw new Error(`scheduler-names: "${n}" is listed twice`);
    byName.set(k, e);
  }
}

/** Thrown for a name that is unknown, has no diffusers equivalent, or whose class this kit lacks. */
export class UnsupportedSchedulerError extends ConfigError {
  /** The names that would work now. */
  readonly supported: string[];
  constructor(message: string, supported: string[]) {
    super(message);
    this.name = "UnsupportedSchedulerError";
    this.supported = supported;
  }
}

/** The table entry of `name` (any spelling), or undefined. Diffusers class names are not entries. */
export function findSchedulerName(name: string): SchedulerNameEntry | undefined {
  return byName.get(normalizeSchedulerName(name));
}

/** Table names whose class is registered now (i.e. that schedulerFromName can build). */
export function supportedSchedulerNames(): string[] {
  return SCHEDULER_NAMES.filter((e) => e.className !== null && getSchedulerClass(e.className) !== undefined).map((e) => e.name);
}

function supportedList(): string {
  return `supported names: ${supportedSchedulerNames()
    .map((n) => JSON.stringify(n))
    .join(", ")} (or a registered diffusers class name: ${registeredSchedulers().join(", ")})`;
}

/**
 * The class and overrides `name` stands for: a table name or alias (A1111 / ComfyUI / InvokeAI
 * spelling), or a registered diffusers class name. Throws UnsupportedSchedulerError (listing the
 * supported names) when the name is unknown, has no diffusers equivalent, or its class is not
 * implemented / imported.
 */
export function resolveSchedulerName(name: string): { cls: SchedulerClass; overrides: Record<string, unknown>; entry: SchedulerNameEntry | null } {
  if (typeof name !== "string" || name.trim() === "") {
    throw new UnsupportedSchedulerError(`schedulerFromName: expected a sampler name, got ${JSON.stringify(name)}; ${supportedList()}`, supportedSchedulerNames());
  }
  const entry = findSchedulerName(name);
  if (entry === undefined) {
    const direct = getSchedulerClass(name.trim());
    if (direct !== undefined) return { cls: direct, overrides: {}, entry: null };
    throw new UnsupportedSchedulerError(`schedulerFromName: unknown sampler name ${JSON.stringify(name)}; ${supportedList()}`, supportedSchedulerNames());
  }
  if (entry.className === null) {
    throw new UnsupportedSchedulerError(
      `schedulerFromName: "${entry.name}" has no equivalent in diffusers 0.27 (${entry.note ?? "not ported"}); ${supportedList()}`,
      supportedSchedulerNames(),
    );
  }
  const cls = getSchedulerClass(entry.className);
  if (cls === undefined) {
    throw new UnsupportedSchedulerError(
      `schedulerFromName: "${entry.name}" is diffusers' ${entry.className}, which this kit does not implement ` +
        `(or whose module has not been imported); ${supportedList()}`,
      supportedSchedulerNames(),
    );
  }
  return { cls, overrides: { ...entry.overrides }, entry };
}

/**
 * Builds the scheduler a sampler name stands for from a config, as
 * `Class.from_config(config, **overrides, **extraOverrides)`: `config` is a raw scheduler_config.json
 * dict, another scheduler's `.config`, or a scheduler itself (its config is used, e.g. to swap a
 * pipeline's scheduler). `extraOverrides` win over the table's.
 */
export function schedulerFromName(
  name: string,
  config: Record<string, unknown> | SchedulerMixin = {},
  extraOverrides: Record<string, unknown> = {},
): SchedulerMixin {
  const { cls, overrides } = resolveSchedulerName(name);
  const raw = config instanceof SchedulerMixin ? (config.config as Record<string, unknown>) : config;
  return cls.fromConfig(raw, { ...overrides, ...extraOverrides });
}
