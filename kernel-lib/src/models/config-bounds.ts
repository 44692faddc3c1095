// Bounds of the sizes in a model config (UNet2DModel, UNet2DConditionModel, AutoencoderKL, CLIPTextModel),
// checked when a model is built, before any layer exists: a typo such as layers_per_block 1e9 fails at once
// with the key, the value and the allowed range, instead of a heap OOM after minutes of building layers.
// The bounds sit far above every released model (SD 1.5 / 2.1 / XL, their VAEs, CLIP ViT-L/14, OpenCLIP ViT-bigG).
import { type Config } from "../io/config.js";
import { checkFinite, checkInteger } from "../utils/check-argument.js";

/** Integer keys (or arrays of them, one per block) and their [min, max]. */
export const MODEL_CONFIG_BOUNDS: Readonly<Record<string, readonly [number, number]>> = {
  // layer counts (SD: 2 per block; SDXL: up to 10 transformer layers; CLIP bigG: 32 layers)
  layers_per_block: [1, 32],
  transformer_layers_per_block: [1, 32],
  num_hidden_layers: [1, 128],
  // widths (SD: 320..1280 channels, 768..1280 text; bigG 1280 wide, 5120 in its MLP)
  in_channels: [1, 4096],
  out_channels: [1, 4096],
  latent_channels: [1, 4096],
  block_out_channels: [1, 16384],
  norm_num_groups: [1, 16384],
  attn_norm_num_groups: [1, 16384],
  cross_attention_dim: [1, 16384],
  attention_head_dim: [1, 16384],
  num_attention_heads: [1, 16384],
  hidden_size: [1, 16384],
  intermediate_size: [1, 65536],
  projection_dim: [1, 16384],
  encoder_hid_dim: [1, 16384],
  time_embedding_dim: [1, 16384],
  addition_time_embed_dim: [1, 16384],
  time_cond_proj_dim: [1, 16384],
  projection_class_embeddings_input_dim: [1, 65536],
  addition_embed_type_num_heads: [1, 16384],
  // spatial and vocabulary sizes
  sample_size: [1, 16384],
  conv_in_kernel: [1, 31],
  conv_out_kernel: [1, 31],
  downsample_padding: [0, 31],
  vocab_size: [1, 1_000_000],
  max_position_embeddings: [1, 65536],
  num_class_embeds: [1, 1_000_000],
};

/**
 * Checks the numbers of a resolved model config: each key of MODEL_CONFIG_BOUNDS the class knows (a
 * number, or each number of an array) an integer within its bounds; every other number the class
 * knows finite (norm_eps, scaling_factor, dropout, ...). Null values (an unused option) pass.
 */
export function checkModelConfigNumbers(className: string, config: Readonly<Config>, known: Readonly<Record<string, unknown>>): void {
  const where = `${className} config`;
  for (const key of Object.keys(known)) {
    const value = config[key];
    const values = Array.isArray(value) ? value : [value];
    values.forEach((v, i) => {
      if (typeof v !== "number") return;
      const name = Array.isArray(value) ? `"${key}"[${i}]` : `"${key}"`;
      const bounds = MODEL_CONFIG_BOUNDS[key];
      if (bounds) checkInteger(where, name, v, bounds[0], bounds[1]);
      else checkFinite(where, name, v);
    });
  }
}
