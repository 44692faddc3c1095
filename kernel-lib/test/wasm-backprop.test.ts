// The wasm conv-gradient kernels (runtime/wasm/training-kernels.ts) and the gradient fix (runtime/gradient-fixes.ts):
// against tfjs' cpu backend kernels and against central finite differences, on several shapes, strides and paddings.
import { beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { prepareTfjsForTraining } from "../src/runtime/gradient-fixes.js";
import { registerWasmTrainingKernels, unregisterWasmTrainingKernels, wasmTrainingKernelsRegistered } from "../src/runtime/wasm/index.js";
import { expectClose, onCpu } from "./helpers.js";
import { scaledDotProductAttention } from "../src/nn/scaled-dot-product-attention.js";

type Pad = "same" | "valid" | number | [[number, number], [number, number], [number, number], [number, number]];
interface Case { x: [number, number, number, number]; f: [number, number, number, number]; s: number | [number, number]; pad: Pad; bias?: boolean }

const CASES: Case[] = [
  { x: [2, 7, 6, 3], f: [3, 3, 3, 4], s: 1, pad: 1, bias: true }, // Conv2d(padding=1), the ResNet convs
  { x: [2, 8, 8, 3], f: [3, 3, 3, 4], s: 2, pad: [[0, 0], [0, 1], [0, 1], [0, 0]], bias: true }, // Downsample2D padding 0
  { x: [2, 9, 9, 2], f: [3, 3, 2, 3], s: 2, pad: 1 }, // Downsample2D padding 1, odd size
  { x: [1, 9, 7, 2], f: [3, 2, 2, 5], s: [2, 1], pad: "same" }, // non-square filter and strides
  { x: [2, 9, 9, 2], f: [1, 1, 2, 3], s: 1, pad: "valid", bias: true }, // 1x1 shortcut conv
  { x: [2, 10, 10, 2], f: [3, 3, 2, 3], s: 2, pad: "valid" }, // a row/column the conv never reads
  { x: [3, 5, 5, 4], f: [5, 5, 4, 2], s: 1, pad: 2 },
];

const label = (c: Case) => `x [${c.x}] filter [${c.f}] stride ${JSON.stringify(c.s)} pad ${JSON.stringify(c.pad)}${c.bias ? " +bias" : ""}`;

/** Data that is the same on every backend. */
function data(shape: number[], seed: number): Float32Array {
  let s = seed;
  return Float32Array.from({ length: shape.reduce((a, b) => a * b, 1) }, () => ((s = (s * 16807) % 2147483647) / 2147483647) * 2 - 1);
}

/** dL/dx, dL/dW (and dL/db) of L = sum(conv(x, W) * R) on the active backend. */
function convGrads(c: Case): { dx: Float32Array; dw: Float32Array; db?: Float32Array } {
  const x = tf.tensor4d(data(c.x, 1), c.x);
  const w = tf.tensor4d(data(c.f, 2), c.f);
  const b = tf.tensor1d(data([c.f[3]], 3));
  const y = c.bias ? tf.fused.conv2d({ x, filter: w, strides: c.s, pad: c.pad, bias: b }) : tf.conv2d(x, w, c.s, c.pad);
  const r = tf.tensor(data(y.shape, 4), y.shape);
  const f = (a: tf.Tensor, ww: tf.Tensor, bb: tf.Tensor) =>
    tf.sum(tf.mul(c.bias ? tf.fused.conv2d({ x: a as tf.Tensor4D, filter: ww as tf.Tensor4D, strides: c.s, pad: c.pad, bias: bb }) : tf.conv2d(a as tf.Tensor4D, ww as tf.Tensor4D, c.s, c.pad), r));
  const [dx, dw, db] = c.bias ? tf.grads(f)([x, w, b]) : tf.grads((a: tf.Tensor, ww: tf.Tensor) => f(a, ww, b))([x, w]);
  const out = { dx: dx.dataSync() as Float32Array, dw: dw.dataSync() as Float32Array, db: c.bias ? (db.dataSync() as Float32Array) : undefined };
  tf.dispose([x, w, b, y, r, dx, dw, db]);
  return out;
}

describe("wasm conv-gradient kernels", () => {
  beforeAll(() => {
    expect(tf.getBackend()).toBe("wasm");
    prepareTfjsForTraining();
  });

  for (const c of CASES) {
    it(`match the cpu backend: ${label(c)}`, async () => {
      const before = tf.memory().numTensors;
      const got = convGrads(c);
      expect(tf.memory().numTensors).toBe(before);
      const ref = await onCpu(() => convGrads(c));
      expectClose(got.dw, ref.dw, 1e-5, 1e-5, "dW");
      expectClose(got.dx, ref.dx, 1e-5, 1e-5, "dx");
      if (c.bias) expectClose(got.db!, ref.db!, 1e-5, 1e-5, "db");
    });
  }

  // L is linear in W and in x, so a central difference is exact up to float32 rounding of L
  it("match central finite differences of the loss", () => {
    for (const c of CASES.slice(0, 4)) {
      const { dx, dw } = convGrads(c);
      const xd = data(c.x, 1), wd = data(c.f, 2);
      const r = (() => { const y = tf.conv2d(tf.tensor4d(xd, c.x), tf.tensor4d(wd, c.f), c.s, c.pad); const v = data(y.shape, 4); const s = y.shape; y.dispose(); return { v, s }; })();
      const loss = (xv: Float32Array, wv: Float32Array) =>
        tf.tidy(() => tf.sum(tf.mul(tf.conv2d(tf.tensor4d(xv, c.x), tf.tensor4d(wv, c.f), c.s, c.pad), tf.tensor(r.v, r.s))).dataSync()[0]);
      const h = 0.5;
      for (const [arr, grad, which] of [[wd, dw, "W"], [xd, dx, "x"]] as const) {
        for (const i of [0, Math.floor(arr.length / 3), arr.length - 1]) {
          const plus = arr.slice(), minus = arr.slice();
          plus[i] += h;
          minus[i] -= h;
          const fd = which === "W" ? (loss(xd, plus) - loss(xd, minus)) / (2 * h) : (loss(plus, wd) - loss(minus, wd)) / (2 * h);
          expect(Math.abs(fd - grad[i]), `${label(c)} d/d${which}[${i}]: finite difference ${fd}, kernel ${grad[i]}`).toBeLessThan(1e-4 * Math.max(1, Math.abs(fd)));
        }
      }
    }
  });

  // tf.gather's gradient is an UnsortedSegmentSum, which wasm lacks: every embedding table (CLIP's tokens) needs it
  it("give tf.gather (an embedding lookup with repeated ids) the cpu backend's gradient", async () => {
    const ids = [3, 0, 3, 7, 3, 1, 0, 9];
    const grad = () => tf.tidy(() => {
      const table = tf.tensor2d(data([10, 4], 7), [10, 4]);
      const r = tf.tensor(data([2, 4, 4], 8), [2, 4, 4]);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, tf.tensor2d(ids, [2, 4], "int32")), r)))(table);
      return g.dataSync() as Float32Array;
    });
    const before = tf.memory().numTensors;
    const got = grad();
    expect(tf.memory().numTensors).toBe(before);
    const ref = await onCpu(grad);
    expectClose(got, ref, 1e-6, 1e-6, "d table");
    // rows no id points at get zero; row 3 (three times) the sum of three rows of r
    expect(Array.from(got.slice(2 * 4, 3 * 4))).toEqual([0, 0, 0, 0]);
  });

  // tfjs' matMul gradients (transposed operands: runtime/wasm/batch-mat-mul.ts) and attention's pairs while recording
  it("give matMul (2-D and rank-3) and scaledDotProductAttention the cpu backend's gradients", async () => {
    const grads = () => tf.tidy(() => {
      const a = tf.tensor2d(data([6, 5], 9), [6, 5]), b = tf.tensor2d(data([5, 4], 10), [5, 4]);
      const a3 = tf.tensor3d(data([3, 4, 5], 11), [3, 4, 5]), b3 = tf.tensor3d(data([3, 5, 2], 12), [3, 5, 2]);
      const r = tf.tensor2d(data([6, 4], 13), [6, 4]), r3 = tf.tensor3d(data([3, 4, 2], 14), [3, 4, 2]);
      const g2 = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor2D, y as tf.Tensor2D), r)))([a, b]);
      const g3 = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.mul(tf.matMul(x as tf.Tensor3D, y as tf.Tensor3D), r3)))([a3, b3]);
      // 2 items x 3 heads of 40 query and 40 key tokens, head dim 700: above SMALL_PAIR_WORK, so per-pair blocks
      const [B, H, L, D] = [2, 3, 40, 700];
      const q = tf.tensor2d(data([B * L, H * D], 15), [B * L, H * D]), k = tf.tensor2d(data([B * L, H * D], 16), [B * L, H * D]);
      const v = tf.tensor2d(data([B * L, H * D], 17), [B * L, H * D]);
      const ga = tf.grads((x: tf.Tensor, y: tf.Tensor, z: tf.Tensor) =>
        tf.sum(tf.square(scaledDotProductAttention(x as tf.Tensor2D, y as tf.Tensor2D, z as tf.Tensor2D, B, H, 0.01))))([q, k, v]);
      return [...g2, ...g3, ...ga].map((t) => t.dataSync() as Float32Array);
    });
    const before = tf.memory().numTensors;
    const got = grads();
    expect(tf.memory().numTensors).toBe(before);
    const ref = await onCpu(grads);
    got.forEach((g, i) => expectClose(g, ref[i], 1e-4, 1e-4, `gradient ${i}`));
  });

  it("make conv2dTranspose (which runs Conv2DBackpropInput) agree with the built-in kernel", () => {
    const dy = tf.tensor4d(data([2, 4, 4, 3], 5), [2, 4, 4, 3]);
    const w = tf.tensor4d(data([3, 3, 2, 3], 6), [3, 3, 2, 3]);
    const ours = tf.conv2dTranspose(dy, w, [2, 8, 8, 2], 2, "same");
    unregisterWasmTrainingKernels();
    try {
      const builtin = tf.conv2dTranspose(dy, w, [2, 8, 8, 2], 2, "same");
      expectClose(ours, builtin, 1e-5, 1e-5);
      builtin.dispose();
    } finally {
      registerWasmTrainingKernels();
    }
    tf.dispose([dy, w, ours]);
  });

  it("can be unregistered (wasm then has no Conv2DBackpropFilter again) and registered again", () => {
    unregisterWasmTrainingKernels();
    expect(wasmTrainingKernelsRegistered()).toBe(false);
    expect(tf.getKernel("Conv2DBackpropFilter", "wasm")).toBeUndefined();
    expect(tf.getKernel("Conv2DBackpropInput", "wasm")).toBeDefined(); // the built-in one
    registerWasmTrainingKernels();
    registerWasmTrainingKernels(); // idempotent
    expect(wasmTrainingKernelsRegistered()).toBe(true);
    expect(tf.getKernel("Conv2DBackpropFilter", "wasm")).toBeDefined();
  });

  it("reject NCHW with a clear error", () => {
    const x = tf.zeros([1, 2, 4, 4]) as tf.Tensor4D;
    const dy = tf.zeros([1, 3, 4, 4]) as tf.Tensor4D;
    const attrs = { strides: 1, pad: "same", dataFormat: "NCHW", filterShape: [3, 3, 2, 3] };
    expect(() => tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, attrs)).toThrow(/only NHWC/);
    tf.dispose([x, dy]);
  });
});

describe("gradient fixes", () => {
  beforeAll(() => prepareTfjsForTraining());

  it("SquaredDifference sums its gradient over broadcast axes: d/db sum((a - b)^2) = -2 sum(a - b)", () => {
    const a = tf.tensor4d(data([2, 3, 3, 4], 7), [2, 3, 3, 4]);
    const b = tf.tensor4d(data([2, 1, 1, 4], 8), [2, 1, 1, 4]);
    const [da, db] = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.sum(tf.squaredDifference(x, y)))([a, b]);
    expect(db.shape).toEqual([2, 1, 1, 4]);
    expectClose(da, tf.tidy(() => tf.mul(tf.sub(a, b), 2)), 1e-6, 1e-6, "d/da");
    expectClose(db, tf.tidy(() => tf.mul(tf.sum(tf.sub(a, b), [1, 2], true), -2)), 1e-5, 1e-5, "d/db");
    tf.dispose([a, b, da, db]);
  });

  it("AvgPool gradient: dy / (window size) to every input of the window (whole picture and 2x2 windows)", () => {
    for (const [shape, k] of [[[2, 4, 6, 3], [4, 6]], [[1, 6, 6, 2], [2, 2]]] as const) {
      const [n, h, w, c] = shape;
      const [oh, ow] = [h / k[0], w / k[1]];
      const x = tf.tensor4d(data([...shape], 9), [...shape]);
      const weights = data([n, oh, ow, c], 10);
      const g = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.avgPool(t as tf.Tensor4D, [k[0], k[1]], [k[0], k[1]], "valid"), tf.tensor(weights, [n, oh, ow, c]))))(x);
      // non-overlapping windows: input (i, j) belongs to window (i / kh, j / kw) only
      const expected = new Float32Array(n * h * w * c);
      for (let b = 0; b < n; b++) for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) for (let ch = 0; ch < c; ch++) {
        expected[((b * h + i) * w + j) * c + ch] = weights[((b * oh + Math.floor(i / k[0])) * ow + Math.floor(j / k[1])) * c + ch] / (k[0] * k[1]);
      }
      expectClose(g, expected, 1e-6, 1e-6, `avgPool ${JSON.stringify(k)}`);
      tf.dispose([x, g]);
    }
  });
});
