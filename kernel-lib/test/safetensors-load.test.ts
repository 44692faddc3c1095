// The fast load paths: F16/BF16 read into the upper half of the float32 array and widened in place,
// float tensors read straight into the wasm heap (runtime/writable-tensor.ts), other dtypes, errors
// and memory. Throughput is measured by bench --only=load, not here.
import { describe, it, expect, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { loadSafetensors, readSafetensorsArrays, saveSafetensors, serializeSafetensors } from "../src/io/safetensors.js";
import { float16ToFloat32Into, bfloat16ToFloat32Into, float16ToFloat32 } from "../src/io/float16.js";
import { writableFloat32Tensor } from "../src/runtime/writable-tensor.js";
import { fixture } from "./helpers.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "st-load-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** float32 bits of a half by the textbook formula (reference for the table). */
function halfBits(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, e = (h >> 10) & 31, m = h & 0x3ff;
  const f = new Float32Array([e === 0 ? sign * m * 2 ** -24 : e === 31 ? sign * Infinity : sign * (1 + m / 1024) * 2 ** (e - 15)]);
  let bits = new Uint32Array(f.buffer)[0];
  if (e === 31 && m) bits = ((h & 0x8000) << 16 | 0x7f800000 | (m << 13)) >>> 0; // NaN keeps sign and payload (torch)
  return bits;
}

describe("safetensors fast load", () => {
  it("widens all 65536 halves in place from the upper half, bit for bit", () => {
    const out = new Float32Array(65536);
    const halves = new Uint16Array(out.buffer, 2 * 65536, 65536);
    for (let i = 0; i < 65536; i++) halves[i] = i;
    float16ToFloat32Into(halves, out);
    const bits = new Uint32Array(out.buffer);
    for (let h = 0; h < 65536; h++) if (bits[h] !== halfBits(h)) throw new Error(`half 0x${h.toString(16)}: 0x${bits[h].toString(16)} != 0x${halfBits(h).toString(16)}`);
    expect(Array.from(float16ToFloat32(new Uint16Array([0x3c00, 0xfbff, 0x8000])))).toEqual([1, -65504, -0]);
  });

  it("widens bfloat16 in place and refuses an overlap that would overwrite unread values", () => {
    const out = new Float32Array(4);
    const src = new Uint16Array(out.buffer, 8, 4);
    src.set([0x3f80, 0xc000, 0x7f80, 0x0001]);
    bfloat16ToFloat32Into(src, out);
    expect(Array.from(out.slice(0, 3))).toEqual([1, -2, Infinity]);
    expect(out[3]).toBeCloseTo(9.18e-41, 43);
    const bad = new Float32Array(4);
    expect(() => float16ToFloat32Into(new Uint16Array(bad.buffer, 2, 4), bad)).toThrow(/upper half of the output \(byte 8 on\), not at byte 2/);
  });

  it("loads F32, F16 and BF16 straight into the backend's tensors with the values readSafetensorsArrays gives", () => {
    const data = new Float32Array(3001).map((_, i) => Math.sin(i) * 100);
    const raw = { dtype: "F32" as const, shape: [3001], data };
    const f32 = path.join(tmp, "a32.safetensors"), f16 = path.join(tmp, "a16.safetensors");
    saveSafetensors(f32, { a: raw, b: { dtype: "I64", shape: [3], data: new Int32Array([7, -8, 9]) } });
    saveSafetensors(f16, { a: raw }, { dtype: "F16" });
    // BF16: the top halves of the float32 values, written by hand
    const bf = new Uint16Array(data.length);
    const u = new Uint32Array(data.buffer);
    for (let i = 0; i < bf.length; i++) bf[i] = u[i] >>> 16;
    const header = Buffer.from(JSON.stringify({ a: { dtype: "BF16", shape: [3001], data_offsets: [0, 2 * 3001] } }));
    const fbf = path.join(tmp, "abf.safetensors");
    fs.writeFileSync(fbf, Buffer.concat([Buffer.from(new BigUint64Array([BigInt(header.length)]).buffer), header, Buffer.from(bf.buffer)]));
    const before = tf.memory().numTensors;
    for (const f of [f32, f16, fbf]) {
      const ts = loadSafetensors(f);
      const arrays = readSafetensorsArrays(f).tensors;
      expect(ts.a.dtype).toBe("float32");
      expect(ts.a.shape).toEqual([3001]);
      expect(new Uint32Array(new Float32Array(ts.a.dataSync()).buffer)).toEqual(new Uint32Array((arrays.get("a")!.data as Float32Array).buffer));
      if (f === f32) {
        expect(Array.from(ts.a.dataSync())).toEqual(Array.from(data));
        expect(ts.b.dtype).toBe("int32");
        expect(Array.from(ts.b.dataSync())).toEqual([7, -8, 9]);
      }
      tf.dispose(Object.values(ts));
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it("widens an F16 tensor longer than one 4 MiB read chunk, with a tail that is not a multiple of 8", () => {
    const n = (1 << 21) + 13;
    const halves = new Uint16Array(n);
    for (let i = 0; i < n; i++) halves[i] = (i * 40503) & 0xffff;
    const header = Buffer.from(JSON.stringify({ w: { dtype: "F16", shape: [n], data_offsets: [0, 2 * n] } }));
    const p = path.join(tmp, "long16.safetensors");
    fs.writeFileSync(p, Buffer.concat([Buffer.from(new BigUint64Array([BigInt(header.length)]).buffer), header, Buffer.from(halves.buffer)]));
    const t = loadSafetensors(p).w;
    const a = new Uint32Array(new Float32Array(t.dataSync()).buffer);
    const b = new Uint32Array((readSafetensorsArrays(p).tensors.get("w")!.data as Float32Array).buffer);
    const ref = Uint32Array.from({ length: 65536 }, (_, h) => halfBits(h));
    let bad = -1;
    for (let i = 0; i < n && bad < 0; i++) if (a[i] !== ref[halves[i]] || b[i] !== a[i]) bad = i;
    expect(bad, `first wrong element (half 0x${halves[Math.max(bad, 0)].toString(16)})`).toBe(-1);
    t.dispose();
  });

  it("reads the fixture model's fp16 variant like its fp32 weights rounded to half", () => {
    const ts = loadSafetensors(fixture("models/unet-ddpm-tiny/diffusion_pytorch_model.fp16.safetensors"));
    const ref = readSafetensorsArrays(fixture("models/unet-ddpm-tiny/diffusion_pytorch_model.fp16.safetensors")).tensors;
    for (const [k, t] of Object.entries(ts)) expect(Array.from(t.dataSync()), k).toEqual(Array.from(ref.get(k)!.data));
    tf.dispose(Object.values(ts));
  });

  it("frees the tensors it made when a later one fails, naming the file", () => {
    const p = path.join(tmp, "two.safetensors");
    const one = tf.ones([64]);
    fs.writeFileSync(p, serializeSafetensors({ a: one }));
    one.dispose();
    const before = tf.memory().numTensors;
    const bytes = tf.memory().numBytes;
    expect(() => loadSafetensors(p, ["a", "nope"])).toThrow(/two\.safetensors: no tensor named "nope"/);
    expect(tf.memory().numTensors).toBe(before);
    expect(tf.memory().numBytes).toBe(bytes);
  });

  it("hands out a writable tensor that is freed on abort", () => {
    const before = tf.memory().numTensors;
    const w = writableFloat32Tensor([2, 3]);
    w.values.set([1, 2, 3, 4, 5, 6]);
    const t = w.finish();
    expect(Array.from(t.dataSync())).toEqual([1, 2, 3, 4, 5, 6]);
    t.dispose();
    const bytesBefore = tf.memory().numBytes;
    writableFloat32Tensor([1000]).abort();
    expect(tf.memory().numBytes).toBe(bytesBefore);
    expect(tf.memory().numTensors).toBe(before);
  });
});
