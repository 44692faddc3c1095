// npm run grade -- <notebook.ipynb | folder> [options]
// Grades TypeScript exercise notebooks with real Jupyter and the tslab kernel: the student's cells run, then the
// exercise's hidden checks (exercises/checks/NN-name.checks.ts) in the grader's private copy; each check scores
// on its own (partial credit). The grader is the workspace package grader/ (its README; students never import it).
// See the README's "Teachers" section.
import * as fs from "node:fs";
import * as path from "node:path";
import { createRequire } from "node:module";
import { registerKernel, jupyterPython, env, root } from "./jupyter-env.mjs";

const require = createRequire(import.meta.url);
const USAGE = `usage: npm run grade -- <notebook.ipynb | folder> [options]
  --json FILE          the full result(s) as JSON
  --report FILE|DIR    one notebook: FILE.md or FILE.html; a folder: DIR/<same relative path>.html and .md per notebook
  --csv FILE           a folder: the class summary (default grades.csv)
  --jobs N             a folder: notebooks graded in parallel (default 1)
  --checks DIR         folder of NN-name.checks.ts (default exercises/checks)
  --exercise NAME      grade as this exercise (default: from the notebook's metadata and file name, which must agree)
  --seed N             the checks' random seed (default: fresh each run)
  --timeout S          seconds per notebook (default: the checks file's, else 600)
  --cell-timeout S     seconds per cell (default min(180, timeout))
  --min-score P|N%     exit 1 unless every notebook was graded "ok" and scores at least P points (or N% of the maximum)
  --memory GIB         memory a kernel may use (default 8; RLIMIT_DATA, plus a memory cgroup as root)
  --keep               keep the temporary work folders`;

const args = process.argv.slice(2);
const flags = new Map();
const positional = [];
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  if (a === "--keep" || a === "--help" || a === "-h") flags.set(a.replace(/^-+/, ""), true);
  else if (a.startsWith("--")) {
    if (i + 1 >= args.length) fail(`${a} needs a value`);
    flags.set(a.slice(2), args[++i]);
  } else positional.push(a);
}
function fail(msg) {
  console.error(`${msg}\n\n${USAGE}`);
  process.exit(2);
}
if (flags.has("help") || flags.has("h")) {
  console.log(USAGE);
  process.exit(0);
}
const known = ["json", "report", "csv", "jobs", "checks", "exercise", "seed", "timeout", "cell-timeout", "min-score", "memory", "keep"];
for (const k of flags.keys()) if (!known.includes(k)) fail(`unknown option --${k}`);
if (positional.length !== 1) fail("give one notebook or one folder");
// npm run starts scripts in the package's folder; paths on the command line are the caller's (INIT_CWD)
const cwd = process.env.INIT_CWD || process.cwd();
const here = (p) => path.resolve(cwd, p);
const target = here(positional[0]);
if (!fs.existsSync(target)) fail(`${positional[0]} does not exist`);
const num = (k) => {
  if (!flags.has(k)) return undefined;
  const v = Number(flags.get(k));
  if (!Number.isFinite(v) || v < 0) fail(`--${k} must be a number, got ${flags.get(k)}`);
  return v;
};

const grader = require(path.join(root, "grader"));
// a checks folder that cannot be read is an error before anything is graded (never "0 / 0")
const checksDir = flags.has("checks") ? here(flags.get("checks")) : path.join(root, "exercises", "checks");
try {
  if (grader.listExercises(checksDir).length === 0) fail(`no checks files (NN-name.checks.ts) in ${checksDir}`);
} catch (e) {
  fail(e.message);
}
registerKernel();
const jobs = num("jobs") ?? 1;
// notebooks graded side by side each get one wasm thread unless told otherwise (threads would fight for the cores)
const kernelEnv = { HF_HUB_OFFLINE: "1", ...(jobs > 1 ? { TFJS_WASM_THREADS: "1" } : {}), ...env() };
const opts = {
  kitRoot: root,
  jupyter: { python: jupyterPython(), env: kernelEnv },
  checksDir,
  exercise: flags.get("exercise"),
  seed: num("seed"),
  timeout: num("timeout"),
  cellTimeout: num("cell-timeout"),
  keep: flags.get("keep") === true,
  memoryBytes: flags.has("memory") ? num("memory") * 2 ** 30 : undefined,
  log: (m) => console.error(m),
};

function writeReport(file, r) {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, file.endsWith(".html") ? grader.formatHtml(r) : grader.formatMarkdown(r));
}

// --min-score fails closed: a notebook that was not graded "ok" (an error, a timeout, a crash) does not pass
function meetsMin(r) {
  if (!flags.has("min-score")) return true;
  if (r.status !== "ok") return false;
  const s = String(flags.get("min-score"));
  const need = s.endsWith("%") ? (Number(s.slice(0, -1)) / 100) * r.max : Number(s);
  if (!Number.isFinite(need)) fail(`--min-score must be points or a percentage, got ${s}`);
  return r.total + 1e-9 >= need;
}

let results;
if (fs.statSync(target).isDirectory()) {
  const { results: rs, warnings } = await grader.gradeFolder(target, { ...opts, jobs });
  results = rs;
  const csv = here(flags.get("csv") ?? "grades.csv");
  fs.writeFileSync(csv, grader.formatCsv(results));
  if (flags.has("report")) {
    const dir = here(flags.get("report"));
    for (const r of results) {
      const rel = r.notebook.replace(/\.ipynb$/, "");
      writeReport(path.join(dir, rel + ".html"), r);
      writeReport(path.join(dir, rel + ".md"), r);
    }
  }
  console.log(grader.formatCsv(results).trimEnd());
  console.log(`\n${results.length} notebooks graded; summary in ${path.relative(cwd, csv) || csv}`);
  for (const w of warnings) console.error(`WARNING: ${w}`);
} else {
  const r = await grader.gradeNotebook(target, { ...opts, displayPath: path.relative(cwd, target) || target });
  results = [r];
  if (flags.has("report")) writeReport(here(flags.get("report")), r);
  console.log(grader.formatMarkdown(r));
}
if (flags.has("json")) {
  const file = here(flags.get("json"));
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(results.length === 1 && !fs.statSync(target).isDirectory() ? results[0] : results, null, 2) + "\n");
}
const broken = results.filter((r) => r.status === "error");
if (broken.length) for (const r of broken) console.error(`could not grade ${r.notebook}: ${r.error}`);
// one notebook that could not be graded is a failed run; in a class folder the CSV says which (exit 0 unless --min-score)
const singleBroken = !fs.statSync(target).isDirectory() && broken.length > 0;
process.exit(!singleBroken && results.every(meetsMin) ? 0 : 1);
