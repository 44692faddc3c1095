// The memory plan of a pipeline call (diffusers' device_map="auto" through accelerate, for tfjs backends): from the
// components' weights and the call's shapes (memory-estimate.ts) and the backend's budget (memory-budget.ts), the
// cheapest set of knobs that fits, in diffusers' order of cost:
//   attention slicing ("auto", then "max"): the same numbers, a little slower;
//   VAE slicing (one picture at a time) and tiling (tiles of tileSampleMinSize: close to, not equal to, one pass);
//   unpacked weights (wasm: XNNPACK re-packs each weight per call instead of keeping a copy, runtime/wasm/packed-weights.ts);
//   model CPU offload (one whole model on the device at a time), then sequential offload (one layer at a time).
// A plan is a MemoryPlan: the knobs, the estimate of every model call, the peak and why; pipelines apply it before
// the first kernel runs and re-make it when the size, the batch or guidance changes.
import type { Module } from "../nn/module.js";
import { getKeepPackedWeights, setKeepPackedWeights } from "../runtime/wasm/packed-weights.js";
import { memoryBudget, packsWeights, type MemoryBudget } from "./memory-budget.js";
import { activationBytes, largestBlockBytes, largestLayerBytes, weightBytes, type ModelCall } from "./memory-estimate.js";
import { formatBytes, liveTensorBytes } from "./memory-report.js";
import { setAttentionSlice, attentionLayers, type AttentionSliceSize } from "../models/attention-slicing.js";
import {
  disableCpuOffload, enableModelCpuOffload, enableSequentialCpuOffload, getOffloadMode, hasModelOffload, pipelineModules,
  type OffloadMode,
} from "./offload.js";

/** "auto": plan before each call (default); "none": never plan or check; "manual": the knobs were set by hand. */
export type MemoryMode = "auto" | "none" | "manual";
export type OffloadChoice = "none" | OffloadMode;

export interface MemoryKnobs {
  offload: OffloadChoice;
  /** wasm: XNNPACK keeps a packed copy of each weight (fast) or re-packs per call (half the weights' memory) */
  keepPackedWeights: boolean;
  /** undefined: each model's current setting */
  attentionSlicing?: AttentionSliceSize;
  vaeSlicing?: boolean;
  vaeTiling?: boolean;
}

/** One model call a pipeline call will make. */
export interface PlannedCall { component: string; call: ModelCall }

export interface CallEstimate {
  component: string;
  call: ModelCall;
  /** weights on the device while this call runs (packed copies included) */
  weightBytes: number;
  activationBytes: number;
  /** weights + activations + the other tensors alive */
  totalBytes: number;
  /** the largest single tensor of the call (an attention slice's score maps), which the wasm heap needs in one piece */
  blockBytes: number;
}

export interface MemoryPlan {
  /** the call planned for: "StableDiffusionPipeline 512x512, 1 picture, CFG" */
  what: string;
  knobs: MemoryKnobs;
  budget: MemoryBudget;
  fits: boolean;
  /** estimated peak bytes and the call where it happens */
  peakBytes: number;
  peakCall: string;
  /** tensors alive before the call that are not the components' weights (the user's own) */
  otherBytes: number;
  /** float32 weight bytes per component */
  weights: Record<string, number>;
  /** weights kept in host memory (offloaded) */
  hostBytes: number;
  calls: CallEstimate[];
  /** one line for people: what was chosen and why */
  summary: string;
}

export interface PlanInput {
  what: string;
  components: [string, Module][];
  calls: PlannedCall[];
  /** components already offloaded on their own (a model loaded alone that did not fit): one layer at a time, whatever the plan */
  fixed?: Set<string>;
}

/** No plan fits, or a call would overrun the budget: thrown before any kernel runs. */
export class MemoryPlanError extends Error {
  constructor(message: string, readonly plan?: MemoryPlan) {
    super(message);
    this.name = "MemoryPlanError";
  }
}

const COST = {
  offload: { none: 0, model: 20, sequential: 60 } as Record<OffloadChoice, number>,
  unpacked: 8,
  slicing: (s: AttentionSliceSize | undefined) => (s === "auto" ? 1 : s === "max" ? 2 : 0),
  vaeSlicing: 0.5,
  vaeTiling: 6,
};

function describeCall(c: PlannedCall): string {
  const shape = c.call.kind === "unet" ? c.call.sample : c.call.kind === "vae-decode" ? c.call.latents : c.call.kind === "vae-encode" ? c.call.pixels : [c.call.batch, c.call.length];
  const verb = c.call.kind === "vae-decode" ? ".decode" : c.call.kind === "vae-encode" ? ".encode" : "";
  return `${c.component}${verb} [${shape.join(",")}]`;
}

function describeKnobs(k: MemoryKnobs, hasAttention: boolean, hasVae: boolean, packs: boolean, fixed: string[] = [], all: string[] = []): string {
  const parts: string[] = [];
  const rest = all.filter((n) => !fixed.includes(n));
  const others = fixed.length === 0 ? "" : rest.length === 0 ? "" : ` for ${rest.join(", ")}`;
  if (fixed.length > 0) parts.push(`${fixed.join(", ")} in host memory since loading (sequential offload)`);
  if (fixed.length === 0 || rest.length > 0) {
    parts.push(k.offload === "none" ? (fixed.length ? `${rest.join(", ")} on the device` : "all weights on the device")
      : k.offload === "model" ? `model CPU offload${others}` : `sequential CPU offload${others}`);
  }
  if (packs && !k.keepPackedWeights) parts.push("weights re-packed per call");
  if (hasAttention && k.attentionSlicing !== undefined) parts.push(k.attentionSlicing === null ? "one-pass attention" : `attention slicing "${k.attentionSlicing}"`);
  if (hasVae && k.vaeSlicing) parts.push("VAE slicing");
  if (hasVae && k.vaeTiling) parts.push("VAE tiling");
  return parts.join(", ");
}

/** The estimate of one set of knobs (see the top of memory-estimate.ts for what is counted). */
export function estimatePlan(input: PlanInput, knobs: MemoryKnobs, budget: MemoryBudget = memoryBudget()): MemoryPlan {
  const fixed = input.fixed ?? new Set<string>();
  const pf = packsWeights() && knobs.keepPackedWeights ? 2 : 1;
  const comps = new Map(input.components);
  const weights: Record<string, number> = {};
  const layers: Record<string, number> = {};
  let loadedNow = 0;
  for (const [n, m] of input.components) {
    weights[n] = weightBytes(m);
    layers[n] = largestLayerBytes(m);
    loadedNow += m.namedParameters().reduce((s, [, p]) => s + (p.isLoaded ? p.numBytes : 0), 0);
  }
  const otherBytes = Math.max(0, liveTensorBytes() - loadedNow);
  const sequential = (n: string) => knobs.offload === "sequential" || fixed.has(n);
  const calls: CallEstimate[] = input.calls.map(({ component, call }) => {
    const m = comps.get(component);
    if (!m) throw new Error(`memory plan: no component "${component}" (the pipeline has ${[...comps.keys()].join(", ")})`);
    let w = 0;
    for (const [n] of input.components) {
      if (sequential(n)) w += n === component ? layers[n] * pf : 0;
      else if (knobs.offload === "model") w += n === component ? weights[n] * pf : 0;
      else w += weights[n] * pf;
    }
    const act = { attentionSlicing: knobs.attentionSlicing, vaeSlicing: knobs.vaeSlicing, vaeTiling: knobs.vaeTiling };
    const a = activationBytes(m, call, act);
    return { component, call, weightBytes: w, activationBytes: a, totalBytes: w + a + otherBytes, blockBytes: largestBlockBytes(m, call, act) };
  });
  let peak = otherBytes, peakIndex = -1;
  calls.forEach((c, i) => { if (c.totalBytes > peak) { peak = c.totalBytes; peakIndex = i; } });
  const hostBytes = input.components.reduce((s, [n]) => s + (knobs.offload !== "none" || fixed.has(n) ? weights[n] : 0), 0);
  const peakCall = peakIndex >= 0 ? describeCall(input.calls[peakIndex]) : "none";
  const hasAttention = input.components.some(([, m]) => typeof (m as { setAttentionSlice?: unknown }).setAttentionSlice === "function" && attentionLayers(m).length > 0);
  const hasVae = input.components.some(([, m]) => "useSlicing" in m);
  // wasm: one linear heap, where a block must be found in one piece: keep the largest block free beyond each call
  const oneHeap = budget.backend === "wasm";
  const fits = peak <= budget.bytes && (!oneHeap || calls.every((c) => c.totalBytes + c.blockBytes <= budget.bytes));
  const total = Object.values(weights).reduce((a, b) => a + b, 0);
  const summary = `memory plan for ${input.what} on ${budget.backend} (budget ${formatBytes(budget.bytes)}): ` +
    `${describeKnobs(knobs, hasAttention, hasVae, packsWeights(), [...fixed], input.components.map(([n]) => n))}; weights ${formatBytes(total)}` +
    (hostBytes > 0 ? ` (${formatBytes(hostBytes)} in host memory)` : "") +
    `; est. peak ${formatBytes(peak)} in ${peakCall}` +
    (fits ? "" : peak <= budget.bytes ? ` — does NOT fit: its largest attention block (${formatBytes(Math.max(...calls.map((c) => c.blockBytes)))}) needs a free piece of the wasm heap of its own` : " — does NOT fit");
  return { what: input.what, knobs, budget, fits, peakBytes: peak, peakCall, otherBytes, weights, hostBytes, calls, summary };
}

function cost(k: MemoryKnobs, packs: boolean): number {
  return COST.offload[k.offload] + (packs && !k.keepPackedWeights ? COST.unpacked : 0) + COST.slicing(k.attentionSlicing) +
    (k.vaeSlicing ? COST.vaeSlicing : 0) + (k.vaeTiling ? COST.vaeTiling : 0);
}

export interface ChooseOptions {
  budget?: MemoryBudget;
  /** offload modes allowed (default: all, but none where the device is host memory: tensorflow on the CPU, cpu) */
  offload?: OffloadChoice[];
}

/** Where tensors live in host memory already, offloading gains nothing. */
export function deviceIsHostMemory(budget: MemoryBudget): boolean {
  return budget.backend === "cpu" || budget.backend === "tensorflow";
}

/**
 * The cheapest knobs that fit (see the top of this file); a MemoryPlanError naming the largest call, the bytes it
 * needs and what to change when even the smallest plan does not fit.
 */
export function chooseMemoryPlan(input: PlanInput, opts: ChooseOptions = {}): MemoryPlan {
  const budget = opts.budget ?? memoryBudget();
  const packs = packsWeights();
  const offloads = deviceIsHostMemory(budget) ? ["none" as const] : opts.offload ?? ["none", "model", "sequential"];
  const hasVae = input.components.some(([, m]) => "useSlicing" in m);
  const candidates: MemoryKnobs[] = [];
  for (const offload of offloads)
    // under sequential offload every weight is a fresh tensor per call, re-packed anyway: the knob changes nothing
    for (const keepPackedWeights of packs && offload !== "sequential" ? [true, false] : [true])
      for (const attentionSlicing of [null, "auto", "max"] as AttentionSliceSize[])
        for (const vaeSlicing of hasVae ? [false, true] : [false])
          for (const vaeTiling of hasVae ? [false, true] : [false])
            candidates.push({ offload, keepPackedWeights, attentionSlicing, vaeSlicing, vaeTiling });
  candidates.sort((a, b) => cost(a, packs) - cost(b, packs));
  let smallest: MemoryPlan | null = null;
  for (const k of candidates) {
    const plan = estimatePlan(input, k, budget);
    if (plan.fits) return plan;
    if (!smallest || plan.peakBytes < smallest.peakBytes) smallest = plan;
  }
  throw new MemoryPlanError(noFitMessage(smallest!), smallest!);
}

function noFitMessage(p: MemoryPlan): string {
  const c = p.calls.find((x) => x.totalBytes === p.peakBytes) ?? p.calls[0];
  const where = c ? `${describeCall(c)}: weights ${formatBytes(c.weightBytes)} + activations ${formatBytes(c.activationBytes)}` +
    (p.otherBytes > 0 ? ` + ${formatBytes(p.otherBytes)} of other tensors alive` : "") : "";
  return `No memory plan fits ${p.what} on ${p.budget.backend}: the budget is ${formatBytes(p.budget.bytes)} (${p.budget.source}), ` +
    `and even the smallest plan (${describeKnobs(p.knobs, true, true, packsWeights())}) needs about ${formatBytes(p.peakBytes)}, ` +
    `at ${where}. Nothing was run. To fit: make fewer pictures per call (batch / numImagesPerPrompt), a smaller height and width, ` +
    (p.otherBytes > 0 ? "dispose tensors you no longer need (tf.dispose), " : "") +
    `or use a backend with more memory (npm run doctor says which run here).`;
}

// ---- applying a plan to a pipeline ------------------------------------------------------------------------

/** The knobs a pipeline runs with now (attention and VAE settings: each model's own). */
export function currentKnobs(pipe: object): MemoryKnobs {
  return { offload: getOffloadMode(pipe) ?? "none", keepPackedWeights: getKeepPackedWeights() };
}

/**
 * Sets the plan's knobs on the pipeline's components (the same calls as enable* without taking manual control). A
 * plan only adds savings: a setting it does not need is undone only if the previous plan (`previous`) made it, so
 * what the user set on a model (unet.setAttentionSlice, vae.enableTiling) stays.
 */
export function applyMemoryKnobs(pipe: object, k: MemoryKnobs, modelCpuOffloadSeq: string | null, previous: MemoryKnobs | null): void {
  if (packsWeights()) {
    if (!k.keepPackedWeights) setKeepPackedWeights(false);
    else if (previous && !previous.keepPackedWeights) setKeepPackedWeights(true);
  }
  const now = getOffloadMode(pipe) ?? "none";
  if (k.offload !== now) {
    if (k.offload === "model") enableModelCpuOffload(pipe, modelCpuOffloadSeq);
    else if (k.offload === "sequential") enableSequentialCpuOffload(pipe);
    else if (previous && previous.offload === now) disableCpuOffload(pipe);
  }
  for (const [, m] of pipelineModules(pipe)) {
    if (typeof (m as { setAttentionSlice?: unknown }).setAttentionSlice === "function") {
      if (k.attentionSlicing !== undefined && k.attentionSlicing !== null) setAttentionSlice(m, k.attentionSlicing);
      else if (k.attentionSlicing === null && previous?.attentionSlicing) setAttentionSlice(m, null);
    }
    if ("useSlicing" in m) {
      const vae = m as unknown as { useSlicing: boolean; useTiling: boolean };
      if (k.vaeSlicing) vae.useSlicing = true;
      else if (previous?.vaeSlicing) vae.useSlicing = false;
      if (k.vaeTiling) vae.useTiling = true;
      else if (previous?.vaeTiling) vae.useTiling = false;
    }
  }
}

/** A plan that changes nothing (everything on the device, no slicing): pipelines do not announce it. */
export function isTrivialPlan(k: MemoryKnobs): boolean {
  return k.offload === "none" && k.keepPackedWeights && !k.attentionSlicing && !k.vaeSlicing && !k.vaeTiling;
}

/** The components a pipeline plans for, and those a model-level offload already handles. */
export function planComponents(pipe: object): { components: [string, Module][]; fixed: Set<string> } {
  const components = pipelineModules(pipe);
  return { components, fixed: new Set(components.filter(([, m]) => hasModelOffload(m)).map(([n]) => n)) };
}

// ---- the log ------------------------------------------------------------------------------------------------

const log: { what: string; summary: string; plan: MemoryPlan }[] = [];

/** Every plan chosen in this process, in order (the rehearsal records them). */
export function memoryPlanLog(): { what: string; summary: string; plan: MemoryPlan }[] {
  return [...log];
}

/** What makes two plans the same for people: the call and the knobs (not the estimate's bytes). */
export function planKey(plan: MemoryPlan): string {
  return `${plan.what} ${JSON.stringify(plan.knobs)}`;
}

/** Records a chosen plan and says it (one line) unless it is the plan last said (`lastKey`); returns its key. */
export function announcePlan(plan: MemoryPlan, lastKey: string | null, quiet = false): string {
  log.push({ what: plan.what, summary: plan.summary, plan });
  const key = planKey(plan);
  if (key !== lastKey && !quiet) console.log(plan.summary);
  return key;
}

/** The plan's knobs as the list diffusers users know (for docs and notes). */
export function knobCalls(k: MemoryKnobs): string[] {
  const calls: string[] = [];
  if (k.offload === "model") calls.push("enableModelCpuOffload()");
  if (k.offload === "sequential") calls.push("enableSequentialCpuOffload()");
  if (k.attentionSlicing !== undefined && k.attentionSlicing !== null) calls.push(`enableAttentionSlicing(${JSON.stringify(k.attentionSlicing)})`);
  if (k.vaeSlicing) calls.push("enableVaeSlicing()");
  if (k.vaeTiling) calls.push("enableVaeTiling()");
  if (!k.keepPackedWeights) calls.push("setKeepPackedWeights(false)");
  return calls;
}
