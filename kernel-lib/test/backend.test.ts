// The backend order tensorflow(CUDA) -> tensorflow(CPU) -> wasm -> cpu, with the reason for each
// skipped one. Native packages cannot install here, so their loading is simulated by a loader.
// wasm threads: a child process starts 2 threads (this suite keeps its single-thread backend).
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { initBackend, formatBackendReport, findCudaLibraries, type Loader } from "../src/runtime/backend.js";
import { resolveWasmThreads, wasmThreadsInUse } from "../src/runtime/wasm-threads.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { threadsProbe, TINY_GOLDEN } from "./wasm-threads-probe.js";
import { loadFixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";

const notInstalled = (pkg: string) => Object.assign(new Error(`Cannot find module '${pkg}'`), { code: "MODULE_NOT_FOUND" });
const real: Loader = (pkg) => require(pkg);

function fakeTensorflow(gpu: boolean): () => void {
  return () => {
    if (!tf.findBackendFactory("tensorflow")) {
      tf.registerBackend("tensorflow", () => Object.assign(new MathBackendCPU(), { isUsingGpuDevice: gpu }));
    }
  };
}

function dropTensorflow(): void {
  if (tf.findBackendFactory("tensorflow")) tf.removeBackend("tensorflow");
}

afterAll(async () => {
  dropTensorflow();
  await initBackend({ prefer: "wasm", force: true });
});

describe("backend selection", () => {
  it("falls back to wasm when the native packages are missing, saying why", async () => {
    const load: Loader = (pkg) => {
      if (pkg.startsWith("@tensorflow/tfjs-node")) throw notInstalled(pkg);
      return real(pkg);
    };
    const r = await initBackend({ force: true, load });
    expect(r.backend).toBe("wasm");
    expect(tf.getBackend()).toBe("wasm");
    expect(r.attempts.map((a) => a.ok)).toEqual([false, false, true]);
    expect(r.attempts[0].why).toMatch(/tfjs-node-gpu is not installed.*npm install @tensorflow\/tfjs-node-gpu/);
    expect(formatBackendReport(r)).toMatch(/tfjs backend: wasm/);
  });

  it("explains a native package whose binding is missing", async () => {
    const load: Loader = (pkg) => {
      if (pkg.startsWith("@tensorflow/tfjs-node")) throw new Error("The Node.js native addon module (tfjs_binding.node) can not be found at path: x");
      return real(pkg);
    };
    const r = await initBackend({ force: true, load });
    expect(r.attempts[1].why).toMatch(/native binding is missing.*npm rebuild @tensorflow\/tfjs-node/);
  });

  it("falls back to cpu when wasm cannot start either", async () => {
    const load: Loader = (pkg) => { throw notInstalled(pkg); };
    const r = await initBackend({ force: true, load });
    expect(r.backend).toBe("cpu");
    expect(r.attempts.map((a) => a.candidate)).toEqual([
      "tensorflow (CUDA) via @tensorflow/tfjs-node-gpu", "tensorflow (CPU) via @tensorflow/tfjs-node",
      "wasm via @tensorflow/tfjs-backend-wasm", "cpu (plain JavaScript)",
    ]);
  });

  it("takes tensorflow on CUDA first when the GPU package loads and sees a GPU", async () => {
    dropTensorflow();
    const r = await initBackend({ force: true, load: (pkg) => (pkg === "@tensorflow/tfjs-node-gpu" ? fakeTensorflow(true)() : real(pkg)) });
    expect(r).toMatchObject({ backend: "tensorflow", device: "cuda" });
    expect(r.attempts).toHaveLength(1);
  });

  it("reports TensorFlow on the CPU when the GPU package finds no CUDA device", async () => {
    dropTensorflow();
    const r = await initBackend({ force: true, load: (pkg) => (pkg === "@tensorflow/tfjs-node-gpu" ? fakeTensorflow(false)() : real(pkg)) });
    expect(r).toMatchObject({ backend: "tensorflow", device: "cpu" });
    const cuda = findCudaLibraries();
    if (cuda.missing.length) expect(r.attempts[0].why).toMatch(/missing libcudart/);
  });

  it("honours TFJS_BACKEND and rejects an unknown name", async () => {
    process.env.TFJS_BACKEND = "cpu";
    try {
      expect((await initBackend({ force: true })).backend).toBe("cpu");
      process.env.TFJS_BACKEND = "metal";
      await expect(initBackend({ force: true })).rejects.toThrow(/TFJS_BACKEND="metal" is not a backend; use tensorflow, wasm or cpu/);
      process.env.TFJS_BACKEND = "tensorflow";
      dropTensorflow();
      await expect(initBackend({ force: true, load: (p) => { throw notInstalled(p); } })).rejects.toThrow(/tensorflow backend was requested.*not installed/);
    } finally {
      delete process.env.TFJS_BACKEND;
    }
  });
});

/** Runs wasm-threads-child.ts; resolves with its output and the exit code once it exits by itself. */
function runChild(threads: number | "broken", out: string): Promise<{ code: number | null; log: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "wasm-threads-child.ts"), String(threads), out], {
      cwd: path.resolve(__dirname, "../.."), env: { ...process.env, TFJS_WASM_THREADS: "" },
    });
    let log = "";
    const onData = (d: Buffer) => { log += d; };
    child.stdout.on("data", onData);
    child.stderr.on("data", onData);
    // a pool worker that holds the process keeps it alive for good: the child is killed and the test fails
    // (a hang guard with ample room for a busy machine, not a time limit on the work)
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`the ${threads}-thread child did not exit within 600 s (a pool worker holds the process?):\n${log}`)); }, 600_000);
    child.on("exit", (code) => { clearTimeout(timer); resolve({ code, log }); });
  });
}

describe("wasm threads", () => {
  beforeAll(async () => {
    dropTensorflow();
    // the tests above leave cpu or a fake backend active; the comparisons below need one thread here
    await initBackend({ prefer: "wasm", force: true, wasmThreads: 1 });
  });

  it("parses thread counts and rejects bad ones", () => {
    expect(resolveWasmThreads(undefined, "x").threads).toBe(1);
    expect(resolveWasmThreads("2", "TFJS_WASM_THREADS")).toEqual({ threads: 2, choice: "TFJS_WASM_THREADS=2" });
    const cores = os.cpus().length;
    expect(resolveWasmThreads("auto", "x", 0).threads).toBe(cores); // idle machine: one per core
    expect(resolveWasmThreads("auto", "x", cores + 5).threads).toBe(1); // busy machine: one
    expect(resolveWasmThreads("auto", "default", 0.3).choice).toMatch(/default=auto: \d+ cores, 1-minute load average 0\.30 -> \d+ free/);
    expect(() => resolveWasmThreads("two", "TFJS_WASM_THREADS")).toThrow(/TFJS_WASM_THREADS="two" is not a thread count/);
    expect(() => resolveWasmThreads(0, "wasmThreads")).toThrow(/wasmThreads=0/);
  });

  it("starts 2 threads in a child process, matches 1 thread bit for bit, and the process exits by itself", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-threads-"));
    try {
      const out = path.join(dir, "t2.safetensors");
      const r = await runChild(2, out);
      expect(r.code, r.log).toBe(0);
      expect(r.log).toMatch(/tfjs backend: wasm \(WebAssembly SIMD, 2 threads\)/);
      const theirs = loadSafetensors(out);
      expect(Array.from(theirs.threads.dataSync())).toEqual([2]);
      expect(wasmThreadsInUse()).toBe(1); // this process keeps its single-thread backend
      const ours = await threadsProbe();
      for (const k of Object.keys(ours)) {
        expect(theirs[k].shape, k).toEqual(ours[k].shape);
        const a = new Uint32Array(new Float32Array(theirs[k].dataSync()).buffer);
        const b = new Uint32Array(new Float32Array(ours[k].dataSync()).buffer);
        let diff = 0;
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) diff++;
        expect(diff, `${k}: elements that differ between 2 threads and 1 thread`).toBe(0);
      }
      const golden = loadFixture(TINY_GOLDEN);
      const expected = nchwToNhwc(golden["c0_int999/output"]);
      expectClose(theirs.unet, expected, TOL.model.atol, 0, "2-thread UNet vs diffusers");
      tf.dispose([expected, ...Object.values(golden), ...Object.values(theirs), ...Object.values(ours)]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("falls back to one thread, saying why, when a pool worker fails to start (and the process still exits)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "wasm-threads-"));
    try {
      const r = await runChild("broken", dir);
      expect(r.code, r.log).toBe(0);
      const status = JSON.parse(r.log.split("\n").find((l) => l.startsWith("{"))!);
      expect(status).toMatchObject({ requested: 2, threads: 1, backend: "wasm", sum: 64 * 64 * 64 });
      expect(status.why).toMatch(/the threaded build failed to start \(this pool worker is broken on purpose\); running one thread/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("keeps one thread, saying why, when tensors live on the running backend", async () => {
    const before = tf.memory().numTensors;
    const keep = tf.scalar(1);
    const r = await initBackend({ prefer: "wasm", force: true, wasmThreads: 2 });
    expect(r.wasmThreads).toMatchObject({ requested: 2, threads: 1 });
    expect(formatBackendReport(r)).toMatch(/1 thread\).*\n.*asked 2: the wasm backend already runs 1 thread\(s\) and \d+ tensors live/);
    keep.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("falls back to one thread with the reason for another tfjs-backend-wasm version or no SharedArrayBuffer", async () => {
    const wasm = require("@tensorflow/tfjs-backend-wasm");
    const other: Loader = (pkg) => (pkg === "@tensorflow/tfjs-backend-wasm" ? { ...wasm, version_wasm: "4.23.0" } : real(pkg));
    const r = await initBackend({ prefer: "wasm", force: true, wasmThreads: 2, load: other });
    expect(r).toMatchObject({ backend: "wasm", wasmThreads: { requested: 2, threads: 1 } });
    expect(formatBackendReport(r)).toMatch(/asked 2: threads need @tensorflow\/tfjs-backend-wasm 4\.22\.0 .*found 4\.23\.0/);
    const sab = globalThis.SharedArrayBuffer;
    try {
      (globalThis as { SharedArrayBuffer?: unknown }).SharedArrayBuffer = undefined;
      const r2 = await initBackend({ prefer: "wasm", force: true, wasmThreads: 2 });
      expect(r2.wasmThreads?.why).toMatch(/SharedArrayBuffer/);
    } finally {
      globalThis.SharedArrayBuffer = sab;
    }
  });
});
