// Saving a LoRA adapter as a .safetensors file (diffusers' StableDiffusionPipeline.save_lora_weights with PEFT's
// get_peft_model_state_dict, or the kohya / A1111 layout), so diffusers, A1111 / ComfyUI and this kit load it back.
//
//   const params = addLoraAdapter(pipe.unet, "style", { rank: 4, seed: 0 });   // peft-adapter.ts; train params ...
//   saveLoraWeights("out/style-lora", pipe, { adapterName: "style" });          // out/style-lora/pytorch_lora_weights.safetensors
//   saveLoraWeights("out/style.kohya.safetensors", pipe, { format: "kohya" });  // a path ending in .safetensors is the file
//   await pipe.loadLoraWeights("out/style-lora");                               // or diffusers' pipe.load_lora_weights(...)
//
// Key formats (per patched module; A = lora_A = lora_down [r, in(, kh, kw)], B = lora_B = lora_up [out, r(, 1, 1)], torch layout, F32):
//   "diffusers": unet.<module path>.lora_A.weight, unet.<module path>.lora_B.weight (text encoder: text_encoder.<path>...).
//                What save_lora_weights(unet_lora_layers=get_peft_model_state_dict(unet)) writes (diffusers' training
//                checkpoints; its final save converts to the older ".lora.down/.lora.up" spelling, which loads the same).
//                No alpha is stored: loaders (diffusers 0.27, this kit) take alpha = r. An adapter with alpha ≠ r is
//                therefore refused, unless `scaleAlphaIntoB` folds alpha/r into B (same ΔW = (alpha/r)·B·A).
//   "kohya":     lora_unet_<module path with "." -> "_">.lora_down.weight, .lora_up.weight, .alpha (0-dim F32)
//                (text encoder: lora_te_...). Stores each module's alpha.
// Keys are written sorted, after an 8-byte-aligned header, as the safetensors library writes them; __metadata__ is
// {"format": "pt"}, what diffusers writes (override with `metadata`). The adapter's set_adapters weight is not saved
// (diffusers does not save it either).
import * as fs from "node:fs";
import * as path from "node:path";
import type { Module } from "../nn/module.js";
import { saveSafetensors, type RawTensor } from "../io/safetensors.js";
import { modelAdapters } from "./peft-utils.js";
import { getLoraModuleStates, type LoraModuleState } from "./peft-adapter.js";
import type { LoraComponent, LoraFormat } from "./lora-loader.js";

/** The models whose adapters are saved: a pipeline ({ unet, textEncoder }) or just { unet }. */
export interface LoraSaveModels {
  unet?: Module | null;
  textEncoder?: Module | null;
}

export interface SaveLoraWeightsOptions {
  /** "diffusers" (PEFT keys, default) or "kohya". */
  format?: LoraFormat;
  /** The adapter to save; may be left out when the models hold exactly one. */
  adapterName?: string;
  /** File name inside the directory (diffusers' weight_name). Default "pytorch_lora_weights.safetensors". */
  weightName?: string;
  /** The file's __metadata__. Default {"format": "pt"} (diffusers'). */
  metadata?: Record<string, string>;
  /** "diffusers" format only: save B·(alpha/r) for modules with alpha ≠ r, so loaders that assume alpha = r get the same ΔW. */
  scaleAlphaIntoB?: boolean;
}

export const LORA_WEIGHT_NAME_SAFE = "pytorch_lora_weights.safetensors";
const FORMATS: LoraFormat[] = ["diffusers", "kohya"];
/** Key prefixes per component: diffusers' unet_name / text_encoder_name, kohya's lora_unet_ / lora_te_. */
const PREFIX: Record<LoraFormat, Record<LoraComponent, string>> = {
  diffusers: { unet: "unet.", text_encoder: "text_encoder." },
  kohya: { unet: "lora_unet_", text_encoder: "lora_te_" },
};

function componentsOf(models: LoraSaveModels): [LoraComponent, Module][] {
  const out: [LoraComponent, Module][] = [];
  if (models.unet) out.push(["unet", models.unet]);
  if (models.textEncoder) out.push(["text_encoder", models.textEncoder]);
  return out;
}

/** The adapter to save: the one named (it must exist), or the models' only adapter. */
function resolveAdapter(models: LoraSaveModels, adapterName: string | undefined, who: string): string {
  const comps = componentsOf(models);
  if (comps.length === 0) throw new Error(`${who}: no model given: pass { unet } and / or { textEncoder } (a pipeline works)`);
  const known = [...new Set(comps.flatMap(([, m]) => modelAdapters(m)))];
  const list = known.map((n) => `"${n}"`).join(", ");
  if (known.length === 0) throw new Error(`${who}: the models hold no LoRA adapter to save: create one with addLoraAdapter(model, name, { rank }) or load one with loadLoraWeights`);
  if (adapterName === undefined) {
    if (known.length > 1) throw new Error(`${who}: the models hold several adapters (${list}): pass adapterName to say which one to save`);
    return known[0];
  }
  if (!known.includes(adapterName)) throw new Error(`${who}: no adapter named "${adapterName}"; the models hold ${list}`);
  return adapterName;
}

/** B·c in float32 (c = alpha / r). */
function scaled(raw: RawTensor, c: number): RawTensor {
  return { ...raw, data: Float32Array.from(raw.data as Float32Array, (v) => v * c) };
}

/**
 * The state dict saveLoraWeights writes (diffusers' pack_weights of get_peft_model_state_dict, or the kohya keys):
 * key -> torch-layout float32 tensor. It can be passed to loadLoraWeights as it is.
 */
export function packLoraWeights(models: LoraSaveModels, opts: Omit<SaveLoraWeightsOptions, "weightName" | "metadata"> = {}): Map<string, RawTensor> {
  const who = "saveLoraWeights";
  const format = opts.format ?? "diffusers";
  if (!FORMATS.includes(format)) throw new Error(`${who}: unknown format ${JSON.stringify(format)}; use "diffusers" (PEFT lora_A / lora_B keys, alpha = r) or "kohya" (lora_down / lora_up / alpha)`);
  const name = resolveAdapter(models, opts.adapterName, who);
  const out = new Map<string, RawTensor>();
  for (const [component, model] of componentsOf(models)) {
    const states: LoraModuleState[] = getLoraModuleStates(model, name);
    const prefix = PREFIX[format][component];
    for (const s of states) {
      if (format === "diffusers") {
        let up = s.up;
        if (s.alpha !== s.rank) {
          if (!opts.scaleAlphaIntoB) {
            const n = states.filter((t) => t.alpha !== t.rank).length;
            throw new Error(
              `${who}: adapter "${name}" has alpha ${s.alpha} ≠ rank ${s.rank} on ${component}.${s.module}${n > 1 ? ` (and ${n - 1} more module(s))` : ""}. ` +
                `The diffusers format stores no alpha and loaders take alpha = r, so the saved LoRA would act ${s.alpha / s.rank}x too strong. ` +
                `Save with format: "kohya" (it stores alpha), or pass scaleAlphaIntoB: true to save B·alpha/r instead (the same ΔW)`,
            );
          }
          up = scaled(s.up, s.alpha / s.rank);
        }
        out.set(`${prefix}${s.module}.lora_A.weight`, s.down).set(`${prefix}${s.module}.lora_B.weight`, up);
      } else {
        const stem = `${prefix}${s.module.replace(/\./g, "_")}`;
        if (out.has(`${stem}.alpha`)) throw new Error(`${who}: two modules of the ${component} have the kohya name "${stem}" ("." and "_" collide in the module paths): save with format: "diffusers"`);
        out.set(`${stem}.lora_down.weight`, s.down).set(`${stem}.lora_up.weight`, s.up);
        out.set(`${stem}.alpha`, { dtype: "F32", shape: [], data: Float32Array.of(s.alpha) });
      }
    }
  }
  return out;
}

/**
 * diffusers' save_lora_weights(save_directory, unet_lora_layers=..., text_encoder_lora_layers=..., weight_name=...):
 * writes adapter `adapterName` of the UNet and / or text encoder to `<saveDirectory>/<weightName>` (the directory is
 * created), or to `saveDirectory` itself when it ends in ".safetensors". Returns the file written.
 */
export function saveLoraWeights(saveDirectory: string, models: LoraSaveModels, opts: SaveLoraWeightsOptions = {}): string {
  const asFile = saveDirectory.endsWith(".safetensors");
  if (asFile && opts.weightName !== undefined) {
    throw new Error(`saveLoraWeights: "${saveDirectory}" is a file name and weightName "${opts.weightName}" names another: give a directory with weightName, or only the file`);
  }
  const weightName = opts.weightName ?? LORA_WEIGHT_NAME_SAFE;
  if (!weightName.endsWith(".safetensors") || weightName.includes("/")) {
    throw new Error(`saveLoraWeights: weightName "${weightName}" must be a file name ending in .safetensors (only safetensors is written)`);
  }
  if (!asFile && fs.existsSync(saveDirectory) && !fs.statSync(saveDirectory).isDirectory()) {
    throw new Error(`saveLoraWeights: "${saveDirectory}" is a file, not a directory: give a directory (and weightName), or a path ending in .safetensors`);
  }
  const stateDict = packLoraWeights(models, opts);
  const file = asFile ? saveDirectory : path.join(saveDirectory, weightName);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  saveSafetensors(file, Object.fromEntries(stateDict), { metadata: opts.metadata ?? { format: "pt" } });
  return file;
}
