// NaN / Infinity caught where it appears: a tensor argument, a denoising step (naming the step, the
// timestep and the component that produced it) or the VAE's output, instead of a silent black picture.
// Cost: one reduction (isFinite + all) and one scalar read per check; nothing is kept.
import * as tf from "@tensorflow/tfjs";
import { ArgumentError } from "./check-argument.js";

/** A tensor a model or scheduler produced holds NaN or Infinity. */
export class NonFiniteError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "NonFiniteError";
  }
}

/** True when every element of `x` is finite (one reduction, one scalar read; no tensor left behind). */
export function allFinite(x: tf.Tensor): boolean {
  const flag = tf.tidy(() => tf.all(tf.isFinite(x)));
  const ok = flag.dataSync()[0] === 1;
  flag.dispose();
  return ok;
}

/** Throws an ArgumentError naming a tensor argument that holds NaN or Infinity. */
export function checkFiniteTensor(where: string, name: string, x: tf.Tensor): void {
  if (!allFinite(x)) throw new ArgumentError(`${where}: ${name} must hold only finite numbers; got NaN or Infinity in a tensor of shape [${x.shape}]`);
}

/** Where a denoising loop stands, for the message of checkDenoiseStep. */
export interface DenoiseStep {
  /** e.g. "StableDiffusionPipeline.generate" */
  where: string;
  /** 0-based step index and the number of steps */
  index: number;
  total: number;
  timestep: number;
  /** the scheduler's class name */
  scheduler: string;
  /** what the model output is, e.g. "the unet's noise prediction after classifier-free guidance (guidanceScale 7.5)" */
  modelOutputIs: string;
}

/**
 * After a scheduler step: throws a NonFiniteError when the new sample holds NaN or Infinity, blaming the
 * unet when its output already did (checked only then), else the scheduler.
 */
export function checkDenoiseStep(step: DenoiseStep, modelOutput: tf.Tensor, sample: tf.Tensor): void {
  if (allFinite(sample)) return;
  const at = `${step.where}: step ${step.index + 1} of ${step.total} (timestep ${step.timestep})`;
  if (!allFinite(modelOutput)) {
    throw new NonFiniteError(
      `${at}: the unet's output holds NaN or Infinity (${step.modelOutputIs}); the picture would be black. ` +
        `Check the numbers given to the call (guidance scale, LoRA scale, latents) and the weights loaded`,
    );
  }
  throw new NonFiniteError(
    `${at}: the scheduler ${step.scheduler} turned a finite unet output into NaN or Infinity; the picture would be black. ` +
      `Try fewer steps or another scheduler`,
  );
}

/** Throws a NonFiniteError when the VAE decoded NaN or Infinity. */
export function checkDecoded(where: string, pictures: tf.Tensor): void {
  if (!allFinite(pictures)) {
    throw new NonFiniteError(`${where}: the vae decoded NaN or Infinity from finite latents; the picture would be black. Check the VAE's weights and scaling_factor`);
  }
}
