// Parity of our torch CPU generator with the torch_rng fixtures (torch 1.13, AVX2 path).
// Tolerances from /work/shared/fixtures/README.md "Tolerances": uniform stream exact,
// randn with >= 16 elements atol 4e-6 (torch's vectorised log/sin/cos), < 16 elements exact.
import { describe, it, expect } from "vitest";
import { readFileSync } from "node:fs";
import * as tf from "@tensorflow/tfjs";
import { Generator, randnTensor, DEFAULT_RNG_SEED, manualSeed, defaultGenerator } from "../src/random/generator.js";
import { readSafetensorsArrays, type RawTensor } from "../src/io/safetensors.js";

const FIXTURE = "/work/shared/fixtures/torch_rng/torch_rng.safetensors";
const { tensors } = readSafetensorsArrays(FIXTURE);
const RANDN_ATOL = 4e-6;

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function fixture(key: string): RawTensor {
  const t = tensors.get(key);
  if (!t) throw new Error(`fixture key ${key} missing`);
  return t;
}

const numel = (s: number[]) => s.reduce((a, b) => a * b, 1);
const seedOf = (part: string) => Number(part.replace("seed", ""));

describe("fixture coverage", () => {
  it("every key of torch_rng.safetensors is checked by some test", () => {
    const handled = /^(randn|rand|randn_f64|diffusers_randn_tensor|sequence)\//;
    for (const k of tensors.keys()) expect(k).toMatch(handled);
    const cases = (JSON.parse(readFileSync(FIXTURE.replace(/\.safetensors$/, ".json"), "utf8")) as { cases: { key: string }[] }).cases;
    expect([...tensors.keys()].sort()).toEqual(cases.map((c) => c.key).sort());
    expect(tensors.size).toBe(39);
  });
});

describe("torch.rand / torch.randn with one seed", () => {
  const keys = [...tensors.keys()].filter((k) => /^(rand|randn|randn_f64|diffusers_randn_tensor)\/seed\d+\//.test(k));
  it.each(keys)("%s", (key) => {
    const t = fixture(key);
    const [kind, seedPart] = key.split("/");
    const g = new Generator("cpu").manualSeed(seedOf(seedPart));
    if (kind === "rand") {
      expect(t.dtype).toBe("F32");
      expect(Array.from(g.randArray(t.shape))).toEqual(Array.from(t.data)); // exact
    } else if (kind === "randn_f64") {
      expect(t.dtype).toBe("F64");
      expect(maxAbsDiff(g.randnFloat64(t.shape), t.data)).toBeLessThanOrEqual(1e-12);
    } else {
      const got = kind === "diffusers_randn_tensor"
        ? randnTensor(t.shape, { generator: g })
        : g.randn(t.shape);
      expect(got.shape).toEqual(t.shape);
      expect(got.dtype).toBe("float32");
      const vals = got.dataSync();
      got.dispose();
      if (numel(t.shape) < 16) {
        expect(Array.from(vals)).toEqual(Array.from(t.data)); // scalar double Box-Muller: exact
      } else {
        expect(maxAbsDiff(vals, t.data)).toBeLessThanOrEqual(RANDN_ATOL);
      }
    }
  });
});

describe("sequence: state carries over between scalar and vector paths", () => {
  for (const seed of [0, 42]) {
    it(`seed ${seed}: [3],[17],[1,4,8,8],[5],[16] from one generator`, () => {
      const g = new Generator().manualSeed(seed);
      const shapes = [[3], [17], [1, 4, 8, 8], [5], [16]];
      shapes.forEach((shape, i) => {
        const t = fixture(`sequence/seed${seed}/${i}_${shape.join("x")}`);
        expect(t.shape).toEqual(shape);
        const got = g.randnArray(shape);
        if (numel(shape) < 16) expect(Array.from(got)).toEqual(Array.from(t.data));
        else expect(maxAbsDiff(got, t.data)).toBeLessThanOrEqual(RANDN_ATOL);
      });
    });
  }
});

describe("randnTensor (diffusers.utils.torch_utils.randn_tensor)", () => {
  it("list of generators: one [1,...] draw per batch item, concatenated", () => {
    const t = fixture("diffusers_randn_tensor/list_seeds0_1/2x4x8x8");
    const gens = [new Generator().manualSeed(0), new Generator().manualSeed(1)];
    const got = randnTensor([2, 4, 8, 8], { generator: gens });
    expect(got.shape).toEqual([2, 4, 8, 8]);
    expect(maxAbsDiff(got.dataSync(), t.data)).toBeLessThanOrEqual(RANDN_ATOL);
    got.dispose();
  });

  it("list length != shape[0] throws naming the generator argument", () => {
    const gens = [new Generator().manualSeed(0), new Generator().manualSeed(1), new Generator().manualSeed(2)];
    expect(() => randnTensor([2, 4, 8, 8], { generator: gens })).toThrow(/generator.*3.*batch size.*2/);
    expect(() => randnTensor([2, 4], { generator: [] })).toThrow(/generator/);
  });

  it("without a generator uses the default generator (torch.manual_seed)", () => {
    manualSeed(42);
    const a = randnTensor([1, 4, 8, 8]);
    expect(defaultGenerator().initialSeed()).toBe(42);
    const b = new Generator().manualSeed(42).randnArray([1, 4, 8, 8]);
    expect(Array.from(a.dataSync())).toEqual(Array.from(b));
    a.dispose();
  });
});

describe("Generator API", () => {
  it("manualSeed returns this; initialSeed; default seed like torch.Generator()", () => {
    const g = new Generator();
    expect(g.initialSeed()).toBe(Number(DEFAULT_RNG_SEED));
    expect(g.manualSeed(1234)).toBe(g);
    expect(g.initialSeed()).toBe(1234);
    g.manualSeed(2n ** 64n - 1n);
    expect(g.initialSeed()).toBe(2n ** 64n - 1n);
    g.manualSeed(-1); // torch wraps negative seeds modulo 2^64
    expect(g.initialSeed()).toBe(2n ** 64n - 1n);
    expect(() => g.manualSeed(1.5)).toThrow(/integer/);
  });

  it("only the low 32 bits of the seed reach mt19937 (as in ATen)", () => {
    const a = new Generator().manualSeed(7).randArray([5]);
    const b = new Generator().manualSeed((1n << 40n) + 7n).randArray([5]);
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it("seed() picks a non-deterministic seed and reseeds", () => {
    const g = new Generator();
    const s = g.seed();
    expect(g.initialSeed()).toBe(s);
    const replay = new Generator().manualSeed(s).randArray([4]);
    expect(Array.from(g.randArray([4]))).toEqual(Array.from(replay));
  });

  it("getState/setState replays a draw, including the cached normal sample", () => {
    const g = new Generator().manualSeed(0);
    g.randnArray([3]); // leaves a cached second Box-Muller value
    const st = g.getState();
    expect(st.nextDoubleNormal).not.toBeNull();
    const first = [g.randnArray([5]), g.randnArray([40]), g.randArray([7])];
    g.setState(st);
    const again = [g.randnArray([5]), g.randnArray([40]), g.randArray([7])];
    for (let i = 0; i < 3; i++) expect(Array.from(again[i])).toEqual(Array.from(first[i]));
    // the state is a copy: drawing does not change the snapshot
    const st2 = g.getState();
    g.randArray([1000]);
    expect(st2.mt).not.toEqual(g.getState().mt);
  });

  it("clone is independent and continues the same stream", () => {
    const g = new Generator().manualSeed(42);
    g.randnArray([3]);
    const c = g.clone();
    const a = g.randnArray([20]);
    g.randnArray([100]); // advancing g does not move c
    const b = c.randnArray([20]);
    expect(Array.from(b)).toEqual(Array.from(a));
    expect(c.initialSeed()).toBe(42);
  });

  it("edge shapes: [] is one element, 0-sized is empty", () => {
    const g = new Generator().manualSeed(0);
    const s = g.randn([]);
    expect(s.shape).toEqual([]);
    expect(s.dataSync()[0]).toBe(Math.fround(1.5409960746765137)); // = randn/seed0/3 first value
    s.dispose();
    expect(g.randnArray([0, 4]).length).toBe(0);
    expect(() => g.randnArray([2, -1])).toThrow(/non-negative/);
  });

  it("randArray/randnArray do not allocate tf tensors; randn/rand return float32 tensors", () => {
    const g = new Generator().manualSeed(0);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 10; i++) { g.randArray([64]); g.randnArray([64]); }
    expect(tf.memory().numTensors).toBe(before);
    const r = g.rand([2, 3]);
    expect(r.dtype).toBe("float32");
    expect(r.shape).toEqual([2, 3]);
    r.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
