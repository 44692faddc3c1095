// The training recipes `npm run train -- <recipe>` knows: the model, the data and the hyper-parameters of each
// run, and `build`, which makes its trainer, a sampler for progress pictures and an export in diffusers' layout
// (ddpm-cat is also read by bench/run.mjs --only=training).
import * as fs from "node:fs";
import * as path from "node:path";
import { catFaces } from "../datasets/generators/cat-faces.mjs";
import { SD_RECIPES } from "./sd-tiny-recipes.mjs";
import { digitSet, thicken } from "../datasets/generators/digits.mjs";
import { streamFor } from "../datasets/generators/procedural.mjs";

/** A digit moved by (dx, dy) pixels (28x28, zeros shifted in). */
function shifted(grey, dx, dy) {
  const out = new Float32Array(784);
  for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) {
    const sx = x - dx, sy = y - dy;
    if (sx >= 0 && sx < 28 && sy >= 0 && sy < 28) out[y * 28 + x] = grey[sy * 28 + sx];
  }
  return out;
}

/** Held-out accuracy of a DigitClassifier on MNIST's held-out digits (datasets/generators/digits.mjs's split). */
export function heldOutAccuracy(K, tf, model) {
  const set = digitSet("held-out");
  let right = 0;
  for (let i = 0; i < set.count; i += 500) {
    const n = Math.min(500, set.count - i);
    const x = tf.tensor4d(set.images.subarray(i * 784, (i + n) * 784), [n, 28, 28, 1]);
    const { digits } = model.predict(x);
    x.dispose();
    digits.forEach((d, j) => { if (d === set.labels[i + j]) right++; });
  }
  return { accuracy: right / set.count, count: set.count };
}

export const RECIPES = {
  "ddpm-cat": {
    description: "a small UNet2DModel (google/ddpm-cat-256's block types, 32x32) on procedural cartoon cat faces",
    unet: {
      sample_size: 32, in_channels: 3, out_channels: 3, layers_per_block: 1, block_out_channels: [32, 64, 64],
      down_block_types: ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"], up_block_types: ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
      // as google/ddpm-cat-256
      attention_head_dim: null, downsample_padding: 0, flip_sin_to_cos: false, freq_shift: 1, norm_eps: 1e-6, norm_num_groups: 8,
      act_fn: "silu", center_input_sample: false, mid_block_scale_factor: 1, resnet_time_scale_shift: "default",
    },
    // google/ddpm-cat-256's scheduler_config.json
    scheduler: { beta_start: 0.0001, beta_end: 0.02, beta_schedule: "linear", clip_sample: true, num_train_timesteps: 1000, trained_betas: null, variance_type: "fixed_small" },
    train: { batchSize: 16, lr: 1e-3, warmupSteps: 50, lrSchedule: "constant_with_warmup", steps: 2000, seed: 0, checkpointEvery: 100, sampleEvery: 250 },
    // step k trains on pictures k*B ... k*B + B - 1 of the generator's endless stream (seed 0), mapped to [-1, 1]
    data: (seed) => (step, batchSize) => {
      const { data } = catFaces(batchSize, { seed, size: 32, start: step * batchSize });
      for (let i = 0; i < data.length; i++) data[i] = data[i] * 2 - 1;
      return data;
    },
    build: async (K, tf, o) => {
      const r = RECIPES["ddpm-cat"];
      const unet = K.UNet2DModel.fromConfig(r.unet, { init: "random", seed: o.seed + 1 });
      const scheduler = K.DDPMScheduler.fromConfig(r.scheduler);
      const trainer = new K.DDPMTrainer(unet, scheduler, {
        data: r.data(o.seed), batchSize: o.batchSize, seed: o.seed, lr: o.lr, warmupSteps: r.train.warmupSteps, lrSchedule: r.train.lrSchedule, trainingSteps: o.steps,
      });
      return {
        trainer, what: `UNet2DModel ${unet.numParameters()} parameters`,
        sample: async () => {
          const pipe = new K.DDPMPipeline({ unet: trainer.samplingUnet, scheduler: K.DDPMScheduler.fromConfig(scheduler.config) });
          pipe.setProgressBarConfig({ disable: true });
          const { images } = await pipe.generate({ batchSize: 16, numInferenceSteps: 50, generator: new K.Generator().manualSeed(0), outputType: "np" });
          const grid = K.imageGrid(images, { cols: 8, pad: 1 });
          const png = await K.toImage(grid, { minSize: 1024 });
          tf.dispose([images, grid]);
          return png;
        },
        // a DDPMPipeline folder with the EMA weights (as the script's final pipeline)
        export: (dir) => K.saveDDPMPipeline(dir, trainer.samplingUnet, scheduler),
      };
    },
  },
  "digit-classifier": {
    description: "the judge's digit classifier (a small CNN) on MNIST's training digits, shifted and thickened at random",
    classifier: { sample_size: 28, in_channels: 1, channels: [16, 32, 32], hidden_size: 64, num_classes: 10 },
    train: { batchSize: 64, lr: 2e-3, warmupSteps: 20, lrSchedule: "cosine", steps: 1500, seed: 0, checkpointEvery: 250, sampleEvery: 250 },
    // step k: 64 training digits drawn by Generator-independent streams (seed, k*B + i), each moved by up to 2 pixels
    // and, one time in three, one pixel thicker (as the generator's thick strokes), so the judge reads what the
    // text-to-image data draws
    data: (seed) => {
      const set = digitSet("train");
      return (step, batchSize) => {
        const images = new Float32Array(batchSize * 784), labels = new Int32Array(batchSize);
        for (let i = 0; i < batchSize; i++) {
          const r = streamFor(seed + 7, step * batchSize + i);
          const k = Math.floor(r() * set.count);
          let g = set.images.subarray(k * 784, (k + 1) * 784);
          if (r() < 1 / 3) g = thicken(g);
          images.set(shifted(g, Math.floor(r() * 5) - 2, Math.floor(r() * 5) - 2), i * 784);
          labels[i] = set.labels[k];
        }
        return { images, labels };
      };
    },
    build: async (K, tf, o) => {
      const r = RECIPES["digit-classifier"];
      const model = K.DigitClassifier.fromConfig(r.classifier, { init: "random", seed: o.seed + 1 });
      const trainer = new K.ClassifierTrainer(model, {
        data: r.data(o.seed), batchSize: o.batchSize, seed: o.seed, lr: o.lr, warmupSteps: r.train.warmupSteps, lrSchedule: r.train.lrSchedule,
        trainingSteps: o.steps, weightDecay: 1e-4,
      });
      const evals = [];
      return {
        trainer, what: `DigitClassifier ${model.numParameters()} parameters`,
        // the held-out accuracy so far, as a chart
        sample: async () => {
          evals.push({ step: trainer.globalStep, ...heldOutAccuracy(K, tf, model) });
          console.log(`held-out accuracy at step ${trainer.globalStep}: ${(100 * evals.at(-1).accuracy).toFixed(2)} % of ${evals.at(-1).count}`);
          return K.chartPng([{ x: evals.map((e) => e.step), y: evals.map((e) => 100 * e.accuracy), name: "held-out accuracy" }],
            { title: "digit classifier: held-out accuracy (%)", xaxis: { title: "step" }, yaxis: { title: "%" } });
        },
        export: (dir) => {
          model.savePretrained(dir);
          const e = heldOutAccuracy(K, tf, model);
          fs.writeFileSync(path.join(dir, "eval.json"), JSON.stringify({ heldOutAccuracy: e.accuracy, heldOutCount: e.count, steps: trainer.globalStep }, null, 2) + "\n");
        },
      };
    },
  },
  ...SD_RECIPES,
};
