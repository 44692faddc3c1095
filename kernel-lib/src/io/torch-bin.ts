// PyTorch checkpoints (`pytorch_model.bin`, `diffusion_pytorch_model.bin`) as written by torch.save since 1.6:
// a zip archive whose entries all live under one folder `<archive>/` (the file name without its extension):
//   <archive>/data.pkl      the pickled object (a dict of tensors), storages referenced by persistent id
//   <archive>/data/<key>    the raw bytes of each storage, little-endian, entries STORED and 64-byte aligned
//   <archive>/version       "3\n"; newer torch also writes <archive>/byteorder ("little" | "big")
// A tensor is pickled as torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride,
// requires_grad, backward_hooks[, metadata]), the storage as the persistent id
// ("storage", torch.<Type>Storage, key, location, numel).
//
// Unpickling here is a small stack machine that never runs anything: globals resolve only to an
// allow-list of constructors it emulates itself, any other global is refused before anything else happens.
// What is allocated is bounded by the file: deflated entries by their declared size and a ratio cap (zip bombs),
// tensors by their storage's bytes (checkAllocations); nesting is walked without recursion.
import * as fs from "node:fs";
import * as zlib from "node:zlib";
import * as tf from "@tensorflow/tfjs";
import { float16ToFloat32, bfloat16ToFloat32 } from "./float16.js";
import { INT32_RANGE, int64ToInt32, rawToTensor, type RawTensor, type SafetensorsDtype } from "./safetensors.js";

export class TorchBinError extends Error {
  constructor(file: string, what: string) {
    super(`${file}: ${what}`);
    this.name = "TorchBinError";
  }
}

// ---------------------------------------------------------------------------------------------------
// zip

interface ZipEntry {
  name: string;
  method: number;        // 0 STORED, 8 DEFLATE
  flags: number;
  crc: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;

/**
 * The records that end a zip as torch.save writes it (ZIP64 end of central directory, its locator, the classic end
 * record), for `n` entries whose central directory of `cdLength` bytes starts at `cdOffset`. What the reader below
 * looks for; writers of test files and rehearsal snapshots share it.
 */
export function zipEndRecords(n: number, cdLength: number, cdOffset: number): Buffer {
  const end64 = Buffer.alloc(56);
  end64.writeUInt32LE(SIG_ZIP64_EOCD, 0);
  end64.writeBigUInt64LE(44n, 4);
  end64.writeUInt16LE(0x031e, 12);
  end64.writeUInt16LE(0x002d, 14);
  end64.writeBigUInt64LE(BigInt(n), 24);
  end64.writeBigUInt64LE(BigInt(n), 32);
  end64.writeBigUInt64LE(BigInt(cdLength), 40);
  end64.writeBigUInt64LE(BigInt(cdOffset), 48);
  const locator = Buffer.alloc(20);
  locator.writeUInt32LE(SIG_ZIP64_LOCATOR, 0);
  locator.writeBigUInt64LE(BigInt(cdOffset + cdLength), 8);
  locator.writeUInt32LE(1, 16);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(SIG_EOCD, 0);
  end.writeUInt16LE(Math.min(n, 0xffff), 8);
  end.writeUInt16LE(Math.min(n, 0xffff), 10);
  end.writeUInt32LE(Math.min(cdLength, 0xffffffff), 12);
  end.writeUInt32LE(Math.min(cdOffset, 0xffffffff), 16);
  return Buffer.concat([end64, locator, end]);
}

function readAt(fd: number, file: string, pos: number, len: number, what: string): Buffer {
  const buf = Buffer.alloc(len);
  readInto(fd, file, buf, pos, what);
  return buf;
}

function readInto(fd: number, file: string, dst: Uint8Array, pos: number, what: string): void {
  let done = 0;
  while (done < dst.length) {
    const n = fs.readSync(fd, dst, done, Math.min(dst.length - done, 1 << 30), pos + done);
    if (n <= 0) throw new TorchBinError(file, `unexpected end of file while reading ${what}: the file is truncated (re-download it)`);
    done += n;
  }
}

function u64(buf: Buffer, pos: number, file: string, what: string): number {
  const v = buf.readBigUInt64LE(pos);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new TorchBinError(file, `zip ${what} ${v} is out of range: the archive is corrupt`);
  return Number(v);
}

function readCentralDirectory(fd: number, file: string, fileSize: number): ZipEntry[] {
  const truncated = "not a complete zip archive (no end-of-central-directory record): the file is truncated or corrupt (re-download it)";
  if (fileSize < 22) throw new TorchBinError(file, truncated);
  // The end-of-central-directory record sits in the last 22 + (comment <= 65535) bytes.
  const tailLen = Math.min(fileSize, 22 + 0xffff);
  const tailStart = fileSize - tailLen;
  const tail = readAt(fd, file, tailStart, tailLen, "the zip directory");
  let eocd = -1;
  for (let i = tailLen - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === SIG_EOCD && i + 22 + tail.readUInt16LE(i + 20) <= tailLen) { eocd = i; break; }
  }
  if (eocd < 0) throw new TorchBinError(file, truncated);
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  // ZIP64: a locator just before the EOCD points at the zip64 EOCD record (torch always writes both).
  if (eocd >= 20 && tail.readUInt32LE(eocd - 20) === SIG_ZIP64_LOCATOR) {
    const z64Pos = u64(tail, eocd - 20 + 8, file, "zip64 record offset");
    if (z64Pos + 56 > fileSize) throw new TorchBinError(file, `zip64 end record at ${z64Pos} lies past the end of the file: the archive is truncated or corrupt`);
    const z64 = readAt(fd, file, z64Pos, 56, "the zip64 end record");
    if (z64.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw new TorchBinError(file, "bad zip64 end-of-central-directory signature: the archive is corrupt");
    count = u64(z64, 32, file, "entry count");
    cdSize = u64(z64, 40, file, "central directory size");
    cdOffset = u64(z64, 48, file, "central directory offset");
  } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    throw new TorchBinError(file, "zip64 archive without its zip64 locator: the archive is corrupt");
  }
  if (cdOffset + cdSize > fileSize) {
    throw new TorchBinError(file, `the zip central directory (${cdSize} bytes at ${cdOffset}) runs past the end of the file (${fileSize} bytes): the file is truncated (re-download it)`);
  }
  const cd = readAt(fd, file, cdOffset, cdSize, "the zip central directory");
  const entries: ZipEntry[] = [];
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cdSize || cd.readUInt32LE(p) !== SIG_CENTRAL) {
      throw new TorchBinError(file, `zip central directory entry ${k} of ${count} is malformed: the archive is corrupt`);
    }
    const flags = cd.readUInt16LE(p + 8);
    const method = cd.readUInt16LE(p + 10);
    const crc = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let size = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cdSize) {
      throw new TorchBinError(file, `zip central directory entry ${k} runs past the directory: the archive is corrupt`);
    }
    const name = cd.toString("utf8", p + 46, p + 46 + nameLen);
    // ZIP64 extended information (header id 1): only the fields whose 32-bit value is saturated, in this order.
    let e = p + 46 + nameLen;
    const eEnd = e + extraLen;
    while (e + 4 <= eEnd) {
      const id = cd.readUInt16LE(e);
      const len = cd.readUInt16LE(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        const take = (what: string) => {
          if (q + 8 > e + 4 + len) throw new TorchBinError(file, `zip64 extra field of "${name}" is too short: the archive is corrupt`);
          const v = u64(cd, q, file, what);
          q += 8;
          return v;
        };
        if (size === 0xffffffff) size = take("size");
        if (compressedSize === 0xffffffff) compressedSize = take("compressed size");
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = take("header offset");
      }
      e += 4 + len;
    }
    entries.push({ name, method, flags, crc, compressedSize, size, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

/** Byte position of an entry's data (the local header has its own extra field: torch pads there to 64). */
function dataOffset(fd: number, file: string, fileSize: number, entry: ZipEntry): number {
  if (entry.localHeaderOffset + 30 > fileSize) {
    throw new TorchBinError(file, `zip entry "${entry.name}" starts past the end of the file: the file is truncated (re-download it)`);
  }
  const h = readAt(fd, file, entry.localHeaderOffset, 30, `the zip header of "${entry.name}"`);
  if (h.readUInt32LE(0) !== SIG_LOCAL) throw new TorchBinError(file, `zip entry "${entry.name}" has a bad local header signature: the archive is corrupt`);
  const start = entry.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
  if (start + entry.compressedSize > fileSize) {
    throw new TorchBinError(file, `zip entry "${entry.name}" (${entry.compressedSize} bytes at ${start}) runs past the end of the file (${fileSize} bytes): the file is truncated (re-download it)`);
  }
  return start;
}

/**
 * Zip-bomb guard (Apache POI's rule): a DEFLATE entry may declare at most MAX_INFLATE_RATIO times its compressed size,
 * entries of up to INFLATE_RATIO_GRACE bytes excepted. torch.save stores every entry uncompressed, so only re-zipped
 * checkpoints deflate, and real tensors compress far less than 100:1.
 */
export const MAX_INFLATE_RATIO = 100;
export const INFLATE_RATIO_GRACE = 1 << 20;

function checkInflateRatio(file: string, entry: ZipEntry): void {
  if (entry.size <= INFLATE_RATIO_GRACE || entry.size <= MAX_INFLATE_RATIO * entry.compressedSize) return;
  const ratio = entry.compressedSize === 0 ? "infinite" : `${Math.round(entry.size / entry.compressedSize)}:1`;
  throw new TorchBinError(
    file,
    `zip entry "${entry.name}" declares ${entry.size} bytes inflated from ${entry.compressedSize} compressed (ratio ${ratio}); ` +
      `allowed: at most ${MAX_INFLATE_RATIO}:1 for entries over ${INFLATE_RATIO_GRACE} bytes. Refused as a likely zip bomb ` +
      `(torch.save stores entries uncompressed: re-save the checkpoint with torch.save or convert it to safetensors)`,
  );
}

const crc32: ((data: Uint8Array) => number) | undefined = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;

/**
 * The uncompressed bytes of an entry in a fresh buffer of their own (STORED: read straight from the file into it,
 * the only copy made), CRC-checked.
 */
function readEntry(fd: number, file: string, fileSize: number, entry: ZipEntry): Uint8Array {
  if (entry.flags & 1) throw new TorchBinError(file, `zip entry "${entry.name}" is encrypted`);
  const start = dataOffset(fd, file, fileSize, entry);
  let out: Uint8Array;
  if (entry.method === 0) {
    if (entry.compressedSize !== entry.size) throw new TorchBinError(file, `stored zip entry "${entry.name}" has compressed size ${entry.compressedSize} != size ${entry.size}: the archive is corrupt`);
    out = new Uint8Array(entry.size);
    readInto(fd, file, out, start, `zip entry "${entry.name}"`);
  } else if (entry.method === 8) {
    checkInflateRatio(file, entry);
    const packed = new Uint8Array(entry.compressedSize);
    readInto(fd, file, packed, start, `zip entry "${entry.name}"`);
    let inflated: Buffer;
    try {
      // zlib stops as soon as the output passes the declared size
      inflated = zlib.inflateRawSync(packed, { maxOutputLength: Math.max(1, entry.size) });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        throw new TorchBinError(file, `zip entry "${entry.name}" inflates past the ${entry.size} bytes the zip directory declares for it (allowed: exactly that size); refused before inflating further: the archive is corrupt or a zip bomb`);
      }
      throw new TorchBinError(file, `zip entry "${entry.name}" does not inflate (${(err as Error).message}): the archive is corrupt`);
    }
    // Own, aligned buffer (small zlib outputs may be slices of a shared pool).
    out = inflated.byteOffset === 0 && inflated.byteLength === inflated.buffer.byteLength ? new Uint8Array(inflated.buffer) : new Uint8Array(inflated);
    if (out.length !== entry.size) throw new TorchBinError(file, `zip entry "${entry.name}" inflates to ${out.length} bytes, the directory says ${entry.size}: the archive is corrupt`);
  } else {
    throw new TorchBinError(file, `zip entry "${entry.name}" uses compression method ${entry.method} (only stored and deflate are supported)`);
  }
  if (crc32 && (crc32(out) >>> 0) !== entry.crc) {
    throw new TorchBinError(file, `zip entry "${entry.name}" fails its CRC-32 check: the file is corrupt (re-download it)`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// pickle

const STORAGE_DTYPES: Record<string, { dtype: SafetensorsDtype; bytes: number }> = {
  FloatStorage: { dtype: "F32", bytes: 4 },
  HalfStorage: { dtype: "F16", bytes: 2 },
  BFloat16Storage: { dtype: "BF16", bytes: 2 },
  DoubleStorage: { dtype: "F64", bytes: 8 },
  LongStorage: { dtype: "I64", bytes: 8 },
  IntStorage: { dtype: "I32", bytes: 4 },
  ShortStorage: { dtype: "I16", bytes: 2 },
  CharStorage: { dtype: "I8", bytes: 1 },
  ByteStorage: { dtype: "U8", bytes: 1 },
  BoolStorage: { dtype: "BOOL", bytes: 1 },
};

const ALLOWED_FUNCTIONS = new Set([
  "collections.OrderedDict",
  "torch._utils._rebuild_tensor_v2",
  "torch._utils._rebuild_parameter",
  "torch._utils._rebuild_parameter_with_state",
]);

const ALLOW_LIST_TEXT = "collections.OrderedDict, torch._utils._rebuild_tensor_v2, torch._utils._rebuild_parameter(_with_state) and torch.<Float|Half|BFloat16|Double|Long|Int|Short|Char|Byte|Bool>Storage";

/** A global the pickle named and the allow-list admitted: a marker, never something callable. */
class Global { constructor(readonly qualname: string) {} }
class Mark {}
const MARK = new Mark();

class Storage {
  constructor(readonly key: string, readonly dtype: SafetensorsDtype, readonly elemBytes: number, readonly numel: number) {}
}

class TensorRef {
  constructor(readonly storage: Storage, readonly offset: number, readonly shape: number[], readonly stride: number[]) {}
}

/** A pickled dict / OrderedDict: insertion-ordered. */
class Dict {
  readonly map = new Map<unknown, unknown>();
}

type Value = unknown;

const OPCODE_NAMES: Record<number, string> = {
  0x28: "MARK", 0x2e: "STOP", 0x30: "POP", 0x31: "POP_MARK", 0x32: "DUP", 0x46: "FLOAT", 0x49: "INT", 0x4a: "BININT",
  0x4b: "BININT1", 0x4c: "LONG", 0x4d: "BININT2", 0x4e: "NONE", 0x50: "PERSID", 0x51: "BINPERSID", 0x52: "REDUCE",
  0x53: "STRING", 0x54: "BINSTRING", 0x55: "SHORT_BINSTRING", 0x56: "UNICODE", 0x58: "BINUNICODE", 0x61: "APPEND",
  0x62: "BUILD", 0x63: "GLOBAL", 0x64: "DICT", 0x7d: "EMPTY_DICT", 0x65: "APPENDS", 0x67: "GET", 0x68: "BINGET",
  0x69: "INST", 0x6a: "LONG_BINGET", 0x6c: "LIST", 0x5d: "EMPTY_LIST", 0x6f: "OBJ", 0x70: "PUT", 0x71: "BINPUT",
  0x72: "LONG_BINPUT", 0x73: "SETITEM", 0x74: "TUPLE", 0x29: "EMPTY_TUPLE", 0x75: "SETITEMS", 0x47: "BINFLOAT",
  0x80: "PROTO", 0x81: "NEWOBJ", 0x82: "EXT1", 0x83: "EXT2", 0x84: "EXT4", 0x85: "TUPLE1", 0x86: "TUPLE2",
  0x87: "TUPLE3", 0x88: "NEWTRUE", 0x89: "NEWFALSE", 0x8a: "LONG1", 0x8b: "LONG4", 0x42: "BINBYTES",
  0x43: "SHORT_BINBYTES", 0x8c: "SHORT_BINUNICODE", 0x8d: "BINUNICODE8", 0x8e: "BINBYTES8", 0x8f: "EMPTY_SET",
  0x90: "ADDITEMS", 0x91: "FROZENSET", 0x92: "NEWOBJ_EX", 0x93: "STACK_GLOBAL", 0x94: "MEMOIZE", 0x95: "FRAME",
  0x96: "BYTEARRAY8", 0x97: "NEXT_BUFFER", 0x98: "READONLY_BUFFER",
};

function describe(v: Value): string {
  if (v === null) return "None";
  if (v instanceof Global) return v.qualname;
  if (v instanceof TensorRef) return "a tensor";
  if (v instanceof Storage) return "a storage";
  if (v instanceof Dict) return "a dict";
  if (Array.isArray(v)) return "a tuple/list";
  if (v instanceof Uint8Array) return "bytes";
  return typeof v;
}

/**
 * Runs the pickle in `bytes` with the opcodes torch.save emits (protocols 2 and 4). `persistentLoad` resolves
 * BINPERSID ids. Never calls anything: the only "callables" are the allow-listed globals, emulated below.
 */
function unpickle(bytes: Uint8Array, file: string, entry: string, persistentLoad: (pid: Value) => Value): Value {
  const fail = (what: string): never => { throw new TorchBinError(file, `${entry}: ${what}`); };
  const latin1 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  const stack: Value[] = [];
  const marks: number[] = [];
  const memo = new Map<number, Value>();

  const need = (n: number) => { if (pos + n > bytes.length) fail(`pickle ends unexpectedly at byte ${pos} (needs ${n} more): the file is truncated or corrupt`); };
  const u8 = () => { need(1); return bytes[pos++]; };
  const u16 = () => { need(2); const v = view.getUint16(pos, true); pos += 2; return v; };
  const u32 = () => { need(4); const v = view.getUint32(pos, true); pos += 4; return v; };
  const u64n = () => {
    need(8);
    const v = view.getBigUint64(pos, true);
    pos += 8;
    if (v > BigInt(bytes.length)) fail(`length ${v} at byte ${pos - 8} exceeds the pickle: corrupt`);
    return Number(v);
  };
  const take = (n: number) => { need(n); const s = bytes.subarray(pos, pos + n); pos += n; return s; };
  const str = (n: number) => {
    try { return text.decode(take(n)); } catch { return fail(`invalid UTF-8 string at byte ${pos - n}`); }
  };
  const line = () => {
    const end = bytes.indexOf(0x0a, pos);
    if (end < 0) fail(`unterminated GLOBAL name at byte ${pos}`);
    const s = latin1.toString("latin1", pos, end);
    pos = end + 1;
    return s;
  };
  const pop = (): Value => { if (stack.length === 0 || (marks.length && stack.length <= marks[marks.length - 1])) fail(`stack underflow at byte ${pos - 1}`); return stack.pop(); };
  const top = (): Value => { if (stack.length === 0) fail(`stack underflow at byte ${pos - 1}`); return stack[stack.length - 1]; };
  const popMark = (): Value[] => {
    const m = marks.pop();
    if (m === undefined) fail(`no MARK on the stack at byte ${pos - 1}`);
    return stack.splice(m!);
  };
  const global = (module: string, name: string): Global => {
    const q = `${module}.${name}`;
    if (ALLOWED_FUNCTIONS.has(q)) return new Global(q);
    if (module === "torch" && name in STORAGE_DTYPES) return new Global(q);
    throw new TorchBinError(file, `refusing to load: the pickle asks for ${q}, which is not a tensor rebuild function (only the allow-list ${ALLOW_LIST_TEXT} is loaded; convert the checkpoint to safetensors)`);
  };
  const int = (v: Value, what: string): number => {
    if (typeof v !== "number" || !Number.isInteger(v)) fail(`${what} is ${describe(v)}, expected an integer`);
    return v as number;
  };
  const intTuple = (v: Value, what: string): number[] => {
    if (!Array.isArray(v)) fail(`${what} is ${describe(v)}, expected a tuple of integers`);
    return (v as Value[]).map((x, i) => int(x, `${what}[${i}]`));
  };
  const setItems = (target: Value, items: Value[]) => {
    if (!(target instanceof Dict)) fail(`SETITEM(S) on ${describe(target)} at byte ${pos - 1}`);
    if (items.length % 2) fail(`SETITEMS with an odd number of items at byte ${pos - 1}`);
    for (let i = 0; i < items.length; i += 2) (target as Dict).map.set(items[i], items[i + 1]);
  };
  const call = (fn: Value, args: Value, op: string): Value => {
    if (!(fn instanceof Global)) return fail(`${op} on ${describe(fn)} at byte ${pos - 1}: not a callable`);
    if (!Array.isArray(args)) return fail(`${op} arguments are ${describe(args)} at byte ${pos - 1}, expected a tuple`);
    switch (fn.qualname) {
      case "collections.OrderedDict": {
        const d = new Dict();
        if (args.length > 0) {
          // OrderedDict(iterable of pairs)
          const items = args[0];
          if (!Array.isArray(items)) return fail(`collections.OrderedDict(${describe(items)}) at byte ${pos - 1}: expected a list of pairs`);
          for (const kv of items) {
            if (!Array.isArray(kv) || kv.length !== 2) return fail(`collections.OrderedDict item ${describe(kv)} is not a pair`);
            d.map.set(kv[0], kv[1]);
          }
        }
        return d;
      }
      case "torch._utils._rebuild_tensor_v2": {
        if (op !== "REDUCE" || args.length < 6 || args.length > 7) return fail(`${fn.qualname} called via ${op} with ${args.length} arguments, expected REDUCE with 6 or 7`);
        const [storage, offset, size, stride] = args;
        if (!(storage instanceof Storage)) return fail(`${fn.qualname}: first argument is ${describe(storage)}, expected a storage`);
        const shape = intTuple(size, "tensor size");
        const strides = intTuple(stride, "tensor stride");
        const off = int(offset, "storage offset");
        if (shape.length !== strides.length) return fail(`tensor size [${shape}] and stride [${strides}] differ in length`);
        if (off < 0 || shape.some((d) => d < 0) || strides.some((s) => s < 0)) return fail(`tensor with negative size, stride or offset (size [${shape}], stride [${strides}], offset ${off})`);
        // bounds against the storage are checked once the tensor has its name (checkBacked)
        return new TensorRef(storage, off, shape, strides);
      }
      case "torch._utils._rebuild_parameter":
      case "torch._utils._rebuild_parameter_with_state": {
        if (!(args[0] instanceof TensorRef)) return fail(`${fn.qualname}: first argument is ${describe(args[0])}, expected a tensor`);
        return args[0];
      }
      default:
        return fail(`${op} on ${fn.qualname} at byte ${pos - 1}: a storage type is only valid inside a persistent id`);
    }
  };

  for (;;) {
    const at = pos;
    const op = u8();
    switch (op) {
      case 0x80: { // PROTO
        const v = u8();
        if (v < 2 || v > 5) fail(`pickle protocol ${v} is not supported (torch.save writes 2; 2..5 are read)`);
        break;
      }
      case 0x95: u64n(); break; // FRAME: a length hint only
      case 0x7d: stack.push(new Dict()); break; // EMPTY_DICT
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x29: stack.push([]); break; // EMPTY_TUPLE
      case 0x28: marks.push(stack.length); break; // MARK
      case 0x58: stack.push(str(u32())); break; // BINUNICODE
      case 0x8c: stack.push(str(u8())); break; // SHORT_BINUNICODE
      case 0x8d: stack.push(str(u64n())); break; // BINUNICODE8
      case 0x42: stack.push(take(u32()).slice()); break; // BINBYTES
      case 0x43: stack.push(take(u8()).slice()); break; // SHORT_BINBYTES
      case 0x71: memo.set(u8(), top()); break; // BINPUT
      case 0x72: memo.set(u32(), top()); break; // LONG_BINPUT
      case 0x94: memo.set(memo.size, top()); break; // MEMOIZE
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const i = op === 0x68 ? u8() : u32();
        if (!memo.has(i)) fail(`BINGET of memo slot ${i} that was never stored (byte ${at})`);
        stack.push(memo.get(i));
        break;
      }
      case 0x63: { // GLOBAL
        const module = line();
        const name = line();
        stack.push(global(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") fail(`STACK_GLOBAL with non-string names at byte ${at}`);
        stack.push(global(module as string, name as string));
        break;
      }
      case 0x74: stack.push(popMark()); break; // TUPLE
      case 0x85: { const a = pop(); stack.push([a]); break; } // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); stack.push([a, b]); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); stack.push([a, b, c]); break; } // TUPLE3
      case 0x4a: need(4); stack.push(view.getInt32(pos, true)); pos += 4; break; // BININT
      case 0x4b: stack.push(u8()); break; // BININT1
      case 0x4d: stack.push(u16()); break; // BININT2
      case 0x8a: { // LONG1: little-endian two's complement of n bytes
        const n = u8();
        const b = take(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]);
        if (n > 0 && b[n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) fail(`integer ${v} at byte ${at} is too large`);
        stack.push(Number(v));
        break;
      }
      case 0x47: need(8); stack.push(view.getFloat64(pos, false)); pos += 8; break; // BINFLOAT (big-endian)
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4e: stack.push(null); break; // NONE
      case 0x52: { const args = pop(); const fn = pop(); stack.push(call(fn, args, "REDUCE")); break; } // REDUCE
      case 0x81: { // NEWOBJ: cls.__new__(cls, *args); only OrderedDict makes sense here
        const args = pop();
        const cls = pop();
        if (!(cls instanceof Global) || cls.qualname !== "collections.OrderedDict") fail(`NEWOBJ of ${describe(cls)} at byte ${at}`);
        stack.push(call(cls, args, "NEWOBJ"));
        break;
      }
      case 0x62: { // BUILD: obj.__setstate__(state). Only dicts get state (e.g. state_dict._metadata): dropped.
        const state = pop();
        const obj = top();
        if (!(obj instanceof Dict)) fail(`BUILD on ${describe(obj)} at byte ${at}`);
        void state;
        break;
      }
      case 0x51: stack.push(persistentLoad(pop())); break; // BINPERSID
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const items = popMark(); setItems(top(), items); break; } // SETITEMS
      case 0x61: { // APPEND
        const v = pop();
        const list = top();
        if (!Array.isArray(list)) fail(`APPEND to ${describe(list)} at byte ${at}`);
        (list as Value[]).push(v);
        break;
      }
      case 0x65: { // APPENDS
        const items = popMark();
        const list = top();
        if (!Array.isArray(list)) fail(`APPENDS to ${describe(list)} at byte ${at}`);
        for (const v of items) (list as Value[]).push(v);
        break;
      }
      case 0x2e: { // STOP
        if (stack.length !== 1) fail(`STOP with ${stack.length} values on the stack (expected 1)`);
        return stack[0];
      }
      default:
        return fail(`unsupported pickle opcode 0x${op.toString(16).padStart(2, "0")} (${OPCODE_NAMES[op] ?? "unknown"}) at byte ${at}; torch.save never writes it, the checkpoint is not a plain state dict (convert it to safetensors)`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// storages -> tensors

type Decoded = RawTensor["data"];

function byteSwap(bytes: Uint8Array, width: number): void {
  for (let i = 0; i + width <= bytes.length; i += width) {
    for (let a = i, b = i + width - 1; a < b; a++, b--) { const t = bytes[a]; bytes[a] = bytes[b]; bytes[b] = t; }
  }
}

/** Storage bytes -> elements, viewing the bytes when the type allows it, converting otherwise. */
function decodeStorage(file: string, s: Storage, bytes: Uint8Array): Decoded {
  const n = s.numel;
  const ab = bytes.buffer as ArrayBuffer;
  const o = bytes.byteOffset;
  switch (s.dtype) {
    case "F32": return new Float32Array(ab, o, n);
    case "F64": return new Float64Array(ab, o, n);
    case "F16": return float16ToFloat32(new Uint16Array(ab, o, n));
    case "BF16": return bfloat16ToFloat32(new Uint16Array(ab, o, n));
    case "I32": return new Int32Array(ab, o, n);
    case "I16": return Int32Array.from(new Int16Array(ab, o, n));
    case "I8": return Int32Array.from(new Int8Array(ab, o, n));
    case "U8": case "BOOL": return new Uint8Array(ab, o, n);
    case "I64":
      return int64ToInt32(new Int32Array(ab, o, 2 * n), (value, i) => {
        throw new TorchBinError(file, `int64 storage "${s.key}" holds ${value} at element ${i}, outside the int32 range tfjs supports (${INT32_RANGE}; values are never wrapped)`);
      });
    default: throw new TorchBinError(file, `storage "${s.key}" has unsupported dtype ${s.dtype}`);
  }
}

function emptyLike(d: Decoded, n: number): Decoded {
  if (d instanceof Float32Array) return new Float32Array(n);
  if (d instanceof Float64Array) return new Float64Array(n);
  if (d instanceof Int32Array) return new Int32Array(n);
  return new Uint8Array(n);
}

/** The elements of a (possibly strided) view of a storage, in row-major order. */
function gather(src: Decoded, t: TensorRef): Decoded {
  const { shape, stride, offset } = t;
  const n = shape.reduce((a, b) => a * b, 1);
  const out = emptyLike(src, n);
  if (n === 0) return out;
  const rank = shape.length;
  // contiguous (row-major) view: one block copy
  let expect = 1, contiguous = true;
  for (let k = rank - 1; k >= 0; k--) {
    if (shape[k] !== 1 && stride[k] !== expect) { contiguous = false; break; }
    expect *= shape[k];
  }
  if (contiguous) {
    (out as Float32Array).set((src as Float32Array).subarray(offset, offset + n));
    return out;
  }
  const idx = new Array<number>(rank).fill(0);
  const inner = rank - 1;
  const innerSize = shape[inner], innerStride = stride[inner];
  let base = offset;
  for (let o = 0; o < n; ) {
    for (let j = 0, p = base; j < innerSize; j++, p += innerStride) out[o++] = src[p];
    // advance the outer indices (odometer)
    let k = inner - 1;
    for (; k >= 0; k--) {
      idx[k]++;
      base += stride[k];
      if (idx[k] < shape[k]) break;
      base -= stride[k] * shape[k];
      idx[k] = 0;
    }
    if (k < 0) break;
  }
  return out;
}

function isWholeStorage(t: TensorRef, n: number): boolean {
  if (t.offset !== 0 || n !== t.storage.numel) return false;
  let expect = 1;
  for (let k = t.shape.length - 1; k >= 0; k--) {
    if (t.shape[k] !== 1 && t.stride[k] !== expect) return false;
    expect *= t.shape[k];
  }
  return true;
}

/** How many times its own size the tensors viewing one storage may hold together (tied weights, slices). */
export const MAX_VIEW_COPIES = 8;

function storageText(s: Storage): string {
  return `storage "${s.key}" (${s.numel} ${s.dtype} elements, ${s.numel * s.elemBytes} bytes)`;
}

/**
 * A tensor must be backed by its storage: at most as many elements as the storage holds, and its last element
 * (offset + sum of (size - 1) * stride) inside it, as torch checks. Returns the element count.
 */
function checkBacked(file: string, name: string, t: TensorRef): number {
  const n = t.shape.reduce((a, b) => a * b, 1);
  const s = t.storage;
  const what = `tensor "${name}" (size [${t.shape}], stride [${t.stride}], offset ${t.offset})`;
  if (n > s.numel) {
    throw new TorchBinError(file, `${what} has ${n} elements but its ${storageText(s)} holds ${s.numel}; allowed: at most the storage's elements (a broadcast view such as expand() is not loaded: save tensor.contiguous() instead)`);
  }
  if (n > 0) {
    const last = t.offset + t.shape.reduce((acc, d, i) => acc + (d - 1) * t.stride[i], 0);
    if (last >= s.numel) {
      throw new TorchBinError(file, `${what} reaches element ${last} of its ${storageText(s)}; allowed: elements 0..${s.numel - 1}: the file is corrupt`);
    }
  }
  return n;
}

/**
 * Bounds every allocation by the storages' bytes: each tensor by its own storage (checkBacked), and all the tensors
 * that view one storage together by MAX_VIEW_COPIES times it. Returns how many tensors use each storage.
 */
function checkAllocations(file: string, refs: [string, TensorRef][]): Map<Storage, number> {
  const users = new Map<Storage, number>();
  const viewed = new Map<Storage, number>();
  for (const [name, t] of refs) {
    const s = t.storage;
    const total = (viewed.get(s) ?? 0) + checkBacked(file, name, t);
    users.set(s, (users.get(s) ?? 0) + 1);
    viewed.set(s, total);
    if (total > MAX_VIEW_COPIES * s.numel) {
      throw new TorchBinError(file, `the ${users.get(s)} tensors up to "${name}" that view ${storageText(s)} hold ${total} elements together; allowed: at most ${MAX_VIEW_COPIES} times the storage (${MAX_VIEW_COPIES * s.numel}). Refused: the pickle references one storage more often than a checkpoint of tied weights and slices does`);
    }
  }
  return users;
}

/**
 * The state dict's tensors by name: {name: tensor} and nested dicts of tensors ({"state_dict": {...}} becomes
 * "state_dict.<name>"). Iterative, so no nesting depth overflows the call stack; a dict shared by several others
 * counts once per place, and no more names than the pickle has bytes are made (real ones take several bytes each).
 */
function flatten(file: string, root: Dict, pickleBytes: number): [string, TensorRef][] {
  const refs: [string, TensorRef][] = [];
  const open = new Set<Dict>([root]);
  const stack: { dict: Dict; prefix: string; items: Iterator<[unknown, unknown]> }[] = [{ dict: root, prefix: "", items: root.map.entries() }];
  while (stack.length > 0) {
    const top = stack[stack.length - 1];
    const next = top.items.next();
    if (next.done) {
      open.delete(top.dict);
      stack.pop();
      continue;
    }
    const [k, v] = next.value;
    if (typeof k !== "string" && typeof k !== "number") {
      throw new TorchBinError(file, `data.pkl: a key in the dict at "${top.prefix}" is ${describe(k)}; allowed: strings (tensor names)`);
    }
    const name = top.prefix + String(k);
    if (v instanceof TensorRef) {
      refs.push([name, v]);
      if (refs.length > pickleBytes) {
        throw new TorchBinError(file, `data.pkl (${pickleBytes} bytes) names more than ${pickleBytes} tensors through shared dicts; allowed: at most one per byte of the pickle`);
      }
    } else if (v instanceof Dict) {
      if (open.has(v)) throw new TorchBinError(file, `data.pkl: the dict at "${name}." contains itself`);
      open.add(v);
      stack.push({ dict: v, prefix: `${name}.`, items: v.map.entries() });
    } else throw new TorchBinError(file, `"${name}" in the checkpoint is ${describe(v)}, not a tensor`);
  }
  return refs;
}

// ---------------------------------------------------------------------------------------------------

function checkNotLegacy(fd: number, file: string, fileSize: number): void {
  const head = readAt(fd, file, 0, Math.min(fileSize, 4), "the file header");
  if (head.length >= 4 && head.readUInt32LE(0) === SIG_LOCAL) return;
  // Before 1.6 torch.save wrote a stream of pickles starting with the pickled magic number
  // 0x1950a86a20f9469cfc6c (PROTO 2, LONG1 10 bytes); before 0.1.10 a tar file.
  if (head.length >= 1 && head[0] === 0x80) {
    throw new TorchBinError(file, "legacy format not supported; re-save with torch>=1.6 or convert to safetensors (this is a pre-1.6 torch.save pickle stream, not a zip checkpoint)");
  }
  if (fileSize >= 262) {
    const tar = readAt(fd, file, 257, 5, "the file header");
    if (tar.toString("latin1") === "ustar") {
      throw new TorchBinError(file, "legacy format not supported; re-save with torch>=1.6 or convert to safetensors (this is a pre-0.1.10 tar checkpoint)");
    }
  }
  if (fileSize === 0) throw new TorchBinError(file, "the file is empty (re-download it)");
  throw new TorchBinError(file, "not a PyTorch zip checkpoint (does not start with a zip header): the file is corrupt or not a torch.save file");
}

/**
 * Reads a PyTorch checkpoint written by torch.save (zip format, torch >= 1.6): the state dict's tensors by name, as
 * plain typed arrays (float32 for F32/F16/BF16, float64 for F64, int32 for I64/I32/I16/I8, uint8 for U8/BOOL),
 * `dtype` naming the stored type. Storage offsets and strides are honoured, shared storages read once.
 * Only tensor-rebuild functions are ever resolved from the pickle; anything else is refused.
 */
export function readTorchBin(file: string): Map<string, RawTensor> {
  if (!fs.existsSync(file)) throw new TorchBinError(file, "file does not exist");
  const fd = fs.openSync(file, "r");
  try {
    const fileSize = fs.fstatSync(fd).size;
    checkNotLegacy(fd, file, fileSize);
    const entries = readCentralDirectory(fd, file, fileSize);
    const byName = new Map(entries.map((e) => [e.name, e]));
    const pkl = entries.find((e) => /^[^/]+\/data\.pkl$/.test(e.name)) ?? entries.find((e) => e.name.endsWith("data.pkl"));
    if (!pkl) {
      const hint = entries.some((e) => e.name.endsWith("constants.pkl")) ? " (it looks like a TorchScript archive: save the state_dict instead)" : "";
      throw new TorchBinError(file, `zip archive has no <archive>/data.pkl entry: not a torch.save checkpoint${hint}`);
    }
    const prefix = pkl.name.slice(0, pkl.name.length - "data.pkl".length);
    let bigEndian = false;
    const bo = byName.get(`${prefix}byteorder`);
    if (bo) {
      const order = Buffer.from(readEntry(fd, file, fileSize, bo)).toString("latin1").trim();
      if (order !== "little" && order !== "big") throw new TorchBinError(file, `unknown byteorder "${order}"`);
      bigEndian = order === "big";
    }

    const storages = new Map<string, Storage>();
    const persistentLoad = (pid: Value): Value => {
      if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== "storage") {
        throw new TorchBinError(file, `data.pkl: persistent id ${describe(pid)} is not a ("storage", type, key, location, numel) record`);
      }
      const [, type, key, , numel] = pid;
      if (!(type instanceof Global) || !type.qualname.startsWith("torch.") || !(type.qualname.slice(6) in STORAGE_DTYPES)) {
        throw new TorchBinError(file, `data.pkl: storage type ${describe(type)} is not a torch.<Type>Storage`);
      }
      if (typeof key !== "string" || typeof numel !== "number" || !Number.isInteger(numel) || numel < 0) {
        throw new TorchBinError(file, `data.pkl: malformed storage record (key ${describe(key)}, numel ${describe(numel)})`);
      }
      const { dtype, bytes } = STORAGE_DTYPES[type.qualname.slice(6)];
      const known = storages.get(key);
      if (known) {
        if (known.dtype !== dtype) throw new TorchBinError(file, `data.pkl: storage "${key}" is used as both ${known.dtype} and ${dtype}`);
        return known;
      }
      const entry = byName.get(`${prefix}data/${key}`);
      if (!entry) throw new TorchBinError(file, `storage "${key}" is referenced by data.pkl but ${prefix}data/${key} is missing from the archive`);
      if (entry.size < numel * bytes) {
        throw new TorchBinError(file, `storage "${key}" (${numel} x ${dtype}) needs ${numel * bytes} bytes but ${entry.name} has ${entry.size}: the file is corrupt`);
      }
      const s = new Storage(key, dtype, bytes, numel);
      storages.set(key, s);
      return s;
    };
    const pickle = readEntry(fd, file, fileSize, pkl);
    const root = unpickle(pickle, file, pkl.name, persistentLoad);
    if (!(root instanceof Dict)) {
      throw new TorchBinError(file, `data.pkl holds ${describe(root)}, not a dict of tensors (a state dict)`);
    }
    const refs = flatten(file, root, pickle.length);
    const users = checkAllocations(file, refs);
    // Read each storage once (straight into its own buffer), decode once, hand out views/copies per tensor.
    const decoded = new Map<Storage, Decoded>();
    const out = new Map<string, RawTensor>();
    for (const [name, t] of refs) {
      const s = t.storage;
      let src = decoded.get(s);
      if (!src) {
        const entry = byName.get(`${prefix}data/${s.key}`)!;
        const bytes = readEntry(fd, file, fileSize, entry);
        if (bigEndian && s.elemBytes > 1) byteSwap(bytes, s.elemBytes);
        src = decodeStorage(file, s, bytes.subarray(0, s.numel * s.elemBytes));
        decoded.set(s, src);
      }
      const n = t.shape.reduce((a, b) => a * b, 1);
      const left = users.get(s)! - 1;
      users.set(s, left);
      // The last user of a storage that it covers exactly takes the decoded array itself (no copy).
      const data = left === 0 && isWholeStorage(t, n) && src.length === n ? src : gather(src, t);
      if (left === 0) decoded.delete(s);
      out.set(name, { dtype: s.dtype, shape: t.shape, data });
    }
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** Loads a torch.save checkpoint as tfjs tensors (floats -> float32, integers -> int32), like torch.load(map_location="cpu"). */
export function loadTorchBin(file: string): Record<string, tf.Tensor> {
  const out: Record<string, tf.Tensor> = {};
  for (const [k, raw] of readTorchBin(file)) out[k] = rawToTensor(raw);
  return out;
}
