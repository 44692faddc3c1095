// The parts of tfjs-backend-wasm 4.22's backend object the kit's kernels use (pinned version: package.json), and
// the override registry: a kit kernel replaces the built-in one of the same name for the wasm backend and may call
// it back. Every override computes the same function as the kernel it replaces; the models never know.
import * as tf from "@tensorflow/tfjs";

export interface WasmTensorData {
  id: number;
  memoryOffset: number;
  shape: number[];
  dtype: tf.DataType;
  refCount: number;
}

export interface WasmBackend {
  wasm: {
    cwrap(name: string, ret: null, args: string[]): (...args: unknown[]) => void;
    tfjs: { disposeData(id: number): void };
  };
  dataIdMap: { get(dataId: object): WasmTensorData; delete(dataId: object): void };
  makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
  incRef(dataId: object): void;
}

export type KernelArgs = { inputs: tf.NamedTensorInfoMap; attrs: tf.NamedAttrMap; backend: object };
export type KernelImpl = (args: KernelArgs) => tf.TensorInfo | tf.TensorInfo[];

/**
 * A tensor id over `shape` floats of `t`'s memory from element `offset` on: no copy. The C++ side knows it as its
 * own tensor (XNNPACK caches its packed operators by that id and drops them in releaseView).
 */
export function heapView(backend: WasmBackend, t: tf.TensorInfo, offset: number, shape: number[]): tf.TensorInfo {
  const base = backend.dataIdMap.get(t.dataId).memoryOffset;
  return backend.makeOutput(shape, "float32", base + 4 * offset);
}

/** Forgets a heapView without freeing the memory it looks at (which belongs to the viewed tensor). */
export function releaseView(backend: WasmBackend, v: tf.TensorInfo): void {
  backend.wasm.tfjs.disposeData(backend.dataIdMap.get(v.dataId).id);
  backend.dataIdMap.delete(v.dataId);
}

/**
 * A kernel made of tf ops: runs them in a tidy and hands the result's data to the engine (not taped: the engine
 * records no gradient inside a kernel, so the op's own registered gradient applies).
 */
export function opsKernel(compute: (inputs: Record<string, tf.Tensor>, attrs: Record<string, unknown>) => tf.Tensor): KernelImpl {
  return ({ inputs, attrs, backend }) => {
    const out = tf.tidy(() => compute(inputs as Record<string, tf.Tensor>, attrs as Record<string, unknown>));
    (backend as WasmBackend).incRef(out.dataId); // keep the data when our handle goes
    out.dispose();
    return { dataId: out.dataId, shape: out.shape, dtype: out.dtype };
  };
}

/** One kit kernel for the wasm backend; `make` gets the built-in kernel it replaces (undefined where wasm has none). */
export interface WasmOverride {
  kernelName: string;
  make(builtin: KernelImpl | undefined): KernelImpl;
}

const installed = new Map<string, { kit: tf.KernelConfig; builtin: tf.KernelConfig | undefined }>();

/** Puts each override in place of the wasm backend's kernel (idempotent per kernel). */
export function installOverrides(overrides: WasmOverride[]): void {
  for (const o of overrides) {
    const current = tf.getKernel(o.kernelName, "wasm");
    if (current && installed.get(o.kernelName)?.kit.kernelFunc === current.kernelFunc) continue;
    const builtin = current ?? undefined;
    // the built-in kernel's setup (binding its C function to each new module: initBackend, resetBackend) stays
    const kit: tf.KernelConfig = {
      kernelName: o.kernelName, backendName: "wasm", kernelFunc: o.make(builtin?.kernelFunc as KernelImpl | undefined) as unknown as tf.KernelFunc,
      setupFunc: builtin?.setupFunc, disposeFunc: builtin?.disposeFunc,
    };
    if (current) tf.unregisterKernel(o.kernelName, "wasm");
    tf.registerKernel(kit);
    installed.set(o.kernelName, { kit, builtin });
  }
}

/** Puts the built-in kernels back (those wasm lacks are removed). */
export function uninstallOverrides(overrides: WasmOverride[]): void {
  for (const o of overrides) {
    const entry = installed.get(o.kernelName);
    if (!entry || tf.getKernel(o.kernelName, "wasm")?.kernelFunc !== entry.kit.kernelFunc) continue;
    tf.unregisterKernel(o.kernelName, "wasm");
    if (entry.builtin) tf.registerKernel(entry.builtin);
    installed.delete(o.kernelName);
  }
}

export function overridesInstalled(overrides: WasmOverride[]): boolean {
  return overrides.every((o) => {
    const entry = installed.get(o.kernelName);
    return entry !== undefined && tf.getKernel(o.kernelName, "wasm")?.kernelFunc === entry.kit.kernelFunc;
  });
}
