// UNet2DModel parity with diffusers 0.27.2 on the tiny ddpm-cat-256-shaped model (fixtures/models/),
// loading paths (safetensors, fp16 variant, .bin with deprecated attention names), errors, memory.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { UNet2DModel, timestepsForBatch } from "../src/models/unet-2d.js";
import { getDownBlock, getUpBlock } from "../src/models/unet-2d-blocks.js";
import { scaledDotProductAttention } from "../src/nn/scaled-dot-product-attention.js";
import { getTimestepEmbedding } from "../src/models/embeddings.js";
import { readSafetensorsArrays, saveSafetensors } from "../src/io/safetensors.js";
import { fixture, loadFixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";

const TINY = fixture("models/unet-ddpm-tiny");
const TINY_BIN = fixture("models/unet-ddpm-tiny-bin");
const GOLDEN = "models/unet-ddpm-tiny.golden.safetensors";
const CASES = ["c0_int999", "c1_pyfloat500.5", "c2_tensorfloat500.5", "c3_batch2_t10_700", "c4_int0"] as const;

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "unet2d-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** A copy of the tiny model folder with its config.json edited and/or its weights replaced. */
function tinyCopy(name: string, edit: { config?: (c: Record<string, unknown>) => void; weights?: (w: Map<string, unknown>) => void }): string {
  const dir = path.join(tmpRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8"));
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
    case "c1_pyfloat500.5": return 500.5; // a JS number is a Python number: truncated to 500 as diffusers does
    case "c2_tensorfloat500.5": return golden["c2_tensorfloat500.5/timestep"]; // 0-dim float32 tensor: stays 500.5
    case "c3_batch2_t10_700": return golden["c3_batch2_t10_700/timestep"]; // [10, 700]
    case "c4_int0": return 0;
  }
}

describe("UNet2DModel (unet-ddpm-tiny)", () => {
  let model: UNet2DModel;
  let golden: Record<string, tf.Tensor>;

  beforeAll(async () => {
    golden = loadFixture(GOLDEN);
    model = await UNet2DModel.fromPretrained(TINY);
  });
  afterAll(() => {
    model?.dispose();
    tf.dispose(Object.values(golden ?? {}));
  });

  it("builds the config of the fixture with diffusers' defaults and parameter count", () => {
    expect(model.numParameters()).toBe(763363); // models.json n_params
    expect(model.config.block_out_channels).toEqual([16, 16, 32, 32, 32, 32]);
    expect(model.config.mid_block_scale_factor).toBe(1);
    expect(model.config._class_name).toBe("UNet2DModel");
    const defaults = new UNet2DModel({}).config;
    expect(defaults.block_out_channels).toEqual([224, 448, 672, 896]);
    expect(defaults.flip_sin_to_cos).toBe(true);
    expect(defaults.freq_shift).toBe(0);
    expect(defaults.downsample_padding).toBe(1);
    expect(defaults.norm_eps).toBe(1e-5);
    expect(defaults.attention_head_dim).toBe(8);
  });

  for (const c of CASES) {
    it(`matches diffusers on ${c}`, () => {
      const x = nchwToNhwc(golden[`${c}/sample`]);
      const out = model.forward(x, caseTimestep(golden, c)).sample;
      const expected = nchwToNhwc(golden[`${c}/output`]);
      expectClose(out, expected, TOL.model.atol, 0, c);
      tf.dispose([x, out, expected]);
    });
  }

  it("c1 (python float 500.5 -> 500) and c2 (tensor 500.5) really differ, as in diffusers", () => {
    const a = golden["c1_pyfloat500.5/output"].dataSync();
    const b = golden["c2_tensorfloat500.5/output"].dataSync();
    let d = 0;
    for (let i = 0; i < a.length; i++) d = Math.max(d, Math.abs(a[i] - b[i]));
    expect(d).toBeGreaterThan(10 * TOL.model.atol);
  });

  it("matches every intermediate of c0", () => {
    const inter: Record<string, tf.Tensor> = {};
    const x = nchwToNhwc(golden["c0_int999/sample"]);
    const out = model.forward(x, 999, { intermediates: inter }).sample;
    const names = Object.keys(golden).filter((k) => k.startsWith("c0_int999/intermediate/")).map((k) => k.slice("c0_int999/intermediate/".length));
    expect(names.length).toBe(18);
    for (const name of names) {
      expect(inter[name], name).toBeDefined();
      const g = golden[`c0_int999/intermediate/${name}`];
      const e = g.rank === 4 ? nchwToNhwc(g) : g;
      expectClose(inter[name], e, TOL.model.atol, 0, name);
      if (e !== g) e.dispose();
    }
    tf.dispose([x, out, ...Object.values(inter)]);
  });

  it("computes the sinusoidal embedding as torch float32 does", () => {
    const e = getTimestepEmbedding([999], 16, { flipSinToCos: false, downscaleFreqShift: 1 });
    expectClose(e, golden["c0_int999/intermediate/time_proj"], 1e-6);
    e.dispose();
  });

  it("leaves no tensor behind but its output", () => {
    const x = nchwToNhwc(golden["c3_batch2_t10_700/sample"]);
    model.forward(x, 5).sample.dispose(); // warm-up
    const before = tf.memory().numTensors;
    const out = model.forward(x, golden["c3_batch2_t10_700/timestep"]).sample;
    expect(tf.memory().numTensors).toBe(before + 1);
    tf.dispose([x, out]);
  });

  it("saves and reloads exactly (savePretrained -> fromPretrained)", async () => {
    const dir = path.join(tmpRoot, "saved");
    model.savePretrained(dir);
    const saved = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    expect(saved._class_name).toBe("UNet2DModel");
    expect(saved.block_out_channels).toEqual([16, 16, 32, 32, 32, 32]);
    const orig = readSafetensorsArrays(path.join(TINY, "diffusion_pytorch_model.safetensors")).tensors;
    const back = readSafetensorsArrays(path.join(dir, "diffusion_pytorch_model.safetensors")).tensors;
    expect([...back.keys()].sort()).toEqual([...orig.keys()].sort());
    for (const [k, t] of orig) {
      expect(back.get(k)!.shape, k).toEqual(t.shape);
      expect(Buffer.from((back.get(k)!.data as Float32Array).buffer).equals(Buffer.from((t.data as Float32Array).buffer)), k).toBe(true);
    }
    const again = await UNet2DModel.fromPretrained(dir);
    const x = nchwToNhwc(golden["c0_int999/sample"]);
    const out = again.forward(x, 999).sample;
    expectClose(out, nchwToNhwc(golden["c0_int999/output"]), TOL.model.atol);
    tf.dispose([x, out]);
    again.dispose();
  });
});

describe("UNet2DModel loading", () => {
  it("loads the fp16 variant (upcast to float32) and matches its golden", async () => {
    const g = loadFixture("models/unet-ddpm-tiny.fp16variant.golden.safetensors");
    const m = await UNet2DModel.fromPretrained(TINY, { variant: "fp16" });
    const x = nchwToNhwc(g["sample"]);
    const out = m.forward(x, 999).sample;
    expectClose(out, nchwToNhwc(g["output"]), TOL.model.atol, 0, "fp16 variant");
    tf.dispose([x, out, ...Object.values(g)]);
    m.dispose();
  });

  it("loads a torch .bin checkpoint with deprecated attention names (query/key/value/proj_attn)", async () => {
    const g = loadFixture(GOLDEN);
    const m = await UNet2DModel.fromPretrained(TINY_BIN);
    const x = nchwToNhwc(g["c0_int999/sample"]);
    const out = m.forward(x, 999).sample;
    expectClose(out, nchwToNhwc(g["c0_int999/output"]), TOL.model.atol, 0, ".bin");
    m.dispose();
    const m16 = await UNet2DModel.fromPretrained(TINY_BIN, { variant: "fp16" });
    const g16 = loadFixture("models/unet-ddpm-tiny.fp16variant.golden.safetensors");
    const out16 = m16.forward(x, 999).sample;
    expectClose(out16, nchwToNhwc(g16["output"]), TOL.model.atol, 0, "fp16 .bin");
    m16.dispose();
    tf.dispose([x, out, out16, ...Object.values(g), ...Object.values(g16)]);
  });

  it("frees every weight on dispose", async () => {
    const before = tf.memory().numTensors;
    const m = await UNet2DModel.fromPretrained(TINY);
    expect(m.namedParameters().length).toBe(448); // the tensors in diffusion_pytorch_model.safetensors
    expect(tf.memory().numTensors - before).toBe(448);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("builds from a config with random or zero weights", () => {
    const config = JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8"));
    const before = tf.memory().numTensors;
    const r = UNet2DModel.fromConfig(config, { init: "random", seed: 1 });
    const z = UNet2DModel.fromConfig(config, { init: "zeros" });
    expect(r.numParameters()).toBe(763363);
    const x = tf.randomNormal([1, 32, 32, 3], 0, 1, "float32", 3) as tf.Tensor4D;
    const yr = r.forward(x, 10).sample;
    const yz = z.forward(x, 10).sample;
    expect(yr.shape).toEqual([1, 32, 32, 3]);
    const sr = tf.tidy(() => tf.moments(yr).variance.dataSync()[0]);
    expect(Number.isFinite(sr) && sr > 1e-4 && sr < 1e4).toBe(true);
    expect(tf.tidy(() => tf.max(tf.abs(yz)).dataSync()[0])).toBe(0);
    tf.dispose([x, yr, yz]);
    r.dispose();
    z.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("UNet2DModel options", () => {
  it("runs scale_shift ResNets, resnet up/downsamplers, several heads, class labels, no mid attention", () => {
    const before = tf.memory().numTensors;
    const m = UNet2DModel.fromConfig(
      {
        block_out_channels: [8, 16],
        norm_num_groups: 4,
        layers_per_block: 1,
        down_block_types: ["AttnDownBlock2D", "DownBlock2D"],
        up_block_types: ["AttnUpBlock2D", "UpBlock2D"],
        attention_head_dim: 4,
        resnet_time_scale_shift: "scale_shift",
        downsample_type: "resnet",
        upsample_type: "resnet",
        center_input_sample: true,
        num_class_embeds: 3,
        add_attention: false,
      },
      { init: "random", seed: 5 },
    );
    const names = m.namedParameters().map(([n]) => n);
    expect(names).toContain("down_blocks.0.downsamplers.0.norm1.weight"); // a ResNet with down=True
    expect(names).toContain("up_blocks.0.upsamplers.0.conv2.weight"); // a ResNet with up=True
    expect(names).toContain("class_embedding.weight");
    expect(names.some((n) => n.startsWith("mid_block.attentions"))).toBe(false);
    const proj = m.namedParameters().find(([n]) => n === "down_blocks.0.resnets.0.time_emb_proj.weight")![1];
    expect(proj.torchShape).toEqual([16, 32]); // scale and shift: 2 * out_channels
    const attn = (m.down_blocks.items[0] as unknown as { attentions: { items: { heads: number }[] } }).attentions.items[0];
    expect(attn.heads).toBe(2); // 8 channels / head dim 4
    const x = tf.randomUniform([2, 8, 8, 3], 0, 1, "float32", 7) as tf.Tensor4D;
    const inner = tf.memory().numTensors;
    const y = m.forward(x, [3, 700], { classLabels: [0, 2] }).sample;
    expect(tf.memory().numTensors).toBe(inner + 1);
    expect(y.shape).toEqual([2, 8, 8, 3]);
    expect(tf.tidy(() => tf.all(tf.isFinite(y)).dataSync()[0])).toBe(1);
    expect(() => m.forward(x, 1)).toThrow(/class_labels should be provided/);
    tf.dispose([x, y]);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe("UNet2DModel errors", () => {
  it("names an unknown block type and lists the supported ones", async () => {
    const dir = tinyCopy("foo-block", { config: (c) => ((c.down_block_types as string[])[1] = "FooBlock2D") });
    await expect(UNet2DModel.fromPretrained(dir)).rejects.toThrow(/"FooBlock2D".*supported: "DownBlock2D", "AttnDownBlock2D"/);
    expect(() => getUpBlock("BarBlock2D", {} as never)).toThrow(/Unsupported up block type "BarBlock2D"; supported: "UpBlock2D", "AttnUpBlock2D"/);
    expect(() => getDownBlock("FooBlock2D", {} as never)).toThrow(/Unsupported down block type "FooBlock2D"/);
  });

  it("rejects weights whose shape disagrees with the config, naming file, tensor and shapes", async () => {
    const dir = tinyCopy("wrong-channels", { config: (c) => ((c.block_out_channels as number[])[5] = 64) });
    const file = path.join(dir, "diffusion_pytorch_model.safetensors");
    const before = tf.memory().numTensors;
    const err = await UNet2DModel.fromPretrained(dir).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(file);
    expect(err!.message).toContain('"down_blocks.5.resnets.0.conv1.weight": expected [64, 32, 3, 3] from the config, the file has [32, 32, 3, 3]');
    expect(err!.message).toMatch(/config\.json and the weights file/);
    expect(tf.memory().numTensors).toBe(before); // nothing leaked by the failed load
  });

  it("rejects a missing weight and an unexpected one", async () => {
    const missing = tinyCopy("missing", { weights: (w) => w.delete("down_blocks.4.attentions.0.to_q.weight") });
    await expect(UNet2DModel.fromPretrained(missing)).rejects.toThrow(/1 missing tensor\(s\):\n\s+"down_blocks\.4\.attentions\.0\.to_q\.weight" \(expected shape \[32, 32\]\)/);
    const extra = tinyCopy("extra", { weights: (w) => w.set("mid_block.extra.weight", { dtype: "F32", shape: [2], data: new Float32Array(2) }) });
    await expect(UNet2DModel.fromPretrained(extra)).rejects.toThrow(/unexpected tensor\(s\)[^\n]*:\n\s+"mid_block\.extra\.weight" \(shape \[2\]\)/);
  });

  it("rejects a missing folder and a missing variant", async () => {
    await expect(UNet2DModel.fromPretrained(path.join(tmpRoot, "does-not-exist"))).rejects.toThrow(/does-not-exist.*does not exist/);
    await expect(UNet2DModel.fromPretrained(TINY, { variant: "ema" })).rejects.toThrow(
      /no weights file: looked for diffusion_pytorch_model\.ema\.safetensors and diffusion_pytorch_model\.ema\.bin/,
    );
  });

  it("rejects wrong timesteps and inputs", () => {
    expect(() => timestepsForBatch([1, 2, 3], 2)).toThrow(/3 timesteps for a batch of 2/);
    expect(Array.from(timestepsForBatch(500.9, 2))).toEqual([500, 500]);
    expect(Array.from(timestepsForBatch(-1.5, 1))).toEqual([-1]);
    expect(Array.from(timestepsForBatch([10.5, 700], 2))).toEqual([10.5, 700]);
    const m = new UNet2DModel({ block_out_channels: [8, 8], norm_num_groups: 4, down_block_types: ["DownBlock2D", "DownBlock2D"], up_block_types: ["UpBlock2D", "UpBlock2D"] });
    const x = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D;
    expect(() => m.forward(x, 1)).toThrow(/NHWC \[batch, height, width, 3\], got \[1,8,8,4\]/);
    x.dispose();
  });
});

describe("scaledDotProductAttention", () => {
  it("matches a plain per-head softmax(q k^T / sqrt(d)) v for several batches and heads", () => {
    const [batch, heads, lq, lk, d] = [2, 3, 5, 4, 2];
    const q = tf.randomNormal([batch * lq, heads * d], 0, 1, "float32", 1) as tf.Tensor2D;
    const k = tf.randomNormal([batch * lk, heads * d], 0, 1, "float32", 2) as tf.Tensor2D;
    const v = tf.randomNormal([batch * lk, heads * d], 0, 1, "float32", 3) as tf.Tensor2D;
    const scale = d ** -0.5;
    const out = scaledDotProductAttention(q, k, v, batch, heads, scale);
    const [Q, K, V] = [q.arraySync(), k.arraySync(), v.arraySync()];
    const expected: number[][] = Array.from({ length: batch * lq }, () => new Array(heads * d).fill(0));
    for (let b = 0; b < batch; b++) {
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < lq; i++) {
          const s = Array.from({ length: lk }, (_, j) => {
            let dot = 0;
            for (let c = 0; c < d; c++) dot += Q[b * lq + i][h * d + c] * K[b * lk + j][h * d + c];
            return dot * scale;
          });
          const m = Math.max(...s);
          const p = s.map((x) => Math.exp(x - m));
          const z = p.reduce((a, x) => a + x, 0);
          for (let c = 0; c < d; c++) {
            expected[b * lq + i][h * d + c] = p.reduce((a, pj, j) => a + (pj / z) * V[b * lk + j][h * d + c], 0);
          }
        }
      }
    }
    expectClose(out, expected.flat(), 1e-5);
    tf.dispose([q, k, v, out]);
  });
});
