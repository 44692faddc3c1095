// The caption grammar of the captioned-shapes data, written once (utils/shapes-captions.ts): the generator
// (datasets/generators/shapes.mjs) and the hidden checks' random prompts both build their captions with it.
import { describe, it, expect } from "vitest";
import { Generator } from "../src/random/generator.js";
import { SHAPE_COLOURS, SHAPE_KINDS, shapesCaption, shapesPrompt } from "../src/utils/shapes-captions.js";
// @ts-expect-error plain JavaScript module without type declarations
import { COLOURS, SHAPES, shapeParams } from "../../datasets/generators/shapes.mjs";

const GRAMMAR = new RegExp(`^(a|an|two|three) (${SHAPE_COLOURS.join("|")}) (${SHAPE_KINDS.join("|")})s?( on an? (${SHAPE_COLOURS.join("|")}) background)?$`);

describe("the shapes caption grammar", () => {
  it("says count, colour, shape and the background", () => {
    expect(shapesCaption({ count: 1, colour: "red", kind: "circle", background: null })).toBe("a red circle");
    expect(shapesCaption({ count: 1, colour: "orange", kind: "square", background: "blue" })).toBe("an orange square on a blue background");
    expect(shapesCaption({ count: 3, colour: "yellow", kind: "triangle", background: "orange" })).toBe("three yellow triangles on an orange background");
    expect(() => shapesCaption({ count: 4, colour: "red", kind: "circle", background: null })).toThrow(/count 4/);
  });

  it("is the generator's: its colours, shapes and captions", () => {
    expect(Object.keys(COLOURS)).toEqual([...SHAPE_COLOURS]);
    expect(SHAPES).toEqual([...SHAPE_KINDS]);
    for (let i = 0; i < 50; i++) {
      const p = shapeParams(i, 4);
      expect(p.caption).toMatch(GRAMMAR);
      const named = p.caption.endsWith(" background");
      expect(shapesCaption({ count: p.count, colour: p.colour, kind: p.kind, background: named ? p.background : null })).toBe(p.caption);
    }
  });

  it("random prompts follow it, seeded", () => {
    const source = (seed: number) => {
      const g = new Generator().manualSeed(seed);
      const rand = () => g.randArray([1])[0];
      return { rand, pick: <T>(items: readonly T[]): T => items[Math.min(items.length - 1, Math.floor(items.length * rand()))] };
    };
    const a = Array.from({ length: 40 }, ((r) => () => shapesPrompt(r))(source(1)));
    for (const p of a) expect(p).toMatch(GRAMMAR);
    expect(Array.from({ length: 40 }, ((r) => () => shapesPrompt(r))(source(1)))).toEqual(a);
    expect(new Set(a).size).toBeGreaterThan(20);
  });
});
