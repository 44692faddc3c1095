// Training noise schedules (diffusers' beta_schedule / trained_betas / rescale_betas_zero_snr), float32 as
// torch: linear (DDPM), scaled_linear (latent diffusion), squaredcos_cap_v2 (betas_for_alpha_bar), sigmoid.
import { type Config, ConfigError } from "../io/config.js";
import { cumprodF32, linspaceF32 } from "./float32.js";

const f32 = Math.fround;

/** alphas = 1 - betas (float32). */
export function alphasFromBetas(betas: ArrayLike<number>): Float32Array {
  const out = new Float32Array(betas.length);
  for (let i = 0; i < betas.length; i++) out[i] = 1 - betas[i];
  return out;
}

export type AlphaTransformType = "cosine" | "exp";

/**
 * `betas_for_alpha_bar`: beta_i = min(1 - abar((i+1)/T) / abar(i/T), max_beta) in float64, stored as float32.
 * cosine ("squaredcos_cap_v2", Nichol & Dhariwal 2021 eq. 17): abar(t) = cos((t + 0.008)/1.008 * pi/2)^2;
 * exp: abar(t) = exp(-12 t).
 */
export function betasForAlphaBar(
  numDiffusionTimesteps: number,
  maxBeta = 0.999,
  alphaTransformType: AlphaTransformType = "cosine",
): Float32Array {
  let abar: (t: number) => number;
  if (alphaTransformType === "cosine") {
    abar = (t) => {
      const c = Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2));
      return c * c;
    };
  } else if (alphaTransformType === "exp") {
    abar = (t) => Math.exp(t * -12.0);
  } else {
    throw new ConfigError(`betasForAlphaBar: alpha_transform_type ${JSON.stringify(alphaTransformType)}; supported: "cosine", "exp"`);
  }
  const out = new Float32Array(numDiffusionTimesteps);
  for (let i = 0; i < numDiffusionTimesteps; i++) {
    const t1 = i / numDiffusionTimesteps;
    const t2 = (i + 1) / numDiffusionTimesteps;
    out[i] = Math.min(1 - abar(t2) / abar(t1), maxBeta);
  }
  return out;
}

/** "linear": torch.linspace(beta_start, beta_end, T) in float32 (DDPM, Ho et al. 2020 sec. 4). */
export function linearBetas(betaStart: number, betaEnd: number, n: number): Float32Array {
  return linspaceF32(betaStart, betaEnd, n);
}

/** "scaled_linear" (latent diffusion): torch.linspace(sqrt(beta_start), sqrt(beta_end), T) ** 2 in float32. */
export function scaledLinearBetas(betaStart: number, betaEnd: number, n: number): Float32Array {
  const s = linspaceF32(Math.sqrt(betaStart), Math.sqrt(betaEnd), n);
  for (let i = 0; i < n; i++) s[i] = s[i] * s[i];
  return s;
}

/** "sigmoid" (GeoDiff): sigmoid(linspace(-6, 6, T)) * (beta_end - beta_start) + beta_start, float32. */
export function sigmoidBetas(betaStart: number, betaEnd: number, n: number): Float32Array {
  const x = linspaceF32(-6, 6, n);
  const scale = f32(betaEnd - betaStart);
  const start = f32(betaStart);
  for (let i = 0; i < n; i++) {
    const sig = f32(1 / f32(1 + f32(Math.exp(-x[i]))));
    x[i] = f32(sig * scale) + start;
  }
  return x;
}

/**
 * Zero terminal SNR (Lin et al. 2023, "Common Diffusion Noise Schedules and Sample Steps are
 * Flawed", Algorithm 1), in float32: shift sqrt(alphas_cumprod) so the last is 0, rescale so the
 * first is unchanged, then undo the cumprod.
 */
export function rescaleZeroTerminalSnr(betas: ArrayLike<number>): Float32Array {
  const n = betas.length;
  const sqrtAbar = cumprodF32(alphasFromBetas(betas));
  for (let i = 0; i < n; i++) sqrtAbar[i] = Math.sqrt(sqrtAbar[i]);
  const first = sqrtAbar[0];
  const last = sqrtAbar[n - 1];
  const scale = f32(first / f32(first - last));
  const abar = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const v = f32(f32(sqrtAbar[i] - last) * scale);
    abar[i] = v * v;
  }
  const out = new Float32Array(n);
  out[0] = 1 - abar[0];
  for (let i = 1; i < n; i++) out[i] = 1 - f32(abar[i] / abar[i - 1]);
  return out;
}

/** Every beta_schedule a diffusers scheduler may accept (each class lists its own subset). */
export const BETA_SCHEDULES = ["linear", "scaled_linear", "squaredcos_cap_v2", "sigmoid"] as const;
export type BetaSchedule = (typeof BETA_SCHEDULES)[number];

/**
 * The training betas of a config: `trained_betas` when given, else `beta_schedule` (which must be
 * in `allowed`), then `rescale_betas_zero_snr` when set. Float32, as torch.
 */
export function betasFromConfig(className: string, config: Readonly<Config>, allowed: readonly BetaSchedule[]): Float32Array {
  const n = config.num_train_timesteps as number;
  if (!Number.isInteger(n) || n < 1) {
    throw new ConfigError(`${className}: config "num_train_timesteps" is ${JSON.stringify(n)}; it must be an integer >= 1`);
  }
  let betas: Float32Array;
  const trained = config.trained_betas;
  if (trained !== null && trained !== undefined) {
    if (!Array.isArray(trained) || trained.length === 0 || !trained.every((b) => typeof b === "number" && Number.isFinite(b))) {
      throw new ConfigError(`${className}: config "trained_betas" must be null or a non-empty array of numbers`);
    }
    betas = Float32Array.from(trained as number[]);
  } else {
    const schedule = config.beta_schedule as BetaSchedule;
    if (!allowed.includes(schedule)) {
      throw new ConfigError(
        `${className}: config "beta_schedule" is ${JSON.stringify(schedule)}; supported: ${allowed.map((a) => JSON.stringify(a)).join(", ")} (or set "trained_betas")`,
      );
    }
    const b0 = config.beta_start as number;
    const b1 = config.beta_end as number;
    if (schedule === "linear") betas = linearBetas(b0, b1, n);
    else if (schedule === "scaled_linear") betas = scaledLinearBetas(b0, b1, n);
    else if (schedule === "squaredcos_cap_v2") betas = betasForAlphaBar(n);
    else betas = sigmoidBetas(b0, b1, n);
  }
  if (config.rescale_betas_zero_snr) betas = rescaleZeroTerminalSnr(betas);
  return betas;
}

/** Beta schedules of the multistep solvers (no "sigmoid"). */
export const MULTISTEP_BETA_SCHEDULES: readonly BetaSchedule[] = ["linear", "scaled_linear", "squaredcos_cap_v2"];
