// The activation functions of torch.nn.functional and diffusers' get_activation (models/activations.py).
import * as tf from "@tensorflow/tfjs";

export type Activation = (x: tf.Tensor) => tf.Tensor;

/** SiLU / swish: x * sigmoid(x). */
export function silu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(x)));
}

/** GELU, exact erf form as torch's default: x/2 * (1 + erf(x / sqrt 2)). */
export function gelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)));
}

/** GELU, tanh approximation (torch approximate="tanh", transformers gelu_new): x/2 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3))). */
export function geluTanh<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => {
    const inner = tf.mul(tf.add(x, tf.mul(tf.pow(x, 3), 0.044715)), Math.sqrt(2 / Math.PI));
    return tf.mul(tf.mul(x, 0.5), tf.add(tf.tanh(inner), 1));
  });
}

/** QuickGELU (OpenAI CLIP; diffusers' ApproximateGELU): x * sigmoid(1.702 x). */
export function quickGelu<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.sigmoid(tf.mul(x, 1.702))));
}

/** Mish: x * tanh(softplus(x)). */
export function mish<T extends tf.Tensor>(x: T): T {
  return tf.tidy(() => tf.mul(x, tf.tanh(tf.softplus(x))));
}

const ACTIVATIONS: Record<string, Activation> = { swish: silu, silu, mish, gelu, relu: (x) => tf.relu(x) };

/** diffusers' get_activation: "swish" | "silu" | "mish" | "gelu" | "relu". */
export function getActivation(name: string): Activation {
  const f = ACTIVATIONS[name.toLowerCase()];
  if (!f) throw new Error(`Unsupported activation function "${name}"; supported: ${Object.keys(ACTIVATIONS).map((k) => `"${k}"`).join(", ")}`);
  return f;
}
