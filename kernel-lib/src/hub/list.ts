// Listing the files of a repo revision or local folder (pipeline and variant discovery).
import { HubApiError, listFiles } from "@huggingface/hub";
import { join } from "node:path";
import { exists, readRef, snapshotDir, walkFiles } from "./cache.js";
import { metadataTimeoutMs } from "./env.js";
import { HubHttpError, HubRevisionNotFoundError } from "./errors.js";
import { classifyHttpError, failureReason, offlineError, warnFallback } from "./fallback.js";
import { NetworkFailure, hubFetch } from "./http.js";
import { localFolder } from "./local.js";
import { hubContext, repoPath, type HubContext, type HubOptions } from "./options.js";
import { isLocalPath, validateRepoId } from "./repo-id.js";
import { markReachable, markUnreachable } from "./session.js";

/**
 * Files of a repo revision or local folder, "/"-separated and sorted; with `subfolder`, only the files
 * under it, relative to it. Online from the Hub's tree API; offline (or Hub unreachable) from the
 * cached snapshot, which holds only the files downloaded so far.
 */
export async function listRepoFiles(idOrPath: string, opts: HubOptions = {}): Promise<string[]> {
  const sub = opts.subfolder ? repoPath(opts.subfolder) : "";
  if (isLocalPath(idOrPath)) {
    const root = await localFolder(idOrPath);
    return walkFiles(sub ? join(root, ...sub.split("/")) : root);
  }
  validateRepoId(idOrPath);
  const ctx = hubContext(idOrPath, opts);
  if (ctx.offlineReason !== null) return fromSnapshot(ctx, sub, ctx.offlineReason);

  const files: string[] = [];
  try {
    const f = hubFetch(ctx.fetch, ctx.hubUrl, ctx.token, metadataTimeoutMs());
    const entries = listFiles({
      repo: { type: "model", name: ctx.repoId },
      revision: encodeURIComponent(ctx.revision), // listFiles pastes it into the URL as is
      recursive: true,
      hubUrl: ctx.hubUrl,
      fetch: f,
    });
    for await (const entry of entries) if (entry.type === "file") files.push(entry.path);
    markReachable(ctx.hubUrl);
  } catch (e) {
    return onListError(ctx, sub, e);
  }
  const prefix = sub ? `${sub}/` : "";
  return files
    .filter((p) => p.startsWith(prefix))
    .map((p) => p.slice(prefix.length))
    .sort();
}

async function onListError(ctx: HubContext, sub: string, e: unknown): Promise<string[]> {
  if (e instanceof NetworkFailure) {
    markUnreachable(ctx.hubUrl);
    return fromSnapshot(ctx, sub, failureReason(ctx, e), e);
  }
  if (!(e instanceof HubApiError)) throw e;
  // The tree API answers JSON errors without X-Error-Code: tell revision from repo by the message.
  if (e.statusCode === 404 && /\brev(ision)?\b/i.test(e.message)) {
    throw new HubRevisionNotFoundError(ctx.repoId, ctx.revision, { cause: e });
  }
  const http = new HubHttpError(e.statusCode, e.url, null, e.message);
  const typed = classifyHttpError(ctx, http);
  if (typed === http || (await cachedSnapshot(ctx)) !== null) return fromSnapshot(ctx, sub, failureReason(ctx, http), e);
  throw typed;
}

async function cachedSnapshot(ctx: HubContext): Promise<string | null> {
  const commit = await readRef(ctx.storage, ctx.revision);
  return commit !== null && (await exists(snapshotDir(ctx.storage, commit))) ? commit : null;
}

async function fromSnapshot(ctx: HubContext, sub: string, reason: string, cause?: unknown): Promise<string[]> {
  const commit = await cachedSnapshot(ctx);
  if (commit === null) throw await offlineError(ctx, "", "the file list", reason, null, cause);
  if (cause !== undefined) warnFallback(ctx, commit, reason);
  const dir = snapshotDir(ctx.storage, commit);
  return walkFiles(sub ? join(dir, ...sub.split("/")) : dir);
}
