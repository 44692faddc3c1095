// npm run bench: speed and load throughput on the active backend, written to bench/results/*.json
// with a short table. Every model rate is set beside the backend's own matMul / conv2d rate measured
// in the same run (machines are noisy: compare ratios). FLOPs are counted from the kernels tfjs
// actually ran (tf.profile: Conv2D / FusedConv2D / MatMul / BatchMatMul shapes, 2 per multiply-add).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const tf = require("@tensorflow/tfjs");
const K = require("kernel-lib");

const args = process.argv.slice(2);
const only = args.find((a) => a.startsWith("--only="))?.slice(7)?.split(",");
const want = (name) => !only || only.includes(name);
const quick = args.includes("--quick");
// --only=sd runs every SD case; sd-text, sd-vae, sd-unet (or sd-unet-32 / sd-unet-64) a part of them
const wantSd = (part) => want("sd") || want(`sd-${part}`) || (part.startsWith("unet-") && want("sd-unet"));
const anySd = ["text", "vae", "unet-32", "unet-64"].some(wantSd);

function now() { return performance.now(); }
async function timeIt(fn, { warmup = 1, runs = 3 } = {}) {
  for (let i = 0; i < warmup; i++) await fn();
  const ts = [];
  for (let i = 0; i < runs; i++) { const t0 = now(); await fn(); ts.push((now() - t0) / 1000); }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)];
}
function sync(t) { t.dataSync(); }
/** Median of 5 runs (after a warm-up) on the second clock (clockNow, defined once the backend is known). */
function clockTime(fn) {
  fn();
  const ts = [];
  for (let i = 0; i < 5; i++) { const t0 = clockNow(); fn(); ts.push(clockNow() - t0); }
  return ts.sort((a, b) => a - b)[2];
}

/** FLOPs of the conv / matmul kernels a function runs (2 per multiply-add). */
async function countFlops(fn) {
  const prof = await tf.profile(fn);
  tf.dispose(prof.result);
  let flops = 0;
  for (const k of prof.kernels) {
    const out = k.outputShapes[0] ?? [];
    const inp = k.inputShapes;
    if (k.name === "Conv2D" || k.name === "FusedConv2D") {
      const [kh, kw, cin] = inp[1];
      flops += 2 * out.reduce((a, b) => a * b, 1) * kh * kw * cin;
    } else if (k.name === "MatMul" || k.name === "BatchMatMul" || k.name === "_FusedMatMul") {
      // contracted size K: a is [..., M, K] (or [..., K, M] when transposed); the output is [..., M, N]
      const a = inp[0];
      const kdim = a[a.length - 2] === out[out.length - 2] ? a[a.length - 1] : a[a.length - 2];
      flops += 2 * out.reduce((x, y) => x * y, 1) * kdim;
    }
  }
  return flops;
}

const results = { date: new Date().toISOString(), machine: { cpus: os.cpus().length, model: os.cpus()[0]?.model, memGiB: Math.round(os.totalmem() / 2 ** 30) }, cases: {} };
const report = await K.initBackend();
results.backend = report.description;
console.log(K.formatBackendReport(report));
const backendTag = report.backend + (report.device === "cuda" ? "-cuda" : "");
const out = path.join(here, "results", `${backendTag}${quick ? "-quick" : ""}.json`);
const previous = fs.existsSync(out) ? JSON.parse(fs.readFileSync(out, "utf8")) : null;
// A second clock for in-run ratios: this thread's CPU time (Linux schedstat) when the kernels run on this thread
// alone (one wasm thread, or cpu / webgl dispatch): other jobs on a shared machine then do not count. Else wall time.
function threadCpuSeconds() {
  try { return Number(fs.readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e9; } catch { return null; }
}
const cpuClock = threadCpuSeconds() !== null && (report.backend !== "wasm" || report.wasmThreads?.threads === 1) && report.backend !== "tensorflow";
const clockNow = cpuClock ? threadCpuSeconds : () => now() / 1000;

// --- wasm threads: the same kernels on 1 and 2 pool threads (kernel-lib/src/runtime/wasm-threads.ts)
// One process restarts the wasm backend as the single-thread build or the threaded build in pairs of
// adjacent visits, ordered 1,2 / 2,1 / 1,2 ... so slow drift of the machine's load cancels; each visit
// times matMul 1024^3, a conv2d of SD's size and a small conv2d (medians of runs), the first two pairs
// also the ddpm-cat-256 UNet forward (weights packed by a 64x64 warm-up). The speed-up is the median
// over pairs of (1-thread time / 2-thread time) of the same pair; "best" compares the fastest visits.
// Other jobs on the machine take cores from the 2-thread case: the load average per visit is kept.
// It runs first: restarting the backend needs no live tensor, and other sections may leave some.
if (want("threads") && report.backend === "wasm") {
  const pairs = quick ? 1 : 5;
  const order = Array.from({ length: pairs }, (_, p) => (p % 2 ? [2, 1] : [1, 2])).flat();
  const samples = {}; // label -> { 1: [secs per visit], 2: [...] }, index = pair
  const add = (label, n, pair, secs) => { ((samples[label] ??= { 1: [], 2: [] })[n])[pair] = secs; };
  const flopsOf = {};
  const ops = [
    ["matMul 1024^3", 2 * 1024 ** 3, () => [tf.randomNormal([1024, 1024], 0, 1, "float32", 1), tf.randomNormal([1024, 1024], 0, 1, "float32", 2)], ([a, b]) => tf.matMul(a, b), 5],
    ["conv2d 3x3 [1,64,64,320] 320->320", 2 * 64 * 64 * 320 * 9 * 320, () => [tf.randomNormal([1, 64, 64, 320]), tf.randomNormal([3, 3, 320, 320])], ([x, w]) => tf.conv2d(x, w, 1, "same"), 3],
    ["conv2d 3x3 [1,16,16,64] 64->64 (small)", 2 * 16 * 16 * 64 * 9 * 64, () => [tf.randomNormal([1, 16, 16, 64]), tf.randomNormal([3, 3, 64, 64])], ([x, w]) => tf.conv2d(x, w, 1, "same"), 31],
  ];
  const size = quick ? 64 : 256;
  const unetLabel = `UNet2DModel ddpm-cat-256 [1,${size},${size},3] forward`;
  const unetCfg = JSON.parse(fs.readFileSync(fs.existsSync(path.resolve(here, "configs/ddpm-cat-256.json")) ? path.resolve(here, "configs/ddpm-cat-256.json") : path.resolve(here, "../../shared/fixtures/configs/ddpm-cat-256/config.json"), "utf8"));
  const loads = [];
  let failure = null;
  for (const [visit, n] of order.entries()) {
    const pair = visit >> 1;
    const r = await K.initBackend({ prefer: "wasm", force: true, wasmThreads: n });
    if (r.wasmThreads?.threads !== n) { failure = `${n} thread(s) did not start: ${r.wasmThreads?.why}`; break; }
    loads.push({ threads: n, loadAvg1m: os.loadavg()[0] });
    for (const [label, flops, make, run, runs] of ops) {
      const inputs = make();
      add(label, n, pair, await timeIt(() => { const o = run(inputs); sync(o); o.dispose(); }, { runs }));
      flopsOf[label] = flops;
      tf.dispose(inputs);
    }
    if (pair < 2) {
      const unet = K.UNet2DModel.fromConfig(unetCfg, { init: "random", seed: 0 });
      const warm = tf.randomNormal([1, 64, 64, 3]);
      tf.dispose(unet.forward(warm, 500).sample);
      const x = tf.randomNormal([1, size, size, 3]);
      flopsOf[unetLabel] ??= await countFlops(() => unet.forward(x, 500).sample);
      add(unetLabel, n, pair, await timeIt(() => { const o = unet.forward(x, 500).sample; sync(o); o.dispose(); }, { warmup: 0, runs: 1 }));
      tf.dispose([warm, x]);
      unet.dispose();
    }
  }
  const median = (xs) => { const v = [...xs].sort((a, b) => a - b), m = v.length >> 1; return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2; };
  for (const [label, byN] of Object.entries(samples)) {
    const g = flopsOf[label] / 1e9;
    const perPair = byN[2].map((s2, p) => byN[1][p] / s2).filter((x) => Number.isFinite(x));
    for (const n of [1, 2]) {
      const xs = byN[n].filter((x) => x !== undefined);
      if (!xs.length) continue;
      const secs = median(xs);
      results.cases[`threads: ${label} @ ${n} thread${n === 1 ? "" : "s"}`] = {
        seconds: secs, bestSeconds: Math.min(...xs), gflops: g, gflopsPerSec: g / secs, bestGflopsPerSec: g / Math.min(...xs), threads: n, samples: byN[n],
        ...(n === 2 && perPair.length ? { speedupVs1Thread: median(perPair), speedupPerPair: perPair, speedupBest: Math.min(...byN[1].filter((x) => x !== undefined)) / Math.min(...xs) } : {}),
        note: `median of ${xs.length} visits, visit order ${order.join(",")} (pairs of adjacent visits); 1 thread = the single-thread SIMD build, 2 = the threaded build; load average per visit in "threads: machine load"`,
      };
    }
  }
  results.cases["threads: machine load"] = { visits: loads, cpus: os.cpus().length, error: failure ?? undefined, note: "1-minute load average at each visit: above the core count, other jobs share the cores" };
  const back = await K.initBackend({ prefer: "wasm", force: true }); // the default thread count again
  console.log(`threads section done; back to ${back.description}`);
}

// --- the backend's own primitives (always measured when a model case runs: ratios need the same run)
if (want("primitives") || want("unet") || anySd) {
  const mm = tf.tidy(() => [tf.randomNormal([1024, 1024]), tf.randomNormal([1024, 1024])]);
  // each output is freed: a kept one makes every run write fresh heap pages (page faults timed as the op)
  const tMm = await timeIt(() => { const o = tf.matMul(mm[0], mm[1]); sync(o); o.dispose(); }, { runs: 5 });
  results.cases["matMul 1024^3"] = { seconds: tMm, gflops: 2 * 1024 ** 3 / 1e9, gflopsPerSec: 2 * 1024 ** 3 / 1e9 / tMm,
    clockSeconds: clockTime(() => { const o = tf.matMul(mm[0], mm[1]); sync(o); o.dispose(); }) };
  tf.dispose(mm);
  for (const [h, c] of [[64, 256], [128, 128]]) {
    const x = tf.randomNormal([1, h, h, c]), w = tf.randomNormal([3, 3, c, c]);
    const t = await timeIt(() => { const o = tf.conv2d(x, w, 1, "same"); sync(o); o.dispose(); }, { runs: 5 });
    const g = 2 * h * h * c * 9 * c / 1e9;
    results.cases[`conv2d 3x3 [1,${h},${h},${c}] ${c}->${c}`] = { seconds: t, gflops: g, gflopsPerSec: g / t,
      clockSeconds: clockTime(() => { const o = tf.conv2d(x, w, 1, "same"); sync(o); o.dispose(); }) };
    tf.dispose([x, w]);
  }
}
const convRate = Math.max(...Object.entries(results.cases).filter(([k]) => k.startsWith("conv2d")).map(([, v]) => v.gflopsPerSec), 0);
const mmRate = results.cases["matMul 1024^3"]?.gflopsPerSec ?? 0;

// --- UNet2DModel with the real google/ddpm-cat-256 config, random weights, [1,256,256,3]
if (want("unet")) {
  const cfgFile = path.resolve(here, "../../shared/fixtures/configs/ddpm-cat-256/config.json");
  const localCfg = path.resolve(here, "configs/ddpm-cat-256.json");
  const config = JSON.parse(fs.readFileSync(fs.existsSync(localCfg) ? localCfg : cfgFile, "utf8"));
  const size = quick ? 64 : config.sample_size;
  const t0 = now();
  const unet = K.UNet2DModel.fromConfig(config, { init: "random", seed: 0 });
  const buildS = (now() - t0) / 1000;
  const x = tf.randomNormal([1, size, size, 3]);
  const forward = () => { const o = unet.forward(x, 500).sample; sync(o); o.dispose(); };
  const flops = await countFlops(() => { const o = unet.forward(x, 500).sample; return o; });
  const secs = await timeIt(forward, { warmup: 0, runs: quick ? 1 : 2 });
  results.cases[`UNet2DModel ddpm-cat-256 [1,${size},${size},3]`] = {
    params: unet.numParameters(), buildSeconds: buildS, seconds: secs, gflops: flops / 1e9, gflopsPerSec: flops / 1e9 / secs,
    ratioToConv2d: flops / 1e9 / secs / convRate, ratioToMatMul: flops / 1e9 / secs / mmRate,
  };
  tf.dispose(x);
  unet.dispose();
}

// --- load throughput: safetensors files made on the fly
if (want("load")) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bench-load-"));
  for (const [label, dtype, mb] of [["float32", "F32", quick ? 40 : 400], ["float16", "F16", quick ? 20 : 200]]) {
    const file = path.join(dir, `${label}.safetensors`);
    const perTensor = 4 * 2 ** 20 / (dtype === "F16" ? 2 : 4); // 4 MiB tensors in the file, like a model's layers
    const n = Math.round(mb * 1e6 / 4 / perTensor) * (dtype === "F16" ? 2 : 1);
    const tensors = {};
    const data = new Float32Array(perTensor).map((_, i) => Math.sin(i) * 0.1);
    for (let i = 0; i < n; i++) tensors[`layer.${i}.weight`] = { dtype: "F32", shape: [perTensor], data };
    K.saveSafetensors(file, tensors, { dtype: dtype === "F16" ? "F16" : "F32" });
    const bytes = fs.statSync(file).size;
    const t = await timeIt(() => { const ts = K.loadSafetensors(file); tf.dispose(Object.values(ts)); }, { warmup: 1, runs: 5 });
    // the same bytes read into one reused buffer, in the same run: what the disk / page cache allows
    const raw = new Uint8Array(bytes);
    const fd = fs.openSync(file, "r");
    const tRaw = await timeIt(() => { for (let d = 0; d < bytes;) d += fs.readSync(fd, raw, d, Math.min(bytes - d, 1 << 30), d); }, { warmup: 1, runs: 5 });
    fs.closeSync(fd);
    results.cases[`load ${label} safetensors ${Math.round(bytes / 1e6)} MB`] = {
      seconds: t, bytes, mbPerSec: bytes / 1e6 / t, float32MbPerSec: (dtype === "F16" ? 2 : 1) * bytes / 1e6 / t,
      rawReadMbPerSec: bytes / 1e6 / tRaw, ratioToRawRead: tRaw / t,
      note: "loadSafetensors into tfjs tensors (median of 5) beside a plain read of the same file into one buffer (same run); F16 writes twice its bytes as float32",
    };
    fs.rmSync(file);
  }
  fs.rmSync(dir, { recursive: true });
}


// --- Stable Diffusion 1.5 components, real configs, random weights: each case in its own child process
// (bench/sd-cases.mjs: a fresh wasm heap, its own conv2d rate measured right before the model; see bench/README.md)
if (anySd) {
  const { sdSection } = await import("./sd-cases.mjs");
  sdSection(results, { quick, parts: ["text", "vae", "unet-32", "unet-64"].filter(wantSd) });
}

// --- host-side work a pipeline call does besides the tensors: the torch-exact noise and the tokenizer
// Generator.randnArray for SD 1.5's initial latent [1,4,64,64] (Mersenne Twister + Box-Muller as torch) and
// CLIPTokenizer.fromPretrained on the real CLIP tokenizer files (vocab 49,408, 48,894 merges) plus one encode.
if (want("host")) {
  const g = new K.Generator().manualSeed(0);
  results.cases["Generator.randnArray [1,4,64,64]"] = { seconds: await timeIt(() => g.randnArray([1, 4, 64, 64]), { runs: 5 }) };
  const tokDir = path.resolve(here, "../../shared/fixtures/sd-tiny-pipe");
  results.cases["CLIPTokenizer.fromPretrained (SD 1.5 files)"] = {
    seconds: await timeIt(() => K.CLIPTokenizer.fromPretrained(tokDir, { subfolder: "tokenizer" }), { runs: 3 }) };
  const tok = await K.CLIPTokenizer.fromPretrained(tokDir, { subfolder: "tokenizer" });
  results.cases["CLIPTokenizer.encode 77 tokens"] = {
    seconds: await timeIt(() => tok.encode("a photograph of an astronaut riding a horse on the moon, highly detailed", { padding: "max_length", maxLength: 77, truncation: true }), { runs: 5 }) };
}

// --- schedulers: step() alone on an SD latent, beside the UNet step it sits in
// Each of the ten classes from the SD 1.5 scheduler config, a 10-step loop on [2,64,64,4] (the
// CFG batch of a 512x512 picture) with a fake model output; only the step() calls are timed (after a
// warm-up loop). Stochastic schedulers draw their noise from a torch-exact Generator, as in a pipeline.
if (want("schedulers")) {
  const sdSched = JSON.parse(fs.readFileSync(path.resolve(here, "../../shared/fixtures/configs/stable-diffusion-v1-5/scheduler/scheduler_config.json"), "utf8"));
  const names = ["DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
    "LMSDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "LCMScheduler"];
  // the UNet step this scheduler step sits beside: this run's, else the results file's (same latent shape first)
  const unetCases = { ...(previous?.cases ?? {}), ...results.cases };
  const unetKey = ["SD1.5 UNet step [2,64,64,4] + text [2,77,768]", "UNet2DModel ddpm-cat-256 [1,256,256,3]"].find((k) => unetCases[k]?.seconds);
  const unetSeconds = unetKey ? unetCases[unetKey].seconds : null;
  const shape = [2, 64, 64, 4];
  const loop = (s, timed) => {
    s.setTimesteps(10);
    const generator = new K.Generator().manualSeed(0);
    let x = tf.tidy(() => tf.mul(tf.randomNormal(shape, 0, 1, "float32", 0), s.initNoiseSigma));
    let stepSeconds = 0;
    for (const t of s.timesteps) {
      const mo = tf.tidy(() => { const xIn = s.scaleModelInput(x, t); return tf.add(tf.mul(xIn, 0.1), 0.05 * Math.cos(t / 100)); });
      const t0 = now();
      const o = s.step(mo, t, x, { generator });
      sync(o.prevSample);
      stepSeconds += (now() - t0) / 1000;
      for (const [k, v] of Object.entries(o)) if (k !== "prevSample") tf.dispose(v);
      tf.dispose([mo, x]);
      x = o.prevSample;
    }
    x.dispose();
    s.dispose();
    if (timed) timed.push(stepSeconds);
  };
  for (const name of names) {
    const cls = K.getSchedulerClass(name);
    const s = cls.fromConfig(sdSched);
    loop(s); // warm-up: kernels compiled, buffers allocated
    const before = tf.memory().numTensors;
    const runs = [];
    for (let r = 0; r < (quick ? 1 : 3); r++) loop(s, runs);
    if (tf.memory().numTensors !== before) throw new Error(`bench: ${name} leaked ${tf.memory().numTensors - before} tensors`);
    runs.sort((a, b) => a - b);
    const loopSeconds = runs[Math.floor(runs.length / 2)];
    s.setTimesteps(10);
    const calls = s.timesteps.length;
    results.cases[`scheduler ${name} step [2,64,64,4]`] = {
      seconds: loopSeconds / calls, loopSeconds, stepCalls: calls,
      unetCase: unetKey ?? null, ratioToUnetStep: unetSeconds ? loopSeconds / calls / unetSeconds : null,
      note: "seconds = one step() call (median of 3 ten-step loops / step() calls per loop); the model call it follows is not included",
    };
  }
}

// --- training on wasm: the conv-gradient kernels (kernel-lib/src/runtime/wasm/training-kernels.ts) and one training step
// Each conv shape of the ddpm-cat recipe at batch 16: the forward conv, our Conv2DBackpropFilter (a dilated conv),
// the built-in Conv2DBackpropInput (a plain loop) and ours (a conv of the zero-dilated gradient); all four do the
// same multiply-adds. Then seconds per DDPMTrainer step of the recipe (batch 16) beside one forward of that batch.
if (want("training")) {
  const { RECIPES } = await import("../scripts/train-recipes.mjs");
  const B = 16;
  const convCases = [[32, 32, 32, 1, 1], [16, 64, 64, 1, 1], [8, 64, 64, 1, 1], [32, 96, 32, 1, 1], [32, 32, 32, 2, [[0, 0], [0, 1], [0, 1], [0, 0]]]];
  const wasm = tf.getBackend() === "wasm";
  for (const [h, ci, co, stride, pad] of quick ? convCases.slice(0, 1) : convCases) {
    const x = tf.randomNormal([B, h, h, ci]), w = tf.randomNormal([3, 3, ci, co]);
    const y = tf.conv2d(x, w, stride, pad);
    const dy = tf.randomNormal(y.shape);
    const g = 2 * y.size * 9 * ci / 1e9;
    const label = `training conv 3x3 [${B},${h},${h},${ci}]->${co} stride ${stride}`;
    const entry = (secs) => ({ seconds: secs, gflops: g, gflopsPerSec: g / secs });
    results.cases[`${label} forward`] = entry(await timeIt(() => sync(tf.tidy(() => tf.conv2d(x, w, stride, pad))), { runs: 5 }));
    if (wasm) {
      K.unregisterWasmTrainingKernels();
      results.cases[`${label} Conv2DBackpropInput built-in`] = entry(await timeIt(() => sync(tf.tidy(() => tf.conv2dTranspose(dy, w, x.shape, stride, pad))), { runs: 3 }));
    }
    K.prepareTfjsForTraining();
    results.cases[`${label} Conv2DBackpropInput kit`] = entry(await timeIt(() => sync(tf.tidy(() => tf.conv2dTranspose(dy, w, x.shape, stride, pad))), { runs: 5 }));
    const filterAttrs = { strides: stride, pad, dataFormat: "NHWC", filterShape: [3, 3, ci, co] };
    results.cases[`${label} Conv2DBackpropFilter kit`] = entry(await timeIt(() => { const dw = tf.engine().runKernel("Conv2DBackpropFilter", { x, dy }, filterAttrs); sync(dw); dw.dispose(); }, { runs: 5 }));
    tf.dispose([x, w, y, dy]);
  }
  const r = RECIPES["ddpm-cat"];
  const unet = K.UNet2DModel.fromConfig(r.unet, { seed: 1 });
  const scheduler = K.DDPMScheduler.fromConfig(r.scheduler);
  const trainer = new K.DDPMTrainer(unet, scheduler, { data: r.data(0), batchSize: B, lr: r.train.lr, warmupSteps: 0 });
  trainer.trainStep(); // warm-up
  const before = tf.memory().numTensors;
  const stepSecs = await timeIt(() => trainer.trainStep(), { warmup: 0, runs: quick ? 1 : 3 });
  if (tf.memory().numTensors !== before) throw new Error(`bench: a training step leaked ${tf.memory().numTensors - before} tensors`);
  const xb = tf.randomNormal([B, 32, 32, 3]);
  const ts = Array.from({ length: B }, (_, i) => (i * 61) % 1000);
  const fwd = await timeIt(() => { const o = unet.forward(xb, ts).sample; sync(o); o.dispose(); }, { runs: 3 });
  const flops = await countFlops(() => unet.forward(xb, ts).sample);
  results.cases[`training step ddpm-cat recipe (${unet.numParameters()} params) batch ${B}`] = {
    seconds: stepSecs, forwardSeconds: fwd, ratioToForward: stepSecs / fwd, forwardGflops: flops / 1e9, samplesPerSecond: B / stepSecs,
    note: "DDPMTrainer.trainStep: cat-face batch, noise, forward + backward, grad clipping, AdamW, EMA",
  };
  tf.dispose(xb);
  trainer.dispose();
  unet.dispose();
}


// --- one whole SD 1.5 picture from a Hub-layout snapshot, against PyTorch's whole run (bench/sd-e2e.mjs); only when asked
if (only?.includes("sd-e2e")) {
  const { sdE2eSection } = await import("./sd-e2e.mjs");
  sdE2eSection(results, { quick });
}

// --- memory: tfjs peak and seconds of each memory knob on SD 1.5 shapes, one child process per case (bench/memory-cases.mjs)
if (want("memory")) {
  const { memorySection } = await import("./memory-cases.mjs");
  await memorySection(results, { quick });
}

// --- PyTorch beside the kit: PyTorch 1.13 (2 threads) on the same machine kind, NOT this run
// (../shared/perf/README.md; machines are noisy, +-10-20%), for the cases with the same config and shapes.
const PYTORCH = {
  "UNet2DModel ddpm-cat-256 [1,256,256,3]": { seconds: 6.22, gflops: 497.0 },
  "SD1.5 UNet step [2,64,64,4] + text [2,77,768]": { seconds: 29.4, gflops: 1606.5 },
  "SD1.5 UNet step [2,32,32,4] + text [2,77,768]": { seconds: 7.94, gflops: 360.2 },
  "SD1.5 VAE decode [1,64,64,4] -> 512x512": { seconds: 26.6, gflops: 2514.5 },
  "SD1.5 VAE decode [1,32,32,4] -> 256x256": { seconds: 5.42, gflops: 622.2 },
  "SD1.5 CLIPTextModel [2,77]": { seconds: 0.85, gflops: 26.6, range: "0.4-1.3 s" },
};
const measuredNow = new Set(Object.keys(results.cases));
for (const [k, v] of Object.entries(results.cases)) {
  const torch = PYTORCH[k];
  if (torch && v.seconds && !v.error) {
    v.pytorch = { ...torch, gflopsPerSec: torch.gflops / torch.seconds, note: "PyTorch 1.13, 2 threads, same machine kind, not this run (../shared/perf/README.md)" };
    v.slowerThanPytorch = v.seconds / torch.seconds;
  }
  if (v.ratioToConv2d) v.backendConv2dGflopsPerSec ??= convRate; // the primitive rate the ratio divides by (SD cases: their own process')
}

// --- results file and table
fs.mkdirSync(path.join(here, "results"), { recursive: true });
// a partial run (--only=...) updates its own cases in the existing results and keeps the others
if (only && previous) {
  results.cases = { ...previous.cases, ...results.cases };
  results.partialRuns = [...(previous.partialRuns ?? []), { date: results.date, only }];
}
fs.writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
const rows = Object.entries(results.cases).map(([k, v]) => [k, (v.seconds < 0.01 ? v.seconds?.toExponential(2) : v.seconds?.toFixed(3)) ?? "", v.gflopsPerSec?.toFixed(1) ?? (v.mbPerSec ? `${v.mbPerSec.toFixed(0)} MB/s` : ""), v.backendConv2dGflopsPerSec?.toFixed(1) ?? (v.rawReadMbPerSec ? `${v.rawReadMbPerSec.toFixed(0)} MB/s` : ""), v.ratioToConv2d ? `${(100 * v.ratioToConv2d).toFixed(0)}% of conv2d${v.ratioToConv2dClock ? ` (${(100 * v.ratioToConv2dClock).toFixed(0)}% on ${v.clock} time)` : ""}${v.ratioToSameShapes ? `, ${(100 * v.ratioToSameShapes).toFixed(0)}% of same shapes` : ""}` : v.speedupVs1Thread ? `${v.speedupVs1Thread.toFixed(2)}x 1 thread` : v.ratioToRawRead ? `${(100 * v.ratioToRawRead).toFixed(0)}% of raw read` : "", v.error ? `did not run: ${v.error.slice(0, 60)}` : v.slowerThanPytorch ? `${v.slowerThanPytorch.toFixed(1)}x PyTorch time*` : v.ratioToUnetStep ? `${(100 * v.ratioToUnetStep).toFixed(3)}% of a UNet step**` : ""]);
const head = ["case", "seconds", "GFLOP/s", "backend rate", "vs backend", "vs PyTorch (other run)*"];
const w = head.map((h, i) => Math.max(...rows.map((r) => r[i].length), h.length));
const line = (r) => r.map((c, i) => c.padEnd(w[i])).join("  ");
console.log("\n" + line(head));
for (const r of rows) console.log(line(r));
const unetNote = Object.values(results.cases).find((v) => v.unetCase)?.unetCase;
console.log(`\n* PyTorch figures come from ../shared/perf/README.md: the same hardware kind, not the same run (compare the in-run ratios).` +
  (unetNote ? `\n** one scheduler step() over one "${unetNote}" forward (from the results file when not run now).` : "") +
  `\nwritten ${path.relative(process.cwd(), out)}`);

// --- regression guard (not a timed test): every ratio measured now against the results file as
// committed in git HEAD; prints what got worse by more than 20%. In-run ratios (of the backend's own
// primitives, of 1 thread, of a raw read) are robust to a busy machine; the PyTorch ratio is not.
{
  const RATIOS = { ratioToConv2d: "higher", ratioToMatMul: "higher", ratioToConv2dClock: "higher", ratioToSameShapes: "higher", speedupVs1Thread: "higher", ratioToRawRead: "higher",
    slowerThanPytorch: "lower", ratioToUnetStep: "lower", ratioToForward: "lower" };
  const rel = path.relative(path.resolve(here, ".."), out);
  let committed = null;
  try {
    committed = JSON.parse(execFileSync("git", ["show", `HEAD:${rel}`], { cwd: here, encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], maxBuffer: 1 << 26 }));
  } catch { /* not committed yet */ }
  const worse = [];
  let compared = 0;
  let tooShort = 0;
  for (const k of measuredNow) {
    const before = committed?.cases?.[k], now = results.cases[k];
    if (!before) continue;
    if (Math.min(before.seconds ?? 1, now.seconds ?? 1) < 0.005) { tooShort++; continue; } // timer and scheduler noise

    for (const [field, better] of Object.entries(RATIOS)) {
      const a = before[field], b = now[field];
      if (typeof a !== "number" || typeof b !== "number" || !(a > 0)) continue;
      compared++;
      const worseBy = better === "higher" ? 1 - b / a : b / a - 1; // below 80% / above 120% of the committed value
      if (worseBy > 0.2) worse.push({ case: k, ratio: field, better, committed: a, now: b, worseBy });
    }
  }
  console.log(committed
    ? `\nregression guard: ${compared} ratios compared with HEAD:${rel} (${tooShort} cases under 5 ms skipped); ${worse.length ? `${worse.length} worse by more than 20%:` : "none worse by more than 20%"}`
    : `\nregression guard: HEAD:${rel} does not exist yet; nothing to compare`);
  for (const r of worse) console.log(`  WORSE ${r.case}: ${r.ratio} ${r.committed.toPrecision(3)} -> ${r.now.toPrecision(3)} (${(100 * r.worseBy).toFixed(0)}% ${r.better === "higher" ? "lower" : "higher"})`);
  // a partial run keeps the earlier runs' findings for the cases it did not measure
  const kept = only ? (previous?.regressionGuard?.worse ?? []).filter((r) => !measuredNow.has(r.case)) : [];
  results.regressionGuard = { against: committed ? `HEAD:${rel}` : null, threshold: 0.2, compared, worse: [...kept, ...worse] };
  fs.writeFileSync(out, JSON.stringify(results, null, 2) + "\n");
}
