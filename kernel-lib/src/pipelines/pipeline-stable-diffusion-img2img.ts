// StableDiffusionImg2ImgPipeline (diffusers/pipelines/stable_diffusion/pipeline_stable_diffusion_img2img.py):
// encode the picture to latents, noise them to an intermediate t chosen by `strength` (forward process,
// DDPM eq. 4), and run only the remaining denoising steps (SDEdit, Meng et al. 2021).
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import { randnLikeSample } from "../schedulers/noise.js";
import { StableDiffusionPipeline, type StableDiffusionCallOptions, type StableDiffusionOutput } from "./pipeline-stable-diffusion.js";
import { checkPictureRange, checkPictureSize, normalize, toPictureTensor } from "./image-processor.js";
import { argumentError } from "../utils/check-argument.js";

export interface Img2ImgCallOptions extends Omit<StableDiffusionCallOptions, "height" | "width" | "latents"> {
  /** the starting picture: float [1,H,W,3] in [0,1], PNG/JPEG bytes, or a file path */
  image: tf.Tensor | Uint8Array | string;
  /** 0..1: how far into the noise schedule to go back (1 = ignore the picture); default 0.8 */
  strength?: number;
}

/** A list of generators must have one per generated picture (a single Generator serves them all). */
export function checkGeneratorCount(generator: Generator | Generator[] | undefined, batch: number): void {
  if (Array.isArray(generator) && generator.length !== batch) {
    throw new Error(`generator: a list of ${generator.length} generators was given for ${batch} pictures; pass one per picture or a single Generator`);
  }
}

/** diffusers' get_timesteps: the last int(n·strength) steps of the schedule. */
export function img2imgTimesteps(timesteps: number[], numInferenceSteps: number, strength: number, order = 1): { timesteps: number[]; tStart: number } {
  const initTimestep = Math.min(Math.floor(numInferenceSteps * strength), numInferenceSteps);
  const tStart = Math.max(numInferenceSteps - initTimestep, 0);
  return { timesteps: timesteps.slice(tStart * order), tStart };
}

export class StableDiffusionImg2ImgPipeline extends StableDiffusionPipeline {
  /** scaling_factor · sample of q(z | x) for each picture (one generator per picture when a list is given). */
  encodeImageLatents(image: tf.Tensor4D, batch: number, generator?: Generator | Generator[]): tf.Tensor4D {
    const scaling = this.vae.config.scaling_factor;
    const reps = image.shape[0] < batch && batch % image.shape[0] === 0 ? batch / image.shape[0] : 1;
    if (image.shape[0] * reps !== batch && image.shape[0] !== batch) {
      throw new Error(`image has ${image.shape[0]} pictures but ${batch} are generated; give 1 picture or one per generated picture`);
    }
    return tf.tidy(() => {
      let z: tf.Tensor4D;
      if (Array.isArray(generator)) {
        const imgs = reps > 1 ? tf.concat(Array(reps).fill(image), 0) : image;
        z = tf.concat(generator.map((g, i) => {
          const dist = this.vae.encode(tf.slice(imgs, [i, 0, 0, 0], [1, -1, -1, -1]) as tf.Tensor4D).latentDist;
          const s = dist.sample(g);
          dist.dispose?.();
          return s;
        }), 0) as tf.Tensor4D;
      } else {
        const dist = this.vae.encode(image).latentDist;
        z = dist.sample(generator) as tf.Tensor4D;
        dist.dispose?.();
        if (reps > 1) z = tf.concat(Array(reps).fill(z), 0) as tf.Tensor4D;
      }
      return tf.mul(z, scaling) as tf.Tensor4D;
    });
  }

  /**
   * Sets the scheduler's n steps and keeps the last n·strength of them (get_timesteps); called before any
   * tensor is made, so its errors leak nothing.
   */
  protected strengthSchedule(n: number, strength: number): { timesteps: number[]; tStart: number } {
    this.scheduler.setTimesteps(n);
    const { timesteps, tStart } = img2imgTimesteps(this.scheduler.timesteps, n, strength, this.scheduler.order);
    if (timesteps.length === 0) {
      throw argumentError(`${this.constructor.name}.generate`, "strength", "large enough to leave a denoising step", strength,
        `strength ${strength} with ${n} steps leaves no denoising step; raise strength or numInferenceSteps`);
    }
    return { timesteps, tStart };
  }

  override async generate(opts: Img2ImgCallOptions & { outputType: "np" | "tensor" | "latent" }): Promise<StableDiffusionOutput<tf.Tensor4D>>;
  override async generate(opts: Img2ImgCallOptions): Promise<StableDiffusionOutput>;
  override async generate(opts: Img2ImgCallOptions): Promise<StableDiffusionOutput> {
    const where = `${this.constructor.name}.generate`;
    this.checkCallOptions(opts);
    const strength = opts.strength ?? 0.8;
    if (typeof strength !== "number" || !(strength >= 0 && strength <= 1)) {
      throw argumentError(where, "strength", "in [0, 1]", strength, "How far back into the noise: 0 keeps the picture, 1 ignores it");
    }
    const { timesteps, tStart } = this.strengthSchedule(opts.numInferenceSteps ?? 50, strength);
    const picture = await toPictureTensor(opts.image);
    try {
      checkPictureSize(picture, this.vaeScaleFactor);
      checkPictureRange(picture, where);
      const plan = this.memoryCalls(opts, picture.shape[1], picture.shape[2], true);
      this.planMemory(plan.what, plan.calls);
    } catch (e) { picture.dispose(); throw e; }
    const x = normalize(picture);
    picture.dispose();
    let final: tf.Tensor4D;
    try {
      let text: ReturnType<StableDiffusionImg2ImgPipeline["prepareText"]>;
      try {
        text = this.prepareText(opts);
      } catch (e) {
        x.dispose();
        throw e;
      }
      const { embeds, batch, doCfg, guidance } = text;
      let latents: tf.Tensor4D;
      try {
        checkGeneratorCount(opts.generator, batch);
        // random draws in diffusers' order: the VAE's latent sample, then the noise for add_noise
        const init = this.encodeImageLatents(x, batch, opts.generator);
        try {
          latents = tf.tidy(() => {
            const [b, h, w, c] = init.shape;
            const noise = randnLikeSample([b, h, w, c], opts.generator);
            return this.scheduler.addNoise(init, noise, Array(b).fill(timesteps[0]));
          });
        } finally {
          init.dispose();
        }
      } catch (e) {
        embeds.dispose();
        throw e;
      } finally {
        x.dispose();
      }
      (this.scheduler as { setBeginIndex?: (i: number) => void }).setBeginIndex?.(tStart * this.scheduler.order);
      final = await this.denoise(latents, timesteps, embeds, opts, { guidance, doCfg });
    } catch (e) {
      return this.abandonCall(e);
    }
    return this.finish(final, opts.outputType ?? "png");
  }
}
