// bench/run.mjs --only=sd (or sd-text, sd-vae, sd-unet, sd-unet-32, sd-unet-64): Stable Diffusion 1.5's text
// encoder, VAE decoder and UNet step with the real configs and random weights, each case in its own child
// process (`node bench/sd-cases.mjs <case> [--quick]`): a fresh wasm heap (the UNet's 3.4 GB of weights do not
// fit a heap that a VAE decode has grown and fragmented; a case that runs out of heap does not take the others
// down), and the backend's own conv2d rate measured in that process right before the model.
//
// Each case: one tf.profile'd call (FLOPs from the kernels it ran, 2 per multiply-add as PyTorch counts them,
// attention matMuls included; and the time of every kernel), then one timed call. Ratios:
// - ratioToConv2d: the model's GFLOP/s (wall time) over the best conv2d 3x3 rate ([1,64,64,256], [1,128,128,128]);
// - ratioToConv2dClock: the same on the second clock, this thread's CPU time (Linux schedstat) when the kernels
//   run on this thread alone (one wasm thread): other jobs on a shared machine then do not count;
// - ratioToSameShapes: the backend's own conv2d / matMul timed alone on every distinct shape the model ran (weight
//   packed once, as a bare primitive), summed over the calls, over the model's time (second clock): "the model's
//   GFLOP/s as a share of the backend's on the same shapes".
// `breakdown` lists where the profiled call spent its time, by kernel; `weightPackingSeconds` is the big kernels'
// time in the model minus the same-shape primitives' (XNNPACK re-packs each weight per call when packed weights are
// not kept, as for the UNet on wasm).
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));

const now = () => performance.now();
const sync = (t) => t.dataSync();

/** SD cases: key -> [part, label]; the part is what --only=sd-<part> selects. */
function caseList(quick) {
  const unet = quick ? [["unet-16", "unet-32", 2, 16]] : [["unet-32", "unet-32", 2, 32], ["unet-64", "unet-64", 2, 64]];
  return [
    ["text", "text", "SD1.5 CLIPTextModel [2,77]"],
    ["vae-256", "vae", "SD1.5 VAE decode [1,32,32,4] -> 256x256"],
    ...(quick ? [] : [["vae-512", "vae", "SD1.5 VAE decode [1,64,64,4] -> 512x512"]]),
    ...unet.map(([key, part, b, h]) => [key, part, `SD1.5 UNet step [${b},${h},${h},4] + text [${b},77,768]`]),
  ];
}

// ---- bench/run.mjs: every selected case in its own process, results into `results.cases` ------------------------
export function sdSection(results, { quick = false, parts }) {
  for (const [key, part, label] of caseList(quick)) {
    if (!parts.includes(part)) continue;
    process.stdout.write(`${label} ... `);
    const child = spawnSync(process.execPath, ["--max-old-space-size=16000", fileURLToPath(import.meta.url), key, ...(quick ? ["--quick"] : [])],
      { encoding: "utf8", maxBuffer: 64 * 2 ** 20, timeout: 60 * 60 * 1000 });
    const line = child.stdout?.split("\n").find((l) => l.startsWith("SD-CASE "));
    let r;
    if (line) r = JSON.parse(line.slice("SD-CASE ".length));
    else {
      const err = `${child.stderr ?? ""}${child.error ? String(child.error) : ""}`.split("\n").map((l) => l.trim()).filter((l) => /error|out of|abort|memory/i.test(l));
      const error = (err[0] ?? `exit ${child.status} ${child.signal ?? ""}`).slice(0, 300);
      const oom = /Aborted\(\)|out of memory|memory access out of bounds/i.test(error); // emscripten: the heap cannot grow past ~4 GiB
      r = { error: oom ? `out of wasm memory (${error})` : error, note: "did not run on this backend (see error)" };
    }
    results.cases[label] = r;
    console.log(r.error ? `failed: ${r.error}` : `${r.seconds.toFixed(1)} s, ${(100 * r.ratioToConv2d).toFixed(0)}% of conv2d (${(100 * (r.ratioToConv2dClock ?? 0)).toFixed(0)}% on ${r.clock} time), ${(100 * r.ratioToSameShapes).toFixed(0)}% of same shapes`);
  }
}

// ---- one case (child process) -------------------------------------------------------------------------------------
async function runSdCase(key, quick) {
  const tf = require("@tensorflow/tfjs");
  const K = require("kernel-lib");
  const report = await K.initBackend();
  const threadCpuSeconds = () => {
    try { return Number(fs.readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e9; } catch { return null; }
  };
  const cpuClock = threadCpuSeconds() !== null && report.backend !== "tensorflow" && (report.backend !== "wasm" || report.wasmThreads?.threads === 1);
  const clockNow = cpuClock ? threadCpuSeconds : () => now() / 1000;

  // the backend's conv2d 3x3 rate, right before the model: median of 5 runs on both clocks, best of two shapes
  let convRate = 0, convRateClock = 0;
  for (const [h, c] of [[64, 256], [128, 128]]) {
    const x = tf.randomNormal([1, h, h, c]), w = tf.randomNormal([3, 3, c, c]);
    const op = () => { const o = tf.conv2d(x, w, 1, "same"); sync(o); o.dispose(); };
    op();
    const wall = [], clock = [];
    for (let i = 0; i < 5; i++) { const tw = now(), tc = clockNow(); op(); clock.push(clockNow() - tc); wall.push((now() - tw) / 1000); }
    const med = (xs) => xs.sort((a, b) => a - b)[2];
    const g = 2 * h * h * c * 9 * c / 1e9;
    convRate = Math.max(convRate, g / med(wall));
    convRateClock = Math.max(convRateClock, g / med(clock));
    tf.dispose([x, w]);
  }

  const BIG = new Set(["Conv2D", "FusedConv2D", "MatMul", "BatchMatMul", "_FusedMatMul"]);
  const kernelFlops = (k) => {
    const out = k.outputShapes[0] ?? [], inp = k.inputShapes;
    const n = out.reduce((a, b) => a * b, 1);
    if (k.name === "Conv2D" || k.name === "FusedConv2D") return 2 * n * inp[1][0] * inp[1][1] * inp[1][2];
    if (BIG.has(k.name)) { const a = inp[0]; return 2 * n * (a[a.length - 2] === out[out.length - 2] ? a[a.length - 1] : a[a.length - 2]); }
    return 0;
  };
  /** tf.profile with each kernel timed on clockNow (the backend's own timer is wall time). */
  async function profileKernels(fn) {
    const backend = tf.backend();
    const own = Object.getOwnPropertyDescriptor(backend, "time");
    if (cpuClock) backend.time = async (f) => { const t = clockNow(); f(); return { kernelMs: 1000 * (clockNow() - t) }; };
    try {
      const prof = await tf.profile(fn);
      for (const k of prof.kernels) k.ms = await k.kernelTimeMs;
      return prof;
    } finally {
      if (own) Object.defineProperty(backend, "time", own); else delete backend.time;
    }
  }
  /** The backend's conv2d / matMul alone on each big-kernel shape (weight packed once): seconds summed over the calls. */
  function sameShapePrimitives(kernels) {
    const shapes = new Map();
    for (const k of kernels) {
      if (!BIG.has(k.name)) continue;
      const sig = `${k.name} ${JSON.stringify(k.inputShapes.slice(0, 2))} -> ${JSON.stringify(k.outputShapes[0])}`;
      const e = shapes.get(sig) ?? { k, calls: 0, modelSeconds: 0 };
      e.calls++; e.modelSeconds += k.ms / 1000;
      shapes.set(sig, e);
    }
    let seconds = 0, modelSeconds = 0;
    const perShape = [];
    for (const [sig, { k, calls, modelSeconds: ms }] of shapes) {
      const [a, b] = k.inputShapes;
      const conv = k.name === "Conv2D" || k.name === "FusedConv2D";
      const x = tf.randomNormal(a), w = tf.randomNormal(b);
      const stride = conv && k.outputShapes[0][1] < a[1] ? 2 : 1;
      const op = conv ? () => tf.conv2d(x, w, stride, (b[0] - 1) / 2) : () => tf.matMul(x, w); // the models' convs: 1x1, or 3x3 padding 1
      sync(tf.tidy(op)); // packs the weight
      let runs = 0;
      const t0 = clockNow();
      while (runs < 3 || clockNow() - t0 < 0.3) { const o = op(); sync(o); o.dispose(); runs++; }
      const perCall = (clockNow() - t0) / runs;
      tf.dispose([x, w]);
      seconds += perCall * calls; modelSeconds += ms;
      perShape.push({ shape: sig, calls, modelSeconds: ms, primitiveSeconds: perCall * calls, primitiveGflopsPerSec: kernelFlops(k) / 1e9 / perCall });
    }
    perShape.sort((p, q) => q.modelSeconds - p.modelSeconds);
    return { seconds, modelSeconds, perShape };
  }

  const sdCfg = (name) => JSON.parse(fs.readFileSync(path.resolve(here, `../../shared/fixtures/configs/stable-diffusion-v1-5/${name}/config.json`), "utf8"));
  const ids = Array.from({ length: 2 }, () => Array.from({ length: 77 }, (_, i) => (i === 0 ? 49406 : i < 8 ? 320 + i : 49407)));
  const wasm = tf.getBackend() === "wasm";
  const [label] = caseList(quick).filter(([k]) => k === key).map(([, , l]) => l);
  if (!label) throw new Error(`bench/sd-cases.mjs: no case "${key}" (cases: ${caseList(quick).map(([k]) => k).join(", ")})`);
  let build, run, note, warm = false;
  if (key === "text") {
    build = () => K.CLIPTextModel.fromConfig(sdCfg("text_encoder"), { init: "random", seed: 0 });
    run = (m) => { const o = m.forward(ids); o.poolerOutput.dispose(); return o.lastHiddenState; };
    warm = true; // kept packed weights: the profiled call then shows the steady state
  } else if (key.startsWith("vae-")) {
    const h = key === "vae-512" ? 64 : 32;
    build = () => K.AutoencoderKL.fromConfig(sdCfg("vae"), { init: "random", seed: 0 });
    run = (m) => { const z = tf.randomNormal([1, h, h, 4]); const o = m.decode(z).sample; z.dispose(); return o; };
  } else {
    const h = Number(/\[2,(\d+),/.exec(label)[1]);
    // wasm: XNNPACK's packed copy of every weight would double the 3.4 GB past the 4 GiB heap: the UNet re-packs each
    // weight per call there (setKeepPackedWeights(false), kernel-lib/src/runtime/wasm/packed-weights.ts). At 64x64 latents the
    // one-pass attention maps (2 GiB) do not fit beside the weights either: attention slicing "max" (same FLOPs).
    const slice = wasm && h >= 64 ? "max" : null;
    if (wasm) K.setKeepPackedWeights(false);
    build = () => { const m = K.UNet2DConditionModel.fromConfig(sdCfg("unet"), { init: "random", seed: 0 }); if (slice) m.setAttentionSlice(slice); return m; };
    run = (m) => { const x = tf.randomNormal([2, h, h, 4]); const c = tf.randomNormal([2, 77, 768]); const o = m.forward(x, 500, c).sample; tf.dispose([x, c]); return o; };
    note = `${8 * h}x${8 * h} px (latents ${h}x${h}), CFG batch 2; 3.4 GB of float32 weights` +
      (wasm ? `; setKeepPackedWeights(false): each weight re-packed per call (counted in the time, see weightPackingSeconds)${slice ? `; attention slicing "${slice}" (one-pass attention maps do not fit the 4 GiB heap beside the weights)` : ""}` : "");
  }

  const t0 = now();
  let model = build();
  const buildSeconds = (now() - t0) / 1000;
  const params = model.numParameters();
  const weightsBytes = tf.memory().numBytes;
  if (warm) tf.dispose(run(model));
  const prof = await profileKernels(() => run(model));
  tf.dispose(prof.result);
  let flops = 0;
  const byName = {};
  for (const k of prof.kernels) {
    flops += kernelFlops(k);
    if (k.name.endsWith("__op")) continue; // tf.fused.* ops wrap their kernel: counted there
    const e = (byName[k.name] ??= { calls: 0, seconds: 0 });
    e.calls++; e.seconds += k.ms / 1000;
  }
  const tw = now(), tc = clockNow();
  tf.dispose(run(model));
  const secs = (now() - tw) / 1000, clockSecs = clockNow() - tc;
  model.dispose();
  model = null;
  const prim = sameShapePrimitives(prof.kernels.filter((k) => !k.name.endsWith("__op")));
  const kernelSeconds = Object.values(byName).reduce((a, e) => a + e.seconds, 0);
  const breakdown = Object.entries(byName).sort((a, b) => b[1].seconds - a[1].seconds)
    .map(([kernel, e]) => ({ kernel, calls: e.calls, seconds: +e.seconds.toFixed(3), share: +(e.seconds / kernelSeconds).toFixed(4) }));
  return {
    params, buildSeconds, seconds: secs, gflops: flops / 1e9, gflopsPerSec: flops / 1e9 / secs,
    ratioToConv2d: flops / 1e9 / secs / convRate, backendConv2dGflopsPerSec: convRate, weightsBytes, peakBytes: prof.peakBytes,
    clock: cpuClock ? "thread CPU" : "wall", clockSeconds: clockSecs, backendConv2dClockGflopsPerSec: convRateClock,
    ratioToConv2dClock: flops / 1e9 / clockSecs / convRateClock,
    ratioToSameShapes: prim.seconds / clockSecs,
    sameShapes: { primitiveSeconds: prim.seconds, gflopsPerSec: flops / 1e9 / prim.seconds, top: prim.perShape.slice(0, 12) },
    weightPackingSeconds: Math.max(0, prim.modelSeconds - prim.seconds), profiledKernelSeconds: kernelSeconds, breakdown: breakdown.slice(0, 16),
    ...(note ? { note } : {}),
  };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  try {
    const r = await runSdCase(process.argv[2], process.argv.includes("--quick"));
    console.log("SD-CASE " + JSON.stringify(r));
    process.exit(0);
  } catch (e) {
    console.error(`error: ${String(e?.message ?? e).split("\n")[0]}`);
    process.exit(1);
  }
}
