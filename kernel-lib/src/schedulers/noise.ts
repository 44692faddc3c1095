// The noise a stochastic step uses: a generator's draw in diffusers' order (channels-first, then moved to our
// channels-last layout, so one seed gives diffusers' numbers), or noise the caller passes.
import * as tf from "@tensorflow/tfjs";
import { type Generator, randnTensor, type TensorOfShape } from "../random/generator.js";

/** Randomness for stochastic steps: a torch-exact generator (or one per batch item), or the noise itself. */
export interface NoiseOptions {
  /** Draws the step noise (NCHW order, transposed to NHWC for rank-4 samples). */
  generator?: Generator | Generator[];
  /** The step noise itself, in the sample's own layout (takes the place of the random draw). */
  noise?: tf.Tensor;
}

/**
 * Noise of `shape` (our channels-last layout) drawn as diffusers draws it: channels-first
 * ([N, C, ...spatial]) with `randn_tensor(generator)`, then moved to channels-last. For rank < 3
 * the shape is drawn as is.
 */
export function randnLikeSample<S extends number[]>(shape: [...S], generator?: Generator | Generator[]): TensorOfShape<S> {
  if (shape.length < 3) return randnTensor(shape as number[], { generator }) as TensorOfShape<S>;
  const r = shape.length;
  const cf = [shape[0], shape[r - 1], ...shape.slice(1, r - 1)];
  return tf.tidy(() => {
    const x = randnTensor(cf as number[], { generator });
    const perm = [0, ...Array.from({ length: r - 2 }, (_, i) => i + 2), 1];
    return tf.transpose(x, perm) as TensorOfShape<S>;
  });
}

/**
 * The noise a stochastic step uses: `noise` when given (checked against `shape`, cloned so the
 * caller keeps ownership), else a draw from `generator` (or torch's default generator).
 */
export function stepNoise(className: string, shape: number[], opts: NoiseOptions): tf.Tensor {
  if (opts.noise !== undefined) {
    if (opts.generator !== undefined) {
      throw new Error(`${className}.step: pass either generator or noise, not both`);
    }
    if (!(opts.noise instanceof tf.Tensor) || opts.noise.shape.join() !== shape.join()) {
      throw new RangeError(
        `${className}.step: noise must be a tensor of the sample's shape [${shape}], got ${opts.noise instanceof tf.Tensor ? `[${opts.noise.shape}]` : String(opts.noise)}`,
      );
    }
    return opts.noise.clone();
  }
  return randnLikeSample(shape, opts.generator);
}
