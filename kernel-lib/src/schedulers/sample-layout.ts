// Samples are NHWC (channels last). Scheduler math is element-wise; the only layout-dependent parts are drawing
// noise (noise.ts: channels-first as diffusers, then transposed) and learned-variance channel splits.
import * as tf from "@tensorflow/tfjs";

/** The channel axis of our channels-last layout. */
export function channelAxis(t: tf.Tensor): number {
  return t.rank - 1;
}

/** Throws unless `a` has exactly `shape`, naming both. */
export function checkShape(what: string, a: tf.Tensor, shape: number[]): void {
  if (a.shape.join() !== shape.join()) {
    throw new RangeError(`${what}: shape [${a.shape}] does not match the sample's shape [${shape}]`);
  }
}

/**
 * A step's output typed as its sample: step() keeps the sample's shape, so a `tf.Tensor4D` sample gives a
 * `tf.Tensor4D` result that fits `unet.forward` (checked here, so the type cannot claim a rank the tensor lacks).
 */
export function asSample<T extends tf.Tensor>(sample: T, x: tf.Tensor): T {
  checkShape("scheduler step output", x, sample.shape);
  return x as T;
}
