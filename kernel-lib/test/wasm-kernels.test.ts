// The kit's wasm kernels (runtime/wasm/): each computes the function of the kernel it replaces. Compared with tfjs'
// cpu backend (plain JavaScript loops: another summation order, so float32 rounding apart), and for the packed-weight
// policy with the fused kernels as XNNPACK runs them; none leaves a tensor or a heap view behind.
import { afterEach, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { getKeepPackedWeights, setKeepPackedWeights, wasmKernelsRegistered, WASM_KERNELS } from "../src/runtime/wasm/index.js";
import { expectClose, onCpu } from "./helpers.js";

/** Data that is the same on every backend. */
function data(shape: number[], seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1);
}
const t = (shape: number[], seed: number) => tf.tensor(data(shape, seed), shape);

/** Backend data ids alive (tensors and the kit's heap views alike): a view not released would show here. */
const dataIds = () => (tf.backend() as unknown as { numDataIds(): number }).numDataIds();

/** fn's result on wasm and on cpu, and that wasm kept its tensors and data ids. */
async function both(fn: () => tf.Tensor): Promise<{ wasm: Float32Array; cpu: Float32Array; shape: number[] }> {
  const [n0, d0] = [tf.memory().numTensors, dataIds()];
  const y = fn();
  const out: { wasm: Float32Array; cpu: Float32Array; shape: number[] } = { wasm: y.dataSync() as Float32Array, shape: y.shape, cpu: new Float32Array() };
  y.dispose();
  expect([tf.memory().numTensors, dataIds()], "tensors and data ids after the call").toEqual([n0, d0]);
  out.cpu = await onCpu(() => tf.tidy(() => fn().dataSync() as Float32Array));
  return out;
}

describe("the kit's wasm kernels (runtime/wasm/)", () => {
  beforeAll(() => {
    expect(tf.getBackend()).toBe("wasm");
    // initBackend (test/setup.ts) installed them
    expect(wasmKernelsRegistered()).toBe(true);
    for (const o of WASM_KERNELS) expect(tf.getKernel(o.kernelName, "wasm"), o.kernelName).toBeDefined();
  });
  afterEach(() => setKeepPackedWeights(true));

  const MATMULS: { a: number[]; b: number[]; ta?: boolean; tb?: boolean; what: string }[] = [
    { a: [3, 4, 5], b: [3, 5, 6], what: "a batch" },
    { a: [3, 4, 5], b: [3, 6, 5], tb: true, what: "a batch, b transposed (q k^T)" },
    { a: [3, 5, 4], b: [3, 5, 6], ta: true, what: "a batch, a transposed (a^T dy)" },
    { a: [2, 3, 5, 4], b: [2, 3, 6, 5], ta: true, tb: true, what: "rank 4, both transposed" },
    { a: [1, 4, 5], b: [3, 5, 6], what: "a broadcast over b's batch" },
    { a: [3, 4, 5], b: [5, 6], what: "b shared by the batch (rank 2)" },
    { a: [7, 5], b: [6, 5], tb: true, what: "one matrix, b transposed (a matMul gradient)" },
    { a: [5, 7], b: [5, 6], ta: true, what: "one matrix, a transposed" },
    { a: [6, 5], b: [5, 4], what: "one matrix (the built-in XNNPACK call)" },
  ];
  for (const c of MATMULS) {
    it(`BatchMatMul: ${c.what}, [${c.a}]${c.ta ? "^T" : ""} @ [${c.b}]${c.tb ? "^T" : ""}`, async () => {
      const r = await both(() => tf.tidy(() => tf.matMul(t(c.a, 1), t(c.b, 2), c.ta, c.tb)));
      expectClose(r.wasm, r.cpu, 1e-5, 1e-5, "matMul");
      const m = c.ta ? c.a[c.a.length - 1] : c.a[c.a.length - 2];
      const n = c.tb ? c.b[c.b.length - 2] : c.b[c.b.length - 1];
      expect(r.shape.slice(-2)).toEqual([m, n]);
    });
  }

  it("BatchMatMul: 16 attention pairs of 300 tokens (each pair its own XNNPACK product on views of the operands)", async () => {
    const r = await both(() => tf.tidy(() => tf.softmax(tf.matMul(t([16, 300, 40], 3), t([16, 300, 40], 4), false, true))));
    expectClose(r.wasm, r.cpu, 1e-6, 1e-4, "softmax(q k^T)");
  });

  for (const keepDims of [true, false]) {
    it(`Mean over H and W of NHWC (GroupNorm's statistics), keepDims ${keepDims}; other axes to the built-in kernel`, async () => {
      const hw = await both(() => tf.tidy(() => tf.mean(t([2, 5, 7, 3], 5), [1, 2], keepDims)));
      expect(hw.shape).toEqual(keepDims ? [2, 1, 1, 3] : [2, 3]);
      expectClose(hw.wasm, hw.cpu, 1e-6, 1e-5, "mean over [1, 2]");
      const other = await both(() => tf.tidy(() => tf.mean(t([2, 5, 7, 3], 6), [2, 3], keepDims)));
      expectClose(other.wasm, other.cpu, 1e-6, 1e-5, "mean over [2, 3]");
    });
  }

  const CONVS: { x: [number, number, number, number]; f: [number, number, number, number]; s: number; pad: number | "valid"; bias: boolean; path: string }[] = [
    { x: [2, 6, 6, 8], f: [1, 1, 8, 5], s: 1, pad: "valid", bias: true, path: "1x1: one matMul over the pixels" },
    { x: [1, 5, 5, 640], f: [3, 3, 640, 6], s: 1, pad: 1, bias: true, path: "3x3 with 640 input channels: one matMul per tap" },
    { x: [1, 5, 5, 640], f: [3, 3, 640, 6], s: 1, pad: 1, bias: false, path: "per tap, no bias" },
    { x: [2, 7, 7, 4], f: [3, 3, 4, 6], s: 2, pad: 1, bias: true, path: "strided: the conv with a fresh bias" },
    { x: [2, 6, 6, 4], f: [3, 3, 4, 6], s: 1, pad: 1, bias: false, path: "few channels: the conv with fresh zeros as bias" },
  ];
  for (const c of CONVS) {
    it(`FusedConv2D with re-packed weights (setKeepPackedWeights(false)), ${c.path}: the packed conv's numbers`, async () => {
      const x = t(c.x, 7), w = t(c.f, 8) as tf.Tensor4D, b = t([c.f[3]], 9) as tf.Tensor1D;
      const conv = () => tf.fused.conv2d({ x: x as tf.Tensor4D, filter: w, strides: c.s, pad: c.pad, bias: c.bias ? b : undefined });
      const packed = conv();
      setKeepPackedWeights(false);
      const [n0, d0] = [tf.memory().numTensors, dataIds()];
      const repacked = conv();
      expect([tf.memory().numTensors, dataIds()]).toEqual([n0 + 1, d0 + 1]);
      expect(getKeepPackedWeights()).toBe(false);
      expect(repacked.shape).toEqual(packed.shape);
      // the same products summed in another order: float32 rounding grows with the K = k*k*cin terms of a sum
      // (5760 terms of values up to ~50 here: ~1e-4)
      const k = c.f[0] * c.f[1] * c.f[2];
      expectClose(repacked, packed, k > 1000 ? 5e-4 : 1e-5, 1e-5, c.path);
      tf.dispose([x, w, b, packed, repacked]);
    });
  }

  it("_FusedMatMul with re-packed weights: the packed product, with and without a bias", () => {
    const a = t([7, 12], 10) as tf.Tensor2D, w = t([12, 5], 11) as tf.Tensor2D, b = t([5], 12);
    for (const bias of [b, undefined]) {
      const packed = tf.fused.matMul({ a, b: w, bias });
      setKeepPackedWeights(false);
      const repacked = tf.fused.matMul({ a, b: w, bias });
      setKeepPackedWeights(true);
      expectClose(repacked, packed, 1e-6, 1e-6, bias ? "with bias" : "without bias");
      tf.dispose([packed, repacked]);
    }
    tf.dispose([a, w, b]);
  });
});
