// The training helpers: L_simple on a fixed batch goes down in a few steps without leaking tensors, a resumed run
// equals an uninterrupted one bit for bit, and AdamW / EMA / learning-rate schedules follow torch's and diffusers'
// formulas.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { UNet2DModel } from "../src/models/unet-2d.js";
import { DDPMScheduler } from "../src/schedulers/scheduling-ddpm.js";
import { Generator } from "../src/random/generator.js";
import { Linear } from "../src/nn/linear.js";
import { DDPMTrainer } from "../src/training/ddpm-trainer.js";
import { listCheckpoints } from "../src/training/trainer.js";
import { ddpmLoss, sampleNoiseAndTimesteps } from "../src/training/ddpm-loss.js";
import { AdamW } from "../src/training/adamw.js";
import { EMAModel } from "../src/training/ema-model.js";
import { clipGradNorm } from "../src/training/clip-grad-norm.js";
import { lrFactor } from "../src/training/lr-schedule.js";

const TINY = {
  sample_size: 8, block_out_channels: [8, 16], layers_per_block: 1, norm_num_groups: 4, attention_head_dim: null,
  down_block_types: ["DownBlock2D", "AttnDownBlock2D"], up_block_types: ["AttnUpBlock2D", "UpBlock2D"],
};
const SCHED = { num_train_timesteps: 1000, beta_schedule: "linear", beta_start: 1e-4, beta_end: 0.02, clip_sample: true };
const B = 4;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "kit-train-test-"));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** A fixed batch: two-colour squares, NHWC in [-1, 1]. */
function fixedBatch(): Float32Array {
  const out = new Float32Array(B * 8 * 8 * 3);
  for (let b = 0; b < B; b++) for (let y = 0; y < 8; y++) for (let x = 0; x < 8; x++) for (let c = 0; c < 3; c++) {
    const inside = x >= 2 && x < 6 && y >= 2 && y < 6;
    out[((b * 8 + y) * 8 + x) * 3 + c] = inside ? ((b + c) % 3) / 1.5 - 0.6 : -0.8;
  }
  return out;
}

/** Step k gets a different (deterministic) batch, to show resuming asks for the right ones. */
const varyingBatch = (step: number) => fixedBatch().map((v, i) => Math.sin(v * 3 + step + i * 0.01));

function makeTrainer(data = (_s: number) => fixedBatch(), lr = 3e-3) {
  const unet = UNet2DModel.fromConfig(TINY, { seed: 1 });
  const scheduler = DDPMScheduler.fromConfig(SCHED);
  const trainer = new DDPMTrainer(unet, scheduler, { data: (s) => data(s), batchSize: B, lr, seed: 7, lrSchedule: "cosine", warmupSteps: 2, trainingSteps: 8 });
  return { unet, scheduler, trainer };
}

function weights(m: { namedParameters(): [string, { value: tf.Tensor }][] }): Map<string, Float32Array> {
  return new Map(m.namedParameters().map(([n, p]) => [n, p.value.dataSync() as Float32Array]));
}

describe("DDPMTrainer", () => {
  it("noise offset (diffusers' --noise_offset): eps + offset * randn(B, C, 1, 1), drawn after eps and before the timesteps", () => {
    const shape: [number, number, number, number] = [3, 4, 5, 2];
    const plain = sampleNoiseAndTimesteps(new Generator().manualSeed(9), shape, 1000);
    const shifted = sampleNoiseAndTimesteps(new Generator().manualSeed(9), shape, 1000, 0.25);
    // torch: noise = randn((B, C, H, W)); noise += 0.25 * randn((B, C, 1, 1)); timesteps = randint(...)
    const g = new Generator().manualSeed(9);
    g.randnArray([3, 2, 4, 5]);
    const offset = g.randnArray([3, 2]);
    const diff = tf.sub(shifted.noise, plain.noise).arraySync() as number[][][][];
    for (let b = 0; b < 3; b++) for (let y = 0; y < 4; y++) for (let x = 0; x < 5; x++) for (let c = 0; c < 2; c++) {
      expect(diff[b][y][x][c]).toBeCloseTo(0.25 * offset[b * 2 + c], 6);
    }
    const u = g.randArray([3]);
    expect(shifted.timesteps).toEqual(Array.from(u, (v) => Math.floor(v * 1000)));
    expect(() => sampleNoiseAndTimesteps(new Generator(), shape, 1000, -1)).toThrow(/noiseOffset must be a number >= 0/);
    tf.dispose([plain.noise, shifted.noise]);
  });

  it("5 steps on a fixed batch: finite losses, the loss on a fixed noise draw goes down, no tensor leaks", () => {
    const { unet, scheduler, trainer } = makeTrainer((_s) => fixedBatch(), 1e-2);
    const x0 = tf.tensor4d(fixedBatch(), [B, 8, 8, 3]);
    const draw = sampleNoiseAndTimesteps(new Generator().manualSeed(123), [B, 8, 8, 3], 1000);
    const evalLoss = () => tf.tidy(() => ddpmLoss(unet, scheduler, x0, draw).dataSync()[0]);
    const before = evalLoss();
    trainer.trainStep(); // the first step creates nothing persistent either, but warms up kernels
    const n0 = tf.memory().numTensors;
    for (let i = 0; i < 4; i++) {
      const e = trainer.trainStep();
      expect(Number.isFinite(e.loss)).toBe(true);
      expect(Number.isFinite(e.gradNorm)).toBe(true);
    }
    expect(tf.memory().numTensors).toBe(n0);
    const after = evalLoss();
    expect(after, `loss on a fixed draw: before ${before}, after 5 steps ${after}`).toBeLessThan(before * 0.9);
    expect(trainer.globalStep).toBe(5);
    expect(trainer.history.map((e) => e.step)).toEqual([1, 2, 3, 4, 5]);
    tf.dispose([x0, draw.noise]);
    trainer.dispose();
    unet.dispose();
  });

  it("a run resumed from a checkpoint gives exactly the weights, EMA and optimizer state of an uninterrupted run", () => {
    const straight = makeTrainer(varyingBatch);
    for (let i = 0; i < 4; i++) straight.trainer.trainStep();

    const first = makeTrainer(varyingBatch);
    first.trainer.trainStep();
    first.trainer.trainStep();
    const dir = path.join(tmp, "resume");
    first.trainer.saveCheckpoint(dir);
    first.trainer.dispose();
    first.unet.dispose();

    const resumed = makeTrainer(varyingBatch);
    resumed.trainer.loadCheckpoint(listCheckpoints(dir).at(-1)!.dir);
    expect(resumed.trainer.globalStep).toBe(2);
    resumed.trainer.trainStep();
    resumed.trainer.trainStep();

    const [a, b] = [weights(straight.unet), weights(resumed.unet)];
    for (const [name, v] of a) expect(Array.from(b.get(name)!), name).toEqual(Array.from(v));
    const [ea, eb] = [weights(straight.trainer.ema!.shadow), weights(resumed.trainer.ema!.shadow)];
    for (const [name, v] of ea) expect(Array.from(eb.get(name)!), `ema ${name}`).toEqual(Array.from(v));
    const [oa, ob] = [straight.trainer.optimizer.stateTensors(), resumed.trainer.optimizer.stateTensors()];
    for (const [name, v] of oa) expect(Array.from(ob.get(name)!.data), `optimizer ${name}`).toEqual(Array.from(v.data));
    expect(resumed.trainer.history.map((e) => e.loss)).toEqual(straight.trainer.history.map((e) => e.loss));
    for (const t of [straight, resumed]) { t.trainer.dispose(); t.unet.dispose(); }
  });

  it("keeps the newest checkpoints only and writes diffusers' folder names", () => {
    const { unet, trainer } = makeTrainer();
    const dir = path.join(tmp, "limit");
    for (let i = 0; i < 3; i++) {
      trainer.trainStep();
      trainer.saveCheckpoint(dir, { totalLimit: 2 });
    }
    expect(listCheckpoints(dir).map((c) => c.step)).toEqual([2, 3]);
    expect(fs.readdirSync(path.join(dir, "checkpoint-3")).sort()).toEqual(["optimizer.safetensors", "trainer_state.json", "unet", "unet_ema"]);
    expect(fs.existsSync(path.join(dir, "checkpoint-3", "unet", "diffusion_pytorch_model.safetensors"))).toBe(true);
    trainer.dispose();
    unet.dispose();
  });

  it("explains bad data and a diverging loss", () => {
    const { unet, trainer } = makeTrainer(() => new Float32Array(5));
    expect(() => trainer.trainStep()).toThrow(/returned 5 values for step 0; expected \[4,8,8,3\]/);
    trainer.dispose();
    const nan = makeTrainer(() => fixedBatch().fill(NaN));
    expect(() => nan.trainer.trainStep()).toThrow(/the loss is NaN at step 0/);
    nan.trainer.dispose();
    for (const u of [unet, nan.unet]) u.dispose();
  });
});

describe("AdamW, EMAModel, clipGradNorm, lrFactor", () => {
  it("AdamW owns exactly its two moment variables per parameter: creating and disposing one leaves no tensor", () => {
    const lin = new Linear(3, 2);
    const n0 = tf.memory().numTensors;
    const opt = new AdamW(lin.namedParameters());
    expect(tf.memory().numTensors).toBe(n0 + 2 * lin.namedParameters().length);
    opt.dispose();
    expect(tf.memory().numTensors).toBe(n0);
    lin.dispose();
  });

  it("AdamW follows torch.optim.AdamW step by step (float64 re-derivation)", () => {
    const lin = new Linear(3, 2, false);
    lin.initWeights("random", 1);
    const params = lin.namedParameters();
    const opt = new AdamW(params, { lr: 0.1, betas: [0.9, 0.99], eps: 1e-8, weightDecay: 0.05 });
    let p = Array.from(params[0][1].value.dataSync());
    const m = p.map(() => 0), v = p.map(() => 0);
    for (let t = 1; t <= 3; t++) {
      const g = p.map((_, i) => Math.sin(i + t));
      const grads = new Map([[params[0][0], tf.tensor(g, params[0][1].shape)]]);
      opt.step(grads);
      tf.dispose([...grads.values()]);
      p = p.map((pi, i) => {
        m[i] = 0.9 * m[i] + 0.1 * g[i];
        v[i] = 0.99 * v[i] + 0.01 * g[i] * g[i];
        const denom = Math.sqrt(v[i]) / Math.sqrt(1 - 0.99 ** t) + 1e-8;
        return pi * (1 - 0.1 * 0.05) - (0.1 / (1 - 0.9 ** t)) * (m[i] / denom);
      });
    }
    const got = Array.from(params[0][1].value.dataSync());
    got.forEach((x, i) => expect(Math.abs(x - p[i])).toBeLessThan(1e-6));
    opt.dispose();
    lin.dispose();
  });

  it("EMAModel.getDecay is diffusers' (warmup and plain), and step moves the shadow by 1 - decay", () => {
    const unet = UNet2DModel.fromConfig(TINY, { seed: 1 });
    const plain = new EMAModel(unet, { decay: 0.999 });
    expect(plain.getDecay(1)).toBe(0);
    expect(plain.getDecay(11)).toBeCloseTo(11 / 20, 12); // (1 + 10) / (10 + 10)
    expect(plain.getDecay(100000)).toBe(0.999);
    const warm = new EMAModel(unet, { useEmaWarmup: true, invGamma: 1, power: 0.75, decay: 0.9999 });
    expect(warm.getDecay(101)).toBeCloseTo(1 - 101 ** -0.75, 12);
    // shadow = old; model moved by +1 everywhere: after one update at decay d, shadow = old + (1 - d)
    const [name, p] = unet.namedParameters()[0];
    const old = p.value.dataSync()[0];
    plain.optimizationStep = 10; // the next step uses decay getDecay(11) = 0.55
    tf.tidy(() => { for (const [, q] of unet.namedParameters()) (q.value as tf.Variable).assign(tf.add(q.value, 1)); });
    plain.step(unet);
    const s = new Map(plain.shadow.namedParameters()).get(name)!.value.dataSync()[0];
    expect(s).toBeCloseTo(old + 0.45, 5);
    plain.dispose();
    warm.dispose();
    unet.dispose();
  });

  it("clipGradNorm scales by max_norm / (norm + 1e-6) only above max_norm", () => {
    const g = () => new Map([["a", tf.tensor([3, 0])], ["b", tf.tensor([4])]]); // norm 5
    const { grads, totalNorm } = clipGradNorm(g(), 1);
    expect(totalNorm).toBeCloseTo(5, 5);
    expect(Array.from(grads.get("a")!.dataSync())[0]).toBeCloseTo(3 / 5, 5);
    tf.dispose([...grads.values()]);
    const kept = clipGradNorm(g(), 10);
    expect(Array.from(kept.grads.get("b")!.dataSync())).toEqual([4]);
    tf.dispose([...kept.grads.values()]);
  });

  it("lrFactor: warmup, then constant / cosine / linear as diffusers' get_scheduler", () => {
    expect(lrFactor("constant_with_warmup", 5, { warmupSteps: 10 })).toBe(0.5);
    expect(lrFactor("constant_with_warmup", 50, { warmupSteps: 10 })).toBe(1);
    expect(lrFactor("cosine", 10, { warmupSteps: 10, trainingSteps: 110 })).toBe(1);
    expect(lrFactor("cosine", 60, { warmupSteps: 10, trainingSteps: 110 })).toBeCloseTo(0.5, 12);
    expect(lrFactor("linear", 85, { warmupSteps: 10, trainingSteps: 110 })).toBeCloseTo(0.25, 12);
    expect(() => lrFactor("cosine", 5)).toThrow(/needs trainingSteps/);
  });
});
