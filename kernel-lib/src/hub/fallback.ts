// What to say and do when the Hub cannot be used: typed HTTP errors, cache-fallback warnings,
// and the "not cached" error with its advice.
import { resolve } from "node:path";
import { snapshotCommits } from "./cache.js";
import { HubAuthError, HubError, HubHttpError, HubOfflineError, HubRepoNotFoundError, HubRevisionNotFoundError } from "./errors.js";
import { NetworkFailure } from "./http.js";
import type { HubContext } from "./options.js";
import { repoFolderName } from "./repo-id.js";
import { warnOnce } from "./session.js";

/** HTTP errors as typed HubErrors; a HubHttpError comes back unchanged for server-side failures. */
export function classifyHttpError(ctx: HubContext, e: HubHttpError): HubError {
  const tokenNote = ctx.token ? "a token was sent but may lack access" : "no token was sent";
  const gatedAdvice = `accept its conditions at ${ctx.hubUrl}/${ctx.repoId} while logged in, then set HF_TOKEN (or pass token) to an access token of that account`;
  if (e.errorCode === "RevisionNotFound") return new HubRevisionNotFoundError(ctx.repoId, ctx.revision, { cause: e });
  if (e.errorCode === "GatedRepo") {
    return new HubAuthError(ctx.repoId, e.statusCode, `${ctx.repoId} is a gated model (${tokenNote}): ${gatedAdvice}.`, {
      cause: e,
    });
  }
  if (
    e.errorCode === "RepoNotFound" ||
    e.errorCode === "RepositoryNotFound" ||
    e.statusCode === 401 ||
    (e.statusCode === 404 && e.errorCode === null)
  ) {
    const local = ctx.repoId.includes("/") ? ` If you meant a local folder, ${resolve(ctx.repoId)} does not exist.` : "";
    return new HubRepoNotFoundError(
      ctx.repoId,
      `Repository ${ctx.repoId} not found on ${ctx.hubUrl} (HTTP ${e.statusCode}). Check the spelling; ` +
        `if it is private or gated, set HF_TOKEN (or pass token) to an access token with read access (${tokenNote}).${local}`,
      { cause: e },
    );
  }
  if (e.statusCode === 403) {
    return new HubAuthError(
      ctx.repoId,
      403,
      `Access to ${ctx.repoId} denied (HTTP 403, ${tokenNote}). Check that HF_TOKEN has read access; if the model is gated, ${gatedAdvice}.`,
      { cause: e },
    );
  }
  return e;
}

/** Why the Hub could not be used, as a phrase: "the Hub (url) is unreachable (ENOTFOUND)". */
export function failureReason(ctx: HubContext, e: NetworkFailure | HubHttpError): string {
  return e instanceof NetworkFailure
    ? `the Hub (${ctx.hubUrl}) is unreachable (${e.code})`
    : `the Hub (${ctx.hubUrl}) answered HTTP ${e.statusCode}`;
}

/** One console.warn per repo and revision: the cache is used instead of the Hub. */
export function warnFallback(ctx: HubContext, commit: string, reason: string): void {
  warnOnce(
    `${ctx.hubUrl} ${ctx.repoId} ${ctx.revision}`,
    `[hub] ${reason.charAt(0).toUpperCase()}${reason.slice(1)}: using the cached ${ctx.repoId} ` +
      `(revision ${ctx.revision}, commit ${commit.slice(0, 7)}) from ${ctx.cacheDir}.`,
  );
}

/**
 * The error for "not cached and the Hub cannot be used": names the repo, the file, the cache folder
 * and the ways out. `what` is e.g. `"unet/config.json"`; `detail` says what the cache holds, if known.
 */
export async function offlineError(
  ctx: HubContext,
  file: string,
  what: string,
  reason: string,
  detail: string | null,
  cause?: unknown,
): Promise<HubOfflineError> {
  if (detail === null) {
    const shas = await snapshotCommits(ctx.storage);
    detail =
      shas.length === 0
        ? "nothing cached for this repo"
        : `no refs/${ctx.revision}; cached snapshots: ${shas.join(", ")} (pass revision: "<sha>" to use one)`;
  }
  const rerun = [
    process.env["HF_HUB_OFFLINE"] ? `unset HF_HUB_OFFLINE, now "${process.env["HF_HUB_OFFLINE"]}"` : "",
    ctx.offlineReason?.startsWith("localFilesOnly") ? "drop localFilesOnly" : "",
  ]
    .filter(Boolean)
    .join(", ");
  const message = [
    `Cannot get ${what} of ${ctx.repoId} (revision ${ctx.revision}): ${reason}, and it is not in the local cache.`,
    `Looked in ${ctx.storage} (${detail}).`,
    `To fix it, either:`,
    `  - connect to the internet and run again${rerun ? ` (${rerun})` : ""};`,
    `  - or, on a machine with internet, download it with Python's huggingface_hub (\`hf download ${ctx.repoId}\`, ` +
      `formerly \`huggingface-cli download ${ctx.repoId}\`) and copy its ${repoFolderName(ctx.repoId)} folder ` +
      `into ${ctx.cacheDir} (or point HF_HUB_CACHE at a copy);`,
    `  - or pass the path of a local folder holding the model files instead of "${ctx.repoId}".`,
  ].join("\n");
  return new HubOfflineError(ctx.repoId, file, ctx.cacheDir, reason, message, { cause });
}
