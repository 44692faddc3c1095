// StableDiffusionPipeline (diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion.py):
// text -> CLIP embeddings; Gaussian latents; a denoising loop on the latents with classifier-free
// guidance (Ho & Salimans 2022): eps = eps_uncond + w (eps_cond - eps_uncond); then the VAE decodes
// latents / scaling_factor into pixels (Rombach et al. 2022).
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import { randnLikeSample } from "../schedulers/noise.js";
import type { UNet2DConditionModel } from "../models/unet-2d-condition.js";
import type { AutoencoderKL } from "../models/autoencoder-kl.js";
import type { CLIPTextModel } from "../models/clip-text-model.js";
import type { CLIPTokenizer } from "../tokenizers/clip.js";
import type { SchedulerMixin } from "../schedulers/scheduling-utils.js";
import { DiffusionPipelineBase, postprocessImages, type OutputType } from "./pipeline-utils.js";
import { loadPipelineComponents, type LoadOptions } from "./pipeline-loading.js";
import { LivePreview } from "../display/preview.js";
import { LoraLoaderMixin } from "../lora/lora-pipeline.js";
import { withLoraScale } from "../lora/peft-utils.js";
import type { PlannedCall } from "../memory/memory-plan.js";
import { argumentError, checkFinite, checkInteger, checkStringList, MAX_PICTURE_SIDE, MAX_PICTURES_PER_CALL } from "../utils/check-argument.js";
import { checkDecoded, checkDenoiseStep, checkFiniteTensor } from "../utils/check-finite.js";

export interface StableDiffusionComponents {
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  unet: UNet2DConditionModel;
  scheduler: SchedulerMixin;
}

/** What a step-end callback sees and may replace (diffusers' callback_on_step_end tensor inputs). */
export interface StepEndState { latents: tf.Tensor4D; promptEmbeds: tf.Tensor3D }

export interface StableDiffusionCallOptions {
  prompt?: string | string[];
  negativePrompt?: string | string[];
  height?: number;
  width?: number;
  numInferenceSteps?: number;
  guidanceScale?: number;
  numImagesPerPrompt?: number;
  /** one Generator, or one per picture (batch × numImagesPerPrompt) */
  generator?: Generator | Generator[];
  /** start latents [B, h/8, w/8, 4] (NHWC); multiplied by the scheduler's initNoiseSigma as in diffusers */
  latents?: tf.Tensor4D;
  promptEmbeds?: tf.Tensor3D;
  negativePromptEmbeds?: tf.Tensor3D;
  /** DDIM's eta (ignored by schedulers without it) */
  eta?: number;
  /** "png" (one PNG per picture), "np"/"tensor" (float [B,H,W,3] in [0,1]), "latent" (the final latents) */
  outputType?: OutputType | "latent";
  /** LoRA scale and other attention options, as diffusers' cross_attention_kwargs */
  crossAttentionKwargs?: { scale?: number };
  /** called after each scheduler step; return a partial state to replace latents / embeddings, or false to stop */
  callbackOnStepEnd?: (step: number, t: number, state: StepEndState) => void | false | Partial<StepEndState> | Promise<void | false | Partial<StepEndState>>;
  /** redraw a live preview (decoded) every N steps in a notebook; 0 = off */
  previewEvery?: number;
}

/** What the shared loop needs besides the call options. */
export interface DenoiseContext {
  guidance: number;
  doCfg: boolean;
  /** blends known latents back in after each step (receives and returns owned tensors) */
  afterStep?: (i: number, latents: tf.Tensor4D) => tf.Tensor4D;
  /** extra UNet input channels (already doubled under CFG), appended after scaleModelInput */
  extraInput?: tf.Tensor4D;
}

export interface StableDiffusionOutput<T = tf.Tensor4D | Buffer[]> { images: T }

function asList(x: string | string[]): string[] {
  return typeof x === "string" ? [x] : x;
}

/** [b, ...] -> [b*n, ...], each item repeated n times in a row (torch: repeat(1, n, 1).view(b*n, ...)). */
function repeatEach<T extends tf.Tensor>(x: T, n: number): T {
  if (n === 1) return tf.clone(x);
  return tf.tidy(() => {
    const [b, ...rest] = x.shape;
    return tf.reshape(tf.tile(tf.expandDims(x, 1), [1, n, ...rest.map(() => 1)]), [b * n, ...rest]) as T;
  });
}

export class StableDiffusionPipeline extends LoraLoaderMixin(DiffusionPipelineBase) {
  vae: AutoencoderKL;
  textEncoder: CLIPTextModel;
  tokenizer: CLIPTokenizer;
  unet: UNet2DConditionModel;
  scheduler: SchedulerMixin;
  /** Components the pipeline loads from model_index.json (its keys, in diffusers' names). */
  static readonly componentNames = ["vae", "text_encoder", "tokenizer", "unet", "scheduler"];
  static override readonly modelCpuOffloadSeq = "text_encoder->unet->vae";

  constructor({ vae, textEncoder, tokenizer, unet, scheduler }: StableDiffusionComponents) {
    super();
    this.vae = vae;
    this.textEncoder = textEncoder;
    this.tokenizer = tokenizer;
    this.unet = unet;
    this.scheduler = scheduler;
  }

  /** Loads a Stable Diffusion folder or repo (model_index.json + vae/ text_encoder/ tokenizer/ unet/ scheduler/). */
  static async fromPretrained<P extends StableDiffusionPipeline>(this: new (c: StableDiffusionComponents) => P, idOrPath: string, opts: LoadOptions = {}): Promise<P> {
    const parts = await loadPipelineComponents(idOrPath, StableDiffusionPipeline.componentNames, opts);
    const pipe = new this({
      vae: parts.vae as AutoencoderKL,
      textEncoder: parts.text_encoder as CLIPTextModel,
      tokenizer: parts.tokenizer as CLIPTokenizer,
      unet: parts.unet as UNet2DConditionModel,
      scheduler: parts.scheduler as SchedulerMixin,
    });
    pipe.memory = opts.memory ?? "auto";
    pipe.memoryBudgetBytes = opts.memoryBudgetBytes ?? null;
    return pipe;
  }

  /** diffusers' enable_vae_slicing: the VAE decodes (and encodes) one picture of the batch at a time. */
  enableVaeSlicing(): void {
    this.takeMemoryControl();
    this.vae.enableSlicing();
  }

  disableVaeSlicing(): void {
    this.takeMemoryControl();
    this.vae.disableSlicing();
  }

  /** diffusers' enable_vae_tiling: pictures larger than vae.tileSampleMinSize go through the VAE in blended tiles. */
  enableVaeTiling(): void {
    this.takeMemoryControl();
    this.vae.enableTiling();
  }

  disableVaeTiling(): void {
    this.takeMemoryControl();
    this.vae.disableTiling();
  }

  /** 2^(levels - 1): 8 for SD's VAE. */
  get vaeScaleFactor(): number {
    return 2 ** (this.vae.config.block_out_channels.length - 1);
  }

  /** The CLIP embeddings [b, 77, d] of texts, padded/truncated to the tokenizer's 77 tokens. */
  encodeText(texts: string[]): tf.Tensor3D {
    const maxLength = this.tokenizer.modelMaxLength;
    const { inputIds } = this.tokenizer.encode(texts, { padding: "max_length", maxLength, truncation: true });
    const untruncated = this.tokenizer.encode(texts, { padding: false, truncation: false }).inputIds;
    untruncated.forEach((ids, i) => {
      if (ids.length > maxLength) {
        const cut = this.tokenizer.decode(ids.slice(maxLength - 1, -1));
        console.warn(`The prompt ${i} was truncated: CLIP only sees ${maxLength} tokens; dropped: "${cut}"`);
      }
    });
    const out = this.textEncoder.forward(inputIds);
    out.poolerOutput.dispose(); // SD uses the per-token states only
    return out.lastHiddenState as tf.Tensor3D;
  }

  /**
   * diffusers' encode_prompt: prompt embeddings repeated numImagesPerPrompt times, and with CFG the
   * negative ones first: returns [uncond; cond] (2·b·n rows) or [cond] without guidance.
   */
  encodePrompt(prompt: string[] | null, numImagesPerPrompt: number, doCfg: boolean, negativePrompt?: string | string[],
    promptEmbeds?: tf.Tensor3D, negativePromptEmbeds?: tf.Tensor3D): tf.Tensor3D {
    // check the negative prompts before any tensor exists, so an error leaks nothing
    const batch = promptEmbeds ? promptEmbeds.shape[0] : (prompt as string[]).length;
    let neg: string[] = [];
    if (doCfg && !negativePromptEmbeds) {
      // one string serves every prompt (diffusers requires a list then; broadcasting changes no result it accepts)
      neg = negativePrompt === undefined ? Array(batch).fill("") : typeof negativePrompt === "string" ? Array(batch).fill(negativePrompt) : negativePrompt;
      if (neg.length !== batch) {
        throw new Error(`negativePrompt has ${neg.length} entries but prompt has ${batch}: give one negative prompt per prompt, or a single string`);
      }
    }
    const cond0 = promptEmbeds ? tf.clone(promptEmbeds) : this.encodeText(prompt as string[]);
    const cond = repeatEach(cond0, numImagesPerPrompt);
    cond0.dispose();
    if (!doCfg) return cond;
    const uncond0 = negativePromptEmbeds ? tf.clone(negativePromptEmbeds) : this.encodeText(neg);
    const uncond = repeatEach(uncond0, numImagesPerPrompt);
    uncond0.dispose();
    const both = tf.concat([uncond, cond], 0) as tf.Tensor3D; // CFG batch order: [uncond, cond]
    tf.dispose([uncond, cond]);
    return both;
  }

  /** Initial latents [B, h/8, w/8, C]: drawn in diffusers' NCHW order from `generator`, times initNoiseSigma. */
  prepareLatents(batch: number, height: number, width: number, generator?: Generator | Generator[], latents?: tf.Tensor4D): tf.Tensor4D {
    const c = this.unet.config.in_channels;
    const h = height / this.vaeScaleFactor, w = width / this.vaeScaleFactor;
    if (Array.isArray(generator) && generator.length !== batch) {
      throw new Error(`generator: a list of ${generator.length} generators was given for ${batch} pictures (batch × numImagesPerPrompt); pass one per picture or a single Generator`);
    }
    return tf.tidy(() => {
      let x: tf.Tensor4D;
      if (latents) {
        const want = [batch, h, w, c];
        if (latents.shape.join() !== want.join()) {
          throw new Error(`latents has shape [${latents.shape}] but this call needs [${want}] (NHWC: batch, height/${this.vaeScaleFactor}, width/${this.vaeScaleFactor}, ${c})`);
        }
        x = latents;
      } else {
        x = randnLikeSample([batch, h, w, c], generator);
      }
      return tf.mul(x, this.scheduler.initNoiseSigma) as tf.Tensor4D;
    });
  }

  /** One UNet evaluation with classifier-free guidance: eps_u + w (eps_c - eps_u) (Ho & Salimans 2022). */
  predictNoise(latents: tf.Tensor4D, t: number, embeds: tf.Tensor3D, guidanceScale: number, doCfg: boolean,
    crossAttentionKwargs?: { scale?: number }, extraInput?: tf.Tensor4D): tf.Tensor4D {
    return tf.tidy(() => {
      const doubled = doCfg ? tf.concat([latents, latents], 0) : latents;
      let input = this.scheduler.scaleModelInput(doubled, t);
      // inpainting UNets take [latents, mask, masked-image latents] on the channel axis
      if (extraInput) input = tf.concat([input, extraInput], 3);
      const eps = this.unet.forward(input, t, embeds, { crossAttentionKwargs }).sample;
      if (!doCfg) return eps;
      const [uncond, cond] = tf.split(eps, 2, 0);
      return tf.add(uncond, tf.mul(tf.sub(cond, uncond), guidanceScale)) as tf.Tensor4D;
    });
  }

  /**
   * latents / scaling_factor -> VAE -> pictures in [0, 1] (diffusers: (x / 2 + 0.5).clamp(0, 1)); a NaN or
   * Infinity the VAE decodes is an error (clamping would hide it as black).
   */
  decodeLatents(latents: tf.Tensor4D): tf.Tensor4D {
    const scaling = this.vae.config.scaling_factor;
    return tf.tidy(() => {
      const x = this.vae.decode(tf.div(latents, scaling) as tf.Tensor4D).sample;
      checkDecoded(`${this.constructor.name}.decodeLatents`, x);
      return tf.clipByValue(tf.add(tf.div(x, 2), 0.5), 0, 1) as tf.Tensor4D;
    });
  }

  /** Height and width: positive multiples of the VAE's scale factor, at most MAX_PICTURE_SIDE. */
  protected checkSize(height: number, width: number): void {
    const f = this.vaeScaleFactor;
    for (const [name, v] of [["height", height], ["width", width]] as const) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < f || v > MAX_PICTURE_SIDE || v % f !== 0) {
        const near = Number.isFinite(v) ? Math.min(Math.max(f, Math.round(v / f) * f), MAX_PICTURE_SIDE - (MAX_PICTURE_SIDE % f)) : 512;
        throw argumentError(`${this.constructor.name}.generate`, name,
          `a positive multiple of ${f} (the VAE divides it by ${f}), at most ${MAX_PICTURE_SIDE}`, v, `Try ${near}.`);
      }
    }
  }

  /**
   * The numbers and texts of a call, checked before any tensor is made (so a bad one leaks nothing and
   * the next call works): prompts are strings, counts are integers in range, scales are finite, tensor
   * arguments hold no NaN / Infinity.
   */
  protected checkCallOptions(opts: StableDiffusionCallOptions): void {
    const where = `${this.constructor.name}.generate`;
    if (opts.prompt !== undefined) checkStringList(where, "prompt", opts.prompt);
    if (opts.negativePrompt !== undefined) checkStringList(where, "negativePrompt", opts.negativePrompt);
    const T = this.scheduler.config.num_train_timesteps as number;
    if (opts.numInferenceSteps !== undefined) {
      checkInteger(where, "numInferenceSteps", opts.numInferenceSteps, 1, T, `The scheduler (${this.scheduler.constructor.name}) knows ${T} training timesteps`);
    }
    if (opts.guidanceScale !== undefined) checkFinite(where, "guidanceScale", opts.guidanceScale, -Infinity, Infinity, "7.5 is usual; 1 or less turns guidance off");
    if (opts.numImagesPerPrompt !== undefined) checkInteger(where, "numImagesPerPrompt", opts.numImagesPerPrompt, 1, MAX_PICTURES_PER_CALL);
    if (opts.eta !== undefined) checkFinite(where, "eta", opts.eta, 0, 1, "DDIM's eta: 0 is deterministic, 1 is DDPM-like");
    const scale = opts.crossAttentionKwargs?.scale;
    if (scale !== undefined) checkFinite(where, "crossAttentionKwargs.scale", scale, -Infinity, Infinity, "the LoRA scale: 0 turns LoRA off, 1 is full strength");
    if (opts.previewEvery !== undefined) checkInteger(where, "previewEvery", opts.previewEvery, 0, Number.MAX_SAFE_INTEGER);
    for (const name of ["latents", "promptEmbeds", "negativePromptEmbeds"] as const) {
      const t = opts[name];
      if (t !== undefined) checkFiniteTensor(where, name, t);
    }
  }

  /**
   * The model calls one generate() makes, for the memory plan (pipeline-utils.ts planMemory): the text encoder per
   * prompt batch, the VAE encoder for img2img / inpainting, the UNet on the (CFG-doubled) latents, the VAE decoder.
   */
  protected memoryCalls(opts: StableDiffusionCallOptions, height: number, width: number, encodes = false): { what: string; calls: PlannedCall[] } {
    const prompts = opts.promptEmbeds ? opts.promptEmbeds.shape[0] : opts.prompt === undefined ? 1 : asList(opts.prompt).length;
    const perPrompt = opts.numImagesPerPrompt ?? 1;
    const pictures = prompts * (Number.isInteger(perPrompt) && perPrompt > 0 ? perPrompt : 1);
    const doCfg = (opts.guidanceScale ?? 7.5) > 1 && this.unet.config.time_cond_proj_dim == null;
    const f = this.vaeScaleFactor;
    const tokens = this.tokenizer.modelMaxLength;
    const calls: PlannedCall[] = [];
    if (!opts.promptEmbeds) calls.push({ component: "text_encoder", call: { kind: "text", batch: prompts, length: tokens } });
    if (encodes) calls.push({ component: "vae", call: { kind: "vae-encode", pixels: [pictures, height, width, 3] } });
    const channels = this.unet.config.in_channels;
    calls.push({ component: "unet", call: { kind: "unet", sample: [pictures * (doCfg ? 2 : 1), height / f, width / f, channels], textLength: tokens } });
    if (opts.outputType !== "latent" || opts.previewEvery) {
      calls.push({ component: "vae", call: { kind: "vae-decode", latents: [pictures, height / f, width / f, this.vae.config.latent_channels] } });
    }
    const what = `${this.constructor.name} ${width}x${height}, ${pictures} picture${pictures === 1 ? "" : "s"}${doCfg ? ", CFG" : ""}`;
    return { what, calls };
  }

  /** Prompts, embeddings and CFG set up as diffusers does before the loop. */
  protected prepareText(opts: StableDiffusionCallOptions): { embeds: tf.Tensor3D; batch: number; doCfg: boolean; guidance: number } {
    const guidance = opts.guidanceScale ?? 7.5;
    const numPer = opts.numImagesPerPrompt ?? 1;
    if (opts.prompt === undefined && !opts.promptEmbeds) throw new Error("give a prompt or promptEmbeds");
    if (opts.prompt !== undefined && opts.promptEmbeds) throw new Error("give either prompt or promptEmbeds, not both");
    const prompts = opts.prompt === undefined ? null : asList(opts.prompt);
    const batch = (prompts?.length ?? opts.promptEmbeds!.shape[0]) * numPer;
    // diffusers: do_classifier_free_guidance = guidance_scale > 1 (and no guidance embedding)
    const doCfg = guidance > 1 && this.unet.config.time_cond_proj_dim == null;
    // diffusers' encode_prompt(lora_scale=cross_attention_kwargs["scale"]): the text encoder's LoRA layers scaled too
    const embeds = withLoraScale(this.textEncoder, opts.crossAttentionKwargs?.scale, () =>
      this.encodePrompt(prompts, numPer, doCfg, opts.negativePrompt, opts.promptEmbeds, opts.negativePromptEmbeds));
    return { embeds, batch, doCfg, guidance };
  }

  /**
   * The shared denoising loop over `timesteps`, starting from (and taking ownership of) `latents`.
   * `afterStep` lets img2img/inpaint blend known latents back in (it receives and returns owned tensors).
   */
  protected async denoise(latents: tf.Tensor4D, timesteps: number[], embeds: tf.Tensor3D, opts: StableDiffusionCallOptions,
    ctx: DenoiseContext): Promise<tf.Tensor4D> {
    const { guidance, doCfg, afterStep, extraInput } = ctx;
    const bar = this.progressBar(timesteps.length);
    const preview = opts.previewEvery ? new LivePreview({ every: opts.previewEvery, total: timesteps.length, range: "0,1" }) : null;
    const stepKwargs: Record<string, unknown> = { generator: opts.generator };
    if (opts.eta !== undefined) stepKwargs.eta = opts.eta;
    try {
      for (let i = 0; i < timesteps.length; i++) {
        const t = timesteps[i];
        const eps = this.predictNoise(latents, t, embeds, guidance, doCfg, opts.crossAttentionKwargs, extraInput);
        try {
          const out = this.scheduler.step(eps, t, latents, stepKwargs);
          (out as { predOriginalSample?: tf.Tensor }).predOriginalSample?.dispose();
          latents.dispose();
          latents = out.prevSample;
          // NaN / Infinity stops the loop at the step that made it, naming the unet or the scheduler
          checkDenoiseStep({ where: `${this.constructor.name}.generate`, index: i, total: timesteps.length, timestep: t,
            scheduler: this.scheduler.constructor.name, modelOutputIs: doCfg ? `noise prediction after classifier-free guidance, guidanceScale ${guidance}` : "noise prediction" }, eps, latents);
        } finally {
          eps.dispose();
        }
        if (afterStep) latents = afterStep(i, latents);
        if (preview && (i % opts.previewEvery! === 0 || i === timesteps.length - 1)) {
          const pic = this.decodeLatents(latents);
          await preview.update(i, t, pic);
          pic.dispose();
        }
        bar.update(i + 1);
        if (opts.callbackOnStepEnd) {
          const r = await opts.callbackOnStepEnd(i, t, { latents, promptEmbeds: embeds });
          if (r === false) break;
          if (r && r.latents && r.latents !== latents) { latents.dispose(); latents = r.latents; }
          if (r && r.promptEmbeds && r.promptEmbeds !== embeds) { embeds.dispose(); embeds = r.promptEmbeds; }
        }
      }
    } catch (e) {
      latents.dispose();
      this.scheduler.dispose(); // the multistep history of the abandoned loop
      throw e;
    } finally {
      embeds.dispose();
    }
    return latents;
  }

  /**
   * The end of every generate: final latents -> the requested output (takes ownership of `latents`), and offloaded
   * models free their weights (diffusers' maybe_free_model_hooks), also when decoding fails. `afterDecode` takes the
   * decoded pictures [B,H,W,3] in [0,1] and returns the ones to output (it owns both; inpainting pastes pixels back).
   * A call that fails before it gets here frees the hooks with `abandonCall`.
   */
  protected async finish(latents: tf.Tensor4D, outputType: OutputType | "latent",
    afterDecode?: (pictures: tf.Tensor4D) => tf.Tensor4D): Promise<StableDiffusionOutput<tf.Tensor4D | Buffer[]>> {
    try {
      if (outputType === "latent") return { images: latents };
      let pictures: tf.Tensor4D;
      try {
        pictures = this.decodeLatents(latents);
      } finally {
        latents.dispose();
      }
      if (afterDecode) pictures = afterDecode(pictures);
      return { images: await postprocessImages(pictures, outputType) };
    } finally {
      this.maybeFreeModelHooks();
    }
  }

  /** A generate that fails before `finish`: offloaded models free the weights it loaded, as finish does; rethrows `e`. */
  protected abandonCall(e: unknown): never {
    this.maybeFreeModelHooks();
    throw e;
  }

  /** diffusers: `pipe(prompt, ...)`; returns `{ images }` (PNG buffers by default, a tensor for "np"/"tensor"/"latent"). */
  async generate(opts: StableDiffusionCallOptions & { outputType: "np" | "tensor" | "latent" }): Promise<StableDiffusionOutput<tf.Tensor4D>>;
  async generate(opts: StableDiffusionCallOptions): Promise<StableDiffusionOutput>;
  async generate(opts: StableDiffusionCallOptions): Promise<StableDiffusionOutput> {
    const sample = this.unet.config.sample_size;
    const height = opts.height ?? sample * this.vaeScaleFactor;
    const width = opts.width ?? sample * this.vaeScaleFactor;
    this.checkCallOptions(opts);
    this.checkSize(height, width);
    const plan = this.memoryCalls(opts, height, width);
    this.planMemory(plan.what, plan.calls);
    this.scheduler.setTimesteps(opts.numInferenceSteps ?? 50); // before any tensor: its errors leak nothing
    let latents: tf.Tensor4D;
    try {
      const { embeds, batch, doCfg, guidance } = this.prepareText(opts);
      try {
        latents = this.prepareLatents(batch, height, width, opts.generator, opts.latents);
      } catch (e) {
        embeds.dispose();
        throw e;
      }
      latents = await this.denoise(latents, this.scheduler.timesteps, embeds, opts, { guidance, doCfg });
    } catch (e) {
      return this.abandonCall(e);
    }
    return this.finish(latents, opts.outputType ?? "png");
  }

  dispose(): void {
    this.unet.dispose();
    this.vae.dispose();
    this.textEncoder.dispose();
    (this.scheduler as { dispose?: () => void }).dispose?.();
  }
}
