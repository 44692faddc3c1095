// Training an AutoencoderKL to reconstruct, as the latent-diffusion paper's first stage (Rombach et al. 2022,
// sec. 3 and appendix G; CompVis' LPIPSWithDiscriminator without its perceptual and GAN terms):
//   z = mu + sigma * eps  (the reparameterised posterior sample, DiagonalGaussianDistribution.sample)
//   L = mean |x - D(z)|  +  kl_weight * KL(q(z|x) || N(0, I)) / (pixels per batch)
// with kl_weight 1e-6 as Stable Diffusion's VAE: a tiny pull towards N(0, I) that keeps the latent space smooth
// without blurring reconstructions. The latents' scale is then set by `latentScalingFactor` (1 / std, sec. 4.3.2).
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import type { AutoencoderKL } from "../models/autoencoder-kl.js";
import { Trainer, type PreparedStep, type TrainerOptions } from "./trainer.js";
import { batchTensor, type BatchSource } from "./ddpm-trainer.js";

export interface AutoencoderKLTrainerOptions extends TrainerOptions {
  data: BatchSource;
  batchSize: number;
  /** weight of the KL term (default 1e-6, as SD's first stage) */
  klWeight?: number;
}

/** The reconstruction loss of one batch (NHWC in [-1, 1]); draws the posterior's eps from `generator`. */
export function autoencoderKLLoss(vae: AutoencoderKL, x: tf.Tensor4D, generator: Generator, klWeight = 1e-6): tf.Scalar {
  return tf.tidy(() => {
    const posterior = vae.encode(x).latentDist;
    const rec = vae.decode(posterior.sample(generator)).sample;
    const l1 = tf.mean(tf.abs(tf.sub(rec, x)));
    const kl = tf.div(tf.sum(posterior.kl()), x.size);
    return tf.add(l1, tf.mul(kl, klWeight)) as tf.Scalar;
  });
}

export class AutoencoderKLTrainer extends Trainer {
  readonly opts: AutoencoderKLTrainerOptions;

  constructor(readonly vae: AutoencoderKL, opts: AutoencoderKLTrainerOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`AutoencoderKLTrainer: batchSize must be a positive integer, got ${opts.batchSize}`);
    super({ vae }, vae.namedParameters(), opts);
    this.opts = opts;
  }

  protected prepareStep(step: number, generator: Generator): PreparedStep {
    const c = this.vae.config as { in_channels: number; sample_size: number };
    const x = batchTensor("AutoencoderKLTrainer", this.opts.data(step, this.opts.batchSize), [this.opts.batchSize, c.sample_size, c.sample_size, c.in_channels], step);
    return { loss: () => autoencoderKLLoss(this.vae, x, generator, this.opts.klWeight ?? 1e-6), dispose: () => x.dispose() };
  }
}

/**
 * 1 / std of the latents of `images` (posterior means, NHWC in [-1, 1]): the `scaling_factor` that gives the
 * diffusion model unit-variance latents (SD 1.x's 0.18215 was found the same way, LDM sec. 4.3.2).
 */
export function latentScalingFactor(vae: AutoencoderKL, images: tf.Tensor4D): number {
  return tf.tidy(() => {
    const dist = vae.encode(images).latentDist;
    const std = tf.moments(dist.mean).variance.sqrt().dataSync()[0];
    dist.dispose();
    return 1 / std;
  });
}
