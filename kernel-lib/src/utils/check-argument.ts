// Checks of public arguments at the API boundary, before any tensor is made: each error names the
// call and the argument, shows what was given and says what is allowed (DESIGN.md "Errors").
// A bad number must fail here, fast and catchable, not as a wasm abort, a heap OOM or a black picture.

/**
 * Bounds of a call's sizes, far above what any machine can run, so that a typo (1e9) fails at once with
 * a clear error instead of a wasm abort or a heap OOM: pictures per call, the side of a picture in pixels.
 */
export const MAX_PICTURES_PER_CALL = 1024;
export const MAX_PICTURE_SIDE = 16384;

/** A public argument out of its allowed range (a RangeError, so `instanceof RangeError` still holds). */
export class ArgumentError extends RangeError {
  constructor(message: string) {
    super(message);
    this.name = "ArgumentError";
  }
}

/** A value as an error message shows it: NaN, Infinity, 1e9, "text", [1,2], a tensor's shape. */
export function showValue(v: unknown): string {
  if (typeof v === "number") return String(v);
  if (typeof v === "string") return JSON.stringify(v.length > 60 ? v.slice(0, 57) + "..." : v);
  if (v === undefined || v === null || typeof v === "boolean" || typeof v === "bigint") return String(v);
  if (Array.isArray(v)) return v.length > 8 ? `an array of ${v.length}` : `[${v.map(showValue).join(", ")}]`;
  const shape = (v as { shape?: unknown }).shape;
  if (Array.isArray(shape)) return `a tensor of shape [${shape.join(", ")}]`;
  return `a ${(v as object).constructor?.name ?? typeof v}`;
}

/** `where: name must be <allowed>; got <value>` (`hint` is appended when given). */
export function argumentError(where: string, name: string, allowed: string, value: unknown, hint = ""): ArgumentError {
  return new ArgumentError(`${where}: ${name} must be ${allowed}; got ${showValue(value)}${hint ? `. ${hint}` : ""}`);
}

/** An integer in [min, max] (a count, a size, a step number). */
export function checkInteger(where: string, name: string, value: unknown, min: number, max: number, hint = ""): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < min || value > max) {
    throw argumentError(where, name, `an integer in [${min}, ${max}]`, value, hint);
  }
  return value;
}

/** A finite number in [min, max] (default: any finite number). */
export function checkFinite(where: string, name: string, value: unknown, min = -Infinity, max = Infinity, hint = ""): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value < min || value > max) {
    const range = max === Infinity ? (min === -Infinity ? "a finite number" : `a finite number >= ${min}`)
      : min === -Infinity ? `a finite number <= ${max}` : `a finite number in [${min}, ${max}]`;
    throw argumentError(where, name, range, value, hint);
  }
  return value;
}

/** A number that is not NaN (an open bound such as S_tmax may be Infinity). */
export function checkNumber(where: string, name: string, value: unknown): number {
  if (typeof value !== "number" || Number.isNaN(value)) throw argumentError(where, name, "a number (not NaN)", value);
  return value;
}

/** A string or a non-empty array of strings (a prompt); returns the list. */
export function checkStringList(where: string, name: string, value: unknown): string[] {
  if (typeof value === "string") return [value];
  if (Array.isArray(value) && value.length > 0 && value.every((s) => typeof s === "string")) return value;
  throw argumentError(where, name, "a string or a non-empty array of strings", value);
}
