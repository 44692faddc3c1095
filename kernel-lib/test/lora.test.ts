// LoRA (lora/): diffusers 0.27.2 + PEFT 0.10 parity on the tiny SD UNet (fixtures/lora): the diffusers/PEFT
// and kohya files at weight 1 and 0.8 (set_adapters and cross_attention_kwargs), fused, unfused, unloaded,
// the manual merge cross-check and the full DDIM pipeline run; then the other key spellings, text-encoder
// and Conv2d targets, several adapters, the key-map explainer, errors and memory.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline } from "../src/pipelines/pipeline-stable-diffusion.js";
import { DDIMScheduler } from "../src/schedulers/index.js";
import type { SchedulerMixin } from "../src/schedulers/scheduling-utils.js";
import { Conv2d } from "../src/nn/conv2d.js";
import { Linear } from "../src/nn/linear.js";
import type { Module } from "../src/nn/module.js";
import { readSafetensorsArrays, saveSafetensors, type RawTensor } from "../src/io/safetensors.js";
import { explainLoraFile, parseLoraStateDict, pipelineLoraModels } from "../src/lora/lora-loader.js";
import { loraLayers, loraTargets, withLoraScale } from "../src/lora/peft-utils.js";
import { fixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";
import { FILES, meta, openLoraFixture, closeLoraFixture, type LoraFixture } from "./lora-fixture.js";

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "lora-"));

let pipe: StableDiffusionPipeline;
let gold: Record<string, tf.Tensor>;
let sample: tf.Tensor4D, ehs: tf.Tensor3D, timestep: number;
/** Our base UNet output: "back to base" means these exact bits. */
let ourBase: tf.Tensor4D;
let fx: LoraFixture | undefined;

beforeAll(async () => {
  fx = await openLoraFixture();
  ({ pipe, gold, sample, ehs, timestep, ourBase } = fx);
});
afterAll(() => {
  closeLoraFixture(fx);
  fs.rmSync(tmpRoot, { recursive: true, force: true });
});

/** The UNet on the stored input, NHWC. */
function unetOut(scale?: number): tf.Tensor4D {
  return pipe.unet.forward(sample, timestep, ehs, scale === undefined ? {} : { crossAttentionKwargs: { scale } }).sample;
}

/** Bit for bit the base UNet's output. */
function expectBase(out: tf.Tensor4D, label: string): void {
  expectClose(out, ourBase, 0, 0, label);
  out.dispose();
}

function expectGolden(out: tf.Tensor4D, key: string, atol: number = TOL.model.atol): void {
  const ref = nchwToNhwc(gold[key]);
  expectClose(out, ref, atol, 0, key);
  tf.dispose([ref, out]);
}

/** Every weight of a model as torch arrays (to compare bit for bit). */
function snapshot(m: Module): Map<string, Float32Array> {
  return new Map(m.namedParameters().map(([n, p]) => [n, p.toTorch()]));
}

function expectSameWeights(m: Module, before: Map<string, Float32Array>): void {
  for (const [n, p] of m.namedParameters()) {
    const a = p.toTorch(), b = before.get(n)!;
    let same = a.length === b.length;
    for (let i = 0; same && i < a.length; i++) same = a[i] === b[i];
    if (!same) throw new Error(`${n} differs from the base weight`);
  }
}

/** Our own merge in torch layout with plain loops: W[o, i(, kh, kw)] += s · Σ_r B[o, r] A[r, i(, kh, kw)]. */
function manualMerge(model: Module, merges: { module: string; A: RawTensor; B: RawTensor; s: number }[]): void {
  const params = new Map(model.namedParameters());
  for (const { module, A, B, s } of merges) {
    const p = params.get(`${module}.weight`)!;
    const w = p.toTorch();
    const [out, r] = B.shape;
    const inner = A.data.length / r; // in · kh · kw
    for (let o = 0; o < out; o++) {
      for (let j = 0; j < inner; j++) {
        let acc = 0;
        for (let k = 0; k < r; k++) acc += (B.data[o * r + k] as number) * (A.data[k * inner + j] as number);
        w[o * inner + j] += s * acc;
      }
    }
    p.setFromTorch(w);
  }
}

/** The fixture LoRA's pairs by module path (same A/B in every file). */
function fixturePairs(): { module: string; A: RawTensor; B: RawTensor }[] {
  const t = readSafetensorsArrays(FILES.diffusers).tensors;
  return (meta.targets as string[]).map((m) => ({ module: m, A: t.get(`unet.${m}.lora_A.weight`)!, B: t.get(`unet.${m}.lora_B.weight`)! }));
}

describe("LoRA parity with diffusers 0.27.2 / PEFT 0.10 (fixtures/lora, sd-tiny-pipe UNet)", () => {
  let base: Map<string, Float32Array>;
  beforeAll(() => {
    base = snapshot(pipe.unet);
  });

  it("base UNet output", () => {
    expectGolden(unetOut(), "base");
  });

  it("diffusers/PEFT file: weight 1, set_adapters 0.8, cross_attention_kwargs scale 0.8, fused, unfused, unloaded", async () => {
    const before = tf.memory().numTensors;
    const name = await pipe.loadLoraWeights(FILES.diffusers, { adapterName: "d" });
    expect(name).toBe("d");
    expect(loraLayers(pipe.unet)).toHaveLength(128);
    expect(pipe.getActiveAdapters()).toEqual(["d"]);
    expectGolden(unetOut(), "diffusers/w1.0");
    pipe.setAdapters(["d"], [0.8]);
    expectGolden(unetOut(), "diffusers/w0.8_set_adapters");
    pipe.setAdapters("d");
    expectGolden(unetOut(0.8), "diffusers/w0.8_cross_attention_kwargs");
    // the call's scale does not persist
    expectGolden(unetOut(), "diffusers/w1.0");
    const w1 = unetOut();
    pipe.fuseLora({ loraScale: 1.0 });
    expectGolden(unetOut(), "diffusers/fused_w1.0");
    // fused: the scale of a call changes nothing (the side path is off), as in PEFT
    expectGolden(unetOut(0.3), "diffusers/fused_w1.0");
    pipe.unfuseLora();
    expectSameWeights(pipe.unet, base);
    const again = unetOut();
    expectClose(again, w1, 0, 0, "unfused == unfused before fusing");
    tf.dispose([again, w1]);
    pipe.unloadLoraWeights();
    expect(loraLayers(pipe.unet)).toHaveLength(0);
    expect(pipe.getActiveAdapters()).toEqual([]);
    expectSameWeights(pipe.unet, base);
    expectBase(unetOut(), "after unload");
    expect(tf.memory().numTensors).toBe(before);
  });

  for (const a of [4, 8] as const) {
    it(`kohya file, alpha ${a} (scale ${a / 4}): weight 1, set_adapters 0.8, fused, unfused back to base weights`, async () => {
      const before = tf.memory().numTensors;
      await pipe.loadLoraWeights(FILES[`kohya_a${a}`], { adapterName: `k${a}` });
      expectGolden(unetOut(), `kohya_a${a}/w1.0`);
      pipe.setAdapters([`k${a}`], [0.8]);
      expectGolden(unetOut(), `kohya_a${a}/w0.8_set_adapters`);
      pipe.setAdapters([`k${a}`], [1.0]);
      pipe.fuseLora();
      expectGolden(unetOut(), `kohya_a${a}/fused_w1.0`);
      pipe.unfuseLora();
      expectSameWeights(pipe.unet, base);
      expectGolden(unetOut(), `kohya_a${a}/w1.0`);
      pipe.unloadLoraWeights();
      expectBase(unetOut(), "base again");
      expect(tf.memory().numTensors).toBe(before);
    });
  }

  it("kohya alpha 4 equals the diffusers file (alpha = r when none is stored)", async () => {
    await pipe.loadLoraWeights(FILES.diffusers, { adapterName: "d" });
    const d = unetOut();
    pipe.unloadLoraWeights();
    await pipe.loadLoraWeights(FILES.kohya_a4, { adapterName: "k" });
    const k = unetOut();
    pipe.unloadLoraWeights();
    expectClose(k, d, 0, 0, "kohya a4 vs diffusers");
    tf.dispose([k, d]);
  });

  for (const [alpha, s] of [[4, 1.0], [4, 0.8], [8, 1.0], [8, 0.8]] as const) {
    it(`manual merge W + (alpha/r)·s·B A, alpha ${alpha}, s ${s}: the fixture's manual/* and our LoRA agree`, async () => {
      manualMerge(pipe.unet, fixturePairs().map((p) => ({ ...p, s: (alpha / 4) * s })));
      const manual = unetOut();
      for (const [n, p] of pipe.unet.namedParameters()) p.setFromTorch(base.get(n)!);
      expectGolden(tf.clone(manual), `manual/alpha${alpha}_scale${s.toFixed(1)}`);
      await pipe.loadLoraWeights(FILES[`kohya_a${alpha}`], { adapterName: "m" });
      pipe.setAdapters("m", s);
      const lora = unetOut();
      pipe.unloadLoraWeights();
      expectClose(lora, manual, TOL.model.atol, 0, "LoRA vs manual merge");
      tf.dispose([lora, manual]);
    });
  }

  it("pipeline: DDIM 4 steps, CFG 7.5, kohya alpha 8 at adapter weight 0.8 (every step and the image)", async () => {
    const c = meta.pipeline_case;
    const pndm = pipe.scheduler;
    pipe.scheduler = DDIMScheduler.fromConfig(pndm.config) as unknown as SchedulerMixin;
    await pipe.loadLoraWeights(FILES.kohya_a8, { adapterName: "k8" });
    pipe.setAdapters(["k8"], [0.8]);
    const before = tf.memory().numTensors;
    const latentsIn = nchwToNhwc(gold["pipeline/latents_in"]);
    const steps: tf.Tensor[] = [];
    const { images } = await pipe.generate({
      prompt: c.prompt, negativePrompt: c.negative_prompt, guidanceScale: c.guidance_scale, numInferenceSteps: c.steps,
      latents: latentsIn, outputType: "np", callbackOnStepEnd: (_i, _t, st) => { steps.push(tf.clone(st.latents)); },
    });
    expect(pipe.scheduler.timesteps).toEqual(c.timesteps);
    steps.forEach((st, i) => expectGolden(st as tf.Tensor4D, `pipeline/step${String(i).padStart(2, "0")}/latents_after`, TOL.pipeline.atol));
    expectClose(images, gold["pipeline/image"], TOL.pipeline.atol, 0, "pipeline image");
    tf.dispose([images, latentsIn]);
    expect(tf.memory().numTensors).toBe(before);
    pipe.unloadLoraWeights();
    pipe.scheduler = pndm;
    expectSameWeights(pipe.unet, base);
  });
});

/** The fixture's diffusers file re-spelled with other key names. */
function respelled(rename: (module: string, dir: "A" | "B") => string): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const p of fixturePairs()) {
    out.set(rename(p.module, "A"), p.A);
    out.set(rename(p.module, "B"), p.B);
  }
  return out;
}

describe("LoRA key formats, targets, adapters", () => {
  let w1: tf.Tensor4D;
  beforeAll(() => {
    w1 = nchwToNhwc(gold["diffusers/w1.0"]);
  });
  afterAll(() => w1.dispose());

  async function expectW1(src: Map<string, RawTensor>, label: string) {
    await pipe.loadLoraWeights(src, { adapterName: "x" });
    const out = unetOut();
    pipe.unloadLoraWeights();
    expectClose(out, w1, TOL.model.atol, 0, label);
    out.dispose();
  }

  it("older diffusers spellings: .lora.down/up, processor.to_q_lora.down/up, and the unprefixed attention-processor format", async () => {
    const dir = (d: "A" | "B") => (d === "A" ? "down" : "up");
    await expectW1(respelled((m, d) => `unet.${m}.lora.${dir(d)}.weight`), ".lora.down");
    const proc = (m: string, d: "A" | "B") => m.replace(/\.(to_q|to_k|to_v|to_out\.0)$/, (_x, t: string) => `.processor.${t === "to_out.0" ? "to_out" : t}_lora.${dir(d)}.weight`);
    await expectW1(respelled((m, d) => `unet.${proc(m, d)}`), "processor.to_q_lora");
    await expectW1(respelled((m, d) => proc(m, d)), "no prefix (old attention processors)");
  });

  it("a file path, a folder with weightName, a folder with one weights file, and tensors in memory", async () => {
    const dir = path.join(tmpRoot, "folder");
    fs.mkdirSync(dir, { recursive: true });
    fs.copyFileSync(FILES.kohya_a4, path.join(dir, "my_lora.safetensors"));
    await expectW1(readSafetensorsArrays(path.join(dir, "my_lora.safetensors")).tensors, "state dict");
    for (const opts of [{ weightName: "my_lora.safetensors" }, {}]) {
      await pipe.loadLoraWeights(dir, { ...opts, adapterName: "f" });
      const out = unetOut();
      pipe.unloadLoraWeights();
      expectClose(out, w1, TOL.model.atol, 0, `folder ${JSON.stringify(opts)}`);
      out.dispose();
    }
    fs.copyFileSync(FILES.diffusers, path.join(dir, "other.safetensors"));
    await expect(pipe.loadLoraWeights(dir)).rejects.toThrow(/more than one \.safetensors file .*weightName/);
    const t: Record<string, tf.Tensor> = {};
    for (const [k, v] of readSafetensorsArrays(FILES.diffusers).tensors) t[k] = tf.tensor(v.data as Float32Array, v.shape);
    await pipe.loadLoraWeights(t, { adapterName: "t" });
    const out = unetOut();
    pipe.unloadLoraWeights();
    tf.dispose(Object.values(t));
    expectClose(out, w1, TOL.model.atol, 0, "tf tensors");
    out.dispose();
  });

  it("two adapters at once, each at its weight; PEFT's active-adapter rules on load and delete", async () => {
    const d = await pipe.loadLoraWeights(FILES.diffusers); // default name
    expect(d).toBe("default_0");
    const k = await pipe.loadLoraWeights(FILES.kohya_a8);
    expect(k).toBe("default_1");
    expect(pipe.getListAdapters()).toEqual({ unet: ["default_0", "default_1"] });
    // a layer that already runs an adapter keeps running only it (PEFT update_layer)
    expect(pipe.getActiveAdapters()).toEqual(["default_0"]);
    let out = unetOut();
    expectClose(out, w1, TOL.model.atol, 0, "second adapter inactive");
    out.dispose();
    // 0.5 · (4/4) + 0.3 · (8/4) = 1.1 times B A
    pipe.setAdapters([d, k], [0.5, 0.3]);
    expect(pipe.getActiveAdapters()).toEqual([d, k]);
    const mixed = unetOut();
    const snap = snapshot(pipe.unet);
    pipe.disableLora();
    const off = unetOut();
    expectBase(off, "disabled");
    pipe.enableLora();
    pipe.fuseLora();
    const fusedOut = unetOut();
    expectClose(fusedOut, mixed, TOL.model.atol, 0, "fused mix vs unfused mix");
    pipe.unfuseLora();
    expect(() => pipe.deleteAdapters("nope")).toThrow(/no adapter named "nope"/);
    pipe.unloadLoraWeights();
    manualMerge(pipe.unet, fixturePairs().map((p) => ({ ...p, s: 1.1 })));
    const manual = unetOut();
    for (const [n, p] of pipe.unet.namedParameters()) p.setFromTorch(snap.get(n)!);
    expectClose(mixed, manual, TOL.model.atol, 0, "two adapters vs manual merge at 1.1");
    tf.dispose([mixed, manual, fusedOut]);
    // deleting the active adapter: the remaining one becomes active
    await pipe.loadLoraWeights(FILES.diffusers, { adapterName: "a" });
    await pipe.loadLoraWeights(FILES.kohya_a8, { adapterName: "b" });
    pipe.deleteAdapters("a");
    expect(pipe.getActiveAdapters()).toEqual(["b"]);
    expectGolden(unetOut(), "kohya_a8/w1.0");
    pipe.deleteAdapters(["b"]);
    expect(loraLayers(pipe.unet)).toHaveLength(0);
    expectBase(unetOut(), "base again");
  });

  it("Conv2d targets (1x1 proj_in, 3x3 resnet conv1) and Linear ff / time_emb_proj in kohya keys: unfused == fused == manual merge", async () => {
    const targets = ["down_blocks.0.attentions.0.proj_in", "down_blocks.1.resnets.0.conv1", "mid_block.attentions.0.transformer_blocks.0.ff.net.2", "up_blocks.1.resnets.2.time_emb_proj"];
    const all = loraTargets(pipe.unet);
    const sd = new Map<string, RawTensor>();
    const merges: { module: string; A: RawTensor; B: RawTensor; s: number }[] = [];
    let seed = 1;
    const rnd = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.2);
    for (const m of targets) {
      const layer = all.get(m)!;
      const r = 3;
      const [inC, outC, k] = layer instanceof Conv2d ? [layer.inChannels, layer.outChannels, layer.kernelSize] : [(layer as Linear).inFeatures, (layer as Linear).outFeatures, 0];
      const A: RawTensor = { dtype: "F32", shape: k ? [r, inC, k, k] : [r, inC], data: rnd(r * inC * (k ? k * k : 1)) };
      const B: RawTensor = { dtype: "F32", shape: k ? [outC, r, 1, 1] : [outC, r], data: rnd(outC * r) };
      const stem = `lora_unet_${m.replace(/\./g, "_")}`;
      sd.set(`${stem}.lora_down.weight`, A).set(`${stem}.lora_up.weight`, B).set(`${stem}.alpha`, { dtype: "F32", shape: [], data: Float32Array.of(6) });
      merges.push({ module: m, A, B, s: (6 / 3) * 0.7 });
    }
    const ex = await explainLoraFile(sd, pipe);
    expect(ex.unplaced).toEqual([]);
    expect(ex.rows.map((r) => [r.module, r.kind, r.rank, r.alpha, r.scale])).toEqual([
      [targets[0], "Conv2d", 3, 6, 2], [targets[1], "Conv2d", 3, 6, 2], [targets[2], "Linear", 3, 6, 2], [targets[3], "Linear", 3, 6, 2]]);
    const snap = snapshot(pipe.unet);
    await pipe.loadLoraWeights(sd, { adapterName: "c" });
    pipe.setAdapters("c", 0.7);
    const unfused = unetOut();
    pipe.fuseLora();
    const fused = unetOut();
    pipe.unloadLoraWeights(); // fused weights stay fused (diffusers' bake-in)
    const baked = unetOut();
    for (const [n, p] of pipe.unet.namedParameters()) p.setFromTorch(snap.get(n)!);
    manualMerge(pipe.unet, merges);
    const manual = unetOut();
    for (const [n, p] of pipe.unet.namedParameters()) p.setFromTorch(snap.get(n)!);
    const baseOut = unetOut();
    expect(tf.max(tf.abs(tf.sub(manual, baseOut))).dataSync()[0]).toBeGreaterThan(1e-3); // the LoRA does something
    expectClose(unfused, manual, TOL.model.atol, 0, "unfused vs manual");
    expectClose(fused, manual, TOL.model.atol, 0, "fused vs manual");
    expectClose(baked, fused, 0, 0, "unload after fuse keeps the fused weights");
    tf.dispose([unfused, fused, baked, manual, baseOut]);
  });

  it("text-encoder targets (kohya lora_te_ and PEFT text_encoder. keys), scaled by crossAttentionKwargs in the pipeline", async () => {
    const te = pipe.textEncoder;
    const mods = ["text_model.encoder.layers.0.self_attn.q_proj", "text_model.encoder.layers.1.self_attn.out_proj", "text_model.encoder.layers.1.mlp.fc1"];
    const all = loraTargets(te);
    let seed = 7;
    const rnd = (n: number) => Float32Array.from({ length: n }, () => ((seed = (seed * 16807) % 2147483647) / 2147483647 - 0.5) * 0.4);
    const pairs = mods.map((m) => {
      const l = all.get(m) as Linear;
      return { module: m, A: { dtype: "F32", shape: [2, l.inFeatures], data: rnd(2 * l.inFeatures) } as RawTensor, B: { dtype: "F32", shape: [l.outFeatures, 2], data: rnd(2 * l.outFeatures) } as RawTensor };
    });
    const kohya = new Map<string, RawTensor>(), peft = new Map<string, RawTensor>();
    for (const p of pairs) {
      const stem = `lora_te_${p.module.replace(/\./g, "_")}`;
      kohya.set(`${stem}.lora_down.weight`, p.A).set(`${stem}.lora_up.weight`, p.B).set(`${stem}.alpha`, { dtype: "F32", shape: [], data: Float32Array.of(1) });
      peft.set(`text_encoder.${p.module}.lora_A.weight`, p.A).set(`text_encoder.${p.module}.lora_B.weight`, p.B);
    }
    const ids = pipe.tokenizer.encode(["a watercolor fox"], { padding: "max_length", maxLength: 77, truncation: true }).inputIds;
    const encode = () => { const o = te.forward(ids); o.poolerOutput.dispose(); return o.lastHiddenState; };
    const snap = snapshot(te);
    const baseOut = encode();
    manualMerge(te, pairs.map((p) => ({ ...p, s: 0.5 * 0.25 })));  // kohya alpha 1 / r 2, call scale 0.25
    const manualK = encode();
    for (const [n, p] of te.namedParameters()) p.setFromTorch(snap.get(n)!);
    manualMerge(te, pairs.map((p) => ({ ...p, s: 1 })));
    const manualP = encode();
    for (const [n, p] of te.namedParameters()) p.setFromTorch(snap.get(n)!);

    await pipe.loadLoraWeights(kohya, { adapterName: "tk" });
    expect(pipe.getListAdapters()).toEqual({ text_encoder: ["tk"] });
    expect(pipe.getActiveAdapters()).toEqual([]); // diffusers asks the UNet
    const k = withLoraScale(te, 0.25, encode);
    expectClose(k, manualK, TOL.model.atol, 0, "kohya text encoder at scale 0.25");
    pipe.unloadLoraWeights();
    await pipe.loadLoraWeights(peft, { adapterName: "tp" });
    const p = encode();
    expectClose(p, manualP, TOL.model.atol, 0, "PEFT text encoder");
    // the pipeline scales the text encoder's LoRA by crossAttentionKwargs.scale: scale 0 == LoRA disabled
    const zeros = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D;
    const gen = async (scale?: number) => (await pipe.generate({ prompt: "a fox", numInferenceSteps: 1, guidanceScale: 1, outputType: "latent",
      latents: zeros, crossAttentionKwargs: scale === undefined ? undefined : { scale } })).images;
    const zero = await gen(0);
    const withLora = await gen();
    pipe.disableLora();
    const off = await gen();
    pipe.unloadLoraWeights();
    expectSameWeights(te, snap);
    expectClose(zero, off, 0, 0, "crossAttentionKwargs scale 0 == disabled");
    expect(tf.max(tf.abs(tf.sub(withLora, off))).dataSync()[0]).toBeGreaterThan(1e-4);
    tf.dispose([baseOut, manualK, manualP, k, p, zero, withLora, off, zeros]);
  });
});

describe("explainLoraFile and errors", () => {
  it("maps every key of the fixture files to its module, with rank, alpha and scale", async () => {
    const d = await explainLoraFile(FILES.diffusers, pipe);
    expect(d.format).toBe("diffusers");
    expect(d.unplaced).toEqual([]);
    expect(d.rows.map((r) => r.module).sort()).toEqual([...meta.targets].sort());
    expect(d.rows.every((r) => r.rank === 4 && r.alpha === 4 && !r.alphaStored && r.scale === 1 && r.component === "unet")).toBe(true);
    const k = await explainLoraFile(FILES.kohya_a8, pipe);
    expect(k.format).toBe("kohya");
    const row = k.rows.find((r) => r.key === "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0")!;
    expect(row).toMatchObject({ module: "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0", rank: 4, alpha: 8, alphaStored: true, scale: 2, kind: "Linear" });
    expect(k.markdown).toContain("| `lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_out_0` | unet: `down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out.0` | Linear | 4 | 8 | 2 |");
  });

  it("a file with keys it cannot place is an error listing them, and nothing is loaded", async () => {
    const t = readSafetensorsArrays(FILES.kohya_a4).tensors;
    const A = t.get("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight")!;
    t.set("lora_unet_input_blocks_1_1_proj_in.lora_down.weight", A);
    t.set("lora_unet_input_blocks_1_1_proj_in.lora_up.weight", A);
    t.set("lora_unet_mid_block_attentions_0_norm.lora_down.weight", A);
    t.set("lora_unet_mid_block_attentions_0_norm.lora_up.weight", A);
    t.set("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.hada_w1_a", A);
    t.set("lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight", A);
    t.set("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight", A); // wrong shape for B
    const before = tf.memory().numTensors;
    const ex = await explainLoraFile(t, pipe);
    const why = Object.fromEntries(ex.unplaced.map((u) => [u.key, u.reason]));
    expect(why["lora_unet_input_blocks_1_1_proj_in.lora_down.weight"]).toMatch(/no Linear or Conv2d of the UNet is named "input_blocks_1_1_proj_in".*LDM/);
    expect(why["lora_unet_mid_block_attentions_0_norm.lora_up.weight"]).toMatch(/no Linear or Conv2d/);
    expect(why["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.hada_w1_a"]).toMatch(/LoHa/);
    expect(why["lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight"]).toMatch(/text_encoder_2/);
    expect(why["lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight"]).toMatch(/shapes do not fit the Linear: expected A \(down\) \[r, 32\] and B \(up\) \[32, r\], the file has A \[4, 32\] and B \[4, 32\]/);
    expect(ex.rows).toHaveLength(127);
    expect(ex.markdown).toContain("| key not placed | reason |");
    await expect(pipe.loadLoraWeights(t)).rejects.toThrow(/9 key\(s\) could not be placed.*nothing was loaded[\s\S]*lora_unet_input_blocks_1_1_proj_in[\s\S]*explainLoraFile/);
    expect(loraLayers(pipe.unet)).toHaveLength(0);
    expect(tf.memory().numTensors).toBe(before);
    // diffusers-format problems
    const bad = new Map<string, RawTensor>([["unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight", A], ["unet.nope.lora_B.weight", A], ["unet.conv_in.alpha", A]]);
    const p = parseLoraStateDict(bad, pipelineLoraModels(pipe));
    const reasons = Object.fromEntries(p.unplaced.map((u) => [u.key, u.reason]));
    expect(reasons["unet.conv_in.alpha"]).toMatch(/not a LoRA weight name/);
    expect(reasons["unet.nope.lora_B.weight"]).toMatch(/the UNet has no Linear or Conv2d "nope"/);
    expect(reasons["unet.mid_block.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.weight"]).toMatch(/B \(up\) weight of unet.mid_block.*is missing/);
    expect(p.modules).toEqual([]);
  });

  it("bad calls: unknown adapter, a name in use, weights that do not match, an empty file", async () => {
    expect(() => pipe.setAdapters("x")).toThrow(/no adapter named "x".*none \(call loadLoraWeights first\)/);
    await pipe.loadLoraWeights(FILES.diffusers, { adapterName: "d" });
    await expect(pipe.loadLoraWeights(FILES.kohya_a4, { adapterName: "d" })).rejects.toThrow(/Adapter name "d" is already in use/);
    expect(() => pipe.setAdapters(["d"], [0.5, 1])).toThrow(/1 adapter name\(s\) but 2 weight\(s\)/);
    expect(() => pipe.setAdapters(["d"], [NaN])).toThrow(/weight of "d" is NaN/);
    pipe.disableLora();
    expect(() => pipe.fuseLora()).toThrow(/disabled.*enableLora/);
    pipe.enableLora();
    pipe.fuseLora();
    expect(() => pipe.deleteAdapters("d")).toThrow(/fused into the weights: call unfuseLora\(\) first/);
    pipe.disableLora(); // unfuses, as PEFT does
    expectBase(unetOut(), "base again");
    pipe.unloadLoraWeights();
    const empty = path.join(tmpRoot, "empty.safetensors");
    saveSafetensors(empty, {});
    await expect(pipe.loadLoraWeights(empty)).rejects.toThrow(/holds no LoRA weights/);
  });
});
