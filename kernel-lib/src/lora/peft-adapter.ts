// A new, trainable LoRA adapter on a model, as diffusers' PeftAdapterMixin.add_adapter (loaders/peft.py) with
// PEFT's LoraConfig, and the adapter's weights back out (PEFT's get_peft_model_state_dict). What diffusers'
// examples/text_to_image/train_text_to_image_lora.py does:
//   unet.add_adapter(LoraConfig(r=4, lora_alpha=4, init_lora_weights="gaussian", target_modules=["to_k","to_q","to_v","to_out.0"]))
// is here
//   const params = addLoraAdapter(unet, "style", { rank: 4, alpha: 4, targetModules: ["to_k", "to_q", "to_v", "to_out.0"], seed: 0 });
//   // params: [name, Parameter][] ("<module>.lora_A.style.weight", ...), each a trainable tf.Variable:
//   tf.variableGrads(loss, params.map(([, p]) => p.value as tf.Variable));   new AdamW(params)
// then saveLoraWeights (lora-save.ts) writes the adapter as a diffusers or kohya file.
//
// Initialisation (PEFT's LoraLayer.update_layer + reset_lora_parameters), per targeted Linear / Conv2d in module
// order (torch's named_modules, the order PEFT walks), all from one torch-style generator:
//   1. nn.Linear(in, r) for A and nn.Linear(r, out) for B are built: torch fills each with kaiming_uniform_(a=√5),
//      i.e. U(-1/√fan_in, 1/√fan_in), drawing numel uniforms (A first, then B);
//   2. "gaussian": A ~ N(0, σ = 1/r) (normal_(std=1/r): variance 1/r², torch.randn's draws times 1/r);
//      true (LoraConfig's default): A gets kaiming_uniform_(a=√5) again; false: A and B keep step 1's values;
//   3. B = 0 (except with false), so ΔW = (alpha/r)·B·A = 0 and the model starts exactly at the base model.
// So `seed` gives the numbers torch.manual_seed(seed); unet.add_adapter(config) gives. Gaussian values follow
// torch's randn bit for bit (the kit's Generator, tested against torch); the kaiming values are computed in float32
// as ATen's uniform_ does and may differ from a torch build that fuses the multiply-add by one ulp.
import type { Module, Parameter } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { Linear } from "../nn/linear.js";
import type { RawTensor } from "../io/safetensors.js";
import { Generator, defaultGenerator } from "../random/generator.js";
import { injectAdapter, loraTargets, modelAdapters, namedLoraLayers, setModelAdapters, type LoraModuleWeights } from "./peft-utils.js";

/** The attention projections diffusers' SD LoRA training scripts target in the UNet. */
export const UNET_LORA_TARGET_MODULES = ["to_k", "to_q", "to_v", "to_out.0"];
/** The same for the CLIP text encoder (diffusers' text-encoder LoRA training). */
export const TEXT_ENCODER_LORA_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "out_proj"];

/** PEFT's LoraConfig, the fields this kit supports (camelCase). */
export interface AddLoraAdapterOptions {
  /** r: the rank of B·A. */
  rank: number;
  /** lora_alpha: the update is scaled by alpha / r. Default: rank (scale 1; the only alpha the diffusers file format keeps). */
  alpha?: number;
  /**
   * Modules to patch (PEFT's target_modules): a list of names, each matching a module path equal to it or ending
   * in "." + it ("to_q", "to_out.0", "attn1.to_q"); or a RegExp that must match the whole path. Default
   * UNET_LORA_TARGET_MODULES. Every match must be a Linear or Conv2d.
   */
  targetModules?: string[] | RegExp;
  /** PEFT's init_lora_weights: "gaussian" (default here, as diffusers' training scripts), true (kaiming, LoraConfig's default) or false (A and B both random: a test adapter that already changes the model). */
  initLoraWeights?: "gaussian" | boolean;
  /** Seeds a fresh Generator (torch.manual_seed(seed) before add_adapter). */
  seed?: number | bigint;
  /** Draw from this generator instead (it advances, as torch's global generator would). Default: a seeded one, else the kit's default generator. */
  generator?: Generator;
}

/** PEFT's check_target_module_exists: a list entry matches the path itself or a ".<entry>" suffix; a RegExp matches the whole path. */
function matchesTarget(path: string, targets: string[] | RegExp): boolean {
  if (targets instanceof RegExp) {
    const m = new RegExp(`^(?:${targets.source})$`, targets.flags.replace(/[gy]/g, "")).exec(path);
    return m !== null;
  }
  return targets.some((t) => path === t || path.endsWith(`.${t}`));
}

/** torch's kaiming_uniform_(w, a=√5) on a weight with this fan_in: U(-b, b), b = gain·√(3/fan_in), gain = √(2/(1+a²)); float32 as ATen's uniform_. */
function kaimingUniform(gen: Generator, numel: number, fanIn: number): Float32Array {
  const a = Math.sqrt(5);
  const gain = Math.sqrt(2 / (1 + a ** 2));
  const bound = Math.sqrt(3) * (gain / Math.sqrt(fanIn));
  const from = Math.fround(-bound);
  const span = Math.fround(Math.fround(bound) - from);
  const u = gen.randArray([numel]); // uniform_real_distribution<float>: 24-bit uniforms in [0, 1)
  for (let i = 0; i < numel; i++) u[i] = Math.fround(Math.fround(u[i] * span) + from);
  return u;
}

/** torch's normal_(w, mean=0, std): ≥16 elements take randn's float path times (float)std; fewer take the double path, rounded once. */
function normal(gen: Generator, shape: number[], std: number): Float32Array {
  const numel = shape.reduce((x, y) => x * y, 1);
  if (numel >= 16) {
    const out = gen.randnArray(shape);
    const s = Math.fround(std);
    for (let i = 0; i < numel; i++) out[i] = out[i] * s; // float · float is exact in double: one rounding on store
    return out;
  }
  return Float32Array.from(gen.randnFloat64(shape), (v) => v * std);
}

/**
 * diffusers' model.add_adapter(LoraConfig(...), adapter_name): a new LoRA adapter `adapterName` on every targeted
 * Linear / Conv2d of `model` (the UNet or the text encoder), made the model's only active adapter (as diffusers'
 * set_adapter after injecting). Returns its trainable parameters (loraParameters) for tf.variableGrads and an
 * optimizer. Other adapters stay loaded, inactive.
 */
export function addLoraAdapter(model: Module, adapterName: string, opts: AddLoraAdapterOptions): [string, Parameter][] {
  const who = `addLoraAdapter(${model.constructor.name}, "${adapterName}")`;
  const { rank } = opts;
  if (typeof adapterName !== "string" || adapterName === "" || adapterName.includes(".")) {
    throw new Error(`${who}: the adapter name must be a non-empty string without "." (it becomes part of parameter names)`);
  }
  if (!Number.isInteger(rank) || rank < 1) throw new Error(`${who}: rank must be a positive integer, got ${rank}`);
  const alpha = opts.alpha ?? rank;
  if (!Number.isFinite(alpha) || alpha <= 0) throw new Error(`${who}: alpha must be a positive number, got ${alpha}`);
  const init = opts.initLoraWeights ?? "gaussian";
  if (init !== "gaussian" && init !== true && init !== false) {
    throw new Error(`${who}: initLoraWeights must be "gaussian", true or false (got ${JSON.stringify(init)}); PEFT's other inits (pissa, olora, loftq, ...) are not supported`);
  }
  if (modelAdapters(model).includes(adapterName)) {
    throw new Error(`${who}: an adapter named "${adapterName}" already exists on this model: choose another name, or delete it first (deleteAdapters)`);
  }
  const targets = opts.targetModules ?? UNET_LORA_TARGET_MODULES;
  if (!(targets instanceof RegExp) && (!Array.isArray(targets) || targets.length === 0)) {
    throw new Error(`${who}: targetModules must be a non-empty list of module names or a RegExp`);
  }

  // Every matching module, in named_modules order; a match that is not a Linear / Conv2d is an error (PEFT raises too).
  const layers = loraTargets(model);
  const matched: [string, Linear | Conv2d][] = [];
  const unsupported: string[] = [];
  for (const [path, m] of model.namedModules()) {
    if (path === "" || !matchesTarget(path, targets)) continue;
    if (layers.has(path)) matched.push([path, layers.get(path)!]);
    else unsupported.push(`${path} (${m.constructor.name})`);
  }
  const shown = targets instanceof RegExp ? String(targets) : JSON.stringify(targets);
  if (unsupported.length > 0) {
    throw new Error(`${who}: targetModules ${shown} match modules LoRA cannot patch (only Linear and Conv2d): ${unsupported.slice(0, 5).join(", ")}${unsupported.length > 5 ? ", ..." : ""}. Name the layer inside (e.g. "to_out.0", not "to_out")`);
  }
  if (matched.length === 0) {
    throw new Error(
      `${who}: targetModules ${shown} match no module of the ${model.constructor.name}. ` +
        `The UNet's attention projections are ${JSON.stringify(UNET_LORA_TARGET_MODULES)}, the CLIP text encoder's ${JSON.stringify(TEXT_ENCODER_LORA_TARGET_MODULES)}; ` +
        `loraTargets(model).keys() lists every Linear / Conv2d path`,
    );
  }

  const gen = opts.generator ?? (opts.seed !== undefined ? new Generator().manualSeed(opts.seed) : defaultGenerator());
  const weights: LoraModuleWeights[] = matched.map(([module, layer]) => {
    const conv = layer instanceof Conv2d;
    const inFeatures = conv ? layer.inChannels : (layer as Linear).inFeatures;
    const outFeatures = conv ? layer.outChannels : (layer as Linear).outFeatures;
    // PEFT's lora_A: Linear(in, r) / Conv2d(in, r, k) with the layer's stride and padding; lora_B: Linear(r, out) / Conv2d(r, out, 1)
    const downShape = conv ? [rank, inFeatures, layer.kernelSize, layer.kernelSize] : [rank, inFeatures];
    const upShape = conv ? [outFeatures, rank, 1, 1] : [outFeatures, rank];
    const downFanIn = downShape.slice(1).reduce((x, y) => x * y, 1);
    const numel = (s: number[]) => s.reduce((x, y) => x * y, 1);
    let down = kaimingUniform(gen, numel(downShape), downFanIn); // nn.Linear(in, r).__init__
    let up = kaimingUniform(gen, numel(upShape), rank); // nn.Linear(r, out).__init__
    if (init === "gaussian") down = normal(gen, downShape, 1 / rank);
    else if (init === true) down = kaimingUniform(gen, numel(downShape), downFanIn);
    if (init !== false) up = new Float32Array(numel(upShape)); // B = 0: the adapter starts as the identity change
    const raw = (shape: number[], data: Float32Array): RawTensor => ({ dtype: "F32", shape, data });
    return { module, down: raw(downShape, down), up: raw(upShape, up), alpha };
  });
  injectAdapter(model, adapterName, weights);
  setModelAdapters(model, [adapterName], [1]);
  return loraParameters(model, adapterName);
}

/**
 * The adapter's trainable parameters as [name, Parameter] (what `[p for n, p in unet.named_parameters() if
 * p.requires_grad]` gives after add_adapter), named as PEFT names them: "<module>.lora_A.<adapter>.weight" then
 * ".lora_B.<adapter>.weight", module by module. Each `p.value` is a trainable tf.Variable in the kit's layout (A as
 * [in, r], B as [r, out]). Works for adapters loaded from a file too (to keep training them).
 */
export function loraParameters(model: Module, adapterName: string): [string, Parameter][] {
  const out: [string, Parameter][] = [];
  for (const [path, layer] of namedLoraLayers(model)) {
    const a = layer.adapter(adapterName);
    if (!a) continue;
    out.push([`${path}.lora_A.${adapterName}.weight`, a.down], [`${path}.lora_B.${adapterName}.weight`, a.up]);
  }
  if (out.length === 0) {
    const known = modelAdapters(model);
    throw new Error(`loraParameters: the ${model.constructor.name} has no adapter "${adapterName}"; its adapters: ${known.map((n) => `"${n}"`).join(", ") || "none (addLoraAdapter or loadLoraWeights first)"}`);
  }
  return out;
}

/** One module of an adapter as saved: torch-layout A and B, its rank and alpha. */
export interface LoraModuleState {
  module: string;
  down: RawTensor;
  up: RawTensor;
  rank: number;
  alpha: number;
}

/**
 * PEFT's get_peft_model_state_dict(model, adapter_name), per module: A (down) [r, in(, kh, kw)] and B (up)
 * [out, r(, 1, 1)] in torch layout (float32 copies), with rank and alpha, in module order. [] when the model
 * does not hold the adapter.
 */
export function getLoraModuleStates(model: Module, adapterName: string): LoraModuleState[] {
  const out: LoraModuleState[] = [];
  for (const [module, layer] of namedLoraLayers(model)) {
    const a = layer.adapter(adapterName);
    if (!a) continue;
    const raw = (p: Parameter): RawTensor => ({ dtype: "F32", shape: [...p.torchShape], data: p.toTorch() });
    out.push({ module, down: raw(a.down), up: raw(a.up), rank: a.rank, alpha: a.alpha });
  }
  return out;
}

/** PEFT's get_peft_model_state_dict: "<module>.lora_A.weight" / ".lora_B.weight" (adapter name dropped), torch layout. */
export function getPeftModelStateDict(model: Module, adapterName: string): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const m of getLoraModuleStates(model, adapterName)) out.set(`${m.module}.lora_A.weight`, m.down).set(`${m.module}.lora_B.weight`, m.up);
  return out;
}
