// The safetensors format (https://github.com/huggingface/safetensors): an 8-byte little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?},
// then the raw little-endian data; offsets are relative to the first byte after the header.
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { widenFloat16, bfloat16ToFloat32Into, float32ToFloat16, float16ToFloat32 } from "./float16.js";
import { writableFloat32Tensor } from "../runtime/writable-tensor.js";

export type SafetensorsDtype = "F64" | "F32" | "F16" | "BF16" | "I64" | "I32" | "I16" | "I8" | "U8" | "BOOL";

const BYTES: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U8: 1, BOOL: 1,
};

export interface TensorInfo { dtype: SafetensorsDtype; shape: number[]; dataOffsets: [number, number] }

/**
 * A tensor read from disk: float formats widened to float32 (tfjs has no float16), I64 narrowed to int32; F16 kept
 * as its bits (Uint16Array) only when asked (readSafetensorsArrays' keepFloat16, for host copies at half the memory).
 */
export interface RawTensor {
  dtype: SafetensorsDtype;           // dtype stored in the file
  shape: number[];
  data: Float32Array | Float64Array | Int32Array | Uint8Array | Uint16Array;
}

export class SafetensorsError extends Error {
  constructor(file: string, what: string) {
    super(`${file}: ${what}`);
    this.name = "SafetensorsError";
  }
}

export interface SafetensorsHeader {
  tensors: Map<string, TensorInfo>;
  metadata: Record<string, string>;
  /** byte position of the data section in the file */
  dataStart: number;
}

/** Parses and validates the header: sizes, dtypes, offsets inside the file, no overlap, no gap. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  if (!fs.existsSync(file)) throw new SafetensorsError(file, "file does not exist");
  const fd = fs.openSync(file, "r");
  try {
    const fileSize = fs.fstatSync(fd).size;
    if (fileSize < 8) {
      throw new SafetensorsError(file, `truncated: ${fileSize} bytes, a safetensors file starts with an 8-byte header length`);
    }
    const lenBuf = Buffer.alloc(8);
    fs.readSync(fd, lenBuf, 0, 8, 0);
    const n = lenBuf.readBigUInt64LE(0);
    if (n > BigInt(fileSize - 8)) {
      throw new SafetensorsError(file, `header length ${n} exceeds the file size ${fileSize}: the file is truncated or not safetensors (re-download it)`);
    }
    const headerLen = Number(n);
    const hbuf = Buffer.alloc(headerLen);
    fs.readSync(fd, hbuf, 0, headerLen, 8);
    let json: Record<string, unknown>;
    try {
      json = JSON.parse(hbuf.toString("utf8"));
    } catch (e) {
      throw new SafetensorsError(file, `header is not valid JSON (${(e as Error).message}): the file is corrupt or not safetensors`);
    }
    if (json === null || typeof json !== "object" || Array.isArray(json)) {
      throw new SafetensorsError(file, "header is not a JSON object");
    }
    const dataStart = 8 + headerLen;
    const dataSize = fileSize - dataStart;
    const tensors = new Map<string, TensorInfo>();
    let metadata: Record<string, string> = {};
    for (const [name, v] of Object.entries(json)) {
      if (name === "__metadata__") { metadata = v as Record<string, string>; continue; }
      const info = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof info?.dtype !== "string" || !(info.dtype in BYTES)) {
        throw new SafetensorsError(file, `tensor "${name}" has unsupported dtype ${JSON.stringify(info?.dtype)} (supported: ${Object.keys(BYTES).join(", ")})`);
      }
      const dtype = info.dtype as SafetensorsDtype;
      if (!Array.isArray(info.shape) || !info.shape.every((d) => Number.isInteger(d) && d >= 0)) {
        throw new SafetensorsError(file, `tensor "${name}" has an invalid shape ${JSON.stringify(info.shape)}`);
      }
      const off = info.data_offsets;
      if (!Array.isArray(off) || off.length !== 2 || !off.every((d) => Number.isInteger(d) && d >= 0) || off[1] < off[0]) {
        throw new SafetensorsError(file, `tensor "${name}" has invalid data_offsets ${JSON.stringify(off)}`);
      }
      const shape = info.shape as number[];
      const numel = shape.reduce((a, b) => a * b, 1);
      const expected = numel * BYTES[dtype];
      if (off[1] - off[0] !== expected) {
        throw new SafetensorsError(file, `tensor "${name}" (${dtype} ${JSON.stringify(shape)}) needs ${expected} bytes but its data_offsets ${JSON.stringify(off)} span ${off[1] - off[0]}`);
      }
      if (off[1] > dataSize) {
        throw new SafetensorsError(file, `tensor "${name}" data_offsets ${JSON.stringify(off)} run past the end of the data (${dataSize} bytes): the file is truncated (re-download it)`);
      }
      tensors.set(name, { dtype, shape, dataOffsets: [off[0], off[1]] });
    }
    // Data regions must tile [0, end) without overlap or holes, as the format requires.
    const sorted = [...tensors.entries()].sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
    let pos = 0;
    let prev = "";
    for (const [name, info] of sorted) {
      const [b, e] = info.dataOffsets;
      if (b < pos) throw new SafetensorsError(file, `tensors "${prev}" and "${name}" overlap (offset ${b} < ${pos}): the header is corrupt`);
      if (b > pos) throw new SafetensorsError(file, `gap in the data before tensor "${name}" (bytes ${pos}..${b} belong to no tensor): the header is corrupt`);
      pos = e;
      prev = name;
    }
    return { tensors, metadata, dataStart };
  } finally {
    fs.closeSync(fd);
  }
}

/** Reads dst.length bytes of the file from `pos` into dst, in reads of up to 1 GiB. */
function readFully(fd: number, dst: Uint8Array, pos: number, file: string, name: string): void {
  let done = 0;
  while (done < dst.length) {
    const n = fs.readSync(fd, dst, done, Math.min(dst.length - done, 1 << 30), pos + done);
    if (n <= 0) throw new SafetensorsError(file, `unexpected end of file while reading tensor "${name}"`);
    done += n;
  }
}

const FLOAT32_WIDENED = new Set<SafetensorsDtype>(["F32", "F16", "BF16"]);

/**
 * Fills `out` with an F32/F16/BF16 tensor's values: F32 bytes are read straight into it; F16 is read
 * in 4 MiB chunks into the widener's scratch and widened into it (float16.ts); BF16 is read into its
 * upper half and widened in place.
 */
function readFloatInto(fd: number, file: string, name: string, info: TensorInfo, dataStart: number, out: Float32Array): void {
  const n = out.length;
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  const pos = dataStart + info.dataOffsets[0];
  if (info.dtype === "F32") {
    readFully(fd, bytes, pos, file, name);
  } else if (info.dtype === "F16") {
    widenFloat16(out, (dst, start, count) => readFully(fd, dst.subarray(0, 2 * count), pos + 2 * start, file, name));
  } else {
    readFully(fd, bytes.subarray(2 * n), pos, file, name);
    bfloat16ToFloat32Into(new Uint16Array(out.buffer, out.byteOffset + 2 * n, n), out);
  }
}

export const INT32_RANGE = "-2147483648..2147483647";

/**
 * int64 (as little-endian pairs of int32 words) -> int32, without BigInt on the way: the high word must be the sign
 * extension of the low one, else `outOfRange(value, index)` is called (it throws).
 */
export function int64ToInt32(words: Int32Array, outOfRange: (value: bigint, index: number) => never): Int32Array {
  const n = words.length >> 1;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const lo = words[2 * i];
    if (words[2 * i + 1] !== lo >> 31) outOfRange((BigInt(words[2 * i + 1]) << 32n) | BigInt(lo >>> 0), i);
    out[i] = lo;
  }
  return out;
}

/** Any tensor as a typed array: floats widened to float32 in place, integers read into their own array then narrowed to int32. */
function readArray(fd: number, file: string, name: string, info: TensorInfo, dataStart: number): RawTensor["data"] {
  const n = info.shape.reduce((a, b) => a * b, 1);
  if (FLOAT32_WIDENED.has(info.dtype)) {
    const out = new Float32Array(n);
    readFloatInto(fd, file, name, info, dataStart, out);
    return out;
  }
  const read = <T extends ArrayBufferView>(arr: T): T => {
    readFully(fd, new Uint8Array(arr.buffer, arr.byteOffset, arr.byteLength), dataStart + info.dataOffsets[0], file, name);
    return arr;
  };
  switch (info.dtype) {
    case "F64": return read(new Float64Array(n));
    case "I32": return read(new Int32Array(n));
    case "I16": return Int32Array.from(read(new Int16Array(n)));
    case "I8": return Int32Array.from(read(new Int8Array(n)));
    case "U8": case "BOOL": return read(new Uint8Array(n));
    case "I64": {
      const src = read(new BigInt64Array(n));
      return int64ToInt32(new Int32Array(src.buffer), (value, i) => {
        throw new SafetensorsError(file, `tensor "${name}" (I64 ${JSON.stringify(info.shape)}) holds ${value} at element ${i}; allowed: the int32 range ${INT32_RANGE} tfjs supports (values are never wrapped)`);
      });
    }
    default: throw new SafetensorsError(file, `tensor "${name}" has unsupported dtype ${info.dtype}`);
  }
}

/** Reads tensors as plain typed arrays (no tfjs), optionally only some names; keepFloat16: F16 data as its bits. */
export function readSafetensorsArrays(file: string, names?: string[], opts: { keepFloat16?: boolean } = {}): { tensors: Map<string, RawTensor>; metadata: Record<string, string> } {
  const header = readSafetensorsHeader(file);
  const wanted = names ?? [...header.tensors.keys()];
  const out = new Map<string, RawTensor>();
  const fd = fs.openSync(file, "r");
  try {
    for (const name of wanted) {
      const info = header.tensors.get(name);
      if (!info) throw new SafetensorsError(file, `no tensor named "${name}"`);
      if (opts.keepFloat16 && info.dtype === "F16") {
        const bits = new Uint16Array(info.shape.reduce((a, b) => a * b, 1));
        readFully(fd, new Uint8Array(bits.buffer), header.dataStart + info.dataOffsets[0], file, name);
        out.set(name, { dtype: "F16", shape: info.shape, data: bits });
        continue;
      }
      out.set(name, { dtype: info.dtype, shape: info.shape, data: readArray(fd, file, name, info, header.dataStart) });
    }
  } finally {
    fs.closeSync(fd);
  }
  return { tensors: out, metadata: header.metadata };
}

/** A tfjs tensor from a RawTensor: floats -> float32, integers -> int32, U8/BOOL -> int32. */
export function rawToTensor(raw: RawTensor): tf.Tensor {
  const d = raw.data instanceof Uint16Array ? float16ToFloat32(raw.data) : raw.data;
  if (d instanceof Float32Array) return tf.tensor(d, raw.shape, "float32");
  if (d instanceof Float64Array) return tf.tensor(Float32Array.from(d), raw.shape, "float32");
  if (d instanceof Int32Array) return tf.tensor(d, raw.shape, "int32");
  return tf.tensor(Int32Array.from(d), raw.shape, "int32");
}

/**
 * Loads every tensor (or the named ones) of a safetensors file as tfjs tensors (safetensors.torch.load_file).
 * Float tensors are read straight into the tensor's memory (on wasm: the backend's heap) and widened there.
 */
export function loadSafetensors(file: string, names?: string[]): Record<string, tf.Tensor> {
  const header = readSafetensorsHeader(file);
  const wanted = names ?? [...header.tensors.keys()];
  const out: Record<string, tf.Tensor> = {};
  const fd = fs.openSync(file, "r");
  try {
    for (const name of wanted) {
      const info = header.tensors.get(name);
      if (!info) throw new SafetensorsError(file, `no tensor named "${name}"`);
      if (!FLOAT32_WIDENED.has(info.dtype)) {
        out[name] = rawToTensor({ dtype: info.dtype, shape: info.shape, data: readArray(fd, file, name, info, header.dataStart) });
        continue;
      }
      const t = writableFloat32Tensor(info.shape);
      try {
        readFloatInto(fd, file, name, info, header.dataStart, t.values);
      } catch (e) {
        t.abort();
        throw e;
      }
      out[name] = t.finish();
    }
  } catch (e) {
    tf.dispose(Object.values(out));
    throw e;
  } finally {
    fs.closeSync(fd);
  }
  return out;
}

export type SaveDtype = "F32" | "F16";
export type Saveable = tf.Tensor | RawTensor;

/** Serialises tensors to the safetensors byte layout (safetensors.torch.save). Floats as F32 (or F16), int32 as I32 unless the RawTensor says I64. */
export function serializeSafetensors(tensors: Record<string, Saveable>, opts: { metadata?: Record<string, string>; dtype?: SaveDtype } = {}): Buffer {
  const entries: [string, { dtype: SafetensorsDtype; shape: number[]; bytes: Uint8Array }][] = [];
  for (const name of Object.keys(tensors).sort()) {
    const t = tensors[name];
    let dtype: SafetensorsDtype;
    let shape: number[];
    let data: RawTensor["data"];
    if (t instanceof tf.Tensor) {
      shape = t.shape;
      data = t.dataSync() as Float32Array | Int32Array;
      dtype = t.dtype === "float32" ? "F32" : "I32";
    } else {
      shape = t.shape; data = t.data; dtype = t.dtype;
    }
    let bytes: Uint8Array;
    if (dtype === "F32" || dtype === "F16" || dtype === "BF16" || dtype === "F64") {
      const target: SafetensorsDtype = dtype === "F64" ? "F64" : (opts.dtype ?? (dtype === "F16" ? "F16" : "F32"));
      if (target === "F16") {
        const h = float32ToFloat16(data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>));
        bytes = new Uint8Array(h.buffer); dtype = "F16";
      } else if (target === "F64") {
        const f = data instanceof Float64Array ? data : Float64Array.from(data as ArrayLike<number>);
        bytes = new Uint8Array(f.buffer, f.byteOffset, f.byteLength); dtype = "F64";
      } else {
        const f = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>);
        bytes = new Uint8Array(f.buffer, f.byteOffset, f.byteLength); dtype = "F32";
      }
    } else if (dtype === "I64") {
      const src = data as ArrayLike<number>;
      const b = new BigInt64Array(src.length);
      for (let i = 0; i < src.length; i++) b[i] = BigInt(src[i]);
      bytes = new Uint8Array(b.buffer);
    } else if (dtype === "U8" || dtype === "BOOL") {
      bytes = Uint8Array.from(data as ArrayLike<number>);
    } else {
      const i32 = data instanceof Int32Array ? data : Int32Array.from(data as ArrayLike<number>);
      bytes = new Uint8Array(i32.buffer, i32.byteOffset, i32.byteLength); dtype = "I32";
    }
    entries.push([name, { dtype, shape, bytes }]);
  }
  const header: Record<string, unknown> = {};
  if (opts.metadata) header.__metadata__ = opts.metadata;
  let pos = 0;
  for (const [name, e] of entries) {
    header[name] = { dtype: e.dtype, shape: e.shape, data_offsets: [pos, pos + e.bytes.length] };
    pos += e.bytes.length;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // pad so the data is 8-byte aligned
  const hbytes = Buffer.from(json, "utf8");
  const out = Buffer.alloc(8 + hbytes.length + pos);
  out.writeBigUInt64LE(BigInt(hbytes.length), 0);
  hbytes.copy(out, 8);
  let o = 8 + hbytes.length;
  for (const [, e] of entries) { out.set(e.bytes, o); o += e.bytes.length; }
  return out;
}

/** Writes a safetensors file (safetensors.torch.save_file). */
export function saveSafetensors(file: string, tensors: Record<string, Saveable>, opts: { metadata?: Record<string, string>; dtype?: SaveDtype } = {}): void {
  fs.writeFileSync(file, serializeSafetensors(tensors, opts));
}
