// A live view of a denoising loop: every `every` steps one output slot is redrawn with x_t beside
// the model's current guess of the clean picture x̂_0 (DDPM eq. 15: x̂_0 = (x_t − √(1−ᾱ_t) ε̂) / √ᾱ_t).
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { tensorToRgbBytes, type PixelRange } from "./image.js";
import { composeGrid, type Cell } from "./compose.js";
import { displayPng, isNotebook, newSlot } from "./notebook.js";

export interface PreviewOptions {
  every?: number;        // redraw every N steps (and on the last)
  range?: PixelRange;    // "-1,1" for pixel-space models (DDPM), "0,1" for decoded pictures
  minSize?: number;      // upscale small pictures to at least this many pixels
  total?: number;        // number of steps, so the last one is always drawn
}

export class LivePreview {
  private slot = isNotebook() ? newSlot() : null;
  readonly frames: { step: number; t: number }[] = [];
  constructor(private opts: PreviewOptions = {}) {}

  /** Draws [x_t | x̂_0] (first batch item of each) with a caption when the step is due. */
  async update(step: number, t: number, xt: tf.Tensor, predX0?: tf.Tensor): Promise<void> {
    const every = this.opts.every ?? 10;
    const last = this.opts.total !== undefined && step === this.opts.total - 1;
    if (step % every !== 0 && !last) return;
    this.frames.push({ step, t });
    if (!this.slot) return;
    const cells: Cell[] = [];
    for (const [p, label] of [[xt, "x_t"], [predX0, "predicted x_0"]] as const) {
      if (!p) continue;
      const one = tf.slice(p, [0, 0, 0, 0], [1, -1, -1, -1]);
      const { data, width, height } = tensorToRgbBytes(one, this.opts.range ?? "-1,1");
      one.dispose();
      const k = Math.max(1, Math.ceil((this.opts.minSize ?? 128) / height));
      const png = await sharp(Buffer.from(data), { raw: { width, height, channels: 3 } })
        .resize(width * k, height * k, { kernel: "nearest" }).png().toBuffer();
      cells.push({ png, width: width * k, height: height * k, label });
    }
    const caption = `step ${step + 1}${this.opts.total ? "/" + this.opts.total : ""}, t = ${t}`;
    displayPng(await composeGrid(cells, { caption }), this.slot, `[x_t and predicted x_0, ${caption}]`);
  }
}
