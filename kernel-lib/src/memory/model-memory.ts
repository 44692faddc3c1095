// Memory for models used on their own (lesson 03's loop by hand), as a pipeline plans it for its components
// (memory-plan.ts): the load policy ModelMixin.fromPretrained follows for placement "auto", and a check before each
// model call.
//   placement: a model goes on the device when its weights (x2 on wasm for XNNPACK's packed copies) fit beside the
//              tensors already there with room for the largest default call of it and of the models already on the
//              device; otherwise its weights stay in host memory under sequential offload (offload.ts), said in one line.
//   each call: before forward / encode / decode, the call's activations are estimated from its input shapes; when
//              they would overrun the budget, attention slicing ("auto", then "max"), VAE slicing, then VAE tiling
//              is turned on (one line each); when nothing fits, a MemoryPlanError before any kernel runs, instead
//              of a wasm abort that would kill the kernel.
import { ModelMixin, setModelLoadPolicy, type WeightPlacement } from "../models/modeling-utils.js";
import { getKeepPackedWeights } from "../runtime/wasm/packed-weights.js";
import { memoryBudget, packsWeights } from "./memory-budget.js";
import { activationBytes, callFromArgs, defaultCall, largestLayerBytes, weightBytes, type ActivationKnobs, type ModelCall } from "./memory-estimate.js";
import { formatBytes, liveTensorBytes } from "./memory-report.js";
import { hasModelOffload, setModelOffload } from "./offload.js";
import { addForwardHook, MODEL_METHODS } from "./hooks.js";
import { deviceIsHostMemory, MemoryPlanError } from "./memory-plan.js";
import { attentionLayers, setAttentionSlice } from "../models/attention-slicing.js";

/** Every model loaded through fromPretrained, to count the packed copies of their resident weights. */
const loadedModels = new Set<WeakRef<ModelMixin>>();
const placementNote = new WeakMap<ModelMixin, string>();
/** The activations of the default call of each model placed on the device: room the next placements must leave. */
const deviceCallBytes = new WeakMap<ModelMixin, number>();

/** The largest default call of the models on the device now (their room must stay free). */
function largestDeviceCall(): number {
  let most = 0;
  for (const ref of loadedModels) {
    const m = ref.deref();
    if (m && m.namedParameters().some(([, p]) => p.isLoaded)) most = Math.max(most, deviceCallBytes.get(m) ?? 0);
  }
  return most;
}

/** Bytes of resident weights of all loaded models (what XNNPACK may keep a packed copy of on wasm). */
function residentWeightBytes(): number {
  let sum = 0;
  for (const ref of loadedModels) {
    const m = ref.deref();
    if (!m) { loadedModels.delete(ref); continue; }
    for (const [, p] of m.namedParameters()) if (p.isLoaded) sum += p.numBytes;
  }
  return sum;
}

/** Tensors on the device now, with wasm's packed weight copies. */
function deviceBytesInUse(): number {
  return liveTensorBytes() + (packsWeights() && getKeepPackedWeights() ? residentWeightBytes() : 0);
}

function place(model: ModelMixin, budgetBytes?: number): WeightPlacement {
  const budget = memoryBudget();
  if (budgetBytes !== undefined) budget.bytes = budgetBytes;
  if (deviceIsHostMemory(budget)) return "device";
  const pf = packsWeights() && getKeepPackedWeights() ? 2 : 1;
  const call = defaultCall(model);
  const act = call ? activationBytes(model, call, { attentionSlicing: "max" }) : 0;
  const inUse = deviceBytesInUse();
  const w = weightBytes(model);
  // accelerate's rule: what is placed must leave room for the largest call of any model on the device, this one included
  const room = Math.max(act, largestDeviceCall());
  if (inUse + w * pf + room <= budget.bytes) {
    deviceCallBytes.set(model, act);
    return "device";
  }
  placementNote.set(model,
    `${model.constructor.name}: ${formatBytes(w)} of weights${pf > 1 ? ` (${formatBytes(w * pf)} with XNNPACK's packed copies)` : ""}` +
    `${room > 0 ? ` and ~${formatBytes(room)} for the largest call` : ""} do not fit beside the ${formatBytes(inUse)} already on the ${budget.backend} device ` +
    `(budget ${formatBytes(budget.bytes)}): the weights stay in host memory and each layer is uploaded for its own forward ` +
    `(sequential offload: the same numbers, slower). { placement: "device" } forces them onto the device.`);
  return "host";
}

function describe(call: ModelCall): string {
  const shape = call.kind === "unet" ? call.sample : call.kind === "vae-decode" ? call.latents : call.kind === "vae-encode" ? call.pixels : [call.batch, call.length];
  return `[${shape.join(",")}]`;
}

/** The check before a model call (see the top of this file). */
export function checkModelCall(model: ModelMixin, method: string, args: unknown[]): void {
  const call = callFromArgs(model, method, args);
  if (!call) return;
  const budget = memoryBudget();
  const pf = packsWeights() && getKeepPackedWeights() ? 2 : 1;
  const uploads = hasModelOffload(model) ? largestLayerBytes(model) * pf : 0;
  const inUse = deviceBytesInUse();
  const need = (k: ActivationKnobs) => inUse + uploads + activationBytes(model, call, k);
  const first = need({});
  if (first <= budget.bytes) return;
  const name = `${model.constructor.name}.${method} on ${describe(call)}`;
  const tries: [ActivationKnobs, string, () => void][] = [];
  const hasAttention = typeof (model as unknown as { setAttentionSlice?: unknown }).setAttentionSlice === "function" && attentionLayers(model).length > 0;
  if (hasAttention) {
    tries.push([{ attentionSlicing: "auto" }, `attention slicing "auto" turned on (the same numbers; ${model.constructor.name}.setAttentionSlice(null) turns it off)`, () => setAttentionSlice(model, "auto")]);
    tries.push([{ attentionSlicing: "max" }, `attention slicing "max" turned on (the same numbers; setAttentionSlice(null) turns it off)`, () => setAttentionSlice(model, "max")]);
  }
  const vae = model as unknown as { useSlicing?: boolean; useTiling?: boolean };
  const batch = call.kind === "vae-decode" ? call.latents[0] : call.kind === "vae-encode" ? call.pixels[0] : 1;
  if ("useSlicing" in model) {
    if (batch > 1 && !vae.useSlicing) tries.push([{ vaeSlicing: true }, "VAE slicing turned on (one picture at a time, the same numbers; disableSlicing() turns it off)", () => { vae.useSlicing = true; }]);
    if (!vae.useTiling) tries.push([{ vaeSlicing: batch > 1 ? true : undefined, vaeTiling: true }, "VAE tiling turned on (tiles cross-faded: close to, not equal to, one pass; disableTiling() turns it off)", () => { if (batch > 1) vae.useSlicing = true; vae.useTiling = true; }]);
  }
  for (const [k, what, apply] of tries) {
    if (need(k) <= budget.bytes) {
      apply();
      console.log(`${name} needs ~${formatBytes(first)} with ${formatBytes(inUse)} in use, over the ${budget.backend} budget of ${formatBytes(budget.bytes)}: ${what}.`);
      return;
    }
  }
  const smallest = tries.length > 0 ? need(tries[tries.length - 1][0]) : first;
  throw new MemoryPlanError(
    `${name} needs about ${formatBytes(smallest)} (activations ${formatBytes(smallest - inUse - uploads)}, ${formatBytes(inUse)} of tensors in use` +
      `${uploads > 0 ? `, ${formatBytes(uploads)} for the layer being uploaded` : ""}), over the ${budget.backend} budget of ${formatBytes(budget.bytes)} ` +
      `(${budget.source})${tries.length > 0 ? ", even with attention slicing / VAE slicing and tiling" : ""}. Nothing was run. ` +
      `Use a smaller batch or size, dispose tensors you no longer need, or a backend with more memory (npm run doctor).`,
  );
}

setModelLoadPolicy({
  place,
  loaded(model, placement, auto) {
    loadedModels.add(new WeakRef(model));
    if (!auto) return;
    if (placement === "host") {
      setModelOffload(model);
      const note = placementNote.get(model);
      if (note) console.log(note);
    }
    addForwardHook(model, MODEL_METHODS, { preForward: (_t, method, args) => checkModelCall(model, method, args) });
  },
});
