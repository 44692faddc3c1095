// tslab compiles a cell's import() of a file to require(), which cannot load an ES module (.mjs): the kit's data
// generators and recipes are ES modules. This loads one by its path, relative to the notebook's folder.
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import * as fs from "node:fs";
import { ArgumentError } from "../utils/check-argument.js";

/** `import()` of an ES module file (e.g. "../datasets/generators/cat-faces.mjs"), from a notebook cell. */
export async function importEsm<T = Record<string, unknown>>(file: string): Promise<T> {
  if (typeof file !== "string" || file === "") throw new ArgumentError(`importEsm: file must be a path to an ES module; got ${JSON.stringify(file)}`);
  const abs = path.resolve(file);
  if (!fs.existsSync(abs)) throw new ArgumentError(`importEsm: no file ${abs} (given "${file}", resolved from ${process.cwd()})`);
  return import(pathToFileURL(abs).href) as Promise<T>;
}
