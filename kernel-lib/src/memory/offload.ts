// CPU offload (accelerate's cpu_offload / cpu_offload_with_hook, as diffusers' enable_sequential_cpu_offload and
// enable_model_cpu_offload use them). "CPU" is host memory here: an offloaded weight is a Float32Array in the JS
// heap, and a tensor (in the backend's memory: the wasm heap, capped near 4 GiB) only while it is loaded.
//   model offload:      a whole model is loaded when one of its methods (forward / encode / decode) starts and
//                       stays loaded until the next model of the chain starts (text_encoder -> unet -> vae), so the
//                       UNet is loaded once per picture, not once per step; the pipeline frees all at the end.
//   sequential offload: every module that holds weights (Conv2d, Linear, norms, embeddings) loads them just before
//                       its forward and frees them just after: weights in memory = one layer, uploads = every call.
// Results are the same numbers: an upload copies the float32 weights exactly.
import { Module, type Parameter } from "../nn/module.js";
import { addForwardHook, MODEL_METHODS } from "./hooks.js";

/** What both kinds of offload give back (accelerate's hook handles). */
export interface OffloadHandle {
  readonly model: Module;
  /** Frees the model's loaded weights now (they stay in host memory). */
  offload(): void;
  /** Removes the hooks and makes every weight a resident tensor again. */
  remove(): void;
  /** Removes the hooks and leaves every weight in host memory (to hand the model to another kind of offload). */
  detach(): void;
}

function parametersOf(model: Module): Parameter[] {
  return model.namedParameters().map(([, p]) => p);
}

function checkLoaded(model: Module, params: Parameter[]): void {
  if (params.some((p) => !p.isSet)) {
    throw new Error(`${model.constructor.name}: cannot offload a model whose weights are not set (load them with fromPretrained / fromConfig first)`);
  }
}

/**
 * accelerate's cpu_offload(model) (sequential offload): the weights move to host memory and each module holding
 * weights loads them around its own forward. A weight read outside its module's forward (e.g. CLIP's position
 * table) is loaded on demand and freed when the model's forward / encode / decode returns.
 */
export function cpuOffload(model: Module): OffloadHandle {
  const params = parametersOf(model);
  checkLoaded(model, params);
  params.forEach((p) => p.offload());
  const removers: (() => void)[] = [];
  for (const [, m] of model.namedModules()) {
    const own = m.ownParameters().map(([, p]) => p);
    if (own.length === 0) continue;
    removers.push(addForwardHook(m, ["forward"], { preForward: () => own.forEach((p) => p.load()), postForward: () => own.forEach((p) => p.unload()) }));
  }
  const offload = () => params.forEach((p) => p.unload());
  removers.push(addForwardHook(model, MODEL_METHODS, { postForward: offload }));
  return {
    model,
    offload,
    remove() {
      removers.forEach((r) => r());
      params.forEach((p) => p.restore());
    },
    detach() {
      removers.forEach((r) => r());
      offload();
    },
  };
}

/**
 * accelerate's cpu_offload_with_hook(model, prev_module_hook) (model offload): the weights move to host memory;
 * when a model method starts, the previous model of the chain is offloaded and this one is loaded whole. It stays
 * loaded after the call (a loop of UNet steps uploads it once) until the next model's call or offload().
 */
export function cpuOffloadWithHook(model: Module, prevModuleHook?: OffloadHandle): OffloadHandle {
  const params = parametersOf(model);
  checkLoaded(model, params);
  params.forEach((p) => p.offload());
  const offload = () => params.forEach((p) => p.unload());
  const remove = addForwardHook(model, MODEL_METHODS, {
    preForward: () => {
      prevModuleHook?.offload();
      params.forEach((p) => p.load());
    },
  });
  return {
    model,
    offload,
    remove() {
      remove();
      params.forEach((p) => p.restore());
    },
    detach() {
      remove();
      offload();
    },
  };
}

// ---- pipelines -------------------------------------------------------------------------------------------

export type OffloadMode = "model" | "sequential";

interface PipelineOffload {
  mode: OffloadMode;
  handles: OffloadHandle[];
}

const pipelineState = new WeakMap<object, PipelineOffload>();

/**
 * Models offloaded on their own (a model loaded alone whose weights did not fit the device: memory/model-memory.ts).
 * Pipeline offload leaves them as they are.
 */
const modelState = new WeakMap<Module, OffloadHandle>();

/** Sequential offload of one model by itself (not through a pipeline); kept until removeModelOffload. */
export function setModelOffload(model: Module): OffloadHandle {
  removeModelOffload(model);
  const h = cpuOffload(model);
  modelState.set(model, h);
  return h;
}

/** Does `model` carry an offload of its own? */
export function hasModelOffload(model: Module): boolean {
  return modelState.has(model);
}

/** Removes a model's own offload: its weights become resident tensors again. */
export function removeModelOffload(model: Module): void {
  modelState.get(model)?.remove();
  modelState.delete(model);
}

const snakeCase = (s: string) => s.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/** A pipeline's model components with diffusers' names (textEncoder -> "text_encoder"), in declaration order. */
export function pipelineModules(pipe: object): [string, Module][] {
  return Object.entries(pipe)
    .filter((e): e is [string, Module] => e[1] instanceof Module)
    .map(([k, m]) => [snakeCase(k), m]);
}

/** Which offload a pipeline runs with, or null. */
export function getOffloadMode(pipe: object): OffloadMode | null {
  return pipelineState.get(pipe)?.mode ?? null;
}

/**
 * Removes any offload from the pipeline: every weight becomes a resident tensor again (restore = false: the weights
 * stay in host memory, for a switch to another kind of offload that would otherwise upload them all first).
 */
export function disableCpuOffload(pipe: object, restore = true): void {
  const state = pipelineState.get(pipe);
  if (!state) return;
  state.handles.forEach((h) => (restore ? h.remove() : h.detach()));
  pipelineState.delete(pipe);
}

/** The pipeline's model components that pipeline offload manages (not those offloaded on their own). */
function offloadableModules(pipe: object): [string, Module][] {
  return pipelineModules(pipe).filter(([, m]) => !modelState.has(m));
}

/**
 * diffusers' enable_model_cpu_offload: chained hooks in the order of `seq` ("text_encoder->unet->vae"), then
 * unchained hooks on any other model component. Replaces any offload already set.
 */
export function enableModelCpuOffload(pipe: object, seq: string | null): void {
  disableCpuOffload(pipe, false);
  const modules = new Map(offloadableModules(pipe));
  const order = seq === null ? [...modules.keys()] : seq.split("->").map((s) => s.trim());
  const handles: OffloadHandle[] = [];
  let prev: OffloadHandle | undefined;
  try {
    for (const name of order) {
      const m = modules.get(name);
      if (!m) continue;
      modules.delete(name);
      prev = cpuOffloadWithHook(m, prev);
      handles.push(prev);
    }
    for (const m of modules.values()) handles.push(cpuOffloadWithHook(m));
  } catch (e) {
    handles.forEach((h) => h.remove());
    throw e;
  }
  pipelineState.set(pipe, { mode: "model", handles });
}

/** diffusers' enable_sequential_cpu_offload: cpuOffload on every model component. Replaces any offload already set. */
export function enableSequentialCpuOffload(pipe: object): void {
  disableCpuOffload(pipe, false);
  const handles: OffloadHandle[] = [];
  try {
    for (const [, m] of offloadableModules(pipe)) handles.push(cpuOffload(m));
  } catch (e) {
    handles.forEach((h) => h.remove());
    throw e;
  }
  pipelineState.set(pipe, { mode: "sequential", handles });
}

/** diffusers' maybe_free_model_hooks (end of a pipeline call): frees every offloaded model's loaded weights. */
export function maybeFreeModelHooks(pipe: object): void {
  pipelineState.get(pipe)?.handles.forEach((h) => h.offload());
}
