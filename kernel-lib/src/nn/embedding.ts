// torch.nn.Embedding: row i of a [num, dim] table for each index i.
import * as tf from "@tensorflow/tfjs";
import { Module, type Parameter } from "./module.js";

/** torch.nn.Embedding: row lookup in a [num, dim] table. */
export class Embedding extends Module {
  readonly weight: Parameter;

  constructor(readonly numEmbeddings: number, readonly embeddingDim: number) {
    super();
    this.weight = this.addParameter("weight", [numEmbeddings, embeddingDim], "same", "normal");
  }

  forward(indices: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.gather(this.weight.value, tf.cast(indices, "int32")));
  }
}
