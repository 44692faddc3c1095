// diffusers.optimization.get_scheduler, as a plain function of the step: the learning-rate factor lr_k / lr.
//   constant_with_warmup: k / warmup during warmup, then 1
//   cosine:               k / warmup, then 0.5 (1 + cos(pi * progress)), progress = (k - warmup) / (total - warmup)
//   linear:               k / warmup, then (total - k) / (total - warmup)

export type LrScheduleName = "constant" | "constant_with_warmup" | "cosine" | "linear";

export function lrFactor(name: LrScheduleName, step: number, opts: { warmupSteps?: number; trainingSteps?: number } = {}): number {
  const warmup = opts.warmupSteps ?? 0;
  if (name === "constant") return 1;
  if (step < warmup) return step / Math.max(1, warmup);
  if (name === "constant_with_warmup") return 1;
  const total = opts.trainingSteps;
  if (total === undefined) throw new Error(`lrFactor: the "${name}" schedule needs trainingSteps`);
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (name === "cosine") return Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
  if (name === "linear") return Math.max(0, (total - step) / Math.max(1, total - warmup));
  throw new Error(`lrFactor: unknown schedule "${name}"; use constant, constant_with_warmup, cosine or linear`);
}
