// The exercises' self-checks (a student's check cells call compareTensors, compareNumbers, compareArrays and
// printCheck; the grader's hidden checks reach the same functions through GradeContext).
// Comparing a student's result with the reference, and saying what is wrong in words a student can act on:
// expected and got at the worst element, the max error and where it is, how many values are off, and the usual
// mistakes recognised (the input returned unchanged, a constant, the sign flipped, off by a factor, another layout).
import * as tf from "@tensorflow/tfjs";

/** What a check returns: passed (full points), or failed with `points` of partial credit (default 0). */
export interface CheckResult {
  passed: boolean;
  feedback: string;
  points?: number;
}

export interface CompareOptions {
  /** |got - expected| <= atol + rtol * |expected| passes. Defaults 1e-5 and 1e-5 (scheduler maths in float32). */
  atol?: number;
  rtol?: number;
  /** The call's inputs by name: a result equal to one of them is reported as "returned unchanged". */
  inputs?: Record<string, tf.Tensor | number[] | number>;
  /** Wrong answers a student may give, by description (e.g. "the base layer without LoRA"): named when matched. */
  lookalikes?: Record<string, tf.Tensor | number[] | number>;
  /** One sentence appended to a failure: what to look at. */
  hint?: string;
}

const fmt = (v: number): string =>
  Number.isNaN(v) ? "NaN" : !Number.isFinite(v) ? (v > 0 ? "Infinity" : "-Infinity") : Math.abs(v) >= 1e-3 && Math.abs(v) < 1e5 ? String(Number(v.toPrecision(6))) : v.toExponential(3);

function describeValue(v: unknown): string {
  if (v === undefined) return "undefined (did the function return its result?)";
  if (v === null) return "null";
  if (v instanceof tf.Tensor) return `a tensor of shape [${v.shape}]`;
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === "object") return `an object with keys {${Object.keys(v as object).slice(0, 6).join(", ")}}`;
  return `${typeof v} ${String(v).slice(0, 60)}`;
}

function indexOf(flat: number, shape: number[]): string {
  if (shape.length === 0) return "[]";
  const idx: number[] = [];
  for (let d = shape.length - 1; d >= 0; d--) {
    idx.unshift(flat % shape[d]);
    flat = Math.floor(flat / shape[d]);
  }
  return `[${idx.join(", ")}]`;
}

function sameMultiset(a: number[], b: number[]): boolean {
  return a.length === b.length && [...a].sort().join() === [...b].sort().join();
}

function withHint(text: string, hint?: string): string {
  return hint ? `${text} Hint: ${hint}` : text;
}

function asData(v: tf.Tensor | number[] | number): { data: ArrayLike<number>; shape: number[] } {
  if (v instanceof tf.Tensor) return { data: v.dataSync(), shape: v.shape };
  if (Array.isArray(v)) return { data: v, shape: [v.length] };
  return { data: [v], shape: [] };
}

function allClose(a: ArrayLike<number>, e: ArrayLike<number>, atol: number, rtol: number, f = 1): boolean {
  if (a.length !== e.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i], y = f * e[i];
    if (!(Math.abs(x - y) <= atol + rtol * Math.abs(y)) && !(x === y)) return false;
  }
  return true;
}

/**
 * Compares values `got` (shape gotShape) with `expected`: the core of compareTensors and compareArrays.
 * `what` names the value in the feedback (e.g. "ddpmStep's x_{t-1}").
 */
export function compareData(what: string, got: ArrayLike<number>, gotShape: number[], expected: ArrayLike<number>,
  shape: number[], opts: CompareOptions = {}): CheckResult {
  const atol = opts.atol ?? 1e-5;
  const rtol = opts.rtol ?? 1e-5;
  if (gotShape.join() !== shape.join()) {
    let msg = `${what} has shape [${gotShape}] but [${shape}] was expected.`;
    if (sameMultiset(gotShape, shape)) msg += " The same sizes in another order: tensors here are NHWC (channels last), torch weights [out, in].";
    return { passed: false, feedback: withHint(msg, opts.hint) };
  }
  const n = expected.length;
  let worst = -1, worstExcess = -Infinity, maxErr = 0, bad = 0, firstNaN = -1;
  for (let i = 0; i < n; i++) {
    const g = got[i], e = expected[i];
    if (Number.isNaN(g) && Number.isNaN(e)) continue;
    if (Number.isNaN(g)) {
      if (firstNaN < 0) firstNaN = i;
      bad++;
      continue;
    }
    const err = g === e ? 0 : Math.abs(g - e);
    const excess = err - (atol + rtol * Math.abs(e));
    if (err > maxErr || Number.isNaN(err)) maxErr = err;
    if (excess > 0 || Number.isNaN(err)) bad++;
    if (excess > worstExcess) { worstExcess = excess; worst = i; }
  }
  if (firstNaN >= 0) {
    return { passed: false, feedback: withHint(`${what} contains NaN (${bad} of ${n} values are wrong; the first NaN is at ${indexOf(firstNaN, shape)}, where ${fmt(expected[firstNaN])} was expected): a division by zero, or the square root or log of a negative number?`, opts.hint) };
  }
  if (bad === 0) return { passed: true, feedback: `${what} matches (${n} value${n === 1 ? "" : "s"}, max |error| ${fmt(maxErr)}).` };
  let msg = `${what}: ${bad} of ${n} values are off. Max |error| ${fmt(maxErr)}; the worst is at ${indexOf(worst, shape)}: expected ${fmt(expected[worst])}, got ${fmt(got[worst])} (tolerance ${fmt(atol)} + ${fmt(rtol)}·|expected|).`;
  msg += diagnose(got, expected, atol, rtol, opts.inputs, opts.lookalikes);
  return { passed: false, feedback: withHint(msg, opts.hint) };
}

/** The usual mistakes, recognised from the numbers. */
function diagnose(got: ArrayLike<number>, expected: ArrayLike<number>, atol: number, rtol: number, inputs?: CompareOptions["inputs"],
  lookalikes?: CompareOptions["lookalikes"]): string {
  for (const [name, v] of Object.entries(inputs ?? {})) {
    if (allClose(got, asData(v).data, atol, rtol)) return ` It equals the input \`${name}\` unchanged.`;
  }
  for (const [name, v] of Object.entries(lookalikes ?? {})) {
    if (allClose(got, asData(v).data, atol, rtol)) return ` It equals ${name}.`;
  }
  let lo = Infinity, hi = -Infinity, elo = Infinity, ehi = -Infinity;
  for (let i = 0; i < got.length; i++) {
    lo = Math.min(lo, got[i]); hi = Math.max(hi, got[i]);
    elo = Math.min(elo, expected[i]); ehi = Math.max(ehi, expected[i]);
  }
  if (got.length > 1 && hi - lo <= 1e-12 && ehi - elo > 1e-9) {
    return ` Every value you returned is ${fmt(lo)}: a hard-coded answer? The checks draw fresh random inputs on every run.`;
  }
  if (allClose(got, expected, atol, rtol, -1)) return " It is the expected result with the sign flipped.";
  let ge = 0, ee = 0;
  for (let i = 0; i < got.length; i++) { ge += got[i] * expected[i]; ee += expected[i] * expected[i]; }
  const k = ee > 0 ? ge / ee : 0;
  if (Number.isFinite(k) && Math.abs(k - 1) > 1e-3 && Math.abs(k) > 1e-6 && allClose(got, expected, 10 * atol, 10 * rtol + 1e-4, k)) {
    return ` It is the expected result times ${fmt(k)}: a missing or extra factor.`;
  }
  return "";
}

/** Compares a tensor result with the expected tensor (see compareData). Non-tensors and disposed tensors fail clearly. */
export function compareTensors(what: string, got: unknown, expected: tf.Tensor, opts: CompareOptions = {}): CheckResult {
  if (!(got instanceof tf.Tensor)) {
    return { passed: false, feedback: withHint(`${what} should be a tf.Tensor of shape [${expected.shape}], but it is ${describeValue(got)}.`, opts.hint) };
  }
  if (got.isDisposed) {
    return { passed: false, feedback: withHint(`${what} was disposed before the check could read it: return the result from inside tf.tidy (tidy disposes everything else), and do not dispose what you return.`, opts.hint) };
  }
  return compareData(what, got.dataSync(), got.shape, expected.dataSync(), expected.shape, opts);
}

/** Compares an array of numbers with the expected one. */
export function compareArrays(what: string, got: unknown, expected: number[], opts: CompareOptions = {}): CheckResult {
  if (!Array.isArray(got) && !ArrayBuffer.isView(got)) {
    return { passed: false, feedback: withHint(`${what} should be an array of ${expected.length} numbers, but it is ${describeValue(got)}.`, opts.hint) };
  }
  const arr = Array.from(got as ArrayLike<unknown>);
  const notNumber = arr.findIndex((v) => typeof v !== "number");
  if (notNumber >= 0) return { passed: false, feedback: withHint(`${what}[${notNumber}] should be a number, but it is ${describeValue(arr[notNumber])}.`, opts.hint) };
  return compareData(what, arr as number[], [arr.length], expected, [expected.length], opts);
}

/** Compares one number (Infinity equals Infinity). */
export function compareNumbers(what: string, got: unknown, expected: number, opts: CompareOptions = {}): CheckResult {
  if (typeof got !== "number") {
    return { passed: false, feedback: withHint(`${what} should be a number (expected ${fmt(expected)}), but it is ${describeValue(got)}.`, opts.hint) };
  }
  const atol = opts.atol ?? 1e-5, rtol = opts.rtol ?? 1e-5;
  const ok = got === expected || Math.abs(got - expected) <= atol + rtol * Math.abs(expected);
  if (ok) return { passed: true, feedback: `${what} = ${fmt(got)} matches.` };
  const err = Math.abs(got - expected);
  return { passed: false, feedback: withHint(`${what}: expected ${fmt(expected)}, got ${fmt(got)} (|error| ${fmt(err)}, tolerance ${fmt(atol)} + ${fmt(rtol)}·|expected|).`, opts.hint) };
}

/** Passes when every result passes; the feedback lists the failures (or the passes when all pass). */
export function allOf(...results: CheckResult[]): CheckResult {
  const failed = results.filter((r) => !r.passed);
  if (failed.length === 0) return { passed: true, feedback: results.map((r) => r.feedback).join("\n") };
  return { passed: false, feedback: failed.map((r) => r.feedback).join("\n") };
}

/** Prints a check's outcome in a notebook (the visible checks students run): ✓ or ✗ and the feedback. */
export function printCheck(result: CheckResult): void {
  console.log(`${result.passed ? "✓" : "✗"} ${result.feedback}`);
}
