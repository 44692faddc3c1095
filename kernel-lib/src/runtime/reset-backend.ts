// resetBackend(): the way out of a backend fault without restarting the process (backend-fault.ts says when).
import * as tf from "@tensorflow/tfjs";
import { initBackend, backendReport, type BackendChoice, type BackendReport } from "./backend.js";
import { installBackendFaultDetection, retireActiveBackend } from "./backend-fault.js";

interface EngineRegistry {
  backendName: string | null;
  registryFactory: Record<string, { factory: () => unknown; priority: number }>;
}

/**
 * Re-creates the active backend with an empty heap, through initBackend (the same backend and thread count as
 * before): the way out of a fault without restarting the process. Every tensor of the old backend is invalid
 * afterwards, healthy or not: reading or using one throws a BackendFaultError (disposing it is fine), so load the
 * models again / re-run the cells from loading on. Returns the new backend's report.
 */
export async function resetBackend(): Promise<BackendReport> {
  const e = tf.engine() as unknown as EngineRegistry;
  const name = e.backendName;
  if (!name) return initBackend({ force: true });
  const prev = await backendReport();
  retireActiveBackend();
  const entry = e.registryFactory[name];
  if (!entry) throw new Error(`resetBackend: the ${name} backend has no registered factory`);
  tf.removeBackend(name); // disposes the old instance (a faulted module is not entered again)
  tf.registerBackend(name, entry.factory as () => tf.KernelBackend, entry.priority);
  if (!["tensorflow", "wasm", "cpu"].includes(name)) {
    if (!(await tf.setBackend(name))) throw new Error(`resetBackend: tf.setBackend("${name}") failed`);
    installBackendFaultDetection();
    return backendReport();
  }
  // the same threads as before when they came from initBackend's option (env and default are resolved again)
  const choice = prev.wasmThreads?.choice ?? "";
  const wasmThreads = choice.startsWith("wasmThreads=auto") ? "auto" as const : choice.startsWith("wasmThreads=") ? prev.wasmThreads!.requested : undefined;
  const report = await initBackend({ force: true, prefer: name as BackendChoice, wasmThreads });
  // keep what the first choice said about the better backends that were skipped, and whether it was forced
  const first = report.attempts[0]?.candidate;
  const at = prev.attempts.findIndex((a) => a.candidate === first);
  report.attempts = [...(at >= 0 ? prev.attempts.slice(0, at) : prev.attempts.filter((a) => !a.ok)), ...report.attempts];
  if (prev.override) report.override = prev.override;
  else delete report.override;
  return report;
}
