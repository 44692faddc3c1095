// Noise levels: a VP model seen as x = x_0 + sigma eps (Karras et al. 2022), sigma_t = sqrt((1 - abar_t) / abar_t);
// Karras et al. 2022 sigmas (eq. 5) and diffusers' _sigma_to_t, written once for the Euler family and the
// multistep solvers; and the VP parameterisation alpha_t, sigma_t, lambda_t = log(alpha_t / sigma_t) of
// DPM-Solver and UniPC.
import type { Config } from "../io/config.js";
import { logF32 } from "./float32.js";
import { npLinspace, roundHalfEven } from "./numpy.js";

const f32 = Math.fround;

/** sigma_t = sqrt((1 - abar_t) / abar_t) per training step (ascending in t), float32 as torch. */
export function sigmasFromAlphasCumprod(alphasCumprod: ArrayLike<number>): Float32Array {
  const out = new Float32Array(alphasCumprod.length);
  for (let i = 0; i < out.length; i++) {
    const a = alphasCumprod[i];
    out[i] = Math.sqrt(f32(f32(1 - a) / a));
  }
  return out;
}

/**
 * Karras et al. 2022 eq. 5: sigma_i = (sigma_max^(1/rho) + i/(n-1) (sigma_min^(1/rho) -
 * sigma_max^(1/rho)))^rho, rho = 7, in float64 as numpy.
 */
export function karrasSigmas(sigmaMin: number, sigmaMax: number, n: number, rho = 7.0): Float64Array {
  const ramp = npLinspace(0, 1, n);
  const minInv = sigmaMin ** (1 / rho);
  const maxInv = sigmaMax ** (1 / rho);
  return Float64Array.from(ramp, (r) => (maxInv + r * (minInv - maxInv)) ** rho);
}

/**
 * `_sigma_to_t`: the fractional training timestep of `sigma`, interpolating log sigma between
 * the two neighbouring training sigmas. Mixed float32 / float64 as numpy 1.24 computes it
 * (float32 log sigmas; the float64 log of sigma meets them as a float32 scalar).
 */
export function sigmaToT(sigma: number, logSigmas: Float32Array): number {
  const n = logSigmas.length;
  const ls = f32(Math.log(Math.max(sigma, 1e-10)));
  // argmax of cumsum(dists >= 0): the last index with log_sigmas[i] <= log sigma (0 if none)
  let count = 0;
  let best = 0;
  let low = 0;
  for (let i = 0; i < n; i++) {
    if (ls >= logSigmas[i]) count++;
    if (count > best) {
      best = count;
      low = i;
    }
  }
  low = Math.min(low, n - 2);
  const lo = logSigmas[low];
  const hi = logSigmas[low + 1];
  let w = f32(f32(lo - ls) / f32(lo - hi));
  w = Math.min(Math.max(w, 0), 1);
  return f32(1 - w) * low + w * (low + 1);
}

/**
 * Karras et al. 2022 sigmas (eq. 5, rho 7) between the config's `sigma_min` / `sigma_max` when it has
 * such keys (an EDM config, say) or the training sigmas' ends, and the integer timesteps they fall on.
 */
export function multistepKarrasSchedule(config: Readonly<Config>, train: Float32Array, n: number): { sigmas: number[]; timesteps: number[] } {
  const logSigmas = logF32(train);
  const lo = typeof config.sigma_min === "number" ? config.sigma_min : train[0];
  const hi = typeof config.sigma_max === "number" ? config.sigma_max : train[train.length - 1];
  const sigmas = Array.from(karrasSigmas(lo, hi, n));
  return { sigmas, timesteps: sigmas.map((s) => roundHalfEven(sigmaToT(s, logSigmas))) };
}

/** VP parameterisation of a sigma: alpha_t = 1 / sqrt(sigma^2 + 1), sigma_t = sigma * alpha_t (float32). */
export function sigmaToAlphaSigmaT(sigma: number): [number, number] {
  const a = f32(1 / f32(Math.sqrt(f32(f32(sigma * sigma) + 1))));
  return [a, f32(sigma * a)];
}

/** Half-log-SNR lambda = log(alpha_t) - log(sigma_t), float32 (+inf at sigma 0). */
export function lambdaOf(alphaT: number, sigmaT: number): number {
  return f32(f32(Math.log(alphaT)) - f32(Math.log(sigmaT)));
}

/** alpha_t, sigma_t and lambda at a sigma of the inference schedule (VP parameterisation, float32). */
export function vpAt(sigma: number): { a: number; s: number; l: number } {
  const [a, s] = sigmaToAlphaSigmaT(sigma);
  return { a, s, l: lambdaOf(a, s) };
}

/** sqrt(abar_t), sqrt(1 - abar_t) and lambda_t per train step (float32), the tables DPM-Solver and UniPC keep. */
export function vpTables(alphasCumprod: Float32Array): { alphaT: Float32Array; sigmaT: Float32Array; lambdaT: Float32Array } {
  const T = alphasCumprod.length;
  const alphaT = new Float32Array(T);
  const sigmaT = new Float32Array(T);
  const lambdaT = new Float32Array(T);
  for (let i = 0; i < T; i++) {
    alphaT[i] = Math.sqrt(alphasCumprod[i]);
    sigmaT[i] = Math.sqrt(f32(1 - alphasCumprod[i]));
    lambdaT[i] = lambdaOf(alphaT[i], sigmaT[i]);
  }
  return { alphaT, sigmaT, lambdaT };
}
