// Tensors <-> pictures. A picture tensor is [H, W, 3] or [1, H, W, 3] (NHWC), float in [0, 1]
// (diffusers' output_type "np") or, with `range: "-1,1"`, the raw model range (x / 2 + 0.5).
import * as tf from "@tensorflow/tfjs";
import sharp from "sharp";

export type PixelRange = "0,1" | "-1,1";

export interface ImageOptions {
  range?: PixelRange;
  /** scale the picture (nearest neighbour for small images) so its longest side is at least this */
  minSize?: number;
}

/** [H,W,3] uint8 RGB bytes of one picture tensor (clamped, rounded as diffusers' numpy_to_pil). */
export function tensorToRgbBytes(x: tf.Tensor, range: PixelRange = "0,1"): { data: Uint8Array; width: number; height: number; channels: number } {
  const img = x.rank === 4 ? x.shape[0] === 1 ? x : null : x;
  if (!img || (img.rank !== 3 && img.rank !== 4)) {
    throw new Error(`expected one picture [H, W, C] or [1, H, W, C], got shape [${x.shape}] (use imageGrid for a batch)`);
  }
  const [h, w, c] = img.rank === 4 ? img.shape.slice(1) : img.shape;
  if (c !== 1 && c !== 3 && c !== 4) throw new Error(`a picture needs 1, 3 or 4 channels last (NHWC); got shape [${x.shape}]`);
  const bytes = tf.tidy(() => {
    let v = img.toFloat();
    if (range === "-1,1") v = v.div(2).add(0.5);
    return v.clipByValue(0, 1).mul(255).round().toInt();
  });
  const data = Uint8Array.from(bytes.dataSync());
  bytes.dispose();
  return { data, width: w, height: h, channels: c };
}

/** PNG bytes of one picture tensor (diffusers: `image = pipe(...).images[0]` then `.save("x.png")`). */
export async function toImage(x: tf.Tensor, opts: ImageOptions = {}): Promise<Buffer> {
  const { data, width, height, channels } = tensorToRgbBytes(x, opts.range);
  let img = sharp(Buffer.from(data), { raw: { width, height, channels: channels as 1 | 3 | 4 } });
  const longest = Math.max(width, height);
  if (opts.minSize && longest < opts.minSize) {
    const k = Math.ceil(opts.minSize / longest);
    img = img.resize(width * k, height * k, { kernel: "nearest" });
  }
  return img.png().toBuffer();
}

/** Reads PNG/JPEG bytes or a file into a float32 [1, H, W, 3] tensor in [0, 1]. */
export async function loadImage(input: string | Uint8Array, opts: { width?: number; height?: number } = {}): Promise<tf.Tensor4D> {
  let img = sharp(typeof input === "string" ? input : Buffer.from(input)).removeAlpha().toColourspace("srgb");
  if (opts.width || opts.height) img = img.resize(opts.width, opts.height, { fit: "cover" });
  const { data, info } = await img.raw().toBuffer({ resolveWithObject: true });
  return tf.tidy(() => tf.tensor(Uint8Array.from(data), [1, info.height, info.width, info.channels], "int32").toFloat().div(255) as tf.Tensor4D);
}

/** Lays out a batch [B,H,W,C] (or a list of pictures) as one grid picture [rows*H, cols*W, C]. */
export function imageGrid(images: tf.Tensor | tf.Tensor[], opts: { cols?: number; pad?: number; padValue?: number } = {}): tf.Tensor3D {
  return tf.tidy(() => {
    const list = Array.isArray(images)
      ? images.map((t) => (t.rank === 4 ? t.reshape(t.shape.slice(1)) : t) as tf.Tensor3D)
      : tf.unstack(images) as tf.Tensor3D[];
    if (list.length === 0) throw new Error("imageGrid needs at least one picture");
    const [h, w, c] = list[0].shape;
    for (const t of list) {
      if (t.shape.join() !== list[0].shape.join()) throw new Error(`imageGrid: all pictures must share one shape; got [${list[0].shape}] and [${t.shape}]`);
    }
    const cols = Math.min(opts.cols ?? list.length, list.length);
    const rows = Math.ceil(list.length / cols);
    const pad = opts.pad ?? 2;
    const fill = opts.padValue ?? 1;
    const blank = tf.fill([h, w, c], fill);
    const rowImgs: tf.Tensor3D[] = [];
    for (let r = 0; r < rows; r++) {
      const cells: tf.Tensor3D[] = [];
      for (let k = 0; k < cols; k++) {
        const t = list[r * cols + k] ?? blank;
        cells.push(t as tf.Tensor3D);
        if (k < cols - 1 && pad > 0) cells.push(tf.fill([h, pad, c], fill) as tf.Tensor3D);
      }
      rowImgs.push(tf.concat(cells, 1));
      if (r < rows - 1 && pad > 0) rowImgs.push(tf.fill([pad, cols * w + (cols - 1) * pad, c], fill) as tf.Tensor3D);
    }
    return tf.concat(rowImgs, 0);
  });
}
