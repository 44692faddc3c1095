// Test support: hand-made bad files for the readers' bad-input tests (kernel-lib/test/bad-input-io.test.ts and the
// notebook test that the kernel survives them, notebooks/test/kernel-survives.test.ts). Not part of the library.
import * as zlib from "node:zlib";
import { zipEndRecords } from "../src/io/torch-bin.js";

// hand-made torch zips: a pickle of the opcodes torch.save writes, entries stored or deflated as asked

export const op = {
  str: (s: string) => { const b = Buffer.from(s); return [0x58, ...u32(b.length), ...b]; }, // BINUNICODE
  global: (m: string, n: string) => [...Buffer.from(`c${m}\n${n}\n`, "latin1")], // GLOBAL
  int: (v: number) => [0x4a, ...i32(v)], // BININT
};
export function u32(v: number) { const b = Buffer.alloc(4); b.writeUInt32LE(v); return [...b]; }
export function i32(v: number) { const b = Buffer.alloc(4); b.writeInt32LE(v); return [...b]; }

/** torch._utils._rebuild_tensor_v2(<FloatStorage "0" of numel>, 0, (size,), (1,), False, OrderedDict()) */
export function tensorOps(numel: number, size: number): number[] {
  return [
    ...op.global("torch._utils", "_rebuild_tensor_v2"),
    0x28, // MARK (args)
    0x28, ...op.str("storage"), ...op.global("torch", "FloatStorage"), ...op.str("0"), ...op.str("cpu"), ...op.int(numel), 0x74, 0x51, // pid TUPLE, BINPERSID
    ...op.int(0), ...op.int(size), 0x85, ...op.int(1), 0x85, 0x89, // offset, (size,), (1,), False
    ...op.global("collections", "OrderedDict"), 0x29, 0x52, // OrderedDict()
    0x74, 0x52, // TUPLE, REDUCE
  ];
}

/** PROTO 2, `body`, STOP */
export const pickle = (body: number[]) => Uint8Array.from([0x80, 0x02, ...body, 0x2e]);

export interface Entry { name: string; data: Uint8Array; deflated?: boolean; size?: number; crc?: number }

/** A zip of `entries` (data as given: already deflated where `deflated`), `size` overriding the declared size. */
export function zipOf(entries: Entry[]): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let pos = 0;
  for (const e of entries) {
    const name = Buffer.from(e.name);
    const size = e.size ?? e.data.length;
    const crc = e.crc ?? zlib.crc32(e.data) >>> 0;
    const header = (sig: number, len: number) => {
      const h = Buffer.alloc(len);
      h.writeUInt32LE(sig, 0);
      return h;
    };
    const lh = header(0x04034b50, 30);
    lh.writeUInt16LE(e.deflated ? 8 : 0, 8);
    lh.writeUInt16LE(name.length, 26);
    const ch = header(0x02014b50, 46);
    ch.writeUInt16LE(e.deflated ? 8 : 0, 10);
    ch.writeUInt32LE(crc, 16);
    ch.writeUInt32LE(e.data.length, 20);
    ch.writeUInt32LE(size, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(pos, 42);
    parts.push(lh, name, Buffer.from(e.data));
    central.push(ch, name);
    pos += 30 + name.length + e.data.length;
  }
  const cd = Buffer.concat(central);
  return Buffer.concat([...parts, cd, zipEndRecords(entries.length, cd.length, pos)]);
}

/** A raw deflate stream of `mib` MiB of zeros, about 1 KiB per MiB (independent sync-flushed blocks). */
export function deflatedZeros(mib: number): Buffer {
  const block = zlib.deflateRawSync(Buffer.alloc(1 << 20), { finishFlush: zlib.constants.Z_SYNC_FLUSH });
  return Buffer.concat([...new Array<Buffer>(mib).fill(block), zlib.deflateRawSync(Buffer.alloc(0))]);
}

