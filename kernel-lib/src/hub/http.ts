// Talking to the Hub: a fetch wrapper (timeouts, token) and the HEAD request that
// huggingface_hub uses to learn a file's commit, etag and size.
import { HubError, HubHttpError } from "./errors.js";

/** A request that got no HTTP answer: DNS failure, refused connection, reset, timeout. */
export class NetworkFailure extends Error {
  constructor(
    readonly url: string,
    readonly code: string,
    options?: { cause?: unknown },
  ) {
    super(`${code} while requesting ${url}`, options);
    this.name = "NetworkFailure";
  }
}

function errorCode(e: unknown): string {
  const err = e as { name?: string; code?: unknown; cause?: { code?: unknown; name?: string } } | null;
  const code = err?.cause?.code ?? err?.code;
  if (typeof code === "string") return code;
  if (err?.name === "TimeoutError" || err?.cause?.name === "TimeoutError") return "ETIMEDOUT";
  if (err?.name === "AbortError") return "ABORTED";
  return "fetch failed";
}

function urlOf(input: string | URL | Request): string {
  return typeof input === "string" ? input : input instanceof URL ? input.href : input.url;
}

/**
 * Wraps a fetch: adds `Bearer token` for requests to the Hub's origin, fails with NetworkFailure when
 * no response headers arrive within `timeoutMs`, and aborts everything when `session` aborts.
 */
export function hubFetch(
  base: typeof fetch,
  hubUrl: string,
  token: string | undefined,
  timeoutMs: number,
  session?: AbortSignal,
): typeof fetch {
  const hubOrigin = new URL(hubUrl).origin;
  const wrapped = async (input: string | URL | Request, init: RequestInit = {}): Promise<Response> => {
    const url = urlOf(input);
    const headers = new Headers(init.headers ?? (input instanceof Request ? input.headers : undefined));
    if (token && !headers.has("authorization") && new URL(url).origin === hubOrigin) {
      headers.set("authorization", `Bearer ${token}`);
    }
    const timer = new AbortController();
    const handle = setTimeout(
      () => timer.abort(new NetworkFailure(url, "ETIMEDOUT", { cause: new Error(`no answer in ${timeoutMs / 1000} s`) })),
      timeoutMs,
    );
    const signals = [timer.signal];
    if (session) signals.push(session);
    if (init.signal) signals.push(init.signal);
    try {
      return await base(input, { ...init, headers, signal: AbortSignal.any(signals) });
    } catch (e) {
      if (e instanceof NetworkFailure || e instanceof HubError) throw e;
      throw new NetworkFailure(url, errorCode(e), { cause: e });
    } finally {
      clearTimeout(handle);
    }
  };
  return wrapped as typeof fetch;
}

/** What a HEAD on /{repo}/resolve/{revision}/{path} tells. */
export type FileMetadata =
  | { exists: true; commit: string; etag: string; size: number | null }
  | { exists: false; commit: string | null };

function encodePath(p: string): string {
  return p.split("/").map(encodeURIComponent).join("/");
}

export function resolveUrl(hubUrl: string, repoId: string, revision: string, relPath: string): string {
  return `${hubUrl}/${repoId}/resolve/${encodeURIComponent(revision)}/${encodePath(relPath)}`;
}

/** Strips W/ and quotes from an ETag, as Python does. */
function normalizeEtag(etag: string | null): string | null {
  return etag === null ? null : etag.replace(/^W\//, "").replace(/^"|"$/g, "");
}

/**
 * HEAD request for a file's metadata. Follows relative redirects (renamed repos) but not absolute ones
 * (the CDN), since the Hub's own redirect response carries X-Repo-Commit and X-Linked-Etag.
 * Throws HubHttpError for HTTP errors other than a missing file, NetworkFailure without an answer.
 */
export async function fileMetadata(
  f: typeof fetch,
  hubUrl: string,
  repoId: string,
  revision: string,
  relPath: string,
): Promise<FileMetadata> {
  let url = resolveUrl(hubUrl, repoId, revision, relPath);
  for (let hops = 0; ; hops++) {
    const resp = await f(url, { method: "HEAD", redirect: "manual", headers: { "accept-encoding": "identity" } });
    const h = resp.headers;
    const location = h.get("location");
    if (resp.status >= 300 && resp.status < 400 && location !== null && !/^[a-z][a-z0-9+.-]*:/i.test(location) && hops < 5) {
      url = new URL(location, url).href;
      continue;
    }
    const code = h.get("x-error-code");
    if (resp.status === 404 && code === "EntryNotFound") {
      return { exists: false, commit: h.get("x-repo-commit") };
    }
    if (resp.status >= 400) {
      const msg = h.get("x-error-message") ?? resp.statusText;
      throw new HubHttpError(resp.status, url, code, `HTTP ${resp.status}${msg ? ` ${msg}` : ""} for ${url}`);
    }
    const commit = h.get("x-repo-commit");
    const etag = normalizeEtag(h.get("x-linked-etag") ?? h.get("etag"));
    if (!commit || !etag) {
      throw new HubError(
        `${url} answered without ${!commit ? "X-Repo-Commit" : "ETag"}: is ${hubUrl} a Hugging Face Hub (check HF_ENDPOINT)?`,
      );
    }
    // the etag names a file in blobs/: no path separators, no "..", as the Hub's hex ids never have
    if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(etag)) {
      throw new HubError(`${url} answered ETag ${JSON.stringify(etag)}; allowed: letters, digits, ".", "_" and "-" (a hex id): is ${hubUrl} a Hugging Face Hub (check HF_ENDPOINT)?`);
    }
    const size = Number(h.get("x-linked-size") ?? h.get("content-length") ?? NaN);
    return { exists: true, commit, etag, size: Number.isFinite(size) ? size : null };
  }
}
