// One call to look at pictures in a notebook: a tensor, a batch, a list, or PNG bytes, with labels
// and a title drawn into the picture itself.
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";
import { tensorToRgbBytes, type PixelRange } from "./image.js";
import { composeGrid, type Cell } from "./compose.js";
import { displayPng, isNotebook } from "./notebook.js";

export interface ShowOptions { cols?: number; labels?: string[]; range?: PixelRange; minSize?: number; title?: string }

async function cellOf(p: tf.Tensor | Uint8Array, range: PixelRange | undefined, minSize: number): Promise<Cell> {
  if (p instanceof Uint8Array) {
    const m = await sharp(p).metadata();
    return { png: Buffer.from(p), width: m.width ?? 0, height: m.height ?? 0 };
  }
  const { data, width, height, channels } = tensorToRgbBytes(p, range);
  const k = Math.max(1, Math.ceil(minSize / Math.max(width, height)));
  const png = await sharp(Buffer.from(data), { raw: { width, height, channels: channels as 1 | 3 | 4 } })
    .resize(width * k, height * k, { kernel: "nearest" }).png().toBuffer();
  return { png, width: width * k, height: height * k };
}

/**
 * Shows one picture ([H,W,3] or [1,H,W,3]), a batch [B,H,W,3], or a list (tensors or PNG bytes) as one
 * PNG grid, labels under each picture. Small pictures are enlarged (nearest) to `minSize` (default 128).
 * Outside a notebook it prints a one-line note. Use `toImage` / `composeGrid` for the bytes.
 */
export async function showImages(images: tf.Tensor | Array<tf.Tensor | Uint8Array> | Uint8Array, opts: ShowOptions = {}): Promise<void> {
  const list: Array<tf.Tensor | Uint8Array> = images instanceof Uint8Array ? [images]
    : Array.isArray(images) ? images
    : images.rank === 3 || images.shape[0] === 1 ? [images]
    : tf.unstack(images);
  const cells: Cell[] = [];
  for (const p of list) cells.push(await cellOf(p, opts.range, opts.minSize ?? 128));
  if (!Array.isArray(images) && images instanceof tf.Tensor && list.length > 1) tf.dispose(list as tf.Tensor[]);
  cells.forEach((c, i) => { c.label = opts.labels?.[i]; });
  const note = `[${cells.length} image${cells.length > 1 ? "s" : ""}${opts.title ? `: ${opts.title}` : ""}${opts.labels ? ` (${opts.labels.join(", ")})` : ""}]`;
  if (!isNotebook()) {
    console.log(note);
    return;
  }
  // the PNG, with the note as its plain-text stand-in
  displayPng(await composeGrid(cells, { cols: opts.cols, title: opts.title }), undefined, note);
}
