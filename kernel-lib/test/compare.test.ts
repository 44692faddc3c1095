// The exercises' self-checks (utils/compare.ts): feedback a student can act on. The grader's hidden checks use the
// same comparisons (grader/test/grading.test.ts tests the grader).
import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { compareArrays, compareNumbers, compareTensors } from "../src/utils/compare.js";

describe("feedback a student can act on", () => {
  const t = (v: number[], s = [v.length]) => tf.tensor(v, s);

  it("says where the worst error is, expected and got", () => {
    const r = compareTensors("x", t([1, 2, 3, 4.5], [2, 2]), t([1, 2, 3, 4], [2, 2]));
    expect(r.passed).toBe(false);
    expect(r.feedback).toBe("x: 1 of 4 values are off. Max |error| 0.5; the worst is at [1, 1]: expected 4, got 4.5 (tolerance 1.000e-5 + 1.000e-5·|expected|).");
  });

  it("recognises shape mix-ups, NaN, unchanged inputs, constants, a flipped sign and a missing factor", () => {
    expect(compareTensors("x", t([1, 2, 3, 4, 5, 6], [3, 2]), t([1, 2, 3, 4, 5, 6], [2, 3])).feedback).toMatch(/another order/);
    expect(compareTensors("x", t([1, NaN]), t([1, 2])).feedback).toMatch(/NaN .*\[1\]/);
    const input = t([5, 6, 7]);
    expect(compareTensors("x", t([5, 6, 7]), t([1, 2, 3]), { inputs: { sample: input } }).feedback).toMatch(/equals the input `sample` unchanged/);
    expect(compareTensors("x", t([0.5, 0.5, 0.5]), t([1, 2, 3])).feedback).toMatch(/Every value you returned is 0\.5/);
    expect(compareTensors("x", t([-1, -2, -3]), t([1, 2, 3])).feedback).toMatch(/sign flipped/);
    expect(compareTensors("x", t([2, 4, 6]), t([1, 2, 3]), { hint: "look at α/r." }).feedback).toMatch(/times 2: a missing or extra factor\. Hint: look at α\/r\.$/);
    expect(compareTensors("x", undefined, t([1])).feedback).toMatch(/undefined \(did the function return its result\?\)/);
    const gone = t([1]);
    gone.dispose();
    expect(compareTensors("x", gone, t([1])).feedback).toMatch(/was disposed/);
  });

  it("compares numbers (Infinity included) and arrays", () => {
    expect(compareNumbers("v", Infinity, Infinity).passed).toBe(true);
    expect(compareNumbers("v", "3", 3).feedback).toMatch(/should be a number/);
    expect(compareArrays("a", [1, 2], [1, 2]).passed).toBe(true);
    expect(compareArrays("a", 3, [1, 2]).feedback).toMatch(/should be an array of 2 numbers/);
  });
});
