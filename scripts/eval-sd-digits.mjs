// node scripts/eval-sd-digits.mjs [--model datasets/sd-digits] [--n 80] [--steps 20] [--guidance 1,7.5] [--lora FILE --lora-weights 0,0.5,1,1.5]
//                                 [--json FILE]
// How well the offline digits model follows its captions (issue 16): it draws --n captions of the held-out split of
// datasets/generators/digits.mjs (caption seed 99) with a DDIMScheduler at each guidance scale, and the judge
// (kernel-lib/src/eval/digit-judge.ts, datasets/digit-classifier) reads every picture back: the digit, its colour,
// the background (for captions that name one) and thick strokes. Chance: digit 10 %, colour 12.5 %. The judge's own
// reading of the data's real pictures (datasets/digit-classifier/eval.json) is the ceiling, printed beside. With
// --lora, a row per adapter weight at the last guidance scale (the style LoRA's share of thick pictures).
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { digitParams } from "../datasets/generators/digits.mjs";

const require = createRequire(import.meta.url);
const tf = require("@tensorflow/tfjs");
const K = require("kernel-lib");
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const modelDir = path.resolve(root, opt("--model", "datasets/sd-digits"));
const judgeDir = path.join(root, "datasets", "digit-classifier");
const n = Number(opt("--n", 80)), steps = Number(opt("--steps", 20));
const guidances = opt("--guidance", "1,7.5").split(",").map(Number);
const lora = opt("--lora", null);
const loraWeights = opt("--lora-weights", "0,0.5,1,1.5").split(",").map(Number);
for (const [dir, what] of [[modelDir, "model_index.json"], [judgeDir, "config.json"]]) {
  if (!fs.existsSync(path.join(dir, what))) { console.error(`eval-sd-digits: ${dir} has no ${what}`); process.exit(1); }
}

await K.initBackend({ quiet: true });
const pipe = await K.StableDiffusionPipeline.fromPretrained(modelDir);
pipe.scheduler = K.DDIMScheduler.fromConfig(pipe.scheduler.config);
pipe.setProgressBarConfig({ disable: true });
const judge = await K.DigitClassifier.fromPretrained(judgeDir);
const ceiling = JSON.parse(fs.readFileSync(path.join(judgeDir, "eval.json"), "utf8")).judgeCeiling;
const captions = Array.from({ length: n }, (_, i) => digitParams(i, { seed: 99, split: "held-out" }));
if (lora) await pipe.loadLoraWeights(path.resolve(root, lora));

/** Shares of the pictures whose digit, colour, named background and thickness the judge reads as captioned. */
async function measure(guidance) {
  const right = { digit: 0, colour: 0, background: 0, named: 0, thick: 0, readThick: 0 };
  for (let i = 0; i < n; i += 8) {
    const batch = captions.slice(i, i + 8);
    const { images } = await pipe.generate({ prompt: batch.map((p) => p.caption), numInferenceSteps: steps, guidanceScale: guidance,
      generator: new K.Generator().manualSeed(1000 + i), outputType: "np" });
    const read = K.readDigitPictures(judge, images);
    images.dispose();
    read.forEach((r, j) => {
      const p = batch[j];
      right.digit += r.digit === p.digit; right.colour += r.colour === p.colour; right.thick += r.thick === p.thick; right.readThick += r.thick;
      if (p.namedBackground) { right.named++; right.background += r.background === p.background; }
    });
  }
  return { guidance, digit: right.digit / n, colour: right.colour / n, background: right.named ? right.background / right.named : null, thick: right.thick / n, readThick: right.readThick / n };
}

const rows = [];
if (lora) for (const w of loraWeights) { pipe.setAdapters(pipe.getActiveAdapters(), w); rows.push({ loraWeight: w, ...(await measure(guidances.at(-1))) }); }
else for (const g of guidances) rows.push(await measure(g));
const pct = (x) => (x === null ? "-" : `${(100 * x).toFixed(1)} %`);
console.log(`${path.relative(root, modelDir)}: ${n} held-out captions, ${steps} DDIM steps (judge's ceiling: digit ${pct(ceiling.digit)}, colour ${pct(ceiling.colour)}, background ${pct(ceiling.background)}, thick ${pct(ceiling.thick)})`);
for (const r of rows) console.log(`${r.loraWeight !== undefined ? `LoRA weight ${r.loraWeight}, ` : ""}guidance ${r.guidance}: digit ${pct(r.digit)}, colour ${pct(r.colour)}, background ${pct(r.background)}, thick ${pct(r.thick)} (read thick: ${pct(r.readThick)} of all pictures; ${pct(captions.filter((c) => c.thick).length / n)} of the captions say thick)`);
const out = opt("--json", null);
if (out) fs.writeFileSync(path.resolve(root, out), JSON.stringify({ model: path.relative(root, modelDir), n, steps, ceiling, rows }, null, 2) + "\n");
