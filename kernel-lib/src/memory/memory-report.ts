// Where the memory goes: weights per component (memoryReport) and the peak of a run (measureMemory).
//
// How the peak is measured. tfjs keeps no peak counter, and tf.memory().numBytes counts every tensor handle
// (a reshape of a 64 MiB tensor counts 128 MiB although both share one buffer). From the first measurement on,
// two methods of the tfjs engine are wrapped: trackTensor (a tensor is registered; when its data id is new, a
// buffer of `bytes` was allocated) and removeDataId (a buffer was freed). That keeps a running total of the live
// buffers (starting from tf.memory().numBytes at that moment, as tfjs cannot list older buffers), and each
// measurement takes its maximum at every allocation: the peak is exact for everything tfjs allocates, including
// what was alive before the run (resident weights). Not seen: scratch memory a backend kernel allocates and frees
// inside one kernel call, and the packed weights XNNPACK caches inside the wasm heap (see runtime/wasm/packed-weights.ts
// setKeepPackedWeights). For those the wasm heap size is reported too: it only grows, so it is the high-water mark
// of the whole process. rssPeak is the process's resident set peak (Linux VmHWM, reset at the start of the
// outermost measurement; elsewhere sampled at large allocations).
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import type { Module } from "../nn/module.js";
import { addForwardHook, MODEL_METHODS } from "./hooks.js";
import { getOffloadMode, pipelineModules, type OffloadMode } from "./offload.js";

interface TensorInfo { bytes: number; backend: unknown }
interface EngineInternals {
  state: { tensorInfo: WeakMap<object, TensorInfo> };
  trackTensor(a: tf.Tensor, backend: unknown): void;
  removeDataId(dataId: object, backend: unknown): void;
}

interface ComponentProbe { peakBytes: number; calls: number; seconds: number; depth: number; t0: number }
interface Probe { peak: number; rssPeak: number; running: ComponentProbe[] }

const probes = new Set<Probe>();
let liveBytes = 0;

function engine(): EngineInternals {
  return tf.engine() as unknown as EngineInternals;
}

const BIG = 1 << 20;

let installed = false;

function install(): void {
  if (installed) return;
  installed = true;
  const e = engine();
  liveBytes = tf.memory().numBytes;
  const track = e.trackTensor;
  const remove = e.removeDataId;
  e.trackTensor = function (this: EngineInternals, a: tf.Tensor, backend: unknown) {
    const fresh = !this.state.tensorInfo.has(a.dataId);
    track.call(this, a, backend);
    if (!fresh) return;
    const bytes = this.state.tensorInfo.get(a.dataId)?.bytes ?? 0;
    liveBytes += bytes;
    if (probes.size === 0) return;
    const rss = bytes >= BIG ? process.memoryUsage.rss() : 0;
    for (const p of probes) {
      if (liveBytes > p.peak) p.peak = liveBytes;
      if (rss > p.rssPeak) p.rssPeak = rss;
      for (const c of p.running) if (liveBytes > c.peakBytes) c.peakBytes = liveBytes;
    }
  };
  e.removeDataId = function (this: EngineInternals, dataId: object, backend: unknown) {
    const info = this.state.tensorInfo.get(dataId);
    remove.call(this, dataId, backend);
    if (info && info.backend === backend && !this.state.tensorInfo.has(dataId)) liveBytes -= info.bytes;
  };
}

/** Bytes of the live tfjs buffers now, each buffer once however many tensors view it (tracked from the first call on). */
export function liveTensorBytes(): number {
  install();
  return liveBytes;
}

/** The wasm backend's heap size in bytes (it never shrinks: the process's high-water mark), else null. */
export function wasmHeapBytes(): number | null {
  if (tf.getBackend() !== "wasm") return null;
  const heap = (tf.backend() as unknown as { wasm?: { HEAPU8?: Uint8Array } }).wasm?.HEAPU8;
  return heap ? heap.length : null;
}

function readVmHWM(): number | null {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(fs.readFileSync("/proc/self/status", "utf8"));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

function resetVmHWM(): boolean {
  try {
    fs.writeFileSync("/proc/self/clear_refs", "5");
    return true;
  } catch {
    return false;
  }
}

export interface ComponentPeak {
  /** Most tfjs bytes alive while this component ran (everything alive counts, not only its own). */
  peakBytes: number;
  calls: number;
  seconds: number;
}

export interface MemoryMeasurement<T> {
  result: T;
  /** Most tfjs buffer bytes alive at once during fn (including what was alive before it). */
  peakBytes: number;
  /** tfjs buffer bytes alive when fn started / ended. */
  startBytes: number;
  endBytes: number;
  /** Tensors left by fn (its results included): tf.memory().numTensors after - before. */
  tensorsAdded: number;
  /** Peak resident set of the process during fn (bytes). */
  rssPeak: number;
  /** wasm heap size after fn (monotone: the high-water mark of the whole process), null on other backends. */
  wasmHeapBytes: number | null;
  seconds: number;
  /** Per component (forward / encode / decode of each given model), when components were given. */
  perComponent?: Record<string, ComponentPeak>;
}

/**
 * Runs fn and measures its tfjs memory peak (see the top of this file for how). `components`: a pipeline (its
 * model components are probed) or named models; each gets its own peak, call count and time.
 */
export async function measureMemory<T>(fn: () => T | Promise<T>, opts: { components?: object | Record<string, Module> } = {}): Promise<MemoryMeasurement<T>> {
  install();
  const outermost = probes.size === 0;
  const vmReset = outermost && resetVmHWM();
  const probe: Probe = { peak: liveBytes, rssPeak: process.memoryUsage.rss(), running: [] };
  probes.add(probe);
  const startBytes = liveBytes;
  const tensorsBefore = tf.memory().numTensors;
  const perComponent: Record<string, ComponentProbe> = {};
  const removers: (() => void)[] = [];
  if (opts.components) {
    const entries = pipelineModules(opts.components);
    const named = entries.length > 0 ? entries : (Object.entries(opts.components) as [string, object][]);
    for (const [name, m] of named) {
      const c: ComponentProbe = (perComponent[name] = { peakBytes: 0, calls: 0, seconds: 0, depth: 0, t0: 0 });
      removers.push(
        addForwardHook(m, MODEL_METHODS, {
          preForward: () => {
            if (c.depth++ === 0) {
              c.calls++;
              c.t0 = performance.now();
              c.peakBytes = Math.max(c.peakBytes, liveBytes);
              probe.running.push(c);
            }
          },
          postForward: () => {
            if (--c.depth === 0) {
              c.seconds += (performance.now() - c.t0) / 1000;
              probe.running.splice(probe.running.indexOf(c), 1);
            }
          },
        }),
      );
    }
  }
  const t0 = performance.now();
  try {
    const result = await fn();
    const seconds = (performance.now() - t0) / 1000;
    const hwm = vmReset ? readVmHWM() : null;
    const out: MemoryMeasurement<T> = {
      result,
      peakBytes: probe.peak,
      startBytes,
      endBytes: liveBytes,
      tensorsAdded: tf.memory().numTensors - tensorsBefore,
      rssPeak: Math.max(hwm ?? 0, probe.rssPeak, process.memoryUsage.rss()),
      wasmHeapBytes: wasmHeapBytes(),
      seconds,
    };
    if (opts.components) {
      out.perComponent = Object.fromEntries(Object.entries(perComponent).map(([k, c]) => [k, { peakBytes: c.peakBytes, calls: c.calls, seconds: c.seconds }]));
    }
    return out;
  } finally {
    removers.forEach((r) => r());
    probes.delete(probe);
  }
}

// ---- weights per component ----------------------------------------------------------------------------------

export interface ComponentMemory {
  name: string;
  className: string;
  parameters: number;
  /** float32 bytes of all weights */
  weightBytes: number;
  /** bytes of weights that are tensors now */
  residentBytes: number;
  /** bytes of weights offloaded to host memory */
  hostBytes: number;
}

export interface MemoryReport {
  components: ComponentMemory[];
  weightBytes: number;
  residentBytes: number;
  hostBytes: number;
  offload: OffloadMode | null;
  /** tfjs buffer bytes alive now (weights and anything else) */
  tfjsBytes: number;
  wasmHeapBytes: number | null;
}

function componentMemory(name: string, m: Module): ComponentMemory {
  const row: ComponentMemory = { name, className: m.constructor.name, parameters: 0, weightBytes: 0, residentBytes: 0, hostBytes: 0 };
  for (const [, p] of m.namedParameters()) {
    row.parameters += p.numel;
    row.weightBytes += p.numBytes;
    if (p.isLoaded) row.residentBytes += p.numBytes;
    if (p.isOffloaded) row.hostBytes += p.hostBytes;
  }
  return row;
}

/** Weights per component of a pipeline (or of named models): parameters, bytes, resident / offloaded. */
export function memoryReport(target: object | Record<string, Module>): MemoryReport {
  const entries = pipelineModules(target);
  const named = entries.length > 0 ? entries : (Object.entries(target) as [string, Module][]);
  const components = named.map(([n, m]) => componentMemory(n, m));
  const sum = (k: "weightBytes" | "residentBytes" | "hostBytes") => components.reduce((s, c) => s + c[k], 0);
  return {
    components,
    weightBytes: sum("weightBytes"),
    residentBytes: sum("residentBytes"),
    hostBytes: sum("hostBytes"),
    offload: getOffloadMode(target),
    tfjsBytes: liveTensorBytes(),
    wasmHeapBytes: wasmHeapBytes(),
  };
}

/** 1536 -> "1.50 KiB", 3.44e9 -> "3.20 GiB". */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n, u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) { v /= 1024; u++; }
  return u === 0 ? `${v} B` : `${v.toFixed(2)} ${units[u]}`;
}

/** A markdown table of a memoryReport. */
export function formatMemoryReport(r: MemoryReport): string {
  const lines = ["| component | class | parameters | weights | resident | in host memory |", "|---|---|---:|---:|---:|---:|"];
  for (const c of r.components) {
    lines.push(`| ${c.name} | ${c.className} | ${c.parameters.toLocaleString("en-US")} | ${formatBytes(c.weightBytes)} | ${formatBytes(c.residentBytes)} | ${formatBytes(c.hostBytes)} |`);
  }
  lines.push(`| **total** | | ${r.components.reduce((s, c) => s + c.parameters, 0).toLocaleString("en-US")} | ${formatBytes(r.weightBytes)} | ${formatBytes(r.residentBytes)} | ${formatBytes(r.hostBytes)} |`);
  const heap = r.wasmHeapBytes === null ? "" : `; wasm heap ${formatBytes(r.wasmHeapBytes)}`;
  return `${lines.join("\n")}\n\noffload: ${r.offload ?? "none"}; tfjs buffers alive: ${formatBytes(r.tfjsBytes)}${heap}`;
}
