// Child process of backend.test.ts: starts the wasm backend with N pool threads, runs matMul,
// conv2d, softmax and the tiny UNet on seeded inputs, writes the outputs and the thread count to a
// safetensors file, and returns without closing anything: the process must exit by itself.
// Usage: node --import tsx wasm-threads-child.ts <threads> <out.safetensors>
//        node --import tsx wasm-threads-child.ts broken <dir>   (a pool worker that throws at load)
import * as fs from "node:fs";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend, formatBackendReport } from "../src/runtime/backend.js";
import { startWasmBackend } from "../src/runtime/wasm-threads.js";
import { saveSafetensors } from "../src/io/safetensors.js";
import { threadsProbe } from "./wasm-threads-probe.js";

async function broken(dir: string): Promise<void> {
  const script = path.join(dir, "broken-worker.cjs");
  fs.writeFileSync(script, 'throw new Error("this pool worker is broken on purpose");\n');
  const status = await startWasmBackend(require("@tensorflow/tfjs-backend-wasm"), 2, { workerScript: script, timeoutMs: 30_000 });
  const sum = tf.tidy(() => tf.sum(tf.matMul(tf.ones([64, 64]), tf.ones([64, 64]))).dataSync()[0]);
  console.log(JSON.stringify({ ...status, backend: tf.getBackend(), sum }));
}

async function main(): Promise<void> {
  const [threads, out] = process.argv.slice(2);
  if (threads === "broken") return broken(out);
  const report = await initBackend({ prefer: "wasm", wasmThreads: Number(threads), force: true });
  console.log(formatBackendReport(report));
  const outputs = await threadsProbe();
  const saved: Record<string, tf.Tensor> = { ...outputs, threads: tf.tensor([report.wasmThreads?.threads ?? 0], [1], "int32") };
  saveSafetensors(out, saved);
  tf.dispose(Object.values(saved));
  console.log(`done ${tf.memory().numTensors} tensors left`);
}

main().catch((e) => {
  console.error(e);
  process.exitCode = 1;
});
