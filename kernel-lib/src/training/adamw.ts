// torch.optim.AdamW (Loshchilov & Hutter 2019: Adam with decoupled weight decay), on the kit's Parameters, with a
// state dict named as torch's (per parameter: step, exp_avg, exp_avg_sq) so a run can stop and resume exactly.
//   p <- p (1 - lr wd)
//   m <- b1 m + (1 - b1) g                 v <- b2 v + (1 - b2) g^2
//   p <- p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
import * as tf from "@tensorflow/tfjs";
import type { Parameter } from "../nn/module.js";
import { readSafetensorsArrays, saveSafetensors, type RawTensor } from "../io/safetensors.js";

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

export class AdamW {
  readonly lr: number;
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  /** optimizer steps taken (torch keeps one per parameter; they are all equal here) */
  stepCount = 0;
  private readonly expAvg = new Map<string, tf.Variable>();
  private readonly expAvgSq = new Map<string, tf.Variable>();

  /** `params`: [name, Parameter] pairs, e.g. model.namedParameters(). Defaults are torch's. */
  constructor(readonly params: [string, Parameter][], opts: AdamWOptions = {}) {
    this.lr = opts.lr ?? 1e-3;
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 1e-2;
    for (const [name, p] of params) {
      // in a tidy: tf.variable keeps its own reference to the zeros, the temporary handle goes
      tf.tidy(() => {
        this.expAvg.set(name, tf.variable(tf.zeros(p.shape), false));
        this.expAvgSq.set(name, tf.variable(tf.zeros(p.shape), false));
      });
    }
  }

  /** One update from `grads` (parameter name -> gradient, in our layout). `lr` overrides the base rate (schedules). */
  step(grads: Map<string, tf.Tensor>, lr = this.lr): void {
    this.stepCount++;
    const [b1, b2] = this.betas;
    const bc1 = 1 - b1 ** this.stepCount;
    const bc2 = 1 - b2 ** this.stepCount;
    for (const [name, p] of this.params) {
      const g = grads.get(name);
      if (g === undefined) throw new Error(`AdamW.step: no gradient for parameter "${name}"`);
      const m = this.expAvg.get(name)!;
      const v = this.expAvgSq.get(name)!;
      const w = p.value as tf.Variable;
      tf.tidy(() => {
        const m1 = tf.add(tf.mul(m, b1), tf.mul(g, 1 - b1));
        const v1 = tf.add(tf.mul(v, b2), tf.mul(tf.square(g), 1 - b2));
        const denom = tf.add(tf.div(tf.sqrt(v1), Math.sqrt(bc2)), this.eps);
        const decayed = this.weightDecay !== 0 ? tf.mul(w, 1 - lr * this.weightDecay) : w;
        w.assign(tf.sub(decayed, tf.mul(tf.div(m1, denom), lr / bc1)));
        m.assign(m1);
        v.assign(v1);
      });
    }
  }

  /** torch-style names: "<param>.exp_avg" / "<param>.exp_avg_sq" in our layout, float32. */
  stateTensors(): Map<string, RawTensor> {
    const out = new Map<string, RawTensor>();
    for (const [name, p] of this.params) {
      for (const [suffix, t] of [["exp_avg", this.expAvg.get(name)!], ["exp_avg_sq", this.expAvgSq.get(name)!]] as const) {
        out.set(`${name}.${suffix}`, { dtype: "F32", shape: [...p.shape], data: (t.dataSync() as Float32Array).slice() });
      }
    }
    return out;
  }

  /** Writes the moments (safetensors) with the step count and hyper-parameters in the metadata. */
  save(file: string): void {
    saveSafetensors(file, Object.fromEntries(this.stateTensors()), {
      metadata: { step: String(this.stepCount), lr: String(this.lr), betas: JSON.stringify(this.betas), eps: String(this.eps), weight_decay: String(this.weightDecay) },
    });
  }

  /** Restores what `save` wrote; the parameter names and shapes must match this optimizer's. */
  load(file: string): void {
    const { tensors, metadata } = readSafetensorsArrays(file);
    for (const [name, p] of this.params) {
      for (const [suffix, t] of [["exp_avg", this.expAvg.get(name)!], ["exp_avg_sq", this.expAvgSq.get(name)!]] as const) {
        const raw = tensors.get(`${name}.${suffix}`);
        if (!raw) throw new Error(`AdamW.load: ${file} has no "${name}.${suffix}": it was saved for another model`);
        if (raw.shape.join() !== p.shape.join()) throw new Error(`AdamW.load: ${file}: "${name}.${suffix}" has shape [${raw.shape}], the parameter [${p.shape}]`);
        tf.tidy(() => t.assign(tf.tensor(raw.data as Float32Array, p.shape, "float32")));
      }
    }
    const step = Number(metadata.step);
    if (!Number.isInteger(step) || step < 0) throw new Error(`AdamW.load: ${file} has no valid "step" in its metadata`);
    this.stepCount = step;
  }

  dispose(): void {
    for (const t of [...this.expAvg.values(), ...this.expAvgSq.values()]) t.dispose();
    this.expAvg.clear();
    this.expAvgSq.clear();
  }
}
