// Issue 13, section 1, the file readers: each probe of bad input is refused with an error that names the file,
// says what was given and what is allowed, before anything file-sized is allocated.
import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { readTorchBin, MAX_INFLATE_RATIO, MAX_VIEW_COPIES } from "../src/io/torch-bin.js";
import { loadSafetensors, readSafetensorsArrays, saveSafetensors } from "../src/io/safetensors.js";
import { checkConfigClass, ConfigError, resolveConfig } from "../src/io/config.js";
import { UNet2DConditionModel } from "../src/models/unet-2d-condition.js";
import { loadPipelineComponents } from "../src/pipelines/pipeline-loading.js";
import { HubError, hubFileDownload } from "../src/hub/index.js";
import { fixture } from "./helpers.js";
import { writeTorchBin } from "./torch-bin-writer.js";
import { op, tensorOps, pickle, zipOf, deflatedZeros, type Entry } from "./bad-files.js";

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "bad-input-io-"));

async function rejection(p: Promise<unknown>): Promise<Error> {
  return p.then(() => { throw new Error("expected a rejection"); }, (e: Error) => e);
}

function errorOf(fn: () => unknown): Error {
  try { fn(); } catch (e) { return e as Error; }
  throw new Error("expected an error");
}

function writeFile(name: string, bytes: Uint8Array): string {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, bytes);
  return p;
}

// ---------------------------------------------------------------------------------------------------

describe(".bin reader: allocations bounded by what the file holds", () => {
  it("a stride-0 tensor of shape [2^28] over a 1-element storage is refused, naming file, tensor, shape, strides and storage", () => {
    const p = path.join(tmp, "stride0.bin");
    writeTorchBin(p, { w: { dtype: "F32", shape: [1], data: [7] } }, { views: { "big.weight": { of: "w", storageOffset: 0, shape: [2 ** 28], stride: [0] } } });
    expect(fs.statSync(p).size).toBeLessThan(2000);
    const e = errorOf(() => readTorchBin(p));
    expect(e.message.startsWith(`${p}: tensor "big.weight" (size [268435456], stride [0], offset 0) has 268435456 elements`)).toBe(true);
    expect(e.message).toContain(`storage "0" (1 F32 elements, 4 bytes) holds 1; allowed: at most the storage's elements`);
  });

  it("a view reaching past its storage names the tensor and the allowed range", () => {
    const p = path.join(tmp, "past.bin");
    writeTorchBin(p, { w: { dtype: "F32", shape: [4], data: [1, 2, 3, 4] } }, { views: { tail: { of: "w", storageOffset: 2, shape: [2], stride: [2] } } });
    expect(() => readTorchBin(p)).toThrow(`${p}: tensor "tail" (size [2], stride [2], offset 2) reaches element 4 of its storage "0" (4 F32 elements, 16 bytes); allowed: elements 0..3`);
  });

  it(`one storage viewed by more than ${MAX_VIEW_COPIES} copies' worth of tensors is refused; tied weights and slices load`, () => {
    const views: Record<string, { of: string; storageOffset: number; shape: number[]; stride: number[] }> = {};
    for (let i = 0; i < MAX_VIEW_COPIES; i++) views[`tied.${i}`] = { of: "w", storageOffset: 0, shape: [3], stride: [1] };
    const many = path.join(tmp, "many-views.bin");
    writeTorchBin(many, { w: { dtype: "F32", shape: [3], data: [1, 2, 3] } }, { views });
    expect(() => readTorchBin(many)).toThrow(`${many}: the ${MAX_VIEW_COPIES + 1} tensors up to "tied.${MAX_VIEW_COPIES - 1}" that view storage "0" (3 F32 elements, 12 bytes) hold ${3 * (MAX_VIEW_COPIES + 1)} elements together; allowed: at most ${MAX_VIEW_COPIES} times the storage (${3 * MAX_VIEW_COPIES})`);
    const few = path.join(tmp, "tied.bin");
    writeTorchBin(few, { w: { dtype: "F32", shape: [3], data: [1, 2, 3] } }, { views: { "lm_head.weight": { of: "w", storageOffset: 0, shape: [3], stride: [1] } } });
    expect(Array.from(readTorchBin(few).get("lm_head.weight")!.data)).toEqual([1, 2, 3]);
  });
});

describe(".bin reader: deflate bombs", () => {
  const bomb = deflatedZeros(1024); // 1 GiB of zeros in about 1 MiB
  const bombPickle = pickle([0x7d, ...op.str("w"), ...tensorOps(1, 1), 0x73]);

  it("an entry declaring 1 GiB from 1 MiB compressed is refused before it is inflated, naming file, entry, sizes and the allowed ratio", () => {
    expect(bomb.length).toBeLessThan(2 << 20);
    const p = writeFile("bomb-declared.bin", zipOf([
      { name: "bomb-declared/data.pkl", data: bombPickle },
      { name: "bomb-declared/data/0", data: bomb, deflated: true, size: 1 << 30, crc: 0 },
    ]));
    const e = errorOf(() => readTorchBin(p));
    expect(e.message.startsWith(`${p}: zip entry "bomb-declared/data/0" declares 1073741824 bytes inflated from ${bomb.length} compressed (ratio `)).toBe(true);
    expect(e.message).toContain(`allowed: at most ${MAX_INFLATE_RATIO}:1 for entries over 1048576 bytes`);
  });

  it("an entry that inflates past the size its directory declares is stopped there, naming file and entry", () => {
    const p = writeFile("bomb-undeclared.bin", zipOf([
      { name: "bomb/data.pkl", data: bombPickle },
      { name: "bomb/data/0", data: bomb, deflated: true, size: 4, crc: 0 },
    ]));
    expect(() => readTorchBin(p)).toThrow(`${p}: zip entry "bomb/data/0" inflates past the 4 bytes the zip directory declares for it (allowed: exactly that size)`);
  });

  it("a deflated pickle is held to the same bounds", () => {
    const p = writeFile("bomb-pickle.bin", zipOf([{ name: "bp/data.pkl", data: bomb, deflated: true, size: 1 << 30, crc: 0 }]));
    expect(() => readTorchBin(p)).toThrow(new RegExp(`^${p}: zip entry "bp/data.pkl" declares 1073741824 bytes`));
  });

  it("deflated entries within the ratio still load", () => {
    const deflated = (name: string, data: Uint8Array): Entry => ({ name, data: zlib.deflateRawSync(data), deflated: true, size: data.length, crc: zlib.crc32(data) >>> 0 });
    const p = writeFile("deflated-ok.bin", zipOf([
      deflated("ok/data.pkl", pickle([0x7d, ...op.str("w"), ...tensorOps(4, 4), 0x73])),
      deflated("ok/data/0", new Uint8Array(new Float32Array([1.5, -2, 3, 4]).buffer)),
    ]));
    expect(Array.from(readTorchBin(p).get("w")!.data)).toEqual([1.5, -2, 3, 4]);
  });
});

describe(".bin reader: deeply nested pickles", () => {
  const N = 5000;
  const storage = Buffer.from(new Float32Array([42]).buffer);

  it(`a state dict nested ${N} deep loads without overflowing the call stack`, () => {
    const body: number[] = [0x7d];
    for (let i = 0; i < N; i++) body.push(...op.str("a"), 0x7d);
    body.push(...op.str("w"), ...tensorOps(1, 1), 0x73);
    for (let i = 0; i < N; i++) body.push(0x73);
    const p = writeFile("nested.bin", zipOf([{ name: "n/data.pkl", data: pickle(body) }, { name: "n/data/0", data: storage }]));
    const got = readTorchBin(p);
    expect([...got.keys()]).toEqual([`${"a.".repeat(N)}w`]);
    expect(Array.from(got.get(`${"a.".repeat(N)}w`)!.data)).toEqual([42]);
  });

  it(`a key that is a tuple nested ${N} deep is refused, naming the file and what keys may be`, () => {
    const body: number[] = [0x7d];
    for (let i = 0; i < N; i++) body.push(0x5d); // EMPTY_LIST
    for (let i = 0; i < N - 1; i++) body.push(0x61); // APPEND
    body.push(0x4e, 0x73); // None, SETITEM
    const p = writeFile("nested-key.bin", zipOf([{ name: "k/data.pkl", data: pickle(body) }]));
    expect(() => readTorchBin(p)).toThrow(`${p}: data.pkl: a key in the dict at "" is a tuple/list; allowed: strings (tensor names)`);
  });

  it("dicts shared many times over cannot multiply the names past the pickle's size", () => {
    // d0 = {"w": t}; d(k+1) = {"a": dk, "b": dk}: 2^40 names from a few hundred bytes
    const body: number[] = [];
    for (let k = 40; k >= 1; k--) body.push(0x7d, ...op.str("a")); // d40 = {"a": d39 ...
    body.push(0x7d, ...op.str("w"), ...tensorOps(1, 1), 0x73, 0x71, 0); // d0, memo 0
    for (let k = 1; k <= 40; k++) body.push(0x73, ...op.str("b"), 0x68, k - 1, 0x73, 0x71, k); // ... "b": BINGET d(k-1)}, memo k
    const p = writeFile("shared-dicts.bin", zipOf([{ name: "s/data.pkl", data: pickle(body) }, { name: "s/data/0", data: storage }]));
    expect(() => readTorchBin(p)).toThrow(new RegExp(`^${p}: data.pkl \\(\\d+ bytes\\) names more than \\d+ tensors through shared dicts; allowed: at most one per byte of the pickle`));
  });
});

// ---------------------------------------------------------------------------------------------------

describe("safetensors: int64 values beyond int32", () => {
  it("2^33+5 is refused, naming file, tensor, value and the allowed range; int32's own bounds load", () => {
    const p = path.join(tmp, "i64.safetensors");
    saveSafetensors(p, { ids: { dtype: "I64", shape: [3], data: new Float64Array([1, 2 ** 33 + 5, 3]) } });
    const msg = `${p}: tensor "ids" (I64 [3]) holds 8589934597 at element 1; allowed: the int32 range -2147483648..2147483647`;
    expect(() => readSafetensorsArrays(p)).toThrow(msg);
    expect(() => loadSafetensors(p)).toThrow(msg);
    const low = path.join(tmp, "i64-low.safetensors");
    saveSafetensors(low, { ids: { dtype: "I64", shape: [1], data: new Float64Array([-(2 ** 31) - 1]) } });
    expect(() => readSafetensorsArrays(low)).toThrow(`holds -2147483649 at element 0`);
    const edge = path.join(tmp, "i64-edge.safetensors");
    saveSafetensors(edge, { ids: { dtype: "I64", shape: [3], data: new Float64Array([-(2 ** 31), 2 ** 31 - 1, -5]) } });
    expect(Array.from(readSafetensorsArrays(edge).tensors.get("ids")!.data)).toEqual([-(2 ** 31), 2 ** 31 - 1, -5]);
  });
});

describe("config.json of another class", () => {
  it("UNet2DConditionModel.fromPretrained on a folder whose config says AutoencoderKL says so, naming the file", async () => {
    const dir = path.join(tmp, "vae-folder");
    fs.mkdirSync(dir);
    fs.copyFileSync(fixture("sd-tiny-pipe", "vae", "config.json"), path.join(dir, "config.json"));
    const e = await rejection(UNet2DConditionModel.fromPretrained(dir));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(`${path.join(dir, "config.json")}: "_class_name" is "AutoencoderKL", but UNet2DConditionModel.fromPretrained was called; allowed: "UNet2DConditionModel"`);
    expect(e.message).toContain("load it with AutoencoderKL.fromPretrained");
  });

  it("a pipeline folder whose unet/config.json says AutoencoderKL is refused before any model is built", async () => {
    const src = fixture("sd-tiny-pipe");
    const dir = path.join(tmp, "pipe-vae-as-unet");
    fs.mkdirSync(path.join(dir, "unet"), { recursive: true });
    for (const name of ["model_index.json", "vae", "text_encoder", "tokenizer", "scheduler"]) fs.symlinkSync(path.join(src, name), path.join(dir, name));
    fs.copyFileSync(path.join(src, "vae", "config.json"), path.join(dir, "unet", "config.json"));
    const e = await rejection(loadPipelineComponents(dir, ["unet", "vae", "text_encoder", "tokenizer", "scheduler"]));
    expect(e).toBeInstanceOf(ConfigError);
    expect(e.message).toContain(`${path.join(dir, "unet", "config.json")}: "_class_name" is "AutoencoderKL", but model_index.json lists "unet" as a UNet2DConditionModel; allowed: "UNet2DConditionModel"`);
  });

  it("a config of another class resolved for a model (fromConfig) records the class built, as diffusers", () => {
    expect(resolveConfig("UNet2DModel", { defaults: { in_channels: 3 } }, { _class_name: "AutoencoderKL", in_channels: 4 })._class_name).toBe("UNet2DModel");
  });

  it("a _class_name that is not a string is refused; a missing one (transformers configs) is accepted", () => {
    expect(() => checkConfigClass("/m/config.json", { _class_name: 3 as unknown as string }, "UNet2DModel"))
      .toThrow(`/m/config.json: "_class_name" is 3; allowed: a class name string such as "UNet2DModel"`);
    expect(() => checkConfigClass("/m/config.json", { hidden_size: 32 }, "CLIPTextModel")).not.toThrow();
  });
});

describe("Hub cache refs", () => {
  const COMMIT = "0123456789abcdef0123456789abcdef01234567";

  /** A cache of org/tiny whose snapshot has config.json, and a config.json planted outside the cache. */
  function cache(ref: string): { cacheDir: string; refFile: string } {
    const cacheDir = path.join(tmp, `cache-${Math.random().toString(36).slice(2)}`);
    const storage = path.join(cacheDir, "models--org--tiny");
    fs.mkdirSync(path.join(storage, "snapshots", COMMIT), { recursive: true });
    fs.writeFileSync(path.join(storage, "snapshots", COMMIT, "config.json"), "{}");
    fs.mkdirSync(path.join(tmp, "outside"), { recursive: true });
    fs.writeFileSync(path.join(tmp, "outside", "config.json"), '{"planted": true}');
    fs.mkdirSync(path.join(storage, "refs"));
    const refFile = path.join(storage, "refs", "main");
    fs.writeFileSync(refFile, ref);
    return { cacheDir, refFile };
  }

  it("a refs/main of ../../… is refused, naming the ref file, its content and what is allowed", async () => {
    const { cacheDir, refFile } = cache("../../../outside");
    const e = await rejection(hubFileDownload("org/tiny", "config.json", { cacheDir, localFilesOnly: true }));
    expect(e).toBeInstanceOf(HubError);
    expect(e.message).toContain(`${refFile} holds "../../../outside"; allowed: a 40-character lowercase hex commit hash`);
  });

  it("a revision that leads outside refs/ is refused; a good ref still loads", async () => {
    const { cacheDir } = cache(COMMIT);
    const e = await rejection(hubFileDownload("org/tiny", "config.json", { cacheDir, localFilesOnly: true, revision: "../../../outside" }));
    expect(e.message).toMatch(/^Revision "\.\.\/\.\.\/\.\.\/outside" leads outside .*refs; allowed: a branch or tag name, or a 40-hex commit hash/);
    const ok = await hubFileDownload("org/tiny", "config.json", { cacheDir, localFilesOnly: true });
    expect(ok).toBe(path.join(cacheDir, "models--org--tiny", "snapshots", COMMIT, "config.json"));
  });

  it("a Hub answering a commit or etag that is not a hex id is refused before anything is written", async () => {
    const offline = process.env.HF_HUB_OFFLINE;
    delete process.env.HF_HUB_OFFLINE;
    for (const [commit, etag, what] of [["../../evil", "abc", "commit"], [COMMIT, "../../evil", "ETag"]]) {
      const cacheDir = path.join(tmp, `cache-answer-${what}`);
      const fake = (async () => new Response(null, { status: 200, headers: { "X-Repo-Commit": commit, ETag: `"${etag}"`, "Content-Length": "2" } })) as unknown as typeof fetch;
      const e = await rejection(hubFileDownload("org/tiny", "config.json", { cacheDir, hubUrl: "https://hub.test", fetch: fake }));
      expect(e).toBeInstanceOf(HubError);
      expect(e.message).toContain(`${what} ${JSON.stringify("../../evil")}`);
      expect(fs.existsSync(path.join(cacheDir, "models--org--tiny", "snapshots"))).toBe(false);
    }
    if (offline !== undefined) process.env.HF_HUB_OFFLINE = offline;
  });
});
