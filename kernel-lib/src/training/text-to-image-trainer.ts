// Training a latent text-to-image model, as diffusers' examples/text_to_image/train_text_to_image.py (and, with
// `trainable`, train_text_to_image_lora.py). Per step:
//   latents = vae.encode(x).latent_dist.sample() * scaling_factor      (the frozen first stage)
//   c = text_encoder(tokenizer(caption)).last_hidden_state, the caption replaced by "" with probability
//       proportion_empty_prompts (the scripts' --proportion_empty_prompts): the unconditional model that
//       classifier-free guidance needs (Ho & Salimans 2022, sec. 3.2)
//   L = mean || eps - eps_theta(sqrt(abar_t) latents + sqrt(1 - abar_t) eps, t, c) ||^2      (DDPM eq. 14)
// Unlike SD, which keeps CLIP frozen, the text encoder here learns too (a tiny model has no pretrained CLIP).
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { saveSafetensors } from "../io/safetensors.js";
import { loadStateDictFile } from "../models/modeling-utils.js";
import type { Generator } from "../random/generator.js";
import type { Parameter } from "../nn/module.js";
import type { ModelMixin } from "../models/modeling-utils.js";
import type { AutoencoderKL } from "../models/autoencoder-kl.js";
import type { CLIPTextModel } from "../models/clip-text-model.js";
import type { UNet2DConditionModel } from "../models/unet-2d-condition.js";
import type { CLIPTokenizer } from "../tokenizers/clip.js";
import type { DDPMScheduler } from "../schedulers/scheduling-ddpm.js";
import { sampleNoiseAndTimesteps } from "./ddpm-loss.js";
import type { EMAModelOptions } from "./ema-model.js";
import { batchTensor } from "./ddpm-trainer.js";
import { Trainer, type PreparedStep, type TrainerOptions } from "./trainer.js";

/** Pictures (NHWC in [-1, 1]) and their captions for step `step`. */
export type CaptionedBatchSource = (step: number, batchSize: number) => { pixels: Float32Array | tf.Tensor4D; captions: string[] };

/** Weights that are not whole models (a LoRA adapter): what to train, and how checkpoints save and restore them. */
export interface TrainableWeights {
  params: [string, Parameter][];
  save: (dir: string) => void;
  load: (dir: string) => void;
}

export interface TextToImageComponents {
  unet: UNet2DConditionModel;
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  /** the training noise schedule (a DDPMScheduler with the pipeline's betas) */
  noiseScheduler: DDPMScheduler;
}

export interface TextToImageTrainerOptions extends TrainerOptions {
  data: CaptionedBatchSource;
  batchSize: number;
  /** probability of training on the empty caption (default 0.1) */
  proportionEmptyPrompts?: number;
  /** diffusers' --noise_offset: a per-picture, per-channel normal times this added to the noise (default 0; see sampleNoiseAndTimesteps) */
  noiseOffset?: number;
  /** "unet+text_encoder" (default), "unet", or adapter weights (LoRA: everything else frozen) */
  trainable?: "unet+text_encoder" | "unet" | TrainableWeights;
  /** EMA of the UNet (diffusers' --use_ema); default none */
  ema?: EMAModelOptions | false;
}

/**
 * TrainableWeights for a list of parameters (a LoRA adapter's): checkpoints keep them, by name and in the kit's
 * layout, in `<checkpoint>/adapter_weights.safetensors` (the finished adapter is saved with saveLoraWeights).
 */
export function parameterWeights(params: [string, Parameter][], fileName = "adapter_weights.safetensors"): TrainableWeights {
  return {
    params,
    save: (dir) => saveSafetensors(path.join(dir, fileName), Object.fromEntries(params.map(([n, p]) => [n, p.value]))),
    load: (dir) => {
      const file = path.join(dir, fileName);
      const saved = loadStateDictFile(file);
      for (const [n, p] of params) {
        const raw = saved.get(n);
        if (!raw) throw new Error(`${file} has no tensor "${n}": it was written for other adapter weights`);
        tf.tidy(() => p.set(tf.tensor(raw.data as Float32Array, raw.shape, "float32")));
      }
    },
  };
}

const prefixed = (prefix: string, params: [string, Parameter][]): [string, Parameter][] => params.map(([n, p]) => [`${prefix}.${n}`, p]);

export class TextToImageTrainer extends Trainer {
  readonly opts: TextToImageTrainerOptions;
  private readonly adapter: TrainableWeights | null;

  constructor(readonly components: TextToImageComponents, opts: TextToImageTrainerOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`TextToImageTrainer: batchSize must be a positive integer, got ${opts.batchSize}`);
    const p = opts.proportionEmptyPrompts ?? 0.1;
    if (!(p >= 0 && p <= 1)) throw new Error(`TextToImageTrainer: proportionEmptyPrompts must be in [0, 1], got ${p}`);
    const { unet, textEncoder } = components;
    const trainable = opts.trainable ?? "unet+text_encoder";
    const adapter = typeof trainable === "object" ? trainable : null;
    const models: Record<string, ModelMixin> = adapter ? {} : trainable === "unet" ? { unet } : { unet, text_encoder: textEncoder };
    const params = adapter ? adapter.params
      : [...prefixed("unet", unet.namedParameters()), ...(trainable === "unet" ? [] : prefixed("text_encoder", textEncoder.namedParameters()))];
    if (opts.ema && adapter) throw new Error("TextToImageTrainer: an EMA of the UNet needs the UNet trained; drop ema when training an adapter");
    super(models, params, opts, opts.ema ? { unet: opts.ema } : {});
    this.opts = opts;
    this.adapter = adapter;
  }

  private get trainsTextEncoder(): boolean {
    return (this.opts.trainable ?? "unet+text_encoder") !== "unet";
  }

  /** Token ids [B, 77] of the captions, padded as StableDiffusionPipeline does. */
  tokenize(captions: string[]): number[][] {
    const t = this.components.tokenizer;
    return t.encode(captions, { padding: "max_length", maxLength: t.modelMaxLength, truncation: true }).inputIds;
  }

  protected prepareStep(step: number, generator: Generator): PreparedStep {
    const { unet, vae, textEncoder, noiseScheduler } = this.components;
    const { batchSize } = this.opts;
    const { pixels, captions } = this.opts.data(step, batchSize);
    if (captions.length !== batchSize) throw new Error(`TextToImageTrainer: the data callback returned ${captions.length} captions for step ${step}; expected ${batchSize}`);
    const vc = vae.config as { in_channels: number; sample_size: number; scaling_factor: number };
    const x = batchTensor("TextToImageTrainer", pixels, [batchSize, vc.sample_size, vc.sample_size, vc.in_channels], step);
    // the frozen first stage, outside the tape
    const latents = tf.tidy(() => {
      const dist = vae.encode(x).latentDist;
      const z = tf.mul(dist.sample(generator), vc.scaling_factor) as tf.Tensor4D;
      dist.dispose();
      return z;
    });
    x.dispose();
    const draw = sampleNoiseAndTimesteps(generator, latents.shape, noiseScheduler.config.num_train_timesteps, this.opts.noiseOffset ?? 0);
    const drop = generator.randArray([batchSize]);
    const ids = this.tokenize(captions.map((c, i) => (drop[i] < (this.opts.proportionEmptyPrompts ?? 0.1) ? "" : c)));
    const frozenText = this.trainsTextEncoder ? null : tf.tidy(() => textEncoder.forward(ids).lastHiddenState);
    const loss = () => tf.tidy(() => {
      const context = frozenText ?? textEncoder.forward(ids).lastHiddenState;
      const noisy = noiseScheduler.addNoise(latents, draw.noise, draw.timesteps) as tf.Tensor4D;
      const pred = unet.forward(noisy, draw.timesteps, context).sample;
      return tf.mean(tf.square(tf.sub(pred, draw.noise))) as tf.Scalar;
    });
    return { loss, dispose: () => tf.dispose([latents, draw.noise, ...(frozenText ? [frozenText] : [])]) };
  }

  protected saveWeights(dir: string): void {
    if (this.adapter) this.adapter.save(dir);
    else super.saveWeights(dir);
  }

  protected loadWeights(dir: string): void {
    if (this.adapter) this.adapter.load(dir);
    else super.loadWeights(dir);
  }
}
