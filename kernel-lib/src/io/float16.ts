// IEEE 754 half precision and bfloat16 <-> float32. tfjs has no float16 dtype, so half weights are
// widened on load: by a small WebAssembly SIMD routine (8 halves per step, bit recipe below) through a
// few-MiB scratch the loader reads the file into, else by a 65536-entry table of float32 bit patterns.
// Both give torch's .float() bits for all 65536 halves.

let LUT: Uint32Array | null = null;

/** float32 bits of every half: sign | exponent + 112 | mantissa << 13; subnormals normalised; Inf/NaN keep their payload (as torch's .float()). */
function halfLut(): Uint32Array {
  if (LUT) return LUT;
  LUT = new Uint32Array(65536);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const e = (h >> 10) & 0x1f;
    const m = h & 0x3ff;
    if (e === 31) LUT[h] = (sign | 0x7f800000 | (m << 13)) >>> 0;
    else if (e !== 0) LUT[h] = (sign | ((e + 112) << 23) | (m << 13)) >>> 0;
    else { f[0] = m * 2 ** -24; LUT[h] = (sign | u[0]) >>> 0; } // zero or subnormal: m * 2^-24
  }
  return LUT;
}

/**
 * Checks that widening `n` 2-byte values of `src` into `out` in forward order never overwrites a value
 * not yet read: src lies outside out, or starts at least 2n bytes into it (the upper half).
 */
function checkWidenInPlace(src: Uint16Array, out: Float32Array, what: string): void {
  if (src.length !== out.length) throw new Error(`${what}: ${src.length} values into an array of ${out.length}`);
  if (src.buffer !== out.buffer) return;
  const start = out.byteOffset, end = out.byteOffset + out.byteLength;
  const s0 = src.byteOffset, s1 = src.byteOffset + src.byteLength;
  if (s1 <= start || s0 >= end) return;
  if (s0 < start + 2 * out.length) {
    throw new Error(`${what}: the 2-byte values must sit in the upper half of the output (byte ${start + 2 * out.length} on), not at byte ${s0}`);
  }
}

// The SIMD routine f16to32(src, dst, blocks) widens 8 halves per block on a memory of its own. Per
// lane, with em = h & 0x7fff (F. Giesen's half->float): normal: (em << 13) + (112 << 23); Inf/NaN
// (exponent 31): + 112 << 23 once more; zero/subnormal (exponent 0): as_float((em << 13) + (113 << 23))
// - 2^-14, exact; then | (h & 0x8000) << 16.
const leb = (n: number): number[] => { const o: number[] = []; do { let b = n & 0x7f; n >>>= 7; if (n) b |= 0x80; o.push(b); } while (n); return o; };
const simdOp = (op: number): number[] => [0xfd, ...leb(op)];
const v128Splat = (v: number): number[] => { const b: number[] = []; for (let i = 0; i < 16; i++) b.push((v >>> (8 * (i % 4))) & 0xff); return [...simdOp(12), ...b]; };
const [AND, OR, BITSELECT, EQ, ADD, SHL, FSUB, LOAD, STORE, EXT_LO, EXT_HI] = [0x4e, 0x50, 0x52, 0x37, 174, 171, 229, 0, 11, 169, 170];

function float16Module(): Uint8Array {
  const get = (i: number) => [0x20, i], set = (i: number) => [0x21, i];
  // locals: 0 src, 1 dst, 2 blocks (i32); 3 eight halves, 4 x, 5 em, 6 em << 13, 7 exponent bits (v128)
  const widen = [
    ...set(4),
    ...get(4), ...v128Splat(0x7fff), ...simdOp(AND), ...set(5),
    ...get(5), 0x41, 13, ...simdOp(SHL), ...set(6),
    ...get(5), ...v128Splat(0x7c00), ...simdOp(AND), ...set(7),
    ...get(6), ...v128Splat(0x38800000), ...simdOp(ADD), ...v128Splat(0x38800000), ...simdOp(FSUB),
    ...get(6), ...v128Splat(0x38000000), ...simdOp(ADD),
    ...get(7), ...v128Splat(0x7c00), ...simdOp(EQ), ...v128Splat(0x38000000), ...simdOp(AND), ...simdOp(ADD),
    ...get(7), ...v128Splat(0), ...simdOp(EQ),
    ...simdOp(BITSELECT),
    ...get(4), ...v128Splat(0x8000), ...simdOp(AND), 0x41, 16, ...simdOp(SHL), ...simdOp(OR),
  ];
  const body = [
    1, 5, 0x7b,
    0x02, 0x40, ...get(2), 0x45, 0x0d, 0, 0x03, 0x40,
    ...get(0), ...simdOp(LOAD), 4, 0, ...set(3),
    ...get(1), ...get(3), ...simdOp(EXT_LO), ...widen, ...simdOp(STORE), 4, 0,
    ...get(1), ...get(3), ...simdOp(EXT_HI), ...widen, ...simdOp(STORE), 4, 16,
    ...get(0), 0x41, 16, 0x6a, ...set(0), ...get(1), 0x41, 32, 0x6a, ...set(1),
    ...get(2), 0x41, 1, 0x6b, 0x22, 2, 0x0d, 0,
    0x0b, 0x0b, 0x0b,
  ];
  const section = (id: number, b: number[]) => [id, ...leb(b.length), ...b];
  const name = (t: string) => [...leb(t.length), ...Buffer.from(t)];
  return new Uint8Array([0, 0x61, 0x73, 0x6d, 1, 0, 0, 0,
    ...section(1, [1, 0x60, 3, 0x7f, 0x7f, 0x7f, 0]),
    ...section(2, [1, ...name("env"), ...name("memory"), 2, 0, 1]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name("f16to32"), 0, 0]),
    ...section(10, [1, ...leb(body.length), ...body])]);
}

/** The part of the WebAssembly API used here (the project's TS lib has no DOM / WebAssembly types). */
interface WasmApi {
  validate(bytes: Uint8Array): boolean;
  Memory: new (d: { initial: number }) => { buffer: ArrayBuffer };
  Module: new (bytes: Uint8Array) => object;
  Instance: new (m: object, imports: object) => { exports: Record<string, unknown> };
}

/** Halves per chunk: 4 MiB read, 8 MiB written, cache-sized scratch. */
const CHUNK = 1 << 21;
interface Widener { halves: Uint8Array; floats: Uint32Array; run(src: number, dst: number, blocks: number): void }
let widener: Widener | null | undefined;

function simdWidener(): Widener | null {
  if (widener !== undefined) return widener;
  widener = null;
  try {
    const wa = (globalThis as unknown as { WebAssembly?: WasmApi }).WebAssembly;
    const bytes = float16Module();
    if (wa?.validate(bytes)) {
      const memory = new wa.Memory({ initial: (6 * CHUNK) / 65536 });
      const inst = new wa.Instance(new wa.Module(bytes), { env: { memory } });
      const run = inst.exports.f16to32 as (src: number, dst: number, blocks: number) => void;
      widener = { halves: new Uint8Array(memory.buffer, 0, 2 * CHUNK), floats: new Uint32Array(memory.buffer, 2 * CHUNK, CHUNK), run };
    }
  } catch {
    widener = null; // no WebAssembly SIMD here: the table does it
  }
  return widener;
}

/**
 * Widens `out.length` halves into `out`, chunk by chunk: fill(dst, start, count) writes the 2-byte
 * values [start, start + count) into dst (a loader reads the file there).
 */
export function widenFloat16(out: Float32Array, fill: (dst: Uint8Array, start: number, count: number) => void): void {
  const n = out.length;
  const o = new Uint32Array(out.buffer, out.byteOffset, n);
  const lut = halfLut();
  const w = simdWidener();
  if (!w) {
    const scratch = new Uint16Array(Math.min(n, CHUNK));
    const bytes = new Uint8Array(scratch.buffer);
    for (let start = 0; start < n; start += CHUNK) {
      const count = Math.min(CHUNK, n - start);
      fill(bytes, start, count);
      for (let i = 0; i < count; i++) o[start + i] = lut[scratch[i]];
    }
    return;
  }
  const halves = new Uint16Array(w.halves.buffer, w.halves.byteOffset, CHUNK);
  for (let start = 0; start < n; start += CHUNK) {
    const count = Math.min(CHUNK, n - start);
    fill(w.halves, start, count);
    const blocks = count >> 3;
    w.run(0, 2 * CHUNK, blocks);
    o.set(w.floats.subarray(0, 8 * blocks), start);
    for (let i = 8 * blocks; i < count; i++) o[start + i] = lut[halves[i]];
  }
}

/** Widens halves into `out` (same length); `src` may be the upper half of `out`'s own bytes. */
export function float16ToFloat32Into(src: Uint16Array, out: Float32Array): void {
  checkWidenInPlace(src, out, "float16ToFloat32Into");
  const srcBytes = new Uint8Array(src.buffer, src.byteOffset, src.byteLength);
  // chunk k is copied out of src before out's chunk k is written, which ends before src's chunk k + 1
  widenFloat16(out, (dst, start, count) => dst.set(srcBytes.subarray(2 * start, 2 * (start + count))));
}

export function float16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  float16ToFloat32Into(src, out);
  return out;
}

/** bfloat16 is the top half of a float32: shift it back into place. `src` may be the upper half of `out`. */
export function bfloat16ToFloat32Into(src: Uint16Array, out: Float32Array): void {
  checkWidenInPlace(src, out, "bfloat16ToFloat32Into");
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < o.length; i++) o[i] = src[i] << 16;
}

export function bfloat16ToFloat32(src: Uint16Array): Float32Array {
  const out = new Float32Array(src.length);
  bfloat16ToFloat32Into(src, out);
  return out;
}

/** float32 -> half, round to nearest even (as torch's .half()). */
export function float32ToFloat16(src: Float32Array): Uint16Array {
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  const out = new Uint16Array(src.length);
  for (let i = 0; i < src.length; i++) {
    f[0] = src[i];
    const x = u[0];
    const sign = (x >>> 16) & 0x8000;
    const exp = (x >>> 23) & 0xff;
    let mant = x & 0x7fffff;
    if (exp === 0xff) { out[i] = sign | 0x7c00 | (mant ? 0x200 : 0); continue; }
    const e = exp - 127 + 15;
    if (e >= 31) { out[i] = sign | 0x7c00; continue; }
    if (e <= 0) {
      if (e < -10) { out[i] = sign; continue; }
      mant |= 0x800000;
      const shift = 14 - e;
      let h = mant >>> shift;
      const rem = mant & ((1 << shift) - 1);
      const half = 1 << (shift - 1);
      if (rem > half || (rem === half && (h & 1))) h++;
      out[i] = sign | h;
      continue;
    }
    let h = (e << 10) | (mant >>> 13);
    const rem = mant & 0x1fff;
    if (rem > 0x1000 || (rem === 0x1000 && (h & 1))) h++;
    out[i] = sign | h;
  }
  return out;
}
