// npm start: Jupyter on notebooks/ with this project's tslab kernel.
import { spawn } from "node:child_process";
import * as path from "node:path";
import { registerKernel, jupyterPython, env, root } from "./jupyter-env.mjs";

registerKernel();
const py = jupyterPython();
// `--dir=exercises` opens another folder of the kit (npm run exercises)
const dirArg = process.argv.slice(2).find((a) => a.startsWith("--dir="));
const folder = dirArg ? dirArg.slice(6) : "notebooks";
const args = ["-m", "notebook", `--notebook-dir=${path.join(root, folder)}`, ...process.argv.slice(2).filter((a) => a !== dirArg)];
// Jupyter refuses to run as root (containers, CI machines) unless told to.
if (process.getuid?.() === 0 && !args.includes("--allow-root")) args.push("--allow-root");
console.log(`Starting Jupyter on ${folder}/ (kernel "TypeScript (tslab, diffusion kit)"): ${py} ${args.join(" ")}`);
const child = spawn(py, args, { stdio: "inherit", env: env() });
child.on("exit", (code) => process.exit(code ?? 0));
