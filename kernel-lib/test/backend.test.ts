// The backend order tensorflow(CUDA) -> tensorflow(CPU) -> wasm -> cpu, with the reason for each
// skipped one. Native packages cannot install here, so their loading is simulated by a loader.
import { describe, it, expect, afterAll } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { MathBackendCPU } from "@tensorflow/tfjs-backend-cpu";
import { initBackend, formatBackendReport, findCudaLibraries, type Loader } from "../src/runtime/backend.js";

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
