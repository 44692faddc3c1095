// Backend faults (runtime/backend-fault.ts): after the wasm module aborts (or XNNPACK fails inside an op), every
// later call throws a BackendFaultError that says what happened and how to recover, never a silent wrong answer;
// resetBackend() gives a working backend with the same numbers. Simulated in this process; real aborts (heap filled
// to 4 GiB with untouched blocks: ~1 s, ~200 MB) in child processes on 1 and 2 threads.
import { describe, it, expect } from "vitest";
import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { backendReport, formatBackendReport } from "../src/runtime/backend.js";
import {
  BackendFaultError, backendFault, installBackendFaultDetection, simulateBackendFault,
} from "../src/runtime/backend-fault.js";
import { resetBackend } from "../src/runtime/reset-backend.js";
import { UNet2DModel } from "../src/models/unet-2d.js";

const XNN_OOM = "XNN status for xnn_create_fully_connected_nc_f32 is not successful. Got status 6. Use -c dbg to see XNN logs.";

const TINY_UNET = {
  sample_size: 8,
  in_channels: 3,
  out_channels: 3,
  block_out_channels: [8, 16],
  norm_num_groups: 4,
  layers_per_block: 1,
  down_block_types: ["DownBlock2D", "AttnDownBlock2D"],
  up_block_types: ["AttnUpBlock2D", "UpBlock2D"],
  attention_head_dim: 4,
};

function tinyUnet(): UNet2DModel {
  return UNet2DModel.fromConfig(TINY_UNET, { init: "random", seed: 11 });
}

function input(): tf.Tensor4D {
  return tf.randomNormal([1, 8, 8, 3], 0, 1, "float32", 5) as tf.Tensor4D;
}

/** The error fn throws (fails the test when it returns). */
function thrown(fn: () => unknown): Error {
  try {
    const r = fn();
    throw new Error(`expected a throw, got ${r instanceof tf.Tensor ? `a tensor [${r.shape}]` : String(r)}`);
  } catch (e) {
    return e as Error;
  }
}

const RECOVERY = /To recover: `await resetBackend\(\)`.*load the models again.*restarting the kernel also works/s;

describe("a backend fault (simulated)", () => {
  it("makes the next op, a model forward and tensor reads throw BackendFaultError with the recovery text; resetBackend() gives the right numbers again", async () => {
    const backend = tf.getBackend();
    const reportBefore = formatBackendReport(await backendReport());
    const before = tf.memory().numTensors;
    const unet = tinyUnet();
    const x = input();
    const reference = unet.forward(x, 10).sample;
    const expected = Array.from(reference.dataSync());
    const a = tf.tensor([1, 2, 3]);

    const fault = simulateBackendFault();
    expect(fault).toMatchObject({ backend, kind: "abort", firstLine: "Aborted(simulated). Build with -sASSERTIONS for more info.", simulated: true });
    expect(backendFault()).toMatchObject({ kind: "abort" });

    const op = thrown(() => a.add(1));
    expect(op).toBeInstanceOf(BackendFaultError);
    expect(op.name).toBe("BackendFaultError");
    expect(op.message).toContain(`The ${backend} backend faulted (simulated by simulateBackendFault): the module aborted: "Aborted(simulated).`);
    expect(op.message).toMatch(/Every tensor on the \w+ backend is lost, loaded model weights included, and every tfjs call on it throws this error/);
    expect(op.message).toMatch(RECOVERY);
    expect(op.message).not.toMatch(/out of memory/); // a simulated abort on a small heap is not called one
    expect(thrown(() => unet.forward(x, 10))).toBeInstanceOf(BackendFaultError);
    expect(thrown(() => tf.tensor([4, 5]))).toBeInstanceOf(BackendFaultError);
    expect(thrown(() => a.dataSync())).toBeInstanceOf(BackendFaultError);
    await expect(a.data()).rejects.toBeInstanceOf(BackendFaultError);
    expect(thrown(() => tf.tidy(() => tf.matMul(tf.ones([2, 2]), tf.ones([2, 2]))))).toBeInstanceOf(BackendFaultError);
    expect(tf.memory().numTensors).toBeGreaterThan(before); // tf.memory() still answers
    // disposing is bookkeeping only, and leaks nothing
    tf.dispose([a, x, reference]);
    unet.dispose();
    expect(tf.memory().numTensors).toBe(before);

    const report = await resetBackend();
    expect(backendFault()).toBeNull();
    expect(tf.getBackend()).toBe(backend);
    expect(formatBackendReport(report)).toBe(reportBefore); // same backend, same threads, same reasons
    const again = tinyUnet();
    const x2 = input();
    const y = again.forward(x2, 10).sample;
    expect(Array.from(y.dataSync())).toEqual(expected); // bit for bit what the model gave before the fault
    expect(Array.from(tf.tidy(() => tf.tensor([1, 2, 3]).add(1).dataSync()))).toEqual([2, 3, 4]);
    tf.dispose([x2, y]);
    again.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it.skipIf(tf.getBackend() !== "wasm")("an XNNPACK out-of-memory inside an op: that op throws (its output is not returned) with the heap advice", async () => {
    const before = tf.memory().numTensors;
    const x = tf.tensor([1, 2, 3]);
    // tfjs types customGrad's inputs as Tensor | GradSaveFunc (the last one may be `save`); ours is the tensor x
    const failing = tf.customGrad((t) => {
      const value = tf.add(t as tf.Tensor, 1); // computed, then "XNNPACK" reports that it failed
      simulateBackendFault(XNN_OOM);
      return { value, gradFunc: (dy: tf.Tensor) => dy };
    });
    const e = thrown(() => failing(x));
    expect(e).toBeInstanceOf(BackendFaultError);
    expect(e.message).toContain(`XNNPACK failed`);
    expect(e.message).toContain(XNN_OOM);
    expect(e.message).toMatch(/Cause: XNNPACK could not allocate memory \(status 6 = out of memory\): the wasm heap ran out of memory/);
    expect(e.message).toMatch(/cannot grow past 4 GiB/);
    expect(e.message).toMatch(/pipe\.memory = "auto".*enableAttentionSlicing\("max"\).*enableModelCpuOffload\(\)/);
    expect(e.message).toMatch(RECOVERY);
    expect(backendFault()).toMatchObject({ kind: "xnnpack", outOfMemory: true, simulated: true });
    expect(tf.memory().numTensors).toBe(before + 1); // x; the op's output and its intermediate were disposed
    expect(thrown(() => x.mul(2))).toBeInstanceOf(BackendFaultError); // and the next call
    x.dispose();
    await resetBackend();
    expect(tf.memory().numTensors).toBe(before);
    expect(backendFault()).toBeNull();
  });

  it("tensors and model weights of the old backend throw a clear error after resetBackend(), never garbage", async () => {
    const before = tf.memory().numTensors;
    const unet = tinyUnet();
    const old = tf.tensor([1, 2, 3]);
    simulateBackendFault();
    await resetBackend();
    const fresh = tf.tensor([10, 20, 30]);
    const read = thrown(() => old.dataSync());
    expect(read).toBeInstanceOf(BackendFaultError);
    const replaced = /^This tensor lived on the \w+ backend that resetBackend\(\) replaced after it faulted \("Aborted\(simulated\)\. .*load the models again/;
    expect(read.message).toMatch(replaced);
    // used as an input on the new backend: tfjs moves the data over, which reads the dead backend
    expect(thrown(() => tf.tidy(() => tf.add(old, fresh))).message).toMatch(replaced);
    const x = input();
    const forward = thrown(() => tf.tidy(() => unet.forward(x, 10).sample)); // the old model's weights
    expect(forward).toBeInstanceOf(BackendFaultError);
    expect(forward.message).toMatch(replaced);
    expect(Array.from(tf.tidy(() => fresh.add(1).dataSync()))).toEqual([11, 21, 31]);
    tf.dispose([old, fresh, x]);
    unet.dispose();
    tf.disposeVariables();
    expect(tf.memory().numTensors).toBe(before);

    // a reset without a fault: the old backend's tensors say that resetBackend() replaced it
    const kept = tf.tensor([7]);
    await resetBackend();
    const e = thrown(() => kept.dataSync());
    expect(e).toBeInstanceOf(BackendFaultError);
    expect(e.message).toMatch(/This tensor lived on the \w+ backend that resetBackend\(\) replaced.*load the models again/);
    kept.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("wraps the engine and each backend once (no wrapper piles up across installs and resets) and restores console", async () => {
    const engine = tf.engine() as unknown as { runKernelFunc: unknown };
    const warn = console.warn;
    const log = console.log;
    const writeSync = (require("node:fs") as typeof fs).writeSync;
    installBackendFaultDetection();
    const dispatch = engine.runKernelFunc;
    const readSync = (tf.backend() as unknown as { readSync: unknown }).readSync;
    installBackendFaultDetection();
    installBackendFaultDetection();
    expect(engine.runKernelFunc).toBe(dispatch);
    expect((tf.backend() as unknown as { readSync: unknown }).readSync).toBe(readSync);
    await resetBackend();
    await resetBackend();
    expect(engine.runKernelFunc).toBe(dispatch);
    expect(console.warn).toBe(warn);
    expect(console.log).toBe(log);
    expect((require("node:fs") as typeof fs).writeSync).toBe(writeSync);
    // one level of wrapping on the new instance: its readSync wraps the prototype's
    const b = tf.backend() as unknown as { readSync: unknown };
    expect(Object.prototype.hasOwnProperty.call(b, "readSync")).toBe(true);
    expect(b.readSync).not.toBe(Object.getPrototypeOf(b).readSync);
    const t = tf.tensor([1, 2]);
    expect(Array.from(t.dataSync())).toEqual([1, 2]);
    t.dispose();
  });
});

interface ChildStep { step: string; [k: string]: unknown }

/** The child's "fault" step: the error the faulting call threw, what the calls after it returned, the fault seen. */
interface FaultStep extends ChildStep {
  error: { name: string; message: string } | null;
  attempts: string[];
  fault: { kind: string; outOfMemory: boolean };
}

/** Runs backend-fault-child.ts; resolves with its JSON lines, all its output and the exit code (generous time: the machine may be busy). */
function runChild(threads: number, mode: "abort" | "xnn"): Promise<{ code: number | null; steps: Record<string, ChildStep>; log: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", path.join(__dirname, "backend-fault-child.ts"), String(threads), mode], {
      cwd: path.resolve(__dirname, "../.."), env: { ...process.env, TFJS_WASM_THREADS: "" },
    });
    let log = "";
    child.stdout.on("data", (d: Buffer) => { log += d; });
    child.stderr.on("data", (d: Buffer) => { log += d; });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`the ${threads}-thread ${mode} child did not exit within 600 s (a call hung after the fault?):\n${log}`));
    }, 600_000);
    child.on("exit", (code) => {
      clearTimeout(timer);
      const steps: Record<string, ChildStep> = {};
      for (const line of log.split("\n")) {
        if (!line.startsWith("{")) continue;
        const s = JSON.parse(line) as ChildStep;
        steps[s.step] = s;
      }
      resolve({ code, steps, log });
    });
  });
}

describe("a real wasm fault (child processes)", () => {
  for (const threads of [1, 2]) {
    it(`${threads} thread(s): the heap-exhausting abort gives BackendFaultError on that call and the next ones; resetBackend() works`, async () => {
      const { code, steps, log } = await runChild(threads, "abort");
      expect(code, log).toBe(0);
      expect(steps.backend?.threads, log).toBe(threads);
      // the kit refuses a malloc that failed (tfjs would write the tensor at address 0): nothing lost
      expect(steps.filled?.guard, log).toMatchObject({ name: "BackendOutOfMemoryError", message: expect.stringMatching(/wasm heap is out of memory.*nothing is lost/) });
      const fault = steps.fault as FaultStep;
      expect(fault.attempts.filter((a) => a.startsWith("WRONG")), log).toEqual([]); // never a silent wrong answer
      expect(fault.error?.name, log).toBe("BackendFaultError");
      expect(fault.error?.message, log).toMatch(/The wasm backend faulted: (the module aborted|XNNPACK failed)/);
      expect(fault.error?.message, log).toMatch(/Cause: .*the wasm heap ran out of memory \(it had grown to 4\.0 GiB/);
      expect(fault.error?.message, log).toMatch(RECOVERY);
      expect(fault.fault.outOfMemory).toBe(true);
      if (fault.fault.kind === "abort") expect(log).toContain("Aborted()");
      const next = steps.next as Record<string, { name: string; message: string }>;
      for (const k of ["matMul", "read", "tensor"]) {
        expect(next[k]?.name, `${k}: ${log}`).toBe("BackendFaultError");
        expect(next[k]?.message).toBe(fault.error?.message);
      }
      expect(steps.reset, log).toMatchObject({ fault: null, sum: 256 ** 3, heapMiB: 16 });
      expect(steps.reset?.description).toContain(`${threads} thread`);
    });

    it(`${threads} thread(s): XNNPACK out of memory (status 6) throws instead of returning uninitialised memory`, async () => {
      const { code, steps, log } = await runChild(threads, "xnn");
      expect(code, log).toBe(0);
      expect(log).toContain(XNN_OOM); // what the module printed
      const fault = steps.fault as FaultStep;
      expect(fault.attempts, log).toEqual([]); // the matMul did not return
      expect(fault.error?.name, log).toBe("BackendFaultError");
      expect(fault.error?.message).toContain(`XNNPACK failed in the BatchMatMul kernel: "${XNN_OOM}"`);
      expect(fault.error?.message).toMatch(/Cause: XNNPACK could not allocate memory \(status 6 = out of memory\)/);
      expect(fault.error?.message).toMatch(RECOVERY);
      expect((steps.next as Record<string, { name: string }>).matMul?.name, log).toBe("BackendFaultError");
      expect(steps.reset, log).toMatchObject({ fault: null, sum: 256 ** 3 });
    });
  }
});
