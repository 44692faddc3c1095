// Backend faults: when tfjs's wasm module breaks, say so on every later call instead of failing silently.
//
// What really happens (tfjs-backend-wasm 4.22.0, 1 and 2 threads alike; measured, README "Backends"):
//  - Heap exhausted, C++ side: `operator new` fails, emscripten prints "Aborted()" and throws a
//    WebAssembly.RuntimeError "Aborted(). Build with -sASSERTIONS for more info." from the op that hit it. Nothing
//    marks the module dead: tf.memory() and reads of old tensors still answer, and each later op aborts again (or
//    works, when memory was freed, on a runtime emscripten says must not be used after an abort).
//  - XNNPACK cannot allocate (packing a matMul's or conv's weights): it prints "XNN status for
//    xnn_create_fully_connected_nc_f32 is not successful. Got status 6. ..." (6 = out of memory) and the op RETURNS
//    uninitialised memory (3.7e-41, 0, ...): a silent wrong answer. A conv caches the failed (null) operator for
//    its weight, so that layer stays wrong.
//  - Heap exhausted, JS side: BackendWasm.move writes the tensor at the offset malloc returned, 0 on failure, over
//    the module's own data: later ops give garbage, then "memory access out of bounds"; on 2 threads the next
//    dispose spins forever in free().
// What this file does (installed by initBackend, runtime/backend.ts):
//  - The engine's kernel dispatch (runKernelFunc) and each backend instance's write / move / makeOutput / read /
//    readSync / disposeData / dispose are wrapped. A fault is recorded from the module's onAbort hook, from a
//    WebAssembly.RuntimeError thrown by the module, or from an XNNPACK "not successful" line on the module's stderr.
//    From then on every kernel call and tensor read or write on that backend throws a BackendFaultError saying what
//    happened and how to recover; the kernel that faulted disposes its outputs and throws too. Disposing tensors
//    keeps working (bookkeeping only: the module is not entered again).
//  - wasm's malloc returning 0 for a tensor throws a BackendOutOfMemoryError before anything is written: nothing is
//    lost, the backend keeps working.
//  - resetBackend() (reset-backend.ts) re-creates the backend through initBackend, with a fresh heap; tensors of the old one throw a
//    BackendFaultError when read or used.
// The wasm module's stderr is read from console.warn (single-thread build: the module binds console.warn when it is
// created, so initBackend creates it inside watchBackendStart) and fs.writeSync(2, ...) (threaded build in Node).
// The state lives on globalThis, so two copies of the kit in one process (src and dist) share it.
import * as tf from "@tensorflow/tfjs";

/** What faulted, when, and why (see backendFault()). */
export interface BackendFault {
  /** the backend's name, e.g. "wasm" */
  backend: string;
  /** abort: the module's abort(); trap: another WebAssembly.RuntimeError; xnnpack: XNNPACK failed inside an op; reset: resetBackend() replaced the backend */
  kind: "abort" | "trap" | "xnnpack" | "reset";
  /** the original error's (or XNNPACK line's) first line */
  firstLine: string;
  /** the tfjs kernel that was running, when known */
  kernel: string | null;
  /** the heap (or XNNPACK) ran out of memory */
  outOfMemory: boolean;
  /** wasm heap size at the fault (bytes), null on other backends */
  heapBytes: number | null;
  time: Date;
  /** recorded by simulateBackendFault (tests) */
  simulated: boolean;
}

/** The most a wasm32 heap can grow to (65536 pages of 64 KiB). */
const WASM_HEAP_MAX = 4 * 1024 ** 3;
/** A heap this close to its maximum counts as full when the module aborts. */
const HEAP_FULL_MARGIN = 256 * 1024 ** 2;

const XNN_LINE = /XNN status for (\S+) is not successful\. Got status (\d+)/;
const XNN_OUT_OF_MEMORY = "6"; // xnn_status_out_of_memory

const MEMORY_ADVICE = "let the pipeline plan its memory (pipe.memory = \"auto\", the default) or save memory by hand: " +
  "enableAttentionSlicing(\"max\"), enableVaeTiling(), enableModelCpuOffload() or enableSequentialCpuOffload(); or use smaller images or batches.";

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} bytes`;
  if (bytes < 1024 ** 2) return `${(bytes / 1024).toFixed(1)} KiB`;
  if (bytes < 1024 ** 3) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
}

function faultMessage(f: BackendFault, replaced: boolean): string {
  if (f.kind === "reset" || replaced) {
    const why = f.kind === "reset" ? "" : ` after it faulted ("${f.firstLine}")`;
    return `This tensor lived on the ${f.backend} backend that resetBackend() replaced${why}: its data is gone with the old heap. ` +
      "Create it again on the new backend: load the models again / re-run the cells from loading on.";
  }
  const where = f.kernel ? ` in the ${f.kernel} kernel` : "";
  const what = f.kind === "xnnpack"
    ? `XNNPACK failed${where}: "${f.firstLine}" (its result would have been uninitialised memory, and a failed operator stays cached)`
    : f.kind === "trap"
      ? `WebAssembly trapped${where}: "${f.firstLine}" (the module's memory may be corrupt)`
      : `the module aborted${where}: "${f.firstLine}"`;
  const lines = [`The ${f.backend} backend faulted${f.simulated ? " (simulated by simulateBackendFault)" : ""}: ${what}.`];
  if (f.outOfMemory) {
    const size = f.heapBytes === null ? "" : ` (it had grown to ${formatBytes(f.heapBytes)}; a wasm heap cannot grow past 4 GiB)`;
    const xnn = f.kind === "xnnpack" && XNN_LINE.exec(f.firstLine)?.[2] === XNN_OUT_OF_MEMORY ? "XNNPACK could not allocate memory (status 6 = out of memory): " : "";
    lines.push(`Cause: ${xnn}the wasm heap ran out of memory${size}. Next time ${MEMORY_ADVICE}`);
  }
  lines.push(`Every tensor on the ${f.backend} backend is lost, loaded model weights included, and every tfjs call on it throws this error.`);
  lines.push("To recover: `await resetBackend()` (a fresh backend with an empty heap), then load the models again: re-run the cells from " +
    "the loading cell on. In Jupyter, restarting the kernel also works.");
  return lines.join("\n");
}

const BackendFaultErrorImpl = class BackendFaultError extends Error {
  readonly fault: BackendFault;
  /** `replaced`: the error is about a tensor of a backend that resetBackend() has replaced since */
  constructor(fault: BackendFault, options?: { cause?: unknown; replaced?: boolean }) {
    super(faultMessage(fault, options?.replaced === true), options?.cause === undefined ? undefined : { cause: options.cause });
    this.name = "BackendFaultError";
    this.fault = fault;
  }
};

const BackendOutOfMemoryErrorImpl = class BackendOutOfMemoryError extends Error {
  /** bytes that could not be allocated */
  readonly bytes: number;
  constructor(message: string, bytes: number) {
    super(message);
    this.name = "BackendOutOfMemoryError";
    this.bytes = bytes;
  }
};

// ---- shared state ---------------------------------------------------------------------------------------------

interface BackendLike {
  wasm?: EmModule | null;
  dataIdMap?: { has(id: object): boolean; get(id: object): { refCount: number }; delete(id: object): boolean };
  [method: string]: unknown;
}

interface EmModule {
  HEAPU8?: Uint8Array;
  onAbort?: (what: unknown) => unknown;
  _malloc?: (n: number) => number;
  _free?: (p: number) => void;
  asm?: { malloc?: (n: number) => number };
  PThread?: { terminateAllThreads(): void };
}

interface EngineLike {
  backendName: string | null;
  registry: Record<string, BackendLike>;
  registryFactory: Record<string, { factory: () => unknown; priority: number }>;
  runKernelFunc: ((this: EngineLike, params: { kernelName?: string }) => unknown) & { [WRAPPED]?: true };
}

const WRAPPED = Symbol.for("kernel-lib.backend-fault.wrapped");

interface Shared {
  version: 1;
  /** backend instance -> its fault, or its retirement by resetBackend */
  faults: WeakMap<object, BackendFault>;
  instrumented: WeakSet<object>;
  /** instances whose JS-side malloc failed (what was asked) */
  oomSeen: WeakMap<object, number>;
  /** kernels running now, innermost last */
  kernels: string[];
  simulating: boolean;
  fsHooked: boolean;
  BackendFaultError: typeof BackendFaultErrorImpl;
  BackendOutOfMemoryError: typeof BackendOutOfMemoryErrorImpl;
}

const SHARED = Symbol.for("kernel-lib.backend-fault");
const shared: Shared = ((globalThis as Record<symbol, Shared | undefined>)[SHARED] ??= {
  version: 1,
  faults: new WeakMap(),
  instrumented: new WeakSet(),
  oomSeen: new WeakMap(),
  kernels: [],
  simulating: false,
  fsHooked: false,
  BackendFaultError: BackendFaultErrorImpl,
  BackendOutOfMemoryError: BackendOutOfMemoryErrorImpl,
});

/**
 * Thrown by every tfjs call on a backend that faulted (the wasm module aborted, trapped, or XNNPACK failed inside an
 * op), and by reads of tensors of a backend that resetBackend() replaced. `fault` says what happened; the message
 * says how to recover (resetBackend(), then load the models again).
 */
export const BackendFaultError: typeof BackendFaultErrorImpl = shared.BackendFaultError;
export type BackendFaultError = InstanceType<typeof BackendFaultErrorImpl>;

/** The wasm heap could not hold a new tensor. Nothing was written and nothing is lost: the backend still works. */
export const BackendOutOfMemoryError: typeof BackendOutOfMemoryErrorImpl = shared.BackendOutOfMemoryError;
export type BackendOutOfMemoryError = InstanceType<typeof BackendOutOfMemoryErrorImpl>;

function engine(): EngineLike {
  return tf.engine() as unknown as EngineLike;
}

function activeBackend(e: EngineLike = engine()): BackendLike | null {
  return e.backendName != null ? e.registry[e.backendName] ?? null : null;
}

function isWasmBackend(b: BackendLike): boolean {
  return b.wasm != null && typeof b.wasm === "object" && "HEAPU8" in b.wasm;
}

function backendName(b: BackendLike): string {
  const e = engine();
  for (const [name, inst] of Object.entries(e.registry)) if (inst === b) return name;
  return "wasm" in b ? "wasm" : "unknown";
}

/** The instance is no longer registered (resetBackend() replaced it). */
function isReplaced(b: BackendLike): boolean {
  return !Object.values(engine().registry).includes(b);
}

function heapBytes(b: BackendLike): number | null {
  return b.wasm?.HEAPU8?.length ?? null;
}

function firstLine(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split("\n")[0];
}

function isWasmTrap(e: unknown): boolean {
  const RuntimeError = (globalThis as { WebAssembly?: { RuntimeError?: new () => Error } }).WebAssembly?.RuntimeError;
  return (RuntimeError != null && e instanceof RuntimeError) || (e instanceof Error && e.name === "RuntimeError");
}

function isOurError(e: unknown): boolean {
  return e instanceof shared.BackendFaultError || e instanceof shared.BackendOutOfMemoryError;
}

/** Records the first fault of a backend instance (later ones keep the first). */
function recordFault(b: BackendLike, p: { kind: BackendFault["kind"]; firstLine: string; outOfMemory?: boolean }): BackendFault {
  const existing = shared.faults.get(b);
  if (existing) return existing;
  const heap = heapBytes(b);
  const f: BackendFault = {
    backend: backendName(b),
    kind: p.kind,
    firstLine: p.firstLine,
    kernel: shared.kernels.length ? shared.kernels[shared.kernels.length - 1] || null : null,
    outOfMemory: p.kind !== "reset" && (p.outOfMemory === true || shared.oomSeen.has(b) || (heap !== null && heap >= WASM_HEAP_MAX - HEAP_FULL_MARGIN)),
    heapBytes: heap,
    time: new Date(),
    simulated: shared.simulating,
  };
  shared.faults.set(b, f);
  return f;
}

/** The error to throw for `err` raised while `b` ran: a BackendFaultError when `b` faulted (now or before). */
function asFault(err: unknown, b: BackendLike | null): unknown {
  if (isOurError(err) || !b) return err;
  let f = shared.faults.get(b);
  if (!f && isWasmTrap(err) && isWasmBackend(b)) f = recordFault(b, { kind: "trap", firstLine: firstLine(err) });
  return f ? new shared.BackendFaultError(f, { cause: err }) : err;
}

// ---- the module's stderr --------------------------------------------------------------------------------------

/** Looks at a line the wasm module printed: an XNNPACK failure faults the active wasm backend. */
function inspectOutput(text: unknown): void {
  if (typeof text !== "string" || !text.includes("XNN status")) return;
  const m = XNN_LINE.exec(text);
  if (!m) return;
  const b = activeBackend();
  if (!b || !isWasmBackend(b)) return;
  recordFault(b, { kind: "xnnpack", firstLine: text.trim().split("\n")[0], outOfMemory: m[2] === XNN_OUT_OF_MEMORY });
}

/** Threaded build in Node: the module prints with fs.writeSync(2, text). Wrapped once per process, transparently. */
function hookFsWriteSync(): void {
  if (shared.fsHooked) return;
  shared.fsHooked = true;
  const nodeFs = require("node:fs") as { writeSync: (...args: unknown[]) => number }; // the module object the glue reads
  const writeSync = nodeFs.writeSync;
  nodeFs.writeSync = function (this: unknown, ...args: unknown[]) {
    if (args[0] === 2) inspectOutput(args[1]);
    return writeSync.apply(this, args);
  };
}

/**
 * Runs `start` (which creates the wasm module) with console.warn and console.log forwarding through a reader of
 * the module's output: the single-thread build binds them when it is created, so its XNNPACK failures are seen.
 * Both are restored when `start` ends. Used by initBackend around the wasm start.
 */
export async function watchBackendStart<T>(start: () => Promise<T>): Promise<T> {
  const warn = console.warn;
  const log = console.log;
  const fwdWarn = function (this: unknown, ...args: unknown[]) { inspectOutput(args[0]); return warn.apply(this, args); };
  const fwdLog = function (this: unknown, ...args: unknown[]) { inspectOutput(args[0]); return log.apply(this, args); };
  console.warn = fwdWarn;
  console.log = fwdLog;
  try {
    return await start();
  } finally {
    if (console.warn === fwdWarn) console.warn = warn;
    if (console.log === fwdLog) console.log = log;
  }
}

// ---- wrappers -------------------------------------------------------------------------------------------------

function hookModule(b: BackendLike, mod: EmModule): void {
  const onAbort = mod.onAbort;
  // emscripten's abort(what) calls Module.onAbort(what), then throws RuntimeError("Aborted(" + what + "). Build with ...")
  mod.onAbort = function (this: unknown, what: unknown) {
    recordFault(b, { kind: "abort", firstLine: `Aborted(${what}). Build with -sASSERTIONS for more info.` });
    return onAbort?.call(this, what);
  };
  const malloc = mod.asm?.malloc ?? mod._malloc; // the export itself: the glue's _malloc stub replaces itself on first call
  if (typeof malloc === "function") {
    mod._malloc = (n: number) => {
      const p = malloc(n);
      if (p === 0 && n > 0) {
        shared.oomSeen.set(b, n);
        const heap = heapBytes(b);
        throw new shared.BackendOutOfMemoryError(
          `The wasm heap is out of memory: ${formatBytes(n)} for a new tensor could not be allocated (` +
          `${heap === null ? "" : `the heap has grown to ${formatBytes(heap)} and cannot grow past 4 GiB; `}` +
          `tfjs tensors hold ${formatBytes(tf.memory().numBytes)}). Nothing was written and nothing is lost: the backend still works. ` +
          `Free memory (dispose tensors and models you no longer use), or ${MEMORY_ADVICE}`, n);
      }
      return p;
    };
  }
  if (mod.PThread) hookFsWriteSync();
}

function wrapMethod(b: BackendLike, name: string, make: (orig: (...args: unknown[]) => unknown) => (...args: unknown[]) => unknown): void {
  const orig = b[name];
  if (typeof orig !== "function") return;
  b[name] = make(orig as (...args: unknown[]) => unknown);
}

/** Wraps one backend instance (once): see the top of this file. */
function instrumentBackend(b: BackendLike): void {
  if (shared.instrumented.has(b)) return;
  shared.instrumented.add(b);
  const wasm = isWasmBackend(b);
  for (const name of ["write", "move", "makeOutput"]) {
    wrapMethod(b, name, (orig) => function (this: BackendLike, ...args: unknown[]) {
      const f = shared.faults.get(this);
      if (f) throw new shared.BackendFaultError(f, { replaced: isReplaced(this) });
      try {
        return orig.apply(this, args);
      } catch (e) {
        throw asFault(e, this);
      }
    });
  }
  for (const name of ["read", "readSync", "readToGPU"]) {
    wrapMethod(b, name, (orig) => function (this: BackendLike, ...args: unknown[]) {
      const f = shared.faults.get(this);
      if (f) throw new shared.BackendFaultError(f, { replaced: isReplaced(this) });
      return orig.apply(this, args);
    });
  }
  wrapMethod(b, "disposeData", (orig) => function (this: BackendLike, dataId: unknown, force?: unknown) {
    if (shared.faults.has(this) && wasm) {
      // bookkeeping only: a faulted module is not entered again (on 2 threads its free() can spin forever)
      const map = this.dataIdMap;
      if (map && map.has(dataId as object)) {
        const data = map.get(dataId as object);
        data.refCount--;
        if (!force && data.refCount > 0) return false;
        map.delete(dataId as object);
      }
      return true;
    }
    try {
      return orig.call(this, dataId, force);
    } catch (e) {
      if (!wasm || !isWasmTrap(e)) throw e;
      recordFault(this, { kind: "trap", firstLine: firstLine(e) }); // disposing never throws: the next call says it
      return true;
    }
  });
  wrapMethod(b, "dispose", (orig) => function (this: BackendLike) {
    if (shared.faults.has(this) && wasm) {
      try { this.wasm?.PThread?.terminateAllThreads(); } catch { /* the workers go with the process */ }
      this.wasm = null;
      return;
    }
    return orig.call(this);
  });
  if (wasm) hookModule(b, b.wasm!);
}

function wrapEngine(): void {
  const e = engine();
  if (e.runKernelFunc[WRAPPED]) return;
  const runKernelFunc = e.runKernelFunc;
  const wrapped = function (this: EngineLike, params: { kernelName?: string }) {
    let b = activeBackend(this);
    if (b) {
      instrumentBackend(b);
      const f = shared.faults.get(b);
      if (f) throw new shared.BackendFaultError(f);
    }
    shared.kernels.push(params?.kernelName ?? "");
    let out: unknown;
    try {
      out = runKernelFunc.call(this, params);
    } catch (err) {
      throw asFault(err, b ?? activeBackend(this));
    } finally {
      shared.kernels.pop();
    }
    b ??= activeBackend(this);
    const f = b && shared.faults.get(b);
    if (f) {
      // the module faulted during this kernel (an XNNPACK failure returns garbage): its outputs are not returned
      tf.dispose(out as tf.TensorContainer);
      throw new shared.BackendFaultError(f);
    }
    return out;
  } as EngineLike["runKernelFunc"];
  wrapped[WRAPPED] = true;
  e.runKernelFunc = wrapped;
}

/**
 * Installs the fault detection (idempotent): wraps the engine's kernel dispatch once and the active backend
 * instance once. initBackend calls it; backends started otherwise are wrapped at their first kernel call.
 */
export function installBackendFaultDetection(): void {
  wrapEngine();
  const b = activeBackend();
  if (b) instrumentBackend(b);
}

// ---- public API -----------------------------------------------------------------------------------------------

/** The fault of the active backend, or null when it works (after resetBackend(): null). */
export function backendFault(): BackendFault | null {
  const b = activeBackend();
  const f = b ? shared.faults.get(b) ?? null : null;
  return f && f.kind !== "reset" ? { ...f } : null;
}

/**
 * FOR TESTS: records a fault of the active backend along the path a real one takes. An XNNPACK line ("XNN status
 * for xnn_create_fully_connected_nc_f32 is not successful. Got status 6. ...") goes to the reader of the module's
 * output, anything else to the module's onAbort hook as emscripten's abort(what) calls it (other backends: recorded
 * as such an abort). Called inside a kernel, that kernel throws; otherwise the next tfjs call does.
 */
export function simulateBackendFault(what = "simulated"): BackendFault {
  installBackendFaultDetection();
  const b = activeBackend();
  if (!b) throw new Error("simulateBackendFault: no backend is active (call initBackend first)");
  shared.simulating = true;
  try {
    if (XNN_LINE.test(what)) {
      if (!isWasmBackend(b)) recordFault(b, { kind: "xnnpack", firstLine: what, outOfMemory: XNN_LINE.exec(what)![2] === XNN_OUT_OF_MEMORY });
      else inspectOutput(what);
    } else if (isWasmBackend(b) && b.wasm!.onAbort) {
      b.wasm!.onAbort(what);
    } else {
      recordFault(b, { kind: "abort", firstLine: `Aborted(${what}). Build with -sASSERTIONS for more info.` });
    }
  } finally {
    shared.simulating = false;
  }
  return backendFault()!;
}

/**
 * Marks the active backend instance as replaced (resetBackend, reset-backend.ts, calls it before removing it): its
 * tensors then throw a BackendFaultError saying so. Returns the backend's name, or null when none is active.
 */
export function retireActiveBackend(): string | null {
  installBackendFaultDetection();
  const b = activeBackend();
  if (!b) return null;
  if (!shared.faults.has(b)) recordFault(b, { kind: "reset", firstLine: "resetBackend()" });
  return engine().backendName;
}
