// The grader's side of the judge's process (judge-cli.ts): started per submission, before its notebook runs, and
// ended when the verdicts are in. It runs as the grader's user in the kit's exercises/ folder; the student's kernel
// never sees it (the kernel runs sandboxed, in a work folder of its own).
import * as path from "node:path";
import { spawn, type ChildProcessWithoutNullStreams } from "node:child_process";
import type { KernelAnswer, KernelCall, Verdict } from "./judge.js";

const MARKER = "@@JUDGE ";

export interface JudgeStart {
  kitRoot: string;
  checksFile: string;
  /** the checks file's text as the grader read (and hashed) it before any notebook ran */
  checksText: string;
  seed: number;
  todo: Record<string, string>;
  /** the exercise's TODO cells as the kit ships them */
  starter: Record<string, string>;
  env: NodeJS.ProcessEnv;
  /** seconds for each phase before the judge is given up */
  timeout: number;
  /** where the judge's own output goes (the checks' console.log), for debugging */
  onOutput?: (text: string) => void;
}

export class JudgeProcess {
  private readonly child: ChildProcessWithoutNullStreams;
  private buffer = "";
  private stderr = "";
  private readonly messages: Record<string, unknown>[] = [];
  private waiter: (() => void) | null = null;
  private exited: string | null = null;

  constructor(private readonly opts: JudgeStart) {
    const script = path.resolve(__dirname, "judge-cli.js");
    this.child = spawn(process.execPath, ["--max-old-space-size=8192", script], {
      cwd: path.join(opts.kitRoot, "exercises"), env: opts.env, stdio: ["pipe", "pipe", "pipe"],
    });
    this.child.stdout.on("data", (d) => {
      this.buffer += d;
      let nl: number;
      while ((nl = this.buffer.indexOf("\n")) >= 0) {
        const l = this.buffer.slice(0, nl);
        this.buffer = this.buffer.slice(nl + 1);
        if (l.startsWith(MARKER)) {
          try {
            this.messages.push(JSON.parse(l.slice(MARKER.length)));
          } catch (e) {
            this.messages.push({ error: `unreadable judge message: ${(e as Error).message}` });
          }
          this.waiter?.();
        } else if (l.trim()) opts.onOutput?.(l);
      }
    });
    this.child.stderr.on("data", (d) => {
      this.stderr = (this.stderr + d).slice(-4000);
    });
    this.child.on("close", (code, signal) => {
      this.exited = `the judge's process ended (exit ${code ?? signal})${this.stderr ? `:\n${this.stderr}` : ""}`;
      this.waiter?.();
    });
    this.child.on("error", (e) => {
      this.exited = `the judge's process could not start: ${e.message}`;
      this.waiter?.();
    });
    this.child.stdin.on("error", () => {});
    this.send({ checksFile: opts.checksFile, checksText: opts.checksText, seed: opts.seed, todo: opts.todo, starter: opts.starter });
  }

  private send(v: unknown): void {
    this.child.stdin.write(JSON.stringify(v) + "\n");
  }

  private async receive(key: string): Promise<unknown> {
    const deadline = Date.now() + this.opts.timeout * 1000;
    for (;;) {
      const m = this.messages.shift();
      if (m) {
        if (typeof m.error === "string") throw new Error(`the judge failed: ${m.error}`);
        if (key in m) return m[key];
        continue;
      }
      if (this.exited) throw new Error(this.exited);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`the judge gave no ${key} within ${this.opts.timeout} s`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiter = () => {
          clearTimeout(t);
          r();
        };
      });
      this.waiter = null;
    }
  }

  /** Phase 1: what to ask the kernel, per check. */
  calls(): Promise<Record<string, KernelCall[]>> {
    return this.receive("calls") as Promise<Record<string, KernelCall[]>>;
  }

  /** Phase 2: the verdicts for the kernel's answers. */
  async verdicts(answers: Record<string, KernelAnswer[]>): Promise<Record<string, Verdict>> {
    this.send({ answers });
    return (await this.receive("verdicts")) as Record<string, Verdict>;
  }

  kill(): void {
    if (this.exited === null) this.child.kill("SIGKILL");
  }
}
