// Types of snapshots.mjs for the TypeScript that imports it (kernel-lib/test/rehearsal-snapshots.test.ts).

export const BUILDER_VERSION: number;
export const DEFAULT_CACHE_DIR: string;
export const SD15: "stable-diffusion-v1-5/stable-diffusion-v1-5";
export const DDPM_CAT: "google/ddpm-cat-256";
export const REHEARSAL_REPOS: string[];

/** The git blob id: the etag the Hub gives a file that is not stored with LFS. */
export function gitBlobSha1(bytes: Uint8Array): string;

/** Standard deviation of an init ("fan_in": 1/sqrt(prod(torchShape[1:])), "normal": 1), null for the constants. */
export function initStd(init: string, torchShape: readonly number[]): number | null;

/** The first `count` (default: all) float32 values the script writes for a tensor. */
export function rehearsalTensorValues(repoId: string, key: string, opts: { torchShape: readonly number[]; init: string; count?: number }): Float32Array;

export interface RehearsalFile {
  path: string;
  etag: string;
  size: number;
  lfs: boolean;
}

export interface RehearsalRepo {
  repoId: string;
  commit: string;
  storage: string;
  built: boolean;
  seconds: number;
  files: RehearsalFile[];
}

export interface BuildRehearsalOptions {
  /** progress lines */
  log?: (message: string) => void;
  /** repo ids to build, a subset of REHEARSAL_REPOS (default: all) */
  repos?: string[];
  /** { [repoId]: { [path in repo]: fixture file path | object (written as JSON) | Buffer } } */
  configs?: Record<string, Record<string, string | object | Buffer>>;
  /** the kernel-lib module to build models with (default: kernel-lib/dist/index.js) */
  kit?: object;
}

export function buildRehearsalCache(cacheDir?: string, opts?: BuildRehearsalOptions): Promise<{ cacheDir: string; repos: RehearsalRepo[] }>;
