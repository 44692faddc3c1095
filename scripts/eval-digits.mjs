// npm run eval-digits [-- --model datasets/digit-classifier] [--count 2000]
// The judge of the offline digits data (kernel-lib/src/eval/digit-judge.ts) and its ceiling: the classifier's
// accuracy on MNIST's held-out digits, and what the judge reads back from real held-out pictures of the data
// (datasets/generators/digits.mjs, split "held-out", seed 0): the share of digits, colours, backgrounds and thick
// strokes right.
// A generated picture can be judged no better than this. Writes <model>/eval.json and prints a table.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { digits } from "../datasets/generators/digits.mjs";
import { heldOutAccuracy } from "./train-recipes.mjs";

const require = createRequire(import.meta.url);
const tf = require("@tensorflow/tfjs");
const K = require("kernel-lib");
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const args = process.argv.slice(2);
const opt = (k, d) => { const i = args.indexOf(k); return i >= 0 ? args[i + 1] : d; };
const dir = path.resolve(root, opt("--model", "datasets/digit-classifier"));
const count = Number(opt("--count", 2000));

await K.initBackend();
const model = await K.DigitClassifier.fromPretrained(dir);
const mnist = heldOutAccuracy(K, tf, model);
let digit = 0, colour = 0, background = 0, thick = 0, all = 0;
const byDigit = Array.from({ length: 10 }, () => ({ n: 0, right: 0 }));
for (let start = 0; start < count; start += 250) {
  const n = Math.min(250, count - start);
  const { data, shape, params } = digits(n, { seed: 0, size: 32, split: "held-out", start });
  const images = tf.tensor4d(data, shape);
  const read = K.readDigitPictures(model, images);
  images.dispose();
  read.forEach((r, i) => {
    const p = params[i];
    const ok = [r.digit === p.digit, r.colour === p.colour, r.background === p.background, r.thick === p.thick];
    digit += ok[0]; colour += ok[1]; background += ok[2]; thick += ok[3]; all += ok.every(Boolean);
    byDigit[p.digit].n++; byDigit[p.digit].right += ok[0];
  });
}
const share = (k) => Math.round((1e4 * k) / count) / 1e4;
const result = {
  mnistHeldOut: { accuracy: mnist.accuracy, count: mnist.count },
  judgeCeiling: { pictures: count, split: "held-out", seed: 0, size: 32, digit: share(digit), colour: share(colour), background: share(background), thick: share(thick), all: share(all),
    digitByClass: byDigit.map((d, k) => ({ digit: k, pictures: d.n, right: d.n ? Math.round((1e4 * d.right) / d.n) / 1e4 : null })) },
  measuredAt: new Date().toISOString(),
};
fs.writeFileSync(path.join(dir, "eval.json"), JSON.stringify(result, null, 2) + "\n");
console.log(`MNIST held-out digits: ${(100 * mnist.accuracy).toFixed(2)} % of ${mnist.count}`);
console.log(`judge on ${count} held-out pictures: digit ${(100 * share(digit)).toFixed(1)} %, colour ${(100 * share(colour)).toFixed(1)} %, background ${(100 * share(background)).toFixed(1)} %, thick or not ${(100 * share(thick)).toFixed(1)} %, all four ${(100 * share(all)).toFixed(1)} %`);
console.log(`written to ${path.relative(root, path.join(dir, "eval.json"))}`);
