// Errors thrown while locating model files, each with a message that says what to do.

/** Base class of every error thrown by hub/. */
export class HubError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The id is neither an existing local folder nor a valid Hub repo id. */
export class InvalidRepoIdError extends HubError {}

/** A local folder path that does not exist. */
export class LocalFolderNotFoundError extends HubError {
  constructor(readonly folder: string) {
    super(`Local folder ${folder} does not exist.`);
  }
}

/** The file is not in the repo revision or local folder (tryHubFile returns null for it). */
export class HubEntryNotFoundError extends HubError {
  constructor(
    readonly repoId: string,
    readonly filename: string,
    message: string,
  ) {
    super(message);
  }
}

/** The repo does not exist, or is private and no valid token was sent. */
export class HubRepoNotFoundError extends HubError {
  constructor(
    readonly repoId: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The branch, tag or commit does not exist in the repo. */
export class HubRevisionNotFoundError extends HubError {
  constructor(
    readonly repoId: string,
    readonly revision: string,
    options?: { cause?: unknown },
  ) {
    super(`Revision "${revision}" not found in ${repoId}. Check the branch, tag or commit hash.`, options);
  }
}

/** 401/403: gated repo without accepted terms, or a token lacking permission. */
export class HubAuthError extends HubError {
  constructor(
    readonly repoId: string,
    readonly statusCode: number,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The Hub answered with an HTTP error that has no more specific class (e.g. 5xx). */
export class HubHttpError extends HubError {
  constructor(
    readonly statusCode: number,
    readonly url: string,
    /** X-Error-Code header (RepoNotFound, GatedRepo, RevisionNotFound, ...), if any. */
    readonly errorCode: string | null,
    message: string,
  ) {
    super(message);
  }
}

/** The file is not cached and the Hub cannot be asked (offline mode, no network, or server error). */
export class HubOfflineError extends HubError {
  constructor(
    readonly repoId: string,
    readonly filename: string,
    readonly cacheDir: string,
    /** Why the Hub was not asked, e.g. "HF_HUB_OFFLINE=1 is set" or "the Hub is unreachable (ENOTFOUND)". */
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
