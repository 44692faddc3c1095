// numpy's float64 arithmetic, as diffusers' set_timesteps computes with numpy: round (half to even),
// linspace, arange, and interp on the training grid.

/** numpy's round (half to even). */
export function roundHalfEven(x: number): number {
  if (Math.abs(x % 1) === 0.5) return 2 * Math.round(x / 2);
  return Math.round(x);
}

/** `np.linspace(start, stop, num)` (endpoint=True): i*step + start, last element exactly stop. */
export function npLinspace(start: number, stop: number, num: number): number[] {
  const out: number[] = [];
  const div = num - 1;
  const step = (stop - start) / div;
  for (let i = 0; i < num; i++) out.push(div > 0 ? i * step + start : start);
  if (num > 1) out[num - 1] = stop;
  return out;
}

/** `np.arange(start, stop, step)` for floats: length ceil((stop-start)/step), x_i = start + i*((start+step)-start). */
export function npArange(start: number, stop: number, step: number): number[] {
  const len = Math.max(0, Math.ceil((stop - start) / step));
  const out: number[] = [];
  if (len > 0) out.push(start);
  if (len > 1) out.push(start + step);
  const delta = start + step - start;
  for (let i = 2; i < len; i++) out.push(start + i * delta);
  return out;
}

/**
 * `np.interp(x, arange(len(fp)), fp)` in float64, numpy's own formula: exact grid points give
 * fp[j], otherwise slope * (x - j) + fp[j]; values outside [0, len-1] are clamped to the ends.
 */
export function interpOnIndex(x: ArrayLike<number>, fp: ArrayLike<number>): Float64Array {
  const n = fp.length;
  const out = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (Number.isNaN(v)) out[i] = v;
    else if (n === 1 || v <= 0) out[i] = fp[0];
    else if (v >= n - 1) out[i] = fp[n - 1];
    else {
      const j = Math.floor(v);
      out[i] = j === v ? fp[j] : (fp[j + 1] - fp[j]) * (v - j) + fp[j];
    }
  }
  return out;
}
