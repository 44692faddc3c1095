// Hidden checks of exercises/08-cost.ipynb: costPerImage and breakEvenVolume on fresh random prices (including a
// code that never pays off); secondsPerImage against the grader's own timing of the same calls (a factor of 3
// either way, and the time must grow from n to 4n steps: a constant or made-up number fails), on the model the
// notebook loads (SD 1.5 if the Hub or the cache has it, else datasets/sd-tiny). The judge (setup, checks) runs in
// the grader's process and times its own copy of the model there; the kernel parts only call the student's functions.
//@@ exercise 08-cost
//@@ data datasets/sd-tiny
//@@ timeout 400

//@@ setup
// the model the notebook's setup cell loads: SD 1.5 from the Hub (or the cache), else the kit's small shapes model
const MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5", OFFLINE_FOLDER = "../datasets/sd-tiny";
const { pipe, source: model } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, MODEL_ID, OFFLINE_FOLDER, { quiet: true });
/** The grader's own measurement: the fastest of 3 timed calls after a warm-up (the least disturbed by other work). */
async function measure(steps: number): Promise<number> {
  const once = async () => {
    const t0 = performance.now();
    const { images } = await pipe.generate({ prompt: "two purple circles on an orange background", numInferenceSteps: steps, generator: new lib.Generator().manualSeed(1), outputType: "np" });
    images.dispose();
    return (performance.now() - t0) / 1000;
  };
  await once();
  return Math.min(await once(), await once(), await once());
}
return { model, measure };

//@@ kernel-setup
// the same model as the notebook's setup cell and the judge: SD 1.5 from the Hub (or the cache), else datasets/sd-tiny
const { pipe, source } = await lib.fromPretrainedOrOffline(lib.StableDiffusionPipeline, "stable-diffusion-v1-5/stable-diffusion-v1-5", "../datasets/sd-tiny", { quiet: true });
console.log(`hidden checks on ${source}`);
return { pipe };

//@@ check price 2 costPerImage(): seconds / 3600 · rate / utilisation
const cases = [0, 1, 2].map(() => ({ s: g.uniform(0.2, 30), r: g.uniform(0.3, 4), u: g.uniform(0.1, 1) }));
const calls = cases.map((c) => g.student("costPerImage", "price", c));
const results = [];
for (const [i, { s, r, u }] of cases.entries()) {
  results.push(g.compareNumber(`costPerImage(${s.toFixed(3)}, ${r.toFixed(3)}, ${u.toFixed(3)})`, await calls[i], ((s / 3600) * r) / u, {
    atol: 1e-12, rtol: 1e-9, hint: "seconds / 3600 gives hours; times dollars per hour; divided by the utilisation (idle paid time is paid by the pictures)." }));
}
return g.all(...results);
//@@ kernel
return { price: (a: any) => costPerImage(a.s, a.r, a.u) };

//@@ check breakeven 2 breakEvenVolume(): F / (p − c), Infinity when the code never pays off
const F = g.uniform(50, 2000), p = g.uniform(0.005, 0.1), c = p * g.uniform(0.05, 0.9);
const c2 = p * g.uniform(1, 3);
const [got, never] = [g.student("breakEvenVolume", "breakeven", { F, p, c }), g.student("breakEvenVolume", "breakeven", { F, p, c: c2 })];
return g.all(
  g.compareNumber(`breakEvenVolume(${F.toFixed(2)}, ${p.toFixed(4)}, ${c.toFixed(4)})`, await got, F / (p - c), {
    atol: 1e-9, rtol: 1e-9, hint: "at V* the monthly costs are equal: F + V c = V p." }),
  g.compareNumber(`breakEvenVolume(${F.toFixed(2)}, ${p.toFixed(4)}, ${c2.toFixed(4)}) (the code costs more per picture than the call)`, await never, Infinity, {
    hint: "when c >= p the code never pays off: return Infinity." }),
);
//@@ kernel
return { breakeven: (a: any) => breakEvenVolume(a.F, a.p, a.c) };

//@@ check seconds 3 secondsPerImage() measures this machine's seconds per picture
// Timing on a shared machine is noisy (other notebooks may run beside this one): the grader takes its fastest of 3
// calls, growth from n to 4n steps must be real (more than a third of the grader's growth) and at most linear (6× is
// the ceiling with noise), and a miss is measured once more before it counts (the kernel measures twice up front).
const n = g.int(2, 3);
const calls = [n, 4 * n, n, 4 * n].map((steps) => g.student<unknown>("secondsPerImage", "seconds", { steps }));
const fmt = (x: number) => `${x.toFixed(3)} s`;
let verdict = "";
for (let attempt = 0; attempt < 2; attempt++) {
  const got = [await calls[2 * attempt], await calls[2 * attempt + 1]];
  if (!got.every((x) => typeof x === "number" && Number.isFinite(x) && x > 0)) return g.fail(`secondsPerImage should return a positive number of seconds; got ${got.map(String).join(" and ")}.`);
  const [a, b] = got as number[];
  const want = [await h.measure(n), await h.measure(4 * n)];
  const within = a >= want[0] / 3 && a <= want[0] * 3 && b >= want[1] / 3 && b <= want[1] * 3;
  const ratioGot = b / a, ratioWant = want[1] / want[0];
  const growth = ratioGot >= 1 + (ratioWant - 1) / 3 && ratioGot <= 6;
  const what = `secondsPerImage(pipe, ${n}, 2) = ${fmt(a)} and (pipe, ${4 * n}, 2) = ${fmt(b)}; the grader measured ${fmt(want[0])} and ${fmt(want[1])} on ${h.model}`;
  if (within && growth) return g.pass(`${what}.`);
  verdict = `${what}. ` + (!within ? "Yours are more than 3 times off: time pipe.generate with performance.now() (milliseconds: divide by 1000), after one untimed warm-up call. "
    : `Yours grow ${ratioGot.toFixed(2)}× from ${n} to ${4 * n} steps, the grader's ${ratioWant.toFixed(2)}×: measure each call with the steps given. `);
}
return g.fail(verdict);
//@@ kernel
return { seconds: (a: any) => secondsPerImage(k.pipe, a.steps, 2) };
