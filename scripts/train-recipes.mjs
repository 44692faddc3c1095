// The training recipes `npm run train -- <recipe>` knows: the model, the data and the hyper-parameters of each
// run, and `build`, which makes its trainer, a sampler for progress pictures and an export in diffusers' layout
// (ddpm-cat is also read by bench/run.mjs --only=training).
import { catFaces } from "../datasets/generators/cat-faces.mjs";
import { SD_RECIPES } from "./sd-tiny-recipes.mjs";

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
  ...SD_RECIPES,
};
