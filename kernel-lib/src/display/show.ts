// One call to look at pictures in a notebook: a tensor, a batch, or PNG bytes, with optional labels.
import * as tf from "@tensorflow/tfjs";
import { imageGrid, toImage, type PixelRange } from "./image.js";
import { displayHtml, displayPng, isNotebook } from "./notebook.js";

export interface ShowOptions { cols?: number; labels?: string[]; range?: PixelRange; minSize?: number; title?: string }

/** Shows one picture or a batch [B,H,W,3] / list as a grid (labels are written underneath). */
export async function showImages(images: tf.Tensor | tf.Tensor[] | Uint8Array | Uint8Array[], opts: ShowOptions = {}): Promise<Buffer | Uint8Array> {
  let png: Buffer | Uint8Array;
  if (images instanceof Uint8Array) png = images;
  else if (Array.isArray(images) && images.length > 0 && images[0] instanceof Uint8Array) {
    const list = images as Uint8Array[];
    if (isNotebook()) {
      const cells = list.map((p, i) => `<figure style="display:inline-block;margin:4px;text-align:center"><img src="data:image/png;base64,${Buffer.from(p).toString("base64")}"/>${opts.labels?.[i] ? `<figcaption><code>${opts.labels[i]}</code></figcaption>` : ""}</figure>`);
      displayHtml(`${opts.title ? `<b>${opts.title}</b><br/>` : ""}${cells.join("")}`);
    } else console.log(`[${list.length} images${opts.title ? ": " + opts.title : ""}]`);
    return list[0];
  } else {
    const batch = images instanceof tf.Tensor && images.rank === 3 ? [images] : (images as tf.Tensor | tf.Tensor[]);
    const grid = imageGrid(batch, { cols: opts.cols });
    const n = Array.isArray(images) ? images.length : (images as tf.Tensor).shape[0] ?? 1;
    const cellW = grid.shape[1];
    png = await toImage(grid, { range: opts.range, minSize: opts.minSize ?? Math.min(512, Math.max(128, cellW)) });
    grid.dispose();
    if (opts.labels && opts.labels.length) {
      if (isNotebook()) displayHtml(`${opts.title ? `<b>${opts.title}</b><br/>` : ""}<code>${opts.labels.join(" | ")}</code>`);
      else console.log(opts.labels.join(" | "));
    }
    if (!isNotebook()) console.log(`[image grid of ${n}${opts.title ? ": " + opts.title : ""}]`);
  }
  displayPng(png);
  return png;
}
