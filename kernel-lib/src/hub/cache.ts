// The Python-compatible cache layout (huggingface_hub's), so both languages share downloads:
//   <cacheDir>/models--org--name/
//     refs/<revision>                   file holding the commit sha
//     blobs/<etag>                      file contents
//     snapshots/<sha>/<path>            relative symlink to ../../blobs/<etag>
//     .no_exist/<sha>/<path>            empty marker: the file is known to be absent at that commit
import { copyFile, mkdir, readFile, readdir, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { dirname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { HubError } from "./errors.js";
import { COMMIT_HASH, repoFolderName } from "./repo-id.js";

/** Folder of one repo inside the cache. */
export function repoStorage(cacheDir: string, repoId: string): string {
  return join(cacheDir, repoFolderName(repoId));
}

function fsPath(base: string, relPath: string): string {
  return join(base, ...relPath.split("/"));
}

export async function exists(path: string): Promise<boolean> {
  try {
    await stat(path); // follows symlinks: a dangling link counts as missing
    return true;
  } catch {
    return false;
  }
}

/** refs/<revision>; a revision that would lead outside the refs folder is refused. */
function refFile(storage: string, revision: string): string {
  const refs = join(storage, "refs");
  const file = fsPath(refs, revision);
  const rel = relative(refs, file);
  if (rel === "" || rel.split(sep)[0] === ".." || isAbsolute(rel)) {
    throw new HubError(`Revision "${revision}" leads outside ${refs}; allowed: a branch or tag name, or a 40-hex commit hash.`);
  }
  return file;
}

/**
 * Commit sha a revision points to in the cache: the revision itself if it is a sha, else refs/<revision>, which
 * must hold a 40-hex commit (so that snapshots/<commit> stays inside the repo folder).
 */
export async function readRef(storage: string, revision: string): Promise<string | null> {
  if (COMMIT_HASH.test(revision)) return revision;
  const file = refFile(storage, revision);
  let sha: string;
  try {
    sha = (await readFile(file, "utf8")).trim();
  } catch {
    return null;
  }
  if (sha === "") return null;
  if (!COMMIT_HASH.test(sha)) {
    throw new HubError(
      `${file} holds ${JSON.stringify(sha.length > 100 ? `${sha.slice(0, 100)}...` : sha)}; allowed: a 40-character ` +
        `lowercase hex commit hash, as huggingface_hub writes. The cache entry is corrupt: delete ${file} and download again.`,
    );
  }
  return sha;
}

export async function writeRef(storage: string, revision: string, commit: string): Promise<void> {
  if (revision === commit) return;
  if (!COMMIT_HASH.test(commit)) {
    throw new HubError(`The Hub answered commit ${JSON.stringify(commit)} for revision "${revision}"; allowed: a 40-hex commit hash. Is the endpoint a Hugging Face Hub (check HF_ENDPOINT)?`);
  }
  const ref = refFile(storage, revision);
  try {
    if ((await readFile(ref, "utf8")).trim() === commit) return;
  } catch {
    // no ref yet
  }
  await mkdir(dirname(ref), { recursive: true });
  await writeFile(ref, commit);
}

export function snapshotDir(storage: string, commit: string): string {
  return join(storage, "snapshots", commit);
}

export function snapshotFile(storage: string, commit: string, relPath: string): string {
  return fsPath(snapshotDir(storage, commit), relPath);
}

export function blobPath(storage: string, etag: string): string {
  return join(storage, "blobs", etag);
}

function noExistPath(storage: string, commit: string, relPath: string): string {
  return fsPath(join(storage, ".no_exist", commit), relPath);
}

export type CacheLookup =
  | { state: "hit"; commit: string; path: string }
  | { state: "known-missing"; commit: string } // .no_exist marker
  | { state: "miss"; commit: string | null; snapshotExists: boolean };

/** Looks a file up in the cache, as huggingface_hub's try_to_load_from_cache. */
export async function lookupCached(storage: string, revision: string, relPath: string): Promise<CacheLookup> {
  const commit = await readRef(storage, revision);
  if (commit === null) return { state: "miss", commit: null, snapshotExists: false };
  const path = snapshotFile(storage, commit, relPath);
  if (await exists(path)) return { state: "hit", commit, path };
  if (await exists(noExistPath(storage, commit, relPath))) return { state: "known-missing", commit };
  return { state: "miss", commit, snapshotExists: await exists(snapshotDir(storage, commit)) };
}

/** Records that relPath does not exist at `commit` (what Python writes after a 404). */
export async function markMissing(storage: string, commit: string, relPath: string): Promise<void> {
  const marker = noExistPath(storage, commit, relPath);
  await mkdir(dirname(marker), { recursive: true });
  await writeFile(marker, "");
}

/** Points snapshots/<commit>/<relPath> at blobs/<etag> with a relative symlink (a copy where symlinks fail). */
export async function linkSnapshot(storage: string, commit: string, relPath: string, etag: string): Promise<string> {
  const pointer = snapshotFile(storage, commit, relPath);
  const blob = blobPath(storage, etag);
  await mkdir(dirname(pointer), { recursive: true });
  await rm(pointer, { force: true });
  try {
    await symlink(relative(dirname(pointer), blob), pointer);
  } catch (e) {
    // EEXIST: a concurrent call linked it first.
    if ((e as NodeJS.ErrnoException).code === "EEXIST" && (await exists(pointer))) return pointer;
    await copyFile(blob, pointer);
  }
  return pointer;
}

/** Moves a finished download into blobs/<etag>. */
export async function commitBlob(storage: string, etag: string, tmpFile: string): Promise<void> {
  const blob = blobPath(storage, etag);
  await mkdir(dirname(blob), { recursive: true });
  await rename(tmpFile, blob);
}

/** Files (recursive, "/"-separated, relative to `dir`), following symlinks; [] if `dir` is missing. */
export async function walkFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  async function walk(abs: string, rel: string): Promise<void> {
    let names: string[];
    try {
      names = await readdir(abs);
    } catch {
      return;
    }
    for (const name of names.sort()) {
      if (name === ".DS_Store") continue;
      const child = join(abs, name);
      const relChild = rel === "" ? name : `${rel}/${name}`;
      let s;
      try {
        s = await stat(child);
      } catch {
        continue; // dangling symlink
      }
      if (s.isDirectory()) await walk(child, relChild);
      else out.push(relChild);
    }
  }
  await walk(resolve(dir), "");
  return out;
}

/** Commit shas that have a snapshot folder in the cache. */
export async function snapshotCommits(storage: string): Promise<string[]> {
  try {
    return (await readdir(join(storage, "snapshots"))).filter((n) => COMMIT_HASH.test(n));
  } catch {
    return [];
  }
}

export { hubCacheDir } from "./env.js";
