// bench/run.mjs --only=sd-e2e: one whole Stable Diffusion 1.5 picture as a student makes it, against PyTorch's
// ~10-14 min on this machine kind (../shared/perf/README.md): StableDiffusionPipeline.fromPretrained on a Hub-layout
// snapshot of the real SD 1.5 (real configs and sizes, random weights: scripts/rehearsal/snapshots.mjs), 512x512,
// 20 DPM-Solver++ steps with classifier-free guidance, memory "auto" (the pipeline's own memory plan), on the wasm
// threads the machine has (2 here, forced: `auto` would take fewer on a busy machine). Runs in its own process
// (`node bench/sd-e2e.mjs [--steps N] [--threads N]`, printing one `SD-E2E {json}` line): a fresh wasm heap.
import * as path from "node:path";
import * as fs from "node:fs";
import * as os from "node:os";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "..");
export const E2E_LABEL = "SD1.5 end to end 512x512, 20 steps DPM++ 2M, CFG (fromPretrained + generate)";
/** PyTorch's whole run here, 20 steps with CFG + decode (../shared/perf/README.md): 10-14 min. */
const PYTORCH_SECONDS = { low: 600, high: 840 };

// ---- bench/run.mjs: the case in its own process ------------------------------------------------------------------
export function sdE2eSection(results, { quick = false } = {}) {
  const args = quick ? ["--steps", "2"] : [];
  process.stdout.write(`${E2E_LABEL}${quick ? " (quick: 2 steps)" : ""} ... `);
  const child = spawnSync(process.execPath, ["--max-old-space-size=16000", fileURLToPath(import.meta.url), ...args],
    { encoding: "utf8", maxBuffer: 64 * 2 ** 20, timeout: 3 * 60 * 60 * 1000 });
  const line = child.stdout?.split("\n").find((l) => l.startsWith("SD-E2E "));
  const r = line ? JSON.parse(line.slice("SD-E2E ".length)) : { error: `${child.stderr ?? ""}`.trim().split("\n").slice(-3).join(" ").slice(0, 400) || `exit ${child.status}` };
  results.cases[E2E_LABEL] = r;
  console.log(r.error ? `failed: ${r.error}` : `${(r.seconds / 60).toFixed(1)} min (PyTorch ${PYTORCH_SECONDS.low / 60}-${PYTORCH_SECONDS.high / 60} min)` +
    (r.slowerThanPytorch ? `: ${r.slowerThanPytorch.toFixed(2)}x PyTorch's time` : ""));
}

// ---- child process -------------------------------------------------------------------------------------------------
async function main() {
  const argv = process.argv.slice(2);
  const opt = (k, d) => { const i = argv.indexOf(k); return i >= 0 ? argv[i + 1] : d; };
  const steps = Number(opt("--steps", 20));
  const threads = Number(opt("--threads", Math.min(2, os.cpus().length)));
  const cache = path.resolve(opt("--cache", path.join(root, "runs/rehearsal/hf-cache")));
  const { buildRehearsalCache } = await import("../scripts/rehearsal/snapshots.mjs");
  const tb = performance.now();
  await buildRehearsalCache(cache, { repos: ["stable-diffusion-v1-5/stable-diffusion-v1-5"], log: () => {} });
  const cacheSeconds = (performance.now() - tb) / 1000;
  process.env.HF_HUB_OFFLINE = "1";
  process.env.HF_HUB_CACHE = cache;
  const K = require("kernel-lib");
  const backend = await K.initBackend({ wasmThreads: threads });
  const load0 = os.loadavg()[0];
  const t0 = performance.now();
  const pipe = await K.StableDiffusionPipeline.fromPretrained("stable-diffusion-v1-5/stable-diffusion-v1-5");
  const loadSeconds = (performance.now() - t0) / 1000;
  pipe.scheduler = K.DPMSolverMultistepScheduler.fromConfig(pipe.scheduler.config);
  pipe.setProgressBarConfig({ disable: true });
  // CPU seconds of this process per component (with one wasm thread, the work itself: robust to other jobs)
  const cpuNow = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
  const cpu = {};
  for (const [name, m] of [["text_encoder", pipe.textEncoder], ["unet", pipe.unet], ["vae", pipe.vae]]) {
    let t = 0, depth = 0;
    cpu[name] = 0;
    K.addForwardHook(m, ["forward", "encode", "decode"], {
      preForward: () => { if (depth++ === 0) t = cpuNow(); },
      postForward: () => { if (--depth === 0) cpu[name] += cpuNow() - t; },
    });
  }
  const loadCpuSeconds = cpuNow();
  const t1 = performance.now();
  const m = await K.measureMemory(() => pipe.generate({ prompt: "a watercolor painting of a fox in a snowy forest", numInferenceSteps: steps,
    guidanceScale: 7.5, generator: new K.Generator().manualSeed(0), outputType: "np" }), { components: pipe });
  const generateSeconds = (performance.now() - t1) / 1000;
  const generateCpuSeconds = cpuNow() - loadCpuSeconds;
  const values = m.result.images.dataSync();
  const finite = values.every((v) => Number.isFinite(v));
  m.result.images.dispose();
  const seconds = loadSeconds + generateSeconds;
  const out = {
    seconds, loadSeconds, generateSeconds, steps, threads: backend.wasmThreads?.threads ?? 1, backend: backend.description,
    perComponent: m.perComponent, unetSecondsPerStep: (m.perComponent?.unet?.seconds ?? 0) / steps,
    cpuSeconds: { load: loadCpuSeconds, generate: generateCpuSeconds, perComponent: cpu, unetPerStep: cpu.unet / steps },
    peakTfjsBytes: m.peakBytes, wasmHeapBytes: m.wasmHeapBytes, rssPeakBytes: m.rssPeak, memoryPlan: pipe.memoryPlan?.summary,
    finitePicture: finite, loadAverage1min: [load0, os.loadavg()[0]], cacheSeconds,
    pytorch: { seconds: (PYTORCH_SECONDS.low + PYTORCH_SECONDS.high) / 2, range: "10-14 min", note: "PyTorch 1.13, 2 threads, same machine kind, not this run (../shared/perf/README.md)" },
    // against the middle of PyTorch's range; only a 20-step run compares
    slowerThanPytorch: steps === 20 ? seconds / ((PYTORCH_SECONDS.low + PYTORCH_SECONDS.high) / 2) : undefined,
    note: `random weights of the real sizes; ${steps} steps`,
  };
  console.log(`SD-E2E ${JSON.stringify(out)}`);
  pipe.dispose();
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  main().catch((e) => { console.error(e); process.exit(1); });
}
