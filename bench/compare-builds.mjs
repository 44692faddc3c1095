// node bench/compare-builds.mjs --before=DIR/kernel-lib/dist/index.js [--after=kernel-lib] [--rounds=3] [--cases=a,b] [--json=FILE]
// The performance guard of a refactor: the same cases on two builds of kernel-lib (e.g. the last commit's dist, built
// in a copy of the tree, against the working tree's), alternated in one run (A B B A A B ...), each case in a fresh
// process on one wasm thread, timed by the main thread's CPU time (/proc/thread-self/schedstat: the kernels' own
// work, robust to other jobs taking the cores). Prints, per case, the median seconds of each build and after/before.
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const here = path.dirname(fileURLToPath(import.meta.url));
const args = process.argv.slice(2);
const arg = (name, dflt) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const sdCfg = (name) => JSON.parse(fs.readFileSync(path.resolve(here, `../../shared/fixtures/configs/stable-diffusion-v1-5/${name}/config.json`), "utf8"));

/** Each case: build once (not timed), warm up once, then time `runs` calls; returns seconds per call. */
const CASES = {
  // the real SD 1.5 UNet at 32x32 latents, CFG batch, weights re-packed per call (the offloaded path: per-tap convs)
  "sd15-unet-32-repacked": async (K, tf) => {
    K.setKeepPackedWeights(false);
    const m = K.UNet2DConditionModel.fromConfig(sdCfg("unet"), { init: "random", seed: 0 });
    const x = tf.randomNormal([2, 32, 32, 4]), c = tf.randomNormal([2, 77, 768]);
    return { run: () => m.forward(x, 500, c).sample, runs: 1 };
  },
  // the real CLIP text encoder, CFG batch (12 heads of 77 tokens: many small attention pairs)
  "sd15-clip": async (K, tf) => {
    const m = K.CLIPTextModel.fromConfig(sdCfg("text_encoder"), { init: "random", seed: 0 });
    const ids = tf.tensor2d(Array.from({ length: 2 }, () => Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 8 ? 320 + i : 49407))), undefined, "int32");
    return { run: () => { const o = m.forward(ids); o.poolerOutput.dispose(); return o.lastHiddenState; }, runs: 3 };
  },
  // the real VAE decoder on 32x32 latents, packed weights (resident): GroupNorm statistics, mid-block attention
  "sd15-vae-decode-32": async (K, tf) => {
    const m = K.AutoencoderKL.fromConfig(sdCfg("vae"), { init: "random", seed: 0 });
    const z = tf.randomNormal([1, 32, 32, 4]);
    return { run: () => m.decode(z).sample, runs: 1 };
  },
  // a DDPMTrainer step of the ddpm-cat recipe at batch 16 (every gradient: convs, GroupNorm, attention)
  "train-ddpm-cat": async (K, tf) => {
    const { RECIPES } = await import("../scripts/train-recipes.mjs");
    const r = RECIPES["ddpm-cat"];
    const unet = K.UNet2DModel.fromConfig(r.unet, { seed: 1 });
    const trainer = new K.DDPMTrainer(unet, K.DDPMScheduler.fromConfig(r.scheduler), { data: r.data(0), batchSize: 16, lr: r.train.lr, warmupSteps: 0 });
    return { run: () => { trainer.trainStep(); return null; }, runs: 3 };
  },
};

async function child(lib, name) {
  // tfjs as the build resolves it (a build in another tree has its own node_modules: one engine per process)
  const require = createRequire(lib === "kernel-lib" ? import.meta.url : lib);
  const K = require(lib);
  const tf = require("@tensorflow/tfjs");
  process.env.TFJS_WASM_THREADS = "1";
  await K.initBackend({ prefer: "wasm", wasmThreads: 1 });
  const cpu = () => Number(fs.readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e9;
  const { run, runs } = await CASES[name](K, tf);
  const once = () => { const y = run(); if (y) { y.dataSync(); y.dispose(); } };
  once(); // warm-up: kernels compiled, operators packed where kept
  const times = [];
  for (let i = 0; i < runs; i++) {
    const t = cpu();
    once();
    times.push(cpu() - t);
  }
  times.sort((a, b) => a - b);
  console.log(`RESULT ${JSON.stringify({ seconds: times[Math.floor(times.length / 2)], times })}`);
}

async function main() {
  const before = arg("before", null);
  if (!before) throw new Error("--before=path/to/kernel-lib/dist/index.js is required (the build to compare against)");
  const builds = { before: path.resolve(before), after: arg("after", "kernel-lib") };
  if (builds.after !== "kernel-lib") builds.after = path.resolve(builds.after);
  const rounds = Number(arg("rounds", 3));
  const names = arg("cases", Object.keys(CASES).join(",")).split(",");
  const results = {};
  for (const name of names) {
    if (!CASES[name]) throw new Error(`unknown case "${name}"; cases: ${Object.keys(CASES).join(", ")}`);
    results[name] = { before: [], after: [] };
    for (let r = 0; r < rounds; r++) {
      for (const which of r % 2 === 0 ? ["before", "after"] : ["after", "before"]) {
        const p = spawnSync(process.execPath, ["--max-old-space-size=16000", fileURLToPath(import.meta.url), "--child", `--lib=${builds[which]}`, `--case=${name}`],
          { encoding: "utf8", maxBuffer: 1 << 26, env: { ...process.env, TFJS_WASM_THREADS: "1" } });
        const line = p.stdout.split("\n").find((l) => l.startsWith("RESULT "));
        if (!line) throw new Error(`${name} (${which}) failed: ${p.stderr.split("\n").slice(-5).join(" ")}`);
        results[name][which].push(JSON.parse(line.slice(7)).seconds);
        process.stdout.write(`${name} ${which}: ${results[name][which].at(-1).toFixed(3)} s\n`);
      }
    }
    const med = (a) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)];
    Object.assign(results[name], { beforeMedian: med(results[name].before), afterMedian: med(results[name].after) });
    results[name].ratio = results[name].afterMedian / results[name].beforeMedian;
  }
  console.log(`\n| case | before (s, CPU) | after (s, CPU) | after / before |\n| --- | ---: | ---: | ---: |`);
  for (const [n, r] of Object.entries(results)) console.log(`| ${n} | ${r.beforeMedian.toFixed(3)} | ${r.afterMedian.toFixed(3)} | ${r.ratio.toFixed(3)} |`);
  const out = arg("json", null);
  if (out) fs.writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), builds, rounds, results }, null, 2) + "\n");
}

if (args.includes("--child")) await child(arg("lib"), arg("case"));
else await main();
