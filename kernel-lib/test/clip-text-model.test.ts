// CLIPTextModel parity with transformers 4.38 on the tiny SD text encoder (fixtures sd-tiny-pipe/text_encoder),
// end to end from CLIPTokenizer, loading paths (position_ids buffer, .bin, fp16 variant), errors, memory.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { CLIPTextModel, clipPooledPositions } from "../src/models/clip-text-model.js";
import { quickGelu, geluTanh } from "../src/nn/activations.js";
import { CLIPTokenizer } from "../src/tokenizers/clip.js";
import { readSafetensorsArrays, saveSafetensors, type RawTensor } from "../src/io/safetensors.js";
import { writeTorchBin, type WriterTensor } from "./torch-bin-writer.js";
import { fixture, loadFixture, expectClose, TOL } from "./helpers.js";

const PIPE = fixture("sd-tiny-pipe");
const TINY = fixture("sd-tiny-pipe/text_encoder");
const GOLDEN = "models/text-encoder-tiny.golden.safetensors";
const SD15_CONFIG = fixture("configs/stable-diffusion-v1-5/text_encoder/config.json");
const EOS = 49407;

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "clip-text-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** A copy of the tiny text encoder with its config and/or weights edited, written under `weightsName`. */
function tinyCopy(
  name: string,
  edit: { config?: (c: Record<string, unknown>) => void; weights?: (w: Map<string, RawTensor>) => void; weightsName?: string } = {},
): string {
  const dir = path.join(tmpRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8"));
  edit.config?.(config);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  const { tensors } = readSafetensorsArrays(path.join(TINY, "model.safetensors"));
  edit.weights?.(tensors);
  saveSafetensors(path.join(dir, edit.weightsName ?? "model.safetensors"), Object.fromEntries(tensors));
  return dir;
}

/** Row-major rows of a [B, L] integer tensor. */
function rows(t: tf.Tensor): number[][] {
  return t.arraySync() as number[][];
}

describe("CLIPTextModel (text-encoder-tiny)", () => {
  let model: CLIPTextModel;
  let golden: Record<string, tf.Tensor>;

  beforeAll(async () => {
    golden = loadFixture(GOLDEN);
    model = await CLIPTextModel.fromPretrained(TINY);
  });
  afterAll(() => {
    model?.dispose();
    tf.dispose(Object.values(golden ?? {}));
  });

  it("reads the config as transformers does (legacy SD ids kept, transformers keys, defaults)", () => {
    expect(model.numParameters()).toBe(1608992); // models.json n_params
    const c = model.config;
    expect(c.hidden_size).toBe(32);
    expect(c.eos_token_id).toBe(2);
    expect(c.bos_token_id).toBe(0);
    expect(c.pad_token_id).toBe(1);
    expect(c.architectures).toEqual(["CLIPTextModel"]);
    expect(c.model_type).toBe("clip_text_model");
    expect(c.torch_dtype).toBe("float32");
    expect(c.transformers_version).toBe("4.38.0.dev0");
    expect(c.dropout).toBe(0); // unknown keys are kept
    expect("_class_name" in c).toBe(false);
    expect("_use_default_values" in c).toBe(false);
    const d = new CLIPTextModel({}).config;
    expect(d).toMatchObject({
      vocab_size: 49408, hidden_size: 512, intermediate_size: 2048, projection_dim: 512, num_hidden_layers: 12,
      num_attention_heads: 8, max_position_embeddings: 77, hidden_act: "quick_gelu", layer_norm_eps: 1e-5,
      pad_token_id: 1, bos_token_id: 49406, eos_token_id: 49407, model_type: "clip_text_model", architectures: null, torch_dtype: null,
    });
  });

  it("names its parameters as the checkpoint, in torch's state_dict order", () => {
    const names = model.namedParameters().map(([n]) => n);
    const file = [...readSafetensorsArrays(path.join(TINY, "model.safetensors")).tensors.keys()];
    expect([...names].sort()).toEqual([...file].sort());
    expect(names.slice(0, 4)).toEqual([
      "text_model.embeddings.token_embedding.weight",
      "text_model.embeddings.position_embedding.weight",
      "text_model.encoder.layers.0.self_attn.k_proj.weight",
      "text_model.encoder.layers.0.self_attn.k_proj.bias",
    ]);
    expect(names.at(-1)).toBe("text_model.final_layer_norm.bias");
  });

  it("matches transformers on all 32 prompts without attention mask (as StableDiffusionPipeline)", () => {
    const out = model.forward(golden.input_ids as tf.Tensor2D);
    expect(out.lastHiddenState.shape).toEqual([32, 77, 32]);
    expect(out.poolerOutput.shape).toEqual([32, 32]);
    expect(out.hiddenStates).toBeUndefined();
    expectClose(out.lastHiddenState, golden.last_hidden_state, TOL.model.atol, 0, "last_hidden_state");
    expectClose(out.poolerOutput, golden.pooler_output, TOL.model.atol, 0, "pooler_output");
    tf.dispose([out.lastHiddenState, out.poolerOutput]);
  });

  it("matches transformers with attention_mask (first 3 prompts; mask combined with the causal mask)", () => {
    const ids = tf.slice(golden.input_ids, [0, 0], [3, 77]) as tf.Tensor2D;
    const mask = tf.slice(golden.attention_mask, [0, 0], [3, 77]) as tf.Tensor2D;
    const out = model.forward(ids, { attentionMask: mask });
    expectClose(out.lastHiddenState, golden["masked/last_hidden_state"], TOL.model.atol, 0, "masked last_hidden_state");
    expectClose(out.poolerOutput, golden["masked/pooler_output"], TOL.model.atol, 0, "masked pooler_output");
    // number[][] mask gives the same, and the mask really changes the padded positions
    const again = model.forward(rows(ids), { attentionMask: rows(mask) });
    expectClose(again.lastHiddenState, out.lastHiddenState, 0, 0, "array mask");
    const plain = tf.slice(golden.last_hidden_state, [0, 0, 0], [3, 77, 32]);
    expect(tf.max(tf.abs(tf.sub(plain, out.lastHiddenState))).dataSync()[0]).toBeGreaterThan(1e-3);
    tf.dispose([ids, mask, plain, out.lastHiddenState, out.poolerOutput, again.lastHiddenState, again.poolerOutput]);
  });

  it("returns the embeddings and every layer's output (row0_intermediate)", () => {
    const ids = tf.slice(golden.input_ids, [0, 0], [1, 77]) as tf.Tensor2D;
    const out = model.forward(ids, { outputHiddenStates: true });
    const hs = out.hiddenStates!;
    expect(hs).toHaveLength(3);
    expectClose(hs[0], golden["row0_intermediate/text_model.embeddings"], TOL.model.atol, 0, "embeddings");
    expectClose(hs[1], golden["row0_intermediate/text_model.encoder.layers.0"], TOL.model.atol, 0, "layer 0");
    expectClose(hs[2], golden["row0_intermediate/text_model.encoder.layers.1"], TOL.model.atol, 0, "layer 1");
    expectClose(out.lastHiddenState, golden["row0_intermediate/text_model.final_layer_norm"], TOL.model.atol, 0, "final_layer_norm");
    tf.dispose([ids, out.lastHiddenState, out.poolerOutput, ...hs]);
  });

  it("end to end: CLIPTokenizer (sd-tiny-pipe/tokenizer, ftfy) -> the golden ids -> the golden hidden states", async () => {
    const tok = await CLIPTokenizer.fromPretrained(PIPE, { subfolder: "tokenizer" });
    const prompts = (JSON.parse(fs.readFileSync(fixture("tokenizer/golden.json"), "utf8")).modes.ftfy as { prompt: string }[]).map((c) => c.prompt);
    expect(prompts).toHaveLength(32);
    const enc = tok.encode(prompts, { padding: "max_length", maxLength: tok.modelMaxLength, truncation: true });
    expect(enc.inputIds).toEqual(rows(golden.input_ids));
    expect(enc.attentionMask).toEqual(rows(golden.attention_mask));
    const out = model.forward(enc.inputIds);
    expectClose(out.lastHiddenState, golden.last_hidden_state, TOL.model.atol, 0, "e2e last_hidden_state");
    expectClose(out.poolerOutput, golden.pooler_output, TOL.model.atol, 0, "e2e pooler_output");
    tf.dispose([out.lastHiddenState, out.poolerOutput]);
  });

  it("runs shorter sequences: causal attention makes them the prefix of the 77-token result", () => {
    const ids = rows(golden.input_ids).slice(0, 4).map((r) => r.slice(0, 12));
    const out = model.forward(ids);
    expect(out.lastHiddenState.shape).toEqual([4, 12, 32]);
    const prefix = tf.slice(golden.last_hidden_state, [0, 0, 0], [4, 12, 32]);
    expectClose(out.lastHiddenState, prefix, TOL.model.atol, 0, "prefix");
    tf.dispose([prefix, out.lastHiddenState, out.poolerOutput]);
  });

  it("pools as transformers 4.38: argmax(input_ids) for eos_token_id 2, else the first eos_token_id", () => {
    // "<|startoftext|> special tokens <|endoftext|> inside text": the first 49407 is mid-sentence
    const ids = rows(golden.input_ids);
    const special = ids.findIndex((r) => r.indexOf(EOS) < r.lastIndexOf(EOS) && r[r.indexOf(EOS) + 1] !== EOS);
    expect(special).toBeGreaterThan(0);
    expect(clipPooledPositions(ids[special], 1, 77, 2)).toEqual([ids[special].indexOf(EOS)]);
    // legacy rule vs eos rule differ when eos is absent or not the highest id
    expect(clipPooledPositions([5, 9, 9, 3], 1, 4, 2)).toEqual([1]);
    expect(clipPooledPositions([5, 9, 7, 3], 1, 4, 7)).toEqual([2]);
    expect(clipPooledPositions([5, 9, 8, 3], 1, 4, 7)).toEqual([0]);
    expect(clipPooledPositions([1, 2, 3, 3, 2, 1], 2, 3, 2)).toEqual([2, 0]);
  });

  it("pools at the first eos_token_id when the config has a non-legacy id", async () => {
    const dir = tinyCopy("eos320", { config: (c) => { c.eos_token_id = 320; } }); // 320 = "a"
    const m = await CLIPTextModel.fromPretrained(dir);
    const ids = rows(golden.input_ids).slice(0, 2); // "a watercolor fox", "a photograph of ..."
    expect(ids[0][1]).toBe(320);
    const out = m.forward(ids);
    const expected = tf.slice(golden.last_hidden_state, [0, 1, 0], [2, 1, 32]).reshape([2, 32]);
    expectClose(out.poolerOutput, expected, TOL.model.atol, 0, "pool at first 320");
    tf.dispose([out.lastHiddenState, out.poolerOutput, expected]);
    m.dispose();
  });

  it("rejects bad input with clear errors", () => {
    const long = [Array.from({ length: 78 }, (_, i) => (i === 0 ? 49406 : EOS))];
    expect(() => model.forward(long)).toThrow(/78 tokens but max_position_embeddings is 77/);
    const row = rows(golden.input_ids)[0];
    expect(() => model.forward([row.map((v, i) => (i === 3 ? 49408 : v))])).toThrow(/input_ids\[0\]\[3\] = 49408 is outside the vocabulary.*vocab_size 49408/);
    expect(() => model.forward([row.map((v, i) => (i === 2 ? -1 : v))])).toThrow(/outside the vocabulary/);
    expect(() => model.forward([row, row.slice(1)])).toThrow(/rows differ in length/);
    expect(() => model.forward([row.map((v, i) => (i === 2 ? 1.5 : v))])).toThrow(/not an integer/);
    expect(() => model.forward([row], { attentionMask: [row.slice(1)] })).toThrow(/attentionMask is \[1, 76\] but input_ids are \[1, 77\]/);
    expect(() => model.forward([])).toThrow(/non-empty/);
    const t3 = tf.zeros([1, 2, 3], "int32");
    expect(() => model.forward(t3 as unknown as tf.Tensor2D)).toThrow(/\[batch, sequence_length\]/);
    t3.dispose();
  });

  it("validates the config", () => {
    expect(() => new CLIPTextModel({ hidden_size: 30, num_attention_heads: 4 })).toThrow(/divisible/);
    expect(() => new CLIPTextModel({ hidden_act: "tanh" })).toThrow(/hidden_act "tanh" is not supported.*quick_gelu/);
    expect(() => new CLIPTextModel({ model_type: "clip" })).toThrow(/text_config/);
    expect(() => new CLIPTextModel({ hidden_size: "32" })).toThrow(/hidden_size/);
  });

  it("ignores the position_ids buffer of older checkpoints (SD 1.5's) and loads pytorch_model.bin", async () => {
    const withBuffer = tinyCopy("position-ids", {
      weights: (w) => w.set("text_model.embeddings.position_ids", { dtype: "I64", shape: [1, 77], data: Int32Array.from({ length: 77 }, (_, i) => i) } as RawTensor),
    });
    const a = await CLIPTextModel.fromPretrained(withBuffer);
    // a .bin only (torch.save), with the buffer too
    const binDir = path.join(tmpRoot, "bin");
    fs.mkdirSync(binDir, { recursive: true });
    fs.copyFileSync(path.join(TINY, "config.json"), path.join(binDir, "config.json"));
    const bin: Record<string, WriterTensor> = { "text_model.embeddings.position_ids": { dtype: "I64", shape: [1, 77], data: Array.from({ length: 77 }, (_, i) => i) } };
    for (const [k, t] of readSafetensorsArrays(path.join(TINY, "model.safetensors")).tensors) bin[k] = { dtype: "F32", shape: [...t.shape], data: t.data as Float32Array };
    writeTorchBin(path.join(binDir, "pytorch_model.bin"), bin);
    const b = await CLIPTextModel.fromPretrained(binDir);
    const ids = tf.slice(golden.input_ids, [0, 0], [2, 77]) as tf.Tensor2D;
    const expected = tf.slice(golden.last_hidden_state, [0, 0, 0], [2, 77, 32]);
    for (const m of [a, b]) {
      const out = m.forward(ids);
      expectClose(out.lastHiddenState, expected, TOL.model.atol, 0, "reloaded");
      tf.dispose([out.lastHiddenState, out.poolerOutput]);
      m.dispose();
    }
    tf.dispose([ids, expected]);
  });

  it("names the file and the tensor when a weight is missing, and the file names it looked for", async () => {
    const dir = tinyCopy("missing", { weights: (w) => w.delete("text_model.encoder.layers.1.mlp.fc2.weight") });
    await expect(CLIPTextModel.fromPretrained(dir)).rejects.toThrow(/model\.safetensors[\s\S]*missing[\s\S]*text_model\.encoder\.layers\.1\.mlp\.fc2\.weight/);
    const wrong = tinyCopy("wrong-shape", { config: (c) => { c.intermediate_size = 64; } });
    await expect(CLIPTextModel.fromPretrained(wrong)).rejects.toThrow(/mlp\.fc1\.weight.*\[64, 32\].*\[128, 32\]/);
    const empty = path.join(tmpRoot, "no-weights");
    fs.mkdirSync(empty, { recursive: true });
    fs.copyFileSync(path.join(TINY, "config.json"), path.join(empty, "config.json"));
    await expect(CLIPTextModel.fromPretrained(empty)).rejects.toThrow(/model\.safetensors and pytorch_model\.bin/);
  });

  it("saves as transformers does (model.safetensors, sorted config.json) and fp16 variants reload", async () => {
    const dir = path.join(tmpRoot, "saved");
    model.savePretrained(dir);
    expect(fs.existsSync(path.join(dir, "model.safetensors"))).toBe(true);
    const text = fs.readFileSync(path.join(dir, "config.json"), "utf8");
    const saved = JSON.parse(text);
    expect(Object.keys(saved)).toEqual(Object.keys(saved).sort());
    expect(saved).toMatchObject({ architectures: ["CLIPTextModel"], model_type: "clip_text_model", torch_dtype: "float32", eos_token_id: 2 });
    expect(saved._class_name).toBeUndefined();
    const original = JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8"));
    expect(saved).toEqual(original); // same keys and values as transformers wrote
    const keys = [...readSafetensorsArrays(path.join(dir, "model.safetensors")).tensors.keys()].sort();
    expect(keys).toEqual([...readSafetensorsArrays(path.join(TINY, "model.safetensors")).tensors.keys()].sort());

    model.savePretrained(dir, { variant: "fp16", dtype: "F16" });
    expect(fs.existsSync(path.join(dir, "model.fp16.safetensors"))).toBe(true);
    const half = await CLIPTextModel.fromPretrained(dir, { variant: "fp16" });
    const reloaded = await CLIPTextModel.fromPretrained(dir);
    const ids = tf.slice(golden.input_ids, [0, 0], [2, 77]) as tf.Tensor2D;
    const expected = tf.slice(golden.last_hidden_state, [0, 0, 0], [2, 77, 32]);
    const o0 = model.forward(ids);
    const o1 = reloaded.forward(ids);
    expectClose(o1.lastHiddenState, o0.lastHiddenState, 0, 0, "fp32 round trip is exact");
    const o2 = half.forward(ids);
    expectClose(o2.lastHiddenState, expected, 5e-2, 0, "fp16 weights");
    tf.dispose([ids, expected, o0.lastHiddenState, o0.poolerOutput, o1.lastHiddenState, o1.poolerOutput, o2.lastHiddenState, o2.poolerOutput]);
    half.dispose();
    reloaded.dispose();
  });

  it("leaks no tensors; dispose frees every weight", async () => {
    const ids = rows(golden.input_ids).slice(0, 2);
    const warm = model.forward(ids, { outputHiddenStates: true, attentionMask: rows(golden.attention_mask).slice(0, 2) });
    tf.dispose([warm.lastHiddenState, warm.poolerOutput, ...warm.hiddenStates!]);
    const before = tf.memory().numTensors;
    for (const opts of [{}, { outputHiddenStates: true }, { attentionMask: rows(golden.attention_mask).slice(0, 2) }]) {
      const out = model.forward(ids, opts);
      expect(tf.memory().numTensors).toBe(before + 2 + (out.hiddenStates?.length ?? 0));
      tf.dispose([out.lastHiddenState, out.poolerOutput, ...(out.hiddenStates ?? [])]);
      expect(tf.memory().numTensors).toBe(before);
    }
    expect(() => model.forward([[1, 2, 3, 49408]])).toThrow();
    expect(tf.memory().numTensors).toBe(before);

    const base = tf.memory().numTensors;
    const m = await CLIPTextModel.fromPretrained(TINY);
    expect(tf.memory().numTensors).toBe(base + m.namedParameters().length);
    m.dispose();
    expect(tf.memory().numTensors).toBe(base);
    const r = CLIPTextModel.fromConfig(JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8")), { seed: 1 });
    r.dispose();
    expect(tf.memory().numTensors).toBe(base);
  });
});

describe("CLIPTextModel: real SD 1.5 config and activations", () => {
  it("builds SD 1.5's text encoder shape (123M parameters) from its config.json", () => {
    const cfg = JSON.parse(fs.readFileSync(SD15_CONFIG, "utf8"));
    const m = new CLIPTextModel(cfg); // no weights allocated
    expect(m.numParameters()).toBe(123060480);
    expect(m.text_model.encoder.layers.length).toBe(12);
    expect(m.text_model.encoder.layers.items[0].self_attn.scale).toBeCloseTo(64 ** -0.5, 12);
    expect(m.config._name_or_path).toBe("openai/clip-vit-large-patch14");
  });

  it("quick_gelu is x*sigmoid(1.702x); gelu / gelu_new configs build and run", () => {
    const xs = [-3, -0.5, 0, 0.7, 2.5];
    const q = quickGelu(tf.tensor1d(xs));
    expectClose(q, xs.map((x) => x / (1 + Math.exp(-1.702 * x))), 1e-6);
    const g = geluTanh(tf.tensor1d(xs));
    expectClose(g, xs.map((x) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)))), 1e-6);
    tf.dispose([q, g]);
    for (const act of ["gelu", "gelu_new"]) {
      const m = CLIPTextModel.fromConfig({ vocab_size: 100, hidden_size: 8, intermediate_size: 16, num_hidden_layers: 1, num_attention_heads: 2, hidden_act: act }, { seed: 3 });
      const out = m.forward([[0, 5, 99]]);
      expect(out.lastHiddenState.shape).toEqual([1, 3, 8]);
      expect(Number.isFinite(tf.sum(out.lastHiddenState).dataSync()[0])).toBe(true);
      tf.dispose([out.lastHiddenState, out.poolerOutput]);
      m.dispose();
    }
  });
});
