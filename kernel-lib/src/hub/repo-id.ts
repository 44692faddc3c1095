// Telling local folders from Hub repo ids, and validating ids like huggingface_hub's validate_repo_id.
import { statSync } from "node:fs";
import { InvalidRepoIdError } from "./errors.js";
import { expandUser } from "./env.js";

const PART = /^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$/;
export const COMMIT_HASH = /^[0-9a-f]{40}$/;

/** Looks like a filesystem path ("./x", "../x", "/abs", "~/x", "C:\x", "x\y") or is an existing directory. */
export function isLocalPath(idOrPath: string): boolean {
  if (/^(\.{1,2}|~)([\\/]|$)/.test(idOrPath) || idOrPath.startsWith("/")) return true;
  if (/^[A-Za-z]:[\\/]/.test(idOrPath) || idOrPath.includes("\\")) return true;
  try {
    return statSync(expandUser(idOrPath)).isDirectory();
  } catch {
    return false;
  }
}

/** Why `id` is not a valid repo id, or null if it is. */
export function repoIdProblem(id: string): string | null {
  if (id.trim() === "") return "it is empty";
  const parts = id.split("/");
  if (parts.length > 2) return 'a repo id has the form "name" or "namespace/name" (at most one "/")';
  if (id.length > 96) return "it is longer than 96 characters";
  if (id.includes("--") || id.includes("..")) return '"--" and ".." are not allowed';
  if (id.endsWith(".git")) return 'it must not end with ".git"';
  for (const p of parts) {
    if (!PART.test(p)) {
      return `"${p}" must use only letters, digits, "-", "_" and ".", and not start or end with "-" or "."`;
    }
  }
  return null;
}

/** Throws InvalidRepoIdError unless `id` is a valid Hub repo id. */
export function validateRepoId(id: string): void {
  const problem = repoIdProblem(id);
  if (problem !== null) {
    throw new InvalidRepoIdError(
      `"${id}" is neither an existing local folder nor a valid Hub repo id: ${problem}. ` +
        `Pass a repo id like "google/ddpm-cifar10-32" or a folder path like "./my-model".`,
    );
  }
}

/** Cache folder name of a model repo, as in Python: "models--org--name". */
export function repoFolderName(repoId: string): string {
  return ["models", ...repoId.split("/")].join("--");
}
