// tf.matMul on the wasm backend for batches and transposed operands at XNNPACK speed.
// tfjs-backend-wasm 4.22 runs a matMul on XNNPACK only when both operands are a single matrix without a transpose
// flag; a batch ([B, M, K] @ [B, K, N], as attention's (batch, head) pairs) or transposeA / transposeB (attention's
// q k^T, every matMul gradient) runs a plain blocked loop, ~35x slower. This kernel transposes flagged operands
// once (a copy), then runs each batch item's product as its own XNNPACK matMul on views of the operands' and the
// output's memory (no copies): the same sums as the built-in kernel, in XNNPACK's order.
import * as tf from "@tensorflow/tfjs";
import { heapView, releaseView, type KernelArgs, type KernelImpl, type WasmBackend, type WasmOverride } from "./wasm-backend.js";

type WasmMatMul = (aId: number, aShape: Uint8Array, aRank: number, bId: number, bShape: Uint8Array, bRank: number, ta: boolean, tb: boolean, outId: number) => void;

/** The C function behind wasm's BatchMatMul kernel, bound once per backend instance (resetBackend makes a new one). */
const bound = new WeakMap<object, WasmMatMul>();
function wasmMatMul(backend: WasmBackend): WasmMatMul {
  let f = bound.get(backend);
  if (!f) {
    f = backend.wasm.cwrap("BatchMatMul", null, ["number", "array", "number", "number", "array", "number", "number", "number", "number"]) as WasmMatMul;
    bound.set(backend, f);
  }
  return f;
}

const shapeBytes = (shape: number[]) => new Uint8Array(new Int32Array(shape).buffer);

function batchMatMul(builtin: KernelImpl, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const a = args.inputs.a as tf.Tensor;
  const b = args.inputs.b as tf.Tensor;
  const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
  const batchA = tf.util.sizeFromShape(a.shape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(b.shape.slice(0, -2));
  const plain = !transposeA && !transposeB && batchA === 1 && batchB === 1;
  const broadcastable = batchA === batchB || batchA === 1 || batchB === 1;
  if (plain || !broadcastable || a.dtype !== "float32" || b.dtype !== "float32" || a.size === 0 || b.size === 0) return builtin(args);
  const backend = args.backend as WasmBackend;
  // [batch, M, K] and [batch, K, N], flag-free: flagged operands transposed once (fresh tensors)
  const [at, bt] = tf.tidy((): [tf.Tensor3D, tf.Tensor3D] => {
    const a3 = tf.reshape(a, [batchA, a.shape[a.rank - 2]!, a.shape[a.rank - 1]!]) as tf.Tensor3D;
    const b3 = tf.reshape(b, [batchB, b.shape[b.rank - 2]!, b.shape[b.rank - 1]!]) as tf.Tensor3D;
    return [transposeA ? tf.transpose(a3, [0, 2, 1]) : a3, transposeB ? tf.transpose(b3, [0, 2, 1]) : b3];
  });
  const [, m, k] = at.shape;
  const n = bt.shape[2];
  const batch = Math.max(batchA, batchB);
  const outShape = [...tf.backend_util.assertAndGetBroadcastShape(a.shape.slice(0, -2), b.shape.slice(0, -2)), m, n];
  const out = backend.makeOutput([batch, m, n], "float32");
  const matMul = wasmMatMul(backend);
  const [aShape, bShape, oShape] = [shapeBytes([1, m, k]), shapeBytes([1, k, n]), shapeBytes([1, m, n])];
  const idOf = (t: tf.TensorInfo) => backend.dataIdMap.get(t.dataId).id;
  // a right operand shared by every item is packed once (one view); a view per item otherwise
  const sharedB = batchB === 1 ? heapView(backend, bt, 0, [1, k, n]) : null;
  try {
    for (let p = 0; p < batch; p++) {
      const views = [heapView(backend, at, batchA === 1 ? 0 : p * m * k, [1, m, k]), sharedB ?? heapView(backend, bt, p * k * n, [1, k, n]),
        heapView(backend, out, p * m * n, [1, m, n])];
      try {
        matMul(idOf(views[0]), aShape, 3, idOf(views[1]), bShape, 3, false, false, idOf(views[2]));
      } finally {
        for (const v of views) if (v !== sharedB) releaseView(backend, v);
      }
    }
  } finally {
    if (sharedB) releaseView(backend, sharedB);
    tf.dispose([at, bt]);
  }
  return { dataId: out.dataId, shape: outShape, dtype: "float32" };
}

export const BATCH_MAT_MUL: WasmOverride = {
  kernelName: "BatchMatMul",
  make: (builtin) => (args) => batchMatMul(builtin!, args),
};
