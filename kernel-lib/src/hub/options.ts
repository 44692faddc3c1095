// Options of every hub call, and their resolution against the environment.
import { hubCacheDir, hubEndpoint, hubToken, isOfflineMode } from "./env.js";
import { repoStorage } from "./cache.js";
import { HubError } from "./errors.js";
import { resolve } from "node:path";

export interface HubProgress {
  /** Path inside the repo, e.g. "unet/diffusion_pytorch_model.safetensors". */
  file: string;
  loaded: number;
  total?: number;
}

export interface HubOptions {
  /** Branch, tag or 40-hex commit; default "main". */
  revision?: string;
  /** Folder inside the repo or local folder, e.g. "unet". */
  subfolder?: string;
  /** Default: HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub > $XDG_CACHE_HOME/huggingface/hub > ~/.cache/huggingface/hub. */
  cacheDir?: string;
  /** Never contact the Hub; also on when env HF_HUB_OFFLINE is 1/true/yes/on. */
  localFilesOnly?: boolean;
  /** Default: env HF_TOKEN, HUGGING_FACE_HUB_TOKEN, then the `huggingface-cli login` token file. */
  token?: string;
  /** Default: env HF_ENDPOINT or https://huggingface.co. */
  hubUrl?: string;
  /** Replaces the global fetch (tests, proxies). */
  fetch?: typeof fetch;
  /** Called as a download makes progress (not for cached files). */
  onProgress?: (p: HubProgress) => void;
}

/** Everything a repo lookup needs, with defaults filled in. */
export interface HubContext {
  repoId: string;
  revision: string;
  cacheDir: string;
  storage: string;
  hubUrl: string;
  token: string | undefined;
  fetch: typeof fetch;
  /** Why the Hub must not be contacted, or null when it may be. */
  offlineReason: string | null;
  onProgress?: (p: HubProgress) => void;
}

export function hubContext(repoId: string, opts: HubOptions = {}): HubContext {
  const cacheDir = resolve(opts.cacheDir ?? hubCacheDir());
  const offlineReason = opts.localFilesOnly
    ? "localFilesOnly is set, so the Hub was not contacted"
    : isOfflineMode()
      ? `HF_HUB_OFFLINE=${process.env["HF_HUB_OFFLINE"]} is set, so the Hub was not contacted`
      : null;
  return {
    repoId,
    revision: opts.revision ?? "main",
    cacheDir,
    storage: repoStorage(cacheDir, repoId),
    hubUrl: (opts.hubUrl ?? hubEndpoint()).replace(/\/+$/, ""),
    token: opts.token ?? hubToken(),
    fetch: opts.fetch ?? globalThis.fetch,
    offlineReason,
    onProgress: opts.onProgress,
  };
}

/** "subfolder/filename" with "/" separators; rejects absolute paths and "..". */
export function repoPath(filename: string, subfolder?: string): string {
  const parts = [subfolder ?? "", filename]
    .join("/")
    .replace(/\\/g, "/")
    .split("/")
    .filter((p) => p !== "" && p !== ".");
  if (parts.length === 0 || parts.includes("..") || /^[\\/]/.test(filename) || /^[A-Za-z]:/.test(filename)) {
    throw new HubError(`Invalid file path "${filename}"${subfolder ? ` in subfolder "${subfolder}"` : ""}: use a path relative to the model folder.`);
  }
  return parts.join("/");
}
