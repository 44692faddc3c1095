// "Cheating" answers for every exercise's TODO cells (by TODO name): constants, or the inputs returned
// unchanged, with the exercise's signatures. The grading test proves each exercise's checks give them less than
// full marks. Cells not listed keep the solution's code.
export const CHEATS: Record<string, Record<string, string>> = {
  "01-ddpm-step": {
    posterior: `function posterior(alphasCumprod: Float32Array, t: number, prevT: number): { x0Coeff: number; xtCoeff: number; variance: number } {
  return { x0Coeff: 0.1, xtCoeff: 0.9, variance: 0.01 };
}`,
    step: `function ddpmStep(scheduler: DDPMScheduler, eps: tf.Tensor, t: number, x: tf.Tensor, noise: tf.Tensor): tf.Tensor {
  return tf.clone(x);
}`,
  },
  "02-ddim-step": {
    sigma: `function ddimSigma(scheduler: DDIMScheduler, t: number, eta: number): number {
  return 0;
}`,
    step: `function ddimStep(scheduler: DDIMScheduler, eps: tf.Tensor, t: number, x: tf.Tensor, eta: number, noise: tf.Tensor): tf.Tensor {
  return tf.clone(x);
}`,
  },
  "03-cfg": {
    combine: `function cfgCombine(epsUncond: tf.Tensor, epsCond: tf.Tensor, w: number): tf.Tensor {
  return tf.clone(epsCond);
}`,
    loop: `async function generateByHand(pipe: StableDiffusionPipeline, prompt: string, seed: number, steps: number, w: number): Promise<tf.Tensor4D> {
  const size = pipe.unet.config.sample_size as number;
  return tf.zeros([1, size, size, 4]);
}`,
  },
  "04-scheduler-swap": {
    keys: `function keysPassedOn(config: Readonly<Record<string, unknown>>, Target: { configSpec: { defaults: Record<string, unknown> } }): string[] {
  return ["num_train_timesteps", "beta_start", "beta_end"];
}`,
    swap: `function swapScheduler<T extends SchedulerMixin>(source: SchedulerMixin, Target: SchedulerClass<T>): T {
  return source as unknown as T;
}`,
    tradeoff: `async function measureTradeOff(pipe: StableDiffusionPipeline, stepCounts: number[], referenceSteps: number, prompt: string,
  seed: number, guidance: number): Promise<{ steps: number; modelCalls: number; distance: number }[]> {
  return stepCounts.map((s) => ({ steps: s, modelCalls: s, distance: 0.1 }));
}`,
  },
  "05-guidance-sweep": {
    grid: `async function guidanceGrid(pipe: StableDiffusionPipeline, prompt: string, scales: number[], seed: number, steps: number): Promise<tf.Tensor4D> {
  return tf.zeros([scales.length, 64, 64, 3]);
}`,
    effect: `async function guidanceEffect(pipe: StableDiffusionPipeline, prompt: string, scales: number[], seed: number, steps: number): Promise<number[]> {
  return scales.map(() => 0);
}`,
  },
  "06-lora": {
    forward: `function loraForward(x: tf.Tensor2D, W: tf.Tensor2D, b: tf.Tensor1D, A: tf.Tensor2D, B: tf.Tensor2D, alpha: number, scale: number): tf.Tensor2D {
  return tf.zeros([x.shape[0], W.shape[0]]);
}`,
    merge: `function mergeLora(W: tf.Tensor2D, A: tf.Tensor2D, B: tf.Tensor2D, alpha: number, scale: number): tf.Tensor2D {
  return tf.clone(W);
}`,
  },
  "07-attention-slicing": {
    attention: `function attentionHeads(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, heads: number): tf.Tensor2D {
  return tf.clone(q);
}`,
    sliced: `function slicedAttention(q: tf.Tensor2D, k: tf.Tensor2D, v: tf.Tensor2D, heads: number, sliceSize: number): tf.Tensor2D {
  return tf.clone(q);
}`,
  },
  "08-cost": {
    seconds: `async function secondsPerImage(pipe: StableDiffusionPipeline, steps: number, runs: number): Promise<number> {
  return 1;
}`,
    price: `function costPerImage(seconds: number, dollarsPerHour: number, utilisation: number): number {
  return 0.01;
}`,
    breakeven: `function breakEvenVolume(fixedPerMonth: number, callPerImage: number, codePerImage: number): number {
  return 1000;
}`,
  },
};
