// bench/run.mjs --only=memory: the tfjs memory peak and the time of each memory knob (kernel-lib/src/memory) on
// Stable Diffusion 1.5 shapes with the real configs and random weights: attention slicing on a UNet step,
// VAE tiling and slicing on decodes, model / sequential CPU offload, and useful combinations on a whole
// 512x512 pipeline call (DDIM, 1 step, CFG 7.5).
//
// Each case runs in its own child process (`node bench/memory-cases.mjs <case> [--quick]`): a fresh wasm heap,
// so the heap size reported after the case is that case's high-water mark (the heap never shrinks), and a case
// that runs out of the ~4 GiB wasm heap does not take the others down. Peaks are measured by measureMemory
// (exact for every buffer tfjs allocates; XNNPACK's packed-weight copies are only in the heap size).
// Random weights are drawn fast: a 16M-value N(0, 1) block (seeded xorshift + Box-Muller) read at a different offset for each
// parameter, scaled as fromConfig's init (N(0, 1/fan_in), norms 1, biases 0). Weights of an offloaded model are
// built straight into host memory, one parameter at a time, so they never all sit in the wasm heap.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const GiB = 2 ** 30;

const SD = path.resolve(here, "../../shared/fixtures/configs/stable-diffusion-v1-5");
const TINY = path.resolve(here, "../datasets/sd-tiny-random");

/** SD 1.5 (or, with --quick, the tiny offline model) sizes and configs. */
function setup(quick) {
  const dir = quick ? TINY : SD;
  const cfg = (name) => JSON.parse(fs.readFileSync(path.join(dir, name, name === "scheduler" ? "scheduler_config.json" : "config.json"), "utf8"));
  return { quick, cfg, latent: quick ? 16 : 64, small: quick ? 8 : 32, pixels: quick ? 128 : 512, tile: quick ? 8 : 32 };
}

// ---- the cases ----------------------------------------------------------------------------------------------
const UNET = (s) => `UNet step [2,${s.latent},${s.latent},4] + text [2,77]`;
const VAE1 = (s) => `VAE decode [1,${s.latent},${s.latent},4] -> ${s.pixels}px`;
const VAE2 = (s) => `VAE decode [2,${s.small},${s.small},4] -> 2x${s.pixels / 2}px`;
const PIPE = (s) => `pipeline ${s.pixels}x${s.pixels}, DDIM 1 step, CFG`;

export const MEMORY_CASES = {
  "unet-resident": { label: (s) => `${UNET(s)}, resident, attention unsliced`, run: (c) => unetStep(c, {}) },
  "unet-resident-auto": { label: (s) => `${UNET(s)}, resident, attention slicing auto`, run: (c) => unetStep(c, { slicing: "auto" }) },
  "unet-resident-max": { label: (s) => `${UNET(s)}, resident, attention slicing max`, run: (c) => unetStep(c, { slicing: "max" }) },
  "unet-sequential": { label: (s) => `${UNET(s)}, sequential offload, attention unsliced`, run: (c) => unetStep(c, { sequential: true }) },
  "unet-sequential-max": { label: (s) => `${UNET(s)}, sequential offload, attention slicing max`, run: (c) => unetStep(c, { sequential: true, slicing: "max" }) },
  "vae-512": { label: (s) => `${VAE1(s)}, one pass`, run: (c) => vaeDecode(c, { batch: 1 }) },
  "vae-512-tiled": { label: (s) => `${VAE1(s)}, tiled (${s.tile * 8}px tiles)`, run: (c) => vaeDecode(c, { batch: 1, tiling: true }) },
  "vae-2x256": { label: (s) => `${VAE2(s)}, one pass`, run: (c) => vaeDecode(c, { batch: 2 }) },
  "vae-2x256-sliced": { label: (s) => `${VAE2(s)}, sliced`, run: (c) => vaeDecode(c, { batch: 2, slicing: true }) },
  "pipe-resident": { label: (s) => `${PIPE(s)}, resident`, run: (c) => pipelineCall(c, {}) },
  "pipe-model-max": { label: (s) => `${PIPE(s)}, model offload + attention slicing max`, run: (c) => pipelineCall(c, { offload: "model", slicing: "max" }) },
  "pipe-sequential": { label: (s) => `${PIPE(s)}, sequential offload`, run: (c) => pipelineCall(c, { offload: "sequential" }) },
  "pipe-sequential-max-tiled": { label: (s) => `${PIPE(s)}, sequential offload + slicing max + VAE tiling`, run: (c) => pipelineCall(c, { offload: "sequential", slicing: "max", tiling: true }) },
};

// ---- building models with random weights ----------------------------------------------------------------------
let noise = null;

/** n draws of N(0, 1): xorshift32 uniforms through Box-Muller (tfjs' seeded randomNormal runs at ~0.1-1 M/s here). */
function gaussians(n, seed) {
  const out = new Float32Array(n);
  let x = seed >>> 0 || 1;
  const uniform = () => {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    return ((x >>> 0) + 1) / 4294967297;
  };
  for (let i = 0; i < n; i += 2) {
    const r = Math.sqrt(-2 * Math.log(uniform())), a = 2 * Math.PI * uniform();
    out[i] = r * Math.cos(a);
    if (i + 1 < n) out[i + 1] = r * Math.sin(a);
  }
  return out;
}

/** Fills every weight of `model` (seeded); hostOnly: each weight goes to host memory as soon as it is made. */
function randomWeights({ tf }, model, seed, hostOnly) {
  noise ??= gaussians(1 << 24, 1234);
  model.namedParameters().forEach(([, p], i) => {
    const n = p.numel;
    const data = new Float32Array(n);
    if (p.init === "ones") data.fill(1);
    else if (p.init !== "zeros") {
      const fanIn = p.torchShape.slice(1).reduce((a, b) => a * b, 1);
      const std = p.init === "fan_in" ? 1 / Math.sqrt(fanIn) : 1;
      let off = ((seed + i) * 2654435761) % noise.length;
      for (let k = 0; k < n; k++) {
        data[k] = std * noise[off];
        if (++off === noise.length) off = 0;
      }
    }
    tf.tidy(() => p.set(tf.tensor(data, p.shape, "float32")));
    if (hostOnly) p.offload();
  });
  return model;
}

function build(ctx, Cls, config, seed, hostOnly) {
  return randomWeights(ctx, new Cls(config), seed, hostOnly);
}

/** What a case reports from measureMemory (with the machine's load: seconds on a busy machine are longer). */
function report(m, extra = {}) {
  const r = {
    peakBytes: m.peakBytes, startBytes: m.startBytes, endBytes: m.endBytes, seconds: m.seconds,
    rssPeakBytes: m.rssPeak, wasmHeapBytes: m.wasmHeapBytes, loadAverage1min: os.loadavg()[0], ...extra,
  };
  if (m.perComponent) r.perComponent = m.perComponent;
  return r;
}

async function unetStep(ctx, { sequential = false, slicing = null }) {
  const { K, tf, s } = ctx;
  K.setKeepPackedWeights(sequential); // resident: weights + one layer (XNNPACK would keep a packed copy of all)
  const t0 = performance.now();
  const unet = build(ctx, K.UNet2DConditionModel, s.cfg("unet"), 0, sequential);
  const buildSeconds = (performance.now() - t0) / 1000;
  const handle = sequential ? K.cpuOffload(unet) : null;
  if (slicing) unet.setAttentionSlice(slicing);
  const x = tf.randomNormal([2, s.latent, s.latent, 4], 0, 1, "float32", 1);
  const text = tf.randomNormal([2, 77, unet.config.cross_attention_dim], 0, 1, "float32", 2);
  const m = await K.measureMemory(() => {
    const o = unet.forward(x, 500, text).sample;
    o.dataSync();
    return o;
  });
  m.result.dispose();
  const out = report(m, { params: unet.numParameters(), weightBytes: 4 * unet.numParameters(), buildSeconds, keepPackedWeights: sequential, offloaded: handle !== null });
  tf.dispose([x, text]);
  unet.dispose(); // not handle.remove(): that would upload every weight again
  return out;
}

async function vaeDecode(ctx, { batch, tiling = false, slicing = false }) {
  const { K, tf, s } = ctx;
  const vae = build(ctx, K.AutoencoderKL, s.cfg("vae"), 0, false);
  if (tiling) {
    vae.enableTiling();
    vae.tileLatentMinSize = s.tile; // SD's own tiles (64 latents = 512 px) would hold a 512 px picture whole
    vae.tileSampleMinSize = 8 * s.tile;
  }
  if (slicing) vae.enableSlicing();
  const n = batch === 1 ? s.latent : s.small;
  const z = tf.randomNormal([batch, n, n, 4], 0, 1, "float32", 3);
  const m = await K.measureMemory(() => {
    const o = vae.decode(z).sample;
    o.dataSync();
    return o;
  });
  m.result.dispose();
  const out = report(m, { params: vae.numParameters(), weightBytes: 4 * vae.numParameters(), tileSampleMinSize: tiling ? vae.tileSampleMinSize : undefined });
  z.dispose();
  vae.dispose();
  return out;
}

async function pipelineCall(ctx, { offload = null, slicing = null, tiling = false }) {
  const { K, tf, s } = ctx;
  K.setKeepPackedWeights(offload === "sequential");
  const host = offload !== null;
  const t0 = performance.now();
  const pipe = new K.StableDiffusionPipeline({
    vae: build(ctx, K.AutoencoderKL, s.cfg("vae"), 0, host),
    textEncoder: build(ctx, K.CLIPTextModel, s.cfg("text_encoder"), 1, host),
    tokenizer: await K.CLIPTokenizer.fromPretrained(TINY, { subfolder: "tokenizer" }),
    unet: build(ctx, K.UNet2DConditionModel, s.cfg("unet"), 2, host),
    scheduler: K.DDIMScheduler.fromConfig(s.cfg("scheduler")),
  });
  const buildSeconds = (performance.now() - t0) / 1000;
  pipe.setProgressBarConfig({ disable: true });
  pipe.memory = "none"; // each case measures its own knobs, not the memory plan's choice
  if (offload === "model") pipe.enableModelCpuOffload();
  if (offload === "sequential") pipe.enableSequentialCpuOffload();
  if (slicing) pipe.enableAttentionSlicing(slicing);
  if (tiling) {
    pipe.enableVaeTiling();
    pipe.vae.tileLatentMinSize = s.tile;
    pipe.vae.tileSampleMinSize = 8 * s.tile;
  }
  const m = await K.measureMemory(
    () => pipe.generate({ prompt: "a watercolor fox", numInferenceSteps: 1, guidanceScale: 7.5, height: s.pixels, width: s.pixels,
      generator: new K.Generator().manualSeed(0), outputType: "np" }),
    { components: pipe },
  );
  m.result.images.dispose();
  const weights = K.memoryReport(pipe).weightBytes;
  const out = report(m, { weightBytes: weights, buildSeconds, keepPackedWeights: offload === "sequential" });
  pipe.dispose(); // without disabling the offload first: that would upload every weight again
  return out;
}

// ---- child process: one case ----------------------------------------------------------------------------------
export async function runMemoryCase(key, quick) {
  const tf = require("@tensorflow/tfjs");
  const K = require("kernel-lib");
  const backend = await K.initBackend();
  const s = setup(quick);
  const c = MEMORY_CASES[key];
  if (!c) throw new Error(`bench memory: no case "${key}" (cases: ${Object.keys(MEMORY_CASES).join(", ")})`);
  const r = await c.run({ K, tf, s });
  return { label: c.label(s), backend: backend.description, ...r };
}

// ---- bench/run.mjs --only=memory: every case in its own process, results into `results.cases` ------------------
export async function memorySection(results, { quick = false } = {}) {
  const s = setup(quick);
  const rows = [];
  // BENCH_MEMORY_CASES=unet-resident,vae-512 re-measures only those (the others stay as the results file has them)
  const keys = process.env.BENCH_MEMORY_CASES?.split(",") ?? Object.keys(MEMORY_CASES);
  for (const key of keys) {
    if (!MEMORY_CASES[key]) throw new Error(`BENCH_MEMORY_CASES: no case "${key}" (cases: ${Object.keys(MEMORY_CASES).join(", ")})`);
    const label = `memory: ${MEMORY_CASES[key].label(s)}`;
    process.stdout.write(`${label} ... `);
    const child = spawnSync(process.execPath, ["--max-old-space-size=16000", fileURLToPath(import.meta.url), key, ...(quick ? ["--quick"] : [])],
      { encoding: "utf8", maxBuffer: 64 * 2 ** 20, timeout: 45 * 60 * 1000 });
    const line = child.stdout?.split("\n").find((l) => l.startsWith("MEMORY-CASE "));
    let r;
    if (line) {
      r = JSON.parse(line.slice("MEMORY-CASE ".length));
      delete r.label;
    } else {
      const err = `${child.stderr ?? ""}${child.error ? String(child.error) : ""}`.split("\n").map((l) => l.trim()).filter((l) => /error|out of|abort|memory/i.test(l));
      const error = (err[0] ?? `exit ${child.status} ${child.signal ?? ""}`).slice(0, 300);
      // emscripten aborts when the wasm heap cannot grow past its ~4 GiB
      const oom = /Aborted\(\)|out of memory|memory access out of bounds/i.test(error);
      r = { error: oom ? `out of wasm memory (${error})` : error, fits: false, note: "did not run: see error (wasm heap ~4 GiB)" };
    }
    if (!r.error) r.fits = true;
    r.date = results.date;
    results.cases[label] = r;
    rows.push([label, r]);
    console.log(r.error ? `failed: ${r.error}` : `peak ${(r.peakBytes / GiB).toFixed(2)} GiB, ${r.seconds.toFixed(1)} s`);
  }
  const f = (b) => (b == null ? "" : `${(b / GiB).toFixed(2)}`);
  console.log("\n| case | tfjs peak GiB | wasm heap GiB | RSS peak GiB | seconds |\n|---|---:|---:|---:|---:|");
  for (const [label, r] of rows) {
    console.log(r.error ? `| ${label} | did not run: ${r.error.slice(0, 80)} | | | |` : `| ${label} | ${f(r.peakBytes)} | ${f(r.wasmHeapBytes)} | ${f(r.rssPeakBytes)} | ${r.seconds.toFixed(1)} |`);
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const key = process.argv[2];
  try {
    const r = await runMemoryCase(key, process.argv.includes("--quick"));
    console.log("MEMORY-CASE " + JSON.stringify(r));
    process.exit(0);
  } catch (e) {
    console.error(`error: ${String(e?.message ?? e).split("\n")[0]}`);
    process.exit(1);
  }
}
