// The recipes of the small text-to-image model (datasets/sd-tiny): its AutoencoderKL ("sd-tiny-vae"), then its
// UNet2DConditionModel + CLIPTextModel ("sd-tiny", on latents of the trained VAE) and the style LoRA
// ("sd-tiny-lora-stripes", on the trained pipeline). Each recipe builds a trainer, samples pictures during training
// and exports what it made in diffusers' layout. Read by scripts/train.mjs.
import * as fs from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { shapes } from "../datasets/generators/shapes.mjs";
import { digits } from "../datasets/generators/digits.mjs";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const SD15 = path.join(root, "..", "shared", "fixtures", "configs", "stable-diffusion-v1-5");
// the real CLIP tokenizer files (openai/clip-vit-large-patch14's vocab and merges, as in every SD 1.x repo)
const TOKENIZER_DIR = path.join(root, "datasets", "sd-tiny-random", "tokenizer");
export const SD_TINY_DIR = path.join(root, "datasets", "sd-tiny");
const PROMPTS = ["a red circle", "a blue square on a yellow background", "two green triangles", "a white circle on a black background",
  "three yellow squares on a purple background", "an orange triangle on a blue background", "two purple circles", "a black square on a white background"];

/** Pictures k*B ... k*B + B - 1 of the shapes stream (seed 0), in [-1, 1], with their captions. */
function shapesBatch(seed, step, batchSize, style) {
  const { data, captions } = shapes(batchSize, { seed, size: 32, start: step * batchSize, style });
  for (let i = 0; i < data.length; i++) data[i] = data[i] * 2 - 1;
  return { pixels: data, captions };
}

/** Pictures k*B ... k*B + B - 1 of the coloured-digits stream's training split (seed), in [-1, 1], with their captions. */
function digitsBatch(seed, step, batchSize, style = "plain") {
  const { data, captions } = digits(batchSize, { seed, size: 32, start: step * batchSize, split: "train", style });
  for (let i = 0; i < data.length; i++) data[i] = data[i] * 2 - 1;
  return { pixels: data, captions };
}
export const SD_DIGITS_DIR = path.join(root, "datasets", "sd-digits");
const DIGIT_PROMPTS = ["a red 7", "a blue 3 on a yellow background", "a thick green 0", "a white 5 on a black background",
  "a yellow 1 on a purple background", "an orange 8 on a blue background", "a thick purple 2", "a black 9 on a white background"];

const VAE_CONFIG = {
  in_channels: 3, out_channels: 3, latent_channels: 4, sample_size: 32, layers_per_block: 1, act_fn: "silu", norm_num_groups: 16,
  block_out_channels: [32, 64], down_block_types: Array(2).fill("DownEncoderBlock2D"), up_block_types: Array(2).fill("UpDecoderBlock2D"),
  scaling_factor: 1, force_upcast: true,
};
// SD 1.5's UNet config, small: three levels on 16x16 latents (cross-attention at 8x8 and 4x4), 32-wide text context
const UNET_CONFIG = {
  sample_size: 16, in_channels: 4, out_channels: 4, layers_per_block: 1, block_out_channels: [32, 64, 64],
  down_block_types: ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"], up_block_types: ["CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
  cross_attention_dim: 32, attention_head_dim: 4, norm_num_groups: 16, act_fn: "silu", center_input_sample: false,
  downsample_padding: 1, flip_sin_to_cos: true, freq_shift: 0, mid_block_scale_factor: 1, norm_eps: 1e-5,
};
// SD 1.5's text_encoder config (openai/clip-vit-large-patch14's text tower), small: 32 wide, 2 layers
const TEXT_ENCODER_CONFIG = () => ({
  ...JSON.parse(fs.readFileSync(path.join(SD15, "text_encoder", "config.json"), "utf8")),
  _name_or_path: undefined, hidden_size: 32, intermediate_size: 128, num_attention_heads: 4, num_hidden_layers: 2, projection_dim: 32,
});
const SD15_SCHEDULER = () => JSON.parse(fs.readFileSync(path.join(SD15, "scheduler", "scheduler_config.json"), "utf8"));

async function loadTokenizer(K) {
  return K.CLIPTokenizer.fromPretrained(TOKENIZER_DIR);
}

/** Reconstructions: the top row the pictures, the bottom row the VAE's decoding of their latents. */
async function reconstructionGrid(K, tf, vae, batch = (seed) => shapesBatch(1, seed, 8, seed ? "stripes" : "plain")) {
  const { pixels } = batch(0);
  const { pixels: striped } = batch(1);
  const x = tf.tensor4d([...pixels, ...striped], [16, 32, 32, 3]);
  const rec = tf.tidy(() => vae.decode(vae.encode(x).latentDist.mean).sample);
  const grid = K.imageGrid(tf.tidy(() => tf.clipByValue(tf.div(tf.add(tf.concat([x.slice(0, 8), rec.slice(0, 8), x.slice(8, 8), rec.slice(8, 8)]), 1), 2), 0, 1)), { cols: 8, pad: 1 });
  const png = await K.toImage(grid, { minSize: 1024 });
  tf.dispose([x, rec, grid]);
  return png;
}

/** One picture per prompt at guidance 1 and 7.5 (rows), 25 DDIM steps. */
async function promptGrid(K, tf, pipe, prompts = PROMPTS) {
  pipe.setProgressBarConfig({ disable: true });
  const rows = [];
  for (const g of [1, 7.5]) {
    const { images } = await pipe.generate({ prompt: prompts, numInferenceSteps: 25, guidanceScale: g, generator: new K.Generator().manualSeed(0), outputType: "np" });
    rows.push(images);
  }
  const all = tf.concat(rows);
  const grid = K.imageGrid(all, { cols: prompts.length, pad: 1 });
  const png = await K.toImage(grid, { minSize: 1024 });
  tf.dispose([...rows, all, grid]);
  return png;
}

function writePipelineIndex(dir) {
  const index = JSON.parse(fs.readFileSync(path.join(SD15, "model_index.json"), "utf8"));
  Object.assign(index, { feature_extractor: [null, null], safety_checker: [null, null], requires_safety_checker: false });
  if ("image_encoder" in index) index.image_encoder = [null, null];
  fs.writeFileSync(path.join(dir, "model_index.json"), JSON.stringify(index, null, 2) + "\n");
  fs.mkdirSync(path.join(dir, "tokenizer"), { recursive: true });
  for (const f of ["vocab.json", "merges.txt"]) fs.copyFileSync(path.join(TOKENIZER_DIR, f), path.join(dir, "tokenizer", f));
  for (const f of ["tokenizer_config.json", "special_tokens_map.json"]) fs.copyFileSync(path.join(SD15, "tokenizer", f), path.join(dir, "tokenizer", f));
  fs.mkdirSync(path.join(dir, "scheduler"), { recursive: true });
  fs.writeFileSync(path.join(dir, "scheduler", "scheduler_config.json"), JSON.stringify(SD15_SCHEDULER(), null, 2) + "\n");
}

/** Saves a trained VAE to dir/vae with scaling_factor = 1 / std of the latents of `pixels` (256 pictures in [-1, 1]; LDM sec. 4.3.2; SD 1.x: 0.18215). */
function exportVae(K, tf, vae, dir, pixels) {
  const x = tf.tensor4d(pixels, [256, 32, 32, 3]);
  const s = K.latentScalingFactor(vae, x);
  x.dispose();
  vae.registerToConfig({ scaling_factor: Number(s.toPrecision(5)) }); // the config is frozen: diffusers' register_to_config
  vae.savePretrained(path.join(dir, "vae"));
  console.log(`vae/ saved with scaling_factor ${vae.config.scaling_factor}`);
}

/**
 * The UNet2DConditionModel + CLIPTextModel recipe of a small SD folder `dir` on `batch` (pictures in [-1, 1] and
 * their captions), with the VAE trained by `vaeRecipe` (in dir/vae, or --vae-from).
 * Noise offset 0.3 (diffusers' --noise_offset): without it the model copies its starting noise's mean colour and
 * ignores the background words (sampleNoiseAndTimesteps explains why; sd-tiny's card shows the measurements).
 */
function textToImageRecipe({ name, description, dir, vaeRecipe, batch, prompts }) {
  return {
    description,
    train: { batchSize: 32, lr: 1e-3, warmupSteps: 100, lrSchedule: "cosine", steps: 3800, noiseOffset: 0.3, seed: 0, checkpointEvery: 100, sampleEvery: 250 },
    build: async (K, tf, o) => {
      const vaeDir = path.join(o.vaeFrom ?? dir, "vae");
      if (!fs.existsSync(vaeDir)) throw new Error(`${name}: no trained VAE in ${vaeDir}; run \`npm run train -- ${vaeRecipe} --export ${path.relative(root, dir)}\` first`);
      const vae = await K.AutoencoderKL.fromPretrained(vaeDir);
      const unet = K.UNet2DConditionModel.fromConfig(UNET_CONFIG, { init: "random", seed: o.seed + 1 });
      const textEncoder = K.CLIPTextModel.fromConfig(TEXT_ENCODER_CONFIG(), { init: "random", seed: o.seed + 2 });
      const tokenizer = await loadTokenizer(K);
      const noiseScheduler = K.DDPMScheduler.fromConfig(SD15_SCHEDULER());
      const trainer = new K.TextToImageTrainer({ unet, vae, textEncoder, tokenizer, noiseScheduler }, {
        batchSize: o.batchSize, lr: o.lr, warmupSteps: o.train.warmupSteps, lrSchedule: o.train.lrSchedule, trainingSteps: o.steps, seed: o.seed,
        proportionEmptyPrompts: 0.1, noiseOffset: o.noiseOffset, data: (step, b) => batch(o.seed, step, b),
      });
      const pipeline = () => new K.StableDiffusionPipeline({ vae, textEncoder, tokenizer, unet, scheduler: K.DDIMScheduler.fromConfig(SD15_SCHEDULER()) });
      return {
        trainer, what: `UNet2DConditionModel ${unet.numParameters()} + CLIPTextModel ${textEncoder.numParameters()} parameters`,
        sample: () => promptGrid(K, tf, pipeline(), prompts),
        export: (out) => {
          fs.mkdirSync(out, { recursive: true });
          writePipelineIndex(out);
          unet.savePretrained(path.join(out, "unet"));
          textEncoder.savePretrained(path.join(out, "text_encoder"));
          if (path.resolve(out) !== path.resolve(path.dirname(vaeDir))) vae.savePretrained(path.join(out, "vae"));
        },
      };
    },
  };
}

export const SD_RECIPES = {
  // issue 16: the offline model of real handwriting (datasets/sd-digits), first its VAE, on the coloured-digits data
  "sd-digits-vae": {
    description: "the AutoencoderKL of datasets/sd-digits (32x32 pictures -> 16x16x4 latents) on coloured MNIST digits (training split)",
    train: { batchSize: 16, lr: 2e-3, warmupSteps: 50, lrSchedule: "cosine", steps: 800, seed: 0, checkpointEvery: 100, sampleEvery: 100 },
    build: async (K, tf, o) => {
      const vae = K.AutoencoderKL.fromConfig(VAE_CONFIG, { init: "random", seed: o.seed + 1 });
      const trainer = new K.AutoencoderKLTrainer(vae, {
        batchSize: o.batchSize, lr: o.lr, warmupSteps: o.train.warmupSteps, lrSchedule: o.train.lrSchedule, trainingSteps: o.steps, seed: o.seed,
        data: (step, b) => digitsBatch(o.seed, step, b).pixels,
      });
      return {
        trainer, what: `AutoencoderKL ${vae.numParameters()} parameters`,
        // held-out writers' pictures: what the VAE never saw
        sample: () => reconstructionGrid(K, tf, vae, (i) => {
          const { data } = digits(8, { seed: 1, size: 32, start: 8 * i, split: "held-out" });
          return { pixels: data.map((v) => v * 2 - 1) };
        }),
        export: (dir) => exportVae(K, tf, vae, dir, digitsBatch(2, 0, 256).pixels),
      };
    },
  },
  "sd-tiny-vae": {
    description: "the AutoencoderKL of datasets/sd-tiny (32x32 pictures -> 16x16x4 latents) on plain and striped shapes",
    train: { batchSize: 16, lr: 2e-3, warmupSteps: 50, lrSchedule: "cosine", steps: 550, seed: 0, checkpointEvery: 100, sampleEvery: 100 },
    build: async (K, tf, o) => {
      const vae = K.AutoencoderKL.fromConfig(VAE_CONFIG, { init: "random", seed: o.seed + 1 });
      const trainer = new K.AutoencoderKLTrainer(vae, {
        batchSize: o.batchSize, lr: o.lr, warmupSteps: o.train.warmupSteps, lrSchedule: o.train.lrSchedule, trainingSteps: o.steps, seed: o.seed,
        // half plain, half striped pictures (the LoRA's style must be reconstructible too)
        data: (step, b) => {
          const h = Math.floor(b / 2);
          return new Float32Array([...shapesBatch(o.seed, step, h, "plain").pixels, ...shapesBatch(o.seed + 1, step, b - h, "stripes").pixels]);
        },
      });
      return {
        trainer, what: `AutoencoderKL ${vae.numParameters()} parameters`,
        sample: () => reconstructionGrid(K, tf, vae),
        export: (dir) => exportVae(K, tf, vae, dir, shapesBatch(2, 0, 256, "plain").pixels),
      };
    },
  },
  "sd-tiny": textToImageRecipe({
    name: "sd-tiny", vaeRecipe: "sd-tiny-vae", dir: SD_TINY_DIR, prompts: PROMPTS, batch: (seed, step, b) => shapesBatch(seed, step, b, "plain"),
    description: "the UNet2DConditionModel + CLIPTextModel of datasets/sd-tiny on captioned shapes (10% empty captions), with its trained VAE",
  }),
  // issue 16: the same model on the coloured-digits training split (its VAE from sd-digits-vae)
  "sd-digits": textToImageRecipe({
    name: "sd-digits", vaeRecipe: "sd-digits-vae", dir: SD_DIGITS_DIR, prompts: DIGIT_PROMPTS, batch: digitsBatch,
    description: "the UNet2DConditionModel + CLIPTextModel of datasets/sd-digits on coloured MNIST digits (10% empty captions), with its trained VAE",
  }),
};

// The style LoRA: rank-4 adapters on every attention projection (train_text_to_image_lora.py's targets) and every
// ResNet conv of the trained UNet, trained on the same captions with striped pictures, so that loading it stripes shapes.
/**
 * A rank-4 style LoRA on a trained small SD folder `dir`: adapters on every attention projection
 * (train_text_to_image_lora.py's targets) and every ResNet conv (kohya's "LoCon": a style drawn at the 16x16 latents'
 * level, where this UNet has no attention), trained on `batch` (the same captions, pictures in the style).
 */
function styleLoraRecipe({ name, description, dir, modelRecipes, adapter, batch, prompts }) {
  return {
    description,
    train: { batchSize: 32, lr: 5e-3, warmupSteps: 20, lrSchedule: "constant_with_warmup", steps: 800, noiseOffset: 0.3, seed: 0, checkpointEvery: 50, sampleEvery: 100 },
    build: async (K, tf, o) => {
      if (!fs.existsSync(path.join(dir, "unet"))) throw new Error(`${name}: no trained model in ${dir}; train ${modelRecipes} first`);
      const pipe = await K.StableDiffusionPipeline.fromPretrained(dir);
      const { unet, vae, textEncoder, tokenizer } = pipe;
      pipe.scheduler = K.DDIMScheduler.fromConfig(pipe.scheduler.config);
      const params = K.addLoraAdapter(unet, adapter, { rank: 4, alpha: 4, targetModules: [...K.UNET_LORA_TARGET_MODULES, "conv1", "conv2"], seed: o.seed });
      const noiseScheduler = K.DDPMScheduler.fromConfig(SD15_SCHEDULER());
      const trainer = new K.TextToImageTrainer({ unet, vae, textEncoder, tokenizer, noiseScheduler }, {
        batchSize: o.batchSize, lr: o.lr, warmupSteps: o.train.warmupSteps, lrSchedule: o.train.lrSchedule, trainingSteps: o.steps, seed: o.seed,
        proportionEmptyPrompts: 0, noiseOffset: o.noiseOffset, trainable: K.parameterWeights(params), data: (step, b) => batch(o.seed + 7, step, b),
      });
      return {
        trainer, what: `LoRA rank 4 on ${params.length / 2} modules, ${params.filter(([n]) => /\.conv[12]\.lora_A\./.test(n)).length} of them ResNet convs (${params.reduce((n, [, p]) => n + p.numel, 0)} parameters; UNet, VAE, CLIP frozen)`,
        sample: () => promptGrid(K, tf, pipe, prompts),
        export: (out) => {
          fs.mkdirSync(out, { recursive: true });
          const a = K.saveLoraWeights(path.join(out, "pytorch_lora_weights.safetensors"), { unet }, { adapterName: adapter, format: "diffusers" });
          const b = K.saveLoraWeights(path.join(out, `${adapter}.kohya.safetensors`), { unet }, { adapterName: adapter, format: "kohya" });
          console.log(`saved ${a} and ${b}`);
        },
      };
    },
  };
}

SD_RECIPES["sd-tiny-lora-stripes"] = styleLoraRecipe({
  name: "sd-tiny-lora-stripes", dir: SD_TINY_DIR, modelRecipes: "sd-tiny-vae and sd-tiny", adapter: "stripes", prompts: PROMPTS,
  batch: (seed, step, b) => shapesBatch(seed, step, b, "stripes"),
  description: "a rank-4 LoRA on datasets/sd-tiny's UNet attention projections and ResNet convs that draws the shapes striped (both LoRA file formats)",
});

// issue 16: the digits model's style LoRA: the same captions (never "thick"), every picture drawn with thick strokes
SD_RECIPES["sd-digits-lora-thick"] = styleLoraRecipe({
  name: "sd-digits-lora-thick", dir: SD_DIGITS_DIR, modelRecipes: "sd-digits-vae and sd-digits", adapter: "thick", prompts: DIGIT_PROMPTS,
  batch: (seed, step, b) => digitsBatch(seed, step, b, "thick"),
  description: "a rank-4 LoRA on datasets/sd-digits' UNet that draws every digit with thick strokes (both LoRA file formats)",
});
