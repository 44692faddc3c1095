#!/usr/bin/env node
// A rehearsal Hugging Face Hub cache: the two repos the lessons download, laid out exactly as huggingface_hub
// leaves a real download (so the kit loads them with HF_HUB_OFFLINE=1 HF_HUB_CACHE=<dir>), with the REAL config
// and tokenizer files and SEEDED RANDOM WEIGHTS OF THE REAL SIZES. Nothing is downloaded: there is no network here.
//
//   node scripts/rehearsal/snapshots.mjs [--cache DIR] [--repo ID]...   (default DIR: runs/rehearsal/hf-cache)
//   HF_HUB_OFFLINE=1 HF_HUB_CACHE=DIR npm run lesson -- 01
//
// Layout (huggingface_hub's, read by kernel-lib/src/hub/cache.ts):
//   DIR/models--<org>--<name>/blobs/<etag>              file contents; etag = sha256 of an LFS file (the weights),
//                                                      the git blob id sha1("blob <len>\0" + content) of a small file
//   DIR/models--<org>--<name>/snapshots/<commit>/<path> relative symlink to ../../blobs/<etag> (../../../ one folder down)
//   DIR/models--<org>--<name>/refs/main                 the commit sha (a fixed fake one per repo)
//   DIR/.locks/models--<org>--<name>/<etag>.lock         the empty lock files huggingface_hub leaves behind
//   DIR/models--<org>--<name>/.rehearsal-complete.json  ours: written last; a build without it is redone from scratch
//
// Repos:
//   stable-diffusion-v1-5/stable-diffusion-v1-5  model_index.json, scheduler/, tokenizer/, feature_extractor/ and every
//       config as on the Hub; unet/ vae/ text_encoder/ safety_checker/ weights as .safetensors (F32) and .fp16.safetensors
//       (the same values rounded to half, round-to-nearest-even as torch's .half()).
//   google/ddpm-cat-256  its old flat layout: config.json, scheduler_config.json, model_index.json at the top (no unet/
//       or scheduler/ folder: diffusers, and the kit's pipeline loader, fall back to the top level), and the weights as
//       diffusion_pytorch_model.bin in torch.save's zip format.
//
// Tensor names and torch shapes come from the kit's own models, built from the config without weights
// (new UNet2DConditionModel(config).namedParameters()): exactly what fromPretrained checks. Two deliberate
// differences follow the real files: the SD 1.5 VAE and the ddpm-cat-256 UNet were saved before diffusers renamed
// its attention blocks, so their attention projections are stored under the deprecated names (query, key, value,
// proj_attn), which the kit renames on load (models/convert-deprecated-attention.ts) as diffusers does; and the CLIP
// text encoder's file holds the int64 buffer text_model.embeddings.position_ids [1, 77] (transformers < 4.31 saved it),
// which the kit drops on load (CLIPTextModel.keysToIgnoreOnLoad).
//
// Values: each tensor has its own seeded stream (xoshiro128** + Box-Muller), seeded by the repo's seed and the
// tensor's path ("unet/conv_in.weight"), so its values do not depend on file order and rehearsalTensorValues()
// recomputes them. init "fan_in" -> N(0, 1/fan_in), fan_in = prod(torchShape[1:]); "normal" -> N(0, 1); "zeros"; "ones".
// Files are streamed (a few MiB in memory whatever their size), hashed while written into blobs/*.incomplete, then
// renamed to their sha256.
import { createHash, randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import * as zlib from "node:zlib";
import { fileURLToPath, pathToFileURL } from "node:url";

/** Bump when the bytes this script writes change: a cache built by another version is rebuilt. */
export const BUILDER_VERSION = 1;

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, "../..");
export const DEFAULT_CACHE_DIR = path.join(ROOT, "runs", "rehearsal", "hf-cache");
/** ../shared/fixtures beside the checkout, as the tests find it (KIT_FIXTURES overrides). */
const FIXTURES = process.env.KIT_FIXTURES ?? path.resolve(ROOT, "..", "shared", "fixtures");
const CONFIGS = path.join(FIXTURES, "configs");
const MARKER = ".rehearsal-complete.json";

export const SD15 = "stable-diffusion-v1-5/stable-diffusion-v1-5";
export const DDPM_CAT = "google/ddpm-cat-256";

const cfg = (...p) => path.join(CONFIGS, ...p);

/**
 * The repos: small files copied from the fixtures, weights generated from a config. `commit` is a fixed fake sha
 * (sha1 of a label, so it looks like one), `seed` seeds every tensor of the repo.
 */
const REPOS = {
  [SD15]: {
    repoId: SD15,
    commit: sha1Hex(`rehearsal snapshot of ${SD15}`),
    seed: 1505,
    files: {
      "model_index.json": cfg("stable-diffusion-v1-5", "model_index.json"),
      "scheduler/scheduler_config.json": cfg("stable-diffusion-v1-5", "scheduler", "scheduler_config.json"),
      "text_encoder/config.json": cfg("stable-diffusion-v1-5", "text_encoder", "config.json"),
      "unet/config.json": cfg("stable-diffusion-v1-5", "unet", "config.json"),
      "vae/config.json": cfg("stable-diffusion-v1-5", "vae", "config.json"),
      "tokenizer/tokenizer_config.json": cfg("stable-diffusion-v1-5", "tokenizer", "tokenizer_config.json"),
      "tokenizer/special_tokens_map.json": cfg("stable-diffusion-v1-5", "tokenizer", "special_tokens_map.json"),
      // The fixtures keep vocab.json / merges.txt only under stable-diffusion-inpainting: it is the same CLIP ViT-L/14
      // tokenizer (openai/clip-vit-large-patch14) that every SD 1.x repo ships.
      "tokenizer/vocab.json": cfg("stable-diffusion-inpainting", "tokenizer", "vocab.json"),
      "tokenizer/merges.txt": cfg("stable-diffusion-inpainting", "tokenizer", "merges.txt"),
      "feature_extractor/preprocessor_config.json": cfg("stable-diffusion-v1-5", "feature_extractor", "preprocessor_config.json"),
      // CompVis/stable-diffusion-safety-checker's config, the same file in every SD 1.x repo
      "safety_checker/config.json": cfg("stable-diffusion-inpainting", "safety_checker", "config.json"),
    },
    weights: [
      { model: "UNet2DConditionModel", config: "unet/config.json", format: "safetensors",
        files: { F32: "unet/diffusion_pytorch_model.safetensors", F16: "unet/diffusion_pytorch_model.fp16.safetensors" } },
      { model: "AutoencoderKL", config: "vae/config.json", format: "safetensors", deprecatedAttentionNames: true,
        files: { F32: "vae/diffusion_pytorch_model.safetensors", F16: "vae/diffusion_pytorch_model.fp16.safetensors" } },
      { model: "CLIPTextModel", config: "text_encoder/config.json", format: "safetensors", positionIds: "text_model.embeddings.position_ids",
        files: { F32: "text_encoder/model.safetensors", F16: "text_encoder/model.fp16.safetensors" } },
      // The kit never loads the safety checker: the point is a file of the real size (~1.22 GB) holding random F32
      // tensors under plausible names (StableDiffusionSafetyChecker's CLIP ViT-L/14 vision tower, built from its
      // config; the exact names do not matter here).
      { model: "StableDiffusionSafetyChecker", config: "safety_checker/config.json", format: "safetensors",
        files: { F32: "safety_checker/model.safetensors", F16: "safety_checker/model.fp16.safetensors" } },
    ],
  },
  [DDPM_CAT]: {
    repoId: DDPM_CAT,
    commit: sha1Hex(`rehearsal snapshot of ${DDPM_CAT}`),
    seed: 256,
    files: {
      "config.json": cfg("ddpm-cat-256", "config.json"),
      "scheduler_config.json": cfg("ddpm-cat-256", "scheduler_config.json"),
      "model_index.json": {
        _class_name: "DDPMPipeline",
        _diffusers_version: "0.1.1",
        scheduler: ["diffusers", "DDPMScheduler"],
        unet: ["diffusers", "UNet2DModel"],
      },
    },
    weights: [
      { model: "UNet2DModel", config: "config.json", format: "bin", deprecatedAttentionNames: true,
        files: { F32: "diffusion_pytorch_model.bin" } },
    ],
  },
};

export const REHEARSAL_REPOS = Object.keys(REPOS);

// ---------------------------------------------------------------------------------------------------------------
// hashing helpers

function sha1Hex(text) {
  return createHash("sha1").update(text).digest("hex");
}

/** The git blob id: the etag the Hub gives a file that is not stored with LFS. */
export function gitBlobSha1(bytes) {
  return createHash("sha1").update(`blob ${bytes.length}\0`).update(bytes).digest("hex");
}

const crc32 = typeof zlib.crc32 === "function" ? (buf, prev) => zlib.crc32(buf, prev) : crc32Js;
let CRC_TABLE = null;
function crc32Js(buf, prev = 0) {
  if (!CRC_TABLE) {
    CRC_TABLE = new Int32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      CRC_TABLE[n] = c;
    }
  }
  let c = ~prev;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

// ---------------------------------------------------------------------------------------------------------------
// seeded values

const TWO_PI = 2 * Math.PI;
const INV_2_32 = 2 ** -32;

/** xoshiro128** (Blackman & Vigna) with Box-Muller normals; the odd value of a pair is kept for the next call. */
class NormalStream {
  constructor(seedBytes) {
    this.s = new Uint32Array(4);
    for (let i = 0; i < 4; i++) this.s[i] = seedBytes.readUInt32LE(4 * i);
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
    this.spare = 0;
    this.hasSpare = false;
  }

  /** out[0..n) = N(0, std^2) draws (rounded to float32 by the array). */
  fill(out, n, std) {
    let a = this.s[0] | 0, b = this.s[1] | 0, c = this.s[2] | 0, d = this.s[3] | 0;
    let i = 0;
    if (this.hasSpare && n > 0) {
      out[i++] = this.spare * std;
      this.hasSpare = false;
    }
    while (i < n) {
      // two xoshiro128** outputs
      let r = Math.imul(b, 5);
      const x1 = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
      let t = b << 9;
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
      r = Math.imul(b, 5);
      const x2 = Math.imul((r << 7) | (r >>> 25), 9) >>> 0;
      t = b << 9;
      c ^= a; d ^= b; b ^= c; a ^= d; c ^= t; d = (d << 11) | (d >>> 21);
      const u1 = (x1 + 1) * INV_2_32; // (0, 1]
      const rad = Math.sqrt(-2 * Math.log(u1));
      const th = TWO_PI * x2 * INV_2_32;
      out[i++] = rad * Math.cos(th) * std;
      if (i < n) out[i++] = rad * Math.sin(th) * std;
      else { this.spare = rad * Math.sin(th); this.hasSpare = true; }
    }
    this.s[0] = a; this.s[1] = b; this.s[2] = c; this.s[3] = d;
  }
}

function tensorStream(repoSeed, key) {
  return new NormalStream(createHash("sha256").update(`rehearsal/${repoSeed}/${key}`).digest());
}

/** Standard deviation of an init ("fan_in": 1/sqrt(prod(torchShape[1:])), "normal": 1), null for the constants. */
export function initStd(init, torchShape) {
  if (init === "fan_in") return 1 / Math.sqrt(torchShape.slice(1).reduce((a, b) => a * b, 1));
  if (init === "normal") return 1;
  if (init === "zeros" || init === "ones") return null;
  throw new Error(`unknown init "${init}"`);
}

const CHUNK = 1 << 20; // elements generated at a time

/** Streams a tensor's values chunk by chunk: onChunk(Float32Array view) in order. */
function generate(repoSeed, t, onChunk) {
  const n = t.numel;
  const buf = new Float32Array(Math.min(CHUNK, Math.max(n, 1)));
  const std = initStd(t.init, t.torchShape);
  if (std === null) {
    buf.fill(t.init === "ones" ? 1 : 0);
    for (let done = 0; done < n; done += buf.length) onChunk(buf.subarray(0, Math.min(buf.length, n - done)));
    return;
  }
  const stream = tensorStream(repoSeed, t.key);
  for (let done = 0; done < n; done += buf.length) {
    const m = Math.min(buf.length, n - done);
    stream.fill(buf, m, std);
    onChunk(buf.subarray(0, m));
  }
}

/**
 * The first `count` float32 values this script writes for a tensor: `key` is its path in the repo's weights folder
 * plus the kit's parameter name ("unet/conv_in.weight", "conv_in.weight" for a top-level file), `init` and
 * `torchShape` as the kit's Parameter has them.
 */
export function rehearsalTensorValues(repoId, key, { torchShape, init, count }) {
  const repo = REPOS[repoId];
  if (!repo) throw new Error(`no rehearsal repo "${repoId}" (known: ${REHEARSAL_REPOS.join(", ")})`);
  const numel = torchShape.reduce((a, b) => a * b, 1);
  const n = Math.min(count ?? numel, numel);
  const out = new Float32Array(n);
  let o = 0;
  generate(repo.seed, { key, init, torchShape, numel: n }, (chunk) => { out.set(chunk, o); o += chunk.length; });
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// which tensors a weights file holds

const DEPRECATED_FROM = /^(.*(?:^|\.)attentions\.\d+)\.(to_q|to_k|to_v|to_out\.0)\.(weight|bias)$/;
const DEPRECATED_NAME = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" };

/** The pre-0.13 diffusers name of an attention key of UNet2DModel / AutoencoderKL (the inverse of the kit's rename). */
function deprecatedName(name) {
  const m = DEPRECATED_FROM.exec(name);
  return m ? `${m[1]}.${DEPRECATED_NAME[m[2]]}.${m[3]}` : name;
}

/** StableDiffusionSafetyChecker's tensors (transformers' CLIPVisionModel under vision_model, plus its concept heads). */
function safetyCheckerTensors(config) {
  const v = config.vision_config ?? {};
  const hidden = v.hidden_size ?? 768, inter = v.intermediate_size ?? 3072, layers = v.num_hidden_layers ?? 12;
  const patch = v.patch_size ?? 32, image = v.image_size ?? 224, channels = v.num_channels ?? 3;
  const proj = config.projection_dim ?? 512;
  const positions = (image / patch) ** 2 + 1;
  const out = [];
  const add = (name, torchShape, init) => out.push({ name, torchShape, init });
  const linear = (name, o, i) => { add(`${name}.weight`, [o, i], "fan_in"); add(`${name}.bias`, [o], "zeros"); };
  const norm = (name) => { add(`${name}.weight`, [hidden], "ones"); add(`${name}.bias`, [hidden], "zeros"); };
  const vm = "vision_model.vision_model.";
  add(`${vm}embeddings.class_embedding`, [hidden], "normal");
  add(`${vm}embeddings.patch_embedding.weight`, [hidden, channels, patch, patch], "fan_in");
  add(`${vm}embeddings.position_embedding.weight`, [positions, hidden], "normal");
  add(`${vm}pre_layrnorm.weight`, [hidden], "ones"); // sic: transformers' spelling
  add(`${vm}pre_layrnorm.bias`, [hidden], "zeros");
  for (let l = 0; l < layers; l++) {
    const p = `${vm}encoder.layers.${l}.`;
    for (const x of ["k_proj", "v_proj", "q_proj", "out_proj"]) linear(`${p}self_attn.${x}`, hidden, hidden);
    norm(`${p}layer_norm1`);
    linear(`${p}mlp.fc1`, inter, hidden);
    linear(`${p}mlp.fc2`, hidden, inter);
    norm(`${p}layer_norm2`);
  }
  norm(`${vm}post_layernorm`);
  add("visual_projection.weight", [proj, hidden], "fan_in");
  add("concept_embeds", [17, proj], "normal");
  add("special_care_embeds", [3, proj], "normal");
  add("concept_embeds_weights", [17], "ones");
  add("special_care_embeds_weights", [3], "ones");
  return { tensors: out, positionIds: { name: `${vm}embeddings.position_ids`, length: positions } };
}

/**
 * The tensors of one weights entry, in the model's state_dict order: { name (as stored), key (seed key), torchShape,
 * init, numel, dtype, values? } (dtype "I64" with `values` for position_ids).
 */
function weightTensors(w, configJson, kit) {
  const dir = w.files.F32.includes("/") ? w.files.F32.slice(0, w.files.F32.lastIndexOf("/") + 1) : "";
  let list;
  let positionIds = null;
  if (w.model === "StableDiffusionSafetyChecker") {
    const sc = safetyCheckerTensors(configJson);
    list = sc.tensors;
    positionIds = sc.positionIds;
  } else {
    const Cls = kit[w.model];
    if (typeof Cls !== "function") throw new Error(`the kit has no model class ${w.model}`);
    const model = new Cls(configJson); // builds the module tree only: no tensor is allocated
    list = model.namedParameters().map(([name, p]) => ({ name, torchShape: [...p.torchShape], init: p.init }));
    if (w.positionIds) positionIds = { name: w.positionIds, length: configJson.max_position_embeddings ?? 77 };
  }
  const out = list.map((t) => ({
    name: w.deprecatedAttentionNames ? deprecatedName(t.name) : t.name,
    key: `${dir}${t.name}`,
    torchShape: t.torchShape,
    init: t.init,
    numel: t.torchShape.reduce((a, b) => a * b, 1),
    dtype: "F32",
  }));
  if (positionIds) {
    const values = new BigInt64Array(positionIds.length);
    for (let i = 0; i < positionIds.length; i++) values[i] = BigInt(i);
    out.push({ name: positionIds.name, key: `${dir}${positionIds.name}`, torchShape: [1, positionIds.length], init: null, numel: positionIds.length, dtype: "I64", values });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------
// streamed blob files

class BlobWriter {
  constructor(blobsDir) {
    this.blobsDir = blobsDir;
    this.tmp = path.join(blobsDir, `${randomBytes(8).toString("hex")}.incomplete`);
    this.fd = fs.openSync(this.tmp, "w");
    this.hash = createHash("sha256");
    this.buf = Buffer.allocUnsafe(8 << 20);
    this.used = 0;
    this.size = 0;
  }

  /** Appends bytes (any ArrayBufferView). */
  write(view) {
    let src = view instanceof Uint8Array ? view : new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
    this.size += src.length;
    while (src.length > 0) {
      const n = Math.min(src.length, this.buf.length - this.used);
      this.buf.set(src.subarray(0, n), this.used);
      this.used += n;
      src = src.subarray(n);
      if (this.used === this.buf.length) this.flush();
    }
  }

  flush() {
    const data = this.buf.subarray(0, this.used);
    this.hash.update(data);
    let done = 0;
    while (done < data.length) done += fs.writeSync(this.fd, data, done, data.length - done);
    this.used = 0;
  }

  /** Closes the file and renames it to blobs/<sha256>; returns { etag, size }. */
  finish() {
    this.flush();
    fs.closeSync(this.fd);
    const etag = this.hash.digest("hex");
    fs.renameSync(this.tmp, path.join(this.blobsDir, etag));
    return { etag, size: this.size };
  }

  abort() {
    try { fs.closeSync(this.fd); } catch { /* closed */ }
    fs.rmSync(this.tmp, { force: true });
  }
}

// safetensors' Dtype enum order: its writer sorts tensors by dtype (larger first), then by name.
const DTYPE_RANK = { BOOL: 0, U8: 1, I8: 2, I16: 5, U16: 6, F16: 7, BF16: 8, I32: 9, U32: 10, F32: 11, F64: 12, I64: 13, U64: 14 };
const DTYPE_BYTES = { F32: 4, F16: 2, I64: 8 };

/** safetensors' file order (safetensors.torch.save_file): dtype rank descending, then name. */
function safetensorsOrder(tensors) {
  return [...tensors].sort((x, y) => DTYPE_RANK[y.dtype] - DTYPE_RANK[x.dtype] || (x.name < y.name ? -1 : x.name > y.name ? 1 : 0));
}

function safetensorsHeader(ordered, floatDtype) {
  const header = { __metadata__: { format: "pt" } };
  let pos = 0;
  for (const t of ordered) {
    const dtype = t.dtype === "I64" ? "I64" : floatDtype;
    const bytes = t.numel * DTYPE_BYTES[dtype];
    header[t.name] = { dtype, shape: t.torchShape, data_offsets: [pos, pos + bytes] };
    pos += bytes;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (Buffer.byteLength(json) % 8)) % 8); // data 8-byte aligned, as the spec allows
  const h = Buffer.from(json, "utf8");
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(h.length));
  return Buffer.concat([len, h]);
}

/** Writes the F32 file and (if asked) its F16 twin in one pass over the values: [{ etag, size }] per output. */
function writeSafetensorsFiles(blobsDir, tensors, repoSeed, floatDtypes, kit) {
  const ordered = safetensorsOrder(tensors);
  const writers = floatDtypes.map(() => new BlobWriter(blobsDir));
  try {
    floatDtypes.forEach((dt, i) => writers[i].write(safetensorsHeader(ordered, dt)));
    for (const t of ordered) {
      if (t.dtype === "I64") {
        for (const w of writers) w.write(t.values);
        continue;
      }
      generate(repoSeed, t, (chunk) => {
        floatDtypes.forEach((dt, i) => writers[i].write(dt === "F32" ? chunk : kit.float32ToFloat16(chunk)));
      });
    }
    return writers.map((w) => w.finish());
  } catch (e) {
    for (const w of writers) w.abort();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// torch.save's zip format (what kernel-lib/src/io/torch-bin.ts reads; torch.load reads it too)

/**
 * data.pkl as CPython's pickle (protocol 2, torch.save's default) writes a state dict (an OrderedDict of tensors,
 * without its `_metadata` attribute): every new object memoized with BINPUT / LONG_BINPUT, repeats as BINGET, tuples
 * of 1-3 items as TUPLE1-3, dict items in batches of 1000 (MARK ... SETITEMS). Each tensor is
 * torch._utils._rebuild_tensor_v2(storage, 0, size, stride, False, OrderedDict()) with the storage as the persistent
 * id ("storage", torch.FloatStorage, "<key>", "cpu", numel).
 */
function statePickle(tensors) {
  const out = [];
  const bytes = (...b) => { for (const x of b) out.push(x); };
  const u32 = (v) => bytes(v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff);
  let memoSize = 0;
  const memo = new Map(); // shared objects: globals and interned strings
  const put = () => {
    const i = memoSize++;
    if (i < 256) bytes(0x71, i); else { bytes(0x72); u32(i); }
    return i;
  };
  const get = (i) => { if (i < 256) bytes(0x68, i); else { bytes(0x6a); u32(i); } };
  const str = (s) => { const b = Buffer.from(s, "utf8"); bytes(0x58); u32(b.length); for (const x of b) out.push(x); return put(); };
  const shared = (id, write) => { if (memo.has(id)) get(memo.get(id)); else memo.set(id, write()); };
  const global = (module, name) => shared(`g:${module}.${name}`, () => { for (const x of Buffer.from(`c${module}\n${name}\n`, "latin1")) out.push(x); return put(); });
  const internedStr = (s) => shared(`s:${s}`, () => str(s));
  const int = (v) => {
    if (v >= 0 && v <= 0xff) bytes(0x4b, v);
    else if (v >= 0 && v <= 0xffff) bytes(0x4d, v & 0xff, v >> 8);
    else if (v >= -0x80000000 && v <= 0x7fffffff) { bytes(0x4a); u32(v); }
    else {
      let x = BigInt(v);
      const b = [];
      for (;;) {
        b.push(Number(x & 0xffn));
        x >>= 8n;
        if ((x === 0n && !(b[b.length - 1] & 0x80)) || (x === -1n && b[b.length - 1] & 0x80)) break;
      }
      bytes(0x8a, b.length, ...b);
    }
  };
  const intTuple = (items) => {
    if (items.length === 0) return bytes(0x29);
    if (items.length <= 3) { items.forEach(int); bytes(0x84 + items.length); }
    else { bytes(0x28); items.forEach(int); bytes(0x74); }
    put();
  };
  const emptyOrderedDict = () => { global("collections", "OrderedDict"); bytes(0x29, 0x52); put(); };

  bytes(0x80, 2); // PROTO 2
  emptyOrderedDict(); // the state dict
  for (let i = 0; i < tensors.length; i += 1000) {
    const batch = tensors.slice(i, i + 1000);
    if (batch.length > 1) bytes(0x28); // MARK
    for (const t of batch) {
      str(t.name);
      global("torch._utils", "_rebuild_tensor_v2");
      bytes(0x28); // MARK: the 6 arguments
      bytes(0x28); // MARK: the persistent id
      internedStr("storage");
      global("torch", "FloatStorage");
      str(t.storageKey);
      internedStr("cpu");
      int(t.numel);
      bytes(0x74); put(); // TUPLE
      bytes(0x51); // BINPERSID
      int(0); // storage offset
      intTuple(t.torchShape);
      const stride = new Array(t.torchShape.length);
      for (let k = t.torchShape.length - 1, acc = 1; k >= 0; k--) { stride[k] = acc; acc *= t.torchShape[k]; }
      intTuple(stride);
      bytes(0x89); // NEWFALSE: requires_grad
      emptyOrderedDict(); // backward hooks
      bytes(0x74); put(); // TUPLE
      bytes(0x52); put(); // REDUCE
    }
    bytes(batch.length > 1 ? 0x75 : 0x73); // SETITEMS / SETITEM
  }
  bytes(0x2e); // STOP
  return Buffer.from(out);
}

/**
 * A zip as torch's PyTorchStreamWriter (miniz) writes it: STORED entries `<archive>/<record>`, each local header with
 * zero crc/sizes, flags 0x0808 (a data descriptor follows the data) and an extra field "FB" + u16 n + n bytes of "Z"
 * that puts the data on a 64-byte boundary; the central directory; a ZIP64 end record and locator (torch always
 * writes them) before the classic end record. `records` are { name, write(sink) } with sink(bytes) streaming the data.
 */
function writeTorchZip(writer, archive, records, kit) {
  const central = [];
  for (const r of records) {
    const name = Buffer.from(`${archive}/${r.name}`, "utf8");
    const offset = writer.size;
    const start = offset + 30 + name.length + 4;
    const pad = (64 - (start % 64)) % 64;
    const lh = Buffer.alloc(30 + name.length + 4 + pad, 0x5a);
    lh.writeUInt32LE(0x04034b50, 0);
    lh.writeUInt16LE(0, 4); // version needed
    lh.writeUInt16LE(0x0808, 6); // data descriptor, UTF-8 names
    lh.writeUInt16LE(0, 8); // STORED
    lh.writeUInt32LE(0, 10); // time, date
    lh.writeUInt32LE(0, 14); // crc (in the data descriptor)
    lh.writeUInt32LE(0, 18);
    lh.writeUInt32LE(0, 22);
    lh.writeUInt16LE(name.length, 26);
    lh.writeUInt16LE(4 + pad, 28);
    name.copy(lh, 30);
    lh.write("FB", 30 + name.length, "latin1");
    lh.writeUInt16LE(pad, 30 + name.length + 2);
    writer.write(lh);
    let crc = 0;
    let size = 0;
    r.write((chunk) => {
      const b = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      crc = crc32(b, crc);
      size += b.length;
      writer.write(b);
    });
    if (size >= 0xffffffff || offset >= 0xffffffff) throw new Error(`${archive}/${r.name}: ZIP64 entries are not written by this script`);
    const dd = Buffer.alloc(16);
    dd.writeUInt32LE(0x08074b50, 0);
    dd.writeUInt32LE(crc >>> 0, 4);
    dd.writeUInt32LE(size, 8);
    dd.writeUInt32LE(size, 12);
    writer.write(dd);
    const ch = Buffer.alloc(46 + name.length);
    ch.writeUInt32LE(0x02014b50, 0);
    ch.writeUInt16LE(0, 4); // version made by
    ch.writeUInt16LE(0, 6); // version needed
    ch.writeUInt16LE(0x0808, 8);
    ch.writeUInt16LE(0, 10);
    ch.writeUInt32LE(crc >>> 0, 16);
    ch.writeUInt32LE(size, 20);
    ch.writeUInt32LE(size, 24);
    ch.writeUInt16LE(name.length, 28);
    ch.writeUInt32LE(offset, 42);
    name.copy(ch, 46);
    central.push(ch);
  }
  const cdOffset = writer.size;
  const cd = Buffer.concat(central);
  writer.write(cd);
  writer.write(kit.zipEndRecords(records.length, cd.length, cdOffset));
}

/** A state dict of F32 tensors as torch.save(state_dict, f) writes it: records data.pkl, byteorder, data/<key>, version. */
function writeTorchBinFile(blobsDir, tensors, repoSeed, kit, archive = "archive") {
  if (tensors.some((t) => t.dtype !== "F32")) throw new Error("the .bin writer writes F32 tensors only");
  const keyed = tensors.map((t, i) => ({ ...t, storageKey: String(i) }));
  const pkl = statePickle(keyed);
  const records = [
    { name: "data.pkl", write: (sink) => sink(pkl) },
    { name: "byteorder", write: (sink) => sink(Buffer.from("little")) },
    // torch writes the storages in the string order of their keys ("0", "1", "10", "100", ...)
    ...[...keyed].sort((x, y) => (x.storageKey < y.storageKey ? -1 : 1))
      .map((t) => ({ name: `data/${t.storageKey}`, write: (sink) => generate(repoSeed, t, sink) })),
    { name: "version", write: (sink) => sink(Buffer.from("3\n")) },
  ];
  const writer = new BlobWriter(blobsDir);
  try {
    writeTorchZip(writer, archive, records, kit);
    return writer.finish();
  } catch (e) {
    writer.abort();
    throw e;
  }
}

// ---------------------------------------------------------------------------------------------------------------
// the cache

function repoFolderName(repoId) {
  return `models--${repoId.split("/").join("--")}`;
}

function linkSnapshot(storage, commit, relPath, etag) {
  const pointer = path.join(storage, "snapshots", commit, ...relPath.split("/"));
  fs.mkdirSync(path.dirname(pointer), { recursive: true });
  fs.rmSync(pointer, { force: true });
  fs.symlinkSync(path.relative(path.dirname(pointer), path.join(storage, "blobs", etag)), pointer);
}

/** Small file contents: a fixture path, an object (written as diffusers' save_config does: indent 2 + newline), or text. */
function smallFileBytes(source) {
  if (Buffer.isBuffer(source) || source instanceof Uint8Array) return Buffer.from(source);
  if (typeof source === "object" && source !== null) return Buffer.from(`${JSON.stringify(source, null, 2)}\n`);
  if (typeof source === "string" && fs.existsSync(source)) return fs.readFileSync(source);
  throw new Error(`rehearsal file source ${JSON.stringify(source)} is neither an existing file nor an object`);
}

function readMarker(storage) {
  try {
    return JSON.parse(fs.readFileSync(path.join(storage, MARKER), "utf8"));
  } catch {
    return null;
  }
}

function human(bytes) {
  return bytes >= 1e9 ? `${(bytes / 1e9).toFixed(2)} GB` : bytes >= 1e6 ? `${(bytes / 1e6).toFixed(1)} MB` : `${(bytes / 1e3).toFixed(1)} kB`;
}

/** Resolves a repo's files and tensor lists (cheap: no values), with `configs` overrides applied. */
function planRepo(repo, overrides, kit) {
  const small = new Map();
  for (const [p, source] of Object.entries(repo.files)) small.set(p, smallFileBytes(source));
  for (const [p, source] of Object.entries(overrides ?? {})) small.set(p, smallFileBytes(source));
  const weights = repo.weights.map((w) => {
    const bytes = small.get(w.config);
    if (!bytes) throw new Error(`${repo.repoId}: ${w.model} needs ${w.config}, which is not among the repo's files`);
    return { ...w, tensors: weightTensors(w, JSON.parse(bytes.toString("utf8")), kit) };
  });
  const digest = createHash("sha256");
  digest.update(JSON.stringify({ builder: BUILDER_VERSION, repoId: repo.repoId, commit: repo.commit, seed: repo.seed }));
  for (const [p, b] of small) digest.update(`${p}\0${gitBlobSha1(b)}\0`);
  for (const w of weights) {
    digest.update(JSON.stringify([w.files, w.format, w.tensors.map((t) => [t.name, t.key, t.torchShape, t.init, t.dtype])]));
  }
  return { small, weights, digest: digest.digest("hex") };
}

async function loadKit() {
  const dist = (f) => import(pathToFileURL(path.join(ROOT, "kernel-lib", "dist", f)).href);
  // zipEndRecords is internal to the kit (its torch.save reader's writer side): taken by path, as the tests do
  const [kit, { zipEndRecords }] = await Promise.all([dist("index.js"), dist("io/torch-bin.js")]);
  return { ...kit, zipEndRecords };
}

/**
 * Builds (or completes) the rehearsal cache in `cacheDir`. Idempotent: a repo whose marker says it was built by this
 * BUILDER_VERSION from the same files and tensor lists, and whose snapshot files all resolve, is skipped; any other
 * state of a repo this script made (an interrupted or outdated build) is removed and built again. A repo folder that
 * this script did not make (a real download: its refs/main names another commit) is never touched: that throws.
 *
 * Options:
 *   log      (message) => void, progress lines (default: none)
 *   repos    repo ids to build, a subset of REHEARSAL_REPOS (default: all)
 *   configs  { [repoId]: { [path in repo]: fixture file path | object (written as JSON) | Buffer } }: replaces or adds
 *            small files; the weights follow the (replaced) configs, so tiny configs give tiny weights (tests)
 *   kit      the kernel-lib module to build models with (default: kernel-lib/dist/index.js; tests pass the sources):
 *            needs the model classes and float32ToFloat16
 *
 * Returns { cacheDir, repos: [{ repoId, commit, storage, built, seconds, files: [{ path, etag, size, lfs }] }] }.
 */
export async function buildRehearsalCache(cacheDir = DEFAULT_CACHE_DIR, { log = () => {}, repos, configs = {}, kit } = {}) {
  const root = path.resolve(cacheDir);
  const ids = repos ?? REHEARSAL_REPOS;
  for (const id of ids) if (!REPOS[id]) throw new Error(`no rehearsal repo "${id}" (known: ${REHEARSAL_REPOS.join(", ")})`);
  for (const id of Object.keys(configs)) if (!REPOS[id]) throw new Error(`configs override for unknown repo "${id}"`);
  const K = kit ?? (await loadKit());
  fs.mkdirSync(root, { recursive: true });
  const summary = { cacheDir: root, repos: [] };
  for (const id of ids) summary.repos.push(buildRepo(root, REPOS[id], configs[id], K, log));
  return summary;
}

function buildRepo(root, repo, overrides, kit, log) {
  const t0 = Date.now();
  const storage = path.join(root, repoFolderName(repo.repoId));
  const locks = path.join(root, ".locks", repoFolderName(repo.repoId));
  const plan = planRepo(repo, overrides, kit);
  const marker = readMarker(storage);
  const paths = [...plan.small.keys(), ...plan.weights.flatMap((w) => Object.values(w.files))];
  if (marker && marker.builder === BUILDER_VERSION && marker.digest === plan.digest && marker.commit === repo.commit &&
      paths.every((p) => fs.existsSync(path.join(storage, "snapshots", repo.commit, ...p.split("/"))))) {
    log(`${repo.repoId}: complete (built ${marker.builtAt} by builder v${marker.builder}), skipped`);
    return { repoId: repo.repoId, commit: repo.commit, storage, built: false, seconds: 0, files: marker.files };
  }
  if (fs.existsSync(storage)) {
    let ref = null;
    try { ref = fs.readFileSync(path.join(storage, "refs", "main"), "utf8").trim(); } catch { /* none */ }
    if (!marker && ref !== null && ref !== repo.commit) {
      throw new Error(`${storage} holds ${repo.repoId} at commit ${ref}, not a rehearsal build (${repo.commit}): refusing to overwrite it; pick another cache folder`);
    }
    log(`${repo.repoId}: ${marker ? `outdated build (builder v${marker.builder})` : "incomplete build"}, removing it`);
    fs.rmSync(storage, { recursive: true, force: true });
    fs.rmSync(locks, { recursive: true, force: true });
  }
  const blobs = path.join(storage, "blobs");
  fs.mkdirSync(blobs, { recursive: true });
  fs.mkdirSync(locks, { recursive: true });
  const files = [];
  const record = (relPath, etag, size, lfs) => {
    linkSnapshot(storage, repo.commit, relPath, etag);
    fs.writeFileSync(path.join(locks, `${etag}.lock`), "");
    files.push({ path: relPath, etag, size, lfs });
  };
  for (const [relPath, bytes] of plan.small) {
    const etag = gitBlobSha1(bytes);
    const tmp = path.join(blobs, `${randomBytes(8).toString("hex")}.incomplete`);
    fs.writeFileSync(tmp, bytes);
    fs.renameSync(tmp, path.join(blobs, etag));
    record(relPath, etag, bytes.length, false);
  }
  for (const w of plan.weights) {
    const t1 = Date.now();
    const params = w.tensors.reduce((s, t) => s + (t.dtype === "F32" ? t.numel : 0), 0);
    if (w.format === "bin") {
      const r = writeTorchBinFile(blobs, w.tensors, repo.seed, kit);
      record(w.files.F32, r.etag, r.size, true);
      log(`${repo.repoId}: ${w.files.F32} ${human(r.size)} (${w.tensors.length} tensors, ${(params / 1e6).toFixed(1)} M parameters) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    } else {
      const dtypes = Object.keys(w.files); // F32 [, F16]
      const results = writeSafetensorsFiles(blobs, w.tensors, repo.seed, dtypes, kit);
      dtypes.forEach((dt, i) => record(w.files[dt], results[i].etag, results[i].size, true));
      log(`${repo.repoId}: ${dtypes.map((dt, i) => `${w.files[dt]} ${human(results[i].size)}`).join(", ")} (${w.tensors.length} tensors, ${(params / 1e6).toFixed(1)} M parameters) in ${((Date.now() - t1) / 1000).toFixed(1)} s`);
    }
  }
  fs.mkdirSync(path.join(storage, "refs"), { recursive: true });
  fs.writeFileSync(path.join(storage, "refs", "main"), repo.commit);
  const seconds = (Date.now() - t0) / 1000;
  const doc = { builder: BUILDER_VERSION, repoId: repo.repoId, commit: repo.commit, seed: repo.seed, digest: plan.digest, builtAt: new Date().toISOString(), seconds, files };
  const tmpMarker = path.join(storage, `${MARKER}.incomplete`);
  fs.writeFileSync(tmpMarker, `${JSON.stringify(doc, null, 2)}\n`);
  fs.renameSync(tmpMarker, path.join(storage, MARKER));
  log(`${repo.repoId}: done in ${seconds.toFixed(1)} s (${human(files.reduce((s, f) => s + f.size, 0))})`);
  return { repoId: repo.repoId, commit: repo.commit, storage, built: true, seconds, files };
}

// ---------------------------------------------------------------------------------------------------------------
// CLI

async function main(argv) {
  let cacheDir = DEFAULT_CACHE_DIR;
  const repos = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = (flag) => {
      if (a.startsWith(`${flag}=`)) return a.slice(flag.length + 1);
      if (i + 1 >= argv.length) throw new Error(`${flag} needs a value`);
      return argv[++i];
    };
    if (a === "--cache" || a.startsWith("--cache=")) cacheDir = path.resolve(value("--cache"));
    else if (a === "--repo" || a.startsWith("--repo=")) repos.push(value("--repo"));
    else if (a === "-h" || a === "--help") {
      console.log(`usage: node scripts/rehearsal/snapshots.mjs [--cache DIR] [--repo ID]...\n` +
        `Builds a Hugging Face cache holding ${REHEARSAL_REPOS.join(" and ")} with real configs and seeded random\n` +
        `weights of the real sizes (~9 GB). Default DIR: ${path.relative(process.cwd(), DEFAULT_CACHE_DIR) || "."}`);
      return;
    } else throw new Error(`unknown argument ${a} (see --help)`);
  }
  const t0 = Date.now();
  const s = await buildRehearsalCache(cacheDir, { log: (m) => console.log(m), repos: repos.length ? repos : undefined });
  const total = s.repos.reduce((acc, r) => acc + r.files.reduce((x, f) => x + f.size, 0), 0);
  console.log(`cache ready in ${((Date.now() - t0) / 1000).toFixed(1)} s: ${s.cacheDir} (${human(total)})`);
  console.log(`use it with: HF_HUB_OFFLINE=1 HF_HUB_CACHE=${s.cacheDir}`);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(e instanceof Error ? e.message : e);
    process.exit(1);
  });
}
