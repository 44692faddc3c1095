// EMAModel (diffusers training_utils.py): an exponential moving average of a model's weights, the weights a
// trained DDPM is sampled with (Ho et al. 2020 use decay 0.9999). Here the average lives in a second model of the
// same class (`shadow`), so it can be sampled from and saved with savePretrained directly.
//   decay_k = min(max_decay, 1 - (1 + k / inv_gamma)^-power)   (use_ema_warmup)   or   (1 + k) / (10 + k)
//   shadow <- shadow - (1 - decay_k) (shadow - param)            k = optimization_step - update_after_step - 1
import * as tf from "@tensorflow/tfjs";
import type { ModelMixin } from "../models/modeling-utils.js";

export interface EMAModelOptions {
  decay?: number;
  minDecay?: number;
  updateAfterStep?: number;
  useEmaWarmup?: boolean;
  invGamma?: number;
  power?: number;
}

export class EMAModel<M extends ModelMixin> {
  readonly decay: number;
  readonly minDecay: number;
  readonly updateAfterStep: number;
  readonly useEmaWarmup: boolean;
  readonly invGamma: number;
  readonly power: number;
  optimizationStep = 0;
  /** the averaged weights, as a model */
  readonly shadow: M;

  /** Starts the average at a copy of `model`'s weights. Defaults are diffusers'. */
  constructor(model: M, opts: EMAModelOptions = {}) {
    this.decay = opts.decay ?? 0.9999;
    this.minDecay = opts.minDecay ?? 0;
    this.updateAfterStep = opts.updateAfterStep ?? 0;
    this.useEmaWarmup = opts.useEmaWarmup ?? false;
    this.invGamma = opts.invGamma ?? 1;
    this.power = opts.power ?? 2 / 3;
    const cls = model.constructor as new (config: Record<string, unknown>) => M;
    this.shadow = new cls({ ...model.config });
    this.copyFrom(model);
  }

  /** diffusers' get_decay. */
  getDecay(optimizationStep: number): number {
    const step = Math.max(0, optimizationStep - this.updateAfterStep - 1);
    if (step <= 0) return 0;
    const d = this.useEmaWarmup ? 1 - (1 + step / this.invGamma) ** -this.power : (1 + step) / (10 + step);
    return Math.max(Math.min(d, this.decay), this.minDecay);
  }

  /** One update after an optimizer step. */
  step(model: M): void {
    this.optimizationStep++;
    const oneMinus = 1 - this.getDecay(this.optimizationStep);
    const live = new Map(model.namedParameters());
    for (const [name, s] of this.shadow.namedParameters()) {
      const p = live.get(name);
      if (!p) throw new Error(`EMAModel.step: the model has no parameter "${name}"`);
      const v = s.value as tf.Variable;
      tf.tidy(() => v.assign(tf.sub(v, tf.mul(tf.sub(v, p.value), oneMinus))));
    }
  }

  /** Sets the average to `model`'s weights (also used when resuming from saved EMA weights). */
  copyFrom(model: ModelMixin): void {
    const src = new Map(model.namedParameters());
    for (const [name, s] of this.shadow.namedParameters()) {
      const p = src.get(name);
      if (!p) throw new Error(`EMAModel: the model has no parameter "${name}"`);
      s.set(p.value);
    }
  }

  /** diffusers' copy_to: writes the averaged weights into `model`. */
  copyTo(model: ModelMixin): void {
    const dst = new Map(model.namedParameters());
    for (const [name, s] of this.shadow.namedParameters()) {
      const p = dst.get(name);
      if (!p) throw new Error(`EMAModel.copyTo: the model has no parameter "${name}"`);
      p.set(s.value);
    }
  }

  /** The averaging settings and step, as diffusers stores them beside the EMA weights' config. */
  stateDict(): Record<string, number | boolean> {
    return {
      decay: this.decay, min_decay: this.minDecay, optimization_step: this.optimizationStep, update_after_step: this.updateAfterStep,
      use_ema_warmup: this.useEmaWarmup, inv_gamma: this.invGamma, power: this.power,
    };
  }

  dispose(): void {
    this.shadow.dispose();
  }
}
