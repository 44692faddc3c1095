// torch's CPU random generator (ATen CPUGeneratorImpl) re-implemented so that the same seed
// gives the same numbers as `torch.Generator("cpu").manual_seed(s)` (torch 1.13, as used for
// the fixtures). Pieces:
//   * MT19937 (Matsumoto & Nishimura 1998), seeded like ATen's `mt19937(seed)`: only the LOW
//     32 bits of the 64-bit seed enter the state (init_genrand); the full seed is remembered.
//   * random() = one u32 draw; random64() = (first draw << 32) | second draw.
//   * uniform float  = (u32 & (2^24-1)) * 2^-24; uniform double = (u64 & (2^53-1)) * 2^-53.
//   * randn: numel >= 16 (contiguous) -> ATen `normal_fill`: fill with uniforms, Box-Muller on
//     blocks of 16 (u1 = 1 - x[j], u2 = x[j+8], j < 8), the last 16 redrawn if numel % 16 != 0.
//     numel < 16 -> `normal_distribution<double>`: Box-Muller in double from two 53-bit
//     uniforms, returns r cos(theta) and caches r sin(theta) in the generator.
import * as tf from "@tensorflow/tfjs";

/**
 * The tfjs tensor type of a shape: a literal of 1 to 6 numbers gives tf.Tensor1D ... tf.Tensor6D (so
 * `randn([1, 4, 64, 64])` is a tf.Tensor4D, ready for `tf.transpose` and `unet.forward`), [] a tf.Scalar,
 * a `number[]` of unknown length a tf.Tensor.
 */
export type TensorOfShape<S extends readonly number[]> = number[] extends S
  ? tf.Tensor
  : S extends readonly [] ? tf.Scalar
  : S extends readonly [number] ? tf.Tensor1D
  : S extends readonly [number, number] ? tf.Tensor2D
  : S extends readonly [number, number, number] ? tf.Tensor3D
  : S extends readonly [number, number, number, number] ? tf.Tensor4D
  : S extends readonly [number, number, number, number, number] ? tf.Tensor5D
  : S extends readonly [number, number, number, number, number, number] ? tf.Tensor<tf.Rank.R6>
  : tf.Tensor;

const N = 624; // MT19937 state size
const M = 397;
const MATRIX_A = 0x9908b0df;
const UPPER_MASK = 0x80000000;
const LOWER_MASK = 0x7fffffff;

const TWO_POW_M24 = 1 / 16777216; // 2^-24
const TWO_POW_32 = 4294967296;
const TWO_POW_M53 = 1 / 9007199254740992; // 2^-53
const TWO_PI = 2 * Math.PI;
// The AVX2 kernel (normal_fill_16_AVX2) broadcasts 2*pi as a float32 constant.
const TWO_PI_F32 = Math.fround(2 * Math.PI);

/** Seed of a fresh `torch.Generator()` (c10 default_rng_seed_val). */
export const DEFAULT_RNG_SEED = 67280421310721n;

const UINT64_MAX = (1n << 64n) - 1n;

/** Snapshot of a Generator: MT19937 state plus the cached second Box-Muller value. */
export interface GeneratorState {
  /** the seed given to manualSeed (uint64) */
  seed: bigint;
  /** MT19937 state words (copy) */
  mt: Uint32Array;
  /** draws left before the next twist (ATen `left_`, 1..624) */
  left: number;
  /** index of the next state word (ATen `next_`) */
  next: number;
  /** torch's `next_double_normal_sample_` (null = empty) */
  nextDoubleNormal: number | null;
}

/** torch accepts Python ints in [-2^63, 2^64) and wraps negatives modulo 2^64. */
function toUint64(seed: number | bigint): bigint {
  let s: bigint;
  if (typeof seed === "bigint") {
    s = seed;
  } else {
    if (!Number.isInteger(seed)) throw new TypeError(`manualSeed: seed must be an integer, got ${seed}`);
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(`manualSeed: seed ${seed} is not exactly representable as a JS number; pass a bigint`);
    }
    s = BigInt(seed);
  }
  if (s < -(1n << 63n) || s > UINT64_MAX) {
    throw new RangeError(`manualSeed: seed must be in [-2^63, 2^64), got ${s}`);
  }
  return BigInt.asUintN(64, s);
}

function seedToPublic(s: bigint): number | bigint {
  return s <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(s) : s;
}

/** A non-deterministic 64-bit seed (like c10::detail::getNonDeterministicRandom). */
function nonDeterministicSeed(): bigint {
  const words = new Uint32Array(2);
  const c = (globalThis as { crypto?: { getRandomValues?: (a: Uint32Array) => Uint32Array } }).crypto;
  if (c && typeof c.getRandomValues === "function") {
    c.getRandomValues(words);
  } else {
    words[0] = (Math.random() * TWO_POW_32) >>> 0;
    words[1] = (Date.now() ^ (Math.random() * TWO_POW_32)) >>> 0;
  }
  return (BigInt(words[0]) << 32n) | BigInt(words[1]);
}

function numelOf(shape: number[], what: string): number {
  if (!Array.isArray(shape)) throw new TypeError(`${what}: shape must be an array of integers, got ${String(shape)}`);
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(`${what}: shape must contain non-negative integers, got [${shape.join(", ")}]`);
    }
    n *= d;
  }
  return n;
}

/** torch.Generator("cpu"): MT19937 + torch's uniform / normal transforms. */
export class Generator {
  readonly device = "cpu" as const;
  private mt = new Uint32Array(N);
  private left = 1;
  private nextIdx = 0;
  private seed_ = 0n;
  private nextDoubleNormal: number | null = null;

  /** Like `torch.Generator("cpu")`: seeded with torch's default 67280421310721 until manualSeed. */
  constructor(device: "cpu" = "cpu") {
    if (device !== "cpu") throw new Error(`Generator: only device "cpu" is supported, got ${String(device)}`);
    this.setSeed(DEFAULT_RNG_SEED);
  }

  /** `g.manual_seed(seed)`: re-seeds and clears the cached normal sample. Returns this. */
  manualSeed(seed: number | bigint): this {
    this.setSeed(toUint64(seed));
    return this;
  }

  /** `g.initial_seed()`: the last seed (uint64; a bigint when above Number.MAX_SAFE_INTEGER). */
  initialSeed(): number | bigint {
    return seedToPublic(this.seed_);
  }

  /** `g.seed()`: re-seeds from a non-deterministic source and returns the seed used. */
  seed(): number | bigint {
    const s = nonDeterministicSeed();
    this.setSeed(s);
    return seedToPublic(s);
  }

  /** ATen mt19937::init_with_uint32 (Knuth's init_genrand multiplier 1812433253). */
  private setSeed(s: bigint): void {
    this.seed_ = s;
    const mt = this.mt;
    mt[0] = Number(s & 0xffffffffn);
    for (let j = 1; j < N; j++) {
      const p = mt[j - 1];
      mt[j] = (Math.imul(1812433253, p ^ (p >>> 30)) + j) >>> 0;
    }
    this.left = 1;
    this.nextIdx = 0;
    this.nextDoubleNormal = null;
  }

  /** MT19937 state transition (generate the next 624 words). */
  private twist(): void {
    const mt = this.mt;
    let k = 0;
    for (; k < N - M; k++) {
      const y = (mt[k] & UPPER_MASK) | (mt[k + 1] & LOWER_MASK);
      mt[k] = mt[k + M] ^ (y >>> 1) ^ (mt[k + 1] & 1 ? MATRIX_A : 0);
    }
    for (; k < N - 1; k++) {
      const y = (mt[k] & UPPER_MASK) | (mt[k + 1] & LOWER_MASK);
      mt[k] = mt[k + M - N] ^ (y >>> 1) ^ (mt[k + 1] & 1 ? MATRIX_A : 0);
    }
    const y = (mt[N - 1] & UPPER_MASK) | (mt[0] & LOWER_MASK);
    mt[N - 1] = mt[M - 1] ^ (y >>> 1) ^ (mt[0] & 1 ? MATRIX_A : 0);
    this.left = N;
    this.nextIdx = 0;
  }

  /** CPUGeneratorImpl::random(): one tempered 32-bit draw. */
  nextUint32(): number {
    if (--this.left === 0) this.twist();
    let y = this.mt[this.nextIdx++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** uniform_real_distribution<float>(0, 1): 24 random bits. */
  private uniformF32(): number {
    return (this.nextUint32() & 0xffffff) * TWO_POW_M24;
  }

  /** uniform_real_distribution<double>(0, 1): low 53 bits of random64() = (hi << 32) | lo. */
  private uniformF64(): number {
    const hi = this.nextUint32(); // first draw is the high word
    const lo = this.nextUint32();
    return ((hi & 0x1fffff) * TWO_POW_32 + lo) * TWO_POW_M53;
  }

  /** normal_distribution<double>(0, 1) with torch's cached second value. */
  private normalF64(): number {
    if (this.nextDoubleNormal !== null) {
      const v = this.nextDoubleNormal;
      this.nextDoubleNormal = null;
      return v;
    }
    const u1 = this.uniformF64();
    const u2 = this.uniformF64();
    const r = Math.sqrt(-2 * Math.log(1 - u2)); // 1 - u2 is exact for 53-bit u2
    const theta = TWO_PI * u1;
    this.nextDoubleNormal = r * Math.sin(theta);
    return r * Math.cos(theta);
  }

  /** `torch.rand(shape, generator=g)` as a Float32Array (row-major). */
  randArray(shape: number[]): Float32Array {
    const n = numelOf(shape, "rand");
    const out = new Float32Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniformF32();
    return out;
  }

  /** `torch.rand(shape, generator=g, dtype=torch.float64)`. */
  randFloat64(shape: number[]): Float64Array {
    const n = numelOf(shape, "randFloat64");
    const out = new Float64Array(n);
    for (let i = 0; i < n; i++) out[i] = this.uniformF64();
    return out;
  }

  /** `torch.randn(shape, generator=g)` (float32) as a Float32Array (row-major). */
  randnArray(shape: number[]): Float32Array {
    const n = numelOf(shape, "randn");
    const out = new Float32Array(n);
    if (n >= 16) {
      // ATen normal_fill (float): uniforms first, then Box-Muller per 16-block.
      for (let i = 0; i < n; i++) out[i] = this.uniformF32();
      for (let i = 0; i + 16 <= n; i += 16) boxMuller16F32(out, i);
      if (n % 16 !== 0) {
        const off = n - 16; // recompute the last 16 from fresh uniforms
        for (let i = 0; i < 16; i++) out[off + i] = this.uniformF32();
        boxMuller16F32(out, off);
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = this.normalF64(); // rounded to float32 on store
    }
    return out;
  }

  /** `torch.randn(shape, generator=g, dtype=torch.float64)`. */
  randnFloat64(shape: number[]): Float64Array {
    const n = numelOf(shape, "randnFloat64");
    const out = new Float64Array(n);
    if (n >= 16) {
      // ATen normal_fill<double>: same 16-block scheme with 53-bit uniforms, all in double.
      for (let i = 0; i < n; i++) out[i] = this.uniformF64();
      for (let i = 0; i + 16 <= n; i += 16) boxMuller16F64(out, i);
      if (n % 16 !== 0) {
        const off = n - 16;
        for (let i = 0; i < 16; i++) out[off + i] = this.uniformF64();
        boxMuller16F64(out, off);
      }
    } else {
      for (let i = 0; i < n; i++) out[i] = this.normalF64();
    }
    return out;
  }

  /** `torch.randn(shape, generator=g)` as a float32 tf.Tensor (a 4-number shape gives a tf.Tensor4D). */
  randn<S extends number[]>(shape: [...S]): TensorOfShape<S> {
    return tf.tensor(this.randnArray(shape), shape, "float32") as TensorOfShape<S>;
  }

  /** `torch.rand(shape, generator=g)` as a float32 tf.Tensor (a 4-number shape gives a tf.Tensor4D). */
  rand<S extends number[]>(shape: [...S]): TensorOfShape<S> {
    return tf.tensor(this.randArray(shape), shape, "float32") as TensorOfShape<S>;
  }

  /** A copy of the full state (`g.get_state()`), for replaying draws with setState. */
  getState(): GeneratorState {
    return {
      seed: this.seed_,
      mt: this.mt.slice(),
      left: this.left,
      next: this.nextIdx,
      nextDoubleNormal: this.nextDoubleNormal,
    };
  }

  /** Restores a state from getState (`g.set_state(s)`); the state object is copied, not aliased. */
  setState(s: GeneratorState): void {
    if (!s || !(s.mt instanceof Uint32Array) || s.mt.length !== N) {
      throw new TypeError(`setState: expected a GeneratorState with mt: Uint32Array(${N})`);
    }
    if (!Number.isInteger(s.left) || s.left < 1 || s.left > N || !Number.isInteger(s.next) || s.next < 0 || s.next > N) {
      throw new RangeError(`setState: invalid MT19937 position (left=${s.left}, next=${s.next})`);
    }
    this.mt.set(s.mt);
    this.left = s.left;
    this.nextIdx = s.next;
    this.seed_ = BigInt.asUintN(64, BigInt(s.seed));
    this.nextDoubleNormal = s.nextDoubleNormal ?? null;
  }

  /** `g.clone_state()`-like: an independent generator with the same state. */
  clone(): Generator {
    const g = new Generator("cpu");
    g.setState(this.getState());
    return g;
  }
}

/**
 * ATen normal_fill_16 on float32, as the AVX2 kernel computes it: theta = f32(2*pi) * u2 and
 * radius = sqrt(-2 log(1 - u)) in float32. torch uses SLEEF's 1-ulp logf/sincosf there; we use
 * correctly rounded-ish float64 Math.* rounded to float32, which agrees within a few 1e-7.
 */
function boxMuller16F32(d: Float32Array, off: number): void {
  const f = Math.fround;
  for (let j = 0; j < 8; j++) {
    const u1 = 1 - d[off + j]; // exact: 24-bit uniform
    const u2 = d[off + j + 8];
    const radius = f(Math.sqrt(f(-2 * f(Math.log(u1)))));
    const theta = f(TWO_PI_F32 * u2);
    d[off + j] = radius * f(Math.cos(theta));
    d[off + j + 8] = radius * f(Math.sin(theta));
  }
}

/** ATen normal_fill_16<double>: Box-Muller on 8 pairs (x[j], x[j+8]) in double. */
function boxMuller16F64(d: Float64Array, off: number): void {
  for (let j = 0; j < 8; j++) {
    const u1 = 1 - d[off + j];
    const u2 = d[off + j + 8];
    const radius = Math.sqrt(-2 * Math.log(u1));
    const theta = TWO_PI * u2;
    d[off + j] = radius * Math.cos(theta);
    d[off + j + 8] = radius * Math.sin(theta);
  }
}

let defaultGen: Generator | null = null;

/** torch's default CPU generator (seeded non-deterministically on first use). */
export function defaultGenerator(): Generator {
  if (!defaultGen) {
    defaultGen = new Generator("cpu");
    defaultGen.seed();
  }
  return defaultGen;
}

/** `torch.manual_seed(seed)`: seeds the default generator; returns it. */
export function manualSeed(seed: number | bigint): Generator {
  return defaultGenerator().manualSeed(seed);
}

/**
 * diffusers.utils.torch_utils.randn_tensor. With a list of generators, batch item i is drawn as
 * randn([1, ...shape.slice(1)]) from generator[i] and the rows are concatenated on axis 0
 * (a list of length 1 acts like a single generator, as in diffusers). Without a generator the
 * default generator is used.
 */
export function randnTensor<S extends number[]>(shape: [...S], opts: { generator?: Generator | Generator[] } = {}): TensorOfShape<S> {
  const n = numelOf(shape, "randnTensor");
  let gen = opts.generator;
  if (Array.isArray(gen) && gen.length === 1) gen = gen[0];
  if (!Array.isArray(gen)) {
    return tf.tensor((gen ?? defaultGenerator()).randnArray(shape), shape, "float32") as TensorOfShape<S>;
  }
  const batch = shape.length > 0 ? shape[0] : 1;
  if (shape.length === 0 || gen.length !== batch) {
    throw new Error(
      `randnTensor: generator is a list of ${gen.length} generators but the batch size (shape[0]) is ` +
        `${shape.length === 0 ? "undefined (0-d shape)" : batch}; pass one generator per batch item or a single generator`,
    );
  }
  const rowShape = [1, ...shape.slice(1)];
  const rowLen = n / batch;
  const out = new Float32Array(n);
  for (let i = 0; i < batch; i++) {
    if (!(gen[i] instanceof Generator)) throw new TypeError(`randnTensor: generator[${i}] is not a Generator`);
    out.set(gen[i].randnArray(rowShape), i * rowLen);
  }
  return tf.tensor(out, shape, "float32") as TensorOfShape<S>;
}
