// A Generator that hands out stored noise (diffusers' draws recorded by the fixtures) in call order,
// checking each requested shape, so a pipeline's random draws can be replayed exactly.
import * as tf from "@tensorflow/tfjs";
import { Generator } from "../src/random/generator.js";

export class ReplayGenerator extends Generator {
  private next = 0;
  constructor(private readonly draws: tf.Tensor[], private readonly label = "replay") {
    super();
  }
  override randnArray(shape: number[]): Float32Array {
    const d = this.draws[this.next];
    if (!d) throw new Error(`${this.label}: draw ${this.next} of shape [${shape}] requested, but only ${this.draws.length} were stored`);
    if (d.shape.join() !== shape.join()) throw new Error(`${this.label}: draw ${this.next} requested shape [${shape}], stored [${d.shape}]`);
    this.next++;
    return Float32Array.from(d.dataSync());
  }
  get used(): number {
    return this.next;
  }
}
