// AutoencoderKL parity with diffusers 0.27.2 on the tiny SD-shaped VAE (fixtures/sd-tiny-pipe/vae):
// encode posterior, decode, reconstruction, posterior sampling with torch's RNG, pipeline VAE tensors,
// loading (deprecated attention names), odd sizes, errors, memory.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import { AutoencoderKL } from "../src/models/autoencoder-kl.js";
import { DiagonalGaussianDistribution, DownEncoderBlock2D, UpDecoderBlock2D } from "../src/models/vae.js";
import { getDownBlock, getUpBlock } from "../src/models/unet-2d-blocks.js";
import { Generator, randnTensor } from "../src/random/generator.js";
import { readSafetensorsArrays, saveSafetensors } from "../src/io/safetensors.js";
import { fixture, loadFixture, nchwToNhwc, expectClose, TOL } from "./helpers.js";

const TINY = fixture("sd-tiny-pipe/vae");
const GOLDEN = "models/vae-tiny.golden.safetensors";
const SD15_CONFIG = fixture("configs/stable-diffusion-v1-5/vae/config.json");
const N_WEIGHTS = readSafetensorsArrays(path.join(TINY, "diffusion_pytorch_model.safetensors")).tensors.size;

const tmpRoot = fs.mkdtempSync(path.join(os.tmpdir(), "vae-"));
afterAll(() => fs.rmSync(tmpRoot, { recursive: true, force: true }));

/** A copy of the tiny VAE folder with its config.json edited and/or its weights replaced. */
function tinyCopy(name: string, edit: { config?: (c: Record<string, unknown>) => void; weights?: (w: Map<string, unknown>) => Map<string, unknown> | void }): string {
  const dir = path.join(tmpRoot, name);
  fs.mkdirSync(dir, { recursive: true });
  const config = JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8"));
  edit.config?.(config);
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify(config, null, 2));
  let { tensors } = readSafetensorsArrays(path.join(TINY, "diffusion_pytorch_model.safetensors")) as { tensors: Map<string, unknown> };
  tensors = edit.weights?.(tensors) ?? tensors;
  saveSafetensors(path.join(dir, "diffusion_pytorch_model.safetensors"), Object.fromEntries(tensors) as never);
  return dir;
}

/** Golden NCHW tensor -> NHWC (owned by the caller). */
const g4 = (golden: Record<string, tf.Tensor>, key: string) => nchwToNhwc(golden[key]);

describe("AutoencoderKL (vae-tiny)", () => {
  let vae: AutoencoderKL;
  let golden: Record<string, tf.Tensor>;

  beforeAll(async () => {
    golden = loadFixture(GOLDEN);
    vae = await AutoencoderKL.fromPretrained(TINY);
  });
  afterAll(() => {
    vae?.dispose();
    tf.dispose(Object.values(golden ?? {}));
  });

  it("builds the fixture's config with diffusers' defaults and parameter count", () => {
    expect(vae.numParameters()).toBe(437847); // models.json n_params
    expect(vae.config.block_out_channels).toEqual([16, 32, 32, 32]);
    expect(vae.config.scaling_factor).toBe(0.18215);
    expect(vae.config._class_name).toBe("AutoencoderKL");
    expect(vae.numDownsamples).toBe(3);
    const d = new AutoencoderKL({}).config;
    expect(d).toMatchObject({ in_channels: 3, out_channels: 3, block_out_channels: [64], layers_per_block: 1, act_fn: "silu" });
    expect(d).toMatchObject({ latent_channels: 4, norm_num_groups: 32, sample_size: 32, scaling_factor: 0.18215, force_upcast: true });
    expect(d.down_block_types).toEqual(["DownEncoderBlock2D"]);
    expect(d.up_block_types).toEqual(["UpDecoderBlock2D"]);
    expect(d.latents_mean).toBeNull();
    // the real SD 1.5 config has no scaling_factor: the class default applies (and is marked as defaulted)
    const sd = new AutoencoderKL(JSON.parse(fs.readFileSync(SD15_CONFIG, "utf8")));
    expect(sd.config.scaling_factor).toBe(0.18215);
    expect(sd.config._use_default_values).toContain("scaling_factor");
    expect(sd.numParameters()).toBe(83653863); // diffusers' AutoencoderKL for SD 1.x
  });

  it("lists its weights in torch's state_dict order (encoder, decoder with up_blocks before mid_block, quant convs)", () => {
    const names = vae.namedParameters().map(([n]) => n);
    expect(names.length).toBe(N_WEIGHTS);
    const first = (p: string) => names.findIndex((n) => n.startsWith(p));
    const order = ["encoder.conv_in", "encoder.down_blocks", "encoder.mid_block", "encoder.conv_norm_out", "encoder.conv_out",
      "decoder.conv_in", "decoder.up_blocks", "decoder.mid_block", "decoder.conv_norm_out", "decoder.conv_out", "quant_conv", "post_quant_conv"];
    const idx = order.map(first);
    expect(idx.every((v) => v >= 0)).toBe(true);
    expect([...idx].sort((a, b) => a - b)).toEqual(idx);
    expect(names).toContain("encoder.mid_block.attentions.0.to_q.weight");
    expect(names).toContain("encoder.down_blocks.0.downsamplers.0.conv.weight");
    expect(names.some((n) => n.startsWith("encoder.down_blocks.3.downsamplers"))).toBe(false);
    expect(names).toContain("decoder.up_blocks.2.upsamplers.0.conv.weight");
    expect(names.some((n) => n.startsWith("decoder.up_blocks.3.upsamplers"))).toBe(false);
    expect(names).toContain("decoder.up_blocks.1.resnets.2.conv2.weight"); // layers_per_block + 1 ResNets
    expect(names.some((n) => n.includes("time_emb_proj"))).toBe(false);
    expect(vae.encoder.mid_block.attentions.items[0]!.heads).toBe(1);
  });

  for (const c of ["enc32", "enc64_batch2"] as const) {
    it(`encodes ${c}: latent_dist mean, logvar, std, var`, () => {
      const x = g4(golden, `${c}/image`);
      const { latentDist } = vae.encode(x);
      for (const k of ["mean", "logvar", "std", "var"] as const) {
        const e = g4(golden, `${c}/${k}`);
        expectClose(latentDist[k], e, TOL.model.atol, 0, `${c}/${k}`);
        e.dispose();
      }
      latentDist.dispose();
      x.dispose();
    });
  }

  it("matches the encoder intermediates of enc32", () => {
    const inter: Record<string, tf.Tensor> = {};
    const x = g4(golden, "enc32/image");
    const { latentDist } = vae.encode(x, { intermediates: inter });
    const names = Object.keys(golden).filter((k) => k.startsWith("enc32/intermediate/")).map((k) => k.slice("enc32/intermediate/".length));
    expect(names.sort()).toEqual(["encoder", "encoder.conv_out", "encoder.mid_block", "quant_conv"]);
    for (const name of names) {
      expect(inter[name], name).toBeDefined();
      const e = g4(golden, `enc32/intermediate/${name}`);
      expectClose(inter[name], e, TOL.model.atol, 0, name);
      e.dispose();
    }
    expect(Object.keys(inter)).toEqual(expect.arrayContaining(["encoder.conv_in", "encoder.down_blocks.3", "encoder.conv_norm_out"]));
    tf.dispose([x, ...Object.values(inter)]);
    latentDist.dispose();
  });

  it("decodes dec8 (no scaling inside decode) and matches its intermediates", () => {
    const inter: Record<string, tf.Tensor> = {};
    const z = g4(golden, "dec8/latents");
    const out = vae.decode(z, { intermediates: inter }).sample;
    expect(out.shape).toEqual([1, 64, 64, 3]);
    const e = g4(golden, "dec8/output");
    expectClose(out, e, TOL.model.atol, 0, "dec8");
    const names = Object.keys(golden).filter((k) => k.startsWith("dec8/intermediate/")).map((k) => k.slice("dec8/intermediate/".length));
    expect(names.length).toBe(7);
    for (const name of names) {
      expect(inter[name], name).toBeDefined();
      const ei = g4(golden, `dec8/intermediate/${name}`);
      expectClose(inter[name], ei, TOL.model.atol, 0, name);
      ei.dispose();
    }
    tf.dispose([z, out, e, ...Object.values(inter)]);
  });

  it("reconstructs: decode(encode(x).mode()) and forward(x) match dec_of_enc32_mean", () => {
    const x = g4(golden, "enc32/image");
    const e = g4(golden, "dec_of_enc32_mean/output");
    const { latentDist } = vae.encode(x);
    const z = latentDist.mode();
    const viaDecode = vae.decode(z).sample;
    expectClose(viaDecode, e, TOL.model.atol, 0, "decode(mode)");
    const viaForward = vae.forward(x).sample;
    expectClose(viaForward, e, TOL.model.atol, 0, "forward");
    latentDist.dispose();
    expect(z.isDisposed).toBe(false); // mode() is the caller's own handle
    tf.dispose([x, e, z, viaDecode, viaForward]);
  });

  it("samples the posterior as diffusers: mean + std * randn drawn in NCHW with the same generator", () => {
    const x = g4(golden, "enc64_batch2/image");
    const { latentDist } = vae.encode(x);
    const s = latentDist.sample(new Generator().manualSeed(1234));
    const eps = nchwToNhwc(new Generator().manualSeed(1234).randn([2, 4, 8, 8]));
    const expected = tf.tidy(() => tf.add(latentDist.mean, tf.mul(latentDist.std, eps)));
    expectClose(s, expected, 0, 0, "sample(seed 1234)");
    // a list of generators: batch item i from generator i (diffusers' randn_tensor)
    const s2 = latentDist.sample([new Generator().manualSeed(0), new Generator().manualSeed(1)]);
    const eps2 = nchwToNhwc(randnTensor([2, 4, 8, 8], { generator: [new Generator().manualSeed(0), new Generator().manualSeed(1)] }));
    const expected2 = tf.tidy(() => tf.add(latentDist.mean, tf.mul(latentDist.std, eps2)));
    expectClose(s2, expected2, 0, 0, "sample([seed 0, seed 1])");
    // forward(samplePosterior) decodes that sample
    const rec = vae.forward(x, { samplePosterior: true, generator: new Generator().manualSeed(1234) }).sample;
    const dec = vae.decode(s).sample;
    expectClose(rec, dec, 1e-6, 0, "forward(samplePosterior)");
    tf.dispose([x, s, eps, expected, s2, eps2, expected2, rec, dec]);
    latentDist.dispose();
  });

  it("reproduces the img2img pipeline's VAE step: 0.18215 * sample(Generator seeded 8800)", () => {
    const p = loadFixture("pipeline/img2img.safetensors");
    const run = "DDIMScheduler/g7.5/s10/strength0.6";
    const x = nchwToNhwc(p[`${run}/preprocessed_image_NCHW`]);
    const { latentDist } = vae.encode(x);
    // the pipeline's randn_tensor was fed by successive draws of Generator("cpu").manual_seed(8800)
    const noise = nchwToNhwc(p[`${run}/vae_encode_noise`]);
    const eps = nchwToNhwc(new Generator().manualSeed(8800).randn([1, 4, 8, 8]));
    expectClose(eps, noise, TOL.randn.atol, 0, "randn seed 8800");
    const s = latentDist.sample(new Generator().manualSeed(8800));
    const scaled = tf.mul(s, vae.config.scaling_factor as number);
    const e = nchwToNhwc(p[`${run}/init_latents_scaled`]);
    expectClose(scaled, e, TOL.model.atol, 0, "init_latents_scaled");
    tf.dispose([x, noise, eps, s, scaled, e, ...Object.values(p)]);
    latentDist.dispose();
  });

  it("reproduces the txt2img pipeline's VAE decode (vae_decode_in -> vae_decoded)", () => {
    const p = loadFixture("pipeline/txt2img.safetensors");
    const runs = [...new Set(Object.keys(p).filter((k) => k.endsWith("/vae_decode_in")).map((k) => k.slice(0, -"/vae_decode_in".length)))];
    expect(runs.length).toBeGreaterThan(0);
    for (const run of runs.slice(0, 3)) {
      const z = nchwToNhwc(p[`${run}/vae_decode_in`]);
      const out = vae.decode(z).sample;
      const e = nchwToNhwc(p[`${run}/vae_decoded`]);
      expectClose(out, e, TOL.model.atol, 0, run);
      tf.dispose([z, out, e]);
    }
    tf.dispose(Object.values(p));
  });

  it("computes kl() and nll() per batch item as diffusers' formulas", () => {
    const x = g4(golden, "enc64_batch2/image");
    const { latentDist: d } = vae.encode(x);
    const [m, v, lv] = [d.mean, d.var, d.logvar].map((t) => t.dataSync());
    const per = m.length / 2;
    const expKl = [0, 1].map((b) => {
      let s = 0;
      for (let i = b * per; i < (b + 1) * per; i++) s += m[i] * m[i] + v[i] - 1 - lv[i];
      return 0.5 * s;
    });
    const kl = d.kl();
    expect(kl.shape).toEqual([2]);
    expectClose(kl, expKl, 1e-3, 1e-5, "kl");
    // against itself the KL is 0; nll of the mean is 0.5 * sum(log 2pi + logvar)
    const self = d.kl(d);
    expectClose(self, [0, 0], 1e-4, 0, "kl(self)");
    const nll = d.nll(d.mean);
    const expNll = [0, 1].map((b) => {
      let s = 0;
      for (let i = b * per; i < (b + 1) * per; i++) s += Math.log(2 * Math.PI) + lv[i];
      return 0.5 * s;
    });
    expectClose(nll, expNll, 1e-3, 1e-5, "nll");
    tf.dispose([x, kl, self, nll]);
    d.dispose();
  });

  it("has a deterministic posterior option (std = var = 0, sample = mean, kl = 0)", () => {
    const moments = tf.randomNormal([1, 2, 2, 8], 0, 1, "float32", 4) as tf.Tensor4D;
    const d = new DiagonalGaussianDistribution(moments, true);
    const s = d.sample(new Generator().manualSeed(0));
    expectClose(s, d.mean, 0);
    expect(tf.tidy(() => tf.max(tf.abs(d.std)).dataSync()[0])).toBe(0);
    const kl = d.kl();
    expect(Array.from(kl.dataSync())).toEqual([0]);
    tf.dispose([moments, s, kl]);
    d.dispose();
  });

  it("clamps logvar to [-30, 20]", () => {
    const moments = tf.concat([tf.zeros([1, 1, 2, 2]), tf.tensor4d([-100, 100], [1, 1, 2, 1]), tf.tensor4d([-5, 5], [1, 1, 2, 1])], 3) as tf.Tensor4D;
    const d = new DiagonalGaussianDistribution(moments);
    expect(Array.from(d.logvar.dataSync())).toEqual([-30, -5, 20, 5]); // pixels (-100, -5), (100, 5)
    expectClose(d.std, [Math.exp(-15), Math.exp(-2.5), Math.exp(10), Math.exp(2.5)], 0, 1e-6);
    expectClose(d.var, [Math.exp(-30), Math.exp(-5), Math.exp(20), Math.exp(5)], 0, 1e-6);
    moments.dispose();
    d.dispose();
  });

  it("encodes sizes that are not multiples of 8 as diffusers does (pad bottom/right, floor), and rejects too small ones", () => {
    const x = tf.randomUniform([1, 36, 20, 3], -1, 1, "float32", 9) as tf.Tensor4D;
    const { latentDist } = vae.encode(x);
    expect(latentDist.mean.shape).toEqual([1, 4, 2, 4]); // 36 -> 18 -> 9 -> 4, 20 -> 10 -> 5 -> 2
    const out = vae.forward(x).sample;
    expect(out.shape).toEqual([1, 32, 16, 3]);
    latentDist.dispose();
    const small = tf.zeros([1, 8, 7, 3]) as tf.Tensor4D;
    expect(() => vae.encode(small)).toThrow(/8x7 \(HxW\).*halves it 3 times.*at least 8/);
    const ok = vae.encode(tf.keep(tf.zeros([1, 8, 8, 3])) as tf.Tensor4D);
    expect(ok.latentDist.mean.shape).toEqual([1, 1, 1, 4]);
    ok.latentDist.dispose();
    tf.dispose([x, out, small]);
  });

  it("rejects inputs with the wrong channel count, naming the expected channels", () => {
    const nchw = tf.zeros([1, 3, 32, 32]) as tf.Tensor4D;
    expect(() => vae.encode(nchw)).toThrow(/NHWC \[batch, height, width, 3\] \(in_channels 3\), got \[1,3,32,32\].*looks like NCHW/);
    const four = tf.zeros([1, 32, 32, 4]) as tf.Tensor4D;
    expect(() => vae.encode(four)).toThrow(/in_channels 3\), got \[1,32,32,4\]/);
    expect(() => vae.forward(four)).toThrow(/in_channels 3/);
    const z3 = tf.zeros([1, 8, 8, 3]) as tf.Tensor4D;
    expect(() => vae.decode(z3)).toThrow(/NHWC \[batch, height, width, 4\] \(latent_channels 4\), got \[1,8,8,3\]/);
    tf.dispose([nchw, four, z3]);
  });

  it("leaves only its outputs behind (encode: 4 posterior tensors, decode / forward: 1)", () => {
    const x = g4(golden, "enc64_batch2/image");
    const z = g4(golden, "dec8/latents");
    vae.forward(x).sample.dispose(); // warm-up
    const before = tf.memory().numTensors;
    const { latentDist } = vae.encode(x);
    expect(tf.memory().numTensors).toBe(before + 4);
    latentDist.dispose();
    expect(tf.memory().numTensors).toBe(before);
    const out = vae.decode(z).sample;
    expect(tf.memory().numTensors).toBe(before + 1);
    out.dispose();
    const rec = vae.forward(x, { samplePosterior: true, generator: new Generator().manualSeed(3) }).sample;
    expect(tf.memory().numTensors).toBe(before + 1);
    rec.dispose();
    expect(() => vae.encode(tf.keep(tf.zeros([1, 4, 4, 3])) as tf.Tensor4D)).toThrow();
    expect(tf.memory().numTensors).toBe(before + 1); // only the zeros the test kept
    tf.dispose([x, z]);
  });

  it("saves and reloads exactly (savePretrained -> fromPretrained)", async () => {
    const dir = path.join(tmpRoot, "saved");
    vae.savePretrained(dir);
    const saved = JSON.parse(fs.readFileSync(path.join(dir, "config.json"), "utf8"));
    expect(saved._class_name).toBe("AutoencoderKL");
    expect(saved.scaling_factor).toBe(0.18215);
    const orig = readSafetensorsArrays(path.join(TINY, "diffusion_pytorch_model.safetensors")).tensors;
    const back = readSafetensorsArrays(path.join(dir, "diffusion_pytorch_model.safetensors")).tensors;
    expect([...back.keys()].sort()).toEqual([...orig.keys()].sort());
    for (const [k, t] of orig) {
      expect(Buffer.from((back.get(k)!.data as Float32Array).buffer).equals(Buffer.from((t.data as Float32Array).buffer)), k).toBe(true);
    }
    const again = await AutoencoderKL.fromPretrained(dir);
    const z = g4(golden, "dec8/latents");
    const out = again.decode(z).sample;
    const e = g4(golden, "dec8/output");
    expectClose(out, e, TOL.model.atol);
    tf.dispose([z, out, e]);
    again.dispose();
  });
});

describe("AutoencoderKL loading", () => {
  it("loads the deprecated attention names of the real SD 1.5 VAE (query/key/value/proj_attn)", async () => {
    const rename: Record<string, string> = { to_q: "query", to_k: "key", to_v: "value", "to_out.0": "proj_attn" };
    const dir = tinyCopy("deprecated", {
      weights: (w) => new Map([...w].map(([k, v]) => [k.replace(/(attentions\.\d+)\.(to_q|to_k|to_v|to_out\.0)\./, (_, p: string, n: string) => `${p}.${rename[n]}.`), v])),
    });
    const keys = [...readSafetensorsArrays(path.join(dir, "diffusion_pytorch_model.safetensors")).tensors.keys()];
    expect(keys).toContain("decoder.mid_block.attentions.0.proj_attn.weight");
    expect(keys.some((k) => k.includes("to_q"))).toBe(false);
    const g = loadFixture(GOLDEN);
    const m = await AutoencoderKL.fromPretrained(dir);
    const z = nchwToNhwc(g["dec8/latents"]);
    const out = m.decode(z).sample;
    const e = nchwToNhwc(g["dec8/output"]);
    expectClose(out, e, TOL.model.atol, 0, "deprecated names");
    tf.dispose([z, out, e, ...Object.values(g)]);
    m.dispose();
  });

  it("frees every weight on dispose", async () => {
    const before = tf.memory().numTensors;
    const m = await AutoencoderKL.fromPretrained(TINY);
    expect(tf.memory().numTensors - before).toBe(N_WEIGHTS);
    m.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("rejects weights whose shape disagrees with the config, naming file, tensor and shapes", async () => {
    const dir = tinyCopy("wrong-latents", { config: (c) => (c.latent_channels = 8) });
    const file = path.join(dir, "diffusion_pytorch_model.safetensors");
    const before = tf.memory().numTensors;
    const err = await AutoencoderKL.fromPretrained(dir).then(() => null, (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(file);
    expect(err!.message).toContain('"quant_conv.weight": expected [16, 16, 1, 1] from the config, the file has [8, 8, 1, 1]');
    expect(err!.message).toContain('"decoder.conv_in.weight": expected [32, 8, 3, 3] from the config, the file has [32, 4, 3, 3]');
    expect(tf.memory().numTensors).toBe(before);
  });

  it("builds from a config with random or zero weights", () => {
    const config = JSON.parse(fs.readFileSync(path.join(TINY, "config.json"), "utf8"));
    const before = tf.memory().numTensors;
    const r = AutoencoderKL.fromConfig(config, { init: "random", seed: 1 });
    const z = AutoencoderKL.fromConfig(config, { init: "zeros" });
    const x = tf.randomUniform([1, 16, 16, 3], -1, 1, "float32", 2) as tf.Tensor4D;
    const yr = r.forward(x).sample;
    const yz = z.forward(x).sample;
    expect(yr.shape).toEqual([1, 16, 16, 3]);
    expect(tf.tidy(() => tf.all(tf.isFinite(yr)).dataSync()[0])).toBe(1);
    expect(tf.tidy(() => tf.max(tf.abs(yz)).dataSync()[0])).toBe(0);
    tf.dispose([x, yr, yz]);
    r.dispose();
    z.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it("registers DownEncoderBlock2D / UpDecoderBlock2D with the block factories; rejects other decoder options", () => {
    const common = { numLayers: 1, inChannels: 8, outChannels: 8, tembChannels: null, resnetEps: 1e-6, resnetActFn: "silu", resnetGroups: 4, resnetTimeScaleShift: "default" as const };
    expect(getDownBlock("DownEncoderBlock2D", { ...common, addDownsample: true, downsamplePadding: 0 })).toBeInstanceOf(DownEncoderBlock2D);
    expect(getUpBlock("UpDecoderBlock2D", { ...common, prevOutputChannel: 8, addUpsample: true })).toBeInstanceOf(UpDecoderBlock2D);
    expect(() => new AutoencoderKL({ down_block_types: ["AttnDownEncoderBlock2D"] })).toThrow(/Unsupported down block type "AttnDownEncoderBlock2D".*"DownEncoderBlock2D"/);
    expect(() => new AutoencoderKL({ block_out_channels: [8, 8], norm_num_groups: 4 })).toThrow(/down_block_types \(1\) and block_out_channels \(2\)/);
    expect(() => new AutoencoderKL({ act_fn: "tanhh" })).toThrow(/Unsupported activation function "tanhh"/);
  });
});
