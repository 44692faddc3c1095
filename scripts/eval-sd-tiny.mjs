// npm run eval-sd-tiny -- [--model DIR] [--lora FILE] [--lora-weight W] [--n 48] [--steps 20] [--guidance 1,4,7.5] [--json FILE]
//                          [--grid FILE.png [--grid-weights 0,1,2]]
// How well a shapes model (datasets/sd-tiny by default) follows its captions: it draws --n held-out captions of
// datasets/generators/shapes.mjs (caption seed 99; training used seed 0) with a DDIMScheduler at each guidance
// scale, and datasets/generators/shapes-judge.mjs reads every picture back: fill colour, background colour (for
// captions that name one), number of shapes, their kind, and the stripe share. The judge's own score on the
// generator's pictures of the same captions is the ceiling, printed beside. --grid writes the first 8 captions'
// pictures: a row per guidance scale, or with --lora a row per adapter weight (0: the base model) at the last scale.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { shapes, shapeParams } from "../datasets/generators/shapes.mjs";
import { scoreCaptions } from "../datasets/generators/shapes-judge.mjs";

const require = createRequire(import.meta.url);
const tf = require("@tensorflow/tfjs");
const K = require("kernel-lib");
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(name); return i >= 0 ? args[i + 1] : dflt; };
const modelDir = path.resolve(opt("--model", path.join(root, "datasets", "sd-tiny")));
const lora = opt("--lora", null);
const n = Number(opt("--n", 48)), steps = Number(opt("--steps", 20));
const guidances = opt("--guidance", "1,4,7.5").split(",").map(Number);
const CAPTION_SEED = 99;
if (!fs.existsSync(path.join(modelDir, "model_index.json"))) {
  console.error(`eval-sd-tiny: ${modelDir} has no model_index.json; pass --model <a StableDiffusionPipeline folder>`);
  process.exit(1);
}

const report = await K.initBackend({ quiet: true });
const pipe = await K.StableDiffusionPipeline.fromPretrained(modelDir);
pipe.scheduler = K.DDIMScheduler.fromConfig(pipe.scheduler.config);
pipe.setProgressBarConfig({ disable: true });
const loraWeight = Number(opt("--lora-weight", 1));
if (lora) {
  await pipe.loadLoraWeights(path.resolve(lora));
  pipe.setAdapters(pipe.getActiveAdapters(), loraWeight);
}
const params = Array.from({ length: n }, (_, i) => shapeParams(i, CAPTION_SEED));
const prompts = params.map((p) => p.caption);
const size = pipe.unet.config.sample_size * pipe.vaeScaleFactor;

const score = (pixels) => scoreCaptions(pixels, params, size);

const rows = {};
rows["generator's pictures (plain): the judge's ceiling"] = score(shapes(n, { seed: CAPTION_SEED, size }).data);
rows["generator's pictures (stripes)"] = score(shapes(n, { seed: CAPTION_SEED, size, style: "stripes" }).data);
for (const g of guidances) {
  const { images } = await pipe.generate({ prompt: prompts, numInferenceSteps: steps, guidanceScale: g, generator: new K.Generator().manualSeed(0), outputType: "np" });
  rows[`model, guidance ${g}`] = score(await images.data());
  images.dispose();
}

const gridFile = opt("--grid", null);
if (gridFile) {
  const first = prompts.slice(0, 8);
  const gen = async (g) => (await pipe.generate({ prompt: first, numInferenceSteps: steps, guidanceScale: g, generator: new K.Generator().manualSeed(0), outputType: "np" })).images;
  const rows = [];
  if (lora) {
    const adapters = pipe.getActiveAdapters();
    for (const w of opt("--grid-weights", "0,1,2").split(",").map(Number)) { pipe.setAdapters(adapters, w); rows.push(await gen(guidances.at(-1))); }
    pipe.setAdapters(adapters, loraWeight);
  } else for (const g of guidances) rows.push(await gen(g));
  const all = tf.concat(rows);
  const grid = K.imageGrid(all, { cols: first.length, pad: 1 });
  fs.writeFileSync(gridFile, await K.toImage(grid, { minSize: 1024 }));
  tf.dispose([...rows, all, grid]);
  console.log(`grid of ${rows.length} rows x ${first.length} captions written to ${gridFile}: ${first.join(" | ")}`);
}

const pct = (v) => `${(100 * v).toFixed(0)}%`;
console.log(`${path.relative(root, modelDir) || modelDir}${lora ? ` + LoRA ${lora} × ${loraWeight}` : ""}: ${n} held-out captions (seed ${CAPTION_SEED}), ${steps} DDIM steps, ${report.backend}`);
console.log(["", "colour", "background", "count", "kind", "stripes"].map((h, i) => (i ? h.padStart(11) : h.padEnd(52))).join(""));
for (const [name, r] of Object.entries(rows)) console.log(name.padEnd(52) + [r.colour, r.background, r.count, r.kind, r.stripes].map((v) => pct(v).padStart(11)).join(""));
const out = opt("--json", null);
if (out) {
  fs.writeFileSync(out, JSON.stringify({ model: path.relative(root, modelDir), lora, loraWeight: lora ? loraWeight : null, n, steps, captionSeed: CAPTION_SEED, backend: report.description, rows }, null, 2) + "\n");
  console.log(`written ${out}`);
}
