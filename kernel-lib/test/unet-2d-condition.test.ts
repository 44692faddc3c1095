// UNet2DConditionModel parity with diffusers 0.27.2 on the tiny SD 1.5-shaped UNet (fixtures/sd-tiny-pipe/unet):
// every golden case, the intermediates of c0, bad inputs, memory, and the transformer pieces on their own.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { UNet2DConditionModel, conditionTimesteps } from "../src/models/unet-2d-condition.js";
import { CrossAttnDownBlock2D, CrossAttnUpBlock2D, UNetMidBlock2DCrossAttn } from "../src/models/unet-2d-blocks-cross-attn.js";
import { Transformer2DModel, attentionMaskToBias } from "../src/models/transformer-2d.js";
import { BasicTransformerBlock, FeedForward, GEGLU } from "../src/models/attention.js";
import { getDownBlock } from "../src/models/unet-2d-blocks.js";
import { gelu } from "../src/nn/activations.js";
import { getKeepPackedWeights, setKeepPackedWeights } from "../src/runtime/wasm/packed-weights.js";
import { readSafetensorsArrays, saveSafetensors } from "../src/io/safetensors.js";
import { fixture, loadFixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";

const TINY = fixture("sd-tiny-pipe/unet");
const GOLDEN = "models/unet-sd-tiny.golden.safetensors";
const SD15_CONFIG = fixture("configs/stable-diffusion-v1-5/unet/config.json");
const CASES = ["c0_int999", "c1_tensorfloat500.5", "c2_pyfloat500.5", "c3_cfg_batch2_t741", "c4_batch2_t10_900", "c5_cfg_real_text_t981"] as const;

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "unet2dcond-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

function tinyConfig(): Record<string, unknown> {
  return JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8"));
}

/** A copy of the tiny UNet folder with its config.json edited and/or its weights replaced. */
function tinyCopy(name: string, edit: { config?: (c: Record<string, unknown>) => void; weights?: (w: Map<string, unknown>) => void }): string {
  const dir = path.join(tmpRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  const config = tinyConfig();
  edit.config?.(config);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  const { tensors } = readSafetensorsArrays(path.join(TINY, "diffusion_pytorch_model.safetensors"));
  edit.weights?.(tensors as Map<string, unknown>);
  saveSafetensors(path.join(dir, "diffusion_pytorch_model.safetensors"), Object.fromEntries(tensors));
  return dir;
}

/** The timestep argument of each golden case, as a JS caller passes it. */
function caseTimestep(golden: Record<string, tf.Tensor>, c: (typeof CASES)[number]): number | tf.Tensor {
  switch (c) {
    case "c0_int999": return 999;
    case "c2_pyfloat500.5": return 500.5; // a Python float: UNet2DConditionModel keeps it fractional
    default: return golden[`${c}/timestep`]; // 0-dim float 500.5, 0-dim int 741 / 981 (CFG), [10, 900]
  }
}

describe("UNet2DConditionModel (sd-tiny-pipe/unet)", () => {
  let model: UNet2DConditionModel;
  let golden: Record<string, tf.Tensor>;

  beforeAll(async () => {
    golden = loadFixture(GOLDEN);
    model = await UNet2DConditionModel.fromPretrained(TINY);
  });
  afterAll(() => {
    model?.dispose();
    tf.dispose(Object.values(golden ?? {}));
  });

  it("builds the fixture config with diffusers' defaults and parameter count", () => {
    const models = JSON.parse(fs.readFileSync(fixture("models/models.json"), "utf8"));
    expect(model.numParameters()).toBe(models.models["unet-sd-tiny"].n_params); // 827476
    expect(model.config._class_name).toBe("UNet2DConditionModel");
    const defaults = new UNet2DConditionModel({}).config;
    expect(defaults.block_out_channels).toEqual([320, 640, 1280, 1280]);
    expect(defaults.cross_attention_dim).toBe(1280);
    expect(defaults.attention_head_dim).toBe(8);
    expect(defaults.flip_sin_to_cos).toBe(true);
    expect(defaults.freq_shift).toBe(0);
    expect(defaults.mid_block_type).toBe("UNetMidBlock2DCrossAttn");
    expect(defaults.norm_eps).toBe(1e-5);
    // attention_head_dim 8 is the number of heads: head dims 16/8 = 2 and 32/8 = 4
    const down0 = model.down_blocks.items[0] as CrossAttnDownBlock2D;
    const attn1 = down0.attentions.items[0].transformer_blocks.items[0].attn1;
    expect(attn1.heads).toBe(8);
    expect(attn1.scale).toBeCloseTo(2 ** -0.5, 12);
    expect(down0.attentions.items[0].norm.eps).toBe(1e-6); // GroupNorm eps 1e-6 whatever norm_eps says
    expect(model.mid_block).toBeInstanceOf(UNetMidBlock2DCrossAttn);
    expect(model.up_blocks.items[1]).toBeInstanceOf(CrossAttnUpBlock2D);
  });

  it("loads every tensor of the checkpoint under diffusers' names", () => {
    const names = new Set(model.namedParameters().map(([n]) => n));
    const file = readSafetensorsArrays(path.join(TINY, "diffusion_pytorch_model.safetensors")).tensors;
    expect(names.size).toBe(file.size);
    for (const k of file.keys()) expect(names.has(k), k).toBe(true);
    expect(names).toContain("down_blocks.0.attentions.1.transformer_blocks.0.ff.net.0.proj.weight");
    expect(names).toContain("up_blocks.3.attentions.2.transformer_blocks.0.attn2.to_out.0.bias");
    expect(names).toContain("mid_block.attentions.0.proj_in.weight");
  });

  for (const c of CASES) {
    it(`matches diffusers on ${c}`, () => {
      const x = nchwToNhwc(golden[`${c}/sample`]);
      const ehs = golden[`${c}/encoder_hidden_states`] as tf.Tensor3D;
      const out = model.forward(x, caseTimestep(golden, c), ehs).sample;
      const expected = nchwToNhwc(golden[`${c}/output`]);
      expectClose(out, expected, TOL.model.atol, 0, c);
      tf.dispose([x, out, expected]);
    });
  }

  it("keeps fractional timesteps: python float 500.5 == tensor 500.5, and differs from 500", () => {
    const a = golden["c1_tensorfloat500.5/output"];
    const b = golden["c2_pyfloat500.5/output"];
    expectClose(a, b, 0);
    const x = nchwToNhwc(golden["c2_pyfloat500.5/sample"]);
    const ehs = golden["c2_pyfloat500.5/encoder_hidden_states"] as tf.Tensor3D;
    const y500 = model.forward(x, 500, ehs).sample;
    const d = tf.tidy(() => tf.max(tf.abs(tf.sub(y500, nchwToNhwc(b)))).dataSync()[0]);
    expect(d).toBeGreaterThan(10 * TOL.model.atol);
    tf.dispose([x, y500]);
    expect(Array.from(conditionTimesteps(500.5, 2))).toEqual([500.5, 500.5]);
  });

  it("matches every intermediate of c0", () => {
    const inter: Record<string, tf.Tensor> = {};
    const x = nchwToNhwc(golden["c0_int999/sample"]);
    const out = model.forward(x, 999, golden["c0_int999/encoder_hidden_states"] as tf.Tensor3D, { intermediates: inter }).sample;
    const prefix = "c0_int999/intermediate/";
    const names = Object.keys(golden).filter((k) => k.startsWith(prefix)).map((k) => k.slice(prefix.length));
    expect(names.length).toBe(14);
    expect(Object.keys(inter).sort()).toEqual([...names].sort());
    for (const name of names) {
      const g = golden[prefix + name];
      const e = g.rank === 4 ? nchwToNhwc(g) : g;
      expectClose(inter[name], e, TOL.model.atol, 0, name);
      if (e !== g) e.dispose();
    }
    tf.dispose([x, out, ...Object.values(inter)]);
  });

  it("leaves no tensor behind but its output", () => {
    const x = nchwToNhwc(golden["c3_cfg_batch2_t741/sample"]);
    const ehs = golden["c3_cfg_batch2_t741/encoder_hidden_states"] as tf.Tensor3D;
    model.forward(x, 5, ehs).sample.dispose(); // warm-up
    const before = tf.memory().numTensors;
    const out = model.forward(x, golden["c3_cfg_batch2_t741/timestep"], ehs, { crossAttentionKwargs: { scale: 0.5 } }).sample;
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose([x, out]);
  });

  it("gives the same output without kept packed weights (the low-memory mode for SD 1.5 on wasm)", () => {
    const x = nchwToNhwc(golden["c3_cfg_batch2_t741/sample"]);
    const ehs = golden["c3_cfg_batch2_t741/encoder_hidden_states"] as tf.Tensor3D;
    expect(getKeepPackedWeights()).toBe(true);
    setKeepPackedWeights(false);
    try {
      const before = tf.memory().numTensors;
      const out = model.forward(x, golden["c3_cfg_batch2_t741/timestep"], ehs).sample;
      expect(tf.memory().numTensors).toBe(before + 1);
      expectClose(out, nchwToNhwc(golden["c3_cfg_batch2_t741/output"]), TOL.model.atol);
      out.dispose();
    } finally {
      setKeepPackedWeights(true);
    }
    x.dispose();
  });

  it("accepts cross_attention_kwargs.scale (no LoRA loaded: no effect)", () => {
    const x = nchwToNhwc(golden["c0_int999/sample"]);
    const ehs = golden["c0_int999/encoder_hidden_states"] as tf.Tensor3D;
    const out = model.forward(x, 999, ehs, { crossAttentionKwargs: { scale: 0.8 } }).sample;
    expectClose(out, nchwToNhwc(golden["c0_int999/output"]), TOL.model.atol);
    tf.dispose([x, out]);
  });

  it("applies encoder_attention_mask as diffusers does: a dropped text token is as if it were absent", () => {
    const x = nchwToNhwc(golden["c4_batch2_t10_900/sample"]);
    const ehs = golden["c4_batch2_t10_900/encoder_hidden_states"] as tf.Tensor3D;
    const t = golden["c4_batch2_t10_900/timestep"];
    // all ones: same as no mask
    const ones = tf.ones([2, 77]);
    const a = model.forward(x, t, ehs, { encoderAttentionMask: ones }).sample;
    expectClose(a, nchwToNhwc(golden["c4_batch2_t10_900/output"]), TOL.model.atol, 0, "mask of ones");
    // keep the first 10 tokens of item 0 and 20 of item 1 == run each item on its kept tokens only
    const keep = [10, 20];
    const mask = tf.tensor2d([0, 1].flatMap((b) => Array.from({ length: 77 }, (_, j) => (j < keep[b] ? 1 : 0))), [2, 77]);
    const masked = model.forward(x, t, ehs, { encoderAttentionMask: mask }).sample;
    for (let b = 0; b < 2; b++) {
      const xb = tf.slice(x, [b, 0, 0, 0], [1, -1, -1, -1]);
      const eb = tf.slice(ehs, [b, 0, 0], [1, keep[b], -1]) as tf.Tensor3D;
      const tb = tf.slice(t, [b], [1]);
      const yb = model.forward(xb, tb, eb).sample;
      expectClose(tf.slice(masked, [b, 0, 0, 0], [1, -1, -1, -1]), yb, 1e-5, 0, `item ${b}`);
      tf.dispose([xb, eb, tb, yb]);
    }
    tf.dispose([x, ones, a, mask, masked]);
  });
});

describe("UNet2DConditionModel errors", () => {
  it("names an unknown block type and lists the supported ones", async () => {
    const dir = tinyCopy("foo-block", { config: (c) => ((c.down_block_types as string[])[1] = "FooCrossAttnBlock2D") });
    await expect(UNet2DConditionModel.fromPretrained(dir)).rejects.toThrow(/Unsupported down block type "FooCrossAttnBlock2D"; supported: .*"CrossAttnDownBlock2D"/);
    const up = tinyCopy("bar-block", { config: (c) => ((c.up_block_types as string[])[2] = "BarUpBlock2D") });
    await expect(UNet2DConditionModel.fromPretrained(up)).rejects.toThrow(/Unsupported up block type "BarUpBlock2D"; supported: .*"CrossAttnUpBlock2D"/);
    expect(() => new UNet2DConditionModel({ ...tinyConfig(), mid_block_type: "UNetMidBlock2DSimpleCrossAttn" })).toThrow(
      /unknown mid_block_type "UNetMidBlock2DSimpleCrossAttn"; supported: "UNetMidBlock2DCrossAttn", "UNetMidBlock2D", null/,
    );
    expect(() => getDownBlock("CrossAttnDownBlock2D", { numLayers: 1, inChannels: 8, outChannels: 8, tembChannels: 32, addDownsample: false, resnetEps: 1e-5, resnetActFn: "silu", resnetGroups: 4, resnetTimeScaleShift: "default", downsamplePadding: 1 })).toThrow(
      /cross_attention_dim must be specified for CrossAttnDownBlock2D/,
    );
  });

  it("rejects options this port does not have, naming them", () => {
    const base = tinyConfig();
    expect(() => new UNet2DConditionModel({ ...base, num_attention_heads: 8 })).toThrow(/num_attention_heads cannot be set.*attention_head_dim/);
    expect(() => new UNet2DConditionModel({ ...base, addition_embed_type: "text_time" })).toThrow(/addition_embed_type .* not supported/);
    expect(() => new UNet2DConditionModel({ ...base, time_cond_proj_dim: 256 })).toThrow(/time_cond_proj_dim .* not supported/);
    expect(() => new UNet2DConditionModel({ ...base, class_embed_type: "timestep" })).toThrow(/class_embed_type .* not supported/);
    expect(() => new UNet2DConditionModel({ ...base, attention_head_dim: [8, 8] })).toThrow(/attention_head_dim has 2 entries, one per down block \(4\)/);
  });

  it("rejects encoder_hidden_states of the wrong width, naming cross_attention_dim", async () => {
    const m = UNet2DConditionModel.fromConfig(tinyConfig(), { init: "zeros" });
    const x = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D;
    const wide = tf.zeros([1, 77, 768]) as tf.Tensor3D;
    expect(() => m.forward(x, 10, wide)).toThrow(/encoder_hidden_states has last dimension 768 but this UNet expects cross_attention_dim 32/);
    const twoItems = tf.zeros([2, 77, 32]) as tf.Tensor3D;
    expect(() => m.forward(x, 10, twoItems)).toThrow(/encoder_hidden_states has batch 2 but the sample has batch 1/);
    const flat = tf.zeros([77, 32]) as unknown as tf.Tensor3D;
    expect(() => m.forward(x, 10, flat)).toThrow(/encoder_hidden_states must be \[batch, tokens, 32\]/);
    const x3 = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
    expect(() => m.forward(x3, 10, twoItems)).toThrow(/sample must be NHWC \[batch, height, width, 4\], got \[1,8,8,3\]/);
    expect(() => conditionTimesteps([1, 2, 3], 2)).toThrow(/3 timesteps for a batch of 2/);
    expect(() => conditionTimesteps(NaN, 1)).toThrow(/not finite/);
    tf.dispose([x, wide, twoItems, flat, x3]);
    m.dispose();
  });

  it("rejects weights whose shape disagrees with the config, naming file, tensor and shapes", async () => {
    const dir = tinyCopy("wrong-cross-dim", { config: (c) => (c.cross_attention_dim = 48) });
    const file = path.join(dir, "diffusion_pytorch_model.safetensors");
    const before = tf.memory().numTensors;
    const err = await UNet2DConditionModel.fromPretrained(dir).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(file);
    expect(err!.message).toContain('"down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k.weight": expected [16, 48] from the config, the file has [16, 32]');
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("UNet2DConditionModel build and memory", () => {
  it("frees every weight on dispose; fromConfig random / zeros", async () => {
    const before = tf.memory().numTensors;
    const m = await UNet2DConditionModel.fromPretrained(TINY);
    const n = m.namedParameters().length;
    expect(tf.memory().numTensors - before).toBe(n);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);

    const r = UNet2DConditionModel.fromConfig(tinyConfig(), { init: "random", seed: 3 });
    const r2 = UNet2DConditionModel.fromConfig(tinyConfig(), { init: "random", seed: 3 });
    const x = tf.randomNormal([2, 8, 8, 4], 0, 1, "float32", 1) as tf.Tensor4D;
    const ehs = tf.randomNormal([2, 77, 32], 0, 1, "float32", 2) as tf.Tensor3D;
    const y = r.forward(x, [1, 999], ehs).sample;
    const y2 = r2.forward(x, [1, 999], ehs).sample;
    expectClose(y, y2, 0); // seeded: reproducible
    const v = tf.tidy(() => tf.moments(y).variance.dataSync()[0]);
    expect(Number.isFinite(v) && v > 1e-4 && v < 1e4).toBe(true);
    tf.dispose([x, ehs, y, y2]);
    r.dispose();
    r2.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("builds the real SD 1.5 config (859.5 M parameters) without allocating it", () => {
    const config = JSON.parse(fs.readFileSync(SD15_CONFIG, "utf8"));
    const before = tf.memory().numBytes;
    const m = new UNet2DConditionModel(config);
    expect(m.numParameters()).toBe(859_520_964);
    expect(tf.memory().numBytes).toBe(before);
    const blk = (m.down_blocks.items[2] as CrossAttnDownBlock2D).attentions.items[0].transformer_blocks.items[0];
    expect([blk.attn1.heads, blk.attn1.to_q.outFeatures / blk.attn1.heads]).toEqual([8, 160]);
    expect(blk.attn2!.to_k.inFeatures).toBe(768);
    expect(blk.ff.net.items[0]).toBeInstanceOf(GEGLU);
  });

  it("runs odd latent sizes (upsample sizes follow the skips) and SD 2.x options (linear projection, head lists)", () => {
    const m = UNet2DConditionModel.fromConfig(
      {
        ...tinyConfig(),
        attention_head_dim: [2, 4, 4, 8],
        use_linear_projection: true,
        upcast_attention: true,
        transformer_layers_per_block: [1, 2, 1, 1],
        only_cross_attention: [true, false, false, false],
        center_input_sample: true,
      },
      { init: "random", seed: 4 },
    );
    const t0 = (m.down_blocks.items[0] as CrossAttnDownBlock2D).attentions.items[0];
    expect(t0.proj_in.constructor.name).toBe("Linear");
    expect(t0.transformer_blocks.items[0].attn1.heads).toBe(2);
    expect(t0.transformer_blocks.items[0].attn1.to_k.inFeatures).toBe(32); // only_cross_attention: attn1 reads the text
    expect((m.down_blocks.items[1] as CrossAttnDownBlock2D).attentions.items[0].transformer_blocks.length).toBe(2);
    // up blocks reverse the per-block lists: up 1 mirrors down 2 (4 heads), up 3 mirrors down 0 (2 heads, only cross)
    const up3 = (m.up_blocks.items[3] as CrossAttnUpBlock2D).attentions.items[0].transformer_blocks.items[0].attn1;
    expect([up3.heads, up3.to_k.inFeatures]).toEqual([2, 32]);
    expect((m.up_blocks.items[2] as CrossAttnUpBlock2D).attentions.items[0].transformer_blocks.length).toBe(2);
    const x = tf.randomNormal([1, 9, 7, 4], 0, 1, "float32", 5) as tf.Tensor4D;
    const ehs = tf.randomNormal([1, 5, 32], 0, 1, "float32", 6) as tf.Tensor3D;
    const before = tf.memory().numTensors;
    const y = m.forward(x, 300, ehs).sample;
    expect(tf.memory().numTensors).toBe(before + 1);
    expect(y.shape).toEqual([1, 9, 7, 4]);
    expect(tf.tidy(() => tf.all(tf.isFinite(y)).dataSync()[0])).toBe(1);
    tf.dispose([x, ehs, y]);
    m.dispose();
  });
});

describe("transformer pieces", () => {
  it("GEGLU is h * gelu(gate) with [h, gate] = chunk(proj(x), 2) and FeedForward names net.0.proj / net.2", () => {
    const ff = new FeedForward(4, { mult: 2 });
    ff.initWeights("random", 9);
    expect(ff.namedParameters().map(([n, p]) => `${n}:${p.torchShape}`)).toEqual(["net.0.proj.weight:16,4", "net.0.proj.bias:16", "net.2.weight:4,8", "net.2.bias:4"]);
    const x = tf.randomNormal([3, 4], 0, 1, "float32", 10) as tf.Tensor2D;
    const y = ff.forward(x);
    const expected = tf.tidy(() => {
      const [w1, b1, w2, b2] = ff.namedParameters().map(([, p]) => p.value);
      const proj = tf.add(tf.matMul(x, w1), b1);
      const h = tf.slice(proj, [0, 0], [3, 8]);
      const gate = tf.slice(proj, [0, 8], [3, 8]);
      const erfGelu = tf.mul(tf.mul(gate, 0.5), tf.add(1, tf.erf(tf.div(gate, Math.SQRT2))));
      return tf.add(tf.matMul(tf.mul(h, erfGelu), w2), b2);
    });
    expectClose(y, expected, 1e-6);
    expectClose(gelu(tf.tensor1d([-1, 0, 1, 2])), [-0.15865525, 0, 0.84134475, 1.9544997], 1e-6);
    tf.dispose([x, y, expected]);
    ff.dispose();
  });

  it("BasicTransformerBlock: self-attention only without cross_attention_dim; double_self_attention adds attn2", () => {
    const plain = new BasicTransformerBlock({ dim: 8, numAttentionHeads: 2, attentionHeadDim: 4 });
    expect(plain.attn2).toBeNull();
    expect(plain.namedParameters().some(([n]) => n.startsWith("norm2"))).toBe(false);
    const dbl = new BasicTransformerBlock({ dim: 8, numAttentionHeads: 2, attentionHeadDim: 4, doubleSelfAttention: true });
    expect(dbl.attn2!.to_k.inFeatures).toBe(8);
    expect(() => new BasicTransformerBlock({ dim: 8, numAttentionHeads: 2, attentionHeadDim: 4, normType: "ada_norm_zero" })).toThrow(/norm_type "ada_norm_zero" is not supported/);
    expect(() => new FeedForward(8, { activationFn: "swiglu" })).toThrow(/unknown activation_fn "swiglu"/);
  });

  it("Transformer2DModel rejects non-continuous inputs and converts masks to biases", () => {
    expect(() => new Transformer2DModel({ num_vector_embeds: 10, in_channels: null })).toThrow(/discrete inputs/);
    expect(() => new Transformer2DModel({ in_channels: 8, patch_size: 2 })).toThrow(/patched inputs/);
    const bias = attentionMaskToBias(tf.tensor2d([[1, 0, 1]]))!;
    expect(bias.shape).toEqual([1, 1, 3]);
    expectClose(bias, [0, -10000, 0], 0);
    bias.dispose();
  });
});
