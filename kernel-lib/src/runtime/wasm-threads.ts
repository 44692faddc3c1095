// Both cores for @tensorflow/tfjs-backend-wasm in Node: its threaded SIMD build (emscripten pthreads
// on worker_threads, XNNPACK's thread pool) refuses to start there. Written against the internals of
// tfjs-backend-wasm 4.22.0 (dist/tf-backend-wasm.node.js, wasm-out/*threaded-simd*); any other
// version is refused with a reason and runs on one thread. The five blockers and what we do
// (measured in shared/TOOLCHAIN.md section 7):
//  1. WASM_HAS_MULTITHREAD_SUPPORT is false whenever IS_NODE (tfjs#3830): set it, and setThreadsCount,
//     before the backend is created.
//  2. The pthread worker script is a blob: URL, which worker_threads rejects (ERR_WORKER_PATH): its
//     source (wasmWorkerContents) is written to a real .cjs file, and URL.createObjectURL returns that
//     path while setBackend runs.
//  3. Each worker is sent the main script as a Blob it cannot load: a prelude in the worker file maps
//     the worker's URL.createObjectURL(Blob) to the package's self-contained glue script.
//  4. The C++ side caps the pool at os.cpus().length / 2: os.cpus() reports 2 x threads entries while
//     setBackend runs.
//  5. A worker running an XNNPACK pool thread holds the process open: those are unref()'d, and the
//     idle pre-spawned workers (8 - (threads - 1)) are terminated.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as workerThreads from "node:worker_threads";
import * as tf from "@tensorflow/tfjs";

/** The tfjs-backend-wasm version whose internals this file relies on. */
export const WASM_THREADS_TFJS_VERSION = "4.22.0";

const PKG = "@tensorflow/tfjs-backend-wasm";

interface WasmPackage { setThreadsCount(n: number): void; getThreadsCount(): number; version_wasm?: string }
interface EmWorker { unref(): void; terminate(): unknown }
interface PThreadApi { unusedWorkers: EmWorker[]; runningWorkers: EmWorker[] }

/** How a wasm backend start went: threads asked for and running, and why they differ. */
export interface WasmThreadsStatus {
  requested: number;
  threads: number;
  why: string;
  /** how the requested count was chosen, e.g. "TFJS_WASM_THREADS=2" or "auto: 2 cores, load average 0.1" */
  choice?: string;
}

/** A thread count and how it was chosen. */
export interface WasmThreadsChoice { threads: number; choice: string }

/**
 * Parses a wasmThreads option or TFJS_WASM_THREADS value: a count >= 1, or "auto": one thread per core
 * that other jobs leave free (cores minus the 1-minute load average, rounded, at least 1). Measured
 * on 2 cores (bench --only=threads, README "wasm threads"): idle, 2 threads run matMul/conv2d ~1.9x
 * faster; while other jobs keep the cores busy, big ops gain 0.8-1.2x, the ddpm-cat-256 UNet ~1.5x, and
 * small models get 2-5x slower (the pool waits for a thread the OS has not scheduled).
 */
export function resolveWasmThreads(value: number | "auto" | string | undefined, source: string, loadAverage = os.loadavg()[0]): WasmThreadsChoice {
  if (value === undefined || value === "") return { threads: 1, choice: "default" };
  if (value === "auto") {
    const cores = Math.max(1, os.cpus().length);
    const free = Math.max(1, Math.min(cores, Math.round(cores - loadAverage)));
    return { threads: free, choice: `${source}=auto: ${cores} cores, 1-minute load average ${loadAverage.toFixed(2)} -> ${free} free` };
  }
  const n = typeof value === "number" ? value : Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new Error(`${source}=${JSON.stringify(value)} is not a thread count: use a whole number >= 1 or "auto"`);
  }
  return { threads: n, choice: `${source}=${n}` };
}

function packageFile(rel: string): string {
  return require.resolve(`${PKG}/${rel}`);
}

/** The pthread worker script as a real file (blockers 2 and 3), written once per content. */
function workerScriptFile(): string {
  const contents = (require(packageFile("wasm-out/tfjs-backend-wasm-threaded-simd.worker.js")) as { wasmWorkerContents: string }).wasmWorkerContents;
  const glue = packageFile("wasm-out/tfjs-backend-wasm-threaded-simd.js");
  const prelude = `// kernel-lib: the main script reaches a worker as a Blob; load the package's glue script instead.\n` +
    `URL.createObjectURL = function () { return ${JSON.stringify(glue)}; };\nURL.revokeObjectURL = function () {};\n`;
  // As tfjs does for its Blob: the template literal turned the source's "\n" escapes into newlines.
  const text = prelude + contents.replace(/\n/g, "\\n");
  const hash = crypto.createHash("sha256").update(text).digest("hex").slice(0, 16);
  const file = path.join(os.tmpdir(), `kernel-lib-tfjs-wasm-worker-${hash}.cjs`);
  if (!fs.existsSync(file) || fs.readFileSync(file, "utf8") !== text) {
    const tmp = `${file}.${process.pid}.tmp`;
    fs.writeFileSync(tmp, text);
    fs.renameSync(tmp, file); // atomic: parallel processes never read half a file
  }
  return file;
}

export interface WasmStartOptions {
  /** the pthread worker script to use instead of the generated one (tests use a broken one) */
  workerScript?: string;
  /** how long the threaded start may take before it counts as failed (default 60 s) */
  timeoutMs?: number;
}

/**
 * Runs `fn` with URL.createObjectURL -> the worker file and os.cpus() -> 2 x threads entries (blockers
 * 2, 4). Workers start without the parent's execArgv: loader hooks (tsx, vitest) must not transform
 * emscripten's scripts, and they only run wasm. A worker error during the start (emscripten rethrows
 * it, which would end the process) or no answer within the time limit fails the start instead.
 */
async function withThreadedStartPatches(threads: number, fn: () => Promise<boolean>, opts: WasmStartOptions): Promise<boolean> {
  const workerFile = opts.workerScript ?? workerScriptFile();
  const createObjectURL = URL.createObjectURL;
  const nodeOs = require("node:os") as { cpus: typeof os.cpus }; // the module object the backend reads (not an import copy)
  const cpus = nodeOs.cpus;
  const wt = require("node:worker_threads") as { Worker: typeof workerThreads.Worker };
  const Worker = wt.Worker;
  URL.createObjectURL = (() => workerFile) as typeof URL.createObjectURL;
  nodeOs.cpus = () => {
    const real = cpus();
    return Array.from({ length: 2 * threads }, (_, i) => real[i % real.length]);
  };
  let starting = true;
  let startFailed = false; // the workers of a failed start keep failing: their errors are dropped
  const workers: workerThreads.Worker[] = [];
  let rejectStart: (e: Error) => void = () => {};
  const failed = new Promise<never>((_, reject) => { rejectStart = reject; });
  const failStart = (e: Error) => { startFailed = true; rejectStart(e); };
  wt.Worker = class extends Worker {
    constructor(file: string | URL, options?: workerThreads.WorkerOptions) {
      super(file, { execArgv: [], ...options });
      workers.push(this);
      // a worker that fails before emscripten listens would otherwise raise an uncaught 'error'
      super.on("error", (e: unknown) => { if (starting) failStart(e instanceof Error ? e : new Error(String(e))); });
      const on = this.on.bind(this) as (event: string, listener: (e: unknown) => void) => this;
      (this as unknown as { on: typeof on }).on = (event, listener) => (event !== "error" ? on(event, listener) : on(event, (e) => {
        if (!starting && !startFailed) return listener(e);
        try { listener(e); } catch { /* reported below as the start's failure */ }
        failStart(e instanceof Error ? e : new Error(String(e)));
      }));
    }
  };
  const timeoutMs = opts.timeoutMs ?? 60_000;
  const timer = setTimeout(() => failStart(new Error(`the pool workers did not start within ${timeoutMs / 1000} s`)), timeoutMs);
  try {
    const ok = await Promise.race([fn(), failed]);
    if (!ok) throw new Error("setBackend returned false");
    return ok;
  } catch (e) {
    startFailed = true;
    for (const w of workers) void w.terminate();
    throw e;
  } finally {
    starting = false;
    clearTimeout(timer);
    URL.createObjectURL = createObjectURL;
    nodeOs.cpus = cpus;
    wt.Worker = Worker;
  }
}

/** The emscripten PThread object of the active wasm backend (null for the single-thread build). */
function pthreads(): PThreadApi | null {
  const b = tf.engine().registry["wasm"] as unknown as { wasm?: { PThread?: PThreadApi } } | undefined;
  return b?.wasm?.PThread ?? null;
}

/** Blocker 5: pool threads must not keep Node alive; pre-spawned idle workers go. */
function releaseWorkers(): void {
  const p = pthreads();
  if (!p) return;
  for (const w of p.runningWorkers) w.unref();
  for (const w of p.unusedWorkers) void w.terminate();
  p.unusedWorkers.length = 0;
}

/** Pool threads the active wasm backend runs (1 for the single-thread build or when not started). */
export function wasmThreadsInUse(): number {
  const b = tf.engine().registry["wasm"];
  if (!b) return 1;
  try {
    return (require(PKG) as WasmPackage).getThreadsCount();
  } catch {
    return 1;
  }
}

/**
 * Starts tfjs's wasm backend with `threads` pool threads (1 = the plain SIMD build). An already
 * started wasm backend is restarted only when no tensor lives (they would be lost with it).
 * Falls back to one thread with the reason when the threaded build cannot start.
 */
export async function startWasmBackend(wasm: WasmPackage, threads: number, opts: WasmStartOptions = {}): Promise<Omit<WasmThreadsStatus, "choice">> {
  const version = wasm.version_wasm ?? "unknown";
  const started = tf.engine().registry["wasm"] != null;
  let why = "";
  let want = threads;
  if (want > 1 && version !== WASM_THREADS_TFJS_VERSION) {
    why = `threads need @tensorflow/tfjs-backend-wasm ${WASM_THREADS_TFJS_VERSION} (its Node internals are patched at start); found ${version}`;
    want = 1;
  }
  if (want > 1 && typeof SharedArrayBuffer === "undefined") {
    why = "threads need SharedArrayBuffer, which this Node does not provide";
    want = 1;
  }
  if (started && wasmThreadsInUse() !== want) {
    const live = liveTensors();
    if (live > 0) {
      const n = wasmThreadsInUse();
      return {
        requested: threads, threads: n,
        why: `the wasm backend already runs ${n} thread(s) and ${live} tensors live: choose wasmThreads before creating tensors (call initBackend first)`,
      };
    }
    restartWasm();
  }
  if (tf.engine().registry["wasm"]) {
    await tf.setBackend("wasm");
    return { requested: threads, threads: wasmThreadsInUse(), why: why || "already running" };
  }
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", want > 1);
  wasm.setThreadsCount(want);
  if (want === 1) {
    if (!(await tf.setBackend("wasm"))) throw new Error("tf.setBackend('wasm') returned false");
    return { requested: threads, threads: 1, why: why || (threads === 1 ? "one thread asked for" : "") };
  }
  let ok = false;
  let failure = "";
  try {
    ok = await withThreadedStartPatches(want, () => tf.setBackend("wasm"), opts);
  } catch (e) {
    failure = String((e as Error)?.message ?? e).split("\n")[0] || "no reason given";
  }
  if (ok) {
    releaseWorkers();
    const n = wasmThreadsInUse();
    return { requested: threads, threads: n, why: n === want ? `threaded SIMD build, ${n} pool threads on worker_threads` : `the threaded build started with ${n} pool threads (asked ${want})` };
  }
  // Clean fallback: drop the half-started backend and start the single-thread build.
  restartWasm();
  tf.env().set("WASM_HAS_MULTITHREAD_SUPPORT", false);
  wasm.setThreadsCount(1);
  if (!(await tf.setBackend("wasm"))) throw new Error("tf.setBackend('wasm') returned false");
  return { requested: threads, threads: 1, why: `the threaded build failed to start (${failure}); running one thread` };
}

/** Live tensors, read without starting a backend (tf.memory() would start one). */
function liveTensors(): number {
  return (tf.engine() as unknown as { state: { numTensors: number } }).state.numTensors;
}

/** Removes the wasm backend instance and registers its factory again, so the next start re-creates the module. */
function restartWasm(): void {
  const factory = tf.findBackendFactory("wasm");
  if (!factory) throw new Error("the wasm backend is not registered: require('@tensorflow/tfjs-backend-wasm') first");
  const priority = (tf.engine() as unknown as { registryFactory: Record<string, { priority: number }> }).registryFactory["wasm"]?.priority ?? 2;
  tf.removeBackend("wasm");
  tf.registerBackend("wasm", factory, priority);
}
