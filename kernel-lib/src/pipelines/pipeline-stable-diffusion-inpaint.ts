// StableDiffusionInpaintPipeline (diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_inpaint.py):
// repaint where the mask is white. 9-channel inpainting UNets (runwayml/stable-diffusion-inpainting) see
// [latents, mask, masked-picture latents]; ordinary 4-channel UNets get the known region blended back
// after every step: z = (1 − m)·q(z_known at the next t) + m·z (RePaint-style mask blending).
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import { randnLikeSample } from "../schedulers/noise.js";
import { checkGeneratorCount, StableDiffusionImg2ImgPipeline } from "./pipeline-stable-diffusion-img2img.js";
import type { StableDiffusionCallOptions, StableDiffusionOutput } from "./pipeline-stable-diffusion.js";
import { binarizeMask, checkPictureRange, checkPictureSize, normalize, toPictureTensor } from "./image-processor.js";
import { argumentError } from "../utils/check-argument.js";

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

/** What prepareInpaintLatents makes (the caller owns every tensor). */
interface InpaintLatents {
  latents: tf.Tensor4D;
  imageLatents: tf.Tensor4D | null;
  noise: tf.Tensor4D;
  latentMask: tf.Tensor4D;
  maskedLatents: tf.Tensor4D;
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
    const unetChannels = this.unet.config.in_channels;
    const latentChannels = this.vae.config.latent_channels;
    if (unetChannels !== latentChannels && unetChannels !== 2 * latentChannels + 1) {
      throw new Error(`the UNet takes ${unetChannels} input channels: inpainting needs ${latentChannels} (mask blending) or ${2 * latentChannels + 1} (an inpainting UNet)`);
    }
    const { timesteps, tStart } = this.strengthSchedule(opts.numInferenceSteps ?? 50, strength);
    const { picture, mask } = await this.readInpaintPictures(opts, where);
    let final: tf.Tensor4D;
    try {
      const x = normalize(picture);
      const masked = tf.tidy(() => tf.mul(x, tf.sub(1, mask)) as tf.Tensor4D); // masked_image = image · (mask < 0.5)
      let text: ReturnType<StableDiffusionInpaintPipeline["prepareText"]>;
      try {
        text = this.prepareText(opts);
      } catch (e) {
        tf.dispose([x, masked]);
        throw e;
      }
      const { embeds, batch, doCfg, guidance } = text;
      let start: InpaintLatents;
      try {
        checkGeneratorCount(opts.generator, batch);
        start = this.prepareInpaintLatents(x, masked, mask, batch, timesteps[0], strength === 1.0, opts.generator);
      } catch (e) {
        embeds.dispose();
        throw e;
      } finally {
        tf.dispose([x, masked]);
      }
      const { latents, imageLatents, noise, latentMask, maskedLatents } = start;
      let extraInput: tf.Tensor4D | undefined;
      let afterStep: ((i: number, z: tf.Tensor4D) => tf.Tensor4D) | undefined;
      if (unetChannels !== latentChannels) {
        // an inpainting UNet sees [latents, mask, masked-picture latents] (doubled under CFG)
        extraInput = tf.tidy(() => {
          const e = tf.concat([latentMask, maskedLatents], 3);
          return doCfg ? tf.concat([e, e], 0) : e;
        });
      } else {
        // z = (1 − m)·q(z_known at the next t) + m·z after every step
        afterStep = (i, z) => {
          const blended = tf.tidy(() => {
            let known: tf.Tensor4D = imageLatents!;
            if (i < timesteps.length - 1) known = this.scheduler.addNoise(imageLatents!, noise, Array(batch).fill(timesteps[i + 1]));
            return tf.add(tf.mul(tf.sub(1, latentMask), known), tf.mul(latentMask, z)) as tf.Tensor4D;
          });
          z.dispose();
          return blended;
        };
      }
      (this.scheduler as { setBeginIndex?: (i: number) => void }).setBeginIndex?.(tStart * this.scheduler.order);
      try {
        final = await this.denoise(latents, timesteps, embeds, opts, { guidance, doCfg, afterStep, extraInput }); // owns latents, embeds
      } finally {
        tf.dispose([imageLatents ?? [], noise, latentMask, maskedLatents, extraInput ?? []].flat());
      }
    } catch (e) {
      tf.dispose([picture, mask]);
      return this.abandonCall(e);
    }
    // outside the mask, the original pixels (the VAE changes them slightly)
    const paste = (opts.keepUnmaskedPixels ?? true)
      ? (pictures: tf.Tensor4D): tf.Tensor4D => {
        const pasted = tf.tidy(() => tf.add(tf.mul(mask, pictures), tf.mul(tf.sub(1, mask), picture)) as tf.Tensor4D);
        pictures.dispose();
        return pasted;
      }
      : undefined;
    try {
      return await this.finish(final, opts.outputType ?? "png", paste);
    } finally {
      tf.dispose([picture, mask]);
    }
  }

  /**
   * The picture [1,H,W,3] in [0,1] and its binarized mask [1,H,W,1], checked (sizes, ranges, channels), with the
   * call's memory planned; nothing is left allocated when a check fails.
   */
  protected async readInpaintPictures(opts: InpaintCallOptions, where: string): Promise<{ picture: tf.Tensor4D; mask: tf.Tensor4D }> {
    const picture = await toPictureTensor(opts.image);
    let rawMask: tf.Tensor4D;
    try {
      rawMask = await toPictureTensor(opts.maskImage, "maskImage");
    } catch (e) {
      picture.dispose();
      throw e;
    }
    try {
      checkPictureSize(picture, this.vaeScaleFactor);
      checkPictureRange(picture, where);
      checkPictureRange(rawMask, where, "maskImage");
      const pictureChannels = this.vae.config.in_channels;
      if (picture.shape[3] !== pictureChannels) {
        throw new Error(`image must have ${pictureChannels} channels (RGB, NHWC [1, H, W, ${pictureChannels}] in [0, 1]); got shape [${picture.shape}]`);
      }
      if (rawMask.shape[1] !== picture.shape[1] || rawMask.shape[2] !== picture.shape[2]) {
        throw new Error(`maskImage is ${rawMask.shape[2]}x${rawMask.shape[1]} but image is ${picture.shape[2]}x${picture.shape[1]}: they must match`);
      }
      const plan = this.memoryCalls(opts, picture.shape[1], picture.shape[2], true);
      this.planMemory(plan.what, plan.calls);
    } catch (e) {
      tf.dispose([picture, rawMask]);
      throw e;
    }
    const mask = binarizeMask(rawMask);
    rawMask.dispose();
    return { picture, mask };
  }

  /**
   * The start latents and what blending needs, drawn in diffusers' order: picture latents (when blending or
   * strength < 1), start noise, masked-picture latents; the mask on the latent grid, repeated per picture.
   */
  protected prepareInpaintLatents(x: tf.Tensor4D, masked: tf.Tensor4D, mask: tf.Tensor4D, batch: number, t0: number,
    isStrengthMax: boolean, generator?: Generator | Generator[]): InpaintLatents {
    const latentChannels = this.vae.config.latent_channels;
    const [, H, W] = x.shape;
    const h = H / this.vaeScaleFactor, w = W / this.vaeScaleFactor;
    const needImageLatents = this.unet.config.in_channels === latentChannels || !isStrengthMax;
    const imageLatents = needImageLatents ? this.encodeImageLatents(x, batch, generator) : null;
    const noise = randnLikeSample([batch, h, w, latentChannels], generator);
    const latents = isStrengthMax
      ? tf.tidy((): tf.Tensor4D => tf.mul(noise, this.scheduler.initNoiseSigma))
      : this.scheduler.addNoise(imageLatents!, noise, Array(batch).fill(t0));
    let maskedLatents: tf.Tensor4D;
    try {
      maskedLatents = this.encodeImageLatents(masked, batch, generator);
    } catch (e) {
      tf.dispose([imageLatents ?? [], noise, latents].flat());
      throw e;
    }
    const latentMask = tf.tidy(() => tf.tile(maskToLatent(mask, h, w), [batch, 1, 1, 1]));
    return { latents, imageLatents, noise, latentMask, maskedLatents };
  }
}
