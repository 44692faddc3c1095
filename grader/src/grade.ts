// Grading a notebook, or a folder of submissions in parallel. For each submission: find its exercise, start the
// judge (judge-cli.ts, a process of the grader's) which draws the inputs and says what to ask the student's code,
// build the private copy (student cells + preamble + each check's kernel part with those inputs), run it with
// Jupyter in a fresh work folder, hand the raw outputs read back from the check cells to the judge, which
// compares them with its own references and gives the verdicts. The checks are read by this process; the work
// folder holds no checks and no references. See the README's Teachers section for what this protects.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { type ExerciseChecks, maxPoints, parseChecksFile } from "./checks-file.js";
import { buildGradedNotebook, readNotebook, suspiciousCode, todoCells, type Notebook } from "./graded-notebook.js";
import { JudgeProcess } from "./judge-process.js";
import { prepareSandbox } from "./sandbox.js";
import { type JupyterCommand, executeNotebook, prepareWorkFolder, privateTempDir } from "./execute.js";
import { type CellError, type CheckOutcome, answersForJudge, kernelAnswers, scoreChecks, studentCellErrors } from "./score.js";

export type GradeStatus = "ok" | "timeout" | "crashed" | "error";

export interface GradeResult {
  /** the notebook as given (path) */
  notebook: string;
  student: string;
  exercise: string;
  total: number;
  max: number;
  /** ok; timeout (a cell ran out of time); crashed (a cell killed the kernel); error (could not be graded) */
  status: GradeStatus;
  error?: string;
  seconds: number;
  seed: number;
  gradedAt: string;
  checks: CheckOutcome[];
  cellErrors: CellError[];
  warnings: string[];
  /** What isolated the kernel (sandbox.ts), in words. */
  sandbox?: string;
  /** The three slowest cells (index, seconds): where a notebook near its time limit spends it. */
  slowestCells: { cell: number; seconds: number }[];
}

export interface GradeOptions {
  /** The kit's root folder: node_modules and the data folders exercises read come from here. */
  kitRoot: string;
  jupyter: JupyterCommand;
  /** Where NN-name.checks.ts live (default <kitRoot>/exercises/checks). */
  checksDir?: string;
  /** Grade as this exercise (name of a checks file without .checks.ts); default: from the notebook. */
  exercise?: string;
  /** Seed of the checks' random inputs (default: a fresh one per notebook). */
  seed?: number;
  /** Seconds for a whole notebook (default: the checks file's timeout, else 600). */
  timeout?: number;
  /** Seconds per cell (default: the smaller of 180 and the notebook's timeout). */
  cellTimeout?: number;
  /** Keep the work and private folders (for debugging the grader). */
  keep?: boolean;
  /** Name in the report and CSV (default: the notebook's file name without .ipynb). */
  student?: string;
  /** The notebook's path as the report and CSV show it (default: as given). */
  displayPath?: string;
  /** Called with progress messages. */
  log?: (msg: string) => void;
  /** Bytes of memory a kernel may use (default 8 GiB). */
  memoryBytes?: number;
  /** Parallel slot of this run (each slot has its own sandbox user); gradeFolder sets it. */
  slot?: number;
}

const CHECKS_SUFFIX = ".checks.ts";

/** The exercises that have checks in `checksDir`. */
export function listExercises(checksDir: string): string[] {
  if (!fs.existsSync(checksDir)) throw new Error(`no checks folder at ${checksDir} (pass --checks <folder with NN-name.checks.ts files>)`);
  return fs.readdirSync(checksDir).filter((f) => f.endsWith(CHECKS_SUFFIX)).map((f) => f.slice(0, -CHECKS_SUFFIX.length)).sort();
}

/**
 * Which exercise a notebook is: `forced` if given; else what its metadata.exercise.name and its file name say, when
 * they agree (a notebook whose metadata and file name name different exercises is graded as neither: pass
 * --exercise). Throws a clear error when it cannot tell.
 */
export function resolveExercise(nb: Notebook, file: string, checksDir: string, forced?: string): string {
  const known = listExercises(checksDir);
  if (known.length === 0) throw new Error(`no checks files (NN-name.checks.ts) in ${checksDir}`);
  if (forced) {
    if (!known.includes(forced)) throw new Error(`no checks for exercise "${forced}" in ${checksDir} (known: ${known.join(", ")})`);
    return forced;
  }
  const meta = (nb.metadata?.exercise as { name?: unknown } | undefined)?.name;
  const base = path.basename(file, ".ipynb");
  const nn = /^(\d\d)\b/.exec(base)?.[1];
  const byName = known.find((k) => base === k || base.startsWith(k)) ?? (nn ? known.filter((k) => k.startsWith(`${nn}-`)) : []).find((_, i, all) => all.length === 1);
  if (typeof meta === "string" && meta) {
    if (!known.includes(meta)) throw new Error(`${file} says it is exercise "${meta}" (metadata.exercise.name), which has no checks in ${checksDir} (known: ${known.join(", ")}); pass --exercise <name>`);
    if (byName && byName !== meta) throw new Error(`${file} is named like exercise ${byName} but its metadata says ${meta}: graded as neither; pass --exercise <name> to say which`);
    return meta;
  }
  if (byName) return byName;
  throw new Error(`cannot tell which exercise ${file} is (no metadata.exercise.name, and its file name matches none of ${known.join(", ")}); pass --exercise <name>`);
}

function sha256(text: string): string {
  return crypto.createHash("sha256").update(text).digest("hex");
}

/** Checks files read once per grading session, with their hashes (to notice a notebook changing them). */
export class ChecksCache {
  private readonly cache = new Map<string, { checks: ExerciseChecks; text: string; hash: string }>();
  constructor(readonly dir: string) {}

  private entry(exercise: string) {
    let hit = this.cache.get(exercise);
    if (!hit) {
      const file = path.join(this.dir, exercise + CHECKS_SUFFIX);
      let text: string;
      try {
        text = fs.readFileSync(file, "utf8");
      } catch (e) {
        throw new Error(`cannot read the checks file ${file}: ${(e as Error).message}`);
      }
      const checks = parseChecksFile(text, file);
      if (checks.exercise !== exercise) throw new Error(`${file} says //@@ exercise ${checks.exercise}; it must match its file name (${exercise})`);
      hit = { checks, text, hash: sha256(text) };
      this.cache.set(exercise, hit);
    }
    return hit;
  }

  get(exercise: string): ExerciseChecks {
    return this.entry(exercise).checks;
  }

  /** The text the checks were parsed from (what the judge gets: it never reads the file again). */
  text(exercise: string): string {
    return this.entry(exercise).text;
  }

  /** Checks files whose content changed since they were read. */
  changed(): string[] {
    return [...this.cache.values()].filter((v) => !fs.existsSync(v.checks.file) || sha256(fs.readFileSync(v.checks.file, "utf8")) !== v.hash).map((v) => v.checks.file);
  }
}

/** The exercise's TODO cells as the kit ships them (exercises/<name>.ipynb), by TODO name; {} if it has none. */
export function starterTodos(kitRoot: string, exercise: string): Record<string, string> {
  const file = path.join(kitRoot, "exercises", `${exercise}.ipynb`);
  const out: Record<string, string> = {};
  if (!fs.existsSync(file)) return out;
  for (const t of todoCells(readNotebook(file))) out[t.name] = t.source;
  return out;
}

function emptyResult(file: string, student: string, seed: number, t0: number): GradeResult {
  return { notebook: file, student, exercise: "", total: 0, max: 0, status: "error", seconds: 0, seed, gradedAt: new Date(t0).toISOString(), checks: [], cellErrors: [], warnings: [], slowestCells: [] };
}

/** Grades one notebook. Never throws for a bad submission: the result says what went wrong (status "error"). */
export async function gradeNotebook(file: string, opts: GradeOptions, cache?: ChecksCache): Promise<GradeResult> {
  const t0 = Date.now();
  const seed = opts.seed ?? crypto.randomInt(0, 2 ** 31 - 1);
  const student = opts.student ?? path.basename(file, ".ipynb");
  const result = emptyResult(opts.displayPath ?? file, student, seed, t0);
  const checksCache = cache ?? new ChecksCache(opts.checksDir ?? path.join(opts.kitRoot, "exercises", "checks"));
  let text: string;
  let nb: Notebook;
  let checks: ExerciseChecks;
  try {
    nb = readNotebook(file);
    text = fs.readFileSync(file, "utf8");
    result.exercise = resolveExercise(nb, file, checksCache.dir, opts.exercise);
    checks = checksCache.get(result.exercise);
  } catch (e) {
    result.error = (e as Error).message;
    result.seconds = (Date.now() - t0) / 1000;
    return result;
  }
  result.max = maxPoints(checks);
  result.checks = checks.checks.map((c) => ({ id: c.id, title: c.title, points: 0, max: c.points, passed: false, feedback: "not graded" }));
  const nonce = crypto.randomBytes(16).toString("hex");
  const todo: Record<string, string> = {};
  for (const t of todoCells(nb)) todo[t.name] = t.source;
  const timeout = opts.timeout ?? checks.timeoutSeconds ?? 600;
  const work = privateTempDir("grade-work-");
  const priv = privateTempDir("grade-private-");
  let judge: JudgeProcess | null = null;
  let cleanup = () => {};
  try {
    const cwd = prepareWorkFolder(work, path.basename(file), text, opts.kitRoot, checks.data);
    const sandbox = prepareSandbox({ kitRoot: opts.kitRoot, work, priv, slot: opts.slot ?? 0, memoryBytes: opts.memoryBytes, env: opts.jupyter.env });
    cleanup = sandbox.cleanup;
    result.sandbox = sandbox.description;
    judge = new JudgeProcess({
      kitRoot: opts.kitRoot, checksFile: checks.file, checksText: checksCache.text(result.exercise), seed, todo, starter: starterTodos(opts.kitRoot, result.exercise),
      env: sandbox.judgeEnv, timeout,
    });
    const calls = await judge.calls();
    const built = buildGradedNotebook(nb, checks, { nonce, calls, session: path.join(work, "grader", "dist", "check-session.js") });
    const graded = path.join(priv, "graded.ipynb");
    const executed = path.join(priv, "executed.ipynb");
    fs.writeFileSync(graded, JSON.stringify(built.notebook));
    opts.log?.(`grading ${file} as ${result.exercise} (seed ${seed})`);
    const summary = await executeNotebook(graded, executed, {
      jupyter: { ...opts.jupyter, env: sandbox.runnerEnv, kernel: sandbox.kernel }, cwd, deadline: timeout, cellTimeout: opts.cellTimeout ?? Math.min(180, timeout), log: path.join(priv, "kernel.log"),
    });
    const out = readNotebook(executed);
    const verdicts = await judge.verdicts(answersForJudge(kernelAnswers(out, built, nonce)));
    result.checks = scoreChecks(out, built, checks, summary, nonce, verdicts);
    result.cellErrors = studentCellErrors(out, built, summary);
    const statuses = new Set(summary.cells.map((c) => c.status));
    result.status = statuses.has("dead") ? "crashed" : statuses.has("timeout") || statuses.has("not-run") ? "timeout" : "ok";
    const graderErrors = result.checks.filter((c) => c.graderError);
    if (graderErrors.length) {
      result.status = "error";
      result.error = `the grader's own checks failed (${graderErrors.map((c) => c.id).join(", ")}): this grade cannot be trusted`;
    }
    result.warnings = [...suspiciousCode(nb), ...Object.values(verdicts).flatMap((v) => v.notes ?? [])];
    // the checks are hashed before and after every run: a change means a submission reached them (it should not)
    for (const f of checksCache.changed()) {
      result.status = "error";
      result.error = `${f} changed while this notebook ran: restore it (git checkout) and grade again`;
      result.warnings.push(`the checks file ${f} changed while this notebook ran`);
    }
    result.slowestCells = summary.cells
      .filter((c) => c.seconds !== null)
      .map((c) => ({ cell: c.index, seconds: c.seconds as number }))
      .sort((a, b) => b.seconds - a.seconds)
      .slice(0, 3);
  } catch (e) {
    result.status = "error";
    result.error = (e as Error).message;
  } finally {
    judge?.kill();
    cleanup();
    if (!opts.keep) {
      fs.rmSync(work, { recursive: true, force: true });
      fs.rmSync(priv, { recursive: true, force: true });
    } else opts.log?.(`kept ${work} and ${priv}`);
  }
  result.total = Math.round(result.checks.reduce((s, c) => s + c.points, 0) * 1000) / 1000;
  result.seconds = (Date.now() - t0) / 1000;
  return result;
}

export interface Submission {
  file: string;
  student: string;
}

/**
 * The notebooks under `dir` (hidden folders and .ipynb_checkpoints skipped). Student: the first folder below
 * `dir` (nbgrader's submitted/<student>/<assignment>/x.ipynb), else the file name.
 */
export function findSubmissions(dir: string): Submission[] {
  const out: Submission[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      if (e.name.startsWith(".")) continue;
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile() && e.name.endsWith(".ipynb")) {
        const rel = path.relative(dir, p).split(path.sep);
        out.push({ file: p, student: rel.length > 1 ? rel[0] : path.basename(e.name, ".ipynb") });
      }
    }
  };
  walk(dir);
  return out;
}

/** Grades every notebook under `dir`, `jobs` at a time, each in its own work folder. */
export async function gradeFolder(dir: string, opts: GradeOptions & { jobs?: number }): Promise<{ results: GradeResult[]; warnings: string[] }> {
  const subs = findSubmissions(dir);
  const cache = new ChecksCache(opts.checksDir ?? path.join(opts.kitRoot, "exercises", "checks"));
  const results: GradeResult[] = new Array(subs.length);
  let next = 0;
  const worker = async (slot: number) => {
    while (next < subs.length) {
      const i = next++;
      results[i] = await gradeNotebook(subs[i].file, { ...opts, slot, student: subs[i].student, displayPath: path.relative(dir, subs[i].file) }, cache);
      opts.log?.(`${subs[i].student}: ${results[i].total} / ${results[i].max} (${results[i].status}) ${subs[i].file}`);
    }
  };
  const jobs = Math.max(1, Math.min(opts.jobs ?? 1, subs.length || 1));
  await Promise.all(Array.from({ length: jobs }, (_, slot) => worker(slot)));
  const warnings = cache.changed().map((f) => `${f} changed while grading: a notebook wrote to it. Restore it (git checkout) and grade again.`);
  return { results, warnings };
}
