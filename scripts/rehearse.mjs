// npm run rehearse: a rehearsal of the lessons' online path without network. Builds (once) a Hugging Face Hub
// cache holding the real configs and random weights of the real sizes for google/ddpm-cat-256 and
// stable-diffusion-v1-5/stable-diffusion-v1-5 (scripts/rehearsal/snapshots.mjs), then executes every lesson and
// solution that loads one of them with real Jupyter + tslab (scripts/run_notebook.py) under HF_HUB_OFFLINE=1 and
// HF_HUB_CACHE=<that cache>, so each takes its Hub branch. Denoising steps are capped at KIT_REHEARSAL_STEPS by a
// first cell injected into a temporary copy of the notebook (the notebooks themselves are not edited); a last
// injected cell prints what the kernel used (peak RSS, wasm heap, backend, threads, memory plans). A notebook that
// falls back to datasets/ (HubError) or fails a cell fails the rehearsal. Writes bench/results/rehearsal.json and
// bench/results/rehearsal.md.
//
// Options: --only 01,03,solutions/05   --steps N (2)   --cache DIR (runs/rehearsal/hf-cache)   --timeout S (7200, per cell)
//          --threads N (TFJS_WASM_THREADS for the kernel; default unset = the kit's auto)
//          --no-build (use --cache as it is)   --out FILE.json (bench/results/rehearsal.json; the .md goes beside it)
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, execFileSync } from "node:child_process";
import { registerKernel, jupyterPython, env, root } from "./jupyter-env.mjs";

/** The Hub models a rehearsal stands in for: a notebook that names one of them as a string literal loads it. */
const HUB_MODELS = ["google/ddpm-cat-256", "stable-diffusion-v1-5/stable-diffusion-v1-5"];
const DIRS = ["notebooks", "solutions"];
const DEFAULT_CACHE = path.join(root, "runs", "rehearsal", "hf-cache");
const SNAPSHOTS = path.join(root, "scripts", "rehearsal", "snapshots.mjs");

/**
 * What the notebooks print when they take the offline branch (matched per output line):
 *  - lessons 01-03 (their own try/catch): `Could not load <id>: <why>` then `Falling back to <folder>...`;
 *  - fromPretrainedOrOffline (kernel-lib/src/pipelines/offline-fallback.ts; lessons 04-05, solutions):
 *    `Could not load <id>: <why>` then `Using <folder> instead (see its README.md).`;
 *  - lesson 03's parts table: "— the kit's small shapes model (offline fallback)".
 */
const FALLBACK_PATTERNS = [
  /^Could not load \S+: /,
  /^Falling back to \S+/,
  /^Using \S+ instead \(see its README\.md\)/,
  /\(offline fallback\)/,
];

// ---------------------------------------------------------------------------------------------
// The injected cells (TypeScript, compiled by tslab: loosely typed, unique global names)

const CAP_CELL = `// [rehearsal] injected by scripts/rehearse.mjs into a temporary copy (not part of the lesson):
// caps every scheduler's setTimesteps(n) at KIT_REHEARSAL_STEPS denoising steps.
import * as rehearsalInjectedKit from "kernel-lib";
{
  const kit: any = rehearsalInjectedKit;
  const cap = Math.max(1, Math.floor(Number(process.env.KIT_REHEARSAL_STEPS || "2")) || 2);
  const state: any = { cap: cap, patched: [] as string[], cappedCalls: 0, largestAsked: 0, raisedFor: {}, raw: 0 };
  (globalThis as any).__kitRehearsal = state;
  const names: string[] = typeof kit.registeredSchedulers === "function" ? kit.registeredSchedulers() : [];
  for (const name of names) {
    const cls: any = kit.getSchedulerClass(name);
    const proto: any = cls && cls.prototype;
    const orig: any = proto && proto.setTimesteps;
    if (typeof orig !== "function" || orig.__rehearsalCap) continue;
    const capped: any = function (this: any, n: any, ...rest: any[]) {
      // n === num_train_timesteps: Heun/LMS initialise themselves so in their constructor; img2img/inpaint
      // already chose their own count (state.raw, below)
      if (typeof n !== "number" || state.raw > 0 || n <= cap || n === (this.config && this.config.num_train_timesteps)) {
        return orig.call(this, n, ...rest);
      }
      state.largestAsked = Math.max(state.largestAsked, n);
      state.cappedCalls++;
      // a scheduler may need more steps than the cap (PNDM's Runge-Kutta warm-up: 4): the fewest it accepts
      for (let m = cap; ; m++) {
        try { return orig.call(this, m, ...rest); } catch (e) {
          if (m >= n) throw e;
          state.raisedFor[(this.constructor && this.constructor.name) || name] = m + 1;
        }
      }
    };
    capped.__rehearsalCap = true;
    proto.setTimesteps = capped;
    state.patched.push(name);
  }
  // img2img / inpaint run the last floor(n·strength) of n steps: ask for the n that runs min(that, cap) steps
  for (const [pname, defaultStrength] of [["StableDiffusionImg2ImgPipeline", 0.8], ["StableDiffusionInpaintPipeline", 1.0]] as [string, number][]) {
    const proto: any = kit[pname] && kit[pname].prototype;
    const orig: any = proto && proto.generate;
    if (typeof orig !== "function" || orig.__rehearsalCap || !Object.prototype.hasOwnProperty.call(proto, "generate")) continue;
    const capped: any = async function (this: any, opts: any, ...rest: any[]) {
      const o: any = opts || {};
      const n = typeof o.numInferenceSteps === "number" ? o.numInferenceSteps : 50;
      const s = typeof o.strength === "number" ? o.strength : defaultStrength;
      const want = Math.min(Math.min(Math.floor(n * s), n), cap);
      let m = n;
      for (let c = 1; c <= n; c++) if (Math.min(Math.floor(c * s), c) >= want) { m = c; break; }
      state.largestAsked = Math.max(state.largestAsked, n);
      if (m < n) state.cappedCalls++;
      state.raw++;
      try { return await orig.call(this, { ...o, numInferenceSteps: m }, ...rest); } finally { state.raw--; }
    };
    capped.__rehearsalCap = true;
    proto.generate = capped;
    state.patched.push(pname + ".generate");
  }
  console.log("[rehearsal] denoising steps capped at " + cap + " (" + state.patched.length + " classes patched)");
}
`;

const REPORT_CELL = `// [rehearsal] injected by scripts/rehearse.mjs: what this kernel used, one JSON line for the rehearsal report.
import * as rehearsalInjectedKit2 from "kernel-lib";
import * as rehearsalInjectedTf from "@tensorflow/tfjs";
import * as rehearsalInjectedFs from "fs";
{
  const kit: any = rehearsalInjectedKit2;
  const tfAny: any = rehearsalInjectedTf;
  const out: any = {};
  const attempt = (key: string, f: () => any) => { try { out[key] = f(); } catch (e) { out[key] = null; out[key + "Error"] = String(e); } };
  attempt("rssPeakBytes", () => { const m = /VmHWM:\\s+(\\d+) kB/.exec(rehearsalInjectedFs.readFileSync("/proc/self/status", "utf8")); return m ? Number(m[1]) * 1024 : null; });
  attempt("backend", () => tfAny.getBackend());
  attempt("wasmHeapBytes", () => typeof kit.wasmHeapBytes === "function" ? kit.wasmHeapBytes()
    : (tfAny.getBackend() === "wasm" ? tfAny.backend().wasm.HEAPU8.length : null));
  attempt("wasmThreads", () => tfAny.getBackend() === "wasm" && typeof kit.wasmThreadsInUse === "function" ? kit.wasmThreadsInUse() : null);
  attempt("tfMemory", () => { const m = tfAny.memory(); return { numTensors: m.numTensors, numBytes: m.numBytes }; });
  attempt("memoryPlans", () => typeof kit.memoryPlanLog === "function" ? kit.memoryPlanLog() : null);
  try {
    const r: any = await kit.backendReport();
    out.backendDescription = r.description;
    out.wasmThreadsStatus = r.wasmThreads || null;
  } catch (e) { out.backendDescription = null; }
  out.stepCap = (globalThis as any).__kitRehearsal || null;
  let line: string;
  try { line = JSON.stringify(out); } catch (e) {
    // a plan that does not serialise: keep what and summary
    out.memoryPlans = Array.isArray(out.memoryPlans) ? out.memoryPlans.map((p: any) => ({ what: String(p && p.what), summary: String(p && p.summary), plan: null })) : null;
    line = JSON.stringify(out);
  }
  console.log("@@REHEARSAL " + line);
}
`;

// ---------------------------------------------------------------------------------------------
// Options

const argv = process.argv.slice(2);
function opt(name, fallback) {
  const i = argv.findIndex((a) => a === name || a.startsWith(name + "="));
  if (i < 0) return fallback;
  if (argv[i].includes("=")) return argv[i].slice(argv[i].indexOf("=") + 1);
  const v = argv[i + 1];
  if (v === undefined || v.startsWith("--")) die(`${name} needs a value`);
  return v;
}
function die(msg) {
  console.error(`rehearse: ${msg}`);
  process.exit(2);
}
const known = ["--only", "--steps", "--cache", "--timeout", "--threads", "--out", "--no-build", "--help"];
for (const a of argv) if (a.startsWith("--") && !known.includes(a.split("=")[0])) die(`unknown option ${a} (options: ${known.join(" ")})`);
if (argv.includes("--help")) {
  const lines = fs.readFileSync(new URL(import.meta.url), "utf8").split("\n");
  console.log(lines.slice(0, lines.findIndex((l) => !l.startsWith("//"))).map((l) => l.slice(3)).join("\n"));
  process.exit(0);
}
const positiveInt = (name, v) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) die(`${name} must be a whole number >= 1; got "${v}"`);
  return n;
};
const STEPS = positiveInt("--steps", opt("--steps", "2"));
const TIMEOUT = positiveInt("--timeout", opt("--timeout", "7200"));
const THREADS = opt("--threads", undefined);
if (THREADS !== undefined && THREADS !== "auto") positiveInt("--threads", THREADS);
const CACHE = path.resolve(opt("--cache", DEFAULT_CACHE));
const OUT_JSON = path.resolve(opt("--out", path.join(root, "bench", "results", "rehearsal.json")));
const OUT_MD = OUT_JSON.replace(/\.json$/, "") + ".md";
const ONLY = opt("--only", undefined)?.split(",").map((s) => s.trim()).filter(Boolean);
const EXEC_DIR = path.join(root, "runs", "rehearsal", "executed");

// ---------------------------------------------------------------------------------------------
// Which notebooks

function codeCells(nb) {
  return nb.cells.filter((c) => c.cell_type === "code").map((c) => (Array.isArray(c.source) ? c.source.join("") : c.source));
}

/** The Hub models a notebook loads: one of HUB_MODELS as a whole string literal, and a fromPretrained call. */
function hubModelsOf(nbPath) {
  const code = codeCells(JSON.parse(fs.readFileSync(nbPath, "utf8"))).join("\n");
  if (!/fromPretrained/.test(code)) return [];
  return HUB_MODELS.filter((id) => new RegExp(`(["'\`])${id.replace(/[/.-]/g, "\\$&")}\\1`).test(code));
}

function allNotebooks() {
  return DIRS.flatMap((dir) => fs.readdirSync(path.join(root, dir))
    .filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort()
    .map((f) => {
      const file = path.join(root, dir, f);
      return { name: `${dir}/${f.replace(/\.ipynb$/, "")}`, dir, file, models: hubModelsOf(file) };
    }));
}

/** --only tokens: "03" (number prefix, lessons and solutions), "solutions/05", "notebooks/04-the", a name. Hub notebooks first. */
function select(all) {
  const hub = all.filter((n) => n.models.length > 0);
  if (!ONLY) return hub;
  const matches = (n, t) => {
    const base = path.basename(n.name);
    return base.startsWith(t) || n.name.startsWith(t) || (/[a-z]/i.test(t) && base.includes(t));
  };
  const picked = new Set();
  for (const token of ONLY) {
    const t = /^\d$/.test(token) ? token.padStart(2, "0") : token;
    let hit = hub.filter((n) => matches(n, t));
    if (hit.length === 0) hit = all.filter((n) => matches(n, t));   // a notebook without the Hub: the harness alone
    if (hit.length === 0) die(`--only ${t}: no notebook matches (${all.map((n) => n.name).join(", ")})`);
    hit.forEach((n) => picked.add(n));
  }
  return all.filter((n) => picked.has(n));
}

// ---------------------------------------------------------------------------------------------
// The cache

function dirBytes(dir) {
  let n = 0;
  const walk = (d) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else if (e.isFile()) n += fs.statSync(p).size;   // snapshot symlinks point at blobs: counted once
    }
  };
  try { walk(dir); } catch { /* a missing cache is 0 */ }
  return n;
}

/**
 * buildRehearsalCache(CACHE) (scripts/rehearsal/snapshots.mjs) builds what is missing or outdated and skips a repo
 * already built by the same builder (its own markers), so this costs seconds after the first run; it refuses to
 * overwrite a repo it did not make (a real download). --no-build uses the folder as it is (an empty folder: every
 * notebook falls back, which tests the detection).
 */
async function prepareCache() {
  const info = { dir: CACHE, built: false, buildSeconds: null, note: "", repos: null };
  if (argv.includes("--no-build")) {
    info.note = "--no-build: used as it is";
  } else {
    if (!fs.existsSync(SNAPSHOTS)) die(`${path.relative(root, SNAPSHOTS)} is missing: it builds the rehearsal cache (or pass --no-build with --cache DIR)`);
    console.log(`rehearsal Hub cache in ${path.relative(process.cwd(), CACHE) || CACHE} (real configs, random weights; built once, then checked) ...`);
    const { buildRehearsalCache } = await import(new URL("./rehearsal/snapshots.mjs", import.meta.url).href);
    if (typeof buildRehearsalCache !== "function") die(`${path.relative(root, SNAPSHOTS)} does not export buildRehearsalCache`);
    const t0 = performance.now();
    let summary;
    try {
      summary = await buildRehearsalCache(CACHE, { log: (...a) => console.log("  [cache]", ...a) });
    } catch (e) {
      die(`building the cache in ${CACHE} failed: ${e?.stack ?? e}\n(--no-build uses a folder as it is)`);
    }
    info.buildSeconds = round1((performance.now() - t0) / 1000);
    info.repos = Array.isArray(summary?.repos) ? summary.repos.map((r) => ({
      repoId: r.repoId, commit: r.commit, built: !!r.built, seconds: r.seconds == null ? null : round1(r.seconds),
      files: Array.isArray(r.files) ? r.files.length : null,
      bytes: Array.isArray(r.files) ? r.files.reduce((n, f) => n + (f.size ?? 0), 0) : null,
    })) : null;
    info.built = !!info.repos?.some((r) => r.built);
    info.note = info.built
      ? `built ${info.repos.filter((r) => r.built).map((r) => r.repoId).join(", ")} in ${info.buildSeconds} s`
      : `already built (checked in ${info.buildSeconds} s)`;
  }
  info.bytes = dirBytes(CACHE);
  info.repoFolders = fs.existsSync(CACHE) ? fs.readdirSync(CACHE).filter((f) => f.startsWith("models--")) : [];
  return info;
}

// ---------------------------------------------------------------------------------------------
// One notebook

const temps = new Set();
let child = null;
function cleanup() {
  for (const t of temps) fs.rmSync(t, { force: true });
  temps.clear();
}
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, () => {
    if (child?.pid) { try { process.kill(child.pid, "SIGTERM"); } catch { /* gone */ } }
    cleanup();
    process.exit(130);
  });
}
process.on("exit", cleanup);

/** An injected code cell (with an id when the notebook's nbformat has cell ids, 4.5+). */
const toCell = (nb, id, source) => ({
  cell_type: "code", execution_count: null, ...(nb.nbformat > 4 || nb.nbformat_minor >= 5 ? { id } : {}),
  metadata: { tags: ["rehearsal-injected"] }, outputs: [], source: source.split(/(?<=\n)/),
});

/** Descendant pids of `pid` (from /proc/<n>/stat's ppid). */
function descendants(pid) {
  const parent = new Map();
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch { /* exited */ }
  }
  const out = [];
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    for (const [c, pp] of parent) if (pp === p) { out.push(c); todo.push(c); }
  }
  return out;
}

function vmHwm(pid) {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

function outputText(o) {
  if (o.output_type === "stream") return Array.isArray(o.text) ? o.text.join("") : String(o.text ?? "");
  if (o.output_type === "error") return [o.ename, o.evalue, ...(o.traceback ?? [])].join("\n");
  const d = o.data ?? {};
  return ["text/plain", "text/markdown"].map((k) => (Array.isArray(d[k]) ? d[k].join("") : d[k] ?? "")).join("\n");
}

async function runOne(nb, index, total) {
  const original = JSON.parse(fs.readFileSync(nb.file, "utf8"));
  const copy = { ...original, cells: [toCell(original, "rehearsal-step-cap", CAP_CELL), ...original.cells, toCell(original, "rehearsal-report", REPORT_CELL)] };
  const base = path.basename(nb.file, ".ipynb");
  const temp = path.join(path.dirname(nb.file), `.rehearsal-${base}.ipynb`);
  const executed = path.join(EXEC_DIR, `${nb.dir}-${base}.ipynb`);
  const images = path.join(EXEC_DIR, `${nb.dir}-${base}_images`);
  temps.add(temp);
  fs.writeFileSync(temp, JSON.stringify(copy, null, 1) + "\n");
  fs.mkdirSync(EXEC_DIR, { recursive: true });
  fs.rmSync(executed, { force: true });

  const kernelEnv = { ...env(), HF_HUB_OFFLINE: "1", HF_HUB_CACHE: CACHE, KIT_REHEARSAL_STEPS: String(STEPS) };
  if (THREADS !== undefined) kernelEnv.TFJS_WASM_THREADS = THREADS;
  console.log(`[${index}/${total}] ${nb.name} (${nb.models.length ? nb.models.join(", ") : "no Hub model"}) ...`);
  const t0 = performance.now();
  let stdout = "", stderr = "", observedRss = 0;
  const status = await new Promise((resolve) => {
    child = spawn(jupyterPython(), [path.join(root, "scripts", "run_notebook.py"), temp, "--out", executed, "--images", images,
      "--timeout", String(TIMEOUT)], { env: kernelEnv, stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.on("data", (b) => { stdout += b; });
    child.stderr.on("data", (b) => { stderr += b; });
    let ticks = 0;
    const poll = setInterval(() => {
      for (const p of descendants(child.pid)) observedRss = Math.max(observedRss, vmHwm(p));
      if (++ticks % 300 === 0) console.log(`    ... ${Math.round((performance.now() - t0) / 60000)} min, kernel RSS peak so far ${gib(observedRss)}`);
    }, 2000);
    child.on("close", (code, signal) => { clearInterval(poll); resolve(code ?? (signal ? 128 : 1)); });
  });
  child = null;
  const seconds = round1((performance.now() - t0) / 1000);
  fs.rmSync(temp, { force: true });
  temps.delete(temp);

  const summaryLine = stdout.split("\n").find((l) => l.startsWith("{\"notebook\""));
  let summary = null;
  try { summary = summaryLine ? JSON.parse(summaryLine) : null; } catch { /* keep null */ }
  // cell indices of the copy -> of the original notebook (the injected first cell shifts them by one)
  const origIndex = (i) => (i === 0 ? "injected: step cap" : i === copy.cells.length - 1 ? "injected: report" : i - 1);
  const cellHead = (i) => {
    const c = copy.cells[i];
    return c ? (Array.isArray(c.source) ? c.source.join("") : c.source).split("\n").find((l) => l.trim()) ?? "" : "";
  };
  const slowestCells = (summary?.slowest_cells ?? []).map(([i, s]) => ({ cell: origIndex(i), seconds: round1(s), head: cellHead(i).slice(0, 100) }));

  let cells = [];
  try { cells = JSON.parse(fs.readFileSync(executed, "utf8")).cells; } catch { /* run_notebook.py died before writing */ }
  const lines = cells.flatMap((c) => (c.outputs ?? []).map(outputText)).join("\n").split("\n");
  const fallbackLines = lines.filter((l) => FALLBACK_PATTERNS.some((re) => re.test(l.trim()))).map((l) => l.trim().slice(0, 300));
  const reportLine = lines.find((l) => l.startsWith("@@REHEARSAL "));
  let report = null;
  try { report = reportLine ? JSON.parse(reportLine.slice("@@REHEARSAL ".length)) : null; } catch { /* keep null */ }

  let failure = null;
  if (status !== 0) {
    const m = /FAILED: .*, code cell #(-?\d+) \((\w+)\)/.exec(stderr);
    const i = m ? Number(m[1]) : null;
    failure = {
      cell: i === null ? null : origIndex(i),
      error: m ? m[2] : `run_notebook.py exited ${status}`,
      head: i === null ? null : cellHead(i).slice(0, 200),
      tail: stderr.trim().split("\n").slice(-40).join("\n").slice(-4000),
    };
  }
  const result = {
    name: nb.name,
    models: nb.models,
    status: fallbackLines.length ? "fell back" : failure ? "failed" : "ok",
    fellBack: fallbackLines.length > 0,
    fallbackLines: fallbackLines.slice(0, 6),
    failure,
    seconds,
    notebookSeconds: summary?.seconds ?? null,
    slowestCells,
    pngOutputs: summary?.png_outputs ?? null,
    rssPeakBytes: report?.rssPeakBytes ?? null,
    rssPeakObservedBytes: observedRss || null,
    wasmHeapBytes: report?.wasmHeapBytes ?? null,
    backend: report?.backend ?? null,
    backendDescription: report?.backendDescription ?? null,
    wasmThreads: report?.wasmThreads ?? null,
    stepCap: report?.stepCap ?? null,
    memoryPlans: report ? report.memoryPlans ?? null : null,
    tfMemoryAtEnd: report?.tfMemory ?? null,
    executed: path.relative(root, executed),
  };
  const note = result.status === "ok" ? "" : result.fellBack ? `: ${fallbackLines[0]}` : `: cell ${failure.cell} (${failure.error})`;
  console.log(`    ${result.status} in ${seconds} s${note}`);
  if (failure) console.log(failure.tail.split("\n").slice(-12).map((l) => "    | " + l).join("\n"));
  return result;
}

// ---------------------------------------------------------------------------------------------
// Report

function round1(x) {
  return Math.round(x * 10) / 10;
}
function gib(b) {
  return b == null ? "—" : `${(b / 2 ** 30).toFixed(2)} GiB`;
}
function machine() {
  let cpu = os.cpus()[0]?.model ?? "?";
  return { nproc: os.availableParallelism?.() ?? os.cpus().length, cpu, totalMemoryBytes: os.totalmem(), node: process.version };
}

function markdown(r) {
  const esc = (s) => String(s).replace(/\|/g, "\\|").replace(/\n/g, " ");
  const rows = r.notebooks.map((n) => {
    const status = n.status === "ok" ? "ok" : n.fellBack ? `**fell back**: ${esc(n.fallbackLines[0] ?? "")}`
      : `**failed** at cell ${n.failure?.cell} (${esc(n.failure?.error ?? "")})`;
    const slow = n.slowestCells.map((c) => `#${c.cell} ${c.seconds} s`).join(", ") || "—";
    const backend = n.backend ? `${n.backend}${n.wasmThreads ? `, ${n.wasmThreads} thr` : ""}` : "—";
    // one line per kind of call (what), with how many calls planned it and the last plan's summary
    const groups = new Map();
    for (const p of n.memoryPlans ?? []) groups.set(p.what, { count: (groups.get(p.what)?.count ?? 0) + 1, summary: p.summary });
    const plans = n.memoryPlans == null ? "—" : n.memoryPlans.length === 0 ? "none"
      : [...groups.values()].map((g) => esc(`${g.count > 1 ? `${g.count}× ` : ""}${g.summary}`)).join("<br>");
    const rss = n.rssPeakBytes ?? n.rssPeakObservedBytes;
    return `| ${n.name} | ${status} | ${n.seconds} | ${slow} | ${gib(rss)}${n.rssPeakBytes == null && rss ? " (observed)" : ""} | ${gib(n.wasmHeapBytes)} | ${backend} | ${plans} |`;
  });
  const m = r.machine;
  return [
    `# Rehearsal of the online path (${r.date})`,
    "",
    `KIT_REHEARSAL_STEPS=${r.steps}; cache ${r.cache.dir} (${gib(r.cache.bytes)}; ${r.cache.note}); ` +
      `${m.nproc} cores (${m.cpu}), ${gib(m.totalMemoryBytes)} RAM, load average ${r.loadAverage.start.map((x) => x.toFixed(2)).join("/")} at start, ` +
      `${r.loadAverage.end.map((x) => x.toFixed(2)).join("/")} at end; commit ${r.commit ?? "?"}; ${r.totalSeconds} s in all.`,
    "",
    "| notebook | status | seconds | slowest cells | peak RSS | wasm heap | backend | memory plans |",
    "| --- | --- | ---: | --- | ---: | ---: | --- | --- |",
    ...rows,
    "",
    r.ok ? "All notebooks took the Hub path and ran." : `**Rehearsal failed**: ${r.notebooks.filter((n) => n.status !== "ok").map((n) => `${n.name} (${n.status})`).join(", ")}.`,
    "",
  ].join("\n");
}

// ---------------------------------------------------------------------------------------------

const all = allNotebooks();
const chosen = select(all);
if (chosen.length === 0) die("no notebook loads a Hub model");
const startLoad = os.loadavg();
const t0 = performance.now();
registerKernel();
jupyterPython();   // a clear error before building anything when Jupyter is missing
const cache = await prepareCache();
console.log(`cache: ${cache.dir} (${gib(cache.bytes)}; ${cache.note}); steps capped at ${STEPS}; ${chosen.length} notebook(s)`);
let commit = null;
try { commit = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] }).trim(); } catch { /* not a checkout */ }
const date = new Date().toISOString();
const notebooks = [];
/** The report so far: written after each notebook (complete: false until the last), so a long run that stops keeps its results. */
const makeReport = (complete) => ({
  date,
  complete,
  ok: complete && notebooks.every((n) => n.status === "ok"),
  steps: STEPS,
  threads: THREADS ?? null,
  timeoutPerCellSeconds: TIMEOUT,
  only: ONLY ?? null,
  commit,
  machine: machine(),
  loadAverage: { start: startLoad, end: os.loadavg() },
  totalSeconds: round1((performance.now() - t0) / 1000),
  cache,
  notebooks,
});
const writeJson = (r) => {
  fs.mkdirSync(path.dirname(OUT_JSON), { recursive: true });
  fs.writeFileSync(OUT_JSON, JSON.stringify(r, null, 2) + "\n");
};
for (const [i, nb] of chosen.entries()) {
  notebooks.push(await runOne(nb, i + 1, chosen.length));
  if (i < chosen.length - 1) writeJson(makeReport(false));
}
const report = makeReport(true);
writeJson(report);
const md = markdown(report);
fs.writeFileSync(OUT_MD, md);
console.log("\n" + md);
console.log(`written: ${path.relative(process.cwd(), OUT_JSON)}, ${path.relative(process.cwd(), OUT_MD)}`);
process.exit(report.ok ? 0 : 1);
