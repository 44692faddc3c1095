// npm run train -- <recipe> [--steps N] [--resume] [--out DIR] [--batch B] [--lr LR] [--minutes M] [--export DIR]
//                           [--checkpoint-every N] [--sample-every N] [--seed S] [--noise-offset X]
// Trains a recipe with the kit's own training code (kernel-lib/src/training) and writes, under --out
// (default runs/<recipe>): checkpoints/checkpoint-<step>/ (resumable), loss.csv, loss.png, samples/step-<k>.png
// and pipeline/ (what the recipe exports, in diffusers' layout). --export DIR also exports there.
// --minutes stops (with a checkpoint) after that much training time in this session; --resume continues from
// the newest checkpoint with the same noise, data and learning rate as an uninterrupted run.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { RECIPES } from "./train-recipes.mjs";

const require = createRequire(import.meta.url);
const tf = require("@tensorflow/tfjs");
const K = require("kernel-lib");
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

// ---- arguments
const args = process.argv.slice(2);
const name = args.find((a) => !a.startsWith("--") && !/^[\d.e-]+$/.test(a));
const recipe = RECIPES[name];
if (!recipe) {
  console.error(`usage: npm run train -- <recipe> [--steps N] [--resume] [--out DIR] [--batch B] [--lr LR] [--minutes M] [--export DIR]\nrecipes: ${Object.entries(RECIPES).map(([k, r]) => `${k} (${r.description})`).join("; ")}`);
  process.exit(2);
}
const opt = (k, dflt) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : dflt; };
const num = (k, dflt) => {
  const v = opt(k);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) { console.error(`${k} needs a non-negative number, got "${v}"`); process.exit(2); }
  return n;
};
const t = recipe.train;
const steps = num("--steps", t.steps);
const batchSize = num("--batch", t.batchSize);
const lr = num("--lr", t.lr);
const seed = num("--seed", t.seed);
// diffusers' --noise_offset (text-to-image recipes): from this run's first step on; a resumed run may change it
const noiseOffset = num("--noise-offset", t.noiseOffset ?? 0);
const minutes = num("--minutes", undefined);
const checkpointEvery = num("--checkpoint-every", t.checkpointEvery);
const sampleEvery = num("--sample-every", t.sampleEvery);
const out = path.resolve(opt("--out", path.join(root, "runs", name)));
const exportDir = opt("--export");
const resume = args.includes("--resume");
const ckptDir = path.join(out, "checkpoints");

// ---- the recipe's trainer
const report = await K.initBackend();
console.log(K.formatBackendReport(report));
const run = await recipe.build(K, tf, { seed, batchSize, lr, steps, noiseOffset, train: t });
const trainer = run.trainer;
fs.mkdirSync(path.join(out, "samples"), { recursive: true });
const csv = path.join(out, "loss.csv");
if (resume) {
  const last = K.listCheckpoints(ckptDir).at(-1);
  if (!last) { console.error(`--resume: no checkpoint in ${ckptDir}`); process.exit(1); }
  trainer.loadCheckpoint(last.dir);
  console.log(`resumed from ${last.dir} (step ${trainer.globalStep}, ${(trainer.trainSeconds / 60).toFixed(1)} min trained)`);
  // the CSV is rewritten from the checkpoint's history, dropping steps logged after it
  fs.writeFileSync(csv, "step,loss,lr,grad_norm,seconds\n" + trainer.history.map((e) => `${e.step},${e.loss},${e.lr},${e.gradNorm},${e.seconds.toFixed(3)}`).join("\n") + (trainer.history.length ? "\n" : ""));
} else {
  if (K.listCheckpoints(ckptDir).length > 0) { console.error(`${ckptDir} already has checkpoints: pass --resume, or another --out`); process.exit(1); }
  fs.writeFileSync(csv, "step,loss,lr,grad_norm,seconds\n");
}
console.log(`${name}: ${run.what}, batch ${batchSize}, lr ${lr}${noiseOffset ? `, noise offset ${noiseOffset}` : ""}, steps ${trainer.globalStep} -> ${steps}${minutes ? `, at most ${minutes} min` : ""}; writing ${path.relative(process.cwd(), out) || "."}`);

async function saveSamples(step) {
  fs.writeFileSync(path.join(out, "samples", `step-${String(step).padStart(5, "0")}.png`), await run.sample());
}

async function savePlot() {
  const h = trainer.history;
  const smooth = h.map((_, i) => { const w = h.slice(Math.max(0, i - 49), i + 1); return w.reduce((s, e) => s + e.loss, 0) / w.length; });
  const png = await K.chartPng([
    { x: h.map((e) => e.step), y: h.map((e) => e.loss), name: "loss", mode: "markers" },
    { x: h.map((e) => e.step), y: smooth, name: "mean of 50" },
  ], { title: `${name}: training loss`, xaxis: { title: "step" }, yaxis: { title: "MSE", type: "log" } });
  fs.writeFileSync(path.join(out, "loss.png"), png);
}

const t0 = performance.now();
let window = [];
await trainer.train({
  steps, checkpointDir: ckptDir, checkpointEvery, checkpointsTotalLimit: 2, maxSeconds: minutes ? minutes * 60 : undefined, progress: false,
  onStep: async (e) => {
    fs.appendFileSync(csv, `${e.step},${e.loss},${e.lr},${e.gradNorm},${e.seconds.toFixed(3)}\n`);
    window.push(e);
    if (e.step % 10 === 0 || e.step === steps) {
      const mean = window.reduce((s, x) => s + x.loss, 0) / window.length;
      const sps = window.reduce((s, x) => s + x.seconds, 0) / window.length;
      const eta = ((steps - e.step) * sps / 60).toFixed(1);
      console.log(`step ${e.step}/${steps}  loss ${mean.toFixed(4)}  lr ${e.lr.toExponential(2)}  grad-norm ${e.gradNorm.toFixed(3)}  ${sps.toFixed(2)} s/step  eta ${eta} min  (${((performance.now() - t0) / 60000).toFixed(1)} min this session)`);
      window = [];
    }
    if (sampleEvery && e.step % sampleEvery === 0) { await saveSamples(e.step); await savePlot(); }
  },
});
await savePlot();
if (!sampleEvery || trainer.globalStep % sampleEvery !== 0) await saveSamples(trainer.globalStep);
const pipeDir = path.join(out, "pipeline");
run.export(pipeDir);
console.log(`step ${trainer.globalStep}: ${(trainer.trainSeconds / 60).toFixed(1)} min of training in total; exported to ${pipeDir}`);
if (exportDir) {
  run.export(path.resolve(exportDir));
  console.log(`exported to ${exportDir}`);
}
trainer.dispose();
