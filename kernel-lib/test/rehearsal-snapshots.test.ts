// scripts/rehearsal/snapshots.mjs: the rehearsal Hub cache (real configs, seeded random weights), built here with the
// tiny models' configs so it takes seconds. Checks huggingface_hub's layout, that the kit loads every part offline from
// it, and that the torch.save writer round-trips through readTorchBin bit for bit.
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from "vitest";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { UNet2DModel } from "../src/models/unet-2d.js";
import { UNet2DConditionModel } from "../src/models/unet-2d-condition.js";
import { AutoencoderKL } from "../src/models/autoencoder-kl.js";
import { CLIPTextModel } from "../src/models/clip-text-model.js";
import { deprecatedAttentionKey } from "../src/models/convert-deprecated-attention.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { DDPMPipeline } from "../src/pipelines/pipeline-ddpm.js";
import { CLIPTokenizer } from "../src/tokenizers/clip.js";
import { float16ToFloat32, float32ToFloat16 } from "../src/io/float16.js";
import { readSafetensorsArrays, readSafetensorsHeader } from "../src/io/safetensors.js";
import { readTorchBin, zipEndRecords } from "../src/io/torch-bin.js";
import { resetHubSession } from "../src/hub/index.js";
import {
  BUILDER_VERSION,
  DDPM_CAT,
  SD15,
  buildRehearsalCache,
  gitBlobSha1,
  rehearsalTensorValues,
} from "../../scripts/rehearsal/snapshots.mjs";
import { fixture } from "./helpers.js";

const ROOT = path.resolve(__dirname, "../..");
const DATASETS = path.join(ROOT, "datasets");
const SC_CONFIG = JSON.parse(fs.readFileSync(fixture("configs", "stable-diffusion-inpainting", "safety_checker", "config.json"), "utf8"));

// The tiny models' configs in place of the real ones: the same files and names, a few MB of weights.
const CONFIGS = {
  [SD15]: {
    "unet/config.json": path.join(DATASETS, "sd-tiny-random", "unet", "config.json"),
    "vae/config.json": path.join(DATASETS, "sd-tiny-random", "vae", "config.json"),
    "text_encoder/config.json": path.join(DATASETS, "sd-tiny-random", "text_encoder", "config.json"),
    "safety_checker/config.json": {
      ...SC_CONFIG,
      projection_dim: 16,
      vision_config: { ...SC_CONFIG.vision_config, hidden_size: 32, intermediate_size: 64, num_hidden_layers: 2, patch_size: 16, image_size: 32 },
    },
  },
  [DDPM_CAT]: { "config.json": path.join(DATASETS, "ddpm-cat-tiny-random", "unet", "config.json") },
};
const KIT = { UNet2DModel, UNet2DConditionModel, AutoencoderKL, CLIPTextModel, float32ToFloat16, zipEndRecords };

const ENV_KEYS = ["HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "HF_ENDPOINT"];
let tmp: string;
let cache: string;
type Summary = Awaited<ReturnType<typeof buildRehearsalCache>>;
let first: Summary;

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const storageOf = (repoId: string) => path.join(cache, `models--${repoId.split("/").join("--")}`);
const snapshotPath = (repoId: string, rel: string) => {
  const storage = storageOf(repoId);
  const commit = fs.readFileSync(path.join(storage, "refs", "main"), "utf8").trim();
  return path.join(storage, "snapshots", commit, ...rel.split("/"));
};
/** Bit-for-bit equality of two float32 arrays (Buffer.equals: a deep toEqual of a million elements is slow). */
const sameBits = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
const readJson = (p: string) => JSON.parse(fs.readFileSync(p, "utf8"));

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "rehearsal-"));
  cache = path.join(tmp, "hf-cache");
  first = await buildRehearsalCache(cache, { configs: CONFIGS, kit: KIT });
});

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe("buildRehearsalCache: huggingface_hub's cache layout", () => {
  it("writes refs/main, relative symlinks into blobs/ named by the content's sha256 (LFS) or git blob id, and the .locks", () => {
    for (const repo of first.repos) {
      expect(repo.built).toBe(true);
      const storage = storageOf(repo.repoId);
      const commit = fs.readFileSync(path.join(storage, "refs", "main"), "utf8");
      expect(commit).toMatch(/^[0-9a-f]{40}$/); // no newline, as huggingface_hub writes it
      expect(commit).toBe(repo.commit);
      expect(fs.readdirSync(path.join(storage, "snapshots"))).toEqual([commit]);
      const blobs = new Set(fs.readdirSync(path.join(storage, "blobs")));
      expect([...blobs].some((b) => b.endsWith(".incomplete"))).toBe(false);
      for (const f of repo.files) {
        const pointer = path.join(storage, "snapshots", commit, ...f.path.split("/"));
        expect(fs.lstatSync(pointer).isSymbolicLink(), f.path).toBe(true);
        const target = fs.readlinkSync(pointer);
        const depth = f.path.split("/").length - 1;
        expect(target).toBe(`${"../".repeat(2 + depth)}blobs/${f.etag}`);
        expect(path.resolve(path.dirname(pointer), target)).toBe(path.join(storage, "blobs", f.etag));
        const bytes = fs.readFileSync(pointer);
        expect(bytes.length).toBe(f.size);
        const lfs = /\.(safetensors|bin)$/.test(f.path);
        expect(f.lfs).toBe(lfs);
        expect(f.etag).toBe(lfs ? sha256(bytes) : gitBlobSha1(bytes));
        expect(fs.existsSync(path.join(cache, ".locks", path.basename(storage), `${f.etag}.lock`))).toBe(true);
      }
      expect(blobs.size).toBe(new Set(repo.files.map((f) => f.etag)).size); // nothing stray
      const marker = readJson(path.join(storage, ".rehearsal-complete.json"));
      expect(marker.builder).toBe(BUILDER_VERSION);
    }
  });

  it("lays the repos out as on the Hub: SD 1.5 in subfolders with fp16 variants, ddpm-cat-256 flat", () => {
    const sd = first.repos.find((r) => r.repoId === SD15)!.files.map((f) => f.path).sort();
    expect(sd).toEqual([
      "feature_extractor/preprocessor_config.json", "model_index.json", "safety_checker/config.json",
      "safety_checker/model.fp16.safetensors", "safety_checker/model.safetensors", "scheduler/scheduler_config.json",
      "text_encoder/config.json", "text_encoder/model.fp16.safetensors", "text_encoder/model.safetensors",
      "tokenizer/merges.txt", "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
      "unet/config.json", "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.safetensors",
      "vae/config.json", "vae/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors",
    ]);
    const cat = first.repos.find((r) => r.repoId === DDPM_CAT)!.files.map((f) => f.path).sort();
    expect(cat).toEqual(["config.json", "diffusion_pytorch_model.bin", "model_index.json", "scheduler_config.json"]);
    // real files copied byte for byte where not overridden
    expect(fs.readFileSync(snapshotPath(SD15, "model_index.json")).equals(fs.readFileSync(fixture("configs", "stable-diffusion-v1-5", "model_index.json")))).toBe(true);
    expect(fs.readFileSync(snapshotPath(SD15, "tokenizer/vocab.json")).equals(fs.readFileSync(fixture("configs", "stable-diffusion-inpainting", "tokenizer", "vocab.json")))).toBe(true);
    expect(readJson(snapshotPath(DDPM_CAT, "model_index.json"))).toEqual({
      _class_name: "DDPMPipeline", _diffusers_version: "0.1.1", scheduler: ["diffusers", "DDPMScheduler"], unet: ["diffusers", "UNet2DModel"],
    });
  });

  it("is idempotent: a complete repo is skipped; one without its marker is rebuilt to the same bytes", async () => {
    const again = await buildRehearsalCache(cache, { configs: CONFIGS, kit: KIT });
    expect(again.repos.map((r) => r.built)).toEqual([false, false]);
    fs.rmSync(path.join(storageOf(DDPM_CAT), ".rehearsal-complete.json"));
    const log: string[] = [];
    const rebuilt = await buildRehearsalCache(cache, { repos: [DDPM_CAT], configs: CONFIGS, kit: KIT, log: (m: string) => log.push(m) });
    expect(rebuilt.repos[0].built).toBe(true);
    expect(log.join("\n")).toMatch(/incomplete build, removing it/);
    const before = first.repos.find((r) => r.repoId === DDPM_CAT)!.files;
    expect(rebuilt.repos[0].files).toEqual(before); // seeded: the same etags
  });

  it("refuses to overwrite a repo folder it did not build", async () => {
    const other = path.join(tmp, "other-cache");
    const storage = path.join(other, "models--google--ddpm-cat-256");
    fs.mkdirSync(path.join(storage, "refs"), { recursive: true });
    fs.writeFileSync(path.join(storage, "refs", "main"), "0123456789abcdef0123456789abcdef01234567");
    await expect(buildRehearsalCache(other, { repos: [DDPM_CAT], configs: CONFIGS, kit: KIT })).rejects.toThrow(/not a rehearsal build/);
    expect(fs.readFileSync(path.join(storage, "refs", "main"), "utf8")).toBe("0123456789abcdef0123456789abcdef01234567");
  });
});

describe("the kit loads the rehearsal cache offline", () => {
  let saved: Record<string, string | undefined>;
  beforeEach(() => {
    saved = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
    for (const k of ENV_KEYS) delete process.env[k];
    process.env.HF_HUB_OFFLINE = "1";
    process.env.HF_HUB_CACHE = cache;
    process.env.HF_HOME = path.join(tmp, "hf-home"); // never the real token or cache
    resetHubSession();
  });
  afterEach(() => {
    for (const k of ENV_KEYS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    resetHubSession();
  });

  it("google/ddpm-cat-256: UNet2DModel (deprecated attention names renamed), DDPMScheduler and DDPMPipeline from the top level", async () => {
    const unet = await UNet2DModel.fromPretrained(DDPM_CAT);
    try {
      const params = new Map(unet.namedParameters());
      const sd = unet.stateDict();
      for (const name of ["conv_in.weight", "down_blocks.4.attentions.0.to_q.weight", "time_embedding.linear_1.weight"]) {
        const p = params.get(name)!;
        const want = rehearsalTensorValues(DDPM_CAT, name, { torchShape: [...p.torchShape], init: p.init });
        expect(sameBits(sd.get(name)!.data as Float32Array, want), name).toBe(true);
      }
    } finally {
      unet.dispose();
    }
    const scheduler = await DDPMScheduler.fromPretrained(DDPM_CAT);
    expect(scheduler.config.variance_type).toBe("fixed_small");
    const pipe = await DDPMPipeline.fromPretrained(DDPM_CAT);
    expect(pipe.unet.numParameters()).toBeGreaterThan(0);
    pipe.unet.dispose();
  });

  it("SD 1.5: text encoder, fp16 VAE (the F32 values rounded to half), UNet and tokenizer", async () => {
    const te = await CLIPTextModel.fromPretrained(SD15, { subfolder: "text_encoder" });
    te.dispose();
    const header = readSafetensorsHeader(snapshotPath(SD15, "text_encoder/model.safetensors"));
    expect(header.metadata).toEqual({ format: "pt" });
    expect(header.tensors.get("text_model.embeddings.position_ids")).toMatchObject({ dtype: "I64", shape: [1, 77] });
    const pos = readSafetensorsArrays(snapshotPath(SD15, "text_encoder/model.fp16.safetensors"), ["text_model.embeddings.position_ids"]);
    expect(Array.from(pos.tensors.get("text_model.embeddings.position_ids")!.data)).toEqual([...Array(77).keys()]);

    const vae = await AutoencoderKL.fromPretrained(SD15, { subfolder: "vae", variant: "fp16" });
    try {
      const name = "encoder.mid_block.attentions.0.to_q.weight"; // stored as ...query.weight, as in the real file
      expect(readSafetensorsHeader(snapshotPath(SD15, "vae/diffusion_pytorch_model.fp16.safetensors")).tensors.get("encoder.mid_block.attentions.0.query.weight")?.dtype).toBe("F16");
      const p = new Map(vae.namedParameters()).get(name)!;
      const f32 = rehearsalTensorValues(SD15, `vae/${name}`, { torchShape: [...p.torchShape], init: p.init });
      expect(sameBits(vae.stateDict().get(name)!.data as Float32Array, float16ToFloat32(float32ToFloat16(f32)))).toBe(true);
    } finally {
      vae.dispose();
    }

    const unet = await UNet2DConditionModel.fromPretrained(SD15, { subfolder: "unet" });
    try {
      const config = readJson(snapshotPath(SD15, "unet/config.json"));
      const fresh = new UNet2DConditionModel(config).namedParameters();
      const tensors = readSafetensorsHeader(snapshotPath(SD15, "unet/diffusion_pytorch_model.safetensors")).tensors;
      expect([...tensors.keys()].sort()).toEqual(fresh.map(([n]) => n).sort());
      for (const [n, p] of fresh) expect(tensors.get(n)!.shape, n).toEqual(p.torchShape);
      expect(unet.numParameters()).toBe(fresh.reduce((s, [, p]) => s + p.numel, 0));
    } finally {
      unet.dispose();
    }

    const tok = await CLIPTokenizer.fromPretrained(SD15, { subfolder: "tokenizer" });
    expect(tok.encode("a photo of a cat").inputIds[0]).toEqual([49406, 320, 1125, 539, 320, 2368, 49407]);
  });
});

describe("the torch.save writer", () => {
  it("round-trips through readTorchBin bit for bit, under the names the real checkpoint uses", () => {
    const file = snapshotPath(DDPM_CAT, "diffusion_pytorch_model.bin");
    const state = readTorchBin(file);
    const model = new UNet2DModel(readJson(snapshotPath(DDPM_CAT, "config.json")));
    const params = model.namedParameters();
    expect(state.size).toBe(params.length);
    const byName = new Map(params);
    let deprecated = 0;
    for (const [stored, raw] of state) {
      const name = deprecatedAttentionKey(stored) ?? stored;
      if (name !== stored) deprecated++;
      const p = byName.get(name)!;
      expect(p, stored).toBeDefined();
      expect(raw.dtype).toBe("F32");
      expect(raw.shape).toEqual(p.torchShape);
      const want = rehearsalTensorValues(DDPM_CAT, name, { torchShape: [...p.torchShape], init: p.init });
      expect(sameBits(raw.data as Float32Array, want), stored).toBe(true);
    }
    expect(deprecated).toBeGreaterThan(0);
    // torch.save's zip: archive/ records, data.pkl first, version last
    const bytes = fs.readFileSync(file);
    expect(bytes.readUInt32LE(0)).toBe(0x04034b50);
    expect(bytes.toString("latin1", 30, 30 + "archive/data.pkl".length)).toBe("archive/data.pkl");
    expect(bytes.includes(Buffer.from("archive/version"))).toBe(true);
  });
});
