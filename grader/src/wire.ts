// Values between the grader's judge and the student's kernel, as JSON: the inputs a check sends to the kernel and
// the raw outputs the student's functions return. Tensors and typed arrays travel as base64 of their bytes (exact
// float32), numbers that JSON cannot hold (NaN, ±Infinity) and undefined as tags. What the kernel sends back is
// untrusted: decoding builds only plain data and tensors, checks every tensor's byte count against its shape, and
// caps sizes, so a forged line can be wrong numbers but never code, a prototype or an out-of-memory.
import * as tf from "@tensorflow/tfjs";

/** Tagged values: {$t: shape, dtype, b64} tensor; {$a: typed array kind, b64}; {$n: "NaN" | "Infinity" | "-Infinity"};
 * {$u: 1} undefined; {$o: {...}} an object whose keys start with "$"; {$c: class name, $o: fields} a class instance;
 * {$f: name} a function; {$x: "disposed" | "deep" | ...} something that cannot travel. */
export type Wire = null | boolean | number | string | Wire[] | { [k: string]: Wire };

const TYPED = {
  Float32Array, Float64Array, Int32Array, Uint32Array, Int16Array, Uint16Array, Int8Array, Uint8Array, Uint8ClampedArray,
} as const;
type TypedName = keyof typeof TYPED;

/** Largest tensor or typed array a decoded value may hold (elements), and all of them together. */
export const MAX_ELEMENTS = 2 ** 26;
const MAX_DEPTH = 8;

function b64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
}

function isTensor(v: unknown): v is tf.Tensor {
  return v instanceof tf.Tensor || (typeof v === "object" && v !== null && "dataSync" in v && "shape" in v && "dtype" in v && "isDisposed" in v);
}

/** A value as JSON-safe data (see Wire). Never throws: what cannot travel becomes a {$x: reason} tag. */
export function encode(v: unknown, depth = 0): Wire {
  if (v === null || typeof v === "boolean" || typeof v === "string") return v;
  if (typeof v === "number") return Number.isFinite(v) ? v : { $n: String(v) };
  if (v === undefined) return { $u: 1 };
  if (typeof v === "bigint") return { $n: v.toString() };
  if (typeof v === "function") return { $f: v.name || "anonymous" };
  if (typeof v !== "object") return { $x: typeof v };
  if (depth > MAX_DEPTH) return { $x: "deep" };
  try {
    if (isTensor(v)) {
      if (v.isDisposed) return { $x: "disposed tensor", shape: [...v.shape] };
      if (v.dtype !== "float32" && v.dtype !== "int32" && v.dtype !== "bool") return { $x: `tensor of dtype ${v.dtype}` };
      const data = v.dataSync() as Float32Array | Int32Array | Uint8Array;
      return { $t: [...v.shape], dtype: v.dtype, b64: b64(new Uint8Array(data.buffer, data.byteOffset, data.byteLength)) };
    }
    if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
      const name = v.constructor.name as TypedName;
      if (!(name in TYPED)) return { $x: name };
      return { $a: name, b64: b64(new Uint8Array(v.buffer, v.byteOffset, v.byteLength)) };
    }
    if (Array.isArray(v)) return v.map((x) => encode(x, depth + 1));
    if (v instanceof Error) return { $x: "error", message: `${v.name}: ${v.message}` };
    if (v instanceof Map) return [...v.entries()].map(([k, x]) => [encode(k, depth + 2), encode(x, depth + 2)]);
    if (v instanceof Set) return [...v].map((x) => encode(x, depth + 1));
    const proto = Object.getPrototypeOf(v);
    const plain = proto === Object.prototype || proto === null;
    const fields: { [k: string]: Wire } = {};
    let dollar = false;
    for (const k of Object.keys(v)) {
      const x = (v as Record<string, unknown>)[k];
      // a class instance (a model, a scheduler) travels as its class name and its plain fields only
      if (!plain && x !== null && (typeof x === "object" || typeof x === "function")) continue;
      fields[k] = encode(x, depth + 1);
      if (k.startsWith("$")) dollar = true;
    }
    if (!plain) return { $c: String(v.constructor?.name ?? "object"), $o: fields };
    return dollar ? { $o: fields } : fields;
  } catch (e) {
    return { $x: `unreadable (${(e as Error).message})` };
  }
}

/** What a value that could not travel stands for on the judge's side (prints its reason). */
export class Untransferable {
  constructor(readonly reason: string) {}
  toString(): string {
    return `<${this.reason}>`;
  }
}

/** An object the kernel sent as a class instance: its fields, and the class's name. */
export class RemoteObject {
  constructor(readonly className: string, fields: Record<string, unknown>) {
    for (const [k, v] of Object.entries(fields)) Object.defineProperty(this, k, { value: v, enumerable: true });
  }
}

class Budget {
  left = MAX_ELEMENTS;
  take(n: number, what: string): void {
    if (!Number.isSafeInteger(n) || n < 0 || n > this.left) throw new Error(`${what}: ${n} elements is more than the ${MAX_ELEMENTS} a result may hold`);
    this.left -= n;
  }
}

const SAFE_KEY = (k: string) => k !== "__proto__" && k !== "constructor" && k !== "prototype";

function bytesOf(s: unknown, what: string): Buffer {
  if (typeof s !== "string" || !/^[A-Za-z0-9+/]*={0,2}$/.test(s)) throw new Error(`${what}: its data is not base64`);
  return Buffer.from(s, "base64");
}

/**
 * Data from encode() back as values: tensors (tf.tensor, owned by the caller: tf.dispose them), typed arrays,
 * plain objects and arrays. Throws a clear error for anything malformed.
 */
export function decode(w: unknown, budget = new Budget(), depth = 0, where = "value"): unknown {
  if (w === null || typeof w === "boolean" || typeof w === "string" || typeof w === "number") return w;
  if (depth > MAX_DEPTH + 2) throw new Error(`${where}: nested too deeply`);
  if (Array.isArray(w)) {
    budget.take(w.length, where);
    return w.map((x, i) => decode(x, budget, depth + 1, `${where}[${i}]`));
  }
  if (typeof w !== "object") throw new Error(`${where}: ${typeof w} is not data`);
  const o = w as Record<string, unknown>;
  if ("$t" in o) {
    const shape = o.$t;
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new Error(`${where}: tensor shape ${JSON.stringify(shape)} is not a shape`);
    const n = (shape as number[]).reduce((a, b) => a * b, 1);
    budget.take(n, where);
    const bytes = bytesOf(o.b64, where);
    const dtype = o.dtype;
    const size = dtype === "float32" || dtype === "int32" ? 4 : dtype === "bool" ? 1 : 0;
    if (!size) throw new Error(`${where}: tensor dtype ${String(dtype)} (allowed: float32, int32, bool)`);
    if (bytes.byteLength !== n * size) throw new Error(`${where}: ${bytes.byteLength} bytes for a ${dtype} tensor of shape [${shape}] (needs ${n * size})`);
    const copy = new Uint8Array(bytes); // aligned, owned
    const data = dtype === "float32" ? new Float32Array(copy.buffer) : dtype === "int32" ? new Int32Array(copy.buffer) : copy;
    return tf.tensor(data, shape as number[], dtype as "float32" | "int32" | "bool");
  }
  if ("$a" in o) {
    const name = o.$a as TypedName;
    if (typeof name !== "string" || !Object.prototype.hasOwnProperty.call(TYPED, name)) throw new Error(`${where}: ${String(name)} is not a typed array`);
    const Ctor = TYPED[name];
    const bytes = bytesOf(o.b64, where);
    if (bytes.byteLength % Ctor.BYTES_PER_ELEMENT) throw new Error(`${where}: ${bytes.byteLength} bytes do not make a ${name}`);
    budget.take(bytes.byteLength / Ctor.BYTES_PER_ELEMENT, where);
    return new Ctor(new Uint8Array(bytes).buffer);
  }
  if ("$n" in o) return Number(o.$n);
  if ("$u" in o) return undefined;
  if ("$f" in o) return new Untransferable(`function ${String(o.$f)}`);
  if ("$x" in o) return new Untransferable(String(o.$x) + (typeof o.message === "string" ? `: ${o.message}` : ""));
  const fieldsOf = (f: unknown): Record<string, unknown> => {
    if (typeof f !== "object" || f === null || Array.isArray(f)) throw new Error(`${where}: fields are not an object`);
    const out: Record<string, unknown> = {};
    const keys = Object.keys(f);
    budget.take(keys.length, where);
    for (const k of keys) if (SAFE_KEY(k)) out[k] = decode((f as Record<string, unknown>)[k], budget, depth + 1, `${where}.${k}`);
    return out;
  };
  if ("$c" in o) return new RemoteObject(String(o.$c), fieldsOf(o.$o));
  if ("$o" in o) return fieldsOf(o.$o);
  return fieldsOf(o);
}

/** Every tensor in a value, its arrays and plain objects (not inside class instances: a model keeps its weights). */
export function tensorsIn(v: unknown, out: tf.Tensor[] = [], depth = 0): tf.Tensor[] {
  if (depth > MAX_DEPTH + 3 || v === null || typeof v !== "object") return out;
  if (isTensor(v)) out.push(v);
  else if (Array.isArray(v)) v.forEach((x) => tensorsIn(x, out, depth + 1));
  else if ([Object.prototype, null].includes(Object.getPrototypeOf(v))) for (const x of Object.values(v)) tensorsIn(x, out, depth + 1);
  return out;
}
