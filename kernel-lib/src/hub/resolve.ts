// Finding one file of a model: local folder, Python-compatible cache, or a download from the Hub.
import { lookupCached, markMissing, writeRef } from "./cache.js";
import { metadataTimeoutMs } from "./env.js";
import { downloadToCache } from "./download.js";
import { HubEntryNotFoundError, HubError, HubHttpError, HubRevisionNotFoundError } from "./errors.js";
import { classifyHttpError, failureReason, offlineError, warnFallback } from "./fallback.js";
import { NetworkFailure, fileMetadata, hubFetch } from "./http.js";
import { localFile } from "./local.js";
import { hubContext, repoPath, type HubContext, type HubOptions } from "./options.js";
import { COMMIT_HASH, isLocalPath, validateRepoId } from "./repo-id.js";
import { markReachable, markUnreachable, recentlyUnreachable } from "./session.js";

/** A file, or an error meaning "absent" (tryHubFile turns it into null). */
type Located = { path: string } | { absent: HubError };

/**
 * Path of one file of a Hub repo or local folder, downloading it into the Python-compatible cache if
 * needed (like huggingface_hub's hf_hub_download). Throws a HubError subclass saying what to do.
 */
export async function hubFileDownload(idOrPath: string, filename: string, opts: HubOptions = {}): Promise<string> {
  const found = await locate(idOrPath, filename, opts);
  if ("absent" in found) throw found.absent;
  return found.path;
}

/**
 * Like hubFileDownload, but null when the file does not exist: 404 on the Hub, missing from a local
 * folder, or (offline / Hub unreachable) missing from a cached snapshot of that revision.
 * Other failures (no network and nothing cached, unknown repo, auth) still throw.
 */
export async function tryHubFile(idOrPath: string, filename: string, opts: HubOptions = {}): Promise<string | null> {
  const found = await locate(idOrPath, filename, opts);
  return "absent" in found ? null : found.path;
}

async function locate(idOrPath: string, filename: string, opts: HubOptions): Promise<Located> {
  const relPath = repoPath(filename, opts.subfolder);
  if (isLocalPath(idOrPath)) {
    try {
      return { path: await localFile(idOrPath, relPath) };
    } catch (e) {
      if (e instanceof HubEntryNotFoundError) return { absent: e };
      throw e;
    }
  }
  validateRepoId(idOrPath);
  const ctx = hubContext(idOrPath, opts);

  // A commit sha already in the cache never changes: no request (as huggingface_hub).
  if (COMMIT_HASH.test(ctx.revision)) {
    const hit = await lookupCached(ctx.storage, ctx.revision, relPath);
    if (hit.state === "hit") return { path: hit.path };
  }
  if (ctx.offlineReason !== null) return fromCache(ctx, relPath, ctx.offlineReason);
  if (recentlyUnreachable(ctx.hubUrl)) {
    // Skip another network timeout when the file is cached; otherwise try again.
    const hit = await lookupCached(ctx.storage, ctx.revision, relPath);
    if (hit.state === "hit") {
      warnFallback(ctx, hit.commit, `the Hub (${ctx.hubUrl}) was unreachable a moment ago`);
      return { path: hit.path };
    }
  }

  let meta;
  try {
    const f = hubFetch(ctx.fetch, ctx.hubUrl, ctx.token, metadataTimeoutMs());
    meta = await fileMetadata(f, ctx.hubUrl, ctx.repoId, ctx.revision, relPath);
    markReachable(ctx.hubUrl);
  } catch (e) {
    return onMetadataError(ctx, relPath, e);
  }

  if (!meta.exists) {
    if (meta.commit !== null) {
      await writeRef(ctx.storage, ctx.revision, meta.commit);
      await markMissing(ctx.storage, meta.commit, relPath);
    }
    const msg = `File "${relPath}" not found in ${ctx.repoId} (revision ${ctx.revision}) on ${ctx.hubUrl}.`;
    return { absent: new HubEntryNotFoundError(ctx.repoId, relPath, msg) };
  }
  await writeRef(ctx.storage, ctx.revision, meta.commit);
  return { path: await downloadToCache(ctx, relPath, meta) };
}

/** The Hub could not be asked, or refused: use the cache as huggingface_hub does, else a typed error. */
async function onMetadataError(ctx: HubContext, relPath: string, e: unknown): Promise<Located> {
  if (e instanceof NetworkFailure) {
    markUnreachable(ctx.hubUrl);
    return fromCache(ctx, relPath, failureReason(ctx, e), e);
  }
  if (!(e instanceof HubHttpError)) throw e;
  const typed = classifyHttpError(ctx, e);
  if (typed instanceof HubRevisionNotFoundError) throw typed;
  // 401/403/404-repo/5xx: a cached copy still serves, else the typed error (or "not cached" for 5xx).
  if (typed === e) return fromCache(ctx, relPath, failureReason(ctx, e), e);
  const hit = await lookupCached(ctx.storage, ctx.revision, relPath);
  if (hit.state !== "hit") throw typed;
  warnFallback(ctx, hit.commit, failureReason(ctx, e));
  return { path: hit.path };
}

/** Serve relPath from the cache only. `reason` says why the Hub is not used; `cause` set = warn on use. */
async function fromCache(ctx: HubContext, relPath: string, reason: string, cause?: unknown): Promise<Located> {
  const hit = await lookupCached(ctx.storage, ctx.revision, relPath);
  if (cause !== undefined && hit.commit !== null && (hit.state !== "miss" || hit.snapshotExists)) {
    warnFallback(ctx, hit.commit, reason);
  }
  if (hit.state === "hit") return { path: hit.path };
  if (hit.state === "known-missing") {
    const msg = `File "${relPath}" does not exist in ${ctx.repoId} at commit ${hit.commit} (recorded in the cache; ${reason}).`;
    return { absent: new HubEntryNotFoundError(ctx.repoId, relPath, msg) };
  }
  const detail =
    hit.commit === null
      ? null
      : hit.snapshotExists
        ? `snapshot ${hit.commit} has no ${relPath}`
        : `refs/${ctx.revision} points to ${hit.commit}, which has no snapshot folder`;
  const err = await offlineError(ctx, relPath, `"${relPath}"`, reason, detail, cause);
  // The revision is cached but not this file: a probe treats it as absent.
  if (hit.snapshotExists) return { absent: err };
  throw err;
}

// The public API of hub/ is importable from this file too.
export { listRepoFiles } from "./list.js";
export { isLocalPath, validateRepoId } from "./repo-id.js";
export { hubCacheDir } from "./env.js";
export type { HubOptions, HubProgress } from "./options.js";
export * from "./errors.js";
