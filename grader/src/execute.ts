// Runs a notebook with real Jupyter (nbclient) and the tslab kernel, via the kit's one notebook runner
// (scripts/run_notebook.py, also behind `npm run lesson`, the browser test and `npm run rehearse`) with
// --keep-going: cell by cell, errors allowed (with the pause tslab needs after an error), a timed-out or
// kernel-killing cell skipped after a restart, a hard deadline after which the runner and its kernel are killed.
// Work folders: each submission runs in a fresh temporary folder holding only a copy of its notebook and copies of
// the data folders its exercise declares; sandbox.ts adds the kit's node_modules, kernel-lib and grader (links, or
// read-only binds in the kernel's own mount namespace) and the kernel's private HOME.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn } from "node:child_process";

/** How to reach Jupyter: a python with nbclient, the environment (JUPYTER_PATH with the tslab kernel spec). */
export interface JupyterCommand {
  python: string;
  env: NodeJS.ProcessEnv;
  kernel?: string;
}

export type CellStatus = "ok" | "error" | "timeout" | "dead" | "not-run";

export interface RunnerSummary {
  attempts: number;
  seconds: number;
  cells: { index: number; status: CellStatus; seconds: number | null }[];
}

export interface ExecuteOptions {
  jupyter: JupyterCommand;
  /** the kernel's working directory */
  cwd: string;
  /** seconds per cell before the cell is given up (default 120) */
  cellTimeout?: number;
  /** seconds for the whole run (default 900) */
  deadline?: number;
  /** file for the kernel's own output (default: discarded) */
  log?: string;
}

/** The kit's notebook runner, scripts/run_notebook.py (this file runs from grader/src or grader/dist). */
export function runnerScript(): string {
  const file = path.resolve(__dirname, "../../scripts/run_notebook.py");
  if (!fs.existsSync(file)) throw new Error(`the notebook runner ${file} is missing; the grader runs inside the kit's checkout (grader/ beside scripts/)`);
  return file;
}

function killTree(pid: number | undefined): void {
  if (!pid) return;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, "SIGKILL");
    } catch {
      // already gone
    }
  }
}

/**
 * Executes `notebookFile`, writes the executed copy to `outFile`, resolves with the runner's per-cell summary.
 * Rejects only when the runner cannot run at all (no Jupyter) or gives no summary; cell errors are in the summary.
 */
export function executeNotebook(notebookFile: string, outFile: string, opts: ExecuteOptions): Promise<RunnerSummary> {
  const deadline = opts.deadline ?? 900;
  const args = [
    runnerScript(), notebookFile, "--out", outFile, "--cwd", opts.cwd, "--keep-going", "--report-kernel-pid",
    "--cell-timeout", String(opts.cellTimeout ?? 120), "--deadline", String(deadline),
    "--kernel", opts.jupyter.kernel ?? "tslab", "--log", opts.log ?? os.devNull,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(opts.jupyter.python, args, { env: opts.jupyter.env, stdio: ["ignore", "pipe", "pipe"], detached: true });
    let stdout = "", stderr = "";
    const kernels: number[] = [];
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => {
      stderr += d;
      for (const m of String(d).matchAll(/KERNEL_PID (\d+)/g)) kernels.push(Number(m[1]));
    });
    // backstop: the runner keeps its own deadline; past it (plus a margin for kernel shutdown) kill everything
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      killTree(child.pid);
      kernels.forEach(killTree);
    }, (deadline + 60) * 1000);
    child.on("error", (e) => {
      clearTimeout(timer);
      reject(new Error(`could not start ${opts.jupyter.python}: ${e.message}`));
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      // a runner that did not end by itself may have left its kernel running (a normal end shut it down)
      if (killed || signal !== null) kernels.forEach(killTree);
      const line = stdout.trim().split("\n").reverse().find((l) => l.startsWith("{"));
      if (!line) {
        reject(new Error(`the notebook runner gave no result (exit ${code ?? signal}):\n${stderr.slice(-3000)}`));
        return;
      }
      resolve(JSON.parse(line) as RunnerSummary);
    });
  });
}

/**
 * A fresh private temporary folder (mode 0700) in <tmp>/kit-grader-<uid>/ (mode 0711: not listable, so a
 * submission cannot find another's random folder name).
 */
export function privateTempDir(prefix: string): string {
  const base = path.join(os.tmpdir(), `kit-grader-${typeof process.getuid === "function" ? process.getuid() : "user"}`);
  fs.mkdirSync(base, { recursive: true, mode: 0o711 });
  const st = fs.lstatSync(base);
  if (!st.isDirectory() || (typeof process.getuid === "function" && st.uid !== process.getuid())) throw new Error(`${base} is not the grader's own folder`);
  fs.chmodSync(base, 0o711);
  return fs.mkdtempSync(path.join(base, prefix));
}

/**
 * A work folder for one submission: <dir>/exercises/<name>.ipynb (a copy) and <dir>/<data> copies.
 * Returns the notebook's folder (the kernel's cwd).
 */
export function prepareWorkFolder(dir: string, notebookName: string, notebookText: string, kitRoot: string, data: string[]): string {
  const nbDir = path.join(dir, "exercises");
  fs.mkdirSync(nbDir, { recursive: true });
  fs.writeFileSync(path.join(nbDir, notebookName), notebookText);
  for (const d of data) {
    const from = path.join(kitRoot, d);
    if (!fs.existsSync(from)) throw new Error(`the exercise needs ${d}, which is not in ${kitRoot}`);
    fs.cpSync(from, path.join(dir, d), { recursive: true });
  }
  return nbDir;
}
