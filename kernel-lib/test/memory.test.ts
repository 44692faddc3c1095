// Memory knobs (kernel-lib/src/memory): attention slicing, VAE slicing, model / sequential CPU offload, the
// memory probe. Each knob must give the same numbers as the plain run (exactly, or within float rounding where
// the work is regrouped) and a LOWER measured tfjs peak; the figures themselves go to bench/ (--only=memory).
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline } from "../src/pipelines/pipeline-stable-diffusion.js";
import { DiffusionPipeline } from "../src/pipelines/diffusion-pipeline.js";
import { Linear } from "../src/nn/linear.js";
import { Parameter } from "../src/nn/module.js";
import { attentionLayers, getAttentionSlices, setAttentionSlice } from "../src/models/attention-slicing.js";
import { addForwardHook, hasForwardHook } from "../src/memory/hooks.js";
import { cpuOffload, cpuOffloadWithHook, getOffloadMode } from "../src/memory/offload.js";
import { formatBytes, formatMemoryReport, liveTensorBytes, measureMemory, memoryReport } from "../src/memory/memory-report.js";
import { Generator } from "../src/random/generator.js";
import { fixture, compare } from "./helpers.js";

let pipe: StableDiffusionPipeline;

beforeAll(async () => {
  pipe = await DiffusionPipeline.fromPretrained<StableDiffusionPipeline>(fixture("sd-tiny-pipe"));
  pipe.setProgressBarConfig({ disable: true });
});
afterAll(() => pipe.dispose());

const MiB = 2 ** 20;

/** max |a - b| (shapes must agree). */
function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  expect(a.shape).toEqual(b.shape);
  return compare(a, b, 0).maxAbs;
}

describe("measureMemory (the tfjs peak probe)", () => {
  it("counts each buffer once, includes what was alive before, and sees a short-lived peak", async () => {
    const keep = tf.zeros([MiB / 4]); // 1 MiB alive before the run
    const m = await measureMemory(() => {
      const big = tf.ones([4 * MiB / 4]); // 4 MiB, freed before the end
      const view = tf.reshape(big, [2, -1]); // same buffer: counted once (tf.memory().numBytes counts it twice)
      tf.dispose([big, view]);
      return tf.zeros([2 * MiB / 4]); // 2 MiB result
    });
    expect(m.startBytes).toBeGreaterThanOrEqual(MiB);
    expect(m.peakBytes - m.startBytes).toBe(4 * MiB);
    expect(m.endBytes - m.startBytes).toBe(2 * MiB);
    expect(m.tensorsAdded).toBe(1);
    expect(m.rssPeak).toBeGreaterThan(0);
    expect(m.wasmHeapBytes === null || m.wasmHeapBytes >= m.peakBytes).toBe(true);
    expect(liveTensorBytes()).toBe(m.endBytes);
    tf.dispose([keep, m.result]);
  });

  it("nests, attributes peaks per component and removes its hooks", async () => {
    const latents = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D;
    const outer = await measureMemory(async () => {
      const inner = await measureMemory(() => pipe.decodeLatents(latents), { components: pipe });
      expect(inner.perComponent!.vae.calls).toBe(1);
      expect(inner.perComponent!.unet.calls).toBe(0);
      expect(inner.perComponent!.vae.peakBytes).toBe(inner.peakBytes);
      inner.result.dispose();
      return inner.peakBytes;
    });
    expect(outer.peakBytes).toBeGreaterThanOrEqual(outer.result);
    expect(hasForwardHook(pipe.vae, "decode")).toBe(false);
    latents.dispose();
  });

  it("memoryReport lists weight bytes per component (4 bytes per parameter) and formats them", () => {
    const r = memoryReport(pipe);
    expect(r.components.map((c) => c.name)).toEqual(["vae", "text_encoder", "unet"]);
    for (const c of r.components) {
      const m = c.name === "vae" ? pipe.vae : c.name === "unet" ? pipe.unet : pipe.textEncoder;
      expect(c.parameters).toBe(m.numParameters());
      expect(c.weightBytes).toBe(4 * m.numParameters());
      expect(c.residentBytes).toBe(c.weightBytes);
      expect(c.hostBytes).toBe(0);
    }
    expect(r.offload).toBe(null);
    expect(formatMemoryReport(r)).toContain("| unet | UNet2DConditionModel | 827,");
    expect(formatBytes(1536)).toBe("1.50 KiB");
    expect(formatBytes(3 * 2 ** 30)).toBe("3.00 GiB");
  });
});

describe("forward hooks", () => {
  it("run pre/post around a method in order, survive a throw, and are removed one by one", () => {
    const lin = new Linear(2, 2);
    lin.initWeights("random", 1);
    const log: string[] = [];
    const r1 = addForwardHook(lin, ["forward", "nope"], { preForward: () => log.push("pre1"), postForward: () => log.push("post1") });
    const r2 = addForwardHook(lin, ["forward"], { preForward: () => log.push("pre2"), postForward: () => log.push("post2") });
    tf.tidy(() => lin.forward(tf.ones([1, 2])));
    expect(log).toEqual(["pre1", "pre2", "post2", "post1"]);
    r1();
    expect(hasForwardHook(lin, "forward")).toBe(true);
    r2();
    expect(hasForwardHook(lin, "forward")).toBe(false);
    expect(Object.prototype.hasOwnProperty.call(lin, "forward")).toBe(false);
    const r3 = addForwardHook(lin, ["forward"], { postForward: () => log.push("post3") });
    expect(() => lin.forward(tf.ones([1, 3]) as tf.Tensor2D)).toThrow();
    expect(log[log.length - 1]).toBe("post3");
    r3();
    lin.dispose();
  });
});

describe("Parameter offload", () => {
  it("keeps a host copy, loads / unloads the tensor, reads and sets while offloaded, restores", () => {
    const p = new Parameter([3, 2], "linear", "fan_in");
    p.initialize("random", 7);
    const ref = Array.from(p.value.dataSync());
    const torch = p.toTorch();
    const before = tf.memory().numTensors;
    p.offload();
    expect([p.isOffloaded, p.isLoaded, p.isSet]).toEqual([true, false, true]);
    expect(tf.memory().numTensors).toBe(before - 1);
    expect(Array.from(p.toTorch())).toEqual(Array.from(torch)); // read from the host copy, not loaded
    expect(p.isLoaded).toBe(false);
    expect(Array.from(p.value.dataSync())).toEqual(ref); // loaded on demand
    expect(p.isLoaded).toBe(true);
    p.unload();
    expect(tf.memory().numTensors).toBe(before - 1);
    tf.tidy(() => p.set(tf.fill(p.shape, 2)));
    expect(p.isLoaded).toBe(false); // set while unloaded updates the host copy only
    p.load();
    expect(Array.from(p.value.dataSync())).toEqual([2, 2, 2, 2, 2, 2]);
    p.restore();
    expect([p.isOffloaded, p.isLoaded]).toEqual([false, true]);
    expect(tf.memory().numTensors).toBe(before);
    p.dispose();
    expect(p.isSet).toBe(false);
  });
});

describe("attention slicing (diffusers' set_attention_slice / SlicedAttnProcessor)", () => {
  // CFG batch 2, 16x16 latents: 256 tokens, 8 heads -> 16 score maps of 256 KiB each in one pass
  let x: tf.Tensor4D, ehs: tf.Tensor3D;
  beforeAll(() => {
    x = tf.transpose(new Generator().manualSeed(3).randn([2, 4, 16, 16]), [0, 2, 3, 1]) as tf.Tensor4D;
    ehs = new Generator().manualSeed(4).randn([2, 77, 32]) as tf.Tensor3D;
  });
  afterAll(() => {
    tf.dispose([x, ehs]);
    pipe.disableAttentionSlicing();
  });

  const run = () => measureMemory(() => pipe.unet.forward(x, 741, ehs).sample);

  it("gives the unsliced numbers for auto, max, every divisor and a non-divisor, with a lower peak the smaller the slice", async () => {
    pipe.disableAttentionSlicing();
    const plain = await run();
    const peaks: Record<string, number> = { none: plain.peakBytes };
    for (const size of ["auto", "max", 2, 3, 8] as const) {
      pipe.enableAttentionSlicing(size);
      const m = await run();
      expect(maxDiff(m.result, plain.result)).toBeLessThanOrEqual(1e-5);
      peaks[String(size)] = m.peakBytes;
      m.result.dispose();
    }
    plain.result.dispose();
    // two [256, 256] float maps (scores + probabilities) per (batch, head) pair in a slice
    expect(peaks.max).toBeLessThan(peaks.auto);
    expect(peaks.auto).toBeLessThan(peaks.none);
    expect(peaks.none - peaks.max).toBeGreaterThanOrEqual(2 * (16 - 1) * 256 * 256 * 4 * 0.9);
  });

  it("sets each attention layer as diffusers: auto = heads / 2, max = 1, lists per layer, null resets", () => {
    const layers = attentionLayers(pipe.unet);
    expect(layers.length).toBe(32); // 16 transformer blocks (6 down, 9 up, 1 mid) x (attn1 + attn2)
    pipe.enableAttentionSlicing();
    expect(new Set(Object.values(getAttentionSlices(pipe.unet)))).toEqual(new Set([4]));
    pipe.enableAttentionSlicing("max");
    expect(new Set(Object.values(getAttentionSlices(pipe.unet)))).toEqual(new Set([1]));
    setAttentionSlice(pipe.unet, layers.map((_, i) => (i % 2 === 0 ? null : 2)));
    expect(layers.map(([, a]) => a.sliceSize)).toEqual(layers.map((_, i) => (i % 2 === 0 ? null : 2)));
    pipe.disableAttentionSlicing();
    expect(new Set(Object.values(getAttentionSlices(pipe.unet)))).toEqual(new Set([null]));
    // the VAE's attention is not sliced by the pipeline (diffusers: only models with set_attention_slice)
    pipe.enableAttentionSlicing("max");
    expect(new Set(Object.values(getAttentionSlices(pipe.vae)))).toEqual(new Set([null]));
    pipe.disableAttentionSlicing();
  });

  it("rejects sizes larger than the heads, non-integers and lists of the wrong length", () => {
    expect(() => pipe.unet.setAttentionSlice(9)).toThrow(/from 1 to its 8 heads/);
    expect(() => pipe.unet.setAttentionSlice(0)).toThrow(/from 1 to its 8 heads/);
    expect(() => pipe.unet.setAttentionSlice(1.5)).toThrow(/integer/);
    expect(() => pipe.unet.setAttentionSlice([1, 2])).toThrow(/2 slice sizes were given but the model has 32 attention layers/);
    expect(new Set(Object.values(getAttentionSlices(pipe.unet)))).toEqual(new Set([null])); // nothing half-set
  });
});

describe("VAE slicing (diffusers' enable_vae_slicing)", () => {
  it("decodes and encodes a batch one item at a time: same numbers, lower peak", async () => {
    const z = tf.transpose(new Generator().manualSeed(5).randn([3, 4, 16, 16]), [0, 2, 3, 1]) as tf.Tensor4D;
    const img = tf.tidy(() => tf.sub(tf.mul(tf.transpose(new Generator().manualSeed(6).rand([3, 3, 64, 64]), [0, 2, 3, 1]), 2), 1)) as tf.Tensor4D;
    const decode = () => measureMemory(() => pipe.vae.decode(z).sample);
    const encode = () => measureMemory(() => pipe.vae.encode(img).latentDist);
    const plainDec = await decode(), plainEnc = await encode();
    pipe.enableVaeSlicing();
    const before = tf.memory().numTensors;
    const slicedDec = await decode(), slicedEnc = await encode();
    expect(tf.memory().numTensors).toBe(before + 1 + 4); // the decoded pictures + the posterior's 4 tensors
    pipe.disableVaeSlicing();
    expect(maxDiff(slicedDec.result, plainDec.result)).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(slicedEnc.result.mean, plainEnc.result.mean)).toBeLessThanOrEqual(1e-6);
    expect(maxDiff(slicedEnc.result.logvar, plainEnc.result.logvar)).toBeLessThanOrEqual(1e-6);
    expect(slicedDec.peakBytes).toBeLessThan(plainDec.peakBytes);
    expect(slicedEnc.peakBytes).toBeLessThan(plainEnc.peakBytes);
    tf.dispose([z, img, plainDec.result, slicedDec.result]);
    plainEnc.result.dispose();
    slicedEnc.result.dispose();
  });

  it("refuses to record intermediates when slicing (they exist per item only)", () => {
    const z = tf.zeros([2, 8, 8, 4]) as tf.Tensor4D;
    pipe.vae.enableSlicing();
    try {
      expect(() => pipe.vae.decode(z, { intermediates: {} })).toThrow(/disableSlicing/);
    } finally {
      pipe.vae.disableSlicing();
      z.dispose();
    }
  });
});

describe("CPU offload (diffusers' enable_model_cpu_offload / enable_sequential_cpu_offload)", () => {
  const call = () =>
    measureMemory(
      () => pipe.generate({ prompt: "a watercolor fox", numInferenceSteps: 2, guidanceScale: 7.5, height: 128, width: 128, generator: new Generator().manualSeed(0), outputType: "np" }),
      { components: pipe },
    );

  it("gives the resident pipeline's picture exactly, with a lower peak, and frees everything at the end", async () => {
    const resident = await call();
    const weights = memoryReport(pipe).weightBytes;
    const results: Record<string, Awaited<ReturnType<typeof call>>> = {};
    for (const mode of ["model", "sequential"] as const) {
      if (mode === "model") pipe.enableModelCpuOffload();
      else pipe.enableSequentialCpuOffload();
      expect(getOffloadMode(pipe)).toBe(mode);
      const r0 = memoryReport(pipe);
      expect([r0.residentBytes, r0.hostBytes]).toEqual([0, weights]);
      const before = tf.memory().numTensors;
      const m = await call();
      expect(tf.memory().numTensors).toBe(before + 1); // the pictures only: no weight left loaded, no leak
      const r1 = memoryReport(pipe);
      expect([r1.residentBytes, r1.hostBytes]).toEqual([0, weights]); // maybe_free_model_hooks at the end
      expect(maxDiff(m.result.images, resident.result.images)).toBe(0);
      expect(m.peakBytes).toBeLessThan(resident.peakBytes);
      results[mode] = m;
    }
    pipe.disableSequentialCpuOffload();
    expect(getOffloadMode(pipe)).toBe(null);
    const back = memoryReport(pipe);
    expect([back.residentBytes, back.hostBytes]).toEqual([weights, 0]);
    const again = await call();
    expect(maxDiff(again.result.images, resident.result.images)).toBe(0);
    // model offload holds one whole component (the UNet while it runs); sequential only a layer
    const ms = results.model.perComponent!, seq = results.sequential.perComponent!;
    expect(ms.unet.calls).toBe(pipe.scheduler.timesteps.length); // PNDM: 3 UNet calls for 2 steps
    expect(seq.unet.peakBytes).toBeLessThan(ms.unet.peakBytes);
    tf.dispose([resident.result.images, again.result.images, results.model.result.images, results.sequential.result.images]);
  });

  it("model offload: a model is loaded when it starts and offloads the previous one of text_encoder -> unet -> vae", () => {
    pipe.enableModelCpuOffload();
    const loaded = () => Object.fromEntries(memoryReport(pipe).components.map((c) => [c.name, c.residentBytes > 0]));
    const out = pipe.textEncoder.forward([[49406, 49407]]);
    tf.dispose([out.lastHiddenState, out.poolerOutput]);
    expect(loaded()).toEqual({ vae: false, text_encoder: true, unet: false });
    const x = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D, ehs = tf.zeros([1, 77, 32]) as tf.Tensor3D;
    pipe.unet.forward(x, 10, ehs).sample.dispose();
    expect(loaded()).toEqual({ vae: false, text_encoder: false, unet: true });
    pipe.vae.decode(x).sample.dispose();
    expect(loaded()).toEqual({ vae: true, text_encoder: false, unet: false });
    pipe.maybeFreeModelHooks();
    expect(loaded()).toEqual({ vae: false, text_encoder: false, unet: false });
    pipe.disableModelCpuOffload();
    expect(loaded()).toEqual({ vae: true, text_encoder: true, unet: true });
    tf.dispose([x, ehs]);
  });

  it("sequential offload: only the running layer's weights are tensors; a weight read by hand is freed after the call", () => {
    const unet = pipe.unet;
    const handle = cpuOffload(unet);
    try {
      const seen: number[] = [];
      const probe = addForwardHook(unet.conv_in, ["forward"], { preForward: () => seen.push(memoryReport({ unet: unet }).residentBytes) });
      const x = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D, ehs = tf.zeros([1, 77, 32]) as tf.Tensor3D;
      unet.forward(x, 10, ehs).sample.dispose();
      probe();
      expect(seen).toEqual([unet.conv_in.weight.numBytes + unet.conv_in.bias!.numBytes]);
      const w = unet.conv_out.weight.value; // loaded on demand, by hand
      expect(memoryReport({ unet: unet }).residentBytes).toBe(unet.conv_out.weight.numBytes);
      unet.forward(x, 10, ehs).sample.dispose();
      expect(w.isDisposed).toBe(true); // the call's end freed it: do not keep weights across offloaded calls
      expect(memoryReport({ unet: unet }).residentBytes).toBe(0);
      tf.dispose([x, ehs]);
    } finally {
      handle.remove();
    }
    expect(memoryReport({ unet: unet }).residentBytes).toBe(4 * unet.numParameters());
  });

  it("chains cpuOffloadWithHook by hand and refuses models without weights", () => {
    const a = new Linear(2, 2), b = new Linear(2, 2);
    a.initWeights("random", 1);
    b.initWeights("random", 2);
    const ha = cpuOffloadWithHook(a), hb = cpuOffloadWithHook(b, ha);
    tf.tidy(() => a.forward(tf.ones([1, 2])));
    expect([a.weight.isLoaded, b.weight.isLoaded]).toEqual([true, false]);
    tf.tidy(() => b.forward(tf.ones([1, 2])));
    expect([a.weight.isLoaded, b.weight.isLoaded]).toEqual([false, true]);
    hb.remove();
    ha.remove();
    expect([a.weight.isOffloaded, b.weight.isOffloaded]).toEqual([false, false]);
    expect(() => cpuOffload(new Linear(2, 2))).toThrow(/weights are not set/);
    a.dispose();
    b.dispose();
  });
});
