// tf.slice on the wasm backend without a copy of the whole input.
// tfjs-backend-wasm 4.22's Slice kernel starts with backend.readSync(x), which copies ALL of x out of the wasm
// heap into a fresh JS buffer, then copies the slice from that copy: a slice costs O(size of x), not O(size of the
// slice). Taking the 16 (batch, head) blocks of an attention's q, k and v at 64x64 latents read 48 x 10 MB per layer,
// and GEGLU's two halves 2 x 84 MB (measured on the SD 1.5 UNet at 512 px: 9.6 s of a 124 s step). The kernel below
// does the same copy from a view of the heap (what the backend's own Concat does). Same output, bit for bit; the
// gradient (registered by kernel name) is unchanged; strings go to the built-in kernel.
import * as tf from "@tensorflow/tfjs";
import type { KernelArgs, KernelImpl, WasmBackend, WasmOverride } from "./wasm-backend.js";

function sliceKernel(builtin: KernelImpl | undefined, args: KernelArgs): tf.TensorInfo | tf.TensorInfo[] {
  const x = args.inputs.x as tf.TensorInfo;
  if (x.dtype === "string") return builtin!(args);
  const backend = args.backend as WasmBackend;
  const { begin, size } = args.attrs as { begin: number | number[]; size: number | number[] };
  const [b, s] = tf.slice_util.parseSliceParams(x as tf.Tensor, begin, size);
  const out = backend.makeOutput(s, x.dtype); // allocate first: a heap growth would detach earlier views
  const n = tf.util.sizeFromShape(s);
  if (n === 0) return out;
  const xv = backend.typedArrayFromHeap(x);
  const ov = backend.typedArrayFromHeap(out);
  const strides = tf.util.computeStrides(x.shape);
  if (tf.slice_util.isSliceContinous(x.shape, b, s)) {
    const off = tf.slice_util.computeFlatOffset(b, strides);
    ov.set(xv.subarray(off, off + n));
    return out;
  }
  // runs along the last axis, outer indices walked like an odometer
  const rank = s.length;
  const run = s[rank - 1];
  const idx = new Array<number>(rank - 1).fill(0);
  for (let o = 0; o < n; o += run) {
    let off = b[rank - 1];
    for (let d = 0; d < rank - 1; d++) off += (b[d] + idx[d]) * strides[d];
    if (run >= 16) ov.set(xv.subarray(off, off + run), o);
    else for (let i = 0; i < run; i++) ov[o + i] = xv[off + i];
    for (let d = rank - 2; d >= 0; d--) {
      if (++idx[d] < s[d]) break;
      idx[d] = 0;
    }
  }
  return out;
}

export const HEAP_VIEW_SLICE: WasmOverride = { kernelName: "Slice", make: (builtin) => (args) => sliceKernel(builtin, args) };
