// StableDiffusionInpaintPipeline (diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py):
// repaint where the mask is white. 9-channel inpainting UNets (runwayml/stable-diffusion-inpainting) see
// [latents, mask, masked-picture latents]; ordinary 4-channel UNets get the known region blended back
// after every step: z = (1 − m)·q(z_known at the next t) + m·z (RePaint-style mask blending).
import * as tf from "@tensorflow/tfjs";
import { randnTensor } from "../random/generator.js";
import { StableDiffusionImg2ImgPipeline } from "./pipeline-stable-diffusion-img2img.js";
import type { StableDiffusionCallOptions, StableDiffusionOutput } from "./pipeline-stable-diffusion.js";
import { binarizeMask, checkPictureRange, checkPictureSize, normalize, toPictureTensor } from "./image-processor.js";
import { argumentError } from "../utils/check-argument.js";
import { postprocessImages } from "./pipeline-utils.js";

export interface InpaintCallOptions extends Omit<StableDiffusionCallOptions, "height" | "width" | "latents"> {
  image: tf.Tensor | Uint8Array | string;
  /** white (>= 0.5) = repaint, black = keep; [1,H,W,1] or [1,H,W,3] in [0,1], bytes or a path */
  maskImage: tf.Tensor | Uint8Array | string;
  /** default 1.0 (start from pure noise inside the mask) */
  strength?: number;
  /**
   * Paste the original pixels back outside the mask after decoding (diffusers does this only with
   * padding_mask_crop; the VAE otherwise changes unmasked pixels slightly). Default true.
   */
  keepUnmaskedPixels?: boolean;
}

/** Nearest-neighbour downsampling of a 0/1 mask to the latent grid (torch F.interpolate, mode "nearest"). */
function maskToLatent(mask: tf.Tensor4D, h: number, w: number): tf.Tensor4D {
  return tf.tidy(() => tf.image.resizeNearestNeighbor(mask, [h, w], false, false) as tf.Tensor4D);
}

export class StableDiffusionInpaintPipeline extends StableDiffusionImg2ImgPipeline {
  override async generate(opts: InpaintCallOptions & { outputType: "np" | "tensor" | "latent" }): Promise<StableDiffusionOutput<tf.Tensor4D>>;
  override async generate(opts: InpaintCallOptions): Promise<StableDiffusionOutput>;
  override async generate(opts: InpaintCallOptions): Promise<StableDiffusionOutput> {
    const where = `${this.constructor.name}.generate`;
    this.checkCallOptions(opts);
    const strength = opts.strength ?? 1.0;
    if (typeof strength !== "number" || !(strength > 0 && strength <= 1)) {
      throw argumentError(where, "strength", "in (0, 1]", strength, "How far back into the noise inside the mask: 1 repaints from pure noise");
    }
    const unetChannels = this.unet.config.in_channels as number;
    const latentChannels = this.vae.config.latent_channels as number;
    if (unetChannels !== latentChannels && unetChannels !== 2 * latentChannels + 1) {
      throw new Error(`the UNet takes ${unetChannels} input channels: inpainting needs ${latentChannels} (mask blending) or ${2 * latentChannels + 1} (an inpainting UNet)`);
    }
    const { timesteps, tStart } = this.strengthSchedule(opts.numInferenceSteps ?? 50, strength);
    // every tensor made here is freed on the way out, also when an argument turns out wrong half-way
    const owned: tf.Tensor[] = [];
    let embeds: tf.Tensor3D | undefined;
    let latents: tf.Tensor4D | undefined;
    try {
      const picture = await toPictureTensor(opts.image);
      owned.push(picture);
      const rawMask = await toPictureTensor(opts.maskImage, "maskImage");
      owned.push(rawMask);
      checkPictureSize(picture, this.vaeScaleFactor);
      checkPictureRange(picture, where);
      checkPictureRange(rawMask, where, "maskImage");
      const pictureChannels = this.vae.config.in_channels as number;
      if (picture.shape[3] !== pictureChannels) {
        throw new Error(`image must have ${pictureChannels} channels (RGB, NHWC [1, H, W, ${pictureChannels}] in [0, 1]); got shape [${picture.shape}]`);
      }
      if (rawMask.shape[1] !== picture.shape[1] || rawMask.shape[2] !== picture.shape[2]) {
        throw new Error(`maskImage is ${rawMask.shape[2]}x${rawMask.shape[1]} but image is ${picture.shape[2]}x${picture.shape[1]}: they must match`);
      }
      const plan = this.memoryCalls(opts, picture.shape[1], picture.shape[2], true);
      this.planMemory(plan.what, plan.calls);
      const mask = binarizeMask(rawMask);
      owned.push(mask);
      const x = normalize(picture);
      owned.push(x);
      const masked = tf.tidy(() => tf.mul(x, tf.sub(1, mask)) as tf.Tensor4D); // masked_image = image · (mask < 0.5)
      owned.push(masked);

      const text = this.prepareText(opts);
      embeds = text.embeds;
      const { batch, doCfg, guidance } = text;
      if (Array.isArray(opts.generator) && opts.generator.length !== batch) {
        throw new Error(`generator: a list of ${opts.generator.length} generators was given for ${batch} pictures; pass one per picture or a single Generator`);
      }
      const isStrengthMax = strength === 1.0;
      const [, H, W] = picture.shape;
      const h = H / this.vaeScaleFactor, w = W / this.vaeScaleFactor;

      // random draws in diffusers' order: picture latents (if needed), start noise, masked-picture latents
      const needImageLatents = unetChannels === latentChannels || !isStrengthMax;
      const imageLatents = needImageLatents ? this.encodeImageLatents(x, batch, opts.generator) : null;
      if (imageLatents) owned.push(imageLatents);
      const noise = tf.tidy(() => tf.transpose(randnTensor([batch, latentChannels, h, w], { generator: opts.generator }), [0, 2, 3, 1]) as tf.Tensor4D);
      owned.push(noise);
      latents = isStrengthMax
        ? tf.tidy(() => tf.mul(noise, this.scheduler.initNoiseSigma) as tf.Tensor4D)
        : (this.scheduler.addNoise(imageLatents!, noise, Array(batch).fill(timesteps[0])) as tf.Tensor4D);
      const maskedLatents = this.encodeImageLatents(masked, batch, opts.generator);
      owned.push(maskedLatents);
      const latentMask = tf.tidy(() => tf.tile(maskToLatent(mask, h, w), [batch, 1, 1, 1]) as tf.Tensor4D);
      owned.push(latentMask);

      let extraInput: tf.Tensor4D | undefined;
      let afterStep: ((i: number, z: tf.Tensor4D) => tf.Tensor4D) | undefined;
      if (unetChannels !== latentChannels) {
        extraInput = tf.tidy(() => {
          const e = tf.concat([latentMask, maskedLatents], 3);
          return (doCfg ? tf.concat([e, e], 0) : e) as tf.Tensor4D;
        });
        owned.push(extraInput);
      } else {
        afterStep = (i, z) => {
          const blended = tf.tidy(() => {
            let known: tf.Tensor = imageLatents!;
            if (i < timesteps.length - 1) known = this.scheduler.addNoise(imageLatents!, noise, Array(batch).fill(timesteps[i + 1]));
            return tf.add(tf.mul(tf.sub(1, latentMask), known), tf.mul(latentMask, z)) as tf.Tensor4D;
          });
          z.dispose();
          return blended;
        };
      }
      (this.scheduler as { setBeginIndex?: (i: number) => void }).setBeginIndex?.(tStart * this.scheduler.order);
      const start = latents, cond = embeds;
      latents = embeds = undefined; // denoise owns (and frees) them from here
      const final = await this.denoise(start, timesteps, cond, opts, { guidance, doCfg, afterStep, extraInput });
      const outputType = opts.outputType ?? "png";
      if (outputType === "latent") return { images: final };
      let pictures: tf.Tensor4D;
      try {
        pictures = this.decodeLatents(final);
      } finally {
        final.dispose();
      }
      if (opts.keepUnmaskedPixels ?? true) {
        const pasted = tf.tidy(() => tf.add(tf.mul(mask, pictures), tf.mul(tf.sub(1, mask), picture)) as tf.Tensor4D);
        pictures.dispose();
        pictures = pasted;
      }
      return { images: await postprocessImages(pictures, outputType) };
    } catch (e) {
      tf.dispose([embeds ?? [], latents ?? []].flat());
      throw e;
    } finally {
      tf.dispose(owned);
      this.maybeFreeModelHooks();
    }
  }
}
