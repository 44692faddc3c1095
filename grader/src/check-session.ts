// The only part of the grader that runs in the student's kernel, and it decides nothing. The grader's private copy
// of the notebook gets a preamble cell that creates a GradeSession (this run's nonce) and runs the checks file's
// kernel setup, then one cell per hidden check holding that check's kernel part and the calls the judge sent:
//   await $grade.run("check-id", "<calls as JSON>", async (k) => ({ entry: (a: any) => studentFunction(a.x, ...) }));
// For each call, run() decodes the inputs, calls the entry (the student's code), and prints the raw outputs as ONE
// line `@@GRADE <nonce> {"id", "answers": [{"ok": output} | {"error": "what it threw"}]}` in that cell's output.
// References, comparisons, points and feedback are the judge's (judge.ts), in the grader's own process: whatever
// the student's code does to this file, to the kit or to stdout, it can only change the outputs it reports.
import type * as KernelLib from "kernel-lib";
import type { KernelAnswer, KernelCall } from "./judge.js";
import { decode, encode, tensorsIn } from "./wire.js";

export const GRADE_MARKER = "@@GRADE";

export interface GradeSessionConfig {
  nonce: string;
  exercise: string;
}

/** The line a check cell prints (after the marker and the nonce). */
export interface CheckLine {
  id: string;
  answers: KernelAnswer[];
  /** the kernel setup failed (every check's line says so) */
  setupError?: string;
  seconds: number;
}

function errorText(e: unknown): string {
  if (e instanceof Error) return `${e.name}: ${e.message}`;
  return String(e);
}

type Entries = Record<string, (args: any) => unknown>;

export class GradeSession {
  readonly #nonce: string;
  private setupError: string | null = null;
  private k: unknown = {};

  constructor(cfg: GradeSessionConfig, private readonly tf: typeof import("@tensorflow/tfjs"), private readonly lib: typeof KernelLib) {
    this.#nonce = cfg.nonce;
  }

  /** Runs the checks file's kernel setup once (what every check's kernel part reaches as `k`). */
  async setup(fn: (tf: typeof import("@tensorflow/tfjs"), lib: typeof KernelLib) => Promise<unknown>): Promise<void> {
    try {
      this.k = await fn(this.tf, this.lib);
    } catch (e) {
      this.setupError = errorText(e);
    }
  }

  /** Answers one check's calls and prints its one line. Never throws. */
  async run(id: string, callsJson: string, part: (k: any) => Entries | Promise<Entries>): Promise<void> {
    const t0 = performance.now();
    const answers: KernelAnswer[] = [];
    if (this.setupError === null) {
      let entries: Entries | null = null;
      try {
        entries = await part(this.k);
      } catch (e) {
        answers.push({ error: errorText(e) });
      }
      const calls = JSON.parse(callsJson) as KernelCall[];
      for (const call of entries ? calls : []) {
        let args: unknown = undefined;
        try {
          args = decode(call.args, undefined, 0, call.what);
          const fn = entries![call.entry];
          if (typeof fn !== "function") throw new Error(`no kernel entry "${call.entry}" in check ${id}`);
          const out = await fn(args);
          answers.push({ ok: encode(out) });
          this.tf.dispose(tensorsIn(out));
        } catch (e) {
          answers.push({ error: errorText(e) });
        }
        this.tf.dispose(tensorsIn(args));
      }
    }
    const line: CheckLine = { id, answers, seconds: Math.round(performance.now() - t0) / 1000, ...(this.setupError !== null ? { setupError: this.setupError } : {}) };
    // tslab points process.stdout.write at the running cell's output for each execution
    process.stdout.write(`\n${GRADE_MARKER} ${this.#nonce} ${JSON.stringify(line)}\n`);
  }
}
