// node bench/profile-sd.mjs [--model=unet|clip] [--size=32] [--batch=2] [--keep-packed] [--slice=auto|max|N] [--json=out.json]
// Where one call of an SD 1.5 model (real config, random weights) spends its time, kernel by kernel
// (tf.profile's per-kernel wall time; wasm kernels are synchronous), and what the backend's own
// conv2d / matMul take on exactly the same shapes with a cached (already packed) weight, in the same
// process: the difference in the big kernels is weight re-packing (setKeepPackedWeights(false)), the
// rest is the small ops around them. --clock=cpu (default) times with the main thread's CPU time (/proc/thread-self/schedstat):
// with one wasm thread that is the kernel's own work, robust to other jobs taking the cores; --clock=wall as tf.profile.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const tf = require("@tensorflow/tfjs");
// --lib=path/to/kernel-lib/dist/index.js profiles another build (e.g. an older commit's) with the same tfjs
const lib = process.argv.slice(2).find((a) => a.startsWith("--lib="))?.slice(6);
const K = require(lib ?? "kernel-lib");

const arg = (name, dflt) => process.argv.slice(2).find((a) => a.startsWith(`--${name}=`))?.split("=")[1] ?? dflt;
const flag = (name) => process.argv.includes(`--${name}`);
const modelName = arg("model", "unet");
const size = Number(arg("size", 32));
const batch = Number(arg("batch", 2));
const slice = arg("slice", null);
const keepPacked = flag("keep-packed");
const primitives = !flag("no-primitives");
const clock = arg("clock", "cpu");
// the main thread's own CPU time (Linux schedstat, ns): GC helper threads do not count, other jobs do not either
const cpuMs = () => Number(fs.readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;
const nowMs = clock === "cpu" ? cpuMs : () => performance.now();

const report = await K.initBackend();
console.log(K.formatBackendReport(report));
if (clock === "cpu") tf.backend().time = async (f) => { const t = cpuMs(); f(); return { kernelMs: cpuMs() - t }; };
const sdCfg = (name) => JSON.parse(fs.readFileSync(path.resolve(here, `../../shared/fixtures/configs/stable-diffusion-v1-5/${name}/config.json`), "utf8"));
K.setKeepPackedWeights(keepPacked);

let model, run, label;
let t0 = performance.now();
if (modelName === "unet") {
  model = K.UNet2DConditionModel.fromConfig(sdCfg("unet"), { init: "random", seed: 0 });
  if (slice) model.setAttentionSlice(/^\d+$/.test(slice) ? Number(slice) : slice);
  const x = tf.randomNormal([batch, size, size, 4]);
  const c = tf.randomNormal([batch, 77, 768]);
  run = () => model.forward(x, 500, c).sample;
  label = `SD1.5 UNet [${batch},${size},${size},4]${slice ? ` slice ${slice}` : ""}${keepPacked ? " keep-packed" : ""}`;
} else {
  model = K.CLIPTextModel.fromConfig(sdCfg("text_encoder"), { init: "random", seed: 0 });
  const ids = tf.tensor2d(Array.from({ length: batch }, () => Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 8 ? 320 + i : 49407))), undefined, "int32");
  run = () => { const o = model.forward(ids); o.poolerOutput.dispose(); return o.lastHiddenState; };
  label = `SD1.5 CLIPTextModel [${batch},77]${keepPacked ? " keep-packed" : ""}`;
}
console.log(`${label}: built in ${((performance.now() - t0) / 1000).toFixed(1)} s`);

if (flag("warm")) { tf.dispose(run()); }
t0 = performance.now();
const c0 = cpuMs();
const prof = await tf.profile(() => run());
const wall = (performance.now() - t0) / 1000;
const cpu = (cpuMs() - c0) / 1000;
tf.dispose(prof.result);

const flopsOf = (k) => {
  const out = k.outputShapes[0] ?? [], inp = k.inputShapes;
  const n = out.reduce((a, b) => a * b, 1);
  if (k.name === "Conv2D" || k.name === "FusedConv2D") return 2 * n * inp[1][0] * inp[1][1] * inp[1][2];
  if (k.name === "MatMul" || k.name === "BatchMatMul" || k.name === "_FusedMatMul") {
    const a = inp[0];
    return 2 * n * (a[a.length - 2] === out[out.length - 2] ? a[a.length - 1] : a[a.length - 2]);
  }
  return 0;
};
const byName = {};
const shapes = new Map(); // big-kernel signature -> {count, ms, flops, k}
let total = 0, flops = 0;
for (const k of prof.kernels) {
  if (k.name.endsWith("__op")) continue; // a custom-gradient op (tf.fused.*) around its kernel: counted there
  const ms = await k.kernelTimeMs;
  total += ms;
  const f = flopsOf(k);
  flops += f;
  const e = (byName[k.name] ??= { count: 0, ms: 0, flops: 0 });
  e.count++; e.ms += ms; e.flops += f;
  if (f) {
    const sig = `${k.name} ${JSON.stringify(k.inputShapes.slice(0, 2))}`;
    const s = shapes.get(sig) ?? { count: 0, ms: 0, flops: 0, k };
    s.count++; s.ms += ms; s.flops += f;
    shapes.set(sig, s);
  }
}
const rows = Object.entries(byName).sort((a, b) => b[1].ms - a[1].ms);
const secs = clock === "cpu" ? cpu : wall;
console.log(`\n${label}: wall ${wall.toFixed(2)} s, CPU ${cpu.toFixed(2)} s, sum of kernel times (${clock}) ${(total / 1000).toFixed(2)} s, ${(flops / 1e9).toFixed(1)} GFLOP, ${(flops / 1e9 / secs).toFixed(1)} GFLOP/s (${clock}), ${prof.kernels.length} kernels, peak ${(prof.peakBytes / 2 ** 30).toFixed(2)} GiB`);
console.log("kernel".padEnd(22), "calls".padStart(6), "seconds".padStart(8), "share".padStart(6), "GFLOP/s".padStart(8));
for (const [n, e] of rows) console.log(n.padEnd(22), String(e.count).padStart(6), (e.ms / 1000).toFixed(2).padStart(8), `${(100 * e.ms / total).toFixed(1)}%`.padStart(6), e.flops ? (e.flops / 1e6 / e.ms).toFixed(1).padStart(8) : "");

// the backend's primitive on the same shapes, weight cached (packed once), median of 3 after a warm-up
const prim = [];
if (primitives) {
  for (const [sig, s] of shapes) {
    const { k } = s;
    const [a, b] = k.inputShapes;
    const x = tf.randomNormal(a), w = tf.randomNormal(b);
    const conv = k.name === "Conv2D" || k.name === "FusedConv2D";
    const pad = conv ? (b[0] - 1) / 2 : 0; // the models' convs: 1x1 unpadded, 3x3 padding 1 (stride 2 in Downsample2D)
    const stride = conv && k.outputShapes[0][1] * 2 === a[1] ? 2 : 1;
    const op = conv ? () => tf.conv2d(x, w, stride, pad) : () => tf.matMul(x, w);
    // a warm-up (packs the weight), then runs until 0.3 s: the mean per call (CPU time is read at 4 ms ticks)
    { const o = op(); o.dataSync(); o.dispose(); }
    let runs = 0;
    const t0 = nowMs();
    while (runs < 3 || nowMs() - t0 < 300) { const o = op(); o.dataSync(); o.dispose(); runs++; }
    const perCall = (nowMs() - t0) / runs;
    if (flag("debug")) console.log(sig, runs, perCall.toFixed(2));
    prim.push({ sig, count: s.count, modelMs: s.ms, primMs: perCall * s.count, flops: s.flops });
    tf.dispose([x, w]);
  }
  const sum = (f) => prim.reduce((acc, p) => acc + f(p), 0);
  const primTotal = sum((p) => p.primMs);
  console.log(`\nbig kernels: ${(sum((p) => p.modelMs) / 1000).toFixed(2)} s in the model, ${(primTotal / 1000).toFixed(2)} s as bare primitives on the same shapes (weights packed once): ` +
    `model ${(flops / 1e9 / secs).toFixed(1)} GFLOP/s vs same-shape primitives ${(flops / 1e6 / primTotal).toFixed(1)} GFLOP/s = ${(100 * primTotal / 1000 / secs).toFixed(0)}% (${clock} time)`);
  prim.sort((p, q) => q.modelMs - p.modelMs);
  for (const p of prim.slice(0, 25)) console.log(`${p.sig.padEnd(70)} x${String(p.count).padStart(3)} model ${(p.modelMs / 1000).toFixed(2)} s  primitive ${(p.primMs / 1000).toFixed(2)} s  ${(p.flops / 1e6 / p.primMs).toFixed(1)} GFLOP/s`);
}
const out = arg("json", null);
if (out) fs.writeFileSync(out, JSON.stringify({ label, clock, wall, cpu, kernelSeconds: total / 1000, gflops: flops / 1e9, byName, prim }, null, 1));
model.dispose();
