// A LoRA side path on one Linear or Conv2d, as PEFT's lora.Linear / lora.Conv2d (Hu et al. 2021, "LoRA", eq. 3):
//   h = W0 x + b + Σ_active s_a · B_a (A_a x),     s_a = weight_a · alpha_a / r_a · (the call's scale)
// A is [r, in] (Conv2d: [r, in, kh, kw], same stride and padding as the layer), B is [out, r] (Conv2d: 1x1).
// Unfused, the layer's outputHook adds the low-rank term with two small 2-D matMuls (x Aᵀ) Bᵀ;
// fused (PEFT's merge), W0 <- W0 + Σ s_a B_a A_a and the hook adds nothing. The original W0 is kept while
// fused, so unfusing restores it bit for bit.
import * as tf from "@tensorflow/tfjs";
import { Parameter } from "../nn/module.js";
import { Conv2d } from "../nn/conv2d.js";
import { Linear } from "../nn/linear.js";
import { type OutputHook } from "../nn/output-hook.js";
import type { RawTensor } from "../io/safetensors.js";

/** What every LoRA layer of one model shares: the call's scale (cross_attention_kwargs scale) and the on/off switch. */
export interface LoraScope {
  callScale: number;
  disabled: boolean;
}

/** One adapter on one layer: A and B converted once to our layout (Aᵀ [in, r], Bᵀ [r, out]; conv filters NHWC). */
export interface LoraAdapter {
  readonly down: Parameter;
  readonly up: Parameter;
  readonly rank: number;
  readonly alpha: number;
  /** set_adapters' weight (1 when loaded). */
  weight: number;
}

export type LoraTarget = Linear | Conv2d;

function asFloat32(raw: RawTensor, what: string): Float32Array {
  if (raw.data instanceof Float32Array) return raw.data;
  if (raw.data instanceof Float64Array) return Float32Array.from(raw.data);
  throw new Error(`${what} has dtype ${raw.dtype}; LoRA weights must be floating point`);
}

export class LoraLayer implements OutputHook<tf.Tensor> {
  private readonly adapters = new Map<string, LoraAdapter>();
  /** Adapters this layer runs (PEFT's active_adapters; names it does not hold are skipped). */
  active: string[] = [];
  /** Adapters merged into the weight (fuseLora), in merge order. */
  merged: string[] = [];
  /** W0 while fused. */
  private original: tf.Tensor | null = null;

  private constructor(readonly target: LoraTarget, readonly scope: LoraScope) {}

  /** Hooks a new LoRA layer onto `target` (which must not carry one already). */
  static attach(target: LoraTarget, scope: LoraScope): LoraLayer {
    if (target.outputHook !== null) throw new Error("this layer already has an output hook; a layer takes one LoRA layer (holding any number of adapters)");
    const layer = new LoraLayer(target, scope);
    (target as { outputHook: OutputHook<tf.Tensor> | null }).outputHook = layer;
    return layer;
  }

  get adapterNames(): string[] {
    return [...this.adapters.keys()];
  }

  adapter(name: string): LoraAdapter | undefined {
    return this.adapters.get(name);
  }

  /**
   * Adds adapter `name` from torch-layout A (down) and B (up); shapes must already be checked against the
   * layer (lora-loader does). A fresh layer makes it active; on a layer holding other adapters the active
   * list is kept (PEFT's update_layer).
   */
  addAdapter(name: string, down: RawTensor, up: RawTensor, alpha: number): void {
    if (this.adapters.has(name)) throw new Error(`adapter "${name}" is already on this layer`);
    const layout = this.target instanceof Conv2d ? "conv2d" : "linear";
    const a = new Parameter(down.shape, layout, "zeros");
    const b = new Parameter(up.shape, layout, "zeros");
    a.setFromTorch(asFloat32(down, "lora A (down)"));
    b.setFromTorch(asFloat32(up, "lora B (up)"));
    const first = this.adapters.size === 0;
    this.adapters.set(name, { down: a, up: b, rank: down.shape[0], alpha, weight: 1 });
    if (first) this.active = [name];
  }

  /** s = weight · alpha / r (PEFT's scaling), times `extra`. */
  scaling(name: string, extra = 1): number {
    const a = this.adapters.get(name)!;
    return ((a.weight * a.alpha) / a.rank) * extra;
  }

  /** OutputHook: y + Σ_active s · B(A x); nothing when disabled or fused (PEFT runs only the base layer then). */
  addTo(x: tf.Tensor, y: tf.Tensor): tf.Tensor {
    if (this.scope.disabled || this.merged.length > 0) return y;
    let out = y;
    for (const name of this.active) {
      if (!this.adapters.has(name)) continue;
      out = tf.add(out, this.lowRank(x, this.adapters.get(name)!, this.scaling(name, this.scope.callScale)));
    }
    return out;
  }

  /** s · B(A x), the scale applied on the rank-r middle (the smallest tensor). */
  private lowRank(x: tf.Tensor, a: LoraAdapter, s: number): tf.Tensor {
    if (this.target instanceof Conv2d) {
      const strides = this.target.opts.stride ?? 1;
      const h = tf.conv2d(x as tf.Tensor4D, a.down.value as tf.Tensor4D, strides, this.target.pad);
      return tf.conv2d(tf.mul(h, s) as tf.Tensor4D, a.up.value as tf.Tensor4D, 1, 0);
    }
    const h = tf.matMul(x as tf.Tensor2D, a.down.value as tf.Tensor2D); // [N, r]
    return tf.matMul(tf.mul(h, s) as tf.Tensor2D, a.up.value as tf.Tensor2D); // [N, out]
  }

  /** s · B A in our weight layout ([in, out], or the conv filter [kh, kw, in, out]). */
  private delta(name: string, s: number): tf.Tensor {
    return tf.tidy(() => {
      const a = this.adapters.get(name)!;
      const w = this.target.weight.shape;
      const down2d = tf.reshape(a.down.value, [-1, a.rank]) as tf.Tensor2D; // [in (·kh·kw), r]
      // the right operand is a fresh product (wasm caches packed right operands by data, see layers.ts)
      const up2d = tf.reshape(tf.mul(a.up.value, s), [a.rank, -1]) as tf.Tensor2D; // [r, out]
      return tf.reshape(tf.matMul(down2d, up2d), w);
    });
  }

  /** PEFT's merge: W0 + Σ s_a B_a A_a for `names` (held, not yet merged), each s_a times `extraScale`. */
  merge(names: string[], extraScale: number): void {
    const todo = names.filter((n) => this.adapters.has(n) && !this.merged.includes(n));
    if (todo.length === 0) return;
    const weight = this.target.weight;
    if (this.original === null) this.original = tf.clone(weight.value);
    const fused = tf.tidy(() => todo.reduce((w, n) => tf.add(w, this.delta(n, this.scaling(n, extraScale))), weight.value));
    weight.set(fused);
    fused.dispose();
    this.merged.push(...todo);
  }

  /** Restores W0 exactly (nothing to do when not fused). */
  unmerge(): void {
    if (this.original === null) return;
    this.target.weight.set(this.original);
    this.original.dispose();
    this.original = null;
    this.merged = [];
  }

  /** Removes an adapter and frees its weights; a deleted active adapter leaves the others active (PEFT's delete_adapter). */
  deleteAdapter(name: string): void {
    const a = this.adapters.get(name);
    if (!a) return;
    if (this.merged.includes(name)) throw new Error(`adapter "${name}" is fused into the weights: call unfuseLora() first`);
    a.down.dispose();
    a.up.dispose();
    this.adapters.delete(name);
    if (this.active.includes(name)) {
      this.active = this.active.filter((n) => n !== name);
      // PEFT: no active adapter left -> the first remaining one (sorted) becomes active
      if (this.active.length === 0 && this.adapters.size > 0) this.active = [[...this.adapters.keys()].sort()[0]];
    }
  }

  /**
   * Takes the hook off the layer and frees every adapter. A fused layer keeps its fused weight (diffusers:
   * fuse_lora then unload_lora_weights bakes the LoRA into the model); W0's copy is freed.
   */
  detach(): void {
    (this.target as { outputHook: OutputHook<tf.Tensor> | null }).outputHook = null;
    this.original?.dispose();
    this.original = null;
    this.merged = [];
    for (const a of this.adapters.values()) {
      a.down.dispose();
      a.up.dispose();
    }
    this.adapters.clear();
    this.active = [];
  }
}
