// Whether a gradient is being recorded (inside tf.grad / tf.variableGrads, outside a kernel): layers pick the
// form whose gradient is cheap on wasm while training, and the fastest forward otherwise.
import * as tf from "@tensorflow/tfjs";

export function isRecordingGradients(): boolean {
  return (tf.engine() as unknown as { isTapeOn(): boolean }).isTapeOn();
}
