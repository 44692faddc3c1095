import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  HubAuthError,
  HubEntryNotFoundError,
  HubOfflineError,
  HubRepoNotFoundError,
  HubRevisionNotFoundError,
  InvalidRepoIdError,
  LocalFolderNotFoundError,
  hubCacheDir,
  hubFileDownload,
  isLocalPath,
  listRepoFiles,
  resetHubSession,
  tryHubFile,
  type HubProgress,
} from "../src/hub/index.js";
import { fixture } from "./helpers.js";

const FIXTURE = fixture("models", "unet-ddpm-tiny");
const CONFIG = fs.readFileSync(path.join(FIXTURE, "config.json"));
const WEIGHTS = fs.readFileSync(path.join(FIXTURE, "diffusion_pytorch_model.safetensors"));
const COMMIT = "0123456789abcdef0123456789abcdef01234567";
const HUB = "https://hub.test";
const REPO = "org/tiny";
const STORAGE_NAME = "models--org--tiny";

// Every test gets a clean environment: these variables are saved, cleared, then restored.
const ENV_KEYS = [
  "HF_HUB_OFFLINE", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HF_TOKEN",
  "HUGGING_FACE_HUB_TOKEN", "HF_TOKEN_PATH", "HF_ENDPOINT", "HF_HUB_ETAG_TIMEOUT", "HF_HUB_DOWNLOAD_TIMEOUT",
];
let savedEnv: Record<string, string | undefined>;
let tmp: string;

beforeEach(() => {
  savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
  for (const k of ENV_KEYS) delete process.env[k];
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "hub-test-"));
  process.env.HF_HOME = path.join(tmp, "hf-home"); // never the real cache or token
  resetHubSession();
});

afterEach(() => {
  for (const k of ENV_KEYS) {
    if (savedEnv[k] === undefined) delete process.env[k];
    else process.env[k] = savedEnv[k];
  }
  vi.restoreAllMocks();
  fs.rmSync(tmp, { recursive: true, force: true });
});

const sha256 = (b: Buffer) => createHash("sha256").update(b).digest("hex");
/** Git blob id: the etag the Hub gives non-LFS files. */
const gitOid = (b: Buffer) => createHash("sha1").update(`blob ${b.length}\0`).update(b).digest("hex");
const isLfs = (p: string) => p.endsWith(".safetensors");
const etagOf = (p: string, b: Buffer) => (isLfs(p) ? sha256(b) : gitOid(b));

/** A cache laid out as Python's huggingface_hub writes it. */
function pythonCache(cacheDir: string, files: Record<string, Buffer>, commit = COMMIT, ref: string | null = "main"): string {
  const storage = path.join(cacheDir, STORAGE_NAME);
  fs.mkdirSync(path.join(storage, "blobs"), { recursive: true });
  for (const [rel, content] of Object.entries(files)) {
    const etag = etagOf(rel, content);
    fs.writeFileSync(path.join(storage, "blobs", etag), content);
    const pointer = path.join(storage, "snapshots", commit, ...rel.split("/"));
    fs.mkdirSync(path.dirname(pointer), { recursive: true });
    fs.symlinkSync(path.relative(path.dirname(pointer), path.join(storage, "blobs", etag)), pointer);
  }
  if (ref !== null) {
    fs.mkdirSync(path.join(storage, "refs"), { recursive: true });
    fs.writeFileSync(path.join(storage, "refs", ref), commit);
  }
  return storage;
}

const UNET_FILES = { "unet/config.json": CONFIG, "unet/diffusion_pytorch_model.safetensors": WEIGHTS };

/** A fetch that fails the test if called. */
const noNetwork = (() => {
  throw new Error("network used");
}) as unknown as typeof fetch;

/** A fetch failing like undici without DNS. */
const dnsFailure = vi.fn(async () => {
  throw new TypeError("fetch failed", { cause: Object.assign(new Error("getaddrinfo ENOTFOUND hub.test"), { code: "ENOTFOUND" }) });
}) as unknown as typeof fetch;

interface Call { method: string; path: string; range: string | null; auth: string | null }

/**
 * A fake Hub answering what huggingface_hub and @huggingface/hub ask: HEAD resolve (metadata; 302 to a
 * CDN for LFS files, like the real Hub), GET resolve (ranged probe and full body), GET tree (listing).
 */
function fakeHub(files: Record<string, Buffer>, opts: { repo?: string; commit?: string; token?: string; status?: Record<string, [number, string]> } = {}) {
  const repo = opts.repo ?? REPO;
  const commit = opts.commit ?? COMMIT;
  const calls: Call[] = [];
  const f = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(typeof input === "string" ? input : input instanceof URL ? input.href : input.url);
    const headers = new Headers(init.headers);
    const method = init.method ?? "GET";
    calls.push({ method, path: decodeURIComponent(url.pathname), range: headers.get("range"), auth: headers.get("authorization") });
    if (url.origin !== HUB) return new Response("unknown host", { status: 502 });
    if (opts.token && headers.get("authorization") !== `Bearer ${opts.token}`) {
      return new Response(null, { status: 401, headers: { "X-Error-Code": "RepoNotFound" } });
    }
    const forced = opts.status?.[url.pathname];
    if (forced) return new Response(null, { status: forced[0], headers: forced[1] ? { "X-Error-Code": forced[1] } : {} });

    const tree = url.pathname.match(/^\/api\/models\/([^/]+\/[^/]+)\/tree\/([^/]+)$/);
    if (tree && method === "GET") {
      if (tree[1] !== repo) return Response.json({ error: "Repository not found" }, { status: 404 });
      const dirs = new Set(Object.keys(files).flatMap((p) => p.split("/").slice(0, -1).map((_, i, a) => a.slice(0, i + 1).join("/"))));
      const entries = [
        ...[...dirs].map((p) => ({ type: "directory", path: p, oid: "d".repeat(40), size: 0 })),
        ...Object.entries(files).map(([p, b]) => ({ type: "file", path: p, oid: gitOid(b), size: b.length, ...(isLfs(p) ? { lfs: { oid: sha256(b), size: b.length, pointerSize: 130 } } : {}) })),
      ];
      return Response.json(entries);
    }

    const m = url.pathname.match(/^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/);
    if (!m) return new Response("not found", { status: 404 });
    const [, repoId, rev, filePath] = m.map(decodeURIComponent);
    if (repoId !== repo) return new Response(null, { status: 401, headers: { "X-Error-Code": "RepoNotFound" } });
    if (rev !== "main" && rev !== commit) return new Response(null, { status: 404, headers: { "X-Error-Code": "RevisionNotFound" } });
    const body = files[filePath];
    if (body === undefined) {
      return new Response(null, { status: 404, headers: { "X-Error-Code": "EntryNotFound", "X-Repo-Commit": commit } });
    }
    const meta: Record<string, string> = { "X-Repo-Commit": commit, ETag: `"${gitOid(body)}"` };
    if (isLfs(filePath)) Object.assign(meta, { "X-Linked-Etag": `"${sha256(body)}"`, "X-Linked-Size": String(body.length) });
    if (method === "HEAD") {
      if (isLfs(filePath) && init.redirect === "manual") {
        return new Response(null, { status: 302, headers: { ...meta, Location: `https://cdn.test/${sha256(body)}`, "Content-Length": "0" } });
      }
      return new Response(null, { status: 200, headers: { ...meta, "Content-Length": String(body.length) } });
    }
    // GET: the redirect to the CDN is followed by fetch itself, so answer with the content.
    const etag = isLfs(filePath) ? `"${sha256(body)}"` : meta.ETag;
    if (headers.get("range") === "bytes=0-0") {
      return new Response(body.subarray(0, 1), {
        status: 206,
        headers: { ...meta, ETag: etag, "Content-Range": `bytes 0-0/${body.length}`, "Content-Length": "1" },
      });
    }
    return new Response(body, { status: 200, headers: { ...meta, ETag: etag, "Content-Length": String(body.length) } });
  };
  return { fetch: f as typeof fetch, calls };
}

describe("hub: Python-layout cache, offline", () => {
  it("returns the snapshot path of a hand-made Python cache without any request", async () => {
    const cacheDir = path.join(tmp, "cache");
    const storage = pythonCache(cacheDir, UNET_FILES);
    process.env.HF_HUB_OFFLINE = "1";
    process.env.HF_HUB_CACHE = cacheDir; // default cache dir comes from the environment

    const p = await hubFileDownload(REPO, "config.json", { subfolder: "unet", fetch: noNetwork });
    expect(p).toBe(path.join(storage, "snapshots", COMMIT, "unet", "config.json"));
    expect(JSON.parse(fs.readFileSync(p, "utf8"))._class_name).toBe("UNet2DModel");
    // a commit sha as revision works too, even online, without a request
    delete process.env.HF_HUB_OFFLINE;
    expect(await hubFileDownload(REPO, "unet/config.json", { revision: COMMIT, fetch: noNetwork })).toBe(p);
    process.env.HF_HUB_OFFLINE = "yes";

    expect(await listRepoFiles(REPO, { fetch: noNetwork })).toEqual(["unet/config.json", "unet/diffusion_pytorch_model.safetensors"]);
    expect(await listRepoFiles(REPO, { subfolder: "unet", fetch: noNetwork })).toEqual(["config.json", "diffusion_pytorch_model.safetensors"]);
  });

  it("offline: a file missing from a cached snapshot is null for tryHubFile, an error for hubFileDownload", async () => {
    const cacheDir = path.join(tmp, "cache");
    pythonCache(cacheDir, UNET_FILES);
    const opts = { cacheDir, subfolder: "unet", localFilesOnly: true, fetch: noNetwork };
    expect(await tryHubFile(REPO, "diffusion_pytorch_model.fp16.safetensors", opts)).toBeNull();
    const err = await hubFileDownload(REPO, "diffusion_pytorch_model.bin", opts).catch((e) => e);
    expect(err).toBeInstanceOf(HubOfflineError);
    expect(err.message).toContain(`snapshot ${COMMIT} has no unet/diffusion_pytorch_model.bin`);
    expect(err.message).toContain("localFilesOnly");
  });

  it("offline with an unknown revision names the cached snapshots", async () => {
    const cacheDir = path.join(tmp, "cache");
    pythonCache(cacheDir, UNET_FILES);
    process.env.HF_HUB_OFFLINE = "true";
    const err = await hubFileDownload(REPO, "unet/config.json", { cacheDir, revision: "v1" }).catch((e) => e);
    expect(err).toBeInstanceOf(HubOfflineError);
    expect(err.message).toContain("no refs/v1");
    expect(err.message).toContain(COMMIT);
    // and tryHubFile does not hide it: nothing of that revision is cached
    await expect(tryHubFile(REPO, "unet/config.json", { cacheDir, revision: "v1" })).rejects.toBeInstanceOf(HubOfflineError);
  });
});

describe("hub: downloads from a (fake) Hub into Python's layout", () => {
  it("downloads, fills blobs/refs/snapshots like Python, then serves offline from the same path", async () => {
    const cacheDir = path.join(tmp, "cache");
    const hub = fakeHub(UNET_FILES, { token: "tok-123" });
    const progress: HubProgress[] = [];
    const debug = vi.spyOn(console, "debug");
    const opts = { cacheDir, hubUrl: HUB, fetch: hub.fetch, token: "tok-123", subfolder: "unet", onProgress: (p: HubProgress) => progress.push(p) };

    const weights = await hubFileDownload(REPO, "diffusion_pytorch_model.safetensors", opts);
    const config = await hubFileDownload(REPO, "config.json", opts);

    const storage = path.join(cacheDir, STORAGE_NAME);
    expect(weights).toBe(path.join(storage, "snapshots", COMMIT, "unet", "diffusion_pytorch_model.safetensors"));
    expect(config).toBe(path.join(storage, "snapshots", COMMIT, "unet", "config.json"));
    expect(fs.lstatSync(weights).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(weights)).toBe(`../../../blobs/${sha256(WEIGHTS)}`); // LFS: sha256 etag
    expect(fs.readlinkSync(config)).toBe(`../../../blobs/${gitOid(CONFIG)}`); // regular: git blob id
    expect(fs.readFileSync(weights).equals(WEIGHTS)).toBe(true);
    expect(fs.readFileSync(path.join(storage, "refs", "main"), "utf8")).toBe(COMMIT);
    expect(fs.readdirSync(path.join(storage, "blobs")).sort()).toEqual([gitOid(CONFIG), sha256(WEIGHTS)].sort()); // no .incomplete left
    const last = progress.filter((p) => p.file.endsWith("safetensors")).at(-1);
    expect(last).toEqual({ file: "unet/diffusion_pytorch_model.safetensors", loaded: WEIGHTS.length, total: WEIGHTS.length });
    expect(debug).not.toHaveBeenCalled();
    // the token went to every Hub request; HEAD did not follow the CDN redirect
    expect(hub.calls.every((c) => c.auth === "Bearer tok-123")).toBe(true);
    expect(hub.calls.map((c) => `${c.method} ${c.range ?? ""}`.trim())).toEqual([
      "HEAD", "GET bytes=0-0", "GET", "HEAD", "GET bytes=0-0", "GET",
    ]);
    expect(hub.calls[1].path).toBe(`/${REPO}/resolve/${COMMIT}/unet/diffusion_pytorch_model.safetensors`);

    // online again: one HEAD, no download
    hub.calls.length = 0;
    expect(await hubFileDownload(REPO, "config.json", opts)).toBe(config);
    expect(hub.calls.map((c) => c.method)).toEqual(["HEAD"]);

    // offline: same path, no request
    process.env.HF_HUB_OFFLINE = "1";
    expect(await hubFileDownload(REPO, "unet/config.json", { cacheDir, fetch: noNetwork })).toBe(config);
  });

  it("a 404 is 'not found': tryHubFile gives null, and Python's .no_exist marker answers offline", async () => {
    const cacheDir = path.join(tmp, "cache");
    const hub = fakeHub(UNET_FILES);
    const opts = { cacheDir, hubUrl: HUB, fetch: hub.fetch, subfolder: "unet" };
    expect(await tryHubFile(REPO, "diffusion_pytorch_model.fp16.safetensors", opts)).toBeNull();
    await expect(hubFileDownload(REPO, "model.bin", opts)).rejects.toThrow(/File "unet\/model.bin" not found in org\/tiny \(revision main\)/);
    await expect(hubFileDownload(REPO, "model.bin", opts)).rejects.toBeInstanceOf(HubEntryNotFoundError);
    const marker = path.join(cacheDir, STORAGE_NAME, ".no_exist", COMMIT, "unet", "diffusion_pytorch_model.fp16.safetensors");
    expect(fs.existsSync(marker)).toBe(true);
    expect(await tryHubFile(REPO, "diffusion_pytorch_model.fp16.safetensors", { ...opts, fetch: noNetwork, localFilesOnly: true })).toBeNull();
  });

  it("two concurrent downloads of one file end with one blob and one symlink", async () => {
    const cacheDir = path.join(tmp, "cache");
    const hub = fakeHub(UNET_FILES);
    const opts = { cacheDir, hubUrl: HUB, fetch: hub.fetch };
    const [a, b] = await Promise.all([
      hubFileDownload(REPO, "unet/diffusion_pytorch_model.safetensors", opts),
      hubFileDownload(REPO, "unet/diffusion_pytorch_model.safetensors", opts),
    ]);
    expect(a).toBe(b);
    expect(fs.lstatSync(a).isSymbolicLink()).toBe(true);
    expect(fs.readdirSync(path.join(cacheDir, STORAGE_NAME, "blobs"))).toEqual([sha256(WEIGHTS)]);
  });

  it("a stalled download times out (HF_HUB_DOWNLOAD_TIMEOUT), leaving no partial blob", async () => {
    const cacheDir = path.join(tmp, "cache");
    const hub = fakeHub(UNET_FILES);
    process.env.HF_HUB_DOWNLOAD_TIMEOUT = "0.1";
    const stalling = (async (input: string | URL | Request, init?: RequestInit) => {
      const resp = await hub.fetch(input, init);
      const ranged = new Headers(init?.headers).has("range");
      if ((init?.method ?? "GET") !== "GET" || ranged) return resp;
      // first bytes, then nothing
      const body = new ReadableStream({ start: (c) => c.enqueue(new Uint8Array(WEIGHTS.subarray(0, 1000))) });
      return new Response(body, { status: 200, headers: resp.headers });
    }) as typeof fetch;
    const err = await hubFileDownload(REPO, "unet/diffusion_pytorch_model.safetensors", { cacheDir, hubUrl: HUB, fetch: stalling }).catch((e) => e);
    expect(err.message).toMatch(/Download of org\/tiny\/unet\/diffusion_pytorch_model.safetensors failed: network ETIMEDOUT/);
    expect(fs.readdirSync(path.join(cacheDir, STORAGE_NAME, "blobs"))).toEqual([]);
    expect(fs.existsSync(path.join(cacheDir, STORAGE_NAME, "snapshots"))).toBe(false);
  });

  it("lists repo files through the tree API, optionally under a subfolder", async () => {
    const hub = fakeHub({ ...UNET_FILES, "model_index.json": Buffer.from("{}") });
    const opts = { cacheDir: path.join(tmp, "cache"), hubUrl: HUB, fetch: hub.fetch };
    expect(await listRepoFiles(REPO, opts)).toEqual(["model_index.json", "unet/config.json", "unet/diffusion_pytorch_model.safetensors"]);
    expect(await listRepoFiles(REPO, { ...opts, subfolder: "unet" })).toEqual(["config.json", "diffusion_pytorch_model.safetensors"]);
    expect(hub.calls[0].path).toBe(`/api/models/${REPO}/tree/main`);
  });

  it("follows a relative redirect (renamed repo) but not the CDN one", async () => {
    const hub = fakeHub(UNET_FILES);
    const renamed = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = String(input);
      if (url.startsWith(`${HUB}/old/tiny/`)) {
        const location = url.slice(HUB.length).replace("/old/tiny/", `/${REPO}/`);
        // fetch follows redirects itself unless asked not to
        if (init?.redirect !== "manual") return hub.fetch(HUB + location, init);
        return new Response(null, { status: 307, headers: { Location: location } });
      }
      return hub.fetch(input, init);
    }) as typeof fetch;
    const p = await hubFileDownload("old/tiny", "unet/config.json", { cacheDir: path.join(tmp, "cache"), hubUrl: HUB, fetch: renamed });
    expect(fs.readFileSync(p).equals(CONFIG)).toBe(true);
  });

  it("maps HTTP errors to clear errors (repo not found, gated, revision)", async () => {
    const cacheDir = path.join(tmp, "cache");
    const hub = fakeHub(UNET_FILES, {
      status: { [`/gated/model/resolve/main/config.json`]: [403, "GatedRepo"] },
    });
    const opts = { cacheDir, hubUrl: HUB, fetch: hub.fetch };
    const missing = await hubFileDownload("nobody/nothing", "config.json", opts).catch((e) => e);
    expect(missing).toBeInstanceOf(HubRepoNotFoundError);
    expect(missing.message).toMatch(/Repository nobody\/nothing not found.*HF_TOKEN/s);
    expect(missing.message).toContain(`${path.resolve("nobody/nothing")} does not exist`);
    const gated = await hubFileDownload("gated/model", "config.json", opts).catch((e) => e);
    expect(gated).toBeInstanceOf(HubAuthError);
    expect(gated.message).toMatch(/gated.*accept its conditions at https:\/\/hub.test\/gated\/model.*HF_TOKEN/s);
    await expect(tryHubFile(REPO, "unet/config.json", { ...opts, revision: "nope" })).rejects.toBeInstanceOf(HubRevisionNotFoundError);
    await expect(listRepoFiles("nobody/nothing", opts)).rejects.toBeInstanceOf(HubRepoNotFoundError);
  });
});

describe("hub: network failures", () => {
  it("falls back to a warm cache with one warning when the Hub is unreachable", async () => {
    const cacheDir = path.join(tmp, "cache");
    const storage = pythonCache(cacheDir, UNET_FILES);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const opts = { cacheDir, hubUrl: HUB, fetch: dnsFailure, subfolder: "unet" };
    expect(await hubFileDownload(REPO, "config.json", opts)).toBe(path.join(storage, "snapshots", COMMIT, "unet", "config.json"));
    expect(await tryHubFile(REPO, "diffusion_pytorch_model.safetensors", opts)).toContain(COMMIT);
    expect(await tryHubFile(REPO, "diffusion_pytorch_model.fp16.safetensors", opts)).toBeNull();
    expect(await listRepoFiles(REPO, opts)).toEqual(["config.json", "diffusion_pytorch_model.safetensors"]);
    expect(warn).toHaveBeenCalledTimes(1);
    expect(String(warn.mock.calls[0][0])).toMatch(/unreachable \(ENOTFOUND\).*using the cached org\/tiny.*0123456/);
  });

  it("with an empty cache: an offline error naming the id, the file, the cache folder and the ways out", async () => {
    const cacheDir = path.join(tmp, "empty-cache");
    const err = await hubFileDownload(REPO, "config.json", { cacheDir, hubUrl: HUB, fetch: dnsFailure, subfolder: "unet" }).catch((e) => e);
    expect(err).toBeInstanceOf(HubOfflineError);
    expect(err).toMatchObject({ repoId: REPO, filename: "unet/config.json", cacheDir });
    expect(err.message).toContain("unreachable (ENOTFOUND)");
    expect(err.message).toContain(path.join(cacheDir, STORAGE_NAME));
    expect(err.message).toContain(`hf download ${REPO}`);
    expect(err.message).toContain(`huggingface-cli download ${REPO}`);
    expect(err.message).toContain("local folder");
    expect(err.cause?.cause?.message).toBe("fetch failed");
    // a probe does not hide it either
    await expect(tryHubFile(REPO, "unet/config.json", { cacheDir, hubUrl: HUB, fetch: dnsFailure })).rejects.toBeInstanceOf(HubOfflineError);
    await expect(listRepoFiles(REPO, { cacheDir, hubUrl: HUB, fetch: dnsFailure })).rejects.toBeInstanceOf(HubOfflineError);

    process.env.HF_HUB_OFFLINE = "1";
    const off = await hubFileDownload(REPO, "unet/config.json", { cacheDir, fetch: noNetwork }).catch((e) => e);
    expect(off).toBeInstanceOf(HubOfflineError);
    expect(off.message).toMatch(/HF_HUB_OFFLINE=1 is set.*unset HF_HUB_OFFLINE/s);
  });

  it("times out a hanging Hub (HF_HUB_ETAG_TIMEOUT) and uses the cache", async () => {
    const cacheDir = path.join(tmp, "cache");
    pythonCache(cacheDir, UNET_FILES);
    vi.spyOn(console, "warn").mockImplementation(() => {});
    process.env.HF_HUB_ETAG_TIMEOUT = "0.05";
    // a Hub that never answers: only the timeout's abort ends the request (a missing timeout hangs the test)
    let aborted = 0;
    const hanging = ((_: unknown, init?: RequestInit) =>
      new Promise((_, reject) => init?.signal?.addEventListener("abort", () => { aborted++; reject(init.signal!.reason); }))) as typeof fetch;
    expect(await hubFileDownload(REPO, "unet/config.json", { cacheDir, hubUrl: HUB, fetch: hanging })).toContain(COMMIT);
    expect(aborted, "the request was ended by HF_HUB_ETAG_TIMEOUT").toBe(1);
    const err = await hubFileDownload("org/other", "config.json", { cacheDir, hubUrl: HUB, fetch: hanging }).catch((e) => e);
    expect(err).toBeInstanceOf(HubOfflineError);
    expect(err.message).toContain("unreachable (ETIMEDOUT)");
  });

  it("a server error falls back to the cache, else says the file is not cached", async () => {
    const cacheDir = path.join(tmp, "cache");
    pythonCache(cacheDir, UNET_FILES);
    const warn = vi.spyOn(console, "warn").mockImplementation(() => {});
    const down = (async () => new Response("busy", { status: 503 })) as typeof fetch;
    expect(await hubFileDownload(REPO, "unet/config.json", { cacheDir, hubUrl: HUB, fetch: down })).toContain(COMMIT);
    expect(String(warn.mock.calls[0][0])).toContain("answered HTTP 503");
    const err = await hubFileDownload("org/other", "config.json", { cacheDir, hubUrl: HUB, fetch: down }).catch((e) => e);
    expect(err).toBeInstanceOf(HubOfflineError);
    expect(err.message).toContain("answered HTTP 503");
  });
});

describe("hub: local folders", () => {
  it("joins folder, subfolder and file", async () => {
    const root = path.join(tmp, "pipe");
    fs.mkdirSync(path.join(root, "unet"), { recursive: true });
    fs.copyFileSync(path.join(FIXTURE, "config.json"), path.join(root, "unet", "config.json"));
    expect(await hubFileDownload(FIXTURE, "config.json")).toBe(path.join(FIXTURE, "config.json"));
    expect(await hubFileDownload(root, "config.json", { subfolder: "unet", fetch: noNetwork })).toBe(path.join(root, "unet", "config.json"));
    expect(await tryHubFile(FIXTURE, "diffusion_pytorch_model.bin")).toBeNull();
    expect(await listRepoFiles(FIXTURE)).toEqual(["config.json", "diffusion_pytorch_model.fp16.safetensors", "diffusion_pytorch_model.safetensors"]);
    expect(await listRepoFiles(root, { subfolder: "unet" })).toEqual(["config.json"]);
  });

  it("a relative ./path is resolved against the working directory", async () => {
    const rel = `./${path.relative(process.cwd(), FIXTURE)}`;
    expect(await hubFileDownload(rel, "config.json")).toBe(path.join(FIXTURE, "config.json"));
  });

  it("missing folder and missing file give clear errors", async () => {
    const missing = path.join(tmp, "nope");
    await expect(hubFileDownload(missing, "config.json")).rejects.toThrow(`Local folder ${missing} does not exist`);
    await expect(hubFileDownload("./definitely-not-here", "config.json")).rejects.toBeInstanceOf(LocalFolderNotFoundError);
    const err = await hubFileDownload(FIXTURE, "scheduler_config.json", { subfolder: "scheduler" }).catch((e) => e);
    expect(err).toBeInstanceOf(HubEntryNotFoundError);
    expect(err.message).toContain(`File "scheduler/scheduler_config.json" not found in local folder ${FIXTURE}`);
    expect(err.message).toContain("It contains: config.json, diffusion_pytorch_model.fp16.safetensors");
  });

  it("rejects file paths escaping the folder", async () => {
    await expect(hubFileDownload(FIXTURE, "../unet-ddpm-tiny/config.json")).rejects.toThrow(/Invalid file path/);
  });
});

describe("hub: repo ids", () => {
  it("tells local paths from repo ids", () => {
    expect(isLocalPath("./x")).toBe(true);
    expect(isLocalPath("../x")).toBe(true);
    expect(isLocalPath("/abs/x")).toBe(true);
    expect(isLocalPath("~/models/x")).toBe(true);
    expect(isLocalPath("C:\\models\\x")).toBe(true);
    expect(isLocalPath(FIXTURE)).toBe(true);
    expect(isLocalPath("google/ddpm-cifar10-32")).toBe(false);
    expect(isLocalPath("gpt2")).toBe(false);
  });

  it.each([
    ["a/b/c", /at most one "\/"/],
    ["org/bad--name", /"--" and "\.\." are not allowed/],
    ["-org/name", /"-org" must use only letters/],
    ["org/name.git", /must not end with "\.git"/],
    ["org/na me", /"na me" must use only letters/],
    ["", /it is empty/],
  ])("rejects the malformed id %j", async (id, why) => {
    const err = await hubFileDownload(id, "config.json", { fetch: noNetwork }).catch((e) => e);
    expect(err).toBeInstanceOf(InvalidRepoIdError);
    expect(err.message).toMatch(why);
    expect(err.message).toContain("neither an existing local folder nor a valid Hub repo id");
  });
});

describe("hub: cache folder from the environment (huggingface_hub's order)", () => {
  it("HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > HF_HOME/hub > XDG_CACHE_HOME/huggingface/hub > ~/.cache/huggingface/hub", () => {
    delete process.env.HF_HOME;
    expect(hubCacheDir()).toBe(path.join(os.homedir(), ".cache", "huggingface", "hub"));
    process.env.XDG_CACHE_HOME = "/xdg";
    expect(hubCacheDir()).toBe(path.resolve("/xdg/huggingface/hub"));
    process.env.HF_HOME = "/hf-home";
    expect(hubCacheDir()).toBe(path.resolve("/hf-home/hub"));
    process.env.HUGGINGFACE_HUB_CACHE = "/legacy";
    expect(hubCacheDir()).toBe(path.resolve("/legacy"));
    process.env.HF_HUB_CACHE = "~/hub-cache";
    expect(hubCacheDir()).toBe(path.join(os.homedir(), "hub-cache"));
  });
});
