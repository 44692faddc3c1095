// How much memory the active tfjs backend can give the tensors of a model (the "device" of accelerate's
// device_map="auto"): what a memory plan must fit in.
//   wasm:        the module's heap. wasm32 addresses at most 4 GiB and tfjs-backend-wasm's heap stops there
//                (an allocation past ~3.9 GiB aborts the module: XNNPACK "status 6", then Aborted()). The heap
//                also holds what tfjs does not count (XNNPACK scratch) and never shrinks, so after a UNet step has
//                allocated and freed its maps, a VAE decode's 256 MiB blocks may find no hole big enough: lesson 03
//                by hand at 512 px ran out with 1.7 GiB of tensors in a 3.9 GiB heap. Plans keep WASM_RESERVE free.
//   tensorflow:  on CUDA, the GPU's memory as nvidia-smi reports it (tfjs-node-gpu has no query of its own),
//                else DEFAULT_GPU_BYTES; on the CPU, and for the cpu backend, the host's memory (os.totalmem)
//                less what the process and the system already use, less HOST_RESERVE.
// setMemoryBudget(bytes) or KIT_MEMORY_BUDGET=<bytes | "3.5GiB"> replaces the figure (tests, shared machines).
import * as os from "node:os";
import { spawnSync } from "node:child_process";
import * as tf from "@tensorflow/tfjs";

export const GIB = 1024 ** 3;
/** The most a wasm32 heap can hold. */
export const WASM_HEAP_LIMIT = 4 * GIB;
/** Kept free in the wasm heap for what tfjs does not count (kernel scratch, fragmentation). */
export const WASM_RESERVE = 0.6 * GIB;
/** Kept free in host memory for the system, Node and the notebook. */
export const HOST_RESERVE = 2 * GIB;
/** Used for a CUDA device when nvidia-smi cannot say (a common consumer GPU). */
export const DEFAULT_GPU_BYTES = 8 * GIB;

export interface MemoryBudget {
  /** Bytes the tensors of a call may use at their peak (the reserve already taken off). */
  bytes: number;
  backend: string;
  /** Where the figure comes from, for people. */
  source: string;
}

let override: number | null = null;

/** Parses "3.5GiB", "512 MiB", "2e9" (bytes). */
export function parseBytes(text: string, what = "a size"): number {
  const m = /^\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*(B|KiB|MiB|GiB|TiB|KB|MB|GB|TB)?\s*$/i.exec(text);
  const units: Record<string, number> = { b: 1, kib: 1024, mib: 1024 ** 2, gib: GIB, tib: 1024 ** 4, kb: 1e3, mb: 1e6, gb: 1e9, tb: 1e12 };
  const v = m ? Number(m[1]) * units[(m[2] ?? "b").toLowerCase()] : NaN;
  if (!Number.isFinite(v) || v <= 0) {
    throw new Error(`${what}: "${text}" is not a size; give bytes (e.g. 3500000000) or a number with a unit (e.g. 3.5GiB, 800MiB)`);
  }
  return Math.floor(v);
}

/** Replaces the detected budget (null: detect again). Bytes the tensors may use, reserve already taken off. */
export function setMemoryBudget(bytes: number | null): void {
  if (bytes !== null && !(Number.isFinite(bytes) && bytes > 0)) {
    throw new Error(`setMemoryBudget: ${bytes} is not a number of bytes; give a positive number, or null to detect the backend's budget again`);
  }
  override = bytes === null ? null : Math.floor(bytes);
}

function gpuBytes(): { bytes: number; source: string } {
  try {
    const r = spawnSync("nvidia-smi", ["--query-gpu=memory.total", "--format=csv,noheader,nounits"], { encoding: "utf8", timeout: 5000 });
    const mib = Number((r.stdout ?? "").split("\n")[0]);
    if (r.status === 0 && Number.isFinite(mib) && mib > 0) return { bytes: mib * 1024 ** 2, source: `GPU memory ${(mib / 1024).toFixed(1)} GiB (nvidia-smi)` };
  } catch {
    // no nvidia-smi
  }
  return { bytes: DEFAULT_GPU_BYTES, source: `GPU memory unknown (no nvidia-smi): assumed ${DEFAULT_GPU_BYTES / GIB} GiB` };
}

/** The active backend's budget for tensors (see the top of this file). */
export function memoryBudget(): MemoryBudget {
  const backend = tf.getBackend() ?? "none";
  if (override !== null) return { bytes: override, backend, source: "set with setMemoryBudget" };
  const env = process.env.KIT_MEMORY_BUDGET;
  if (env) return { bytes: parseBytes(env, "KIT_MEMORY_BUDGET"), backend, source: "KIT_MEMORY_BUDGET" };
  if (backend === "wasm") {
    return { bytes: WASM_HEAP_LIMIT - WASM_RESERVE, backend, source: `wasm heap limit 4 GiB less ${WASM_RESERVE / GIB} GiB for kernel scratch` };
  }
  const cuda = backend === "tensorflow" && (tf.backend() as unknown as { isUsingGpuDevice?: boolean }).isUsingGpuDevice === true;
  if (cuda) {
    const g = gpuBytes();
    return { bytes: Math.max(GIB / 2, g.bytes - GIB / 2), backend: "tensorflow (CUDA)", source: `${g.source}, less 0.5 GiB for the CUDA context` };
  }
  const free = os.totalmem() - process.memoryUsage.rss() - HOST_RESERVE;
  return { bytes: Math.max(GIB / 2, free), backend, source: `host memory ${(os.totalmem() / GIB).toFixed(1)} GiB less this process and ${HOST_RESERVE / GIB} GiB for the system` };
}

/** True on backends where XNNPACK keeps a packed copy of each weight beside it (see runtime/wasm/packed-weights.ts). */
export function packsWeights(): boolean {
  return tf.getBackend() === "wasm";
}
