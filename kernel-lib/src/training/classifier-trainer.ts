// Training the digit classifier (models/digit-classifier.ts) on the shared loop of trainer.ts: the softmax
// cross-entropy of its logits, L = mean_i (logsumexp(z_i) - z_i[y_i]) (the negative log-likelihood of the labels),
// with AdamW, gradient clipping and a step-seeded, resumable data order, as the diffusion trainers.
import * as tf from "@tensorflow/tfjs";
import type { Generator } from "../random/generator.js";
import type { DigitClassifier } from "../models/digit-classifier.js";
import { Trainer, type PreparedStep, type TrainerOptions } from "./trainer.js";

/** Batch `step` of `batchSize` pictures: ink [B, side, side, 1] in [0, 1] (flat) and their labels. */
export type LabelledBatchSource = (step: number, batchSize: number) => { images: Float32Array; labels: Int32Array };

export interface ClassifierTrainerOptions extends TrainerOptions {
  data: LabelledBatchSource;
  batchSize: number;
}

/** Mean softmax cross-entropy of `logits` [N, C] against integer `labels` [N]. */
export function crossEntropyLoss(logits: tf.Tensor2D, labels: tf.Tensor1D): tf.Scalar {
  return tf.tidy(() => {
    const onehot = tf.oneHot(tf.cast(labels, "int32") as tf.Tensor1D, logits.shape[1]);
    const picked = tf.sum(tf.mul(logits, onehot), 1);
    return tf.mean(tf.sub(tf.logSumExp(logits, 1), picked)) as tf.Scalar;
  });
}

export class ClassifierTrainer extends Trainer {
  readonly opts: ClassifierTrainerOptions;

  constructor(readonly model: DigitClassifier, opts: ClassifierTrainerOptions) {
    if (!Number.isInteger(opts.batchSize) || opts.batchSize < 1) throw new Error(`ClassifierTrainer: batchSize must be a positive integer, got ${opts.batchSize}`);
    super({ classifier: model }, model.namedParameters(), opts);
    this.opts = opts;
  }

  protected prepareStep(step: number, _generator: Generator): PreparedStep {
    const c = this.model.config;
    const b = this.opts.data(step, this.opts.batchSize);
    const n = this.opts.batchSize, side = c.sample_size;
    if (b.images.length !== n * side * side * c.in_channels || b.labels.length !== n) {
      throw new Error(`ClassifierTrainer: batch ${step} has ${b.images.length} values and ${b.labels.length} labels; expected ${n} pictures of ${side}x${side}x${c.in_channels} and ${n} labels`);
    }
    const x = tf.tensor4d(b.images, [n, side, side, c.in_channels]);
    const y = tf.tensor1d(b.labels, "int32");
    return { loss: () => crossEntropyLoss(this.model.forward(x), y), dispose: () => tf.dispose([x, y]) };
  }
}
