import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { readSafetensorsHeader, loadSafetensors, saveSafetensors, readSafetensorsArrays, serializeSafetensors } from "../src/io/safetensors.js";
import { float16ToFloat32, float32ToFloat16, bfloat16ToFloat32 } from "../src/io/float16.js";
import { fixture } from "./helpers.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "st-"));
function file(name: string, bytes: Uint8Array | Buffer): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
}
function withHeader(header: object, data: Uint8Array): Buffer {
  const h = Buffer.from(JSON.stringify(header));
  const out = Buffer.alloc(8 + h.length + data.length);
  out.writeBigUInt64LE(BigInt(h.length), 0);
  h.copy(out, 8);
  out.set(data, 8 + h.length);
  return out;
}

describe("safetensors", () => {
  it("reads the fp32 fixture model and its fp16 variant to the same values within half precision", () => {
    const f32 = readSafetensorsArrays(fixture("models/unet-ddpm-tiny/diffusion_pytorch_model.safetensors")).tensors;
    const f16 = readSafetensorsArrays(fixture("models/unet-ddpm-tiny/diffusion_pytorch_model.fp16.safetensors")).tensors;
    expect(f32.size).toBe(f16.size);
    for (const [k, a] of f32) {
      const b = f16.get(k)!;
      expect(b.dtype).toBe("F16");
      expect(b.shape).toEqual(a.shape);
      // f16 = round(f32): relative error <= 2^-11 (normal range)
      let bad = -1;
      for (let i = 0; i < a.data.length && bad < 0; i++) {
        const x = a.data[i] as number, y = b.data[i] as number;
        if (Math.abs(x - y) > Math.abs(x) * 2 ** -11 + 2 ** -24) bad = i;
      }
      expect(bad, `${k} differs at ${bad}`).toBe(-1);
    }
  });

  it("round-trips F32, F16, I64 and metadata through the writer", () => {
    const t = tf.tensor([1.5, -2, 65504, 6e-8, 0.1], [5]);
    const p = path.join(tmp, "rt.safetensors");
    saveSafetensors(p, { a: t, b: { dtype: "I64", shape: [2], data: new Int32Array([999, -3]) } }, { metadata: { format: "pt" } });
    const back = readSafetensorsArrays(p);
    expect(back.metadata).toEqual({ format: "pt" });
    expect(Array.from(back.tensors.get("a")!.data)).toEqual(Array.from(t.dataSync()));
    expect(Array.from(back.tensors.get("b")!.data)).toEqual([999, -3]);
    const p16 = path.join(tmp, "rt16.safetensors");
    saveSafetensors(p16, { a: t }, { dtype: "F16" });
    const h = loadSafetensors(p16).a.dataSync();
    expect(h[2]).toBe(65504);
    expect(h[0]).toBe(1.5);
    expect(Math.abs(h[4] - 0.1)).toBeLessThan(1e-4);
    // header is padded so the data starts 8-byte aligned
    const buf = fs.readFileSync(p);
    expect(Number(buf.readBigUInt64LE(0)) % 8).toBe(0);
    t.dispose();
  });

  it("converts every half-precision pattern like IEEE 754 (round trip exact)", () => {
    const all = new Uint16Array(65536).map((_, i) => i);
    const f = float16ToFloat32(all);
    const back = float32ToFloat16(f);
    for (let i = 0; i < 65536; i++) {
      const isNaN16 = ((i >> 10) & 0x1f) === 31 && (i & 0x3ff) !== 0;
      if (!isNaN16) expect(back[i]).toBe(i);
    }
    expect(f[0x3c00]).toBe(1);
    expect(f[0x7bff]).toBe(65504);
    expect(f[0x0001]).toBe(2 ** -24);
    expect(bfloat16ToFloat32(new Uint16Array([0x3f80, 0xc000]))).toEqual(new Float32Array([1, -2]));
  });

  it("names the file when it is truncated", () => {
    const good = serializeSafetensors({ w: tf.ones([4, 4]) });
    const p = file("trunc.safetensors", good.subarray(0, good.length - 10));
    expect(() => readSafetensorsHeader(p)).toThrow(/trunc\.safetensors.*"w".*truncated/);
    expect(() => readSafetensorsHeader(file("tiny.safetensors", Buffer.from([1, 2, 3])))).toThrow(/tiny\.safetensors: truncated/);
  });

  it("rejects a header length larger than the file", () => {
    const b = Buffer.alloc(16);
    b.writeBigUInt64LE(1000n, 0);
    expect(() => readSafetensorsHeader(file("long.safetensors", b))).toThrow(/long\.safetensors: header length 1000 exceeds/);
  });

  it("rejects overlapping, gapped and mis-sized offsets", () => {
    const data = new Uint8Array(32);
    const overlap = file("overlap.safetensors", withHeader({
      a: { dtype: "F32", shape: [4], data_offsets: [0, 16] },
      b: { dtype: "F32", shape: [4], data_offsets: [8, 24] },
    }, data));
    expect(() => readSafetensorsHeader(overlap)).toThrow(/overlap\.safetensors: tensors "a" and "b" overlap/);
    const gap = file("gap.safetensors", withHeader({ a: { dtype: "F32", shape: [4], data_offsets: [16, 32] } }, data));
    expect(() => readSafetensorsHeader(gap)).toThrow(/gap in the data before tensor "a"/);
    const lying = file("lying.safetensors", withHeader({ a: { dtype: "F32", shape: [5], data_offsets: [0, 16] } }, data));
    expect(() => readSafetensorsHeader(lying)).toThrow(/tensor "a" \(F32 \[5\]\) needs 20 bytes/);
    const past = file("past.safetensors", withHeader({ a: { dtype: "F32", shape: [16], data_offsets: [0, 64] } }, data));
    expect(() => readSafetensorsHeader(past)).toThrow(/run past the end of the data/);
    const dtype = file("dtype.safetensors", withHeader({ a: { dtype: "Q4", shape: [4], data_offsets: [0, 16] } }, data));
    expect(() => readSafetensorsHeader(dtype)).toThrow(/tensor "a" has unsupported dtype "Q4"/);
    const json = file("json.safetensors", withHeader({}, new Uint8Array(0)));
    fs.writeFileSync(json, Buffer.concat([Buffer.from([5, 0, 0, 0, 0, 0, 0, 0]), Buffer.from("{oops")]));
    expect(() => readSafetensorsHeader(json)).toThrow(/json\.safetensors: header is not valid JSON/);
  });
});
