// Fetching one file's bytes (through @huggingface/hub, which also speaks Xet) into the Python-layout cache.
import { HubApiError, downloadFile } from "@huggingface/hub";
import { mkdir, open, rm, type FileHandle } from "node:fs/promises";
import { dirname, join } from "node:path";
import { randomBytes } from "node:crypto";
import { blobPath, commitBlob, exists, linkSnapshot, snapshotFile } from "./cache.js";
import { downloadTimeoutMs, envFlag, metadataTimeoutMs } from "./env.js";
import { HubError, HubHttpError } from "./errors.js";
import { NetworkFailure, hubFetch } from "./http.js";
import type { HubContext } from "./options.js";

function asError(e: unknown): Error {
  // @huggingface/hub's WebBlob.stream() aborts with the error *message* (a string).
  return e instanceof Error ? e : new Error(String(e));
}

/** Read with a stall timeout: rejects with NetworkFailure if no chunk arrives in `ms`. */
async function readWithin<T>(read: Promise<T>, ms: number, url: string, onStall: (e: Error) => void): Promise<T> {
  let handle: NodeJS.Timeout | undefined;
  const stall = new Promise<never>((_, reject) => {
    handle = setTimeout(() => {
      const err = new NetworkFailure(url, "ETIMEDOUT", { cause: new Error(`no data for ${ms / 1000} s`) });
      reject(err); // first, so it wins the race against a read that the cancel ends
      onStall(err);
    }, ms);
  });
  try {
    return await Promise.race([read, stall]);
  } finally {
    clearTimeout(handle);
  }
}

/** snapshots/<commit>/<relPath> for a file whose metadata we know, downloading the blob if absent. */
export async function downloadToCache(
  ctx: HubContext,
  relPath: string,
  meta: { commit: string; etag: string; size: number | null },
): Promise<string> {
  const pointer = snapshotFile(ctx.storage, meta.commit, relPath);
  if (await exists(pointer)) return pointer;
  if (await exists(blobPath(ctx.storage, meta.etag))) return linkSnapshot(ctx.storage, meta.commit, relPath, meta.etag);

  const session = new AbortController();
  const f = hubFetch(ctx.fetch, ctx.hubUrl, ctx.token, Math.max(metadataTimeoutMs(), downloadTimeoutMs()), session.signal);
  const label = `${ctx.repoId}/${relPath}`;
  const tmp = join(ctx.storage, "blobs", `${meta.etag}.${randomBytes(4).toString("hex")}.incomplete`);
  let file: FileHandle | undefined;
  try {
    const blob = await downloadFile({
      repo: { type: "model", name: ctx.repoId },
      path: relPath,
      revision: meta.commit,
      hubUrl: ctx.hubUrl,
      fetch: f,
      xet: !envFlag("HF_HUB_DISABLE_XET"),
    });
    if (blob === null) throw new HubError(`${label} disappeared from ${ctx.hubUrl} during the download; run again.`);
    await mkdir(dirname(tmp), { recursive: true });
    file = await open(tmp, "w");
    const total = meta.size ?? blob.size;
    let loaded = 0;
    const reader = (blob.stream() as ReadableStream<Uint8Array>).getReader();
    ctx.onProgress?.({ file: relPath, loaded, total });
    for (;;) {
      const { done, value } = await readWithin(reader.read(), downloadTimeoutMs(), label, (e) => {
        session.abort(e);
        reader.cancel(e).catch(() => {});
      });
      if (done) break;
      await file.write(value);
      loaded += value.byteLength;
      ctx.onProgress?.({ file: relPath, loaded, total });
    }
    await file.close();
    file = undefined;
    if (meta.size !== null && loaded !== meta.size) {
      throw new HubError(`Download of ${label} is incomplete (${loaded} of ${meta.size} bytes); run again.`);
    }
    await commitBlob(ctx.storage, meta.etag, tmp);
  } catch (e) {
    await file?.close().catch(() => {});
    await rm(tmp, { force: true });
    if (e instanceof NetworkFailure) {
      throw new HubError(`Download of ${label} failed: network ${e.code}. Run again to retry.`, { cause: e });
    }
    if (e instanceof HubApiError) {
      throw new HubHttpError(e.statusCode, e.url, null, `Download of ${label} failed: ${e.message}`);
    }
    throw asError(e);
  }
  return linkSnapshot(ctx.storage, meta.commit, relPath, meta.etag);
}

