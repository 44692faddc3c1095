// Child process of backend-fault.test.ts: a REAL wasm fault, cheaply. The heap is filled to its 4 GiB limit with
// malloc'd blocks nobody writes (the pages stay untouched: ~150 MB resident), then:
//   abort: blocks are freed one at a time while a tiny op runs, until an allocation of the module's C++ side fails
//          and emscripten aborts ("Aborted()"), or XNNPACK fails;
//   xnn:   one 1 MiB block is freed and a matMul whose weights XNNPACK must pack (16 MiB) runs: "XNN status for
//          xnn_create_fully_connected_nc_f32 is not successful. Got status 6", which returns garbage without the kit.
// Prints one JSON line per step, then resets the backend, checks a computation and returns: the process must exit
// by itself. Usage: node --import tsx backend-fault-child.ts <threads> abort|xnn
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/runtime/backend.js";
import { backendFault } from "../src/runtime/backend-fault.js";
import { resetBackend } from "../src/runtime/reset-backend.js";

function say(step: string, data: Record<string, unknown>): void {
  console.log(JSON.stringify({ step, ...data }));
}

function describe(e: unknown): { name: string; message: string } {
  return e instanceof Error ? { name: e.name, message: e.message } : { name: typeof e, message: String(e) };
}

async function main(): Promise<void> {
  const [threads, mode] = process.argv.slice(2);
  const report = await initBackend({ prefer: "wasm", wasmThreads: Number(threads), force: true });
  say("backend", { description: report.description, threads: report.wasmThreads?.threads });
  const mod = (tf.backend() as unknown as { wasm: { _malloc(n: number): number; _free(p: number): void; HEAPU8: Uint8Array } }).wasm;
  const w = tf.ones([256, 256]); // a "model weight" made before the fault
  const a = tf.ones([1, 2048]);
  const big = tf.ones([2048, 2048]);

  // fill the heap: blocks from 1 GiB down to 16 bytes, each size as often as it fits
  const blocks: { p: number; size: number }[] = [];
  let guard: { name: string; message: string } | null = null;
  for (let size = 1 << 30; size >= 16;) {
    let p = 0;
    try {
      p = mod._malloc(size);
    } catch (e) {
      guard ??= describe(e); // the kit refuses a failed malloc instead of returning 0
    }
    if (p === 0) size >>= 1;
    else blocks.push({ p, size });
  }
  say("filled", { heapMiB: Math.round(mod.HEAPU8.length / 2 ** 20), blocks: blocks.length, guard, rssMiB: Math.round(process.memoryUsage.rss() / 2 ** 20) });

  let fault: { name: string; message: string } | null = null;
  const attempts: string[] = [];
  if (mode === "xnn") {
    const i = blocks.findIndex((b) => b.size === 1 << 20);
    mod._free(blocks.splice(i, 1)[0].p);
    try {
      const y = tf.matMul(a, big);
      const d = y.dataSync();
      attempts.push(`returned ${d[0]} (right: 2048)`);
    } catch (e) {
      fault = describe(e);
    }
  } else {
    for (let i = 0; i < 200 && !fault && blocks.length; i++) {
      mod._free(blocks.pop()!.p);
      try {
        const d = Array.from(tf.tensor([1, 2, 3]).add(1).dataSync());
        attempts.push(d.join() === "2,3,4" ? "ok" : `WRONG ${d.join()}`);
      } catch (e) {
        const d = describe(e);
        if (d.name === "BackendFaultError") fault = d;
        else attempts.push(d.name);
      }
    }
  }
  say("fault", { error: fault, attempts: [...new Set(attempts)], fault: backendFault() });

  const next: Record<string, { name: string; message: string } | string> = {};
  try { next.matMul = String(tf.matMul(w, w).dataSync()[0]); } catch (e) { next.matMul = describe(e); }
  try { next.read = String(w.dataSync()[0]); } catch (e) { next.read = describe(e); }
  try { next.tensor = String(tf.tensor([5]).dataSync()[0]); } catch (e) { next.tensor = describe(e); }
  next.memory = JSON.stringify(tf.memory());
  tf.dispose([w, a, big]); // disposing still works
  say("next", next);

  const after = await resetBackend();
  const sum = tf.tidy(() => tf.sum(tf.matMul(tf.ones([256, 256]), tf.ones([256, 256]))).dataSync()[0]);
  say("reset", { description: after.description, fault: backendFault(), sum, heapMiB: Math.round((tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } }).wasm.HEAPU8.length / 2 ** 20) });
}

main().catch((e) => {
  console.log(JSON.stringify({ step: "crash", error: describe(e) }));
  process.exitCode = 1;
});
