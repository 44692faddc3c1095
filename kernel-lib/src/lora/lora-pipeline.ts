// LoraLoaderMixin (diffusers loaders/lora.py with the PEFT backend): the LoRA methods of a pipeline that
// has a `unet` and a `textEncoder`. Every adapter has a name; several can run at once, each at its own
// weight: y = W x + Σ_a weight_a · (alpha_a / r_a) · B_a A_a x (· cross_attention_kwargs' scale).
//   pipe.loadLoraWeights("folder-or-repo", { weightName, adapterName })    or a .safetensors path
//   pipe.setAdapters(["a", "b"], [0.8, 0.5]);  pipe.getActiveAdapters();  pipe.disableLora() / enableLora()
//   pipe.fuseLora({ loraScale }) / unfuseLora();  pipe.deleteAdapters(["a"]);  pipe.unloadLoraWeights()
import type { Module } from "../nn/module.js";
import {
  deleteModelAdapters, fuseModel, injectAdapter, isFused, loraLayers, modelActiveAdapters, modelAdapters,
  setLoraEnabled, setModelAdapters, unfuseModel, unloadModelLora,
} from "./peft-utils.js";
import {
  loraStateDict, parseLoraStateDict, pipelineLoraModels, unplacedError, type LoraComponent, type LoraFileOptions, type LoraSource,
} from "./lora-loader.js";

export interface LoadLoraOptions extends LoraFileOptions {
  /** Name to refer to this adapter by (setAdapters, deleteAdapters); default "default_<n>". */
  adapterName?: string;
}

export interface FuseLoraOptions {
  /** Multiplies every fused adapter's scale (diffusers' lora_scale). Default 1. */
  loraScale?: number;
  /** Adapters to fuse; default the active ones. */
  adapterNames?: string[];
  fuseUnet?: boolean;
  fuseTextEncoder?: boolean;
}

/** The LoRA methods every Stable Diffusion pipeline has. */
export interface LoraLoaderMethods {
  loadLoraWeights(src: LoraSource, opts?: LoadLoraOptions): Promise<string>;
  setAdapters(adapterNames: string | string[], adapterWeights?: number | number[]): void;
  getActiveAdapters(): string[];
  getListAdapters(): Partial<Record<LoraComponent, string[]>>;
  disableLora(): void;
  enableLora(): void;
  fuseLora(opts?: FuseLoraOptions): void;
  unfuseLora(opts?: { unfuseUnet?: boolean; unfuseTextEncoder?: boolean }): void;
  deleteAdapters(adapterNames: string | string[]): void;
  unloadLoraWeights(): void;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AbstractConstructor<T = object> = abstract new (...args: any[]) => T;

/** What the mixin needs of its pipeline. */
interface LoraHost {
  unet: Module;
  textEncoder?: Module | null;
}

function asList(names: string | string[]): string[] {
  return typeof names === "string" ? [names] : [...names];
}

/** Adds the LoRA methods to a pipeline class (as diffusers' StableDiffusionPipeline inherits LoraLoaderMixin). */
export function LoraLoaderMixin<TBase extends AbstractConstructor>(Base: TBase): TBase & AbstractConstructor<LoraLoaderMethods> {
  abstract class LoraLoader extends Base implements LoraLoaderMethods {
    /** The models a LoRA patches, present ones only. */
    private loraModels(): Module[] {
      const host = this as unknown as LoraHost;
      return [host.unet, host.textEncoder].filter((m): m is Module => !!m);
    }

    private knownAdapters(): string[] {
      return [...new Set(this.loraModels().flatMap(modelAdapters))];
    }

    private checkAdapterNames(names: string[], what: string): void {
      const known = this.knownAdapters();
      const missing = names.filter((n) => !known.includes(n));
      if (missing.length > 0) {
        throw new Error(`${what}: no adapter named ${missing.map((n) => `"${n}"`).join(", ")}; loaded adapters: ${known.map((n) => `"${n}"`).join(", ") || "none (call loadLoraWeights first)"}`);
      }
    }

    /**
     * diffusers' load_lora_weights: reads a LoRA (diffusers/PEFT or kohya keys, for the UNet and the text encoder)
     * from a .safetensors / .bin path, a folder or Hub repo (weightName, else its only weights file), or a state
     * dict; adds it as adapter `adapterName`. A key that fits no module is an error and nothing is loaded.
     * As with PEFT, a layer that already runs another adapter keeps running only that one: call setAdapters to
     * choose. Returns the adapter name.
     */
    async loadLoraWeights(src: LoraSource, opts: LoadLoraOptions = {}): Promise<string> {
      const host = this as unknown as LoraHost;
      const { adapterName, ...fileOpts } = opts;
      const { stateDict, source } = await loraStateDict(src, fileOpts);
      const parsed = parseLoraStateDict(stateDict, pipelineLoraModels(host));
      if (parsed.unplaced.length > 0) throw unplacedError(source, parsed.unplaced);
      if (parsed.modules.length === 0) throw new Error(`${source} holds no LoRA weights (no lora_A/lora_B or lora_down/lora_up tensors)`);
      // diffusers' get_adapter_name: default_<number of adapters on the UNet's first LoRA layer>
      const name = adapterName ?? `default_${loraLayers(host.unet)[0]?.adapterNames.length ?? 0}`;
      if (this.knownAdapters().includes(name)) throw new Error(`Adapter name "${name}" is already in use: pass another adapterName, or deleteAdapters("${name}") first`);
      const byComponent = (c: LoraComponent) => parsed.modules.filter((m) => m.component === c);
      injectAdapter(host.unet, name, byComponent("unet"));
      if (host.textEncoder) injectAdapter(host.textEncoder, name, byComponent("text_encoder"));
      return name;
    }

    /** diffusers' set_adapters: these adapters run, each at its weight (default 1; one number applies to all). */
    setAdapters(adapterNames: string | string[], adapterWeights?: number | number[]): void {
      const names = asList(adapterNames);
      this.checkAdapterNames(names, "setAdapters");
      const weights = adapterWeights === undefined ? names.map(() => 1) : typeof adapterWeights === "number" ? names.map(() => adapterWeights) : adapterWeights;
      if (weights.length !== names.length) throw new Error(`setAdapters: ${names.length} adapter name(s) but ${weights.length} weight(s); give one weight per adapter`);
      weights.forEach((w, i) => {
        if (!Number.isFinite(w)) throw new Error(`setAdapters: the weight of "${names[i]}" is ${w}; weights are finite numbers`);
      });
      for (const m of this.loraModels()) setModelAdapters(m, names, weights);
    }

    /** diffusers' get_active_adapters: the adapters the UNet's first LoRA layer runs. */
    getActiveAdapters(): string[] {
      return modelActiveAdapters((this as unknown as LoraHost).unet);
    }

    /** diffusers' get_list_adapters: the adapters loaded in each model. */
    getListAdapters(): Partial<Record<LoraComponent, string[]>> {
      const host = this as unknown as LoraHost;
      const out: Partial<Record<LoraComponent, string[]>> = {};
      if (host.textEncoder && modelAdapters(host.textEncoder).length > 0) out.text_encoder = modelAdapters(host.textEncoder);
      if (modelAdapters(host.unet).length > 0) out.unet = modelAdapters(host.unet);
      return out;
    }

    /** Runs the base models (adapters kept); a fused pipeline is unfused first, as PEFT does. */
    disableLora(): void {
      for (const m of this.loraModels()) setLoraEnabled(m, false);
    }

    enableLora(): void {
      for (const m of this.loraModels()) setLoraEnabled(m, true);
    }

    /** diffusers' fuse_lora: W <- W + loraScale · Σ s_a B_a A_a (active adapters); the originals are kept for unfuseLora. */
    fuseLora(opts: FuseLoraOptions = {}): void {
      const host = this as unknown as LoraHost;
      const scale = opts.loraScale ?? 1;
      if (!Number.isFinite(scale)) throw new Error(`fuseLora: loraScale is ${scale}; give a finite number`);
      if (opts.adapterNames) this.checkAdapterNames(opts.adapterNames, "fuseLora");
      if (opts.fuseUnet ?? true) fuseModel(host.unet, scale, opts.adapterNames);
      if ((opts.fuseTextEncoder ?? true) && host.textEncoder) fuseModel(host.textEncoder, scale, opts.adapterNames);
    }

    /** diffusers' unfuse_lora: the original weights back, bit for bit. */
    unfuseLora(opts: { unfuseUnet?: boolean; unfuseTextEncoder?: boolean } = {}): void {
      const host = this as unknown as LoraHost;
      if (opts.unfuseUnet ?? true) unfuseModel(host.unet);
      if ((opts.unfuseTextEncoder ?? true) && host.textEncoder) unfuseModel(host.textEncoder);
    }

    /** diffusers' delete_adapters: frees these adapters (unfuse first if they are fused). */
    deleteAdapters(adapterNames: string | string[]): void {
      const names = asList(adapterNames);
      this.checkAdapterNames(names, "deleteAdapters");
      const fused = this.loraModels().filter((m) => isFused(m) && loraLayers(m).some((l) => l.merged.some((n) => names.includes(n))));
      if (fused.length > 0) throw new Error(`deleteAdapters: ${names.join(", ")} is fused into the weights: call unfuseLora() first (or unloadLoraWeights() to keep the fused weights)`);
      for (const m of this.loraModels()) deleteModelAdapters(m, names);
    }

    /**
     * diffusers' unload_lora_weights: every LoRA layer and adapter gone. Unfused, the models are exactly the base
     * models again; fused weights stay fused (diffusers' way to bake a LoRA in: fuseLora then unloadLoraWeights).
     */
    unloadLoraWeights(): void {
      for (const m of this.loraModels()) unloadModelLora(m);
    }
  }
  return LoraLoader;
}
