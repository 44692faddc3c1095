import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { LMSDiscreteScheduler, gaussLegendre } from "../src/schedulers/scheduling-lms-discrete.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { expectClose } from "./helpers.js";
import { type CfgName, CFG_NAMES, rawConfig, runTrajectory, expectResolved, resolvedConfig, runLongLoop, expectSchedules } from "./scheduler-fixtures.js";

const NAME = "LMSDiscreteScheduler";

/**
 * Independent check of the LMS coefficients: expand the Lagrange basis polynomial into monomial
 * coefficients and integrate term by term (float64), after shifting tau by the interval start.
 */
function lagrangeIntegral(s: ArrayLike<number>, order: number, t: number, cur: number): number {
  const a = s[t];
  let poly = [1]; // in u = tau - a, lowest degree first
  for (let k = 0; k < order; k++) {
    if (k === cur) continue;
    const r = s[t - k] - a;
    const den = s[t - cur] - s[t - k];
    const next = new Array(poly.length + 1).fill(0);
    for (let i = 0; i < poly.length; i++) {
      next[i + 1] += poly[i] / den;
      next[i] -= (poly[i] * r) / den;
    }
    poly = next;
  }
  const h = s[t + 1] - a;
  return poly.reduce((acc, c, i) => acc + (c * h ** (i + 1)) / (i + 1), 0);
}

describe("LMSDiscreteScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (swaps between all ten: scheduler-swaps.test.ts)`, () => {
      expectResolved(LMSDiscreteScheduler.fromConfig(rawConfig(cfg)).config, resolvedConfig(cfg, NAME));
    });

    it(`${cfg}: set_timesteps(N) for N in {1,4,10,20,25,50}: float32 timesteps, sigmas, init_noise_sigma, order`, () => {
      const s = LMSDiscreteScheduler.fromConfig(rawConfig(cfg));
      // as diffusers, the constructor already set a 1000-step schedule
      expect(s.numInferenceSteps).toBe(1000);
      expect(s.timesteps.length).toBe(1000);
      expectSchedules(cfg, NAME, s);
    });
  }

  it("use_karras_sigmas (float64 timesteps from sigma_to_t), leading spacing, errors, registry", () => {
    const k = LMSDiscreteScheduler.fromConfig(rawConfig("sd15"), { use_karras_sigmas: true });
    k.setTimesteps(10);
    const base = LMSDiscreteScheduler.fromConfig(rawConfig("sd15"));
    base.setTimesteps(10);
    expect(k.sigmas[0]).toBe(base.sigmas[0]);
    expect(k.sigmas[9]).toBe(base.sigmas[9]);
    expect(k.timesteps[0]).toBeCloseTo(999, 3);
    expect(k.timesteps.some((t) => t !== Math.fround(t))).toBe(true); // kept float64, as torch.from_numpy
    const x = tf.zeros([1, 2, 2, 4]);
    const o = k.step(x, k.timesteps[3], x); // found by float64 equality
    expect(k.stepIndex).toBe(4);
    const lead = LMSDiscreteScheduler.fromConfig(rawConfig("sd15"), { timestep_spacing: "leading" });
    lead.setTimesteps(4);
    expect(lead.timesteps).toEqual([751, 501, 251, 1]);
    expect(() => LMSDiscreteScheduler.fromConfig({ beta_schedule: "exp" })).toThrow(/"beta_schedule" is "exp"/);
    expect(() => base.step(x, 999, x, { order: 0 })).toThrow(/order must be an integer >= 1/);
    // LMS has no rescale_betas_zero_snr: a DDIM config's value is carried along but ignored
    const fromDdim = LMSDiscreteScheduler.fromConfig(DDIMScheduler.fromConfig(rawConfig("sd15"), { rescale_betas_zero_snr: true }).config);
    expect(fromDdim.config.rescale_betas_zero_snr).toBe(true);
    expect(Array.from(fromDdim.alphasCumprod)).toEqual(Array.from(base.alphasCumprod));
    expect(LMSDiscreteScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass(NAME)).toBe(LMSDiscreteScheduler);
    tf.dispose([x, o.prevSample, o.predOriginalSample]);
    k.dispose();
  });
});

describe("LMSDiscreteScheduler: LMS coefficients (the integral diffusers takes with scipy.integrate.quad)", () => {
  it("Gauss-Legendre nodes / weights", () => {
    const g3 = gaussLegendre(3);
    expect(g3.nodes[0]).toBeCloseTo(Math.sqrt(3 / 5), 15);
    expect(g3.nodes[1]).toBeCloseTo(0, 15);
    expect(g3.weights[0]).toBeCloseTo(5 / 9, 15);
    expect(g3.weights[1]).toBeCloseTo(8 / 9, 15);
    for (const m of [1, 2, 5, 8]) {
      const { nodes, weights } = gaussLegendre(m);
      // exact for x^k, k <= 2m - 1
      for (let k = 0; k <= 2 * m - 1; k++) {
        const q = nodes.reduce((acc, x, i) => acc + weights[i] * x ** k, 0);
        expect(q).toBeCloseTo(k % 2 ? 0 : 2 / (k + 1), 13);
      }
    }
  });

  it("order 1 is sigma_{t+1} - sigma_t; coefficients sum to it (partition of unity); equal exact monomial integration", () => {
    for (const cfg of CFG_NAMES) {
      const s = LMSDiscreteScheduler.fromConfig(rawConfig(cfg));
      s.setTimesteps(10);
      for (let t = 0; t < 10; t++) {
        const h = s.sigmas[t + 1] - s.sigmas[t];
        expect(s.getLmsCoefficient(1, t, 0)).toBe(h);
        for (let order = 2; order <= Math.min(t + 1, 6); order++) {
          const c = Array.from({ length: order }, (_, k) => s.getLmsCoefficient(order, t, k));
          expect(Math.abs(c.reduce((a, b) => a + b, 0) - h)).toBeLessThan(1e-12 * Math.abs(h) + 1e-15);
          for (let k = 0; k < order; k++) {
            const exact = lagrangeIntegral(s.sigmas, order, t, k);
            expect(Math.abs(c[k] - exact)).toBeLessThanOrEqual(1e-11 * Math.max(Math.abs(exact), Math.abs(h)));
          }
        }
      }
    }
  });

  it("equal diffusers' quad values (scipy 1.17, float32 integrand as torch evaluates it) within 1e-6 relative", () => {
    // integrate.quad(lms_derivative, sigmas[t], sigmas[t+1], epsrel=1e-4) with diffusers' float32 sigmas, 10 steps
    const ref: [CfgName, number, number, number[]][] = [
      ["sd15", 4, 3, [-1.4397604742567214, 0.5895694545171074, -0.12567383731521536, 0.007718906139969004]],
      ["sd15", 4, 9, [-0.031689640815186416, 0.004923050424218162, -0.003001328934573638, 0.000600385064534175]],
      ["sd15", 3, 2, [-2.326069286940529, 0.727107142843849, -0.09190526255313637]],
      ["ddpm_cat", 4, 3, [-6.172751677405833, 1.553443099529226, -0.1703251480556142, 0.004046671594053973]],
      ["ddpm_cat", 4, 9, [-0.01023441621087446, 0.00033757572970780656, -0.00011982740682156652, 1.5338771410674726e-5]],
      ["ddpm_cat", 2, 1, [-38.49291049635938, 5.342893512121758]],
    ];
    for (const [cfg, order, t, values] of ref) {
      const s = LMSDiscreteScheduler.fromConfig(rawConfig(cfg));
      s.setTimesteps(10);
      values.forEach((v, k) => expect(Math.abs(s.getLmsCoefficient(order, t, k) - v)).toBeLessThan(1e-6 * Math.abs(v)));
    }
  });
});

describe("LMSDiscreteScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(cfg, () => {
      const s = LMSDiscreteScheduler.fromConfig(rawConfig(cfg));
      const before = tf.memory().numTensors;
      expect(runTrajectory(cfg, NAME, s).steps).toBe(10);
      expect(s.derivatives.length).toBe(4);
      s.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

describe("LMSDiscreteScheduler: step", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("first step is Euler; `order` option; prediction types; setTimesteps frees the derivatives", () => {
    const x = mk(1), mo = mk(2);
    const s = LMSDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const a = s.step(mo, s.timesteps[0], x);
    const euler = tf.add(x, tf.mul(mo, s.sigmas[1] - s.sigmas[0]));
    expectClose(a.prevSample, euler, 1e-5, 1e-5);
    // order 1 throughout = Euler (only the newest derivative is kept)
    const b = s.step(mo, s.timesteps[1], a.prevSample, { order: 1 });
    expect(s.derivatives.length).toBe(1);
    const d = tf.div(tf.sub(a.prevSample, b.predOriginalSample), s.sigmas[1]);
    const euler2 = tf.add(a.prevSample, tf.mul(d, s.sigmas[2] - s.sigmas[1]));
    expectClose(b.prevSample, euler2, 1e-5, 1e-5);
    const before = tf.memory().numTensors;
    s.setTimesteps(10);
    expect(s.derivatives.length).toBe(0);
    expect(tf.memory().numTensors).toBe(before - 1);
    for (const pt of ["sample", "v_prediction"]) {
      const p = LMSDiscreteScheduler.fromConfig(rawConfig("sd15"), { prediction_type: pt });
      p.setTimesteps(10);
      const o = p.step(mo, p.timesteps[0], x);
      const sg = p.sigmas[0];
      const x0 = pt === "sample" ? mo.clone() : tf.add(tf.mul(mo, -sg / Math.sqrt(sg * sg + 1)), tf.div(x, sg * sg + 1));
      expectClose(o.predOriginalSample, x0, 1e-5, 1e-5);
      tf.dispose([o.prevSample, o.predOriginalSample, x0]);
      p.dispose();
    }
    tf.dispose([x, mo, euler, d, euler2, a.prevSample, a.predOriginalSample, b.prevSample, b.predOriginalSample]);
  });

  it("a 1000-step loop holds at most `order` derivatives and leaves tf.memory().numTensors where it started", () => {
    const s = LMSDiscreteScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(1000);
    const { x, before } = runLongLoop(s, { afterStep: (i, before0) => i >= 3 && expect(tf.memory().numTensors).toBe(before0 + 1 + 4) });
    x.dispose();
    s.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
