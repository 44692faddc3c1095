// The small part of torch.nn.Module a port needs: a tree of named children and parameters, so weights
// can be listed, loaded and saved under diffusers' names ("down_blocks.0.resnets.1.conv1.weight").
//
// Parameters live in OUR layout (NHWC convolutions, [in, out] matrices); each one remembers its torch
// shape and how to convert, so checkpoints are converted once when loaded and once when saved.
import * as tf from "@tensorflow/tfjs";
import type { RawTensor } from "../io/safetensors.js";
import { float16ToFloat32 } from "../io/float16.js";

/**
 * How a torch tensor maps to ours:
 * - "conv2d": Conv2d weight [out, in, kh, kw] -> tfjs filter [kh, kw, in, out]
 * - "linear": Linear weight [out, in] -> [in, out], so y = x @ W runs as one tf.matMul
 * - "same":   biases, norm scales, embedding tables: unchanged
 */
export type ParamLayout = "conv2d" | "linear" | "same";

/** How `fromConfig({ init: "random" })` fills a parameter. */
export type ParamInit = "fan_in" | "normal" | "zeros" | "ones";

export type InitMode = "random" | "zeros";

const TO_OURS: Record<ParamLayout, number[] | null> = { conv2d: [2, 3, 1, 0], linear: [1, 0], same: null };
const TO_TORCH: Record<ParamLayout, number[] | null> = { conv2d: [3, 2, 0, 1], linear: [1, 0], same: null };

function permute(shape: readonly number[], perm: number[] | null): number[] {
  return perm === null ? [...shape] : perm.map((p) => shape[p]);
}

/** A torch-layout array in our layout, on the host (no tensor): [out, in] -> [in, out], [o, i, kh, kw] -> [kh, kw, i, o]. */
function toOursOnHost<T extends Float32Array | Uint16Array>(data: T, torchShape: readonly number[], layout: ParamLayout): T {
  if (layout === "same") return data.slice() as T;
  const out = new (data.constructor as new (n: number) => T)(data.length);
  if (layout === "linear") {
    const [o, i] = torchShape;
    for (let r = 0; r < o; r++) for (let c = 0; c < i; c++) out[c * o + r] = data[r * i + c];
    return out;
  }
  const [o, i, kh, kw] = torchShape;
  let src = 0;
  for (let a = 0; a < o; a++)
    for (let b = 0; b < i; b++)
      for (let y = 0; y < kh; y++)
        for (let x = 0; x < kw; x++) out[((y * kw + x) * i + b) * o + a] = data[src++];
  return out;
}

/** Host copies: float32 values, or float16 bits (a float16 checkpoint kept at half the host memory). */
export type HostArray = Float32Array | Uint16Array;

export class Parameter {
  private variable: tf.Variable | null = null;
  /**
   * Offloaded weights (memory/offload.ts, accelerate's cpu offload): the value in our layout in host memory. The
   * tensor then exists only while loaded (load / unload); reading `value` when unloaded loads it on demand.
   */
  private host: HostArray | null = null;
  /** Our shape (torch shape permuted by the layout). */
  readonly shape: number[];

  constructor(
    readonly torchShape: readonly number[],
    readonly layout: ParamLayout,
    readonly init: ParamInit,
  ) {
    this.shape = permute(torchShape, TO_OURS[layout]);
  }

  get numel(): number {
    return this.torchShape.reduce((a, b) => a * b, 1);
  }

  get isSet(): boolean {
    return this.variable !== null || this.host !== null;
  }

  /** Bytes of the float32 weight. */
  get numBytes(): number {
    return 4 * this.numel;
  }

  /** Bytes of the host copy (half of numBytes for a float16 one), 0 when not offloaded. */
  get hostBytes(): number {
    return this.host?.byteLength ?? 0;
  }

  /** Kept in host memory (see offload). */
  get isOffloaded(): boolean {
    return this.host !== null;
  }

  /** A tensor exists now (always for a set parameter that is not offloaded). */
  get isLoaded(): boolean {
    return this.variable !== null;
  }

  /** The weight in our layout (an offloaded parameter that is not loaded is loaded on demand). */
  get value(): tf.Tensor {
    if (this.variable === null) {
      if (this.host === null) {
        throw new Error("parameter has no value yet: load weights (fromPretrained / loadStateDict) or build with fromConfig(config, { init })");
      }
      this.load();
    }
    return this.variable!;
  }

  /** Replaces the value with a tensor already in our layout (kept; the caller may dispose its own copy). */
  set(value: tf.Tensor): void {
    if (value.shape.join() !== this.shape.join()) {
      throw new Error(`parameter shape is [${this.shape}] but the new value has shape [${value.shape}]`);
    }
    const wasLoaded = this.variable !== null;
    const v = tf.tidy(() => tf.variable(value.dtype === "float32" ? value : tf.cast(value, "float32"), true));
    this.variable?.dispose();
    this.variable = v;
    if (this.host !== null) {
      // offloaded: the new value becomes the host copy; the tensor stays only if it was loaded
      this.host = (v.dataSync() as Float32Array).slice();
      if (!wasLoaded) this.unload();
    }
  }

  /** Moves the weight to host memory (a Float32Array in our layout) and frees its tensor. */
  offload(): void {
    if (this.host !== null) return;
    this.host = (this.value.dataSync() as Float32Array).slice();
    this.unload();
  }

  /** Offloaded: makes the tensor from the host copy (no-op when loaded or not offloaded); float16 is widened first. */
  load(): void {
    if (this.variable !== null || this.host === null) return;
    const values = this.hostFloat32();
    this.variable = tf.tidy(() => tf.variable(tf.tensor(values, this.shape, "float32"), true));
  }

  /** The host copy as float32 values (a float16 copy widened). */
  private hostFloat32(): Float32Array {
    const h = this.host!;
    return h instanceof Uint16Array ? float16ToFloat32(h) : h;
  }

  /**
   * Sets the weight straight into host memory from a torch-layout array (float32, or float16 bits kept as they are),
   * with no tensor made: how a model too large for the device is loaded (memory/offload.ts loads it per use).
   */
  setHostFromTorch(data: HostArray): void {
    if (data.length !== this.numel) throw new Error(`parameter has ${this.numel} values but the array has ${data.length}`);
    this.variable?.dispose();
    this.variable = null;
    this.host = toOursOnHost(data, this.torchShape, this.layout);
  }

  /** Offloaded: frees the tensor, keeping the host copy (no-op when not offloaded). */
  unload(): void {
    if (this.host === null) return;
    this.variable?.dispose();
    this.variable = null;
  }

  /** Undoes offload: the weight becomes a resident tensor again and the host copy is dropped. */
  restore(): void {
    if (this.host === null) return;
    this.load();
    this.host = null;
  }

  /** Loads a torch-layout array (the checkpoint's), converting the layout once. */
  setFromTorch(data: Float32Array): void {
    tf.tidy(() => {
      const t = tf.tensor(data, [...this.torchShape], "float32");
      const perm = TO_OURS[this.layout];
      this.set(perm === null ? t : tf.transpose(t, perm));
    });
  }

  /** The value as a torch-layout float32 array (for saving). */
  toTorch(): Float32Array {
    // not inside tf.tidy: tidy walks a returned typed array element by element (seconds for an embedding table)
    const perm = TO_TORCH[this.layout];
    if (perm === null && this.host !== null) return this.host instanceof Uint16Array ? this.hostFloat32() : this.host.slice();
    // an offloaded, unloaded weight is read from its host copy without loading it
    const src = this.variable ?? (this.host !== null ? tf.tensor(this.hostFloat32(), this.shape, "float32") : this.value);
    const t = perm === null ? src : tf.transpose(src, perm);
    const data = (t.dataSync() as Float32Array).slice();
    if (t !== src) t.dispose();
    if (src !== this.variable) src.dispose();
    return data;
  }

  /** Fresh values: fan_in ~ N(0, 1/fan_in) (keeps activations O(1)), normal ~ N(0, 1), or constants. */
  initialize(mode: InitMode, seed?: number): void {
    tf.tidy(() => {
      if (mode === "zeros" || this.init === "zeros") return this.set(tf.zeros(this.shape));
      if (this.init === "ones") return this.set(tf.ones(this.shape));
      // fan_in of a torch weight [out, in, ...] is in * prod(kernel)
      const fanIn = this.torchShape.slice(1).reduce((a, b) => a * b, 1);
      const std = this.init === "fan_in" ? 1 / Math.sqrt(fanIn) : 1;
      this.set(tf.randomNormal(this.shape, 0, std, "float32", seed));
    });
  }

  dispose(): void {
    this.variable?.dispose();
    this.variable = null;
    this.host = null;
  }
}

/** Shapes are compared in torch layout, as the checkpoint stores them. */
export interface StateDictProblem {
  kind: "missing" | "unexpected" | "shape";
  name: string;
  expected?: readonly number[];
  actual?: readonly number[];
}

export abstract class Module {
  private readonly params = new Map<string, Parameter>();
  private readonly children = new Map<string, Module | null>();

  protected addParameter(name: string, torchShape: number[], layout: ParamLayout, init: ParamInit): Parameter {
    const p = new Parameter(torchShape, layout, init);
    this.params.set(name, p);
    return p;
  }

  /** Registers a child under `name` (its parameters become `name.*`) and returns it. */
  protected addModule<M extends Module | null>(name: string, module: M): M {
    this.children.set(name, module);
    return module;
  }

  /** Every parameter with its full dotted name, in registration order (torch's state_dict order). */
  namedParameters(prefix = ""): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    for (const [n, p] of this.params) out.push([prefix + n, p]);
    for (const [n, m] of this.children) if (m !== null) out.push(...m.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** Every module of the tree with its dotted path ("" for this one), depth first in registration order (torch's named_modules()). */
  namedModules(prefix = ""): [string, Module][] {
    const out: [string, Module][] = [[prefix, this]];
    for (const [n, m] of this.children) if (m !== null) out.push(...m.namedModules(prefix === "" ? n : `${prefix}.${n}`));
    return out;
  }

  /** torch's named_parameters(recurse=False): the parameters this module holds itself. */
  ownParameters(): [string, Parameter][] {
    return [...this.params];
  }

  /** Number of weights (diffusers' num_parameters()). */
  numParameters(): number {
    return this.namedParameters().reduce((s, [, p]) => s + p.numel, 0);
  }

  /** Fills every parameter: "random" (see Parameter.initialize) or "zeros". */
  initWeights(mode: InitMode, seed?: number): void {
    // tfjs treats a seed of 0 as "no seed": offset by one so every seed, 0 included, is reproducible
    this.namedParameters().forEach(([, p], i) => p.initialize(mode, seed === undefined ? undefined : seed + i + 1));
  }

  /** Differences between a checkpoint (torch names and shapes) and this module tree. */
  checkStateDict(stateDict: Map<string, { shape: readonly number[] }>): StateDictProblem[] {
    const problems: StateDictProblem[] = [];
    const own = new Map(this.namedParameters());
    for (const [name, p] of own) {
      const t = stateDict.get(name);
      if (t === undefined) problems.push({ kind: "missing", name, expected: p.torchShape });
      else if (t.shape.join() !== p.torchShape.join()) problems.push({ kind: "shape", name, expected: p.torchShape, actual: t.shape });
    }
    for (const [name, t] of stateDict) if (!own.has(name)) problems.push({ kind: "unexpected", name, actual: t.shape });
    return problems;
  }

  /**
   * torch's load_state_dict(strict=True): every parameter must be in `stateDict` with its torch shape and
   * nothing else may be there; otherwise nothing is loaded and the error lists the problems. `source` names
   * the file in messages.
   */
  loadStateDict(stateDict: Map<string, RawTensor>, source = "state dict", opts: { toHost?: boolean } = {}): void {
    const problems = this.checkStateDict(stateDict);
    if (problems.length > 0) throw new Error(describeProblems(this.constructor.name, source, problems));
    for (const [name, p] of this.namedParameters()) {
      const raw = stateDict.get(name)!;
      const isF16 = raw.dtype === "F16" && raw.data instanceof Uint16Array;
      if (!(raw.data instanceof Float32Array || raw.data instanceof Float64Array || isF16)) {
        throw new Error(`${source}: tensor "${name}" has dtype ${raw.dtype}; weights must be floating point (F32, F16, BF16 or F64)`);
      }
      if (opts.toHost) {
        // into host memory, no tensor (the model is offloaded); the file's array is let go as soon as it is copied
        p.setHostFromTorch(raw.data instanceof Float64Array ? Float32Array.from(raw.data) : (raw.data as HostArray));
        stateDict.delete(name);
        continue;
      }
      const data = raw.data instanceof Uint16Array ? float16ToFloat32(raw.data) : raw.data;
      p.setFromTorch(data instanceof Float32Array ? data : Float32Array.from(data as Float64Array));
    }
  }

  /** torch's state_dict(): torch names, torch layouts, float32, ready for saveSafetensors. */
  stateDict(): Map<string, RawTensor> {
    const out = new Map<string, RawTensor>();
    for (const [name, p] of this.namedParameters()) out.set(name, { dtype: "F32", shape: [...p.torchShape], data: p.toTorch() });
    return out;
  }

  /** Frees every weight; the module cannot run afterwards (until weights are loaded again). */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.dispose();
  }
}

/** torch.nn.ModuleList: children named "0", "1", ...; entries may be null (as diffusers' `attentions` with add_attention=False). */
export class ModuleList<M extends Module | null> extends Module {
  readonly items: M[];
  constructor(items: M[]) {
    super();
    this.items = items;
    items.forEach((m, i) => this.addModule(String(i), m));
  }
  get length(): number {
    return this.items.length;
  }
}

const SHOWN = 10;

function describeProblems(className: string, source: string, problems: StateDictProblem[]): string {
  const lines: string[] = [];
  const shape = (s?: readonly number[]) => `[${s?.join(", ") ?? ""}]`;
  for (const kind of ["shape", "missing", "unexpected"] as const) {
    const list = problems.filter((p) => p.kind === kind);
    if (list.length === 0) continue;
    const title = {
      shape: `${list.length} tensor(s) whose shape disagrees with the config`,
      missing: `${list.length} missing tensor(s)`,
      unexpected: `${list.length} unexpected tensor(s) (the model has no such parameter)`,
    }[kind];
    lines.push(`  ${title}:`);
    for (const p of list.slice(0, SHOWN)) {
      if (kind === "shape") lines.push(`    "${p.name}": expected ${shape(p.expected)} from the config, the file has ${shape(p.actual)}`);
      else if (kind === "missing") lines.push(`    "${p.name}" (expected shape ${shape(p.expected)})`);
      else lines.push(`    "${p.name}" (shape ${shape(p.actual)})`);
    }
    if (list.length > SHOWN) lines.push(`    ... and ${list.length - SHOWN} more`);
  }
  return (
    `Cannot load ${className} weights from ${source}:\n${lines.join("\n")}\n` +
    `The weights do not fit the model built from the config: make sure the config.json and the weights file ` +
    `come from the same model (same block_out_channels, layers_per_block, block types, ...), and that the file is not truncated or from another model class.`
  );
}
