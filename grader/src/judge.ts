// The judge: the half of a hidden check that decides, run by the grader in a process of its own (judge-cli.ts),
// never in the student's kernel. A check's judge body draws the inputs (seeded), asks for the student's outputs
// with `g.student(what, entry, args)`, computes the references with the kit and compares:
//   phase 1 (before the notebook runs): every body runs until it waits for the kernel; the calls it issued are
//           what the kernel is sent (grade.ts writes them into the check's kernel cell);
//   phase 2 (after it ran): the kernel's raw outputs are decoded (wire.ts) and handed back; the bodies finish and
//           return their CheckResult: passed, feedback, partial points.
// A check issues all its calls before awaiting any (one round trip per notebook run). Nothing the kernel sends can
// change this code, the references or the comparisons: a student can return wrong numbers, not change the judge.
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
import type { ExerciseChecks } from "./checks-file.js";
import { type Wire, decode, encode, tensorsIn } from "./wire.js";

/** One call of the student's code the judge asks the kernel for. */
export interface KernelCall {
  what: string;
  /** the name of an entry of the check's kernel part */
  entry: string;
  args: Wire;
}

/** What the kernel sends back per call: the raw output, or what the student's code threw. */
export type KernelAnswer = { ok: Wire } | { error: string };

/** A check's verdict (points before clamping to the checks file's maximum). */
export interface Verdict {
  passed: boolean;
  feedback: string;
  points?: number;
  /** the checks file's own code failed (not the student's): the grade cannot be trusted */
  graderError?: boolean;
  /** for the teacher (e.g. a by-hand rule broken) */
  notes?: string[];
}

/** An error thrown by the student's code (reported by the kernel) inside a check. */
export class StudentCodeError extends Error {
  constructor(readonly what: string, readonly original: string) {
    super(`${what} threw ${original}`);
    this.name = "StudentCodeError";
  }
}

/** A checks file asked the kernel in a second round: a bug of the checks, reported as the grader's. */
class ChecksAuthorError extends Error {}

function stripComments(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/\/\/[^\n]*/g, "");
}

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

/** How an error inside a check reads in the feedback. */
export function describeCheckError(e: unknown): string {
  if (e instanceof StudentCodeError) {
    const todo = /^(\w*Error: )?\s*TODO/i.test(e.original) ? " Fill in its TODO cell." : "";
    return `${e.message}.${todo}`;
  }
  return `The check stopped with ${errorText(e)} — probably because of what your code returned (its type or shape).`;
}

/** 32-bit FNV-1a of a string: per-check seeds from the session seed and the check id. */
export function hash32(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

interface PendingCall extends KernelCall {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

/** The state of one check between the two phases. */
class CheckRun {
  readonly calls: PendingCall[] = [];
  closed = false;
  private scheduled = false;
  private onBlocked: () => void = () => {};
  readonly blocked = new Promise<void>((r) => (this.onBlocked = r));

  /** The body awaits a kernel answer: after the current microtasks (Promise.all wiring), no more calls. */
  waiting(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.closed = true;
      this.onBlocked();
    });
  }
}

/** What a judge body gets as `g`: seeded random inputs, the student's outputs from the kernel, comparisons. */
export class GradeContext {
  private readonly gen: Generator;

  constructor(
    readonly tf: typeof import("@tensorflow/tfjs"),
    readonly lib: typeof KernelLib,
    /** This check's seed (derived from the run's seed and the check id). */
    readonly seed: number,
    private readonly todo: Record<string, string>,
    private readonly run: CheckRun | null,
    /** the exercise's own TODO cells as the kit ships them (to tell a filled-in cell from the starter) */
    private readonly starter: Record<string, string> = {},
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
   * The student's output for one call: the kernel runs entry `entry` of this check's kernel part on `args` (sent as
   * data: tensors, numbers, arrays, plain objects) and returns what it gives, decoded here (tensors are this
   * process's; dispose them). If the student's code threw, the promise rejects with a StudentCodeError
   * ("<what> threw ..."). Issue every call of a check before awaiting any.
   */
  student<T = any>(what: string, entry: string, args?: unknown): PromiseLike<T> {
    const run = this.run;
    if (!run) throw new ChecksAuthorError(`g.student("${what}") in the setup: only checks call the student's code`);
    if (run.closed) throw new ChecksAuthorError(`g.student("${what}") after the kernel answered: a check issues all its calls before awaiting any`);
    let resolve!: (v: unknown) => void, reject!: (e: unknown) => void;
    const p = new Promise<unknown>((a, b) => ((resolve = a), (reject = b)));
    p.catch(() => {}); // a call the body never awaits is not an unhandled rejection
    run.calls.push({ what, entry, args: encode(args), resolve, reject });
    return {
      then: (onOk, onErr) => {
        run.waiting();
        return p.then(onOk as (v: unknown) => never, onErr);
      },
    };
  }

  /** The source of the student's TODO cell `name` ("" if there is none), as the grader read it from the file. */
  todoSource(name: string): string {
    return this.todo[name] ?? "";
  }

  /** The TODO cell's code without its comments (for checks on what the code calls). */
  todoCode(name: string): string {
    return stripComments(this.todoSource(name));
  }

  /** Whether the student changed TODO cell `name` from the exercise's starter (comments and spacing aside). */
  todoChanged(name: string): boolean {
    const norm = (s: string) => stripComments(s).replace(/\s+/g, "");
    return name in this.todo && norm(this.todo[name]) !== norm(this.starter[name] ?? "");
  }

  /**
   * A by-hand rule: the TODO cells `todos` must not match `forbidden` (calls of the kit the exercise asks to write
   * yourself). Passes only for cells the student filled in; a broken rule also leaves a note for the teacher.
   */
  byHand(todos: string[], forbidden: RegExp, rule: string, ok: string): CheckResult {
    const broken = todos.filter((t) => forbidden.test(this.todoCode(t)));
    if (broken.length) {
      this.notes.push(`by-hand rule broken in TODO ${broken.join(", ")}: ${rule}`);
      return this.fail(`the TODO cell(s) ${broken.join(", ")} ${rule}`);
    }
    const untouched = todos.filter((t) => !this.todoChanged(t));
    if (untouched.length) return this.fail(`fill in the TODO cell(s) ${untouched.join(", ")} first.`);
    return this.pass(ok);
  }

  /** Notes for the teacher this check left (see byHand). */
  readonly notes: string[] = [];

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

type Body<T> = (g: GradeContext, tf: typeof import("@tensorflow/tfjs"), lib: typeof KernelLib, h: any) => Promise<T>;

/** Compiles a checks file's TypeScript section into a function (esbuild: types stripped, nothing checked). */
export function compileSection<T>(code: string, where: string): Body<T> {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const esbuild = require("esbuild") as typeof import("esbuild");
  let js: string;
  try {
    js = esbuild.transformSync(`module.exports = async function (g, tf, lib, h) {\n${code}\n};`, { loader: "ts", format: "cjs", target: "node20" }).code;
  } catch (e) {
    throw new Error(`${where} does not compile: ${(e as Error).message}`);
  }
  const mod = { exports: {} as unknown };
  new Function("module", "exports", "require", js)(mod, mod.exports, require);
  return mod.exports as Body<T>;
}

/** The judge of one exercise for one run (one seed): phase 1 gives the kernel's calls, phase 2 the verdicts. */
export class Judge {
  private h: unknown = {};
  private setupError: string | null = null;
  private readonly runs = new Map<string, { run: CheckRun; body: Promise<CheckResult>; settled: boolean; g: GradeContext }>();

  constructor(
    readonly checks: ExerciseChecks,
    private readonly opts: { seed: number; todo: Record<string, string>; starter?: Record<string, string>; lib: typeof KernelLib },
  ) {}

  private context(id: string, run: CheckRun | null): GradeContext {
    return new GradeContext(tf, this.opts.lib, hash32(`${this.opts.seed}:${id}`) % 2 ** 31, this.opts.todo, run, this.opts.starter);
  }

  /** Phase 1: the setup, then each check's body (one at a time) until it waits for the kernel or ends. */
  async prepare(): Promise<Record<string, KernelCall[]>> {
    const lib = this.opts.lib;
    if (this.checks.setup) {
      try {
        const setup = compileSection(this.checks.setup, `${this.checks.file} (setup)`);
        this.h = await setup(this.context("setup", null), tf, lib, {});
      } catch (e) {
        this.setupError = errorText(e);
      }
    }
    const out: Record<string, KernelCall[]> = {};
    for (const c of this.checks.checks) {
      const run = new CheckRun();
      let settled = false;
      const g = this.context(c.id, run);
      const body = (async () => {
        if (this.setupError !== null) throw new ChecksAuthorError(`the grader's setup failed (${this.setupError})`);
        const fn = compileSection<CheckResult>(c.body, `${this.checks.file}:${c.line} (check ${c.id})`);
        return fn(g, tf, lib, this.h);
      })();
      const done = body.then(() => {}, () => {}).finally(() => (settled = true));
      await Promise.race([done, run.blocked]);
      run.closed = true;
      this.runs.set(c.id, { run, body, settled, g });
      out[c.id] = settled ? [] : run.calls.map(({ what, entry, args }) => ({ what, entry, args }));
    }
    return out;
  }

  /**
   * Phase 2: the kernel's answers per check (absent: the check's cell gave none; those checks are left out).
   * Returns a verdict for every check given answers, and for every check that needed none.
   */
  async finish(answers: Record<string, KernelAnswer[]>): Promise<Record<string, Verdict>> {
    const out: Record<string, Verdict> = {};
    for (const c of this.checks.checks) {
      const r = this.runs.get(c.id);
      if (!r) continue;
      const got = answers[c.id];
      if (!got && r.run.calls.length > 0) continue;
      const received: tf.Tensor[] = [];
      r.run.calls.forEach((call, i) => {
        const a = got?.[i];
        if (!a) call.reject(new Error(`the kernel gave no answer for ${call.what}`));
        else if ("error" in a) call.reject(new StudentCodeError(call.what, String(a.error)));
        else {
          try {
            const v = decode(a.ok, undefined, 0, call.what);
            tensorsIn(v, received);
            call.resolve(v);
          } catch (e) {
            call.reject(new Error(`what ${call.what} returned cannot be read: ${(e as Error).message}`));
          }
        }
      });
      try {
        const res = await r.body;
        out[c.id] = res && typeof res.passed === "boolean" && typeof res.feedback === "string"
          ? { passed: res.passed, feedback: res.feedback, points: res.points }
          : { passed: false, feedback: "the check returned no result", graderError: true };
      } catch (e) {
        out[c.id] = e instanceof ChecksAuthorError
          ? { passed: false, feedback: `The grader's check failed (not your fault: tell your teacher): ${e.message}`, graderError: true }
          : { passed: false, feedback: describeCheckError(e) };
      }
      tf.dispose(received);
      if (r.g.notes.length) out[c.id].notes = [...r.g.notes];
    }
    return out;
  }
}
