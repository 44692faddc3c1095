// Shared test helpers: where the diffusers fixtures live, how to read them, how to compare.
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { loadSafetensors, readSafetensorsArrays } from "../src/io/safetensors.js";

/** ../shared/fixtures beside the checkout (CI has it there too); KIT_FIXTURES overrides. */
export const FIXTURES = process.env.KIT_FIXTURES ?? path.resolve(__dirname, "../../../shared/fixtures");

export function fixture(...parts: string[]): string {
  return path.join(FIXTURES, ...parts);
}

/** All tensors of a fixture safetensors file (floats as float32, ints as int32). */
export function loadFixture(...parts: string[]): Record<string, tf.Tensor> {
  return loadSafetensors(fixture(...parts));
}

/** Plain arrays of a fixture file, without tfjs. */
export function fixtureArrays(...parts: string[]) {
  return readSafetensorsArrays(fixture(...parts)).tensors;
}

/** NCHW (diffusers) -> NHWC (ours). */
export function nchwToNhwc(t: tf.Tensor): tf.Tensor4D {
  return tf.transpose(t as tf.Tensor4D, [0, 2, 3, 1]);
}

export function nhwcToNchw(t: tf.Tensor): tf.Tensor4D {
  return tf.transpose(t as tf.Tensor4D, [0, 3, 1, 2]);
}

export interface CloseReport { maxAbs: number; where: number[]; actual: number; expected: number; ok: boolean }

/** Element-wise |a - e| <= atol + rtol * |e|, reporting the worst element and its index. */
export function compare(actual: tf.Tensor | ArrayLike<number>, expected: tf.Tensor | ArrayLike<number>, atol: number, rtol = 0): CloseReport {
  const shape = expected instanceof tf.Tensor ? expected.shape : [expected.length];
  const a = actual instanceof tf.Tensor ? actual.dataSync() : actual;
  const e = expected instanceof tf.Tensor ? expected.dataSync() : expected;
  if (actual instanceof tf.Tensor && expected instanceof tf.Tensor && actual.shape.join() !== expected.shape.join()) {
    throw new Error(`shape mismatch: actual [${actual.shape}] vs expected [${expected.shape}]`);
  }
  if (a.length !== e.length) throw new Error(`length mismatch: actual ${a.length} vs expected ${e.length}`);
  let worst = -1, maxAbs = 0, ok = true;
  for (let i = 0; i < e.length; i++) {
    const d = Math.abs(a[i] - e[i]);
    if (!(d <= atol + rtol * Math.abs(e[i]))) ok = false;
    if (d > maxAbs || Number.isNaN(d)) { maxAbs = Number.isNaN(d) ? Infinity : d; worst = i; }
  }
  const where: number[] = [];
  let rem = Math.max(worst, 0);
  for (let k = shape.length - 1; k >= 0; k--) { where.unshift(rem % shape[k]); rem = Math.floor(rem / shape[k]); }
  return { maxAbs, where, actual: a[Math.max(worst, 0)], expected: e[Math.max(worst, 0)], ok };
}

/** Throws with the worst element when actual and expected differ beyond tolerance. */
export function expectClose(actual: tf.Tensor | ArrayLike<number>, expected: tf.Tensor | ArrayLike<number>, atol: number, rtol = 0, label = ""): void {
  const r = compare(actual, expected, atol, rtol);
  if (!r.ok) {
    throw new Error(`${label ? label + ": " : ""}max |actual - expected| = ${r.maxAbs.toExponential(3)} at [${r.where}] (actual ${r.actual}, expected ${r.expected}); atol ${atol}, rtol ${rtol}`);
  }
}

/** Tolerances from ../shared/fixtures/README.md ("Tolerances"). */
export const TOL = {
  scheduler: { atol: 1e-5, rtol: 1e-5 },
  model: { atol: 1e-4 },
  pipeline: { atol: 1e-3 },
  randn: { atol: 4e-6 },
} as const;

/** fn's result on tfjs' cpu backend (plain JavaScript kernels), then back to wasm. */
export async function onCpu<T>(fn: () => T): Promise<T> {
  await tf.setBackend("cpu");
  try {
    return fn();
  } finally {
    await tf.setBackend("wasm");
  }
}
