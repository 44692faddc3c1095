// Creating and saving LoRA adapters (lora/peft-adapter.ts, lora/lora-save.ts). Parity: the fixture LoRA (diffusers
// 0.27.2 / PEFT 0.10, fixtures/lora) loaded into sd-tiny-pipe and saved back gives the fixture files byte for byte
// (diffusers/PEFT keys and kohya keys with alpha 4 and 8), and the saved files reproduce diffusers' golden UNet outputs.
// Then a new trainable adapter (PEFT's "gaussian" init, B = 0): its gradients through tf.variableGrads (dL/dB ≠ 0,
// dL/dA = 0 exactly while B = 0), one SGD step, saving and loading it back; the text encoder; errors; memory.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline } from "../src/pipelines/pipeline-stable-diffusion.js";
import { readSafetensorsArrays, readSafetensorsHeader, type RawTensor } from "../src/io/safetensors.js";
import { Generator } from "../src/random/generator.js";
import { loraLayers, loraTargets, modelAdapters } from "../src/lora/peft-utils.js";
import {
  addLoraAdapter, getPeftModelStateDict, loraParameters, TEXT_ENCODER_LORA_TARGET_MODULES, UNET_LORA_TARGET_MODULES,
} from "../src/lora/peft-adapter.js";
import { packLoraWeights, saveLoraWeights } from "../src/lora/lora-save.js";
import { prepareTfjsForTraining } from "../src/runtime/gradient-fixes.js";
import { Linear } from "../src/nn/linear.js";
import { fixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";
import { FILES, meta, openLoraFixture, closeLoraFixture, type LoraFixture } from "./lora-fixture.js";

/** The fixture files' own __metadata__: with it, a saved file can be compared with the fixture byte for byte. */
const FIXTURE_METADATA = { producer: "steering/tools/refgen" };
const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "lora-save-"));
const tmp = (...p: string[]) => path.join(tmpRoot, ...p);

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

function unetOut(): tf.Tensor4D {
  return pipe.unet.forward(sample, timestep, ehs).sample;
}

function expectGolden(key: string): void {
  const out = unetOut();
  const ref = nchwToNhwc(gold[key]);
  expectClose(out, ref, TOL.model.atol, 0, key);
  tf.dispose([ref, out]);
}

function bytesOf(raw: RawTensor): Uint8Array {
  const d = raw.data;
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** Same keys, dtypes, shapes and bits. */
function expectSameTensors(actualFile: string, expectedFile: string): void {
  const a = readSafetensorsArrays(actualFile).tensors, e = readSafetensorsArrays(expectedFile).tensors;
  expect([...a.keys()].sort()).toEqual([...e.keys()].sort());
  for (const [k, t] of e) {
    const u = a.get(k)!;
    expect({ k, dtype: u.dtype, shape: u.shape }).toEqual({ k, dtype: t.dtype, shape: t.shape });
    if (Buffer.compare(Buffer.from(bytesOf(u)), Buffer.from(bytesOf(t))) !== 0) throw new Error(`${k}: values differ from ${path.basename(expectedFile)}`);
  }
}

/** With the fixture's own metadata, the whole file (header, order, padding, data) is the fixture's. */
function expectSameFile(actualFile: string, expectedFile: string): void {
  expect(Buffer.compare(fs.readFileSync(actualFile), fs.readFileSync(expectedFile))).toBe(0);
}

describe("saving the fixture LoRA back (diffusers 0.27.2 / PEFT 0.10 files)", () => {
  it("diffusers/PEFT format: exactly lora_r4.diffusers.safetensors (keys, shapes, bits); loads back to diffusers' output", async () => {
    const before = tf.memory().numTensors;
    await pipe.loadLoraWeights(FILES.diffusers, { adapterName: "fx" });
    const file = saveLoraWeights(tmp("diffusers"), pipe, { adapterName: "fx" });
    expect(file).toBe(tmp("diffusers", "pytorch_lora_weights.safetensors"));
    expect(readSafetensorsHeader(file).metadata).toEqual({ format: "pt" }); // what diffusers' write_lora_layers writes
    expectSameTensors(file, FILES.diffusers);
    expect(readSafetensorsArrays(file).tensors.size).toBe(2 * meta.targets.length);
    // the fixture's metadata in: the very same bytes
    expectSameFile(saveLoraWeights(tmp("same.safetensors"), pipe, { metadata: FIXTURE_METADATA }), FILES.diffusers);
    pipe.unloadLoraWeights();

    await pipe.loadLoraWeights(file, { adapterName: "back" });
    expectGolden("diffusers/w1.0");
    pipe.setAdapters("back", 0.8);
    expectGolden("diffusers/w0.8_set_adapters");
    pipe.unloadLoraWeights();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("kohya format: the diffusers file (alpha = r) gives lora_r4_a4.kohya, the alpha-8 kohya file gives itself back; both load to diffusers' outputs", async () => {
    const before = tf.memory().numTensors;
    await pipe.loadLoraWeights(FILES.diffusers, { adapterName: "d" });
    const k4 = saveLoraWeights(tmp("k4.safetensors"), pipe, { format: "kohya" });
    expectSameTensors(k4, FILES.kohya_a4);
    expectSameFile(saveLoraWeights(tmp("k4b.safetensors"), pipe, { format: "kohya", metadata: FIXTURE_METADATA }), FILES.kohya_a4);
    pipe.unloadLoraWeights();

    await pipe.loadLoraWeights(FILES.kohya_a8, { adapterName: "k8" });
    const k8 = saveLoraWeights(tmp("k8"), pipe, { format: "kohya", adapterName: "k8", weightName: "style.safetensors" });
    expect(k8).toBe(tmp("k8", "style.safetensors"));
    expectSameTensors(k8, FILES.kohya_a8);
    const alpha = readSafetensorsArrays(k8).tensors.get("lora_unet_mid_block_attentions_0_transformer_blocks_0_attn2_to_out_0.alpha")!;
    expect({ dtype: alpha.dtype, shape: alpha.shape, value: alpha.data[0] }).toEqual({ dtype: "F32", shape: [], value: 8 });
    expectSameFile(saveLoraWeights(tmp("k8b.safetensors"), pipe, { format: "kohya", metadata: FIXTURE_METADATA }), FILES.kohya_a8);

    // alpha 8 ≠ r 4 has no place in the diffusers format: refused, or folded into B on request
    expect(() => saveLoraWeights(tmp("refused"), pipe)).toThrow(/alpha 8 ≠ rank 4 on unet\.down_blocks\.0\.attentions\.0\.transformer_blocks\.0\.attn1\.to_q \(and 127 more module\(s\)\).*format: "kohya".*scaleAlphaIntoB/s);
    expect(fs.existsSync(tmp("refused"))).toBe(false);
    const folded = saveLoraWeights(tmp("folded.safetensors"), pipe, { scaleAlphaIntoB: true });
    pipe.unloadLoraWeights();

    await pipe.loadLoraWeights(k8, { adapterName: "k8back" });
    expectGolden("kohya_a8/w1.0");
    pipe.setAdapters("k8back", 0.8);
    expectGolden("kohya_a8/w0.8_set_adapters");
    pipe.unloadLoraWeights();
    await pipe.loadLoraWeights(folded, { adapterName: "folded" });
    expectGolden("kohya_a8/w1.0");
    pipe.unloadLoraWeights();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("packLoraWeights gives the state dict in memory (loadable as is)", async () => {
    await pipe.loadLoraWeights(FILES.kohya_a8, { adapterName: "k8" });
    const sd = packLoraWeights(pipe, { format: "kohya" });
    const want = readSafetensorsArrays(FILES.kohya_a8).tensors;
    expect([...sd.keys()].sort()).toEqual([...want.keys()].sort());
    pipe.unloadLoraWeights();
    await pipe.loadLoraWeights(sd, { adapterName: "mem" });
    expectGolden("kohya_a8/w1.0");
    pipe.unloadLoraWeights();
  });
});

describe("addLoraAdapter: a new trainable adapter (PEFT's add_adapter with init_lora_weights=\"gaussian\")", () => {
  beforeAll(() => prepareTfjsForTraining());

  it("targets every to_k/to_q/to_v/to_out.0 in module order; B = 0 so the UNet is the base UNet bit for bit; A from torch's draws", () => {
    const before = tf.memory().numTensors;
    const params = addLoraAdapter(pipe.unet, "style", { rank: 4, targetModules: UNET_LORA_TARGET_MODULES, seed: 0 });
    // the same 128 modules diffusers' fixture LoRA (built with these target_modules) patches
    expect(loraLayers(pipe.unet)).toHaveLength(meta.targets.length);
    const modules = params.filter(([n]) => n.includes(".lora_A.")).map(([n]) => n.replace(".lora_A.style.weight", ""));
    expect([...modules].sort()).toEqual([...meta.targets].sort());
    expect(params[0][0]).toBe("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_A.style.weight");
    expect(params[1][0]).toBe("down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q.lora_B.style.weight");
    expect(params.every(([, p]) => (p.value as tf.Variable).trainable)).toBe(true);
    expect(pipe.getActiveAdapters()).toEqual(["style"]);

    // ΔW = 0: exactly the base output
    const out = unetOut();
    expectClose(out, ourBase, 0, 0, "fresh adapter == base");
    out.dispose();

    // The draws PEFT makes with torch.manual_seed(0): per module (named_modules order) nn.Linear(in, r) and
    // nn.Linear(r, out) are built (kaiming_uniform_: one uniform per weight), then normal_(A, std=1/r).
    const g = new Generator().manualSeed(0);
    const sd = getPeftModelStateDict(pipe.unet, "style");
    const targets = loraTargets(pipe.unet);
    for (const m of modules.slice(0, 3)) {
      const l = targets.get(m) as Linear;
      g.randArray([4 * l.inFeatures]);
      g.randArray([l.outFeatures * 4]);
      const A = Float32Array.from(g.randnArray([4, l.inFeatures]), (v) => v * 0.25);
      expect(sd.get(`${m}.lora_A.weight`)!.data).toEqual(A);
      expect(sd.get(`${m}.lora_B.weight`)!.data.every((v) => v === 0)).toBe(true);
    }
    // A's spread is PEFT's std 1/r
    const all = modules.flatMap((m) => [...sd.get(`${m}.lora_A.weight`)!.data]);
    const std = Math.sqrt(all.reduce((s, v) => s + v * v, 0) / all.length);
    expect(Math.abs(std - 0.25)).toBeLessThan(0.01);
    // deterministic from the seed
    const again = addLoraAdapter(pipe.unet, "style2", { rank: 4, seed: 0 });
    again.forEach(([, p], i) => expect(p.toTorch()).toEqual(params[i][1].toTorch()));
    pipe.deleteAdapters(["style", "style2"]);
    expect(tf.memory().numTensors).toBe(before);
  });

  it("gradients through tf.variableGrads: dL/dB ≠ 0 and dL/dA = 0 exactly while B = 0; after one SGD step dL/dA ≠ 0; saved and loaded back", async () => {
    const before = tf.memory().numTensors;
    const base = new Map(pipe.unet.namedParameters().map(([n, p]) => [n, p.toTorch()]));
    const params = addLoraAdapter(pipe.unet, "train", { rank: 4, alpha: 4, seed: 1 });
    const target = tf.randomNormal(ourBase.shape, 0, 1, "float32", 3);
    const vars = params.map(([, p]) => p.value as tf.Variable);
    const lossAndGrads = () => {
      const { value, grads } = tf.variableGrads(() => tf.mean(tf.square(tf.sub(unetOut(), target))) as tf.Scalar, vars);
      const byName = new Map(params.map(([n, p]) => [n, grads[(p.value as tf.Variable).name]]));
      return { value, grads: byName };
    };
    const absMax = (t: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0]);

    const step0 = lossAndGrads();
    expect(step0.grads.size).toBe(params.length);
    for (const [n, g] of step0.grads) {
      if (n.includes(".lora_A.")) expect(absMax(g), n).toBe(0); // dL/dA = s · (x)ᵀ (dY Bᵀ) = 0 when B = 0
    }
    // every B gets a gradient, except self-attention's to_q / to_k in the mid block: at 8x8 / 2^3 = 1x1 there is one
    // token, softmax over one key is the constant 1, so queries and keys do not move the output (∂L/∂q = ∂L/∂k = 0)
    const oneToken = ["mid_block.attentions.0.transformer_blocks.0.attn1.to_q", "mid_block.attentions.0.transformer_blocks.0.attn1.to_k"];
    const zeroGrad = (dir: "A" | "B", grads: Map<string, tf.Tensor>) =>
      [...grads].filter(([n, g]) => n.includes(`.lora_${dir}.`) && !(absMax(g) > 0)).map(([n]) => n.replace(`.lora_${dir}.train.weight`, "")).sort();
    expect(zeroGrad("B", step0.grads)).toEqual(oneToken.sort());

    // one SGD step, p <- p - lr·g (AdamW's constructor keeps two tensors per parameter beyond its state, which
    // would hide a leak of ours here)
    tf.tidy(() => params.forEach(([n, p]) => (p.value as tf.Variable).assign(tf.sub(p.value, tf.mul(step0.grads.get(n)!, 0.1)))));
    tf.dispose([step0.value, ...step0.grads.values()]);
    const step1 = lossAndGrads();
    expect(zeroGrad("A", step1.grads)).toEqual(oneToken); // B ≠ 0 now, so A moves the output too
    tf.dispose([step1.value, ...step1.grads.values()]);
    // only the adapter trained: the base weights are untouched
    for (const [n, p] of pipe.unet.namedParameters()) expect(p.toTorch(), n).toEqual(base.get(n));

    // the trained adapter saved in both formats loads back to the same outputs
    const trained = unetOut();
    expect(tf.tidy(() => absMax(tf.sub(trained, ourBase)))).toBeGreaterThan(0);
    const d = saveLoraWeights(tmp("trained"), { unet: pipe.unet });
    const k = saveLoraWeights(tmp("trained-kohya.safetensors"), { unet: pipe.unet }, { format: "kohya" });
    for (const [file, name] of [[d, "d"], [k, "k"]]) {
      await pipe.loadLoraWeights(file, { adapterName: name });
      pipe.setAdapters(name);
      const out = unetOut();
      expectClose(out, trained, 0, 0, `trained adapter through ${path.basename(file)}`);
      out.dispose();
      pipe.deleteAdapters(name);
    }
    tf.dispose([trained, target]);
    pipe.unloadLoraWeights();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("text encoder adapters: text_encoder. / lora_te_ keys beside the UNet's, read back by the loader", async () => {
    const before = tf.memory().numTensors;
    const te = pipe.textEncoder;
    const teParams = addLoraAdapter(te, "both", { rank: 2, alpha: 2, targetModules: TEXT_ENCODER_LORA_TARGET_MODULES, initLoraWeights: false, seed: 5 });
    addLoraAdapter(pipe.unet, "both", { rank: 2, targetModules: ["attn2.to_k"], initLoraWeights: false, seed: 6 });
    expect(teParams[0][0]).toBe("text_model.encoder.layers.0.self_attn.k_proj.lora_A.both.weight"); // CLIP registers k, v, q, out
    const d = packLoraWeights(pipe);
    expect(d.get("text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight")!.shape).toEqual([2, (loraTargets(te).get("text_model.encoder.layers.0.self_attn.q_proj") as Linear).inFeatures]);
    expect([...d.keys()].filter((k) => k.startsWith("unet."))).toHaveLength(2 * 16);
    const k = packLoraWeights(pipe, { format: "kohya" });
    expect(k.get("lora_te_text_model_encoder_layers_1_self_attn_out_proj.alpha")!.data[0]).toBe(2);
    expect([...k.keys()].every((key) => key.startsWith("lora_te_text_model_encoder_layers_") || key.startsWith("lora_unet_"))).toBe(true);

    const want = getPeftModelStateDict(te, "both");
    const file = saveLoraWeights(tmp("te-kohya.safetensors"), pipe, { format: "kohya" });
    await pipe.loadLoraWeights(file, { adapterName: "loaded" });
    expect(pipe.getListAdapters()).toEqual({ text_encoder: ["both", "loaded"], unet: ["both", "loaded"] });
    const got = getPeftModelStateDict(te, "loaded");
    expect([...got.keys()]).toEqual([...want.keys()]);
    for (const [key, t] of want) expect(got.get(key)!.data, key).toEqual(t.data);
    pipe.unloadLoraWeights();
    expect(modelAdapters(te)).toEqual([]);
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("bad input", () => {
  it("saving without an adapter, an unknown adapter, an ambiguous choice, an unknown format, a bad path", async () => {
    expect(() => saveLoraWeights(tmp("none"), pipe)).toThrow(/hold no LoRA adapter to save: create one with addLoraAdapter.*or load one with loadLoraWeights/);
    expect(() => saveLoraWeights(tmp("none"), {})).toThrow(/no model given/);
    addLoraAdapter(pipe.unet, "a", { rank: 2, seed: 0 });
    addLoraAdapter(pipe.unet, "b", { rank: 2, seed: 0 });
    expect(() => saveLoraWeights(tmp("x"), pipe)).toThrow(/several adapters \("a", "b"\): pass adapterName/);
    expect(() => saveLoraWeights(tmp("x"), pipe, { adapterName: "c" })).toThrow(/no adapter named "c"; the models hold "a", "b"/);
    expect(() => saveLoraWeights(tmp("x"), pipe, { adapterName: "a", format: "peft" as never })).toThrow(/unknown format "peft"; use "diffusers".*or "kohya"/);
    expect(() => saveLoraWeights(tmp("x"), pipe, { adapterName: "a", weightName: "w.bin" })).toThrow(/must be a file name ending in \.safetensors/);
    expect(() => saveLoraWeights(tmp("x.safetensors"), pipe, { adapterName: "a", weightName: "w.safetensors" })).toThrow(/is a file name and weightName/);
    fs.writeFileSync(tmp("afile"), "x");
    expect(() => saveLoraWeights(tmp("afile"), pipe, { adapterName: "a" })).toThrow(/is a file, not a directory/);
    expect(() => loraParameters(pipe.unet, "c")).toThrow(/has no adapter "c"; its adapters: "a", "b"/);
    expect(fs.existsSync(tmp("x"))).toBe(false);
    pipe.unloadLoraWeights();
  });

  it("addLoraAdapter: no matching module, a module that is not a Linear, a taken name, a bad rank / alpha / init", () => {
    const before = tf.memory().numTensors;
    expect(() => addLoraAdapter(pipe.unet, "x", { rank: 4, targetModules: ["q_proj"] })).toThrow(/match no module of the UNet2DConditionModel.*"to_k","to_q","to_v","to_out.0"/);
    expect(() => addLoraAdapter(pipe.unet, "x", { rank: 4, targetModules: ["to_out"] })).toThrow(/only Linear and Conv2d.*to_out \(ModuleList\).*"to_out.0", not "to_out"/);
    expect(() => addLoraAdapter(pipe.unet, "x", { rank: 0 })).toThrow(/rank must be a positive integer, got 0/);
    expect(() => addLoraAdapter(pipe.unet, "x", { rank: 4, alpha: -1 })).toThrow(/alpha must be a positive number/);
    expect(() => addLoraAdapter(pipe.unet, "x", { rank: 4, initLoraWeights: "pissa" as never })).toThrow(/initLoraWeights must be "gaussian", true or false/);
    expect(() => addLoraAdapter(pipe.unet, "x.y", { rank: 4 })).toThrow(/without "\."/);
    expect(loraLayers(pipe.unet)).toHaveLength(0);
    addLoraAdapter(pipe.unet, "x", { rank: 4, targetModules: /.*attn1\.to_q/ });
    expect(loraLayers(pipe.unet)).toHaveLength(16);
    expect(() => addLoraAdapter(pipe.unet, "x", { rank: 4 })).toThrow(/adapter named "x" already exists/);
    pipe.unloadLoraWeights();
    expect(tf.memory().numTensors).toBe(before);
  });
});
