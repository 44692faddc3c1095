// Inference timesteps: the spacings of Lin et al. 2023 Table 2 (numpy float64, as diffusers' set_timesteps) for
// the alpha-based, sigma-based and multistep schedulers, and diffusers' index_for_timestep; checks of
// num_inference_steps and of the timesteps that step() and add_noise() are given.
import * as tf from "@tensorflow/tfjs";
import { ConfigError } from "../io/config.js";
import { ArgumentError, argumentError, showValue } from "../utils/check-argument.js";
import { npArange, npLinspace, roundHalfEven } from "./numpy.js";

const f32 = Math.fround;

/** A timestep as pipelines pass it: a number (from `scheduler.timesteps`) or a 0-d / 1-element tensor. */
export type Timestep = number | tf.Tensor;

export const TIMESTEP_SPACINGS = ["linspace", "leading", "trailing"] as const;
export type TimestepSpacing = (typeof TIMESTEP_SPACINGS)[number];

/**
 * Integer inference timesteps, largest first, for the spacings of Lin et al. 2023 Table 2 (as
 * DDPM/DDIM set_timesteps):
 *   linspace: round(linspace(0, T-1, n)) reversed;
 *   leading:  arange(n) * (T // n) reversed, + steps_offset;
 *   trailing: round(arange(T, 0, -T/n)) - 1 (numpy's float arange can give n+1 entries, the last -1:
 *             diffusers 0.27.2 does, and so do we).
 */
export function spacedTimesteps(
  className: string,
  spacing: string,
  numTrainTimesteps: number,
  numInferenceSteps: number,
  stepsOffset: number,
): number[] {
  const T = numTrainTimesteps;
  const n = numInferenceSteps;
  if (spacing === "linspace") return npLinspace(0, T - 1, n).map(roundHalfEven).reverse();
  if (spacing === "leading") {
    const ratio = Math.floor(T / n);
    const out: number[] = [];
    for (let i = n - 1; i >= 0; i--) out.push(i * ratio + stepsOffset);
    return out;
  }
  if (spacing === "trailing") return npArange(T, 0, -(T / n)).map((x) => roundHalfEven(x) - 1);
  throw new ConfigError(
    `${className}: config "timestep_spacing" is ${JSON.stringify(spacing)}; supported: ${TIMESTEP_SPACINGS.map((s) => JSON.stringify(s)).join(", ")}`,
  );
}

/**
 * Inference timesteps (float32 values, largest first) of the sigma schedulers:
 * linspace: np.linspace(0, T-1, n, dtype=float32) reversed (fractional); leading / trailing: the
 * integer spacings of Lin et al. 2023 Table 2 (leading adds steps_offset).
 */
export function sigmaTimesteps(className: string, spacing: string, numTrain: number, n: number, stepsOffset: number): number[] {
  if (spacing === "linspace") return npLinspace(0, numTrain - 1, n).map(f32).reverse();
  return spacedTimesteps(className, spacing, numTrain, n, stepsOffset).map(f32);
}

/**
 * Integer timesteps of the multistep solvers for n steps, largest first (Lin et al. 2023 Table 2):
 *   linspace: round(linspace(0, last-1, n+1)) reversed, minus the final 0;
 *   leading:  arange(n+1) * (last // (n+1)) reversed, minus the final 0, + steps_offset;
 *   trailing: round(arange(start, 0, -T/n)) - 1.
 * A timestep the rounding repeats (500 twice at n = T = 1000, linspace) is kept once: a repeated
 * timestep is a step of length h = 0, and the next multistep update divides by it (diffusers 0.27.2
 * yields NaN there; earlier diffusers dropped repeats with np.unique, as here). Without repeats, as in
 * every schedule diffusers can run, the timesteps are diffusers' own.
 */
export function multistepTimesteps(
  className: string,
  spacing: string,
  lastTimestep: number,
  trailingStart: number,
  numTrainTimesteps: number,
  n: number,
  stepsOffset: number,
): number[] {
  let out: number[];
  if (spacing === "linspace") out = npLinspace(0, lastTimestep - 1, n + 1).map(roundHalfEven).reverse().slice(0, n);
  else if (spacing === "leading") {
    const ratio = Math.floor(lastTimestep / (n + 1));
    if (ratio === 0) {
      throw new ArgumentError(
        `${className}.setTimesteps: num_inference_steps ${n} leaves no room between timesteps with timestep_spacing "leading" ` +
          `(${lastTimestep} usable training timesteps); use at most ${lastTimestep - 1} steps, or timestep_spacing "linspace" / "trailing"`,
      );
    }
    out = [];
    for (let i = n; i >= 1; i--) out.push(i * ratio + stepsOffset);
  } else if (spacing === "trailing") out = npArange(trailingStart, 0, -(numTrainTimesteps / n)).map((x) => roundHalfEven(x) - 1);
  else {
    throw new ConfigError(
      `${className}: config "timestep_spacing" is ${JSON.stringify(spacing)}; supported: ${TIMESTEP_SPACINGS.map((s) => JSON.stringify(s)).join(", ")}`,
    );
  }
  return out.filter((t, i) => i === 0 || t !== out[i - 1]); // descending, so repeats are neighbours
}

/** diffusers `index_for_timestep`: the second match when the timestep repeats, the last index when absent. */
export function multistepIndexForTimestep(timesteps: readonly number[], t: number): number {
  const hits: number[] = [];
  for (let i = 0; i < timesteps.length && hits.length < 2; i++) if (timesteps[i] === t) hits.push(i);
  if (hits.length === 0) return timesteps.length - 1;
  return hits.length > 1 ? hits[1] : hits[0];
}

/**
 * Checks `num_inference_steps`: an integer in [1, num_train_timesteps], with diffusers' message past
 * the top (DDPM, DDIM and LCM raise there; the kit holds every scheduler to it, so a huge count fails
 * here instead of as an out-of-memory abort while the schedule is built).
 */
export function checkNumInferenceSteps(className: string, n: unknown, numTrainTimesteps: number): number {
  if (typeof n !== "number" || !Number.isInteger(n) || n < 1) {
    throw new ArgumentError(
      `${className}.setTimesteps: num_inference_steps must be an integer >= 1 and at most num_train_timesteps: in [1, ${numTrainTimesteps}]; got ${showValue(n)}`,
    );
  }
  if (n > numTrainTimesteps) {
    throw new ArgumentError(
      `${className}.setTimesteps: num_inference_steps ${n} cannot be larger than num_train_timesteps ${numTrainTimesteps} ` +
        `(the model was trained on ${numTrainTimesteps} timesteps); use an integer in [1, ${numTrainTimesteps}]`,
    );
  }
  return n;
}

/**
 * A timestep passed to step(): a finite number within the training range [0, T - 1] (or up to the
 * schedule's first timestep, which a steps_offset may put at T). The multistep solvers look it up
 * once per schedule and take the last index when it is absent, as diffusers; a NaN or out-of-range
 * timestep is a caller's mistake, not a position.
 */
export function checkStepTimestep(className: string, timestep: Timestep, numTrain: number, schedule: readonly number[]): number {
  const v = timestepValue(timestep, `${className}.step`);
  const top = Math.max(numTrain - 1, schedule[0] ?? 0);
  if (!(Number.isFinite(v) && v >= 0 && v <= top)) {
    throw argumentError(`${className}.step`, "timestep", `a finite number in [0, ${top}] (a value of scheduler.timesteps)`, v);
  }
  return v;
}

/** A timestep as a plain number (reads a 0-d or 1-element tensor). */
export function timestepValue(t: Timestep, what = "timestep"): number {
  if (typeof t === "number") return t;
  if (t instanceof tf.Tensor) {
    if (t.size !== 1) throw new RangeError(`${what}: expected a single timestep, got a tensor of shape [${t.shape}]`);
    return t.dataSync()[0];
  }
  throw new TypeError(`${what}: expected a number or a tf.Tensor, got ${String(t)}`);
}

/** An integer timestep in [0, T): the only kind an alphas_cumprod table can be indexed with. */
export function integerTimestep(className: string, t: Timestep, numTrain: number): number {
  const v = timestepValue(t, `${className}.step`);
  if (!Number.isInteger(v) || v < 0 || v >= numTrain) {
    throw new RangeError(`${className}.step: timestep ${v} must be an integer in [0, ${numTrain - 1}]`);
  }
  return v;
}

/** Timesteps for add_noise-style calls as integers (a number, an array or a 0/1-d tensor). */
export function timestepList(className: string, timesteps: number | number[] | tf.Tensor, numTrain: number): number[] {
  let list: number[];
  if (typeof timesteps === "number") list = [timesteps];
  else if (Array.isArray(timesteps)) list = timesteps;
  else if (timesteps instanceof tf.Tensor) list = Array.from(timesteps.dataSync());
  else throw new TypeError(`${className}: timesteps must be a number, an array or a tf.Tensor`);
  for (const t of list) {
    if (!Number.isInteger(t) || t < 0 || t >= numTrain) {
      throw new RangeError(`${className}: timestep ${t} must be an integer in [0, ${numTrain - 1}]`);
    }
  }
  return list;
}
