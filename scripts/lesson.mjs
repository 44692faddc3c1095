// npm run lesson -- 01   executes notebooks/01-*.ipynb headless with real Jupyter and the tslab
// kernel, writes the executed copy and its images to notebooks/.executed/, exits 1 on a failing cell.
// Also: npm run lesson -- path/to/any.ipynb [--out file.ipynb]
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { registerKernel, jupyterPython, env, root } from "./jupyter-env.mjs";

const args = process.argv.slice(2);
const which = args.find((a) => !a.startsWith("--"));
if (!which) {
  console.error("usage: npm run lesson -- <number | notebook.ipynb> [--out executed.ipynb] [--timeout seconds]");
  process.exit(2);
}
let nbPath;
if (fs.existsSync(which)) nbPath = path.resolve(which);
else {
  const dir = path.join(root, "notebooks");
  const hit = fs.readdirSync(dir).filter((f) => f.endsWith(".ipynb") && f.startsWith(which.padStart(2, "0")));
  if (hit.length !== 1) {
    console.error(`no single lesson matches "${which}" in notebooks/ (found: ${hit.join(", ") || "none"})`);
    process.exit(2);
  }
  nbPath = path.join(dir, hit[0]);
}
const opt = (k) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : undefined; };
const base = path.basename(nbPath, ".ipynb");
const outDir = path.join(path.dirname(nbPath), ".executed");
const out = opt("--out") ?? path.join(outDir, `${base}.ipynb`);
const images = path.join(outDir, `${base}_images`);
registerKernel();
const py = jupyterPython();
console.log(`executing ${path.relative(process.cwd(), nbPath)} with the tslab kernel ...`);
const r = spawnSync(py, [path.join(root, "scripts", "run_notebook.py"), nbPath, "--out", out, "--images", images,
  "--timeout", opt("--timeout") ?? "1800"], { stdio: "inherit", env: env() });
if (r.status === 0) console.log(`executed copy: ${path.relative(process.cwd(), out)}; images: ${path.relative(process.cwd(), images)}/`);
process.exit(r.status ?? 1);
