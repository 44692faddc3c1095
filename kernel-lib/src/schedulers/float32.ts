// torch's float32 arithmetic, reproduced where schedules are built (torch computes betas, alphas_cumprod and
// sigmas in float32 on CPU): a correctly rounded fused multiply-add, linspace, cumprod, and numpy's float32 log.

const f32 = Math.fround;
const fbuf = new Float32Array(1);
const ubuf = new Uint32Array(fbuf.buffer);

/** The float32 neighbour of finite float32 `x` in direction `up`. */
function nextF32(x: number, up: boolean): number {
  if (x === 0) return up ? 1.401298464324817e-45 : -1.401298464324817e-45;
  fbuf[0] = x;
  // positive: bits +1 moves away from zero; negative: the same moves toward -inf
  if ((x > 0) === up) ubuf[0] += 1;
  else ubuf[0] -= 1;
  return fbuf[0];
}

/**
 * Correctly rounded float32 fused multiply-add a*b + c for float32 a and integer-valued b
 * (a*b is exact in double). torch's AVX2 kernels are compiled with FMA contraction.
 */
export function fmaF32(a: number, b: number, c: number): number {
  const p = a * b;
  const s = p + c;
  const bb = s - p;
  const err = p - (s - bb) + (c - bb); // two-sum: s + err == p + c exactly
  const r = f32(s);
  if (err === 0 || r === s) return r;
  const other = nextF32(r, s > r);
  if (Math.abs(s - r) !== Math.abs(other - s)) return r; // not a tie: double rounding is harmless
  return err > 0 === other > r ? other : r;
}

/**
 * `torch.linspace(start, end, steps, dtype=torch.float32)` on CPU (torch 1.13, AVX2 build): step =
 * (end - start) / (steps - 1) in float32; element i = start + step*i for i < steps/2, else
 * end - step*(steps-1-i), each a fused multiply-add; blocks of 8 in the vectorized loop take the
 * first element that way and add j*step (float32) for the others; the tail (< 16) is scalar.
 */
export function linspaceF32(start: number, end: number, steps: number): Float32Array {
  const out = new Float32Array(steps);
  if (steps === 0) return out;
  const a = f32(start);
  const b = f32(end);
  if (steps === 1) {
    out[0] = a;
    return out;
  }
  const step = f32(f32(b - a) / (steps - 1));
  const half = Math.floor(steps / 2);
  const at = (i: number) => (i < half ? fmaF32(step, i, a) : fmaF32(-step, steps - 1 - i, b));
  let i = 0;
  for (; i + 16 <= steps; i += 16) {
    for (const base of [i, i + 8]) {
      const v0 = at(base);
      out[base] = v0;
      for (let j = 1; j < 8; j++) out[base + j] = f32(v0 + f32(j * step));
    }
  }
  for (; i < steps; i++) out[i] = at(i);
  return out;
}

/** `torch.cumprod(x, 0)` on CPU for float32: the product accumulates in DOUBLE, rounded only when stored. */
export function cumprodF32(x: ArrayLike<number>): Float32Array {
  const out = new Float32Array(x.length);
  let acc = 1;
  for (let i = 0; i < x.length; i++) {
    acc *= x[i];
    out[i] = acc;
  }
  return out;
}

/** `np.log` of a float32 array (float32 result). */
export function logF32(x: ArrayLike<number>): Float32Array {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = Math.log(x[i]);
  return out;
}
