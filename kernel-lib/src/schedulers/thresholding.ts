// Keeping a predicted x_0 in range (DDPM / DDIM step 3-4): clip_sample, or dynamic thresholding
// (Imagen, Saharia et al. 2022, sec. 2.3).
import * as tf from "@tensorflow/tfjs";
import type { Config } from "../io/config.js";

const f32 = Math.fround;

/**
 * Dynamic thresholding (Imagen, Saharia et al. 2022, sec. 2.3) as diffusers `_threshold_sample`:
 * per batch item s = quantile(|x0|, ratio) (torch linear interpolation, float32), clamped to
 * [1, sample_max_value]; x0 = clamp(x0, -s, s) / s. Layout-independent (all elements per item).
 */
export function thresholdSample(sample: tf.Tensor, ratio: number, sampleMaxValue: number): tf.Tensor {
  const batch = sample.shape[0];
  const per = sample.size / batch;
  const data = sample.dataSync();
  const q = f32(ratio);
  const rank = f32(q * f32(per - 1));
  const below = Math.trunc(rank);
  const above = Math.ceil(rank);
  const w = f32(rank - below);
  const s: number[] = [];
  for (let b = 0; b < batch; b++) {
    const row = new Float32Array(per);
    for (let i = 0; i < per; i++) row[i] = Math.abs(data[b * per + i]);
    row.sort();
    const lo = row[below];
    const hi = row[above];
    const diff = f32(hi - lo);
    const v = w < 0.5 ? f32(lo + f32(w * diff)) : f32(hi - f32(diff * f32(1 - w)));
    s.push(Math.min(Math.max(v, 1), f32(sampleMaxValue)));
  }
  return tf.tidy(() => {
    const st = tf.tensor(s, [batch, ...sample.shape.slice(1).map(() => 1)], "float32");
    return tf.div(tf.minimum(tf.maximum(sample, tf.neg(st)), st), st);
  });
}

/** Clip or dynamically threshold a predicted x_0 per the config (DDPM/DDIM step 3/4). Returns a new tensor. */
export function clipOrThreshold(config: Readonly<Config>, x0: tf.Tensor): tf.Tensor {
  if (config.thresholding) {
    return thresholdSample(x0, config.dynamic_thresholding_ratio as number, config.sample_max_value as number);
  }
  if (config.clip_sample) {
    const r = config.clip_sample_range as number;
    return tf.clipByValue(x0, -r, r);
  }
  return x0.clone();
}
