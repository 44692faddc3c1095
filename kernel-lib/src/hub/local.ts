// Files of a model stored in a plain local folder.
import { readdir, stat } from "node:fs/promises";
import { join, resolve } from "node:path";
import { expandUser } from "./env.js";
import { HubEntryNotFoundError, HubError, LocalFolderNotFoundError } from "./errors.js";
import { exists } from "./cache.js";

/** Absolute folder path; throws LocalFolderNotFoundError if missing. */
export async function localFolder(path: string): Promise<string> {
  const abs = resolve(expandUser(path));
  let isDir: boolean;
  try {
    isDir = (await stat(abs)).isDirectory();
  } catch {
    throw new LocalFolderNotFoundError(abs);
  }
  if (!isDir) throw new HubError(`${abs} is a file; pass the folder that holds the model files.`);
  return abs;
}

async function describeFolder(dir: string): Promise<string> {
  const names = (await readdir(dir, { withFileTypes: true }))
    .map((d) => (d.isDirectory() ? `${d.name}/` : d.name))
    .sort();
  if (names.length === 0) return "It is empty.";
  const shown = names.slice(0, 30).join(", ");
  return `It contains: ${shown}${names.length > 30 ? `, ... (${names.length} entries)` : ""}.`;
}

/** Path of relPath inside a local folder; HubEntryNotFoundError (naming what is there) if missing. */
export async function localFile(folder: string, relPath: string): Promise<string> {
  const root = await localFolder(folder);
  const path = join(root, ...relPath.split("/"));
  if (await exists(path)) return path;
  // Describe the deepest existing folder on the way to the file.
  const parts = relPath.split("/").slice(0, -1);
  let dir = root;
  for (const p of parts) {
    if (!(await exists(join(dir, p)))) break;
    dir = join(dir, p);
  }
  throw new HubEntryNotFoundError(
    folder,
    relPath,
    `File "${relPath}" not found in local folder ${root}. ${dir === root ? "" : `${dir}: `}${await describeFolder(dir)}`,
  );
}
