// A float32 tensor whose values are written in place, so a loader reads file bytes straight into the
// tensor's own memory. On wasm that memory is the backend's heap (BackendWasm.makeOutput +
// typedArrayFromHeap, tfjs-backend-wasm 4.22.0): tf.tensor(values) would copy the values there once
// more. Elsewhere it is a fresh Float32Array handed to tf.tensor (the cpu backend keeps it as is).
import * as tf from "@tensorflow/tfjs";

export interface WritableTensor {
  /** the tensor's values: fill them before any other tfjs call (a heap growth would move them) */
  values: Float32Array;
  /** the tensor, once the values are written */
  finish(): tf.Tensor;
  /** frees the memory when writing failed */
  abort(): void;
}

interface WasmHeapBackend {
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array;
  disposeData(dataId: object, force?: boolean): boolean;
}

function wasmHeapBackend(): WasmHeapBackend | null {
  const engine = tf.engine() as unknown as { backendName: string | null };
  if (engine.backendName !== "wasm") return null;
  const b = tf.backend() as unknown as Partial<WasmHeapBackend>;
  return typeof b.makeOutput === "function" && typeof b.typedArrayFromHeap === "function" && typeof b.disposeData === "function"
    ? (b as WasmHeapBackend) : null;
}

export function writableFloat32Tensor(shape: number[]): WritableTensor {
  const size = shape.reduce((a, b) => a * b, 1);
  const wasm = size > 0 ? wasmHeapBackend() : null;
  if (wasm) {
    const info = wasm.makeOutput(shape, "float32");
    return {
      values: wasm.typedArrayFromHeap(info),
      finish: () => tf.engine().makeTensorFromTensorInfo(info),
      abort: () => { wasm.disposeData(info.dataId, true); },
    };
  }
  const values = new Float32Array(size);
  return { values, finish: () => tf.tensor(values, shape, "float32"), abort: () => {} };
}
