// Child process of backend.test.ts: starts the wasm backend with N pool threads, runs matMul,
// conv2d, softmax and the tiny UNet on seeded inputs, writes the outputs and the thread count to a
// safetensors file, and returns without closing anything: the process must exit by itself.
// Usage: node --import tsx wasm-threads-child.ts <threads> <out.safetensors>
import * as tf from "@tensorflow/tfjs";
import { initBackend, formatBackendReport } from "../src/runtime/backend.js";
import { saveSafetensors } from "../src/io/safetensors.js";
import { threadsProbe } from "./wasm-threads-probe.js";

async function main(): Promise<void> {
  const [threads, out] = process.argv.slice(2);
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
