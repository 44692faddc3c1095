// Test support: writes PyTorch checkpoints byte for byte as torch.save (zip format, torch 1.13) does, so the
// reader can be tested on tensors and layouts the fixtures do not have. Not part of the library.
//
// The archive (PyTorchStreamWriter over miniz): every entry is `<archive>/<record>` with <archive> the file's base
// name without its extension; records data.pkl, [byteorder,] data/<key> in string order, version ("3\n").
// Each local header has zero time/date/CRC/sizes, flags 0x0808 (data descriptor follows, UTF-8 names) and an extra
// field "FB" + u16 n + n bytes of 'Z' that pads the data to a multiple of 64 bytes; after the data a data descriptor
// (PK\7\8, crc, sizes). The central directory repeats the entries without the padding, and a ZIP64 end record and
// locator always precede the classic end record.
//
// data.pkl is what CPython's pickle.Pickler (protocol 2 by default) writes for the state dict, with torch's
// persistent ids for storages: every new object is memoized (BINPUT / LONG_BINPUT, or MEMOIZE at protocol 4),
// repeats become BINGET; tuples of <= 3 items use TUPLE1..3, the empty tuple is not memoized; dict items go in
// batches of 1000 with MARK ... SETITEMS (one item alone: SETITEM).
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { float32ToFloat16 } from "../src/io/float16.js";
import { zipEndRecords } from "../src/io/torch-bin.js";

export type WriterDtype = "F32" | "F16" | "I64";

export interface WriterTensor {
  dtype: WriterDtype;
  shape: number[];
  /** values in row-major (logical) order */
  data: ArrayLike<number>;
  /** strides in elements; the storage is laid out accordingly, unused slots filled with `filler` */
  stride?: number[];
  storageOffset?: number;
}

export interface TorchBinWriteOptions {
  /** zip folder name; default as torch: the file's base name without its last extension */
  archiveName?: string;
  /** pickle protocol (torch.save's pickle_protocol): 2 (default) or 4 */
  protocol?: 2 | 4;
  /** "OrderedDict" (a module's state_dict(), default) or "dict" (diffusers / a plain dict) */
  container?: "OrderedDict" | "dict";
  /** with container "OrderedDict": also pickle the state dict's `_metadata` (BUILD), as state_dict() has it */
  metadata?: boolean;
  /** tensors that view the storage of another one (tied weights, slices); added after `tensors` */
  views?: Record<string, { of: string; storageOffset: number; shape: number[]; stride: number[] }>;
  /** pickle tensors as nn.Parameter (torch._utils._rebuild_parameter) */
  parameters?: boolean;
  /** write the <archive>/byteorder record as torch >= 2.1 does; "big" also stores the storages big-endian */
  byteorder?: "little" | "big";
  /** DEFLATE the entries instead of storing them (torch never does; a re-zipped checkpoint) */
  deflate?: boolean;
  /** give every entry ZIP64 sizes/offsets (0xFFFFFFFF + extra field), as miniz does past 4 GiB */
  zip64Entries?: boolean;
  /** a pickle that calls this global (e.g. "os.system") with one string argument, as the first dict value */
  malicious?: { callable: string; via?: "GLOBAL" | "STACK_GLOBAL" };
  /** value of unused storage slots of strided tensors (default NaN / -999) */
  filler?: number;
}

// ---------------------------------------------------------------------------------------------------
// a tiny model of the Python objects that get pickled

type Py = string | number | boolean | null | PyTuple | PyGlobal | PyReduce | PyPers | PyDict | PyRawCall;
class PyTuple { constructor(readonly items: Py[]) {} }
class PyGlobal { constructor(readonly module: string, readonly name: string) {} }
class PyReduce {
  constructor(readonly func: PyGlobal, readonly args: PyTuple, readonly dictitems?: [Py, Py][], readonly state?: Py) {}
}
class PyPers { constructor(readonly pid: PyTuple) {} }
class PyDict { constructor(readonly items: [Py, Py][]) {} }
/** module.name(arg), spelled with GLOBAL or STACK_GLOBAL whatever the protocol (the malicious payload). */
class PyRawCall { constructor(readonly module: string, readonly name: string, readonly arg: string, readonly via: "GLOBAL" | "STACK_GLOBAL") {} }

const FRAME_SIZE_TARGET = 64 * 1024;

class Pickler {
  private out: number[] = [];       // current frame (protocol 4) or everything
  private done: Buffer[] = [];
  private memo = new Map<unknown, number>();
  private globals = new Map<string, PyGlobal>();
  constructor(private readonly proto: 2 | 4) {}

  global(module: string, name: string): PyGlobal {
    const k = `${module}\n${name}`;
    let g = this.globals.get(k);
    if (!g) { g = new PyGlobal(module, name); this.globals.set(k, g); }
    return g;
  }

  dump(obj: Py): Buffer {
    this.done.push(Buffer.from([0x80, this.proto]));
    this.save(obj);
    this.out.push(0x2e); // STOP
    this.commitFrame(true);
    return Buffer.concat(this.done);
  }

  private commitFrame(force = false) {
    if (this.proto < 4) {
      if (force) { this.done.push(Buffer.from(this.out)); this.out = []; }
      return;
    }
    if (this.out.length >= FRAME_SIZE_TARGET || force) {
      if (this.out.length >= 4) {
        const h = Buffer.alloc(9);
        h[0] = 0x95;
        h.writeBigUInt64LE(BigInt(this.out.length), 1);
        this.done.push(h);
      }
      this.done.push(Buffer.from(this.out));
      this.out = [];
    }
  }

  private bytes(...b: number[]) { for (const x of b) this.out.push(x); }
  private buf(b: Uint8Array) { for (const x of b) this.out.push(x); }
  private u32(v: number) { const b = Buffer.alloc(4); b.writeUInt32LE(v); this.buf(b); }

  private put(obj: unknown) {
    const idx = this.memo.size;
    this.memo.set(obj, idx);
    if (this.proto >= 4) this.bytes(0x94); // MEMOIZE
    else if (idx < 256) this.bytes(0x71, idx); // BINPUT
    else { this.bytes(0x72); this.u32(idx); } // LONG_BINPUT
  }

  private get(idx: number) {
    if (idx < 256) this.bytes(0x68, idx); // BINGET
    else { this.bytes(0x6a); this.u32(idx); } // LONG_BINGET
  }

  save(obj: Py): void {
    this.commitFrame();
    // Strings are memoized by value (CPython: by identity, and torch reuses the same str objects).
    const key = typeof obj === "string" ? `s:${obj}` : obj;
    if (obj !== null && typeof obj !== "number" && typeof obj !== "boolean" && this.memo.has(key)) {
      this.get(this.memo.get(key)!);
      return;
    }
    if (obj === null) return this.bytes(0x4e);
    if (obj === true) return this.bytes(0x88);
    if (obj === false) return this.bytes(0x89);
    if (typeof obj === "number") return this.saveInt(obj);
    if (typeof obj === "string") {
      const b = Buffer.from(obj, "utf8");
      if (this.proto >= 4 && b.length < 256) this.bytes(0x8c, b.length);
      else { this.bytes(0x58); this.u32(b.length); }
      this.buf(b);
      return this.put(key);
    }
    if (obj instanceof PyTuple) return this.saveTuple(obj);
    if (obj instanceof PyRawCall) return this.saveRawCall(obj);
    if (obj instanceof PyGlobal) {
      if (this.proto >= 4) {
        this.save(obj.module);
        this.save(obj.name);
        this.bytes(0x93); // STACK_GLOBAL
      } else {
        this.bytes(0x63);
        this.buf(Buffer.from(`${obj.module}\n${obj.name}\n`, "latin1"));
      }
      return this.put(obj);
    }
    if (obj instanceof PyPers) {
      this.save(obj.pid);
      return this.bytes(0x51); // BINPERSID
    }
    if (obj instanceof PyDict) {
      this.bytes(0x7d); // EMPTY_DICT
      this.put(obj);
      return this.setItems(obj.items);
    }
    if (obj instanceof PyReduce) {
      this.save(obj.func);
      this.save(obj.args);
      this.bytes(0x52); // REDUCE
      this.put(obj);
      if (obj.dictitems) this.setItems(obj.dictitems);
      if (obj.state !== undefined) {
        this.save(obj.state);
        this.bytes(0x62); // BUILD
      }
      return;
    }
    throw new Error(`cannot pickle ${String(obj)}`);
  }

  private saveInt(v: number) {
    if (!Number.isInteger(v)) {
      const b = Buffer.alloc(9);
      b[0] = 0x47;
      b.writeDoubleBE(v, 1);
      return this.buf(b);
    }
    if (v >= 0 && v <= 0xff) return this.bytes(0x4b, v);
    if (v >= 0 && v <= 0xffff) return this.bytes(0x4d, v & 0xff, v >> 8);
    if (v >= -0x80000000 && v <= 0x7fffffff) { const b = Buffer.alloc(4); b.writeInt32LE(v); this.bytes(0x4a); return this.buf(b); }
    // LONG1: minimal little-endian two's complement
    let x = BigInt(v);
    const bytes: number[] = [];
    for (;;) {
      bytes.push(Number(x & 0xffn));
      x >>= 8n;
      if ((x === 0n && !(bytes[bytes.length - 1] & 0x80)) || (x === -1n && bytes[bytes.length - 1] & 0x80)) break;
    }
    this.bytes(0x8a, bytes.length, ...bytes);
  }

  private saveTuple(t: PyTuple) {
    const n = t.items.length;
    if (n === 0) return this.bytes(0x29); // EMPTY_TUPLE, not memoized
    if (n <= 3) {
      for (const x of t.items) this.save(x);
      this.bytes(0x84 + n); // TUPLE1..3
      return this.put(t);
    }
    this.bytes(0x28); // MARK
    for (const x of t.items) this.save(x);
    this.bytes(0x74); // TUPLE
    this.put(t);
  }

  private setItems(items: [Py, Py][]) {
    for (let i = 0; i < items.length; i += 1000) {
      const batch = items.slice(i, i + 1000);
      if (batch.length > 1) {
        this.bytes(0x28);
        for (const [k, v] of batch) { this.save(k); this.save(v); }
        this.bytes(0x75); // SETITEMS
      } else {
        this.save(batch[0][0]);
        this.save(batch[0][1]);
        this.bytes(0x73); // SETITEM
      }
    }
  }

  private saveRawCall(r: PyRawCall) {
    if (r.via === "GLOBAL") this.buf(Buffer.from(`c${r.module}\n${r.name}\n`, "latin1"));
    else {
      for (const x of [r.module, r.name]) { const b = Buffer.from(x); this.bytes(0x58); this.u32(b.length); this.buf(b); }
      this.bytes(0x93); // STACK_GLOBAL
    }
    const a = Buffer.from(r.arg);
    this.bytes(0x58); this.u32(a.length); this.buf(a);
    this.bytes(0x85, 0x52); // TUPLE1 REDUCE
  }
}

// ---------------------------------------------------------------------------------------------------
// zip as PyTorchStreamWriter writes it

interface Record_ { name: string; data: Uint8Array }

function zipTorch(records: Record_[], opts: { deflate?: boolean; zip64Entries?: boolean }): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  const z64 = !!opts.zip64Entries;
  for (const r of records) {
    const name = Buffer.from(r.name, "utf8");
    const crc = zlib.crc32(r.data) >>> 0;
    const stored = opts.deflate ? zlib.deflateRawSync(r.data) : Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength);
    const method = opts.deflate ? 8 : 0;
    // local header, then torch's "FB" padding so that the data starts at a multiple of 64
    let extra = Buffer.alloc(0);
    if (z64) {
      extra = Buffer.alloc(20);
      extra.writeUInt16LE(1, 0); extra.writeUInt16LE(16, 2); // sizes live in the data descriptor
    }
    const start = pos + 30 + name.length + extra.length + 4;
    const pad = (64 - (start % 64)) % 64;
    const fb = Buffer.alloc(4 + pad, 0x5a);
    fb.write("FB", 0, "latin1");
    fb.writeUInt16LE(pad, 2);
    const lh = Buffer.alloc(30);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(z64 ? 45 : 0, 4);
    lh.writeUInt16LE(0x0808, 6);
    lh.writeUInt16LE(method, 8);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(extra.length + fb.length, 28);
    const offset = pos;
    parts.push(lh, name, extra, fb, stored);
    pos += 30 + name.length + extra.length + fb.length + stored.length;
    // data descriptor
    const dd = Buffer.alloc(z64 ? 24 : 16);
    dd.writeUInt32LE(0x08074b50, 0);
    dd.writeUInt32LE(crc, 4);
    if (z64) { dd.writeBigUInt64LE(BigInt(stored.length), 8); dd.writeBigUInt64LE(BigInt(r.data.length), 16); }
    else { dd.writeUInt32LE(stored.length, 8); dd.writeUInt32LE(r.data.length, 12); }
    parts.push(dd);
    pos += dd.length;
    // central directory entry
    const cextra = z64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (z64) {
      cextra.writeUInt16LE(1, 0); cextra.writeUInt16LE(24, 2);
      cextra.writeBigUInt64LE(BigInt(r.data.length), 4);
      cextra.writeBigUInt64LE(BigInt(stored.length), 12);
      cextra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const ch = Buffer.alloc(46);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(z64 ? 45 : 0, 6);
    ch.writeUInt16LE(0x0808, 8);
    ch.writeUInt16LE(method, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(z64 ? 0xffffffff : stored.length, 20);
    ch.writeUInt32LE(z64 ? 0xffffffff : r.data.length, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt16LE(cextra.length, 30);
    ch.writeUInt32LE(z64 ? 0xffffffff : offset, 42);
    central.push(ch, name, cextra);
  }
  const cdOffset = pos;
  const cd = Buffer.concat(central);
  return Buffer.concat([...parts, cd, zipEndRecords(records.length, cd.length, cdOffset)]);
}

// ---------------------------------------------------------------------------------------------------

const STORAGE_TYPE: Record<WriterDtype, string> = { F32: "FloatStorage", F16: "HalfStorage", I64: "LongStorage" };

function contiguousStride(shape: number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let k = shape.length - 1; k >= 0; k--) { s[k] = acc; acc *= shape[k]; }
  return s;
}

function storageBytes(dtype: WriterDtype, values: ArrayLike<number>): Uint8Array {
  if (dtype === "F32") { const a = Float32Array.from(values); return new Uint8Array(a.buffer); }
  if (dtype === "F16") { const a = float32ToFloat16(Float32Array.from(values)); return new Uint8Array(a.buffer); }
  const a = new BigInt64Array(values.length);
  for (let i = 0; i < values.length; i++) a[i] = BigInt(values[i]);
  return new Uint8Array(a.buffer);
}

/** The archive folder name torch.save uses: the file's base name without its last extension. */
export function torchArchiveName(file: string): string {
  const base = path.basename(file);
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base;
}

/** The bytes writeTorchBin would write. */
export function serializeTorchBin(file: string, tensors: Record<string, WriterTensor>, opts: TorchBinWriteOptions = {}): Buffer {
  const proto = opts.protocol ?? 2;
  const p = new Pickler(proto);
  const archive = opts.archiveName ?? torchArchiveName(file);
  const rebuild = p.global("torch._utils", "_rebuild_tensor_v2");
  const ordered = p.global("collections", "OrderedDict");
  const storages: { key: string; bytes: Uint8Array; width: number }[] = [];
  const storageOf = new Map<string, { key: string; dtype: WriterDtype; numel: number }>();

  const tensorObj = (dtype: WriterDtype, key: string, numel: number, offset: number, shape: number[], stride: number[]): Py => {
    const pid = new PyTuple(["storage", p.global("torch", STORAGE_TYPE[dtype]), key, "cpu", numel]);
    const hooks = new PyReduce(ordered, new PyTuple([]), []);
    let t: Py = new PyReduce(rebuild, new PyTuple([new PyPers(pid), offset, new PyTuple(shape), new PyTuple(stride), false, hooks]));
    if (opts.parameters) {
      t = new PyReduce(p.global("torch._utils", "_rebuild_parameter"), new PyTuple([t, false, new PyReduce(ordered, new PyTuple([]), [])]));
    }
    return t;
  };

  const items: [Py, Py][] = [];
  if (opts.malicious) {
    const dot = opts.malicious.callable.lastIndexOf(".");
    items.push(["evil", new PyRawCall(opts.malicious.callable.slice(0, dot), opts.malicious.callable.slice(dot + 1), "touch /tmp/pwned", opts.malicious.via ?? "GLOBAL")]);
  }
  for (const [name, t] of Object.entries(tensors)) {
    const numel = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== numel) throw new Error(`${name}: ${t.data.length} values for shape [${t.shape}]`);
    const stride = t.stride ?? contiguousStride(t.shape);
    const offset = t.storageOffset ?? 0;
    let values: ArrayLike<number> = t.data;
    let storageNumel = numel;
    if (t.stride || offset) {
      storageNumel = numel === 0 ? offset : offset + t.shape.reduce((acc, d, k) => acc + (d - 1) * stride[k], 0) + 1;
      const filler = opts.filler ?? (t.dtype === "I64" ? -999 : NaN);
      const s = new Array<number>(storageNumel).fill(filler);
      const idx = new Array<number>(t.shape.length).fill(0);
      for (let i = 0; i < numel; i++) {
        let q = offset;
        for (let k = 0; k < idx.length; k++) q += idx[k] * stride[k];
        s[q] = t.data[i];
        for (let k = idx.length - 1; k >= 0; k--) { if (++idx[k] < t.shape[k]) break; idx[k] = 0; }
      }
      values = s;
    }
    const key = String(storages.length);
    storages.push({ key, bytes: storageBytes(t.dtype, values), width: t.dtype === "F32" ? 4 : t.dtype === "F16" ? 2 : 8 });
    storageOf.set(name, { key, dtype: t.dtype, numel: storageNumel });
    items.push([name, tensorObj(t.dtype, key, storageNumel, offset, t.shape, stride)]);
  }
  for (const [name, v] of Object.entries(opts.views ?? {})) {
    const s = storageOf.get(v.of);
    if (!s) throw new Error(`view ${name}: no tensor ${v.of}`);
    items.push([name, tensorObj(s.dtype, s.key, s.numel, v.storageOffset, v.shape, v.stride)]);
  }

  let root: Py;
  if ((opts.container ?? "OrderedDict") === "dict") root = new PyDict(items);
  else {
    const state = opts.metadata
      ? new PyDict([["_metadata", new PyReduce(ordered, new PyTuple([]), [["", new PyDict([["version", 1]])]])]])
      : undefined;
    root = new PyReduce(ordered, new PyTuple([]), items, state);
  }
  const pkl = p.dump(root);

  const records: Record_[] = [{ name: `${archive}/data.pkl`, data: pkl }];
  if (opts.byteorder) records.push({ name: `${archive}/byteorder`, data: Buffer.from(opts.byteorder) });
  if (opts.byteorder === "big") {
    for (const s of storages) {
      const w = s.bytes.length === 0 ? 1 : s.width;
      for (let i = 0; i < s.bytes.length; i += w) s.bytes.subarray(i, i + w).reverse();
    }
  }
  for (const s of [...storages].sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))) {
    records.push({ name: `${archive}/data/${s.key}`, data: s.bytes });
  }
  records.push({ name: `${archive}/version`, data: Buffer.from("3\n") });
  return zipTorch(records, opts);
}

/** Writes `tensors` to `file` as torch.save({name: tensor}) would. */
export function writeTorchBin(file: string, tensors: Record<string, WriterTensor>, opts: TorchBinWriteOptions = {}): void {
  fs.writeFileSync(file, serializeTorchBin(file, tensors, opts));
}

/** The start of a pre-1.6 torch.save file: pickles of the magic number, the protocol version and sys info. */
export function legacyTorchBytes(): Buffer {
  const magic = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19]; // 0x1950a86a20f9469cfc6c, LE
  return Buffer.from([0x80, 0x02, 0x8a, 0x0a, ...magic, 0x2e, 0x80, 0x02, 0x4d, 0xe9, 0x03, 0x2e, 0x80, 0x02, 0x7d, 0x71, 0x00, 0x2e]);
}
