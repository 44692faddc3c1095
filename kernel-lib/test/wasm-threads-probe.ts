// The computations backend.test.ts runs at 1 and 2 wasm threads and compares bit for bit: matMul and
// conv2d (XNNPACK, split over the pool), softmax, the tiny UNet on its golden case c0 (t = 999), and
// an fp16 weight loaded straight into the wasm heap (shared memory in the threaded build).
import * as tf from "@tensorflow/tfjs";
import { UNet2DModel } from "../src/models/unet-2d.js";
import { loadSafetensors } from "../src/io/safetensors.js";
import { fixture, loadFixture, nchwToNhwc } from "./helpers.js";

export const TINY_UNET = fixture("models/unet-ddpm-tiny");
export const TINY_GOLDEN = "models/unet-ddpm-tiny.golden.safetensors";

/** Outputs by name; the caller disposes them. */
export async function threadsProbe(): Promise<Record<string, tf.Tensor>> {
  const out: Record<string, tf.Tensor> = {};
  tf.tidy(() => {
    const a = tf.randomNormal([256, 384], 0, 1, "float32", 1);
    const b = tf.randomNormal([384, 320], 0, 1, "float32", 2);
    out.matMul = tf.keep(tf.matMul(a, b));
    const x = tf.randomNormal<tf.Rank.R4>([1, 32, 32, 64], 0, 1, "float32", 3);
    const w = tf.randomNormal<tf.Rank.R4>([3, 3, 64, 64], 0, 0.1, "float32", 4);
    out.conv2d = tf.keep(tf.conv2d(x, w, 1, "same"));
    out.softmax = tf.keep(tf.softmax(tf.randomNormal([64, 1000], 0, 3, "float32", 5)));
  });
  const fp16 = loadSafetensors(`${TINY_UNET}/diffusion_pytorch_model.fp16.safetensors`, ["conv_in.weight", "conv_out.weight"]);
  out.fp16Load = tf.tidy(() => tf.concat([fp16["conv_in.weight"].flatten(), fp16["conv_out.weight"].flatten()]));
  tf.dispose(Object.values(fp16));
  const unet = await UNet2DModel.fromPretrained(TINY_UNET);
  const golden = loadFixture(TINY_GOLDEN);
  const x = nchwToNhwc(golden["c0_int999/sample"]);
  out.unet = unet.forward(x, 999).sample;
  tf.dispose([x, ...Object.values(golden)]);
  unet.dispose();
  return out;
}
