// Bad numbers given to the schedulers (issue 13, section 1): each fails at once with an error that names
// the argument, what was given and what is allowed; nothing leaks; the scheduler still works after.
import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import {
  DDIMScheduler,
  DDPMScheduler,
  DPMSolverMultistepScheduler,
  EulerAncestralDiscreteScheduler,
  EulerDiscreteScheduler,
  HeunDiscreteScheduler,
  LCMScheduler,
  LMSDiscreteScheduler,
  MAX_TRAIN_TIMESTEPS,
  PNDMScheduler,
  type SchedulerClass,
  type SchedulerMixin,
  UniPCMultistepScheduler,
} from "../src/schedulers/index.js";

const ALL: SchedulerClass[] = [
  DDPMScheduler,
  DDIMScheduler,
  PNDMScheduler,
  LMSDiscreteScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  HeunDiscreteScheduler,
  DPMSolverMultistepScheduler,
  UniPCMultistepScheduler,
  LCMScheduler,
];

/** Runs `f`, expects it to throw `pattern`, and checks that it left no tensor behind. */
function expectCleanError(f: () => unknown, pattern: RegExp): void {
  const before = tf.memory().numTensors;
  expect(f).toThrow(pattern);
  expect(tf.memory().numTensors).toBe(before);
}

/** A few steps of `s` on a small sample with a fixed fake model; returns the final sample's values. */
function run(s: SchedulerMixin, steps: number): Float32Array {
  s.setTimesteps(steps);
  let x = tf.ones([1, 4, 4, 2]);
  for (const t of s.timesteps) {
    const input = s.scaleModelInput(x, t);
    const eps = tf.mul(input, 0.1);
    const out = s.step(eps, t, x) as { prevSample: tf.Tensor; predOriginalSample?: tf.Tensor };
    tf.dispose([input, eps, x, out.predOriginalSample ?? []].flat());
    x = out.prevSample;
  }
  const values = x.dataSync() as Float32Array;
  x.dispose();
  return values;
}

describe("setTimesteps: num_inference_steps a positive integer, at most num_train_timesteps", () => {
  for (const cls of ALL) {
    it(`${cls.className}: 1e9, 1001, 0, -1, 2.5, NaN, Infinity and "10" fail fast and clearly; 4 works after`, () => {
      const s = new cls();
      for (const bad of [1e9, 1001, 0, -1, 2.5, NaN, Infinity, "10"]) {
        expectCleanError(() => s.setTimesteps(bad as number), /num_inference_steps.*(\[1, 1000\]|cannot be larger than num_train_timesteps 1000)/);
      }
      expect(() => s.setTimesteps(1e9)).toThrow(/\[1, 1000\]/);
      expect(() => s.setTimesteps(NaN)).toThrow(/got NaN/);
      const values = run(s, 4);
      expect(values.every(Number.isFinite)).toBe(true);
    });
  }

  it("PNDM no longer gives 1002 timesteps for 1001 steps, and the largest count still works", () => {
    const s = new PNDMScheduler({ skip_prk_steps: true });
    expect(() => s.setTimesteps(1001)).toThrow(/num_inference_steps 1001 cannot be larger than num_train_timesteps 1000/);
    s.setTimesteps(1000);
    expect(s.timesteps.length).toBe(1001); // PLMS repeats its second timestep, as diffusers
  });
});

describe("constructor / fromConfig: config numbers bounded before any table is built", () => {
  for (const cls of ALL) {
    it(`${cls.className}: num_train_timesteps 1e9, 0 and NaN fail with the allowed range`, () => {
      const range = new RegExp(`"num_train_timesteps" must be an integer in \\[1, ${MAX_TRAIN_TIMESTEPS}\\]`);
      for (const bad of [1e9, MAX_TRAIN_TIMESTEPS + 1, 0, -5]) {
        expectCleanError(() => new cls({ num_train_timesteps: bad }), range);
        expectCleanError(() => (cls as unknown as typeof DDPMScheduler).fromConfig({ num_train_timesteps: bad }), range);
      }
      // a non-integer is a type error of the config (io/config.ts), named the same way
      expect(() => new cls({ num_train_timesteps: NaN })).toThrow(/num_train_timesteps/);
      expect(new cls({ num_train_timesteps: 500 }).length).toBe(500);
    });
  }

  it("beta_start / beta_end outside [0, 1] or NaN, a negative steps_offset and a NaN float fail with the key named", () => {
    expectCleanError(() => new DDPMScheduler({ beta_start: NaN }), /"beta_start" must be a finite number in \[0, 1\]; got NaN/);
    expectCleanError(() => new DDIMScheduler({ beta_end: 2 }), /"beta_end" must be a finite number in \[0, 1\]; got 2/);
    expectCleanError(() => new EulerDiscreteScheduler({ steps_offset: -1 }), /"steps_offset" must be an integer in \[0, 999\]; got -1/);
    expectCleanError(() => new DDPMScheduler({ clip_sample_range: Infinity }), /"clip_sample_range" must be a finite number; got Infinity/);
    expectCleanError(() => DPMSolverMultistepScheduler.fromConfig({ num_train_timesteps: 1000 }, { sample_max_value: NaN }), /"sample_max_value".*got NaN/);
    expectCleanError(() => new UniPCMultistepScheduler({ solver_order: 1e9 }), /"solver_order" must be an integer in \[1, 16\]; got 1000000000/);
  });
});

describe("step(): the timestep must be finite and within the schedule", () => {
  for (const cls of [DPMSolverMultistepScheduler, UniPCMultistepScheduler]) {
    it(`${cls.className}: timestep 5000, -1, NaN and Infinity fail before any history is kept; the next valid step works`, () => {
      const s = new cls();
      s.setTimesteps(10);
      const x = tf.ones([1, 4, 4, 2]);
      for (const bad of [5000, -1, NaN, Infinity]) {
        expectCleanError(() => s.step(x, bad, x), /step: timestep must be a finite number in \[0, 999\]/);
      }
      expect(() => s.step(x, NaN, x)).toThrow(/got NaN/);
      for (const bad of [5000, NaN, -1]) expectCleanError(() => s.addNoise(x, x, [bad]), /addNoise: timestep .* must be an integer in \[0, 999\]/);
      expect(s.stepIndex).toBeNull();
      const out = s.step(x, s.timesteps[0], x);
      expect(s.stepIndex).toBe(1);
      out.prevSample.dispose();
      s.dispose();
      x.dispose();
    });
  }

  it("the integer-timestep schedulers already name the range; NaN included", () => {
    const x = tf.ones([1, 2, 2, 1]);
    for (const s of [new DDPMScheduler(), new DDIMScheduler()]) {
      s.setTimesteps(10);
      expectCleanError(() => s.step(x, NaN, x), /timestep NaN must be an integer in \[0, 999\]/);
      expectCleanError(() => s.step(x, 5000, x), /timestep 5000 must be an integer in \[0, 999\]/);
    }
    const e = new EulerDiscreteScheduler();
    e.setTimesteps(10);
    expectCleanError(() => e.step(x, NaN, x), /timestep NaN is not one of the scheduler's timesteps/);
    x.dispose();
  });

  it("step options: DDIM's eta and Euler's churn must be finite (eta Infinity was a NaN sample)", () => {
    const x = tf.ones([1, 2, 2, 1]);
    const ddim = new DDIMScheduler();
    ddim.setTimesteps(10);
    for (const bad of [Infinity, NaN, -1]) {
      expectCleanError(() => ddim.step(x, ddim.timesteps[0], x, { eta: bad }), new RegExp(`DDIMScheduler.step: eta must be a finite number >= 0; got ${bad}`));
    }
    const euler = new EulerDiscreteScheduler();
    euler.setTimesteps(10);
    const t = euler.timesteps[0];
    expectCleanError(() => euler.step(x, t, x, { sChurn: NaN }), /EulerDiscreteScheduler.step: sChurn must be a finite number >= 0; got NaN/);
    expectCleanError(() => euler.step(x, t, x, { sNoise: Infinity }), /sNoise must be a finite number; got Infinity/);
    expectCleanError(() => euler.step(x, t, x, { sTmax: NaN }), /sTmax must be a number \(not NaN\); got NaN/);
    const out = euler.step(x, t, x, { sTmax: Infinity });
    tf.dispose([out.prevSample, out.predOriginalSample]);
    x.dispose();
  });
});

describe("DPM-Solver++ 2M and UniPC at num_inference_steps = num_train_timesteps", () => {
  for (const cls of [DPMSolverMultistepScheduler, UniPCMultistepScheduler]) {
    it(`${cls.className}: 1000 steps give distinct timesteps and a finite sample (diffusers 0.27.2 repeats 500 and gives NaN)`, () => {
      const s = new cls();
      s.setTimesteps(1000);
      expect(new Set(s.timesteps).size).toBe(s.timesteps.length);
      expect(s.timesteps.filter((t) => t === 500).length).toBe(1);
      expect(s.timesteps.length).toBe(999); // the repeat dropped
      const before = tf.memory().numTensors;
      const values = run(s, 1000);
      expect(values.every(Number.isFinite)).toBe(true);
      expect(tf.memory().numTensors).toBe(before);
    });

    it(`${cls.className}: "leading" spacing with more steps than it can space fails with the largest count`, () => {
      const s = new cls({ timestep_spacing: "leading" });
      expectCleanError(() => s.setTimesteps(1000), /num_inference_steps 1000 .*"leading".*at most 999 steps/);
      expect(run(s, 999).every(Number.isFinite)).toBe(true);
    });
  }
});
