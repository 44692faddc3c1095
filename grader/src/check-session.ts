// The grader's side inside the student's kernel. The grader appends to its private copy of the notebook a
// preamble cell that creates a GradeSession (with a per-run secret nonce), then one cell per hidden check:
//   await $grade.run("check-id", async (g) => { ...compare the student's function with the library... });
// Each run catches everything the check (or the student's code) throws and prints exactly ONE line
//   @@GRADE <nonce> {"id":..., "points":..., "max":..., "passed":..., "feedback":...}
// which the grader reads back from that cell's own output (score.ts). Checks draw fresh random inputs
// from a per-run seed (the report gives it, so a run can be reproduced with --seed).
// This file is the only part of the grader that runs in the kernel: the preamble imports it by its path in
// grader/dist (students never import the grader), and it reaches the kit through kernel-lib's public API only.
import * as tf from "@tensorflow/tfjs";
import type * as KernelLib from "kernel-lib";
import {
  type CheckResult,
  type CompareOptions,
  Generator,
  allOf,
  compareArrays,
  compareData,
  compareNumbers,
  compareTensors,
} from "kernel-lib";

export const GRADE_MARKER = "@@GRADE";

/** One hidden check as the session knows it. */
export interface CheckSpec {
  id: string;
  max: number;
  title: string;
}

export interface GradeSessionConfig {
  nonce: string;
  seed: number;
  exercise: string;
  checks: CheckSpec[];
  /** The student's TODO cells' sources by TODO name (for checks about how something was written). */
  todo: Record<string, string>;
}

/** The line a check prints (after the marker and the nonce). */
export interface CheckLine {
  id: string;
  points: number;
  max: number;
  passed: boolean;
  feedback: string;
  seconds: number;
}

/** An error thrown by the student's code inside a check (see GradeContext.student). */
export class StudentCodeError extends Error {
  constructor(readonly what: string, readonly original: unknown) {
    super(`${what} threw ${errorText(original)}`);
    this.name = "StudentCodeError";
  }
}

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** 32-bit FNV-1a of a string: per-check seeds from the session seed and the check id. */
function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** What a check body gets as `g`: tfjs, the kit, seeded random inputs, comparisons with feedback. */
export class GradeContext {
  private readonly gen: Generator;

  constructor(
    readonly tf: typeof import("@tensorflow/tfjs"),
    readonly lib: typeof KernelLib,
    /** This check's seed (derived from the run's seed and the check id). */
    readonly seed: number,
    private readonly todo: Record<string, string>,
  ) {
    this.gen = new Generator().manualSeed(seed);
  }

  /** Uniform in [0, 1). */
  rand(): number {
    return this.gen.randArray([1])[0];
  }

  uniform(lo: number, hi: number): number {
    return lo + (hi - lo) * this.rand();
  }

  /** An integer in [lo, hi] (both included). */
  int(lo: number, hi: number): number {
    return Math.min(hi, lo + Math.floor((hi - lo + 1) * this.rand()));
  }

  pick<T>(items: readonly T[]): T {
    return items[this.int(0, items.length - 1)];
  }

  /** A fresh standard normal tensor of `shape`, times `std`. */
  randn(shape: number[], std = 1): tf.Tensor {
    const data = this.gen.randnArray(shape);
    if (std !== 1) for (let i = 0; i < data.length; i++) data[i] *= std;
    return tf.tensor(data, shape, "float32");
  }

  /** A seed for a Generator the check hands to the student's code and to the library alike. */
  newSeed(): number {
    return this.int(0, 2 ** 31 - 1);
  }

  /**
   * Runs the student's code: an error it throws becomes a StudentCodeError, reported as "<what> threw ..."
   * (with a reminder when it is the TODO placeholder).
   */
  async student<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (e) {
      throw new StudentCodeError(what, e);
    }
  }

  /** The source of the student's TODO cell `name` ("" if there is none). */
  todoSource(name: string): string {
    return this.todo[name] ?? "";
  }

  /** The TODO cell's code without its comments (for checks on what the code calls). */
  todoCode(name: string): string {
    return this.todoSource(name).replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
  }

  compare(what: string, got: unknown, expected: tf.Tensor, opts?: CompareOptions): CheckResult {
    return compareTensors(what, got, expected, opts);
  }

  compareArray(what: string, got: unknown, expected: number[], opts?: CompareOptions): CheckResult {
    return compareArrays(what, got, expected, opts);
  }

  compareNumber(what: string, got: unknown, expected: number, opts?: CompareOptions): CheckResult {
    return compareNumbers(what, got, expected, opts);
  }

  compareData(what: string, got: ArrayLike<number>, gotShape: number[], expected: ArrayLike<number>, shape: number[], opts?: CompareOptions): CheckResult {
    return compareData(what, got, gotShape, expected, shape, opts);
  }

  all(...results: CheckResult[]): CheckResult {
    return allOf(...results);
  }

  pass(feedback: string): CheckResult {
    return { passed: true, feedback };
  }

  fail(feedback: string, points = 0): CheckResult {
    return { passed: false, feedback, points };
  }
}

/** How an error inside a check reads in the feedback. */
export function describeCheckError(e: unknown): string {
  if (e instanceof StudentCodeError) {
    const inner = e.original instanceof Error ? e.original.message : String(e.original);
    const todo = /^\s*TODO/i.test(inner) ? " Fill in its TODO cell." : "";
    return `${e.message}.${todo}`;
  }
  return `The check stopped with ${errorText(e)} — probably because of what your code returned (its type or shape).`;
}

/** One grading run inside the kernel: the nonce, the checks' maxima, the setup's helpers. */
export class GradeSession {
  readonly #nonce: string;
  private readonly specs = new Map<string, CheckSpec>();
  private readonly done = new Set<string>();
  private setupError: string | null = null;

  constructor(private readonly cfg: GradeSessionConfig, private readonly tfModule: typeof import("@tensorflow/tfjs"), private readonly lib: typeof KernelLib) {
    this.#nonce = cfg.nonce;
    for (const c of cfg.checks) this.specs.set(c.id, c);
  }

  private context(id: string): GradeContext {
    return new GradeContext(this.tfModule, this.lib, hash32(`${this.cfg.seed}:${id}`) % 2 ** 31, this.cfg.todo);
  }

  /** Runs the checks file's setup once; if it throws, every check reports the setup's error. */
  async setup<T>(fn: (g: GradeContext) => Promise<T>): Promise<T> {
    try {
      return await fn(this.context("setup"));
    } catch (e) {
      this.setupError = errorText(e);
      return undefined as unknown as T;
    }
  }

  /** Runs one check and prints its one result line. Never throws. */
  async run(id: string, fn: (g: GradeContext) => Promise<CheckResult>): Promise<void> {
    const spec = this.specs.get(id) ?? { id, max: 0, title: id };
    const t0 = performance.now();
    let r: CheckResult;
    if (this.done.has(id)) r = { passed: false, feedback: `check ${id} ran twice` };
    else if (this.setupError !== null) r = { passed: false, feedback: `The grader's setup failed (${this.setupError}), so this check could not run.` };
    else {
      try {
        const out = await fn(this.context(id));
        r = out && typeof out.passed === "boolean" && typeof out.feedback === "string" ? out : { passed: false, feedback: "the check returned no result" };
      } catch (e) {
        r = { passed: false, feedback: describeCheckError(e) };
      }
    }
    this.done.add(id);
    const points = r.passed ? spec.max : Math.max(0, Math.min(spec.max, Number(r.points ?? 0) || 0));
    const line: CheckLine = { id, points, max: spec.max, passed: r.passed, feedback: r.feedback, seconds: Math.round(performance.now() - t0) / 1000 };
    // tslab points process.stdout.write at the running cell's output for each execution
    process.stdout.write(`\n${GRADE_MARKER} ${this.#nonce} ${JSON.stringify(line)}\n`);
  }
}
