import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import { UniPCMultistepScheduler, solveF32 } from "../src/schedulers/scheduling-unipc-multistep.js";
import { DPMSolverMultistepScheduler, sigmaToAlphaSigmaT } from "../src/schedulers/scheduling-dpmsolver-multistep.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { expectClose } from "./helpers.js";
import { CFG_NAMES, firstDiff, rawConfig, runTrajectory, trainSchedule, runLongLoop, expectResolved, resolvedConfig, expectSchedules, type Arr, REF_SHAPE as SHAPE, lin, fakeModel64, randArr, runOurs, relClose } from "./scheduler-fixtures.js";

const VARIANT = "UniPCMultistepScheduler";
const NS = [1, 4, 10, 20, 25, 50];

describe("UniPCMultistepScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers'`, () => {
      expectResolved(UniPCMultistepScheduler.fromConfig(rawConfig(cfg)).config, resolvedConfig(cfg, VARIANT));
    });

    it(`${cfg}: betas / alphas_cumprod bit for bit`, () => {
      const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
    });

    it(`${cfg}: timesteps, sigmas (ending at sigma(t=0), not 0), init_noise_sigma, order for N in {${NS}}`, () => {
      const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg));
      expectSchedules(cfg, VARIANT, s, {
        extra: (n, ref) => {
          expect(s.numInferenceSteps).toBe(ref.len_timesteps);
          expect(s.sigmas[n]).toBe(Math.fround(Math.sqrt(Math.fround((1 - s.alphasCumprod[0]) / s.alphasCumprod[0]))));
          expect(s.sigmas[n]).toBeGreaterThan(0);
        },
      });
    });
  }
});

describe("UniPCMultistepScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: bh2, order 2, predict_x0`, () => {
      const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg));
      const before = tf.memory().numTensors;
      const r = runTrajectory(cfg, VARIANT, s);
      expect(r.steps).toBe(10);
      expect(s.modelOutputs.every((m) => m === null)).toBe(true);
      expect(s.lastSample).toBeNull();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});

// ---------------------------------------------------------------------------------------------
// Options without fixtures: UniP / UniC (Zhao et al. 2023, B(h) forms) re-derived in
// float64 on plain arrays, with a float64 Gaussian elimination for the rho systems.


function solve64(A: number[][], b: number[]): number[] {
  const n = b.length;
  const M = A.map((r, i) => [...r, b[i]]);
  for (let k = 0; k < n; k++) {
    let p = k;
    for (let i = k + 1; i < n; i++) if (Math.abs(M[i][k]) > Math.abs(M[p][k])) p = i;
    [M[k], M[p]] = [M[p], M[k]];
    for (let i = k + 1; i < n; i++) {
      const f = M[i][k] / M[k][k];
      for (let j = k; j <= n; j++) M[i][j] -= f * M[k][j];
    }
  }
  const x = new Array<number>(n).fill(0);
  for (let k = n - 1; k >= 0; k--) {
    let s = M[k][n];
    for (let j = k + 1; j < n; j++) s -= M[k][j] * x[j];
    x[k] = s / M[k][k];
  }
  return x;
}

interface UniPCRefOptions {
  order: number;
  bh: "bh1" | "bh2";
  predictX0: boolean;
  lowerOrderFinal: boolean;
  disable: number[];
  prediction?: "epsilon" | "v_prediction" | "sample";
}

function unipcReference(o: UniPCRefOptions, sigmas: ArrayLike<number>, timesteps: number[], start: Arr): Arr {
  const n = timesteps.length;
  const als = (i: number) => {
    const a = 1 / Math.sqrt(sigmas[i] ** 2 + 1);
    const s = sigmas[i] * a;
    return { a, s, l: Math.log(a) - Math.log(s) };
  };
  const hist: Arr[] = [];
  let last: Arr | null = null;
  let thisOrder = 0;
  let lowerNums = 0;
  let x = start;
  // shared B(h) machinery: t / s0 sigma indices, older outputs at sigma indices olderIdx[i]
  const update = (base: Arr, ti: number, si: number, olderIdx: number[], m0: Arr, older: Arr[], order: number, corr: Arr | null): Arr => {
    const t = als(ti), s0 = als(si);
    const h = t.l - s0.l;
    const rks = olderIdx.map((j) => (als(j).l - s0.l) / h);
    const D1s = older.map((m, i) => lin([[1 / rks[i], m], [-1 / rks[i], m0]]));
    rks.push(1);
    const hh = o.predictX0 ? -h : h;
    const hPhi1 = Math.expm1(hh);
    let hPhiK = hPhi1 / hh - 1;
    let fact = 1;
    const Bh = o.bh === "bh1" ? hh : Math.expm1(hh);
    const R: number[][] = [];
    const b: number[] = [];
    for (let i = 1; i <= order; i++) {
      R.push(rks.map((r) => r ** (i - 1)));
      b.push((hPhiK * fact) / Bh);
      fact *= i + 1;
      hPhiK = hPhiK / hh - 1 / fact;
    }
    const [ca, cs] = o.predictX0 ? [t.s / s0.s, t.a] : [t.a / s0.a, t.s];
    const terms: [number, Arr][] = [[ca, base], [-cs * hPhi1, m0]];
    if (corr === null) {
      if (D1s.length > 0) {
        const rho = order === 2 ? [0.5] : solve64(R.slice(0, -1).map((r) => r.slice(0, -1)), b.slice(0, -1));
        D1s.forEach((d, i) => terms.push([-cs * Bh * rho[i], d]));
      }
    } else {
      const rho = order === 1 ? [0.5] : solve64(R, b);
      D1s.forEach((d, i) => terms.push([-cs * Bh * rho[i], d]));
      terms.push([-cs * Bh * rho[rho.length - 1], lin([[1, corr], [-1, m0]])]);
    }
    return lin(terms);
  };
  for (let k = 0; k < n; k++) {
    const mo = fakeModel64(x, timesteps[k]);
    const { a, s } = als(k);
    let x0p: Arr;
    if (o.prediction === "v_prediction") x0p = lin([[a, x], [-s, mo]]);
    else if (o.prediction === "sample") x0p = mo;
    else x0p = lin([[1 / a, x], [-s / a, mo]]);
    const conv = o.predictX0 ? x0p : lin([[1 / s, x], [-a / s, x0p]]);
    if (k > 0 && !o.disable.includes(k - 1) && last !== null) {
      const m0 = hist[hist.length - 1];
      const olderIdx = Array.from({ length: thisOrder - 1 }, (_, i) => k - (i + 2));
      const older = olderIdx.map((_, i) => hist[hist.length - 2 - i]);
      x = update(last, k, k - 1, olderIdx, m0, older, thisOrder, conv);
    }
    hist.push(conv);
    if (hist.length > o.order) hist.shift();
    const ord = o.lowerOrderFinal ? Math.min(o.order, n - k) : o.order;
    thisOrder = Math.min(ord, lowerNums + 1);
    last = x;
    const m0 = hist[hist.length - 1];
    const olderIdx = Array.from({ length: thisOrder - 1 }, (_, i) => k - (i + 1));
    const older = olderIdx.map((_, i) => hist[hist.length - 2 - i]);
    x = update(x, k + 1, k, olderIdx, m0, older, thisOrder, null);
    lowerNums = Math.min(lowerNums + 1, o.order);
  }
  return x;
}

describe("UniPCMultistepScheduler: orders / B(h) / predict_x0 / corrector options vs a float64 re-derivation", () => {
  const x0 = randArr(7);
  const cases: UniPCRefOptions[] = [];
  for (const bh of ["bh1", "bh2"] as const) {
    for (const predictX0 of [true, false]) {
      for (const order of [1, 2, 3, 4]) cases.push({ order, bh, predictX0, lowerOrderFinal: true, disable: [] });
    }
  }
  cases.push({ order: 3, bh: "bh2", predictX0: true, lowerOrderFinal: false, disable: [] });
  cases.push({ order: 2, bh: "bh2", predictX0: true, lowerOrderFinal: true, disable: [0, 1, 2] });
  cases.push({ order: 3, bh: "bh1", predictX0: true, lowerOrderFinal: true, disable: [4], prediction: "v_prediction" });
  cases.push({ order: 2, bh: "bh2", predictX0: false, lowerOrderFinal: true, disable: [], prediction: "sample" });
  for (const o of cases) {
    for (const [cfg, n] of [["sd15", 5], ["sd15", 12], ["ddpm_cat", 20]] as const) {
      const label = `${cfg}: order ${o.order} ${o.bh} ${o.predictX0 ? "x0" : "eps"}-form${o.lowerOrderFinal ? "" : " no-lower-order-final"}${o.disable.length ? ` no corrector after steps ${o.disable}` : ""} ${o.prediction ?? "epsilon"}, ${n} steps`;
      it(label, () => {
        const s = UniPCMultistepScheduler.fromConfig(rawConfig(cfg), {
          solver_order: o.order,
          solver_type: o.bh,
          predict_x0: o.predictX0,
          lower_order_final: o.lowerOrderFinal,
          disable_corrector: o.disable,
          prediction_type: o.prediction ?? "epsilon",
        });
        const before = tf.memory().numTensors;
        const ours = runOurs(s, n, x0);
        expect(tf.memory().numTensors).toBe(before);
        relClose(ours, unipcReference(o, s.sigmas, s.timesteps, x0), 3e-5, label);
      });
    }
  }
});

describe("UniPCMultistepScheduler: identities, options, errors", () => {
  const mk = (seed: number) => tf.randomNormal(SHAPE, 0, 1, "float32", seed);

  it("the first step (UniP-1, no corrector yet) is DDIM; a disabled corrector changes later steps only", () => {
    const cfg = rawConfig("sd15");
    const x = mk(1), mo = mk(2);
    const ddim = DDIMScheduler.fromConfig(cfg, { timestep_spacing: "trailing" });
    ddim.setTimesteps(10);
    const d = ddim.step(mo, 999, x);
    const u = UniPCMultistepScheduler.fromConfig(cfg);
    u.setTimesteps(10);
    const o = u.step(mo, 999, x);
    expectClose(o.prevSample, d.prevSample, 2e-5, 2e-5);
    const start = randArr(3);
    const a = runOurs(UniPCMultistepScheduler.fromConfig(cfg), 6, start);
    const b = runOurs(UniPCMultistepScheduler.fromConfig(cfg, { disable_corrector: [0] }), 6, start);
    expect(Math.max(...a.map((v, i) => Math.abs(v - b[i])))).toBeGreaterThan(1e-4);
    tf.dispose([x, mo, d.prevSample, d.predOriginalSample, o.prevSample]);
    u.dispose();
  });

  it("Karras sigmas: the table repeats the last sigma, so the final UniP step (h = 0) is the identity (float64 re-derivation agrees)", () => {
    const s = UniPCMultistepScheduler.fromConfig(rawConfig("sd15"), { use_karras_sigmas: true });
    s.setTimesteps(10);
    const dpm = DPMSolverMultistepScheduler.fromConfig(rawConfig("sd15"), { use_karras_sigmas: true });
    dpm.setTimesteps(10);
    expect(s.timesteps).toEqual(dpm.timesteps);
    expect(Array.from(s.sigmas.slice(0, 10))).toEqual(Array.from(dpm.sigmas.slice(0, 10)));
    expect(s.sigmas[10]).toBe(s.sigmas[9]);
    const start = randArr(5);
    const ours = runOurs(s, 10, start);
    const ref = unipcReference({ order: 2, bh: "bh2", predictX0: true, lowerOrderFinal: true, disable: [] }, s.sigmas, s.timesteps, start);
    relClose(ours, ref, 3e-5, "karras");
    expect(s.lastSample).toBeNull(); // released after the final step
    s.dispose();
  });

  it("solveF32 = LU with partial pivoting", () => {
    expect(solveF32([[2, 1], [4, 3]], [3, 7])).toEqual([1, 1]);
    const x = solveF32([[1, 1, 1], [-0.5, 1, 2], [0.25, 1, 4]], [6, 7.5, 14.25]);
    x.forEach((v, i) => expect(v).toBeCloseTo([1, 2, 3][i], 5));
    expect(() => solveF32([[1, 2], [2, 4]], [1, 2])).toThrow(/singular/);
  });

  it("config migrations and errors", () => {
    const sd = rawConfig("sd15");
    expect(UniPCMultistepScheduler.fromConfig(sd, { solver_type: "midpoint" }).config.solver_type).toBe("bh2");
    expect(UniPCMultistepScheduler.fromConfig(sd, { solver_type: "logrho" }).config.solver_type).toBe("bh2");
    expect(() => UniPCMultistepScheduler.fromConfig(sd, { solver_type: "bh3" })).toThrow(/"solver_type" is "bh3"; supported: "bh1", "bh2"/);
    expect(() => UniPCMultistepScheduler.fromConfig(sd, { solver_p: { _class_name: "DDIMScheduler" } })).toThrow(/solver_p.*not supported/);
    expect(() => UniPCMultistepScheduler.fromConfig(sd, { disable_corrector: [0.5] })).toThrow(/disable_corrector/);
    expect(() => UniPCMultistepScheduler.fromConfig(sd, { solver_order: 0 })).toThrow(/solver_order/);
    expect(() => UniPCMultistepScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(/"beta_schedule" is "sigmoid"/);
    // UniPC 0.27 has no rescale_betas_zero_snr / final_sigmas_type: they are unknown (kept) keys
    expect(() => new UniPCMultistepScheduler({ final_sigmas_type: "zero" })).toThrow(/unexpected config key/);
    expect(UniPCMultistepScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass("UniPCMultistepScheduler")).toBe(UniPCMultistepScheduler);
    const lead = UniPCMultistepScheduler.fromConfig(sd, { timestep_spacing: "leading" });
    lead.setTimesteps(10);
    expect(lead.timesteps).toEqual([901, 811, 721, 631, 541, 451, 361, 271, 181, 91]);
    const trail = UniPCMultistepScheduler.fromConfig(sd, { timestep_spacing: "trailing" });
    trail.setTimesteps(4);
    expect(trail.timesteps).toEqual([999, 749, 499, 249]);

    const s = UniPCMultistepScheduler.fromConfig(sd);
    const x = tf.zeros(SHAPE);
    expect(() => s.step(x, 999, x)).toThrow(/call setTimesteps\(n\)/);
    s.setTimesteps(1);
    expect(() => s.step(tf.zeros([1, 4, 4, 1]), 999, x)).toThrow(/modelOutput: shape/);
    s.step(x, 999, x).prevSample.dispose();
    expect(() => s.step(x, 999, x)).toThrow(/all 1 steps are done/);
    x.dispose();
  });

  it("thresholding (predict_x0) bounds the stored x_0; addNoise / setBeginIndex as DPM-Solver's", () => {
    const s = UniPCMultistepScheduler.fromConfig(rawConfig("ddpm_cat"), { thresholding: true, sample_max_value: 1.5 });
    s.setTimesteps(10);
    const x = mk(1), mo = tf.mul(mk(2), 50);
    s.step(mo, 999, x).prevSample.dispose();
    expect(tf.max(tf.abs(s.modelOutputs[1]!)).dataSync()[0]).toBeLessThanOrEqual(1 + 1e-6);
    const dpm = DPMSolverMultistepScheduler.fromConfig(rawConfig("ddpm_cat"), { final_sigmas_type: "sigma_min" });
    dpm.setTimesteps(10);
    const a = s.addNoise(x, mo, [500]);
    const b = dpm.addNoise(x, mo, [500]);
    expectClose(a, b, 0);
    // with a begin index, add_noise uses the current step index once stepping has started (inpainting), else the begin index
    s.setBeginIndex(2);
    dpm.setBeginIndex(2);
    const c = s.addNoise(x, mo, [999]), e = dpm.addNoise(x, mo, [999]);
    const at = (q: { sigmas: Float32Array }, i: number) => {
      const [al, sg] = sigmaToAlphaSigmaT(q.sigmas[i]);
      return tf.tidy(() => tf.add(tf.mul(x, al), tf.mul(mo, sg)));
    };
    const c1 = at(s, 1), e2 = at(dpm, 2);
    expect(s.stepIndex).toBe(1);
    expectClose(c, c1, 0);
    expectClose(e, e2, 0);
    tf.dispose([x, mo, a, b, c, e, c1, e2]);
    s.dispose();
  });
});

describe("UniPCMultistepScheduler: memory", () => {
  it("a 1000-step order-3 loop leaves tf.memory().numTensors where it started; dispose / setTimesteps free the history", () => {
    // (linspace over 1000 of 1000 train steps repeats timesteps, h = 0: use trailing)
    const s = UniPCMultistepScheduler.fromConfig(rawConfig("ddpm_cat"), { solver_order: 3, timestep_spacing: "trailing" });
    s.setTimesteps(1000);
    const { x, before } = runLongLoop(s, {
      shape: [1, 2, 2, 3],
      afterStep: (_, before0) => expect(tf.memory().numTensors).toBeLessThanOrEqual(before0 + 2 + 3),
    });
    x.dispose();
    expect(tf.memory().numTensors).toBe(before);
    s.setTimesteps(10);
    const y = tf.ones([1, 2, 2, 3]);
    s.step(y, s.timesteps[0], y).prevSample.dispose();
    expect(tf.memory().numTensors).toBe(before + 3); // y, one model output, the last sample
    s.setTimesteps(10);
    expect(tf.memory().numTensors).toBe(before + 1);
    s.step(y, s.timesteps[0], y).prevSample.dispose();
    s.dispose();
    y.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });
});
