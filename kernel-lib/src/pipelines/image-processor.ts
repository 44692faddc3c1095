// diffusers' VaeImageProcessor, the parts pipelines need: pictures in [0,1] <-> the VAE's [-1,1],
// masks binarised at 0.5, sizes checked against the VAE's downsampling (never silently resized).
import * as tf from "@tensorflow/tfjs";
import { loadImage } from "../display/image.js";
import { ArgumentError } from "../utils/check-argument.js";
import { checkFiniteTensor } from "../utils/check-finite.js";

/** PNG/JPEG bytes, a file path, or a float [1,H,W,C] / [H,W,C] tensor in [0,1] -> float [1,H,W,C] in [0,1] (a new tensor). */
export async function toPictureTensor(image: tf.Tensor | Uint8Array | string, what = "image"): Promise<tf.Tensor4D> {
  if (typeof image === "string" || image instanceof Uint8Array) return loadImage(image);
  if (image.rank !== 3 && image.rank !== 4) throw new Error(`${what} must be [H, W, C] or [B, H, W, C] (NHWC, values in [0, 1]); got shape [${image.shape}]`);
  return tf.tidy(() => (image.rank === 3 ? tf.expandDims(image, 0) : tf.clone(image)).toFloat() as tf.Tensor4D);
}

/** Checks that H and W divide by the VAE factor; names the argument and suggests a size. */
export function checkPictureSize(x: tf.Tensor4D, factor: number, what = "image"): void {
  const [, h, w] = x.shape;
  if (h % factor !== 0 || w % factor !== 0) {
    throw new Error(`${what} is ${w}x${h}; its width and height must be multiples of ${factor} for the VAE. Resize or crop it (e.g. to ${w - (w % factor)}x${h - (h % factor)}) first.`);
  }
}

/**
 * A picture tensor's values must lie in [0, 1], as pictures loaded from PNG do (diffusers' VaeImageProcessor
 * expects that of tensors and warns for [-1, 1]; 0..255 values would be read as a white-out). One read of min and max.
 */
export function checkPictureRange(x: tf.Tensor4D, where: string, what = "image"): void {
  checkFiniteTensor(where, what, x);
  const range = tf.tidy(() => tf.stack([tf.min(x), tf.max(x)]));
  const [lo, hi] = range.dataSync();
  range.dispose();
  const slack = 1e-3; // float rounding of a [0, 1] picture
  if (lo >= -slack && hi <= 1 + slack) return;
  const hint = hi > 2 ? "They look like 0..255 pixel values: divide the tensor by 255"
    : lo < 0 && lo >= -1 - slack ? "They look like the VAE's [-1, 1] range: pass tf.div(tf.add(x, 1), 2)" : "Rescale the tensor to [0, 1]";
  throw new ArgumentError(`${where}: ${what} values must be in [0, 1] (a float NHWC picture, as loaded from PNG); got values in [${lo}, ${hi}]. ${hint}`);
}

/** [0,1] -> [-1,1] (VaeImageProcessor.normalize). */
export function normalize(x: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => tf.sub(tf.mul(x, 2), 1) as tf.Tensor4D);
}

/** A mask [1,H,W,1] of 0/1: grayscale, then >= 0.5 -> 1 (white = repaint), as the inpaint mask processor. */
export function binarizeMask(mask: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const gray = mask.shape[3] === 1 ? mask : tf.mean(mask, 3, true);
    return tf.cast(tf.greaterEqual(gray, 0.5), "float32") as tf.Tensor4D;
  });
}
