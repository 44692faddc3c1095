// Picks the fastest tfjs backend that loads here: TensorFlow on CUDA (@tensorflow/tfjs-node-gpu),
// then TensorFlow on CPU (@tensorflow/tfjs-node), then WebAssembly, then plain JavaScript, and
// remembers why each better one was not taken. TFJS_BACKEND=tensorflow|wasm|cpu overrides;
// TFJS_WASM_THREADS (or wasmThreads) sets the wasm backend's thread count (wasm-threads.ts).
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { resolveWasmThreads, startWasmBackend, type WasmThreadsChoice, type WasmThreadsStatus } from "./wasm-threads.js";
import { installBackendFaultDetection, watchBackendStart } from "./backend-fault.js";
import { registerWasmKernels } from "./wasm/index.js";

export type BackendChoice = "tensorflow" | "wasm" | "cpu";

export interface BackendAttempt {
  candidate: string;     // e.g. "tensorflow (CUDA) via @tensorflow/tfjs-node-gpu"
  ok: boolean;
  why: string;           // why it was taken or skipped
}

export interface BackendReport {
  backend: string;       // tf.getBackend()
  device: "cuda" | "cpu";
  description: string;   // one line for people
  attempts: BackendAttempt[];
  override?: string;     // the TFJS_BACKEND value, if any
  /** wasm only: pool threads asked for and running, and why they differ */
  wasmThreads?: WasmThreadsStatus;
}

/** How a package is loaded; tests inject failures. */
export type Loader = (pkg: string) => unknown;

const defaultLoader: Loader = (pkg) => require(pkg);

let current: BackendReport | null = null;

/** CUDA 11.2 + cuDNN 8 are what libtensorflow 2.9 (tfjs-node-gpu 4.x) links against. */
export function findCudaLibraries(): { found: string[]; missing: string[] } {
  const wanted = ["libcudart.so.11.0", "libcudnn.so.8", "libcublas.so.11"];
  const dirs = [
    ...(process.env.LD_LIBRARY_PATH ?? "").split(":").filter(Boolean),
    "/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/local/cuda-11.2/lib64",
  ];
  const found: string[] = [];
  const missing: string[] = [];
  for (const lib of wanted) {
    const hit = dirs.find((d) => fs.existsSync(path.join(d, lib)));
    if (hit) found.push(path.join(hit, lib));
    else missing.push(lib);
  }
  return { found, missing };
}

function explainLoadError(pkg: string, e: unknown): string {
  const err = e as { code?: string; message?: string };
  if (err?.code === "MODULE_NOT_FOUND" && String(err.message).includes(pkg)) {
    return `${pkg} is not installed (its install downloads libtensorflow; without internet npm drops it). With internet: npm install ${pkg}`;
  }
  if (/tfjs_binding\.node/.test(String(err?.message))) {
    return `${pkg} is installed but its native binding is missing (libtensorflow was not downloaded): rerun npm rebuild ${pkg} with internet`;
  }
  return `${pkg} failed to load: ${String(err?.message ?? e).split("\n")[0]}`;
}

async function tryTensorflow(load: Loader, attempts: BackendAttempt[], allowGpu: boolean): Promise<BackendReport | null> {
  const pkgs = allowGpu ? ["@tensorflow/tfjs-node-gpu", "@tensorflow/tfjs-node"] : ["@tensorflow/tfjs-node"];
  for (const pkg of pkgs) {
    const gpuPkg = pkg.endsWith("-gpu");
    const label = gpuPkg ? `tensorflow (CUDA) via ${pkg}` : `tensorflow (CPU) via ${pkg}`;
    try {
      load(pkg);
      await tf.setBackend("tensorflow");
      await tf.ready();
      const backend = tf.backend() as unknown as { isUsingGpuDevice?: boolean };
      if (gpuPkg && !backend.isUsingGpuDevice) {
        const cuda = findCudaLibraries();
        const why = cuda.missing.length
          ? `loaded, but TensorFlow found no CUDA GPU (missing ${cuda.missing.join(", ")}: install CUDA 11.2 and cuDNN 8 or add them to LD_LIBRARY_PATH); running TensorFlow on the CPU`
          : "loaded, but TensorFlow found no usable CUDA GPU; running TensorFlow on the CPU";
        attempts.push({ candidate: label, ok: false, why });
        attempts.push({ candidate: `tensorflow (CPU) via ${pkg}`, ok: true, why: "TensorFlow's native CPU kernels" });
        return { backend: "tensorflow", device: "cpu", description: `tensorflow on CPU (${pkg})`, attempts };
      }
      attempts.push({ candidate: label, ok: true, why: gpuPkg ? "CUDA GPU in use" : "TensorFlow's native CPU kernels" });
      return { backend: "tensorflow", device: gpuPkg ? "cuda" : "cpu", description: `tensorflow on ${gpuPkg ? "CUDA GPU" : "CPU"} (${pkg})`, attempts };
    } catch (e) {
      attempts.push({ candidate: label, ok: false, why: explainLoadError(pkg, e) });
    }
  }
  return null;
}

async function tryWasm(load: Loader, attempts: BackendAttempt[], threads: WasmThreadsChoice): Promise<BackendReport | null> {
  try {
    const pkg = load("@tensorflow/tfjs-backend-wasm") as Parameters<typeof startWasmBackend>[0];
    const status: WasmThreadsStatus = { ...(await watchBackendStart(() => startWasmBackend(pkg, threads.threads))), choice: threads.choice };
    await tf.ready();
    registerWasmKernels(); // the kit's wasm kernels (runtime/wasm/) in place of the slow built-in ones
    const n = status.threads;
    const why = `WebAssembly SIMD kernels (XNNPACK), ${n === 1 ? "one thread" : `${n} threads`}` +
      (n !== status.requested ? ` (asked ${status.requested}: ${status.why})` : n > 1 ? ` (${status.why})` : "");
    attempts.push({ candidate: "wasm via @tensorflow/tfjs-backend-wasm", ok: true, why });
    return { backend: "wasm", device: "cpu", description: `wasm (WebAssembly SIMD, ${n} thread${n === 1 ? "" : "s"})`, attempts, wasmThreads: status };
  } catch (e) {
    attempts.push({ candidate: "wasm via @tensorflow/tfjs-backend-wasm", ok: false, why: explainLoadError("@tensorflow/tfjs-backend-wasm", e) });
    return null;
  }
}

async function useCpu(attempts: BackendAttempt[]): Promise<BackendReport> {
  await tf.setBackend("cpu");
  await tf.ready();
  attempts.push({ candidate: "cpu (plain JavaScript)", ok: true, why: "always available; 30-250x slower than wasm" });
  return { backend: "cpu", device: "cpu", description: "cpu (plain JavaScript, slow)", attempts };
}

export interface InitBackendOptions {
  /** one backend to use (else env TFJS_BACKEND, else the best that loads) */
  prefer?: BackendChoice;
  /** choose again even if a backend was chosen before */
  force?: boolean;
  /** how packages are loaded (tests inject failures) */
  load?: Loader;
  /**
   * wasm pool threads: a count or "auto" (one per core other jobs leave free); else env
   * TFJS_WASM_THREADS, else DEFAULT_WASM_THREADS. Set it before any tensor exists: a running wasm
   * backend restarts only when no tensor lives. Results are bit-identical for any count.
   */
  wasmThreads?: number | "auto";
}

/** Thread count when neither wasmThreads nor TFJS_WASM_THREADS says (see README, Backends, and resolveWasmThreads). */
export const DEFAULT_WASM_THREADS: number | "auto" = "auto";

/**
 * Selects and initialises the backend (once; later calls return the same report unless
 * `force`). `prefer` (or env TFJS_BACKEND) names one backend to use; it fails loudly if unavailable.
 */
export async function initBackend(opts: InitBackendOptions = {}): Promise<BackendReport> {
  if (current && !opts.force) return current;
  const load = opts.load ?? defaultLoader;
  const threads = opts.wasmThreads !== undefined
    ? resolveWasmThreads(opts.wasmThreads, "wasmThreads")
    : process.env.TFJS_WASM_THREADS
      ? resolveWasmThreads(process.env.TFJS_WASM_THREADS, "TFJS_WASM_THREADS")
      : resolveWasmThreads(DEFAULT_WASM_THREADS, "default");
  const override = opts.prefer ?? (process.env.TFJS_BACKEND as BackendChoice | undefined);
  const attempts: BackendAttempt[] = [];
  let report: BackendReport | null = null;
  if (override) {
    if (!["tensorflow", "wasm", "cpu"].includes(override)) {
      throw new Error(`TFJS_BACKEND="${override}" is not a backend; use tensorflow, wasm or cpu`);
    }
    if (override === "tensorflow") report = await tryTensorflow(load, attempts, true);
    else if (override === "wasm") report = await tryWasm(load, attempts, threads);
    else report = await useCpu(attempts);
    if (!report) {
      throw new Error(`The ${override} backend was requested (TFJS_BACKEND or prefer) but could not start: ${attempts.map((a) => a.why).join("; ")}`);
    }
    report.override = override;
  } else {
    report = (await tryTensorflow(load, attempts, true)) ?? (await tryWasm(load, attempts, threads)) ?? (await useCpu(attempts));
  }
  current = report;
  installBackendFaultDetection(); // backend faults say so on every later call (backend-fault.ts)
  return report;
}

/**
 * The report of the backend in use. When the kit has not chosen one yet: keep a backend the user
 * already set with tf.setBackend, otherwise pick the best (initBackend).
 */
export async function backendReport(): Promise<BackendReport> {
  if (current) return current;
  const active = (tf.engine() as unknown as { backendName: string | null }).backendName;
  if (active) {
    if (active === "wasm") registerWasmKernels();
    current = { backend: active, device: "cpu", description: `${active} (set with tf.setBackend before the kit chose)`, attempts: [] };
    return current;
  }
  return initBackend();
}

/** Human-readable explanation: the backend in use and why each better one was not taken. */
export function formatBackendReport(r: BackendReport): string {
  const lines = [`tfjs backend: ${r.description}${r.override ? ` (forced by TFJS_BACKEND=${r.override})` : ""}`];
  for (const a of r.attempts) lines.push(`  ${a.ok ? "[x]" : "[ ]"} ${a.candidate}: ${a.why}`);
  if (r.wasmThreads?.choice) lines.push(`  wasm threads: ${r.wasmThreads.threads} (asked ${r.wasmThreads.requested}; ${r.wasmThreads.choice})`);
  lines.push(`  tfjs ${tf.version_core}, Node ${process.version}, ${process.platform}-${process.arch}`);
  return lines.join("\n");
}

/** Prints which backend runs and why (the notebook helper and `npm run doctor`). */
export async function doctor(): Promise<BackendReport> {
  const r = await backendReport();
  console.log(formatBackendReport(r));
  return r;
}
