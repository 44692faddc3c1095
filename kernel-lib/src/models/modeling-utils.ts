// ModelMixin (diffusers models/modeling_utils.py): the config + weights life cycle every model shares.
//   fromPretrained: config.json -> build the module tree -> read diffusion_pytorch_model[.variant].safetensors
//                   (else .bin) -> rename deprecated attention keys -> check every tensor -> convert once
//   fromConfig:     build from a config dict with random or zero weights
//   savePretrained: config.json + diffusion_pytorch_model[.variant].safetensors (torch layout, loadable by diffusers)
import * as fs from "node:fs";
import * as path from "node:path";
import { hubFileDownload, tryHubFile, type HubOptions } from "../hub/index.js";
import { backendReport } from "../runtime/backend.js";
import { checkConfigClass, configToJson, deepFreeze, readConfigFile, resolveConfig, type Config, type ConfigSpec } from "../io/config.js";
import { readSafetensorsArrays, saveSafetensors, type RawTensor, type SaveDtype } from "../io/safetensors.js";
import { readTorchBin } from "../io/torch-bin.js";
import { convertDeprecatedAttentionBlocks } from "./convert-deprecated-attention.js";
import { Module, type InitMode } from "../nn/module.js";
import { checkModelConfigNumbers } from "./config-bounds.js";

export const CONFIG_NAME = "config.json";
export const WEIGHTS_NAME = "diffusion_pytorch_model.bin";
export const SAFETENSORS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors";

/** Where a model's weights go when it is loaded: tensors on the device, or host memory (offloaded, uploaded per use). */
export type WeightPlacement = "device" | "host";

export interface ModelLoadOptions extends HubOptions {
  /** Loads diffusion_pytorch_model.<variant>.safetensors (e.g. "fp16"); float16 weights are upcast to float32. */
  variant?: string;
  /** false: only the .bin file; true: only .safetensors; default: .safetensors, else .bin. */
  useSafetensors?: boolean;
  /**
   * "auto" (default): on the device when the weights fit beside what is there, else in host memory with sequential
   * offload, said in one line (memory/model-memory.ts); "device" / "host" force one. A float16 file (variant "fp16")
   * kept in host memory stays float16 there (half the bytes) and is widened to float32 on the device.
   */
  placement?: "auto" | WeightPlacement;
  /** With placement "auto": the bytes the device may hold (default: the backend's budget, memory/memory-budget.ts) */
  memoryBudgetBytes?: number;
}

/**
 * What the memory layer does around loading (memory/model-memory.ts registers it; models know nothing of memory):
 * where "auto" puts a model's weights, and what it attaches once they are loaded.
 */
export interface ModelLoadPolicy {
  place(model: ModelMixin, budgetBytes?: number): WeightPlacement;
  loaded(model: ModelMixin, placement: WeightPlacement, auto: boolean): void;
}

let loadPolicy: ModelLoadPolicy | null = null;

/** Installs the policy fromPretrained follows for placement "auto" (null: always the device, nothing attached). */
export function setModelLoadPolicy(policy: ModelLoadPolicy | null): void {
  loadPolicy = policy;
}

/**
 * diffusers' scale_lora_layers / unscale_lora_layers around one call (cross_attention_kwargs={"scale": s}): runs fn
 * with the model's LoRA layers scaled by s. lora/peft-utils.ts installs it when it loads (a model can only hold LoRA
 * layers once it has); models know no LoRA manager, and without LoRA the scale has nothing to scale.
 */
export type LoraScaleHook = <T>(model: Module, scale: number | undefined | null, fn: () => T) => T;

let loraScaleHook: LoraScaleHook = (_model, _scale, fn) => fn();

export function setLoraScaleHook(hook: LoraScaleHook): void {
  loraScaleHook = hook;
}

/** Runs fn under the call's LoRA scale (a UNet's crossAttentionKwargs.scale). */
export function applyLoraScale<T>(model: Module, scale: number | undefined | null, fn: () => T): T {
  return loraScaleHook(model, scale, fn);
}

export interface FromConfigOptions {
  /** "random": weights ~ N(0, 1/fan_in), norms 1 / 0, biases 0; "zeros": every weight 0. Default "random". */
  init?: InitMode;
  /** Makes "random" reproducible. */
  seed?: number;
}

/** A model class as the static helpers need it: its diffusers name, its config spec, its constructor. */
export interface ModelClass<M extends ModelMixin> {
  new (config: Record<string, unknown>): M;
  readonly className: string;
  readonly configSpec: ConfigSpec;
  /** Weights file names; default diffusers' (transformers models: model.safetensors / pytorch_model.bin). */
  readonly safetensorsWeightsName?: string;
  readonly weightsName?: string;
  /** Checkpoint tensors dropped before the strict check (non-persistent buffers such as position_ids). */
  readonly keysToIgnoreOnLoad?: readonly string[];
}

/** diffusers' _add_variant: "diffusion_pytorch_model.safetensors" + "fp16" -> "diffusion_pytorch_model.fp16.safetensors". */
export function addVariant(weightsName: string, variant?: string): string {
  if (!variant) return weightsName;
  const parts = weightsName.split(".");
  parts.splice(parts.length - 1, 0, variant);
  return parts.join(".");
}

/** How a model keeps its config: diffusers' bookkeeping keys, or none (transformers' configs have no `_class_name`). */
export interface ModelConfigOptions {
  /** false: drop `_class_name` and `_use_default_values` (a transformers model's config.json). Default true. */
  diffusersKeys?: boolean;
}

export abstract class ModelMixin extends Module {
  /**
   * The resolved config with the JSON's snake_case keys (diffusers' model.config): a frozen deep copy, typed by each
   * model class (`unet.config.in_channels` is a number), as schedulers' configs. To change a value the way diffusers'
   * `register_to_config` does, use `registerToConfig`; to build another model, pass it to `fromConfig` with overrides.
   */
  readonly config: Readonly<Config>;

  protected constructor(className: string, spec: ConfigSpec, config: Record<string, unknown>, opts: ModelConfigOptions = {}) {
    super();
    const resolved = resolveConfig(className, spec, config);
    checkModelConfigNumbers(className, resolved, spec.defaults); // before any layer is built
    if (opts.diffusersKeys === false) {
      delete resolved._class_name;
      delete resolved._use_default_values;
    }
    this.config = deepFreeze(structuredClone(resolved));
  }

  /**
   * diffusers' `register_to_config(**updates)`: replaces config values (a new frozen config) for what the weights do
   * not depend on, such as the VAE's measured `scaling_factor`. The layers already built are not rebuilt.
   */
  registerToConfig(updates: Record<string, unknown>): void {
    (this as { config: Readonly<Config> }).config = deepFreeze(structuredClone({ ...this.config, ...updates }));
  }

  /** diffusers' from_config: a model with fresh weights (see FromConfigOptions). */
  static fromConfig<M extends ModelMixin>(this: ModelClass<M>, config: Record<string, unknown>, opts: FromConfigOptions = {}): M {
    const model = new this(config);
    model.initWeights(opts.init ?? "random", opts.seed);
    return model;
  }

  /**
   * diffusers' from_pretrained: a Hub repo id ("google/ddpm-cat-256") or a local folder, with `subfolder`,
   * `revision`, `variant`, `cacheDir`, `localFilesOnly`. Throws when a weight is missing, unexpected or
   * shaped differently from what the config builds, naming the file and the tensors.
   */
  static async fromPretrained<M extends ModelMixin>(this: ModelClass<M>, idOrPath: string, opts: ModelLoadOptions = {}): Promise<M> {
    const { variant, useSafetensors, placement: asked, memoryBudgetBytes, ...hub } = opts;
    await backendReport(); // the fastest backend that loads, unless the caller chose one already
    const configFile = await hubFileDownload(idOrPath, CONFIG_NAME, hub);
    const config = readConfigFile(configFile);
    checkConfigClass(configFile, config, this.className);
    const candidates = [
      ...(useSafetensors === false ? [] : [addVariant(this.safetensorsWeightsName ?? SAFETENSORS_WEIGHTS_NAME, variant)]),
      ...(useSafetensors === true ? [] : [addVariant(this.weightsName ?? WEIGHTS_NAME, variant)]),
    ];
    let file: string | null = null;
    for (const name of candidates) {
      file = await tryHubFile(idOrPath, name, hub);
      if (file !== null) break;
    }
    const where = `${idOrPath}${hub.subfolder ? ` (subfolder "${hub.subfolder}")` : ""}`;
    if (file === null) {
      throw new Error(
        `${this.className}: ${where} has no weights file: looked for ${candidates.join(" and ")}.` +
          (variant ? ` The variant "${variant}" may not exist for this model: try without variant.` : " Check the path / subfolder."),
      );
    }
    const model = new this(config);
    const auto = asked === undefined || asked === "auto";
    const placement: WeightPlacement = auto ? (loadPolicy?.place(model, memoryBudgetBytes) ?? "device") : asked;
    const stateDict = convertDeprecatedAttentionBlocks(loadStateDictFile(file, { keepFloat16: placement === "host" }));
    for (const key of this.keysToIgnoreOnLoad ?? []) stateDict.delete(key);
    try {
      model.loadStateDict(stateDict, file, { toHost: placement === "host" });
    } catch (e) {
      model.dispose();
      throw e;
    }
    loadPolicy?.loaded(model, placement, auto);
    return model;
  }

  /** Writes config.json and the weights (diffusers' save_pretrained with safe_serialization). */
  savePretrained(dir: string, opts: { variant?: string; dtype?: SaveDtype } = {}): void {
    fs.mkdirSync(dir, { recursive: true });
    const cls = this.constructor as unknown as ModelClass<ModelMixin>;
    fs.writeFileSync(path.join(dir, CONFIG_NAME), this.configJson(opts));
    const tensors: Record<string, RawTensor> = Object.fromEntries(this.stateDict());
    saveSafetensors(path.join(dir, addVariant(cls.safetensorsWeightsName ?? SAFETENSORS_WEIGHTS_NAME, opts.variant)), tensors, {
      metadata: { format: "pt" },
      dtype: opts.dtype,
    });
  }

  /** The config.json text savePretrained writes (diffusers' save_config; transformers models override). */
  protected configJson(_opts: { dtype?: SaveDtype } = {}): string {
    return configToJson((this.constructor as unknown as ModelClass<ModelMixin>).className, this.config);
  }
}

/** diffusers' load_state_dict: safetensors or a torch.save .bin, as plain typed arrays in torch layout. */
export function loadStateDictFile(file: string, opts: { keepFloat16?: boolean } = {}): Map<string, RawTensor> {
  return file.endsWith(".safetensors") ? readSafetensorsArrays(file, undefined, opts).tensors : readTorchBin(file);
}
