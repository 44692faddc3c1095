// torch.nn.utils.clip_grad_norm_ (what accelerator.clip_grad_norm_ calls in diffusers' training scripts):
// if the global L2 norm of all gradients exceeds max_norm, scale every gradient by max_norm / (norm + 1e-6).
import * as tf from "@tensorflow/tfjs";

/** Returns the clipped gradients (new tensors; the inputs are disposed) and the norm before clipping. */
export function clipGradNorm(grads: Map<string, tf.Tensor>, maxNorm: number): { grads: Map<string, tf.Tensor>; totalNorm: number } {
  const totalNorm = tf.tidy(() => tf.sqrt(tf.addN([...grads.values()].map((g) => tf.sum(tf.square(g))))).dataSync()[0]);
  const coef = maxNorm / (totalNorm + 1e-6);
  if (coef >= 1) return { grads, totalNorm };
  const out = new Map<string, tf.Tensor>();
  for (const [name, g] of grads) {
    out.set(name, tf.mul(g, coef));
    g.dispose();
  }
  return { grads: out, totalNorm };
}
