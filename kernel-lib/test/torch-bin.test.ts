import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { readTorchBin, loadTorchBin } from "../src/io/torch-bin.js";
import { readSafetensorsArrays, type RawTensor } from "../src/io/safetensors.js";
import { float16ToFloat32, float32ToFloat16 } from "../src/io/float16.js";
import { convertDeprecatedAttentionBlocks, deprecatedAttentionKey } from "../src/models/convert-deprecated-attention.js";
import { fixture } from "./helpers.js";
import { writeTorchBin, serializeTorchBin, legacyTorchBytes, type WriterTensor, type TorchBinWriteOptions } from "./torch-bin-writer.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "torchbin-"));
const BIN = fixture("models/unet-ddpm-tiny-bin/diffusion_pytorch_model.bin");
const BIN16 = fixture("models/unet-ddpm-tiny-bin/diffusion_pytorch_model.fp16.bin");
const ST = fixture("models/unet-ddpm-tiny/diffusion_pytorch_model.safetensors");
const ST16 = fixture("models/unet-ddpm-tiny/diffusion_pytorch_model.fp16.safetensors");

/** Bitwise equality (NaN-safe, -0 != 0). */
function sameBits(a: RawTensor["data"], b: RawTensor["data"]): boolean {
  if (a.constructor !== b.constructor || a.length !== b.length) return false;
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return Buffer.compare(Buffer.from(x.buffer, x.byteOffset, x.byteLength), Buffer.from(y.buffer, y.byteOffset, y.byteLength)) === 0;
}

function expectSameStateDict(actual: Map<string, RawTensor>, expected: Map<string, RawTensor>) {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  for (const [k, e] of expected) {
    const a = actual.get(k)!;
    expect(a.dtype, k).toBe(e.dtype);
    expect(a.shape, k).toEqual(e.shape);
    expect(sameBits(a.data, e.data), `${k} values differ`).toBe(true);
  }
}

function write(name: string, tensors: Record<string, WriterTensor>, opts: TorchBinWriteOptions = {}): string {
  const p = path.join(tmp, name);
  writeTorchBin(p, tensors, opts);
  return p;
}

function errorOf(fn: () => unknown): Error {
  try { fn(); } catch (e) { return e as Error; }
  throw new Error("expected an error");
}

describe("readTorchBin on real torch.save files", () => {
  it("fp32 .bin after renaming the deprecated attention keys equals the safetensors model exactly", () => {
    const raw = readTorchBin(BIN);
    const old = [...raw.keys()].filter((k) => deprecatedAttentionKey(k) !== null);
    // 6 attention blocks x {query,key,value,proj_attn} x {weight,bias}: the fixtures README's "24 keys"
    // counts the 24 projection layers, the state dict has 48 keys to rename
    expect(old.length).toBe(48);
    expect(old.some((k) => k.endsWith(".proj_attn.weight"))).toBe(true);
    const converted = convertDeprecatedAttentionBlocks(raw);
    expectSameStateDict(converted, readSafetensorsArrays(ST).tensors);
  });

  it("fp16 .bin equals the fp16 safetensors exactly (HalfStorage -> float32 through the LUT)", () => {
    const converted = convertDeprecatedAttentionBlocks(readTorchBin(BIN16));
    const expected = readSafetensorsArrays(ST16).tensors;
    for (const t of converted.values()) expect(t.dtype).toBe("F16");
    expectSameStateDict(converted, expected);
  });

  it("gives every tensor its own buffer of exactly its size (one copy of each storage, no file-sized buffer kept)", () => {
    for (const file of [BIN, BIN16]) {
      for (const [k, t] of readTorchBin(file)) {
        expect(t.data.byteOffset, k).toBe(0);
        expect(t.data.buffer.byteLength, k).toBe(t.data.byteLength);
      }
    }
  });

  it("the test writer reproduces torch.save byte for byte", () => {
    for (const [file, dtype] of [[BIN, "F32"], [BIN16, "F16"]] as const) {
      const tensors: Record<string, WriterTensor> = {};
      for (const [k, t] of readTorchBin(file)) tensors[k] = { dtype, shape: t.shape, data: t.data as Float32Array };
      const bytes = serializeTorchBin(file, tensors, { container: "dict" });
      const original = fs.readFileSync(file);
      expect(bytes.length).toBe(original.length);
      expect(Buffer.compare(bytes, original), path.basename(file)).toBe(0);
    }
  });

  it("loadTorchBin gives float32 tfjs tensors", () => {
    const t = loadTorchBin(BIN16);
    expect(t["conv_in.weight"].dtype).toBe("float32");
    expect(t["conv_in.weight"].shape).toEqual([16, 3, 3, 3]);
  });
});

describe("readTorchBin on files from the test writer", () => {
  const f32 = [1.5, -2, 3.25, 0, -0, 1e-30, 3.4e38, 7];
  const f16in = [1.5, -2, 65504, 6e-8, 0.1, -0.333];
  const i64 = [0, 1, -1, 2147483647, -2147483648, 42];
  // a 2x3 tensor stored transposed: logical [[0,1,2],[3,4,5]] with strides [1, 2]
  const logical = [0, 1, 2, 3, 4, 5];
  const tensors: Record<string, WriterTensor> = {
    "f32": { dtype: "F32", shape: [2, 4], data: f32 },
    "f16": { dtype: "F16", shape: [3, 2], data: f16in },
    "i64": { dtype: "I64", shape: [6], data: i64 },
    "transposed": { dtype: "F32", shape: [2, 3], data: logical, stride: [1, 2] },
    "strided": { dtype: "F16", shape: [2, 2], data: [9, 8, 7, 6], stride: [5, 2], storageOffset: 3 },
    "scalar": { dtype: "F32", shape: [], data: [2.5] },
    "scalar_i": { dtype: "I64", shape: [], data: [-7] },
    "empty": { dtype: "F32", shape: [0, 3], data: [] },
    "embed.weight": { dtype: "F32", shape: [3, 2], data: [10, 11, 12, 13, 14, 15] },
  };
  const views: TorchBinWriteOptions["views"] = {
    "lm_head.weight": { of: "embed.weight", storageOffset: 0, shape: [3, 2], stride: [2, 1] }, // tied weights
    "embed.row1": { of: "embed.weight", storageOffset: 2, shape: [2], stride: [1] },
    "embed.col0": { of: "embed.weight", storageOffset: 0, shape: [3], stride: [2] },
    "embed.T": { of: "embed.weight", storageOffset: 0, shape: [2, 3], stride: [1, 2] },
  };
  const expected: Record<string, { dtype: string; shape: number[]; values: number[] }> = {
    "f32": { dtype: "F32", shape: [2, 4], values: Array.from(Float32Array.from(f32)) },
    "f16": { dtype: "F16", shape: [3, 2], values: Array.from(float16ToFloat32(float32ToFloat16(Float32Array.from(f16in)))) },
    "i64": { dtype: "I64", shape: [6], values: i64 },
    "transposed": { dtype: "F32", shape: [2, 3], values: logical },
    "strided": { dtype: "F16", shape: [2, 2], values: [9, 8, 7, 6] },
    "scalar": { dtype: "F32", shape: [], values: [2.5] },
    "scalar_i": { dtype: "I64", shape: [], values: [-7] },
    "empty": { dtype: "F32", shape: [0, 3], values: [] },
    "embed.weight": { dtype: "F32", shape: [3, 2], values: [10, 11, 12, 13, 14, 15] },
    "lm_head.weight": { dtype: "F32", shape: [3, 2], values: [10, 11, 12, 13, 14, 15] },
    "embed.row1": { dtype: "F32", shape: [2], values: [12, 13] },
    "embed.col0": { dtype: "F32", shape: [3], values: [10, 12, 14] },
    "embed.T": { dtype: "F32", shape: [2, 3], values: [10, 12, 14, 11, 13, 15] },
  };

  function check(file: string) {
    const got = readTorchBin(file);
    expect([...got.keys()]).toEqual(Object.keys(expected));
    for (const [k, e] of Object.entries(expected)) {
      const t = got.get(k)!;
      expect(t.dtype, k).toBe(e.dtype);
      expect(t.shape, k).toEqual(e.shape);
      expect(t.data.constructor, k).toBe(e.dtype === "I64" ? Int32Array : Float32Array);
      expect(Array.from(t.data), k).toEqual(e.values);
    }
    // -0 survives, and tensors sharing a storage do not share memory
    expect(Object.is(got.get("f32")!.data[4], -0)).toBe(true);
    got.get("lm_head.weight")!.data[0] = 99;
    expect(got.get("embed.weight")!.data[0]).toBe(10);
    expect(got.get("embed.col0")!.data[0]).toBe(10);
    return got;
  }

  const variants: [string, TorchBinWriteOptions][] = [
    ["protocol 2, OrderedDict (a module's state_dict)", {}],
    ["protocol 2, plain dict", { container: "dict" }],
    ["OrderedDict with _metadata (BUILD)", { metadata: true }],
    ["protocol 4 (STACK_GLOBAL, MEMOIZE, SHORT_BINUNICODE, FRAME)", { protocol: 4, metadata: true }],
    ["nn.Parameter (_rebuild_parameter)", { parameters: true }],
    ["byteorder record: little", { byteorder: "little" }],
    ["byteorder record: big-endian storages", { byteorder: "big" }],
    ["DEFLATE entries", { deflate: true }],
    ["ZIP64 entries", { zip64Entries: true }],
  ];
  for (const [label, opts] of variants) {
    it(`reads back exactly: ${label}`, () => {
      check(write(`rt-${label.replace(/\W+/g, "_")}.bin`, tensors, { ...opts, views }));
    });
  }

  it("writes entries 64-byte aligned under <archive>/ as torch does", () => {
    const p = write("layout.pt", tensors, { views });
    const bytes = fs.readFileSync(p);
    expect(bytes.subarray(30, 30 + "layout/data.pkl".length).toString()).toBe("layout/data.pkl");
    // data.pkl: 30-byte header + 15-byte name + "FB" extra field -> data at 64
    const extra = bytes.readUInt16LE(28);
    expect((30 + 15 + extra) % 64).toBe(0);
    expect(bytes.subarray(30 + 15, 30 + 15 + 2).toString()).toBe("FB");
  });

  it("a large protocol 4 pickle spans several frames", () => {
    const many: Record<string, WriterTensor> = {};
    for (let i = 0; i < 3000; i++) many[`layer_with_a_rather_long_name.${i}.weight`] = { dtype: "F32", shape: [1], data: [i] };
    const p = write("frames.bin", many, { protocol: 4 });
    const got = readTorchBin(p);
    expect(got.size).toBe(3000);
    expect(Array.from(got.get("layer_with_a_rather_long_name.2999.weight")!.data)).toEqual([2999]);
  });

  it("loadTorchBin: floats float32, int64 int32", () => {
    const t = loadTorchBin(write("tf.bin", tensors, { views }));
    expect(t["f16"].dtype).toBe("float32");
    expect(t["i64"].dtype).toBe("int32");
    expect(Array.from(t["i64"].dataSync())).toEqual(i64);
    expect(Array.from(t["embed.T"].dataSync())).toEqual([10, 12, 14, 11, 13, 15]);
  });

  it("refuses int64 values tfjs cannot hold", () => {
    const p = write("big.bin", { big: { dtype: "I64", shape: [2], data: [1, 2 ** 40] } });
    expect(() => readTorchBin(p)).toThrow(/big.bin: int64 storage "0" holds 1099511627776 at element 1, outside the int32 range/);
  });
});

describe("readTorchBin refuses what it must not load", () => {
  const t: Record<string, WriterTensor> = { w: { dtype: "F32", shape: [2], data: [1, 2] } };
  const cases: [string, "GLOBAL" | "STACK_GLOBAL"][] = [
    ["os.system", "GLOBAL"],
    ["builtins.eval", "GLOBAL"],
    ["__builtin__.getattr", "GLOBAL"],
    ["os.system", "STACK_GLOBAL"],
    ["subprocess.Popen", "STACK_GLOBAL"],
    ["torch.load", "GLOBAL"],
  ];
  for (const [callable, via] of cases) {
    it(`${callable} via ${via}`, () => {
      const p = write(`evil-${callable}-${via}.bin`, t, { malicious: { callable, via } });
      const e = errorOf(() => readTorchBin(p));
      expect(e.message.startsWith(`${p}: refusing to load: the pickle asks for ${callable}, which is not a tensor rebuild function`)).toBe(true);
      expect(e.message).toMatch(/only the allow-list .*collections\.OrderedDict.*torch\._utils\._rebuild_tensor_v2.* is loaded; convert the checkpoint to safetensors\)$/);
    });
  }

  it("truncated zip: names the file", () => {
    const good = fs.readFileSync(write("whole.bin", t));
    for (const keep of [good.length - 10, Math.floor(good.length / 2), 100]) {
      const p = path.join(tmp, `truncated-${keep}.bin`);
      fs.writeFileSync(p, good.subarray(0, keep));
      const e = errorOf(() => readTorchBin(p));
      expect(e.message.startsWith(`${p}: `)).toBe(true);
      expect(e.message).toMatch(/truncated/);
    }
  });

  it("truncated real checkpoint: names the file", () => {
    const good = fs.readFileSync(BIN);
    const p = path.join(tmp, "real-truncated.bin");
    fs.writeFileSync(p, good.subarray(0, good.length - 500));
    expect(() => readTorchBin(p)).toThrow(`${p}: not a complete zip archive`);
  });

  it("corrupt storage bytes fail the CRC check", () => {
    const p = write("corrupt.bin", t);
    const b = fs.readFileSync(p);
    const at = b.indexOf(Buffer.from(new Float32Array([1, 2]).buffer));
    b[at] ^= 0xff;
    fs.writeFileSync(p, b);
    expect(() => readTorchBin(p)).toThrow(`${p}: zip entry "corrupt/data/0" fails its CRC-32 check`);
  });

  it("legacy (pre-1.6) format", () => {
    const p = path.join(tmp, "legacy.bin");
    fs.writeFileSync(p, legacyTorchBytes());
    expect(() => readTorchBin(p)).toThrow(`${p}: legacy format not supported; re-save with torch>=1.6 or convert to safetensors`);
  });

  it("not a checkpoint / missing file", () => {
    const p = path.join(tmp, "text.bin");
    fs.writeFileSync(p, "hello world, not a checkpoint");
    expect(() => readTorchBin(p)).toThrow(`${p}: not a PyTorch zip checkpoint`);
    expect(() => readTorchBin(path.join(tmp, "nope.bin"))).toThrow(/nope.bin: file does not exist/);
  });

  it("a dict that contains itself", () => {
    // EMPTY_DICT BINPUT 0, "a", BINGET 0, SETITEM, STOP: {"a": <itself>}
    const pkl = Buffer.from([0x80, 0x02, 0x7d, 0x71, 0x00, 0x58, 1, 0, 0, 0, 0x61, 0x68, 0x00, 0x73, 0x2e]);
    const p = path.join(tmp, "cycle.bin");
    fs.writeFileSync(p, replaceDataPkl(serializeTorchBin(p, t), pkl));
    expect(() => readTorchBin(p)).toThrow(`${p}: data.pkl: the dict at "a." contains itself`);
  });

  it("an opcode torch.save never writes: names the opcode and the file", () => {
    // a pickle with EMPTY_SET (protocol 4) in place of data.pkl
    const good = serializeTorchBin("odd.bin", t);
    const pkl = Buffer.from([0x80, 0x02, 0x7d, 0x8f, 0x2e]);
    const p = path.join(tmp, "odd.bin");
    fs.writeFileSync(p, replaceDataPkl(good, pkl));
    expect(() => readTorchBin(p)).toThrow(`${p}: odd/data.pkl: unsupported pickle opcode 0x8f (EMPTY_SET) at byte 3`);
  });
});

/** Replaces the data.pkl record of a writer archive (first entry) by `pkl`, fixing sizes and CRC. */
function replaceDataPkl(zip: Buffer, pkl: Buffer): Buffer {
  const nameLen = zip.readUInt16LE(26), extraLen = zip.readUInt16LE(28);
  const start = 30 + nameLen + extraLen;
  const ddAt = zip.indexOf(Buffer.from([0x50, 0x4b, 0x07, 0x08]), start);
  const oldLen = ddAt - start;
  const delta = pkl.length - oldLen;
  const out = Buffer.concat([zip.subarray(0, start), pkl, zip.subarray(ddAt)]);
  const crc = zlib.crc32(pkl) >>> 0;
  const dd = start + pkl.length;
  out.writeUInt32LE(crc, dd + 4);
  out.writeUInt32LE(pkl.length, dd + 8);
  out.writeUInt32LE(pkl.length, dd + 12);
  // central directory + end records moved by delta
  const eocd = out.length - 22;
  const cdOff = out.readUInt32LE(eocd + 16) + delta;
  out.writeUInt32LE(cdOff, eocd + 16);
  const loc = eocd - 20;
  const z64 = Number(out.readBigUInt64LE(loc + 8)) + delta;
  out.writeBigUInt64LE(BigInt(z64), loc + 8);
  out.writeBigUInt64LE(BigInt(cdOff), z64 + 48);
  for (let p = cdOff; out.readUInt32LE(p) === 0x02014b50; ) {
    const n = out.readUInt16LE(p + 28), m = out.readUInt16LE(p + 30), c = out.readUInt16LE(p + 32);
    const lho = out.readUInt32LE(p + 42);
    if (lho === 0) {
      out.writeUInt32LE(crc, p + 16);
      out.writeUInt32LE(pkl.length, p + 20);
      out.writeUInt32LE(pkl.length, p + 24);
    } else out.writeUInt32LE(lho + delta, p + 42);
    p += 46 + n + m + c;
  }
  return out;
}

describe("convertDeprecatedAttentionBlocks", () => {
  it("renames query/key/value/proj_attn of attentions.N blocks, keeps everything else", () => {
    const sd = new Map<string, number>([
      ["mid_block.attentions.0.group_norm.weight", 1],
      ["mid_block.attentions.0.query.weight", 2],
      ["mid_block.attentions.0.query.bias", 3],
      ["mid_block.attentions.0.key.weight", 4],
      ["mid_block.attentions.0.key.bias", 5],
      ["mid_block.attentions.0.value.weight", 6],
      ["mid_block.attentions.0.value.bias", 7],
      ["mid_block.attentions.0.proj_attn.weight", 8],
      ["mid_block.attentions.0.proj_attn.bias", 9],
      ["encoder.down_blocks.1.attentions.12.query.weight", 10],
      ["down_blocks.0.resnets.0.conv1.weight", 11],
      ["some.query.weight", 12],                              // not an attention block: untouched
      ["mid_block.attentions.0.to_q.weight", 13],             // already new-style: replaced by the deprecated one
    ]);
    const out = convertDeprecatedAttentionBlocks(sd);
    expect(sd.size).toBe(13); // input untouched
    expect([...out.entries()]).toEqual([
      ["mid_block.attentions.0.group_norm.weight", 1],
      ["mid_block.attentions.0.to_q.weight", 2],
      ["mid_block.attentions.0.to_q.bias", 3],
      ["mid_block.attentions.0.to_k.weight", 4],
      ["mid_block.attentions.0.to_k.bias", 5],
      ["mid_block.attentions.0.to_v.weight", 6],
      ["mid_block.attentions.0.to_v.bias", 7],
      ["mid_block.attentions.0.to_out.0.weight", 8],
      ["mid_block.attentions.0.to_out.0.bias", 9],
      ["encoder.down_blocks.1.attentions.12.to_q.weight", 10],
      ["down_blocks.0.resnets.0.conv1.weight", 11],
      ["some.query.weight", 12],
    ]);
    expect(convertDeprecatedAttentionBlocks(out)).toEqual(out); // idempotent
  });
});
