// Where this project's Jupyter lives: a project-local JUPYTER_PATH holding the tslab kernel spec
// (no global state), and Debian's jupyter (python3 with notebook, nbconvert, nbclient).
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const jupyterPath = path.join(root, ".jupyter", "share", "jupyter");

/** Writes .jupyter/share/jupyter/kernels/tslab/kernel.json pointing at this checkout's tslab. */
export function registerKernel() {
  const dir = path.join(jupyterPath, "kernels", "tslab");
  if (!fs.existsSync(dir)) fs.mkdirSync(dir, { recursive: true });
  const tslab = path.join(root, "node_modules", "tslab", "bin", "tslab");
  if (!fs.existsSync(tslab)) throw new Error(`tslab is not installed at ${tslab}: run npm install first`);
  const spec = {
    argv: [process.execPath, tslab, "kernel", "--config-path", "{connection_file}"],
    display_name: "TypeScript (tslab, diffusion kit)",
    language: "typescript",
    env: { NODE_OPTIONS: "--max-old-space-size=16384" },
  };
  const text = JSON.stringify(spec, null, 2) + "\n";
  const file = path.join(dir, "kernel.json");
  // a checkout the caller cannot write (a teacher grading with a kit installed by root) keeps its registration
  if (!(fs.existsSync(file) && fs.readFileSync(file, "utf8") === text)) fs.writeFileSync(file, text);
  return dir;
}

/** Debian's python3 that has nbclient (CI installs it with apt); a clear error if missing. */
export function jupyterPython() {
  for (const py of ["/usr/bin/python3", "python3"]) {
    try {
      execFileSync(py, ["-c", "import nbclient, nbformat, notebook"], { stdio: "ignore" });
      return py;
    } catch {}
  }
  throw new Error(
    "Jupyter is not installed. On Debian/Ubuntu: sudo apt-get install jupyter-notebook jupyter-nbconvert python3-nbclient python3-ipykernel " +
      "(or pip install notebook nbclient nbconvert), then run this again.",
  );
}

export function env() {
  return { ...process.env, JUPYTER_PATH: jupyterPath + (process.env.JUPYTER_PATH ? path.delimiter + process.env.JUPYTER_PATH : "") };
}
