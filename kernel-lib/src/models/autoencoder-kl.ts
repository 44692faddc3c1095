// AutoencoderKL (diffusers models/autoencoders/autoencoder_kl.py): Stable Diffusion's VAE (Rombach et al. 2022),
// which moves images to and from the 8x smaller latent space the UNet denoises in.
//   encode: moments = quant_conv(encoder(x));  q(z | x) = N(mean, exp(logvar))   (DiagonalGaussianDistribution)
//   decode: x = decoder(post_quant_conv(z))
// No scaling inside: pipelines multiply the latents by scaling_factor (0.18215 for SD 1.x) after encode and
// divide by it before decode. Images are NHWC in [-1, 1]; latents NHWC [B, H/8, W/8, 4] for SD.
import * as tf from "@tensorflow/tfjs";
import type { Config, ConfigSpec } from "../io/config.js";
import type { Generator } from "../random/generator.js";
import { ModelMixin } from "./modeling-utils.js";
import { Conv2d } from "../nn/conv2d.js";
import { Decoder, DiagonalGaussianDistribution, Encoder, type Intermediates } from "./vae.js";
import { tiledDecode, tiledEncode } from "./vae-tiling.js";

/** AutoencoderKL's config.json (diffusers' `__init__` arguments, snake_case); `vae.config` has this type, frozen. */
export interface AutoencoderKLConfig extends Config {
  in_channels: number;
  out_channels: number;
  down_block_types: string[];
  up_block_types: string[];
  block_out_channels: number[];
  layers_per_block: number;
  act_fn: string;
  latent_channels: number;
  norm_num_groups: number;
  sample_size: number | [number, number];
  scaling_factor: number;
  latents_mean: number[] | null;
  latents_std: number[] | null;
  force_upcast: boolean | number;
}

export interface VaeCallOptions {
  /** Debug hook: copies of module outputs (NHWC) under diffusers' module paths; the caller disposes them. */
  intermediates?: Intermediates;
}

export interface AutoencoderKLForwardOptions {
  /** Decode a sample of the posterior instead of its mode (the mean). Default false. */
  samplePosterior?: boolean;
  /** Seeded generator(s) for the posterior sample (drawn as diffusers, in NCHW). */
  generator?: Generator | Generator[];
}

export class AutoencoderKL extends ModelMixin {
  static readonly className = "AutoencoderKL";

  /** The defaults of diffusers' AutoencoderKL.__init__ (v0.27.2); SD 1.5's config has no scaling_factor, so 0.18215 applies. */
  static readonly configSpec: ConfigSpec = {
    defaults: {
      in_channels: 3,
      out_channels: 3,
      down_block_types: ["DownEncoderBlock2D"],
      up_block_types: ["UpDecoderBlock2D"],
      block_out_channels: [64],
      layers_per_block: 1,
      act_fn: "silu",
      latent_channels: 4,
      norm_num_groups: 32,
      sample_size: 32,
      scaling_factor: 0.18215,
      latents_mean: null,
      latents_std: null,
      force_upcast: true,
    },
    types: {
      in_channels: "integer",
      out_channels: "integer",
      layers_per_block: "integer",
      latent_channels: "integer",
      norm_num_groups: "integer",
      sample_size: "integer|array",
      latents_mean: "array|null",
      latents_std: "array|null",
      force_upcast: "boolean|number",
    },
  };

  declare readonly config: Readonly<AutoencoderKLConfig>;
  readonly encoder: Encoder;
  readonly decoder: Decoder;
  readonly quant_conv: Conv2d;
  readonly post_quant_conv: Conv2d;
  /** VAE slicing (diffusers' use_slicing): encode / decode one batch item at a time. */
  useSlicing = false;
  /** VAE tiling (diffusers' use_tiling): inputs larger than a tile are encoded / decoded by tiles (models/vae-tiling.ts). */
  useTiling = false;
  /** Picture side of a tile (diffusers' tile_sample_min_size = config.sample_size). */
  tileSampleMinSize: number;
  /** Latent side of a tile (diffusers' tile_latent_min_size = sample_size / 2^(levels - 1)). */
  tileLatentMinSize: number;
  /** Share of a tile that overlaps its neighbour and is cross-faded (diffusers' tile_overlap_factor). */
  tileOverlapFactor = 0.25;

  constructor(config: Record<string, unknown> = {}) {
    super(AutoencoderKL.className, AutoencoderKL.configSpec, config);
    const c = this.config as unknown as AutoencoderKLConfig;
    const common = { blockOutChannels: c.block_out_channels, layersPerBlock: c.layers_per_block, normNumGroups: c.norm_num_groups, actFn: c.act_fn };
    this.encoder = this.addModule(
      "encoder",
      new Encoder({ ...common, inChannels: c.in_channels, outChannels: c.latent_channels, downBlockTypes: c.down_block_types, doubleZ: true }),
    );
    this.decoder = this.addModule("decoder", new Decoder({ ...common, inChannels: c.latent_channels, outChannels: c.out_channels, upBlockTypes: c.up_block_types }));
    this.quant_conv = this.addModule("quant_conv", new Conv2d(2 * c.latent_channels, 2 * c.latent_channels, 1));
    this.post_quant_conv = this.addModule("post_quant_conv", new Conv2d(c.latent_channels, c.latent_channels, 1));
    const sampleSize = Array.isArray(c.sample_size) ? c.sample_size[0] : c.sample_size;
    this.tileSampleMinSize = sampleSize;
    this.tileLatentMinSize = Math.trunc(sampleSize / 2 ** (c.block_out_channels.length - 1));
  }

  /** diffusers' enable_slicing: encode / decode a batch one item at a time (same numbers, less memory). */
  enableSlicing(): void {
    this.useSlicing = true;
  }

  disableSlicing(): void {
    this.useSlicing = false;
  }

  /** diffusers' enable_tiling: inputs larger than tileSampleMinSize pixels (tileLatentMinSize latents) go by tiles. */
  enableTiling(useTiling = true): void {
    this.useTiling = useTiling;
  }

  disableTiling(): void {
    this.useTiling = false;
  }

  private get cfg(): AutoencoderKLConfig {
    return this.config as unknown as AutoencoderKLConfig;
  }

  /** How many times the encoder halves H and W (2^n = the VAE scale factor, 8 for SD). */
  get numDownsamples(): number {
    return this.cfg.block_out_channels.length - 1;
  }

  /**
   * Encodes images x NHWC [B, H, W, in_channels] in [-1, 1] into the posterior q(z | x) over latents
   * [B, floor(H / 2^n), floor(W / 2^n), latent_channels] (n = numDownsamples). H and W need not be multiples
   * of 2^n: as in diffusers each downsampling pads one zero row/column at the bottom/right and floors.
   * The caller disposes latentDist (its mean, logvar, std, var); nothing else stays allocated.
   */
  encode(x: tf.Tensor4D, opts: VaeCallOptions = {}): { latentDist: DiagonalGaussianDistribution } {
    this.checkImage(x);
    const [b, height, width] = x.shape;
    const tiles = this.useTiling && (width > this.tileSampleMinSize || height > this.tileSampleMinSize);
    const slices = !tiles && this.useSlicing && b > 1;
    if ((tiles || slices) && opts.intermediates) this.noIntermediates("encode");
    const moments = tiles ? tiledEncode(this, x) : slices ? this.perItem(x, (xi) => this._encode(xi)) : this._encode(x, opts.intermediates);
    try {
      return { latentDist: new DiagonalGaussianDistribution(moments) };
    } finally {
      moments.dispose();
    }
  }

  /**
   * The moments quant_conv(encoder(x)) [B, h, w, 2 * latent_channels] of a batch (mean channels first, then
   * log-variance). Every batch item is independent, so slicing / tiling can call this per item or per tile.
   */
  _encode(x: tf.Tensor4D, intermediates?: Intermediates): tf.Tensor4D {
    return tf.tidy(() => {
      const h = this.encoder.forward(x, intermediates);
      if (intermediates) intermediates["encoder"] = tf.keep(h.clone());
      const moments = this.quant_conv.forward(h);
      if (intermediates) intermediates["quant_conv"] = tf.keep(moments.clone());
      return moments;
    });
  }

  /**
   * Decodes latents z NHWC [B, h, w, latent_channels] (already divided by scaling_factor) into images
   * { sample } [B, h * 2^n, w * 2^n, out_channels], roughly in [-1, 1]. Only the output stays allocated.
   */
  decode(z: tf.Tensor4D, opts: VaeCallOptions = {}): { sample: tf.Tensor4D } {
    const c = this.cfg;
    if (z.rank !== 4 || z.shape[3] !== c.latent_channels) {
      throw new Error(
        `AutoencoderKL.decode: z must be NHWC [batch, height, width, ${c.latent_channels}] (latent_channels ${c.latent_channels}), got [${z.shape}]` +
          nchwHint(z, c.latent_channels),
      );
    }
    const one = (zi: tf.Tensor4D, intermediates?: Intermediates): tf.Tensor4D => {
      const tiles = this.useTiling && (zi.shape[2] > this.tileLatentMinSize || zi.shape[1] > this.tileLatentMinSize);
      if (tiles && intermediates) this.noIntermediates("decode");
      return tiles ? tiledDecode(this, zi) : this._decode(zi, intermediates);
    };
    if (this.useSlicing && z.shape[0] > 1) {
      if (opts.intermediates) this.noIntermediates("decode");
      return { sample: this.perItem(z, (zi) => one(zi)) };
    }
    return { sample: one(z, opts.intermediates) };
  }

  /** VAE slicing: `run` on each batch item alone, outputs joined along the batch (torch: cat of x.split(1)). */
  private perItem(x: tf.Tensor4D, run: (xi: tf.Tensor4D) => tf.Tensor4D): tf.Tensor4D {
    const outs: tf.Tensor4D[] = [];
    try {
      for (let i = 0; i < x.shape[0]; i++) {
        const xi = tf.slice(x, [i, 0, 0, 0], [1, -1, -1, -1]);
        try {
          outs.push(run(xi));
        } finally {
          xi.dispose();
        }
      }
      return tf.concat(outs, 0);
    } finally {
      tf.dispose(outs);
    }
  }

  private noIntermediates(what: string): never {
    throw new Error(`AutoencoderKL.${what}: intermediates are recorded only by a one-pass ${what}; disable VAE slicing / tiling (vae.disableSlicing(), vae.disableTiling()) to record them`);
  }

  /** decoder(post_quant_conv(z)) of a batch; the per-item / per-tile unit of sliced or tiled decoding. */
  _decode(z: tf.Tensor4D, intermediates?: Intermediates): tf.Tensor4D {
    return tf.tidy(() => {
      const h = this.post_quant_conv.forward(z);
      if (intermediates) intermediates["post_quant_conv"] = tf.keep(h.clone());
      const dec = this.decoder.forward(h, intermediates);
      if (intermediates) intermediates["decoder"] = tf.keep(dec.clone());
      return dec;
    });
  }

  /** Reconstruction: decode(posterior.mode()), or decode(posterior.sample(generator)) when samplePosterior. */
  forward(sample: tf.Tensor4D, opts: AutoencoderKLForwardOptions = {}): { sample: tf.Tensor4D } {
    const posterior = this.encode(sample).latentDist;
    let z: tf.Tensor4D | null = null;
    try {
      z = opts.samplePosterior ? posterior.sample(opts.generator) : posterior.mode();
      return this.decode(z);
    } finally {
      posterior.dispose();
      z?.dispose();
    }
  }

  private checkImage(x: tf.Tensor4D): void {
    const c = this.cfg;
    if (x.rank !== 4 || x.shape[3] !== c.in_channels) {
      throw new Error(
        `AutoencoderKL.encode: x must be NHWC [batch, height, width, ${c.in_channels}] (in_channels ${c.in_channels}), got [${x.shape}]` +
          nchwHint(x, c.in_channels),
      );
    }
    // each downsampling pads to H + 1 and runs a 3x3 stride-2 conv (H -> floor(H / 2)): it needs H >= 2
    const n = this.numDownsamples;
    const min = 2 ** n;
    const [, height, width] = x.shape;
    if (height < min || width < min) {
      throw new Error(
        `AutoencoderKL.encode: the image is ${height}x${width} (HxW) but this VAE halves it ${n} times (3x3 stride-2 convs), ` +
          `which needs height and width of at least ${min} (a latent pixel is ${min}x${min} image pixels)`,
      );
    }
  }
}

function nchwHint(t: tf.Tensor, channels: number): string {
  return t.rank === 4 && t.shape[1] === channels && t.shape[3] !== channels
    ? "; this looks like NCHW (diffusers' layout): transpose it with tf.transpose(x, [0, 2, 3, 1])"
    : "";
}
