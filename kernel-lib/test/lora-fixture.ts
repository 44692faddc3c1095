// The LoRA fixture (fixtures/lora: diffusers 0.27.2 + PEFT 0.10 files and golden UNet outputs on sd-tiny-pipe),
// opened once per test file: the pipeline, the stored UNet input and our base UNet output on it.
import * as fs from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { StableDiffusionPipeline } from "../src/pipelines/pipeline-stable-diffusion.js";
import { fixture, loadFixture, nchwToNhwc } from "./helpers.js";

export const LORA = (f: string): string => fixture("lora", f);
export const FILES = { diffusers: LORA("lora_r4.diffusers.safetensors"), kohya_a4: LORA("lora_r4_a4.kohya.safetensors"), kohya_a8: LORA("lora_r4_a8.kohya.safetensors") };
/** lora_golden.json: the targeted modules, the pipeline case, ... */
export const meta = JSON.parse(fs.readFileSync(LORA("lora_golden.json"), "utf8"));

export interface LoraFixture {
  pipe: StableDiffusionPipeline;
  gold: Record<string, tf.Tensor>;
  /** the golden UNet input, NHWC */
  sample: tf.Tensor4D;
  ehs: tf.Tensor3D;
  timestep: number;
  /** our base UNet output on that input: "back to base" means these exact bits */
  ourBase: tf.Tensor4D;
}

export async function openLoraFixture(): Promise<LoraFixture> {
  const pipe = await StableDiffusionPipeline.fromPretrained(fixture("sd-tiny-pipe"));
  pipe.setProgressBarConfig({ disable: true });
  const gold = loadFixture("lora", "lora_golden.safetensors");
  const sample = nchwToNhwc(gold["input/sample"]);
  const ehs = gold["input/encoder_hidden_states"] as tf.Tensor3D;
  const timestep = gold["input/timestep"].dataSync()[0];
  const ourBase = pipe.unet.forward(sample, timestep, ehs).sample;
  return { pipe, gold, sample, ehs, timestep, ourBase };
}

export function closeLoraFixture(f: LoraFixture | undefined): void {
  if (!f) return;
  f.pipe.dispose();
  tf.dispose(Object.values(f.gold));
  tf.dispose([f.sample, f.ourBase]);
}
