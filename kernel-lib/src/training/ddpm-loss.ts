// The DDPM training objective (Ho et al. 2020, eq. 14, "L_simple"), as diffusers' train_unconditional.py
// computes it: draw eps ~ N(0, I) and t ~ U{0, ..., T-1} per picture, noise the clean picture in closed form
// (scheduler.addNoise: x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps) and regress the UNet's output on eps:
//   L = mean || eps - eps_theta(x_t, t) ||^2
// prediction_type "v_prediction" regresses on v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0, "sample" on x_0.
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import type { UNet2DModel } from "../models/unet-2d.js";
import type { DDPMScheduler } from "../schedulers/scheduling-ddpm.js";

export interface DiffusionNoise {
  /** eps, NHWC like the pictures */
  noise: tf.Tensor4D;
  /** one integer timestep per picture in [0, num_train_timesteps) */
  timesteps: number[];
}

/**
 * Draws the noise and the timesteps of one training batch from `generator`, in diffusers' order: the noise
 * first (the NCHW shape torch draws, moved channels-last), then, with `noiseOffset` > 0, one more normal per
 * picture and channel scaled by it and added over the whole picture (train_text_to_image.py's --noise_offset,
 * "offset noise": Guttenberg 2023), then one uniform integer timestep per picture.
 * Why an offset: with SD's schedule x_T still carries the picture's mean colour (sqrt(abar_T) = 0.068, and a mean
 * over h*w positions averages the noise down by sqrt(h*w)), so a model trained on plain noise copies the mean of
 * its starting noise instead of choosing it (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps
 * Are Flawed"): washed-out colours, backgrounds that ignore the prompt. The offset hides that mean.
 */
export function sampleNoiseAndTimesteps(generator: Generator, shape: [number, number, number, number], numTrainTimesteps: number, noiseOffset = 0): DiffusionNoise {
  const [b, h, w, c] = shape;
  if (!(noiseOffset >= 0 && Number.isFinite(noiseOffset))) throw new Error(`sampleNoiseAndTimesteps: noiseOffset must be a number >= 0 (diffusers' --noise_offset, e.g. 0.1), got ${noiseOffset}`);
  let noise = tf.tidy(() => tf.transpose(generator.randn([b, c, h, w]), [0, 2, 3, 1])) as tf.Tensor4D;
  if (noiseOffset > 0) {
    const offset = generator.randn([b, c]); // torch.randn((B, C, 1, 1))
    const shifted = tf.tidy(() => tf.add(noise, tf.mul(tf.reshape(offset, [b, 1, 1, c]), noiseOffset))) as tf.Tensor4D;
    tf.dispose([noise, offset]);
    noise = shifted;
  }
  const u = generator.randArray([b]);
  const timesteps = Array.from(u, (v) => Math.min(numTrainTimesteps - 1, Math.floor(v * numTrainTimesteps)));
  return { noise, timesteps };
}

/**
 * The mean squared error between the UNet's output on x_t and its target (eq. 14). `cleanImages` are NHWC in
 * [-1, 1]. Returns a scalar; differentiable with respect to the UNet's parameters (tf.variableGrads).
 */
export function ddpmLoss(unet: UNet2DModel, scheduler: DDPMScheduler, cleanImages: tf.Tensor4D, { noise, timesteps }: DiffusionNoise): tf.Scalar {
  if (noise.shape.join() !== cleanImages.shape.join()) {
    throw new Error(`ddpmLoss: noise has shape [${noise.shape}] but the clean images have shape [${cleanImages.shape}]; draw one eps per pixel`);
  }
  if (timesteps.length !== cleanImages.shape[0]) {
    throw new Error(`ddpmLoss: ${timesteps.length} timesteps for a batch of ${cleanImages.shape[0]}; draw one per picture`);
  }
  const prediction = scheduler.config.prediction_type;
  return tf.tidy(() => {
    const noisy = scheduler.addNoise(cleanImages, noise, timesteps) as tf.Tensor4D;
    const output = unet.forward(noisy, timesteps).sample;
    let target: tf.Tensor;
    if (prediction === "epsilon") target = noise;
    else if (prediction === "v_prediction") target = scheduler.getVelocity(cleanImages, noise, timesteps);
    else if (prediction === "sample") target = cleanImages;
    else throw new Error(`ddpmLoss: unknown prediction_type "${prediction}" in the scheduler config; use epsilon, v_prediction or sample`);
    return tf.mean(tf.square(tf.sub(output, target))) as tf.Scalar;
  });
}
