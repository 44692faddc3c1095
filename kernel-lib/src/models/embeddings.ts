// Timestep embeddings (diffusers models/embeddings.py): the sinusoidal features of the DDPM paper
// (Ho et al. 2020, from the Transformer's positional encoding) and the MLP that lifts them to the
// width the ResNet blocks consume.
import * as tf from "@tensorflow/tfjs";
import { Module } from "../nn/module.js";
import { Linear } from "../nn/linear.js";
import { getActivation, type Activation } from "../nn/activations.js";

export interface TimestepEmbeddingOptions {
  /** Put cos first: [cos, sin] instead of [sin, cos]. */
  flipSinToCos?: boolean;
  /** freq_k = exp(-ln(max_period) * k / (half - downscaleFreqShift)). */
  downscaleFreqShift?: number;
  scale?: number;
  maxPeriod?: number;
}

const f32 = Math.fround;

/**
 * get_timestep_embedding: for each timestep t and k < half = dim/2,
 *   freq_k = exp(-ln(max_period) * k / (half - shift)),  emb = [sin(scale * t * freq), cos(scale * t * freq)]
 * ([cos, sin] when flipSinToCos; a zero column is appended when dim is odd).
 * Computed on the CPU rounding every step to float32 as torch does: the arguments reach ~1000 rad, where one
 * float32 ulp moves sin by 6e-5, so the rounding order matters for parity. Returns [N, dim] float32.
 */
export function getTimestepEmbedding(timesteps: ArrayLike<number>, embeddingDim: number, opts: TimestepEmbeddingOptions = {}): tf.Tensor2D {
  const { flipSinToCos = false, downscaleFreqShift = 1, scale = 1, maxPeriod = 10000 } = opts;
  const half = Math.floor(embeddingDim / 2);
  const freqs = new Float32Array(half);
  const c = f32(-Math.log(maxPeriod));
  const denom = f32(half - downscaleFreqShift);
  for (let k = 0; k < half; k++) freqs[k] = f32(Math.exp(f32(f32(c * k) / denom)));
  const n = timesteps.length;
  const out = new Float32Array(n * embeddingDim);
  for (let i = 0; i < n; i++) {
    const t = f32(timesteps[i]);
    const row = i * embeddingDim;
    for (let k = 0; k < half; k++) {
      const arg = scale === 1 ? f32(t * freqs[k]) : f32(scale * f32(t * freqs[k]));
      const sin = f32(Math.sin(arg));
      const cos = f32(Math.cos(arg));
      out[row + k] = flipSinToCos ? cos : sin;
      out[row + half + k] = flipSinToCos ? sin : cos;
    }
  }
  return tf.tensor2d(out, [n, embeddingDim]);
}

/** diffusers' Timesteps module: no weights, get_timestep_embedding with fixed settings. */
export class Timesteps {
  constructor(readonly numChannels: number, readonly flipSinToCos: boolean, readonly downscaleFreqShift: number) {}

  forward(timesteps: ArrayLike<number>): tf.Tensor2D {
    return getTimestepEmbedding(timesteps, this.numChannels, {
      flipSinToCos: this.flipSinToCos,
      downscaleFreqShift: this.downscaleFreqShift,
    });
  }
}

/** TimestepEmbedding: linear_1 -> act -> linear_2 (-> post_act), from in_channels to time_embed_dim. */
export class TimestepEmbedding extends Module {
  readonly linear_1: Linear;
  readonly linear_2: Linear;
  private readonly act: Activation;
  private readonly postAct: Activation | null;

  constructor(
    inChannels: number,
    timeEmbedDim: number,
    opts: { actFn?: string; outDim?: number; postActFn?: string | null; sampleProjBias?: boolean } = {},
  ) {
    super();
    const bias = opts.sampleProjBias ?? true;
    this.linear_1 = this.addModule("linear_1", new Linear(inChannels, timeEmbedDim, bias));
    this.act = getActivation(opts.actFn ?? "silu");
    this.linear_2 = this.addModule("linear_2", new Linear(timeEmbedDim, opts.outDim ?? timeEmbedDim, bias));
    this.postAct = opts.postActFn ? getActivation(opts.postActFn) : null;
  }

  forward(sample: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      let h = this.linear_2.forward(this.act(this.linear_1.forward(sample)) as tf.Tensor2D);
      if (this.postAct) h = this.postAct(h) as tf.Tensor2D;
      return h;
    });
  }
}
