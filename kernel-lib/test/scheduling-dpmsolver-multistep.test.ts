import { describe, it, expect } from "vitest";
import * as tf from "@tensorflow/tfjs";
import {
  DPMSolverMultistepScheduler,
  multistepIndexForTimestep,
  multistepKarrasSigmas,
  multistepTimesteps,
  parseLambdaMinClipped,
  sigmaToAlphaSigmaT,
  multistepSigmaToT,
} from "../src/schedulers/scheduling-dpmsolver-multistep.js";
import { DDIMScheduler } from "../src/schedulers/scheduling-ddim.js";
import { KarrasDiffusionSchedulers, getSchedulerClass } from "../src/schedulers/scheduling-utils.js";
import { Generator } from "../src/random/generator.js";
import { expectClose, nchwToNhwc } from "./helpers.js";
import { CFG_NAMES, firstDiff, rawConfig, runTrajectory, trainSchedule, runLongLoop, expectResolved, resolvedConfig, expectSchedules, type Arr, REF_SHAPE as SHAPE, lin, fakeModel64, randArr, runOurs, relClose } from "./scheduler-fixtures.js";

const VARIANTS: Record<string, Record<string, unknown>> = {
  DPMSolverMultistepScheduler: {},
  DPMSolverMultistepScheduler_karras: { use_karras_sigmas: true },
};
const NS = [1, 4, 10, 20, 25, 50];

describe("DPMSolverMultistepScheduler: config and schedules", () => {
  for (const cfg of CFG_NAMES) {
    it(`${cfg}: resolved config equals diffusers' (default and karras)`, () => {
      for (const [variant, kw] of Object.entries(VARIANTS)) {
        const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg), kw);
        expectResolved(s.config, resolvedConfig(cfg, variant));
        expect(s.config.lambda_min_clipped).toBe(-Infinity);
      }
    });

    it(`${cfg}: betas / alphas_cumprod bit for bit`, () => {
      const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg));
      const ref = trainSchedule(cfg);
      expect(firstDiff(s.betas, ref.betas)).toBeNull();
      expect(firstDiff(s.alphasCumprod, ref.alphasCumprod)).toBeNull();
    });

    it(`${cfg}: timesteps, sigmas, init_noise_sigma, order for N in {${NS}} (default and karras)`, () => {
      for (const variant of Object.keys(VARIANTS)) {
        const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg), VARIANTS[variant]);
        expectSchedules(cfg, variant, s, { extra: (_, ref) => expect(s.numInferenceSteps).toBe(ref.len_timesteps) });
      }
    });
  }
});

describe("DPMSolverMultistepScheduler: 10-step trajectories vs diffusers", () => {
  for (const cfg of CFG_NAMES) {
    for (const [variant, kw] of Object.entries(VARIANTS)) {
      it(`${cfg}: ${variant}`, () => {
        const s = DPMSolverMultistepScheduler.fromConfig(rawConfig(cfg), kw);
        const before = tf.memory().numTensors;
        const r = runTrajectory(cfg, variant, s);
        expect(r.steps).toBe(10);
        expect(s.stepIndex).toBe(10);
        // the history is released after the final step
        expect(s.modelOutputs.every((m) => m === null)).toBe(true);
        expect(tf.memory().numTensors).toBe(before);
      });
    }
  }
});

// ---------------------------------------------------------------------------------------------
// Options without fixtures: a float64 re-derivation of the update rules (Lu et al. 2022:
// multistep DPM-Solver-1/2/3, DPM-Solver++(1/2M/3M) and the SDE variants) run on plain arrays.


interface DpmRefOptions {
  algo: string;
  solver: string;
  order: number;
  lowerOrderFinal: boolean;
  eulerAtFinal: boolean;
  finalZero: boolean;
  prediction?: "epsilon" | "v_prediction" | "sample";
}

/** The DPM-Solver family in float64 on the scheduler's own sigma table. */
function dpmReference(o: DpmRefOptions, sigmas: ArrayLike<number>, timesteps: number[], x0: Arr, noises: Arr[] = []): Arr {
  const n = timesteps.length;
  const als = (i: number) => {
    const a = 1 / Math.sqrt(sigmas[i] ** 2 + 1);
    const s = sigmas[i] * a;
    return { a, s, l: Math.log(a) - Math.log(s) };
  };
  const plus = o.algo.endsWith("++");
  const sde = o.algo.startsWith("sde");
  const hist: Arr[] = [];
  let lowerNums = 0;
  let x = x0;
  for (let k = 0; k < n; k++) {
    const mo = fakeModel64(x, timesteps[k]);
    const { a, s } = als(k);
    // x0 / eps from the parameterisation
    let x0p: Arr;
    if (o.prediction === "v_prediction") x0p = lin([[a, x], [-s, mo]]);
    else if (o.prediction === "sample") x0p = mo;
    else x0p = lin([[1 / a, x], [-s / a, mo]]);
    const m = plus ? x0p : lin([[1 / s, x], [-a / s, x0p]]);
    hist.push(m);
    if (hist.length > o.order) hist.shift();
    const lof = k === n - 1 && (o.eulerAtFinal || (o.lowerOrderFinal && n < 15) || o.finalZero);
    const los = k === n - 2 && o.lowerOrderFinal && n < 15;
    const ord = o.order === 1 || lowerNums < 1 || lof ? 1 : o.order === 2 || lowerNums < 2 || los ? 2 : 3;
    const t = als(k + 1), s0 = als(k);
    const h = t.l - s0.l;
    const m0 = hist[hist.length - 1];
    let D1: Arr | null = null, D2: Arr | null = null;
    if (ord >= 2) {
      const s1 = als(k - 1);
      const r0 = (s0.l - s1.l) / h;
      const D10 = lin([[1 / r0, m0], [-1 / r0, hist[hist.length - 2]]]);
      if (ord === 2) D1 = D10;
      else {
        const s2 = als(k - 2);
        const r1 = (s1.l - s2.l) / h;
        const D11 = lin([[1 / r1, hist[hist.length - 2]], [-1 / r1, hist[hist.length - 3]]]);
        D1 = lin([[1 + r0 / (r0 + r1), D10], [-r0 / (r0 + r1), D11]]);
        D2 = lin([[1 / (r0 + r1), D10], [-1 / (r0 + r1), D11]]);
      }
    }
    const z = sde ? noises[k] : null;
    const terms: [number, Arr][] = [];
    if (o.algo === "dpmsolver++") {
      terms.push([t.s / s0.s, x], [-t.a * Math.expm1(-h), m0]);
      if (D1) terms.push([ord === 2 && o.solver === "midpoint" ? -0.5 * t.a * Math.expm1(-h) : t.a * (Math.expm1(-h) / h + 1), D1]);
      if (D2) terms.push([-t.a * ((Math.expm1(-h) + h) / h ** 2 - 0.5), D2]);
    } else if (o.algo === "dpmsolver") {
      terms.push([t.a / s0.a, x], [-t.s * Math.expm1(h), m0]);
      if (D1) terms.push([ord === 2 && o.solver === "midpoint" ? -0.5 * t.s * Math.expm1(h) : -t.s * (Math.expm1(h) / h - 1), D1]);
      if (D2) terms.push([-t.s * ((Math.expm1(h) - h) / h ** 2 - 0.5), D2]);
    } else if (o.algo === "sde-dpmsolver++") {
      terms.push([(t.s / s0.s) * Math.exp(-h), x], [t.a * -Math.expm1(-2 * h), m0], [t.s * Math.sqrt(-Math.expm1(-2 * h)), z!]);
      if (D1) terms.push([o.solver === "midpoint" ? 0.5 * t.a * -Math.expm1(-2 * h) : t.a * (-Math.expm1(-2 * h) / (-2 * h) + 1), D1]);
    } else {
      terms.push([t.a / s0.a, x], [-2 * t.s * Math.expm1(h), m0], [t.s * Math.sqrt(Math.expm1(2 * h)), z!]);
      if (D1) terms.push([o.solver === "midpoint" ? -t.s * Math.expm1(h) : -2 * t.s * (Math.expm1(h) / h - 1), D1]);
    }
    // sigma 0 at the end: (sigma_t / sigma_s) = 0 and the x term vanishes
    x = lin(terms.filter(([c]) => Number.isFinite(c)));
    lowerNums = Math.min(lowerNums + 1, o.order);
  }
  return x;
}

describe("DPMSolverMultistepScheduler: every algorithm / order / solver type vs a float64 re-derivation", () => {
  const cfg = rawConfig("sd15");
  const x0 = randArr(7);
  const noises = Array.from({ length: 25 }, (_, i) => randArr(100 + i));
  const cases: DpmRefOptions[] = [];
  for (const algo of ["dpmsolver++", "dpmsolver", "sde-dpmsolver++", "sde-dpmsolver"]) {
    for (const solver of ["midpoint", "heun"]) {
      for (const order of algo.startsWith("sde") ? [1, 2] : [1, 2, 3]) {
        cases.push({ algo, solver, order, lowerOrderFinal: true, eulerAtFinal: false, finalZero: algo.endsWith("++") });
      }
    }
  }
  cases.push({ algo: "dpmsolver++", solver: "midpoint", order: 3, lowerOrderFinal: false, eulerAtFinal: false, finalZero: false });
  cases.push({ algo: "dpmsolver++", solver: "midpoint", order: 3, lowerOrderFinal: false, eulerAtFinal: true, finalZero: false });
  cases.push({ algo: "dpmsolver++", solver: "heun", order: 2, lowerOrderFinal: true, eulerAtFinal: false, finalZero: true, prediction: "v_prediction" });
  cases.push({ algo: "dpmsolver", solver: "midpoint", order: 2, lowerOrderFinal: true, eulerAtFinal: false, finalZero: false, prediction: "sample" });
  for (const o of cases) {
    for (const n of [4, 10, 25]) {
      const label = `${o.algo} ${o.solver} order ${o.order}${o.lowerOrderFinal ? "" : " no-lower-order-final"}${o.eulerAtFinal ? " euler_at_final" : ""} ${o.prediction ?? "epsilon"} final ${o.finalZero ? "zero" : "sigma_min"}, ${n} steps`;
      it(label, () => {
        const s = DPMSolverMultistepScheduler.fromConfig(cfg, {
          algorithm_type: o.algo,
          solver_type: o.solver,
          solver_order: o.order,
          lower_order_final: o.lowerOrderFinal,
          euler_at_final: o.eulerAtFinal,
          final_sigmas_type: o.finalZero ? "zero" : "sigma_min",
          prediction_type: o.prediction ?? "epsilon",
        });
        const before = tf.memory().numTensors;
        const ours = runOurs(s, n, x0, noises);
        expect(tf.memory().numTensors).toBe(before);
        const ref = dpmReference(o, s.sigmas, s.timesteps, x0, noises);
        relClose(ours, ref, 2e-5, label);
      });
    }
  }
});

describe("DPMSolverMultistepScheduler: identities", () => {
  const shape = [1, 4, 4, 3];
  const mk = (seed: number) => tf.randomNormal(shape, 0, 1, "float32", seed);

  it("first order = DDIM (eta 0) for the same pair of timesteps; DPM-Solver-1 = DPM-Solver++(1)", () => {
    const cfg = rawConfig("sd15");
    const x = mk(1), mo = mk(2);
    const ddim = DDIMScheduler.fromConfig(cfg, { timestep_spacing: "trailing" });
    ddim.setTimesteps(10); // 999 -> 899
    const d = ddim.step(mo, 999, x);
    for (const algo of ["dpmsolver++", "dpmsolver"]) {
      const s = DPMSolverMultistepScheduler.fromConfig(cfg, { algorithm_type: algo, final_sigmas_type: "sigma_min" });
      s.setTimesteps(10); // 999, 899, ...
      expect(s.timesteps.slice(0, 2)).toEqual([999, 899]);
      const out = s.step(mo, 999, x);
      expectClose(out.prevSample, d.prevSample, 2e-5, 2e-5, algo);
      out.prevSample.dispose();
      s.dispose();
    }
    tf.dispose([x, mo, d.prevSample, d.predOriginalSample]);
  });

  it("epsilon, v and sample predictions of the same x_0 give the same step", () => {
    const x0 = mk(3), eps = mk(4);
    const results: tf.Tensor[] = [];
    for (const pt of ["epsilon", "v_prediction", "sample"]) {
      const s = DPMSolverMultistepScheduler.fromConfig(rawConfig("sd15"), { prediction_type: pt });
      s.setTimesteps(10);
      let x: tf.Tensor | null = null;
      for (const [k, t] of s.timesteps.slice(0, 3).entries()) {
        const [a, sg] = sigmaToAlphaSigmaT(s.sigmas[k]);
        if (x === null) x = tf.tidy(() => tf.add(tf.mul(x0, a), tf.mul(eps, sg)));
        // the model output a perfect model would give for (x0, eps) at this sigma
        const mo = tf.tidy(() =>
          pt === "epsilon" ? tf.div(tf.sub(x!, tf.mul(x0, a)), sg) : pt === "sample" ? x0.clone() : tf.sub(tf.mul(tf.div(tf.sub(x!, tf.mul(x0, a)), sg), a), tf.mul(x0, sg)),
        );
        const cur: tf.Tensor = x!; // typed here: step's result type follows its sample's, and x's narrowing follows the result
        const out = s.step(mo, t, cur);
        tf.dispose([mo, cur]);
        x = out.prevSample;
      }
      results.push(x!);
      s.dispose();
    }
    expectClose(results[1], results[0], 1e-4, 1e-4, "v vs eps");
    expectClose(results[2], results[0], 1e-4, 1e-4, "sample vs eps");
    tf.dispose([x0, eps, ...results]);
  });

  it("SDE noise: { generator } draws NCHW randn and equals passing that noise; ODE variants draw nothing", () => {
    const cfg = rawConfig("sd15");
    const x0 = randArr(7);
    const a = DPMSolverMultistepScheduler.fromConfig(cfg, { algorithm_type: "sde-dpmsolver++" });
    const gen = new Generator().manualSeed(42);
    const viaGen = runOurs(a, 5, x0, [], gen);
    const g2 = new Generator().manualSeed(42);
    const noises = Array.from({ length: 5 }, () => {
      const nchw = g2.randn([1, 3, 4, 4]);
      const nhwc = nchwToNhwc(nchw);
      const arr = Float64Array.from(nhwc.dataSync());
      tf.dispose([nchw, nhwc]);
      return arr;
    });
    const viaNoise = runOurs(a, 5, x0, noises);
    expectClose(viaGen, viaNoise, 0);
    // variance_noise is the same option under diffusers' name
    a.setTimesteps(5);
    const x = tf.tensor(Float32Array.from(x0), SHAPE), z = tf.tensor(Float32Array.from(noises[0]), SHAPE);
    const o1 = a.step(x, a.timesteps[0], x, { varianceNoise: z });
    a.setTimesteps(5);
    const o2 = a.step(x, a.timesteps[0], x, { noise: z });
    expectClose(o1.prevSample, o2.prevSample, 0);
    expect(() => a.step(x, a.timesteps[1], x, { noise: z, varianceNoise: z })).toThrow(/not both/);
    expect(() => a.step(x, a.timesteps[1], x, { noise: z, generator: gen })).toThrow(/either generator or noise/);
    // ODE: the generator is not touched
    const ode = DPMSolverMultistepScheduler.fromConfig(cfg);
    const g3 = new Generator().manualSeed(3);
    runOurs(ode, 5, x0, [], g3);
    expect(g3.randnArray([3])).toEqual(new Generator().manualSeed(3).randnArray([3]));
    tf.dispose([x, z, o1.prevSample, o2.prevSample]);
    a.dispose();
  });
});

describe("DPMSolverMultistepScheduler: schedules and config", () => {
  it("leading / trailing spacings, steps_offset, lambda_min_clipped, Lu lambdas, zero-SNR", () => {
    const sd = rawConfig("sd15");
    const lead = DPMSolverMultistepScheduler.fromConfig(sd, { timestep_spacing: "leading" });
    lead.setTimesteps(10);
    expect(lead.timesteps).toEqual([901, 811, 721, 631, 541, 451, 361, 271, 181, 91]); // (1000 // 11) * k + 1
    const trail = DPMSolverMultistepScheduler.fromConfig(sd, { timestep_spacing: "trailing" });
    trail.setTimesteps(10);
    expect(trail.timesteps).toEqual([999, 899, 799, 699, 599, 499, 399, 299, 199, 99]);
    expect(multistepTimesteps("X", "linspace", 1000, 1000, 1000, 3, 0)).toEqual([999, 666, 333]);
    expect(() => DPMSolverMultistepScheduler.fromConfig(sd, { timestep_spacing: "uniform" })).toThrow(/"timestep_spacing" is "uniform"/);

    // cosine schedule: lambda(t) is clipped at -5.1 by shortening the schedule's end
    const cos = DPMSolverMultistepScheduler.fromConfig({ beta_schedule: "squaredcos_cap_v2", lambda_min_clipped: -5.1 });
    let below = 0;
    for (const l of cos.lambdaT) if (l < -5.1) below++;
    expect(below).toBeGreaterThan(0);
    cos.setTimesteps(10);
    expect(cos.timesteps).toEqual(multistepTimesteps("X", "linspace", 1000 - below, 1000 - below, 1000, 10, 0));
    expect(cos.timesteps[0]).toBe(999 - below);
    expect(DPMSolverMultistepScheduler.fromConfig({ lambda_min_clipped: "-inf" }).config.lambda_min_clipped).toBe("-inf");
    // JSON has no -Infinity: a saved config holds null, which reads back as -inf
    const saved = JSON.parse(DPMSolverMultistepScheduler.fromConfig(sd).toJsonString());
    expect(saved.lambda_min_clipped).toBeNull();
    const back = DPMSolverMultistepScheduler.fromConfig(saved);
    back.setTimesteps(10);
    expect(back.timesteps).toEqual([999, 899, 799, 699, 599, 500, 400, 300, 200, 100]);
    expect(() => DPMSolverMultistepScheduler.fromConfig({ lambda_min_clipped: "low" })).toThrow(/lambda_min_clipped/);
    expect(parseLambdaMinClipped("X", null)).toBe(-Infinity);

    // uniform log-SNR steps (Lu et al.): log sigma is linear in the step index, from sigma_max to sigma_min
    const lu = DPMSolverMultistepScheduler.fromConfig(sd, { use_lu_lambdas: true });
    lu.setTimesteps(8);
    const ls = Array.from(lu.sigmas.slice(0, 8), Math.log);
    for (let i = 1; i < 7; i++) expect(ls[i + 1] - ls[i]).toBeCloseTo(ls[1] - ls[0], 5);
    expect(lu.sigmas[0]).toBeCloseTo(14.6146, 3);
    expect(lu.timesteps[0]).toBe(999);
    expect(lu.timesteps[7]).toBe(0);
    expect(lu.sigmas[8]).toBe(0);

    const z = DPMSolverMultistepScheduler.fromConfig(sd, { rescale_betas_zero_snr: true });
    expect(z.alphasCumprod[999]).toBe(2 ** -24);
    z.setTimesteps(10);
    expect(Number.isFinite(z.sigmas[0])).toBe(true);
    expect(z.sigmas[0]).toBeCloseTo(4096, 0);

    // the Karras helpers as numpy computes them
    expect(multistepKarrasSigmas(0.1, 10, 1)[0]).toBeCloseTo(10, 12);
    const ks = multistepKarrasSigmas(0.0292, 14.6146, 5);
    expect(ks[4]).toBeCloseTo(0.0292, 12);
    const logs = Float32Array.from([0, 1, 2, 3].map(Math.log1p));
    expect(multistepSigmaToT(Math.sqrt(2 * 3), logs)).toBeCloseTo(1.5, 5); // halfway in log sigma
    expect(multistepSigmaToT(1e-20, logs)).toBe(0);
    expect(multistepSigmaToT(100, logs)).toBe(3);
  });

  it("config migrations and errors, as diffusers' __init__", () => {
    const sd = rawConfig("sd15");
    // a UniPC / DEIS solver_type runs as midpoint; "deis" as dpmsolver++ (but diffusers still rejects final "zero" for it)
    expect(DPMSolverMultistepScheduler.fromConfig(sd, { solver_type: "bh2" }).config.solver_type).toBe("midpoint");
    expect(DPMSolverMultistepScheduler.fromConfig(sd, { solver_type: "logrho" }).config.solver_type).toBe("midpoint");
    expect(() => DPMSolverMultistepScheduler.fromConfig(sd, { solver_type: "rk4" })).toThrow(/"solver_type" is "rk4"; supported: "midpoint", "heun"/);
    expect(() => DPMSolverMultistepScheduler.fromConfig(sd, { algorithm_type: "deis" })).toThrow(/final_sigmas_type "zero" is not supported for algorithm_type "deis"/);
    const deis = DPMSolverMultistepScheduler.fromConfig(sd, { algorithm_type: "deis", final_sigmas_type: "sigma_min" });
    expect(deis.config.algorithm_type).toBe("dpmsolver++");
    expect(() => DPMSolverMultistepScheduler.fromConfig(sd, { algorithm_type: "dpmsolver" })).toThrow(/set final_sigmas_type "sigma_min"/);
    expect(() => DPMSolverMultistepScheduler.fromConfig(sd, { algorithm_type: "unipc" })).toThrow(/"algorithm_type" is "unipc"; supported/);
    expect(() => DPMSolverMultistepScheduler.fromConfig(sd, { final_sigmas_type: "one" })).toThrow(/"final_sigmas_type" is "one"/);
    expect(() => DPMSolverMultistepScheduler.fromConfig(sd, { solver_order: 4 })).toThrow(/"solver_order" is 4; supported: 1, 2, 3/);
    expect(() => DPMSolverMultistepScheduler.fromConfig({ beta_schedule: "sigmoid" })).toThrow(/supported: "linear", "scaled_linear", "squaredcos_cap_v2"/);
    expect(() => new DPMSolverMultistepScheduler({ use_karas_sigmas: true })).toThrow(/unexpected config key\(s\) "use_karas_sigmas"/);
    expect(DPMSolverMultistepScheduler.compatibles).toEqual([...KarrasDiffusionSchedulers]);
    expect(getSchedulerClass("DPMSolverMultistepScheduler")).toBe(DPMSolverMultistepScheduler);

    const s = DPMSolverMultistepScheduler.fromConfig(sd);
    const x = tf.zeros(SHAPE);
    expect(() => s.step(x, 999, x)).toThrow(/call setTimesteps\(n\)/);
    expect(() => s.setTimesteps(0)).toThrow(/integer >= 1/);
    s.setTimesteps(2);
    expect(() => s.step(tf.zeros([1, 4, 4, 1]), 999, x)).toThrow(/modelOutput: shape \[1,4,4,1\] does not match/);
    const o1 = s.step(x, 999, x);
    const o2 = s.step(x, 499, x);
    expect(() => s.step(x, 499, x)).toThrow(/all 2 steps are done; call setTimesteps/);
    // the third-order SDE update does not exist in diffusers 0.27
    const sde3 = DPMSolverMultistepScheduler.fromConfig(sd, { algorithm_type: "sde-dpmsolver++", solver_order: 3 });
    expect(() => runOurs(sde3, 20, randArr(1), Array.from({ length: 20 }, (_, i) => randArr(i)))).toThrow(/no third-order update/);
    sde3.dispose();
    tf.dispose([x, o1.prevSample, o2.prevSample]);
  });

  it("learned-variance outputs use their mean channels; thresholding bounds x_0", () => {
    const s = DPMSolverMultistepScheduler.fromConfig(rawConfig("ddpm_cat"), { variance_type: "learned_range" });
    s.setTimesteps(10);
    const x = tf.randomNormal([1, 4, 4, 3], 0, 1, "float32", 1);
    const mo6 = tf.randomNormal([1, 4, 4, 6], 0, 1, "float32", 2);
    const a = s.step(mo6, 999, x);
    const plain = DPMSolverMultistepScheduler.fromConfig(rawConfig("ddpm_cat"));
    plain.setTimesteps(10);
    const mo3 = tf.slice(mo6, [0, 0, 0, 0], [-1, -1, -1, 3]);
    const b = plain.step(mo3, 999, x);
    expectClose(a.prevSample, b.prevSample, 0);
    const th = DPMSolverMultistepScheduler.fromConfig(rawConfig("ddpm_cat"), { thresholding: true, sample_max_value: 1.5 });
    th.setTimesteps(10);
    th.step(tf.mul(mo3, 50), 999, x).prevSample.dispose();
    expect(tf.max(tf.abs(th.modelOutputs[1]!)).dataSync()[0]).toBeLessThanOrEqual(1 + 1e-6);
    const eps = DPMSolverMultistepScheduler.fromConfig(rawConfig("ddpm_cat"), { thresholding: true, algorithm_type: "dpmsolver", final_sigmas_type: "sigma_min" });
    eps.setTimesteps(10);
    eps.step(tf.mul(mo3, 50), 999, x).prevSample.dispose();
    // epsilon re-derived from the thresholded x_0
    expect(Number.isFinite(tf.max(eps.modelOutputs[1]!).dataSync()[0])).toBe(true);
    tf.dispose([x, mo6, mo3, a.prevSample, b.prevSample]);
    [s, plain, th, eps].forEach((q) => q.dispose());
  });

  it("addNoise at the schedule's sigmas; setBeginIndex; index_for_timestep takes the second of repeated timesteps", () => {
    const s = DPMSolverMultistepScheduler.fromConfig(rawConfig("sd15"));
    s.setTimesteps(10);
    const x = tf.randomNormal([2, 4, 4, 3], 0, 1, "float32", 1);
    const z = tf.randomNormal([2, 4, 4, 3], 0, 1, "float32", 2);
    const noisy = s.addNoise(x, z, [999, 500]);
    const [a0, s0] = sigmaToAlphaSigmaT(s.sigmas[0]);
    const [a5, s5] = sigmaToAlphaSigmaT(s.sigmas[5]);
    const want = tf.tidy(() =>
      tf.concat([tf.add(tf.mul(x.slice(0, 1), a0), tf.mul(z.slice(0, 1), s0)), tf.add(tf.mul(x.slice(1, 1), a5), tf.mul(z.slice(1, 1), s5))]),
    );
    expectClose(noisy, want, 1e-6, 1e-6);
    s.setBeginIndex(3);
    const n3 = s.addNoise(x, z, [999, 500]);
    const [a3, s3] = sigmaToAlphaSigmaT(s.sigmas[3]);
    const want3 = tf.tidy(() => tf.add(tf.mul(x, a3), tf.mul(z, s3)));
    expectClose(n3, want3, 1e-6, 1e-6);
    // img2img: the first step starts at beginIndex whatever the timestep says
    const o = s.step(z, 699, x);
    expect(s.stepIndex).toBe(4);
    expect(multistepIndexForTimestep([5, 3, 3, 1], 3)).toBe(2);
    expect(multistepIndexForTimestep([5, 3, 1], 3)).toBe(1);
    expect(multistepIndexForTimestep([5, 3, 1], 7)).toBe(2);
    tf.dispose([x, z, noisy, want, n3, want3, o.prevSample]);
    s.dispose();
  });
});

describe("DPMSolverMultistepScheduler: memory", () => {
  for (const [label, kw] of [
    ["dpmsolver++ order 3, Karras", { solver_order: 3, use_karras_sigmas: true }],
    // (linspace over 1000 of 1000 train steps repeats timesteps, so h = 0 and diffusers' update is NaN: use trailing)
    ["sde-dpmsolver++ order 2 with a generator, thresholding", { algorithm_type: "sde-dpmsolver++", thresholding: true, timestep_spacing: "trailing" }],
  ] as [string, Record<string, unknown>][]) {
    it(`a 1000-step loop (${label}) leaves tf.memory().numTensors where it started`, () => {
      const s = DPMSolverMultistepScheduler.fromConfig(rawConfig("ddpm_cat"), kw);
      s.setTimesteps(1000);
      const gen = new Generator().manualSeed(0);
      const { x, before } = runLongLoop(s, {
        shape: [1, 2, 2, 3],
        afterStep: (_, before0) => expect(tf.memory().numTensors).toBeLessThanOrEqual(before0 + 1 + s.config.solver_order),
      });
      x.dispose();
      expect(tf.memory().numTensors).toBe(before);
      // dispose / setTimesteps mid-run free the history too
      s.setTimesteps(10);
      const y = tf.ones([1, 2, 2, 3]);
      s.step(y, s.timesteps[0], y, { generator: gen }).prevSample.dispose();
      expect(tf.memory().numTensors).toBe(before + 2);
      s.setTimesteps(10);
      expect(tf.memory().numTensors).toBe(before + 1);
      s.step(y, s.timesteps[0], y, { generator: gen }).prevSample.dispose();
      s.dispose();
      expect(s.modelOutputs.every((m) => m === null)).toBe(true);
      y.dispose();
      expect(tf.memory().numTensors).toBe(before);
    });
  }
});
