// How many bytes a model call needs, estimated from the model's layers and the call's shapes before anything runs
// (what accelerate's infer_auto_device_map counts for weights, plus the activations diffusers' memory docs discuss).
//   weights:      4 bytes per parameter (float32 on the device), x2 on wasm while XNNPACK keeps packed copies.
//   attention:    the largest attention layer's maps: scores + probabilities, 2 x pairs x Lq x Lk x 4 bytes, with
//                 `pairs` the (batch, head) pairs computed at once (all, or the slice size: models/attention-slicing.ts).
//                 Lq is the tokens of the layer's level: a UNet's down block i works at 1/2^i of the sample's side.
//   the rest:     feature maps alive at once: FEATURE_MAPS x the largest map of the call (skip connections, GEGLU's
//                 8-wide projection, GroupNorm's copies). Calibrated on SD 1.5 at 512 px on wasm (bench/README.md:
//                 UNet step under sequential offload 2.21 GiB one-pass / 0.42 GiB with slicing "max"; VAE decode
//                 1.98 GiB): the estimates land within ~10 % above those peaks.
import type { Module } from "../nn/module.js";
import { Attention } from "../models/attention-processor.js";
import { attentionLayers, type AttentionSliceSize } from "../models/attention-slicing.js";

/** One model call of a pipeline call, by its input shapes (NHWC). */
export type ModelCall =
  | { kind: "unet"; sample: number[]; textLength?: number }
  | { kind: "vae-decode"; latents: number[] }
  | { kind: "vae-encode"; pixels: number[] }
  | { kind: "text"; batch: number; length: number };

/** The knobs that change a call's activations (null fields: the model's current setting). */
export interface ActivationKnobs {
  attentionSlicing?: AttentionSliceSize | undefined;
  vaeSlicing?: boolean;
  vaeTiling?: boolean;
}

/** Feature maps alive at once in a UNet step, in units of its largest map (see the top of this file). */
export const UNET_FEATURE_MAPS = 30;
/** The same for a VAE decode / encode (the full-resolution blocks dominate), on the heap's scale (see above). */
export const VAE_FEATURE_MAPS = 9;
/** The same for a text encoder layer, in units of its MLP's hidden [B, T, intermediate] map. */
export const TEXT_FEATURE_MAPS = 8;

/** Float32 bytes of all weights. */
export function weightBytes(model: Module): number {
  return 4 * model.numParameters();
}

/** Float32 bytes of the largest single layer's own weights (what sequential offload keeps loaded at once). */
export function largestLayerBytes(model: Module): number {
  let most = 0;
  for (const [, m] of model.namedModules()) {
    const own = m.ownParameters().reduce((s, [, p]) => s + p.numel, 0);
    if (own > most) most = own;
  }
  return 4 * most;
}

/** Pairs computed at once by a layer of `heads` heads over `batch` items under a slicing setting. */
function pairsAtOnce(layer: Attention, batch: number, slicing: AttentionSliceSize | undefined, index: number): number {
  const pairs = batch * layer.heads;
  let s: number | null;
  if (slicing === undefined) s = layer.sliceSize;
  else if (slicing === null) s = null;
  else if (slicing === "auto") s = Math.max(1, Math.floor(layer.heads / 2));
  else if (slicing === "max") s = 1;
  else if (Array.isArray(slicing)) s = slicing[index] ?? null;
  else s = slicing;
  return s === null ? pairs : Math.min(s, pairs);
}

/**
 * Bytes of the largest single tensor one call of `model` allocates in its attention: a slice's score map
 * [pairs at once, Lq, Lk] (float32). The wasm heap must find it in one piece, so the plan keeps that much free
 * beyond the peak (a fragmented heap can hold the peak's bytes and still have no hole that large).
 */
export function largestBlockBytes(model: Module, call: ModelCall, knobs: ActivationKnobs = {}): number {
  if (call.kind !== "unet") return 0;
  const levels = Math.max(1, (configOf(model).block_out_channels ?? []).length);
  const [b, h, w] = call.sample;
  return attentionBytes(model, b, h, w, levels, call.textLength ?? 77, knobs.attentionSlicing) / 2;
}

/** The resolution divisor of an attention layer from its module path ("down_blocks.2..." -> 4). */
function levelDivisor(path: string, levels: number): number {
  const down = /(?:^|\.)down_blocks\.(\d+)\./.exec(path);
  if (down) return 2 ** Number(down[1]);
  const up = /(?:^|\.)up_blocks\.(\d+)\./.exec(path);
  if (up) return 2 ** (levels - 1 - Number(up[1]));
  return 2 ** (levels - 1); // mid block
}

/** Bytes of the largest attention maps of `model` for a sample of h x w tokens at level 0 (batch, text length). */
function attentionBytes(model: Module, batch: number, h: number, w: number, levels: number, textLength: number,
  slicing: AttentionSliceSize | undefined, only?: (path: string) => boolean): number {
  let most = 0;
  attentionLayers(model).forEach(([path, layer], i) => {
    if (only && !only(path)) return;
    const div = levelDivisor(path, levels);
    const lq = Math.ceil(h / div) * Math.ceil(w / div);
    const lk = /attn2$/.test(path) ? textLength : lq;
    const bytes = 2 * pairsAtOnce(layer, batch, slicing, i) * lq * lk * 4;
    if (bytes > most) most = bytes;
  });
  return most;
}

interface LevelConfig { block_out_channels?: number[]; latent_channels?: number; intermediate_size?: number; hidden_size?: number; num_attention_heads?: number }

function configOf(model: Module): LevelConfig {
  return ((model as unknown as { config?: LevelConfig }).config ?? {}) as LevelConfig;
}

/** The tile a tiled VAE works on, or null when the input is no larger than a tile (diffusers tiles only then). */
function vaeTile(model: Module, side: number, latentSide: boolean): number | null {
  const v = model as unknown as { tileSampleMinSize?: number; tileLatentMinSize?: number };
  const tile = latentSide ? v.tileLatentMinSize : v.tileSampleMinSize;
  return tile !== undefined && side > tile ? tile : null;
}

/**
 * Peak bytes of activations (everything but the weights) of one call of `model`, under `knobs` (the model's own
 * settings where a knob is not given).
 */
export function activationBytes(model: Module, call: ModelCall, knobs: ActivationKnobs = {}): number {
  const cfg = configOf(model);
  const chs = cfg.block_out_channels ?? [];
  const levels = Math.max(1, chs.length);
  if (call.kind === "unet") {
    const [b, h, w] = call.sample;
    let largestMap = 0;
    chs.forEach((c, i) => {
      largestMap = Math.max(largestMap, b * Math.ceil(h / 2 ** i) * Math.ceil(w / 2 ** i) * c * 4);
    });
    return UNET_FEATURE_MAPS * largestMap + attentionBytes(model, b, h, w, levels, call.textLength ?? 77, knobs.attentionSlicing);
  }
  if (call.kind === "text") {
    const inter = cfg.intermediate_size ?? 4 * (cfg.hidden_size ?? 768);
    const heads = cfg.num_attention_heads ?? 12;
    return TEXT_FEATURE_MAPS * call.batch * call.length * inter * 4 + 2 * call.batch * heads * call.length * call.length * 4;
  }
  const vae = model as unknown as { useSlicing?: boolean; useTiling?: boolean };
  const slicing = knobs.vaeSlicing ?? vae.useSlicing ?? false;
  const tiling = knobs.vaeTiling ?? vae.useTiling ?? false;
  const factor = 2 ** (levels - 1);
  if (call.kind === "vae-decode") {
    let [b, h, w] = call.latents;
    const outBytes = b * h * w * factor * factor * 3 * 4 * 2; // the decoded pictures (and their tiles before joining)
    if (slicing) b = 1;
    const tile = tiling ? vaeTile(model, Math.max(h, w), true) : null;
    if (tile !== null) { h = Math.min(h, tile); w = Math.min(w, tile); }
    // decoder up block i runs at h * 2^i with the reversed channels; its upsampler's output is twice the side
    const rev = [...chs].reverse();
    let largestMap = 0;
    rev.forEach((c, i) => {
      const side = 2 ** Math.min(i + 1, levels - 1);
      largestMap = Math.max(largestMap, b * h * side * w * side * c * 4);
    });
    const attn = attentionBytes(model, b, h, w, 1, h * w, undefined, (p) => p.startsWith("decoder."));
    return VAE_FEATURE_MAPS * largestMap + attn + (tile !== null || slicing ? outBytes : 0);
  }
  let [b, h, w] = call.pixels;
  if (slicing) b = 1;
  const tile = tiling ? vaeTile(model, Math.max(h, w), false) : null;
  if (tile !== null) { h = Math.min(h, tile); w = Math.min(w, tile); }
  let largestMap = 0;
  chs.forEach((c, i) => {
    largestMap = Math.max(largestMap, b * Math.ceil(h / 2 ** i) * Math.ceil(w / 2 ** i) * c * 4);
  });
  const lh = Math.ceil(h / factor), lw = Math.ceil(w / factor);
  const attn = attentionBytes(model, b, lh, lw, 1, lh * lw, undefined, (p) => p.startsWith("encoder."));
  return VAE_FEATURE_MAPS * largestMap + attn;
}

/** The call a model makes by default (its config's sample size, CFG batch 2 for a text-conditioned UNet). */
export function defaultCall(model: Module): ModelCall | null {
  const c = (model as unknown as { config?: Record<string, unknown> }).config ?? {};
  const name = model.constructor.name;
  const size = Array.isArray(c.sample_size) ? (c.sample_size as number[])[0] : (c.sample_size as number | undefined);
  if (name === "UNet2DConditionModel" && size) return { kind: "unet", sample: [2, size, size, c.in_channels as number], textLength: 77 };
  if (name === "UNet2DModel" && size) return { kind: "unet", sample: [1, size, size, c.in_channels as number] };
  if (name === "AutoencoderKL" && size) {
    const f = 2 ** ((c.block_out_channels as number[]).length - 1);
    return { kind: "vae-decode", latents: [1, size / f, size / f, c.latent_channels as number] };
  }
  if (name === "CLIPTextModel") return { kind: "text", batch: 2, length: (c.max_position_embeddings as number | undefined) ?? 77 };
  return null;
}

/** The call a model method is about to make, from its arguments (null when the shapes are not known). */
export function callFromArgs(model: Module, method: string, args: unknown[]): ModelCall | null {
  const shape = (args[0] as { shape?: number[] } | undefined)?.shape;
  const name = model.constructor.name;
  if (name === "AutoencoderKL" && shape?.length === 4) {
    return method === "encode" ? { kind: "vae-encode", pixels: shape } : method === "decode" ? { kind: "vae-decode", latents: shape } : null;
  }
  if ((name === "UNet2DConditionModel" || name === "UNet2DModel") && method === "forward" && shape?.length === 4) {
    const text = (args[2] as { shape?: number[] } | undefined)?.shape;
    return { kind: "unet", sample: shape, textLength: text?.[1] ?? 77 };
  }
  if (name === "CLIPTextModel" && method === "forward") {
    const ids = args[0] as number[][] | { shape?: number[] };
    if (Array.isArray(ids)) return { kind: "text", batch: ids.length, length: ids[0]?.length ?? 77 };
    if (ids?.shape?.length === 2) return { kind: "text", batch: ids.shape[0], length: ids.shape[1] };
  }
  return null;
}
