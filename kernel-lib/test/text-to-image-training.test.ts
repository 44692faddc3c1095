// The first-stage and text-to-image trainers (training/autoencoder-kl-trainer.ts, text-to-image-trainer.ts) on
// tiny random models: the loss on a fixed draw goes down without leaking tensors, a resumed run equals an
// uninterrupted one bit for bit (UNet, text encoder, optimizer), empty-caption dropout is what it says, and bad
// input is explained.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { AutoencoderKL } from "../src/models/autoencoder-kl.js";
import { UNet2DConditionModel } from "../src/models/unet-2d-condition.js";
import { CLIPTextModel } from "../src/models/clip-text-model.js";
import { CLIPTokenizer } from "../src/tokenizers/clip.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { Generator } from "../src/random/generator.js";
import { AutoencoderKLTrainer, autoencoderKLLoss, latentScalingFactor } from "../src/training/autoencoder-kl-trainer.js";
import { TextToImageTrainer, type CaptionedBatchSource } from "../src/training/text-to-image-trainer.js";
import { listCheckpoints } from "../src/training/trainer.js";

const root = path.resolve(__dirname, "../..");
const VAE = {
  sample_size: 16, block_out_channels: [8, 16], layers_per_block: 1, norm_num_groups: 4, latent_channels: 4,
  down_block_types: ["DownEncoderBlock2D", "DownEncoderBlock2D"], up_block_types: ["UpDecoderBlock2D", "UpDecoderBlock2D"], scaling_factor: 0.5,
};
const UNET = {
  sample_size: 8, block_out_channels: [8, 16], layers_per_block: 1, norm_num_groups: 4, cross_attention_dim: 16, attention_head_dim: 2,
  down_block_types: ["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types: ["UpBlock2D", "CrossAttnUpBlock2D"],
};
const TEXT = { hidden_size: 16, intermediate_size: 32, num_attention_heads: 2, num_hidden_layers: 1, projection_dim: 16, bos_token_id: 0, eos_token_id: 2 };
const SCHED = { num_train_timesteps: 1000, beta_schedule: "scaled_linear", beta_start: 0.00085, beta_end: 0.012 };
const B = 3;
const CAPTIONS = ["a red circle", "two blue squares on a yellow background", "a green triangle"];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kit-t2i-test-"));
let tokenizer: CLIPTokenizer;
beforeAll(async () => { tokenizer = await CLIPTokenizer.fromPretrained(path.join(root, "datasets/sd-tiny-random/tokenizer")); });
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Picture k: a square whose colour and place depend on k, NHWC in [-1, 1]. */
function pictures(step: number, n = B): Float32Array {
  const out = new Float32Array(n * 16 * 16 * 3).fill(-0.7);
  for (let b = 0; b < n; b++) {
    const o = (step + b) % 6;
    for (let y = 2 + o; y < 8 + o; y++) for (let x = 3; x < 10; x++) for (let c = 0; c < 3; c++) out[((b * 16 + y) * 16 + x) * 3 + c] = ((b + c + step) % 3) / 1.5 - 0.4;
  }
  return out;
}
const data: CaptionedBatchSource = (step, n) => ({ pixels: pictures(step, n), captions: CAPTIONS.slice(0, n) });

function makeT2I(opts: { proportionEmptyPrompts?: number; source?: CaptionedBatchSource } = {}) {
  const vae = AutoencoderKL.fromConfig(VAE, { seed: 1 });
  const unet = UNet2DConditionModel.fromConfig(UNET, { seed: 2 });
  const textEncoder = CLIPTextModel.fromConfig(TEXT, { seed: 3 });
  const noiseScheduler = DDPMScheduler.fromConfig(SCHED);
  const trainer = new TextToImageTrainer({ unet, vae, textEncoder, tokenizer, noiseScheduler }, {
    data: opts.source ?? data, batchSize: B, lr: 3e-3, seed: 5, proportionEmptyPrompts: opts.proportionEmptyPrompts ?? 0.1, warmupSteps: 1,
  });
  const dispose = () => { trainer.dispose(); for (const m of [vae, unet, textEncoder]) m.dispose(); };
  return { vae, unet, textEncoder, trainer, dispose };
}

const weights = (m: { namedParameters(): [string, { value: tf.Tensor }][] }) => new Map(m.namedParameters().map(([n, p]) => [n, Array.from(p.value.dataSync())]));

describe("AutoencoderKLTrainer", () => {
  it("lowers the reconstruction loss on a fixed batch without leaking tensors; scaling_factor gives unit-std latents", () => {
    const vae = AutoencoderKL.fromConfig(VAE, { seed: 1 });
    const trainer = new AutoencoderKLTrainer(vae, { data: (s) => pictures(0), batchSize: B, lr: 3e-3, seed: 1 });
    const x = tf.tensor4d(pictures(0), [B, 16, 16, 3]);
    const evalLoss = () => tf.tidy(() => autoencoderKLLoss(vae, x, new Generator().manualSeed(9)).dataSync()[0]);
    const before = evalLoss();
    trainer.trainStep();
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) expect(Number.isFinite(trainer.trainStep().loss)).toBe(true);
    expect(tf.memory().numTensors).toBe(n0);
    expect(evalLoss()).toBeLessThan(before * 0.9);
    const s = latentScalingFactor(vae, x);
    const std = tf.tidy(() => { const d = vae.encode(x).latentDist; const v = tf.moments(tf.mul(d.mean, s)).variance.sqrt().dataSync()[0]; d.dispose(); return v; });
    expect(std).toBeCloseTo(1, 4);
    tf.dispose(x);
    trainer.dispose();
    vae.dispose();
  });

  it("explains a batch of the wrong size", () => {
    const vae = AutoencoderKL.fromConfig(VAE, { seed: 1 });
    const trainer = new AutoencoderKLTrainer(vae, { data: () => new Float32Array(7), batchSize: B });
    expect(() => trainer.trainStep()).toThrow(/AutoencoderKLTrainer: the data callback returned 7 values for step 0; expected \[3,16,16,3\]/);
    trainer.dispose();
    vae.dispose();
  });
});

describe("TextToImageTrainer", () => {
  it("trains the UNet and the text encoder: the loss on a fixed draw goes down, the VAE does not move, no leaks", () => {
    const t = makeT2I();
    const vaeBefore = weights(t.vae);
    const teBefore = weights(t.textEncoder);
    const x = tf.tensor4d(pictures(0), [B, 16, 16, 3]);
    const ids = t.trainer.tokenize(CAPTIONS);
    const noise = tf.randomNormal([B, 8, 8, 4], 0, 1, "float32", 11) as tf.Tensor4D;
    const evalLoss = () => tf.tidy(() => {
      const d = t.vae.encode(x).latentDist;
      const z = tf.mul(d.mean, 0.5) as tf.Tensor4D;
      d.dispose();
      const ts = [100, 500, 900];
      const pred = t.unet.forward(DDPMScheduler.fromConfig(SCHED).addNoise(z, noise, ts) as tf.Tensor4D, ts, t.textEncoder.forward(ids).lastHiddenState).sample;
      return tf.mean(tf.square(tf.sub(pred, noise))).dataSync()[0];
    });
    const before = evalLoss();
    t.trainer.trainStep();
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 6; i++) expect(Number.isFinite(t.trainer.trainStep().loss)).toBe(true);
    expect(tf.memory().numTensors).toBe(n0);
    expect(evalLoss()).toBeLessThan(before);
    for (const [n, v] of weights(t.vae)) expect(v, `vae ${n}`).toEqual(vaeBefore.get(n));
    // the token rows the captions use moved; a row no caption uses did not (its gradient is zero; AdamW decay only)
    const table = (m: CLIPTextModel) => m.text_model.embeddings.token_embedding.weight.value;
    const used = ids[0][1];
    const row = (tbl: Map<string, number[]>, r: number) => tbl.get("text_model.embeddings.token_embedding.weight")!.slice(r * 16, r * 16 + 16);
    const after = weights(t.textEncoder);
    expect(row(after, used)).not.toEqual(row(teBefore, used));
    const unused = 40000;
    row(after, unused).forEach((v, i) => expect(v).toBeCloseTo(row(teBefore, unused)[i] * (1 - 3e-3 * 1e-6) ** 7, 6));
    expect(table(t.textEncoder).shape).toEqual([49408, 16]);
    tf.dispose([x, noise]);
    t.dispose();
  });

  it("with proportionEmptyPrompts 1 trains exactly as on empty captions (the unconditional model of CFG)", () => {
    const dropped = makeT2I({ proportionEmptyPrompts: 1 });
    const empty = makeT2I({ proportionEmptyPrompts: 0, source: (s, n) => ({ pixels: pictures(s, n), captions: Array(n).fill("") }) });
    const kept = makeT2I({ proportionEmptyPrompts: 0 });
    for (let i = 0; i < 2; i++) for (const t of [dropped, empty, kept]) t.trainer.trainStep();
    expect(dropped.trainer.history.map((e) => e.loss)).toEqual(empty.trainer.history.map((e) => e.loss));
    expect(kept.trainer.history[1].loss).not.toEqual(empty.trainer.history[1].loss);
    for (const t of [dropped, empty, kept]) t.dispose();
  });

  it("a run resumed from a checkpoint equals an uninterrupted one (UNet, text encoder, optimizer, losses)", () => {
    const straight = makeT2I();
    for (let i = 0; i < 3; i++) straight.trainer.trainStep();
    const first = makeT2I();
    first.trainer.trainStep();
    first.trainer.trainStep();
    const dir = path.join(tmp, "resume");
    first.trainer.saveCheckpoint(dir);
    first.dispose();
    expect(fs.readdirSync(listCheckpoints(dir).at(-1)!.dir).sort()).toEqual(["optimizer.safetensors", "text_encoder", "trainer_state.json", "unet"]);
    const resumed = makeT2I();
    resumed.trainer.loadCheckpoint(listCheckpoints(dir).at(-1)!.dir);
    resumed.trainer.trainStep();
    for (const m of ["unet", "textEncoder"] as const) {
      const [a, b] = [weights(straight[m]), weights(resumed[m])];
      for (const [n, v] of a) expect(b.get(n), `${m} ${n}`).toEqual(v);
    }
    const [oa, ob] = [straight.trainer.optimizer.stateTensors(), resumed.trainer.optimizer.stateTensors()];
    for (const [n, v] of oa) expect(Array.from(ob.get(n)!.data), `optimizer ${n}`).toEqual(Array.from(v.data));
    expect(resumed.trainer.history.map((e) => e.loss)).toEqual(straight.trainer.history.map((e) => e.loss));
    straight.dispose();
    resumed.dispose();
  });

  it("explains bad captions and options", () => {
    const t = makeT2I({ source: (s, n) => ({ pixels: pictures(s, n), captions: ["only one"] }) });
    expect(() => t.trainer.trainStep()).toThrow(/returned 1 captions for step 0; expected 3/);
    t.dispose();
    expect(() => makeT2I({ proportionEmptyPrompts: 1.5 })).toThrow(/proportionEmptyPrompts must be in \[0, 1\], got 1.5/);
  });
});
