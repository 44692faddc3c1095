// Hub settings read from the environment, with huggingface_hub's names and precedence.
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { readFileSync } from "node:fs";

const DEFAULT_ENDPOINT = "https://huggingface.co";

function env(name: string): string | undefined {
  const v = process.env[name];
  return v === undefined || v === "" ? undefined : v;
}

/** "1", "true", "yes", "on" (any case), like huggingface_hub's `_is_true`. */
export function envFlag(name: string): boolean {
  const v = env(name);
  return v !== undefined && ["1", "TRUE", "YES", "ON"].includes(v.trim().toUpperCase());
}

export function expandUser(p: string): string {
  return p === "~" || p.startsWith("~/") || p.startsWith("~\\") ? join(homedir(), p.slice(1)) : p;
}

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface. */
export function hfHome(): string {
  const home = env("HF_HOME") ?? join(env("XDG_CACHE_HOME") ?? join(homedir(), ".cache"), "huggingface");
  return resolve(expandUser(home));
}

/** HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > $HF_HOME/hub > $XDG_CACHE_HOME/huggingface/hub > ~/.cache/huggingface/hub. */
export function hubCacheDir(): string {
  const dir = env("HF_HUB_CACHE") ?? env("HUGGINGFACE_HUB_CACHE");
  return dir !== undefined ? resolve(expandUser(dir)) : join(hfHome(), "hub");
}

/** True when HF_HUB_OFFLINE asks for no network at all. */
export function isOfflineMode(): boolean {
  return envFlag("HF_HUB_OFFLINE");
}

/** HF_ENDPOINT or https://huggingface.co, without a trailing slash. */
export function hubEndpoint(): string {
  return (env("HF_ENDPOINT") ?? DEFAULT_ENDPOINT).replace(/\/+$/, "");
}

/** HF_TOKEN > HUGGING_FACE_HUB_TOKEN > the file written by `huggingface-cli login` (HF_TOKEN_PATH or $HF_HOME/token). */
export function hubToken(): string | undefined {
  const fromEnv = env("HF_TOKEN") ?? env("HUGGING_FACE_HUB_TOKEN");
  if (fromEnv !== undefined) return fromEnv.trim();
  try {
    const t = readFileSync(expandUser(env("HF_TOKEN_PATH") ?? join(hfHome(), "token")), "utf8").trim();
    return t === "" ? undefined : t;
  } catch {
    return undefined;
  }
}

function seconds(name: string, fallback: number): number {
  const v = Number(env(name));
  return Number.isFinite(v) && v > 0 ? v : fallback;
}

/** Metadata (HEAD / API) timeout in ms: HF_HUB_ETAG_TIMEOUT, else HF_HUB_DOWNLOAD_TIMEOUT, else 10 s. */
export function metadataTimeoutMs(): number {
  return 1000 * seconds("HF_HUB_ETAG_TIMEOUT", seconds("HF_HUB_DOWNLOAD_TIMEOUT", 10));
}

/** Download stall timeout in ms (no byte for that long aborts): HF_HUB_DOWNLOAD_TIMEOUT, else 10 s. */
export function downloadTimeoutMs(): number {
  return 1000 * seconds("HF_HUB_DOWNLOAD_TIMEOUT", 10);
}
