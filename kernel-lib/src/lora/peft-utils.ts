// LoRA adapters of one model (UNet or text encoder), as diffusers' utils/peft_utils.py and PEFT's tuner
// layers: inject an adapter's layers, choose the active adapters and their weights, enable / disable,
// fuse / unfuse, delete, unload. Every LoRA layer of a model shares one scope (the call's scale, on/off).
import { Module } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { Linear } from "../nn/linear.js";
import { setLoraScaleHook } from "../models/modeling-utils.js";
import type { RawTensor } from "../io/safetensors.js";
import { LoraLayer, type LoraScope } from "./lora-layer.js";

/** One module's LoRA pair in torch layout: A (down) [r, in(, kh, kw)], B (up) [out, r(, 1, 1)]. */
export interface LoraModuleWeights {
  /** Path of the Linear / Conv2d inside the model ("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"). */
  module: string;
  down: RawTensor;
  up: RawTensor;
  /** The stored alpha, or null when the file has none (then alpha = r: scale 1). */
  alpha: number | null;
}

interface ModelLora {
  scope: LoraScope;
  /** LoRA layers by module path, in the model's module order. */
  layers: Map<string, LoraLayer>;
}

const STATES = new WeakMap<Module, ModelLora>();

function stateOf(model: Module): ModelLora | undefined {
  return STATES.get(model);
}

/** LoRA layers of a model in module order (named_modules order: what diffusers' "first tuner layer" means). */
export function loraLayers(model: Module): LoraLayer[] {
  return [...(stateOf(model)?.layers.values() ?? [])];
}

/** LoRA layers with their module paths, in module order (for saving and for trainable parameters). */
export function namedLoraLayers(model: Module): [string, LoraLayer][] {
  return [...(stateOf(model)?.layers.entries() ?? [])];
}

/** The Linear and Conv2d layers of a model by path: what a LoRA can patch. */
export function loraTargets(model: Module): Map<string, Linear | Conv2d> {
  const out = new Map<string, Linear | Conv2d>();
  for (const [name, m] of model.namedModules()) if (m instanceof Linear || m instanceof Conv2d) out.set(name, m);
  return out;
}

/** Adapter names held by any LoRA layer of the model, in load order. */
export function modelAdapters(model: Module): string[] {
  const names = new Set<string>();
  for (const l of loraLayers(model)) for (const n of l.adapterNames) names.add(n);
  return [...names];
}

/**
 * Adds adapter `name` to the model: a LoRA layer on every listed module (created on first use). Module paths
 * and shapes must already be checked (lora-loader's parseLoraStateDict does).
 */
export function injectAdapter(model: Module, name: string, weights: LoraModuleWeights[]): void {
  if (weights.length === 0) return;
  if (modelAdapters(model).includes(name)) throw new Error(`Adapter name "${name}" is already in use in ${model.constructor.name}: choose another adapterName`);
  let state = stateOf(model);
  if (!state) {
    state = { scope: { callScale: 1, disabled: false }, layers: new Map() };
    STATES.set(model, state);
  }
  const targets = loraTargets(model);
  for (const w of weights) {
    const target = targets.get(w.module);
    if (!target) throw new Error(`${model.constructor.name} has no Linear or Conv2d "${w.module}"`);
    let layer = state.layers.get(w.module);
    if (!layer) {
      layer = LoraLayer.attach(target, state.scope);
      state.layers.set(w.module, layer);
    }
    layer.addAdapter(name, w.down, w.up, w.alpha ?? w.down.shape[0]);
  }
  // keep module order (a layer added later may sit earlier in the tree)
  const order = [...targets.keys()];
  state.layers = new Map([...state.layers].sort((a, b) => order.indexOf(a[0]) - order.indexOf(b[0])));
}

/** diffusers' set_weights_and_activate_adapters: every LoRA layer runs `names`, each at its weight. */
export function setModelAdapters(model: Module, names: string[], weights: number[]): void {
  for (const layer of loraLayers(model)) {
    names.forEach((n, i) => {
      const a = layer.adapter(n);
      if (a) a.weight = weights[i];
    });
    layer.active = [...names];
  }
}

/** The first LoRA layer's active adapters (diffusers' get_active_adapters); [] without LoRA. */
export function modelActiveAdapters(model: Module): string[] {
  return [...(loraLayers(model)[0]?.active ?? [])];
}

/** disable_lora / enable_lora. Disabling a fused model unfuses it first (PEFT's forward does the same). */
export function setLoraEnabled(model: Module, enabled: boolean): void {
  const state = stateOf(model);
  if (!state) return;
  if (!enabled) unfuseModel(model);
  state.scope.disabled = !enabled;
}

export function isLoraEnabled(model: Module): boolean {
  return !(stateOf(model)?.scope.disabled ?? false);
}

/**
 * fuse_lora: W <- W + Σ s_a B_a A_a for the active adapters (or `adapterNames`), each s_a times `loraScale`.
 * Unlike PEFT's scale_layer, `loraScale` does not stay in the adapters' scales after unfusing.
 */
export function fuseModel(model: Module, loraScale: number, adapterNames?: string[]): void {
  const state = stateOf(model);
  if (!state) return;
  if (state.scope.disabled) throw new Error(`LoRA is disabled on ${model.constructor.name}: call enableLora() before fuseLora()`);
  for (const layer of state.layers.values()) layer.merge(adapterNames ?? layer.active, loraScale);
}

/** unfuse_lora: every fused layer gets its original weight back, bit for bit. */
export function unfuseModel(model: Module): void {
  for (const layer of loraLayers(model)) layer.unmerge();
}

export function isFused(model: Module): boolean {
  return loraLayers(model).some((l) => l.merged.length > 0);
}

/** delete_adapters: frees the adapters' weights; layers left without adapters are taken off. */
export function deleteModelAdapters(model: Module, names: string[]): void {
  const state = stateOf(model);
  if (!state) return;
  for (const [path, layer] of state.layers) {
    for (const n of names) layer.deleteAdapter(n);
    if (layer.adapterNames.length === 0) {
      layer.detach();
      state.layers.delete(path);
    }
  }
  if (state.layers.size === 0) STATES.delete(model);
}

/** unload_lora_weights: every LoRA layer off, every adapter freed. Fused weights stay fused (diffusers bakes them in). */
export function unloadModelLora(model: Module): void {
  for (const layer of loraLayers(model)) layer.detach();
  STATES.delete(model);
}

/**
 * Runs `fn` with every LoRA layer of `model` scaled by `scale` (diffusers' scale_lora_layers before and
 * unscale_lora_layers after: cross_attention_kwargs={"scale": s}). Without LoRA or scale, just runs fn.
 * diffusers 0.27 resets the adapters' weights to 1 after a call with scale 0; here nothing persists.
 */
export function withLoraScale<T>(model: Module, scale: number | undefined | null, fn: () => T): T {
  const state = stateOf(model);
  if (!state || scale === undefined || scale === null) return fn();
  const before = state.scope.callScale;
  state.scope.callScale = before * scale;
  try {
    return fn();
  } finally {
    state.scope.callScale = before;
  }
}

// the UNet's forward scales its LoRA layers through this (models/modeling-utils.ts: applyLoraScale)
setLoraScaleHook(withLoraScale);
