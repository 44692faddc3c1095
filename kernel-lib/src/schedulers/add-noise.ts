// add_noise and get_velocity: q(x_t | x_0) in closed form, x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
// (DDPM eq. 4) for the alpha-based schedulers, alpha_t x_0 + sigma_t eps for the multistep solvers.
import * as tf from "@tensorflow/tfjs";
import { checkShape } from "./sample-layout.js";
import { sigmaToAlphaSigmaT } from "./sigmas.js";
import { multistepIndexForTimestep, timestepList } from "./timesteps.js";

const f32 = Math.fround;

/** Per-batch-item scalars as a [k, 1, ..., 1] tensor broadcasting against a tensor of `rank`. */
function perItem(className: string, values: number[], shape: number[]): tf.Tensor {
  if (values.length !== 1 && values.length !== shape[0]) {
    throw new RangeError(`${className}: ${values.length} timesteps for a batch of ${shape[0]}; pass one per batch item (or one for all)`);
  }
  return tf.tensor(values, [values.length, ...shape.slice(1).map(() => 1)], "float32");
}

/** sqrt(abar_t) and sqrt(1 - abar_t) (float32 scalars, as torch) per batch item, shaped to broadcast against `shape`. */
function alphaScales(className: string, method: string, alphasCumprod: Float32Array, timesteps: number | number[] | tf.Tensor, shape: number[]): [tf.Tensor, tf.Tensor] {
  const ts = timestepList(`${className}.${method}`, timesteps, alphasCumprod.length);
  const sa = ts.map((t) => f32(Math.sqrt(alphasCumprod[t])));
  const s1 = ts.map((t) => f32(Math.sqrt(1 - alphasCumprod[t])));
  return [perItem(className, sa, shape), perItem(className, s1, shape)];
}

/**
 * `add_noise` of alpha-based schedulers (DDPM eq. 4 / closed form of q(x_t | x_0)):
 * x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, one t per batch item. Returns a new tensor.
 */
export function addNoiseWithAlphas<T extends tf.Tensor>(
  className: string,
  alphasCumprod: Float32Array,
  originalSamples: T,
  noise: tf.Tensor,
  timesteps: number | number[] | tf.Tensor,
): T {
  return tf.tidy(() => {
    const [sa, s1] = alphaScales(className, "addNoise", alphasCumprod, timesteps, originalSamples.shape);
    return tf.add<T>(tf.mul(sa, originalSamples), tf.mul(s1, noise)); // the samples' shape (per-item scalars broadcast)
  });
}

/** `get_velocity` (Salimans & Ho 2022, v-parameterisation): v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0. */
export function velocityWithAlphas<T extends tf.Tensor>(
  className: string,
  alphasCumprod: Float32Array,
  sample: T,
  noise: tf.Tensor,
  timesteps: number | number[] | tf.Tensor,
): T {
  return tf.tidy(() => {
    const [sa, s1] = alphaScales(className, "getVelocity", alphasCumprod, timesteps, sample.shape);
    return tf.sub<T>(tf.mul(sa, noise), tf.mul(s1, sample));
  });
}

/** Per-batch-item noising with sigmas (the multistep schedulers' add_noise): alpha_t x_0 + sigma_t eps. */
export function multistepAddNoise<T extends tf.Tensor>(
  className: string,
  sched: { timesteps: number[]; sigmas: Float32Array; beginIndex: number | null; stepIndex: number | null; numTrain: number },
  originalSamples: T,
  noise: tf.Tensor,
  timesteps: number | number[] | tf.Tensor,
): T {
  // within the training range (or up to a steps_offset past it), as step() checks
  const ts = timestepList(`${className}.addNoise`, timesteps, Math.max(sched.numTrain, (sched.timesteps[0] ?? 0) + 1));
  let idx: number[];
  if (sched.beginIndex === null) idx = ts.map((t) => multistepIndexForTimestep(sched.timesteps, t));
  else if (sched.stepIndex !== null) idx = ts.map(() => sched.stepIndex as number);
  else idx = ts.map(() => sched.beginIndex as number);
  const shape = originalSamples.shape;
  if (idx.length !== 1 && idx.length !== shape[0]) {
    throw new RangeError(`${className}.addNoise: ${idx.length} timesteps for a batch of ${shape[0]}; pass one per batch item (or one for all)`);
  }
  checkShape(`${className}.addNoise: noise`, noise, shape);
  const as = idx.map((i) => sigmaToAlphaSigmaT(sched.sigmas[i]));
  const bshape = [idx.length, ...shape.slice(1).map(() => 1)];
  return tf.tidy(() =>
    tf.add<T>(
      tf.mul(tf.tensor(as.map((p) => p[0]), bshape, "float32"), originalSamples),
      tf.mul(tf.tensor(as.map((p) => p[1]), bshape, "float32"), noise),
    ),
  );
}
