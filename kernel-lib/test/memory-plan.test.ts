// Memory plans (kernel-lib/src/memory/memory-plan.ts, model-memory.ts): with an artificial budget a pipeline picks
// savings that fit, its measured tfjs peak stays inside the budget, and its picture is the resident run's; a budget
// nothing fits gives a clear error before any kernel runs; models loaded alone are placed and checked the same way.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline } from "../src/pipelines/pipeline-stable-diffusion.js";
import { DiffusionPipeline } from "../src/pipelines/diffusion-pipeline.js";
import { DDPMPipeline } from "../src/pipelines/pipeline-ddpm.js";
import { UNet2DConditionModel } from "../src/models/unet-2d-condition.js";
import { AutoencoderKL } from "../src/models/autoencoder-kl.js";
import { getKeepPackedWeights, setKeepPackedWeights } from "../src/runtime/wasm/packed-weights.js";
import { estimatePlan, chooseMemoryPlan, MemoryPlanError, memoryPlanLog, planComponents } from "../src/memory/memory-plan.js";
import { setMemoryBudget, memoryBudget, parseBytes } from "../src/memory/memory-budget.js";
import { getOffloadMode, hasModelOffload, removeModelOffload } from "../src/memory/offload.js";
import { getAttentionSlices } from "../src/models/attention-slicing.js";
import { measureMemory } from "../src/memory/memory-report.js";
import "../src/memory/model-memory.js"; // the load policy, as importing "kernel-lib" installs it
import { Generator } from "../src/random/generator.js";
import { compare } from "./helpers.js";

const FOLDER = path.resolve(__dirname, "../../datasets/sd-tiny-random");
const SIZE = 64; // 8x8 latents
const call = (pipe: StableDiffusionPipeline) => pipe.generate({ prompt: "a watercolor fox", numInferenceSteps: 2, guidanceScale: 7.5,
  height: SIZE, width: SIZE, generator: new Generator().manualSeed(3), outputType: "np" });

let residentImage: tf.Tensor4D;
let residentPeak: number;

let weightBytes: number;

beforeAll(async () => {
  const resident = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER, { memory: "none" });
  resident.setProgressBarConfig({ disable: true });
  const m = await measureMemory(() => call(resident));
  residentImage = m.result.images;
  residentPeak = m.peakBytes;
  weightBytes = 4 * (resident.unet.numParameters() + resident.vae.numParameters() + resident.textEncoder.numParameters());
  resident.dispose();
});
afterAll(() => {
  residentImage.dispose();
  setKeepPackedWeights(true);
});

/** The plan input of a pipeline's call at SIZE, as generate() builds it. */
function input(pipe: StableDiffusionPipeline) {
  const { calls, what } = (pipe as unknown as { memoryCalls(o: object, h: number, w: number): { what: string; calls: never[] } })
    .memoryCalls({ prompt: "a watercolor fox", guidanceScale: 7.5, outputType: "np" }, SIZE, SIZE);
  return { what, calls, ...planComponents(pipe) };
}

describe("a pipeline plans its memory", () => {
  it("with an ample budget changes nothing and says nothing", async () => {
    const pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER);
    pipe.setProgressBarConfig({ disable: true });
    const { images } = await call(pipe);
    expect(pipe.memoryPlan!.knobs).toMatchObject({ offload: "none", keepPackedWeights: true, attentionSlicing: null, vaeSlicing: false, vaeTiling: false });
    expect(pipe.memoryPlan!.fits).toBe(true);
    expect(compare(images, residentImage, 0).maxAbs).toBe(0);
    images.dispose();
    pipe.dispose();
  });

  it("on wasm keeps the largest attention block free beyond the peak (one linear heap must find it in one piece)", async () => {
    const pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER, { memory: "none" });
    const knobs = { offload: "none" as const, keepPackedWeights: true, attentionSlicing: null, vaeSlicing: false, vaeTiling: false };
    // the UNet's call alone (the VAE decode is this tiny model's peak)
    const unetOnly = () => { const i = input(pipe); return { ...i, calls: i.calls.filter((c: { component: string }) => c.component === "unet") }; };
    const probe = estimatePlan(unetOnly(), knobs, { bytes: 2 ** 40, backend: "cpu", source: "test" });
    const unet = probe.calls.find((c) => c.component === "unet")!;
    // one pass: all (batch, head) pairs' score maps [pairs, Lq, Lk] in one tensor, float32
    const heads = (pipe.unet.config as { attention_head_dim: number | number[] }).attention_head_dim;
    expect(unet.blockBytes).toBeGreaterThan(0);
    expect(probe.peakBytes).toBe(unet.totalBytes);
    const tight = { bytes: unet.totalBytes + unet.blockBytes - 1, source: "test" };
    expect(estimatePlan(unetOnly(), knobs, { ...tight, backend: "cpu" }).fits).toBe(true);
    const wasm = estimatePlan(unetOnly(), knobs, { ...tight, backend: "wasm" });
    expect(wasm.fits).toBe(false);
    expect(wasm.summary).toMatch(/does NOT fit: its largest attention block \(.*\) needs a free piece of the wasm heap of its own/);
    // slicing one pair at a time shrinks the block by the pairs computed at once
    const sliced = estimatePlan(unetOnly(), { ...knobs, attentionSlicing: "max" }, { bytes: 2 ** 40, backend: "wasm", source: "test" });
    const pairs = 2 * Math.max(...[heads].flat());
    expect(sliced.calls.find((c) => c.component === "unet")!.blockBytes * pairs).toBe(unet.blockBytes);
    pipe.dispose();
  });

  it("with a small budget picks savings that fit: the measured peak stays inside it and the picture is the resident run's", async () => {
    const pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER);
    pipe.setProgressBarConfig({ disable: true });
    // a budget half-way between the smallest plan and the plan that changes nothing
    const all = estimatePlan(input(pipe), { offload: "none", keepPackedWeights: true, attentionSlicing: null, vaeSlicing: false, vaeTiling: false });
    const least = estimatePlan(input(pipe), { offload: "sequential", keepPackedWeights: false, attentionSlicing: "max", vaeSlicing: true, vaeTiling: false });
    const budget = Math.floor((least.peakBytes + all.peakBytes) / 2);
    expect(all.fits && least.fits).toBe(true); // under the backend's own budget
    pipe.memoryBudgetBytes = budget;
    const before = tf.memory().numTensors;
    const m = await measureMemory(() => call(pipe));
    const plan = pipe.memoryPlan!;
    expect(plan.fits).toBe(true);
    expect(plan.peakBytes).toBeLessThanOrEqual(budget);
    expect(plan.knobs.offload !== "none" || !plan.knobs.keepPackedWeights || plan.knobs.attentionSlicing !== null).toBe(true);
    expect(getOffloadMode(pipe) ?? "none").toBe(plan.knobs.offload);
    expect(m.peakBytes, `measured peak ${m.peakBytes} vs budget ${budget} (${plan.summary})`).toBeLessThanOrEqual(budget);
    // offload and slicing give the same numbers; unpacked weights regroup sums (1x1 convs as matMuls)
    expect(compare(m.result.images, residentImage, 1e-5).maxAbs).toBeLessThan(1e-5);
    m.result.images.dispose();
    (pipe.scheduler as { dispose?: () => void }).dispose?.(); // PNDM keeps its last noise predictions
    expect(tf.memory().numTensors).toBe(before);
    expect(memoryPlanLog().at(-1)!.summary).toBe(plan.summary);
    pipe.dispose();
    setKeepPackedWeights(true);
  });

  it("re-plans when the call grows, and a budget nothing fits is a clear error before any kernel runs", async () => {
    const pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER);
    pipe.setProgressBarConfig({ disable: true });
    pipe.memoryBudgetBytes = parseBytes("40 MiB");
    await call(pipe).then((o) => o.images.dispose());
    const small = pipe.memoryPlan!;
    const big = await pipe.generate({ prompt: "a fox", numInferenceSteps: 1, height: 256, width: 256, numImagesPerPrompt: 2, outputType: "np" });
    big.images.dispose();
    expect(pipe.memoryPlan!.what).toContain("256x256, 2 pictures, CFG");
    expect(pipe.memoryPlan!.what).not.toBe(small.what);
    expect(pipe.memoryPlan!.fits).toBe(true);
    pipe.memoryBudgetBytes = 1024 * 1024; // 1 MiB: the weights of one layer and a latent barely fit, the VAE's maps do not
    const before = tf.memory().numTensors;
    const unetCalls: number[] = [];
    const forward = pipe.unet.forward.bind(pipe.unet);
    pipe.unet.forward = ((...a: Parameters<typeof forward>) => { unetCalls.push(1); return forward(...a); }) as typeof forward;
    let err: unknown;
    try { await call(pipe); } catch (e) { err = e; }
    expect(err).toBeInstanceOf(MemoryPlanError);
    const msg = (err as Error).message;
    expect(msg).toContain("No memory plan fits StableDiffusionPipeline 64x64, 1 picture, CFG");
    expect(msg).toMatch(/budget is 1\.00 MiB \(the pipeline's memoryBudgetBytes\)/);
    expect(msg).toMatch(/at (text_encoder|unet|vae)/);
    expect(msg).toContain("Nothing was run");
    expect(msg).toContain("smaller height and width");
    expect(unetCalls.length).toBe(0);
    expect(tf.memory().numTensors).toBe(before);
    pipe.dispose();
    setKeepPackedWeights(true);
  });

  it("explicit knobs take control (manual): kept, and refused before running when they cannot fit; memory \"none\" never plans", async () => {
    const pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER);
    pipe.setProgressBarConfig({ disable: true });
    pipe.enableAttentionSlicing("max");
    expect(pipe.memory).toBe("manual");
    await call(pipe).then((o) => o.images.dispose());
    expect(Object.values(getAttentionSlices(pipe.unet)).every((s) => s === 1)).toBe(true);
    expect(getOffloadMode(pipe)).toBe(null);
    expect(pipe.memoryPlan!.knobs.offload).toBe("none");
    pipe.memoryBudgetBytes = parseBytes("12 MiB"); // the auto plan would offload here; manual keeps the knobs and refuses
    await expect(call(pipe)).rejects.toThrow(/does NOT fit\. Nothing was run.*pipe\.memory = "auto"/);
    expect(getOffloadMode(pipe)).toBe(null);
    pipe.memory = "none";
    pipe.memoryPlan = null;
    await call(pipe).then((o) => o.images.dispose());
    expect(pipe.memoryPlan).toBe(null);
    pipe.dispose();
  });
});

describe("a model loaded alone", () => {
  afterAll(() => setMemoryBudget(null));

  it("goes to host memory with sequential offload when it does not fit, says so, and gives the same numbers", async () => {
    const onDevice = await UNet2DConditionModel.fromPretrained(FOLDER, { subfolder: "unet", placement: "device" });
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: unknown) => lines.push(String(s));
    setMemoryBudget(0.5 * onDevice.numParameters() * 4);
    let offloaded: UNet2DConditionModel;
    try {
      offloaded = await UNet2DConditionModel.fromPretrained(FOLDER, { subfolder: "unet" });
    } finally {
      console.log = log;
      setMemoryBudget(null);
    }
    expect(hasModelOffload(offloaded)).toBe(true);
    expect(offloaded.namedParameters().every(([, p]) => p.isOffloaded && !p.isLoaded)).toBe(true);
    expect(lines.join("\n")).toMatch(/UNet2DConditionModel: .* of weights .* do not fit .*host memory .*sequential offload/);
    const g = new Generator().manualSeed(1);
    const x = tf.transpose(g.randn([2, 4, 8, 8]), [0, 2, 3, 1]) as tf.Tensor4D;
    const text = tf.tensor3d(g.randn([2, 77, 32]).dataSync(), [2, 77, 32]);
    const a = onDevice.forward(x, 500, text).sample;
    const b = offloaded.forward(x, 500, text).sample;
    expect(compare(b, a, 0).maxAbs).toBe(0);
    expect(offloaded.namedParameters().some(([, p]) => p.isLoaded)).toBe(false);
    tf.dispose([x, text, a, b]);
    removeModelOffload(offloaded);
    offloaded.dispose();
    onDevice.dispose();
  });

  it("turns on attention slicing when a call's maps would overrun, and refuses a call nothing fits, before it runs", async () => {
    const unet = await UNet2DConditionModel.fromPretrained(FOLDER, { subfolder: "unet" });
    expect(hasModelOffload(unet)).toBe(false);
    const x = tf.zeros([2, 64, 64, 4]) as tf.Tensor4D; // 4096 tokens at the first level: 16 pairs x 2 x 64 MiB one pass
    const text = tf.zeros([2, 77, 32]) as tf.Tensor3D;
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: unknown) => lines.push(String(s));
    setMemoryBudget(parseBytes("900 MiB"));
    try {
      const y = unet.forward(x, 10, text).sample;
      y.dispose();
    } finally {
      console.log = log;
    }
    expect(lines.join("\n")).toMatch(/UNet2DConditionModel\.forward on \[2,64,64,4\] needs .* attention slicing "(auto|max)" turned on/);
    expect(Object.values(getAttentionSlices(unet)).some((s) => s !== null)).toBe(true);
    setMemoryBudget(parseBytes("8 MiB"));
    const before = tf.memory().numTensors;
    expect(() => unet.forward(x, 10, text)).toThrowError(MemoryPlanError);
    expect(() => unet.forward(x, 10, text)).toThrowError(/UNet2DConditionModel\.forward on \[2,64,64,4\] needs about .* over the wasm budget of 8\.00 MiB .*Nothing was run/);
    expect(tf.memory().numTensors).toBe(before);
    setMemoryBudget(null);
    tf.dispose([x, text]);
    unet.dispose();
  });

  it("a float16 file kept in host memory stays float16 (half the bytes) and gives the device load's numbers", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kit-fp16-"));
    const vae = await AutoencoderKL.fromPretrained(FOLDER, { subfolder: "vae", placement: "device" });
    vae.savePretrained(dir, { variant: "fp16", dtype: "F16" });
    const dev = await AutoencoderKL.fromPretrained(dir, { variant: "fp16", placement: "device" });
    const host = await AutoencoderKL.fromPretrained(dir, { variant: "fp16", placement: "host" });
    const params = host.namedParameters();
    expect(params.every(([, p]) => p.isOffloaded && p.hostBytes === 2 * p.numel)).toBe(true);
    const z = tf.randomNormal([1, 8, 8, 4], 0, 1, "float32", 7) as tf.Tensor4D;
    const a = dev.decode(z).sample;
    const b = host.decode(z).sample; // loaded on demand, widened to float32
    expect(compare(b, a, 0).maxAbs).toBe(0);
    tf.dispose([z, a, b]);
    [vae, dev, host].forEach((m) => m.dispose());
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe("budgets and pipelines loaded into host memory", () => {
  it("reads KIT_MEMORY_BUDGET and names bad sizes", () => {
    process.env.KIT_MEMORY_BUDGET = "1.5GiB";
    try {
      expect(memoryBudget().bytes).toBe(1.5 * 2 ** 30);
    } finally {
      delete process.env.KIT_MEMORY_BUDGET;
    }
    expect(() => parseBytes("lots", "KIT_MEMORY_BUDGET")).toThrow(/KIT_MEMORY_BUDGET: "lots" is not a size/);
    expect(memoryBudget().bytes).toBe(4 * 2 ** 30 - 0.6 * 2 ** 30);
  });

  it("a pipeline loads each model where it fits (smaller first): the largest to host memory when it cannot; memory \"none\" refuses to load", async () => {
    const sizes = await (async () => {
      const p = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER, { memory: "none" });
      const b = { unet: 4 * p.unet.numParameters(), vae: 4 * p.vae.numParameters(), textEncoder: 4 * p.textEncoder.numParameters() };
      p.dispose();
      return b;
    })();
    const sorted = (Object.entries(sizes) as [keyof typeof sizes, number][]).sort((a, b) => a[1] - b[1]);
    const [largest, largestBytes] = sorted[2];
    // room for the two smaller ones with their packed copies, and for the largest only without them
    const budget = 2 * (sorted[0][1] + sorted[1][1]) + 1.3 * largestBytes + 2 ** 20;
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: unknown) => lines.push(String(s));
    let pipe: StableDiffusionPipeline;
    try {
      pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(FOLDER, { memoryBudgetBytes: budget });
    } finally {
      console.log = log;
    }
    pipe!.setProgressBarConfig({ disable: true });
    expect(hasModelOffload(pipe![largest])).toBe(true);
    expect(pipe![largest].namedParameters().every(([, p]) => p.isOffloaded)).toBe(true);
    for (const [name] of sorted.slice(0, 2)) expect(hasModelOffload(pipe![name]), name).toBe(false);
    expect(lines.join("\n")).toMatch(/do not fit beside .* the weights stay in host memory/);
    const { images } = await call(pipe!);
    expect(compare(images, residentImage, 1e-5).maxAbs).toBeLessThan(1e-5);
    expect(planComponents(pipe!).fixed.has(largest === "textEncoder" ? "text_encoder" : largest)).toBe(true);
    images.dispose();
    pipe!.dispose();
    await expect(DiffusionPipeline.fromPretrained(FOLDER, { memory: "none", memoryBudgetBytes: 2 ** 20 })).rejects.toThrow(
      /weights .* do not fit the wasm budget of 1\.00 MiB .*memory "none" was asked, so nothing was loaded/);
    setKeepPackedWeights(true);
    expect(getKeepPackedWeights()).toBe(true);
  });

  it("names the model_index components it does not load (SD 1.5's safety_checker and feature_extractor)", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "kit-sc-"));
    fs.cpSync(FOLDER, dir, { recursive: true });
    const index = JSON.parse(fs.readFileSync(path.join(dir, "model_index.json"), "utf8"));
    index.safety_checker = ["stable_diffusion", "StableDiffusionSafetyChecker"];
    index.feature_extractor = ["transformers", "CLIPImageProcessor"];
    fs.writeFileSync(path.join(dir, "model_index.json"), JSON.stringify(index));
    const lines: string[] = [];
    const log = console.log;
    console.log = (s: unknown) => lines.push(String(s));
    let pipe: StableDiffusionPipeline;
    try {
      pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(dir);
    } finally {
      console.log = log;
    }
    expect(lines.filter((l) => /not loaded/.test(l))).toEqual([
      `${dir}: feature_extractor (CLIPImageProcessor) and safety_checker (StableDiffusionSafetyChecker) are listed in model_index.json but not loaded: ` +
        "this pipeline does not use them (as diffusers with feature_extractor=None, safety_checker=None).",
    ]);
    pipe!.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it("a DDPM pipeline plans too", async () => {
    const pipe = await DDPMPipeline.fromPretrained(path.resolve(__dirname, "../../datasets/ddpm-cat-tiny-random"));
    pipe.setProgressBarConfig({ disable: true });
    const out = await pipe.generate({ numInferenceSteps: 2, batchSize: 2, outputType: "np" });
    out.images.dispose();
    expect(pipe.memoryPlan!.what).toMatch(/^DDPMPipeline \d+x\d+, 2 pictures$/);
    expect(chooseMemoryPlan({ what: "x", components: [["unet", pipe.unet]], calls: [] }).knobs.offload).toBe("none");
    pipe.dispose();
  });
});
