// CLIPTextModel (transformers 4.38 models/clip/modeling_clip.py), the text encoder of Stable Diffusion 1.x
// (Radford et al. 2021, "Learning Transferable Visual Models From Natural Language Supervision"):
//   x = token_embedding(ids) + position_embedding(0 .. L-1)
//   each layer (pre-LN): x = x + out_proj(attention(layer_norm1(x)))   causal, plus the padding mask if given
//                        x = x + fc2(act(fc1(layer_norm2(x))))
//   last_hidden_state = final_layer_norm(x); pooler_output = last_hidden_state at the end-of-text token.
// Tokens run as a 2-D [B*L, hidden] matrix so every matMul is 2-D (see layers.ts).
import * as tf from "@tensorflow/tfjs";
import { ConfigError, type Config, type ConfigSpec } from "../io/config.js";
import type { SaveDtype } from "../io/safetensors.js";
import { scaledDotProductAttention } from "../nn/scaled-dot-product-attention.js";
import { Embedding } from "../nn/embedding.js";
import { LayerNorm } from "../nn/normalization.js";
import { Linear } from "../nn/linear.js";
import { gelu, geluTanh, quickGelu, silu, type Activation } from "../nn/activations.js";
import { ModelMixin } from "./modeling-utils.js";
import { Module, ModuleList } from "../nn/module.js";

/** The config.json of a transformers CLIPTextModel (CLIPTextConfig), snake_case as on disk; `textEncoder.config` has this type, frozen. */
export interface CLIPTextConfig extends Config {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  projection_dim: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: string;
  layer_norm_eps: number;
  attention_dropout: number;
  initializer_range: number;
  initializer_factor: number;
  pad_token_id: number | null;
  bos_token_id: number | null;
  eos_token_id: number;
  architectures: string[] | null;
  model_type: string;
  torch_dtype: string | null;
}

const ACT2FN: Record<string, Activation> = {
  quick_gelu: quickGelu,
  gelu,
  gelu_new: geluTanh,
  gelu_pytorch_tanh: geluTanh,
  relu: (x) => tf.relu(x),
  silu,
  swish: silu,
};

/** transformers' ACT2FN for the activations CLIP configs use. */
export function getTransformersActivation(name: string): Activation {
  const f = ACT2FN[name];
  if (!f) throw new ConfigError(`CLIPTextModel: hidden_act "${name}" is not supported; supported: ${Object.keys(ACT2FN).map((k) => `"${k}"`).join(", ")}`);
  return f;
}

/** torch.finfo(torch.float32).min: the additive mask value for a hidden key. */
const MASK_MIN = -3.4028234663852886e38;

export class CLIPTextEmbeddings extends Module {
  readonly token_embedding: Embedding;
  readonly position_embedding: Embedding;

  constructor(vocabSize: number, maxPositions: number, hidden: number) {
    super();
    this.token_embedding = this.addModule("token_embedding", new Embedding(vocabSize, hidden));
    this.position_embedding = this.addModule("position_embedding", new Embedding(maxPositions, hidden));
  }

  /** ids [B, L] int32 -> [B*L, hidden] (positions 0 .. L-1). */
  forward(ids: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const [b, l] = ids.shape;
      const hidden = this.token_embedding.embeddingDim;
      const tokens = tf.reshape(this.token_embedding.forward(ids), [b, l, hidden]);
      const positions = tf.slice(this.position_embedding.weight.value, [0, 0], [l, hidden]);
      return tf.reshape(tf.add(tokens, positions), [b * l, hidden]) as tf.Tensor2D;
    });
  }
}

/** Multi-head self-attention with biases on q/k/v/out and scale head_dim^-0.5. */
export class CLIPAttention extends Module {
  readonly k_proj: Linear;
  readonly v_proj: Linear;
  readonly q_proj: Linear;
  readonly out_proj: Linear;
  readonly scale: number;

  constructor(readonly embedDim: number, readonly numHeads: number) {
    super();
    const headDim = embedDim / numHeads;
    if (!Number.isInteger(headDim)) {
      throw new ConfigError(`CLIPTextModel: hidden_size ${embedDim} must be divisible by num_attention_heads ${numHeads}`);
    }
    this.scale = headDim ** -0.5;
    // torch registration (= state_dict) order: k, v, q, out
    this.k_proj = this.addModule("k_proj", new Linear(embedDim, embedDim));
    this.v_proj = this.addModule("v_proj", new Linear(embedDim, embedDim));
    this.q_proj = this.addModule("q_proj", new Linear(embedDim, embedDim));
    this.out_proj = this.addModule("out_proj", new Linear(embedDim, embedDim));
  }

  /** x [B*L, d]; mask additive [L, L] or [B, L, L]. */
  forward(x: tf.Tensor2D, batch: number, mask: tf.Tensor2D | tf.Tensor3D): tf.Tensor2D {
    return tf.tidy(() => {
      const q = this.q_proj.forward(x);
      const k = this.k_proj.forward(x);
      const v = this.v_proj.forward(x);
      return this.out_proj.forward(scaledDotProductAttention(q, k, v, batch, this.numHeads, this.scale, mask));
    });
  }
}

export class CLIPMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;

  constructor(hidden: number, intermediate: number, readonly act: Activation) {
    super();
    this.fc1 = this.addModule("fc1", new Linear(hidden, intermediate));
    this.fc2 = this.addModule("fc2", new Linear(intermediate, hidden));
  }

  forward(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => this.fc2.forward(this.act(this.fc1.forward(x)) as tf.Tensor2D));
  }
}

export class CLIPEncoderLayer extends Module {
  readonly self_attn: CLIPAttention;
  readonly layer_norm1: LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layer_norm2: LayerNorm;

  constructor(c: CLIPTextConfig) {
    super();
    this.self_attn = this.addModule("self_attn", new CLIPAttention(c.hidden_size, c.num_attention_heads));
    this.layer_norm1 = this.addModule("layer_norm1", new LayerNorm(c.hidden_size, c.layer_norm_eps));
    this.mlp = this.addModule("mlp", new CLIPMLP(c.hidden_size, c.intermediate_size, getTransformersActivation(c.hidden_act)));
    this.layer_norm2 = this.addModule("layer_norm2", new LayerNorm(c.hidden_size, c.layer_norm_eps));
  }

  forward(x: tf.Tensor2D, batch: number, mask: tf.Tensor2D | tf.Tensor3D): tf.Tensor2D {
    return tf.tidy(() => {
      const h = tf.add(x, this.self_attn.forward(this.layer_norm1.forward(x), batch, mask)) as tf.Tensor2D;
      return tf.add(h, this.mlp.forward(this.layer_norm2.forward(h))) as tf.Tensor2D;
    });
  }
}

export class CLIPEncoder extends Module {
  readonly layers: ModuleList<CLIPEncoderLayer>;

  constructor(c: CLIPTextConfig) {
    super();
    this.layers = this.addModule("layers", new ModuleList(Array.from({ length: c.num_hidden_layers }, () => new CLIPEncoderLayer(c))));
  }
}

export class CLIPTextTransformer extends Module {
  readonly embeddings: CLIPTextEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly final_layer_norm: LayerNorm;

  constructor(c: CLIPTextConfig) {
    super();
    this.embeddings = this.addModule("embeddings", new CLIPTextEmbeddings(c.vocab_size, c.max_position_embeddings, c.hidden_size));
    this.encoder = this.addModule("encoder", new CLIPEncoder(c));
    this.final_layer_norm = this.addModule("final_layer_norm", new LayerNorm(c.hidden_size, c.layer_norm_eps));
  }
}

export type TokenIdsInput = number[][] | tf.Tensor2D;

export interface CLIPTextForwardOptions {
  /** [B, L]: 1 = attend, anything else = padding (hidden from every query), combined with the causal mask. */
  attentionMask?: TokenIdsInput;
  /** Also return the embeddings and every layer's output (before final_layer_norm). */
  outputHiddenStates?: boolean;
}

export interface CLIPTextModelOutput {
  /** [B, L, hidden] after final_layer_norm. */
  lastHiddenState: tf.Tensor3D;
  /** [B, hidden]: lastHiddenState at the end-of-text token of each row. */
  poolerOutput: tf.Tensor2D;
  /** num_hidden_layers + 1 tensors [B, L, hidden]: embeddings, then each layer's output. */
  hiddenStates?: tf.Tensor3D[];
}

/** Rows of a [B, L] integer input as one flat array plus its shape; `what` names it in errors. */
function readIds(input: TokenIdsInput, what: string): { data: Int32Array; batch: number; length: number } {
  if (input instanceof tf.Tensor) {
    if (input.rank !== 2) throw new Error(`CLIPTextModel: ${what} must be [batch, sequence_length], got shape [${input.shape}]`);
    const values = input.dataSync();
    for (let i = 0; i < values.length; i++) {
      if (!Number.isInteger(values[i])) throw new Error(`CLIPTextModel: ${what} must hold integers, found ${values[i]}`);
    }
    return { data: Int32Array.from(values), batch: input.shape[0], length: input.shape[1] };
  }
  if (!Array.isArray(input) || input.length === 0 || !input.every((r) => Array.isArray(r))) {
    throw new Error(`CLIPTextModel: ${what} must be a non-empty array of rows (number[][]) or a 2-D tensor`);
  }
  const length = input[0].length;
  const data = new Int32Array(input.length * length);
  input.forEach((row, i) => {
    if (row.length !== length) throw new Error(`CLIPTextModel: ${what} rows differ in length (row 0 has ${length}, row ${i} has ${row.length}); pad them to one length`);
    row.forEach((v, j) => {
      if (!Number.isInteger(v)) throw new Error(`CLIPTextModel: ${what}[${i}][${j}] = ${v} is not an integer`);
      data[i * length + j] = v;
    });
  });
  return { data, batch: input.length, length };
}

/** transformers' CLIPTextModel: the text encoder of Stable Diffusion 1.x (`text_encoder/`). */
export class CLIPTextModel extends ModelMixin {
  static readonly className = "CLIPTextModel";
  static readonly safetensorsWeightsName = "model.safetensors";
  static readonly weightsName = "pytorch_model.bin";
  /** A buffer older checkpoints saved (persistent before transformers 4.31); transformers drops it on load. */
  static readonly keysToIgnoreOnLoad = ["text_model.embeddings.position_ids"];

  /** CLIPTextConfig's defaults (openai/clip-vit-base-patch32's text tower); SD 1.x uses ViT-L/14's (768 wide). */
  static readonly configSpec: ConfigSpec = {
    defaults: {
      vocab_size: 49408,
      hidden_size: 512,
      intermediate_size: 2048,
      projection_dim: 512,
      num_hidden_layers: 12,
      num_attention_heads: 8,
      max_position_embeddings: 77,
      hidden_act: "quick_gelu",
      layer_norm_eps: 1e-5,
      attention_dropout: 0.0,
      initializer_range: 0.02,
      initializer_factor: 1.0,
      pad_token_id: 1,
      bos_token_id: 49406,
      eos_token_id: 49407,
      architectures: null,
      model_type: "clip_text_model",
      torch_dtype: null,
    },
    types: {
      vocab_size: "integer",
      hidden_size: "integer",
      intermediate_size: "integer",
      projection_dim: "integer",
      num_hidden_layers: "integer",
      num_attention_heads: "integer",
      max_position_embeddings: "integer",
      pad_token_id: "integer|null",
      bos_token_id: "integer|null",
      eos_token_id: "integer",
      architectures: "array|null",
      torch_dtype: "string|null",
    },
  };

  declare readonly config: Readonly<CLIPTextConfig>;
  readonly text_model: CLIPTextTransformer;

  constructor(config: Record<string, unknown> = {}) {
    if (config.model_type !== undefined && config.model_type !== "clip_text_model") {
      throw new ConfigError(
        `CLIPTextModel: config model_type is ${JSON.stringify(config.model_type)}, expected "clip_text_model"` +
          (config.model_type === "clip" ? ` (a full CLIPModel config: its "text_config" entry is the text encoder's config)` : ""),
      );
    }
    // a transformers config: no diffusers bookkeeping keys
    super(CLIPTextModel.className, CLIPTextModel.configSpec, config, { diffusersKeys: false });
    this.text_model = this.addModule("text_model", new CLIPTextTransformer(this.cfg));
  }

  /** The config, typed. */
  get cfg(): CLIPTextConfig {
    return this.config as unknown as CLIPTextConfig;
  }

  /**
   * transformers' CLIPTextModel(input_ids, attention_mask).  inputIds [B, L] with L <= max_position_embeddings
   * (SD pads to 77). Without attentionMask only the causal mask applies, as in StableDiffusionPipeline.
   * The caller disposes the returned tensors.
   */
  forward(inputIds: TokenIdsInput, opts: CLIPTextForwardOptions = {}): CLIPTextModelOutput {
    const c = this.cfg;
    const { data, batch, length } = readIds(inputIds, "input_ids");
    if (length === 0) throw new Error("CLIPTextModel: input_ids rows are empty (need at least one token)");
    if (length > c.max_position_embeddings) {
      throw new Error(
        `CLIPTextModel: input_ids have ${length} tokens but max_position_embeddings is ${c.max_position_embeddings}: ` +
          `truncate to ${c.max_position_embeddings} tokens (tokenizer truncation: true, maxLength ${c.max_position_embeddings})`,
      );
    }
    for (let i = 0; i < data.length; i++) {
      if (data[i] < 0 || data[i] >= c.vocab_size) {
        throw new Error(
          `CLIPTextModel: input_ids[${Math.floor(i / length)}][${i % length}] = ${data[i]} is outside the vocabulary ` +
            `(ids must be in 0 .. ${c.vocab_size - 1}, vocab_size ${c.vocab_size}); was the tokenizer made for another model?`,
        );
      }
    }
    let pad: Int32Array | null = null;
    if (opts.attentionMask !== undefined) {
      const m = readIds(opts.attentionMask, "attentionMask");
      if (m.batch !== batch || m.length !== length) {
        throw new Error(`CLIPTextModel: attentionMask is [${m.batch}, ${m.length}] but input_ids are [${batch}, ${length}]`);
      }
      pad = m.data;
    }

    const maskValues = additiveMask(batch, length, pad);
    const pooledRows = clipPooledPositions(data, batch, length, c.eos_token_id).map((p, b) => b * length + p);

    return tf.tidy(() => {
      const tm = this.text_model;
      const mask = pad === null ? tf.tensor2d(maskValues, [length, length]) : tf.tensor3d(maskValues, [batch, length, length]);
      let x = tm.embeddings.forward(tf.tensor2d(data, [batch, length], "int32"));
      const hidden: tf.Tensor2D[] = [x];
      for (const layer of tm.encoder.layers.items) {
        x = layer.forward(x, batch, mask);
        hidden.push(x);
      }
      const last = tm.final_layer_norm.forward(x);
      const d = c.hidden_size;
      const out: CLIPTextModelOutput = {
        lastHiddenState: tf.reshape(last, [batch, length, d]),
        poolerOutput: tf.gather(last, tf.tensor1d(pooledRows, "int32")),
      };
      if (opts.outputHiddenStates) out.hiddenStates = hidden.map((h) => tf.reshape(h, [batch, length, d]));
      return out as unknown as tf.TensorContainer;
    }) as unknown as CLIPTextModelOutput;
  }

  /** config.json as transformers writes it: sorted keys, with architectures, model_type and torch_dtype. */
  protected override configJson(opts: { dtype?: SaveDtype } = {}): string {
    const all: Record<string, unknown> = {
      ...this.config,
      architectures: [CLIPTextModel.className],
      model_type: "clip_text_model",
      torch_dtype: opts.dtype === "F16" ? "float16" : "float32",
    };
    const sorted = Object.fromEntries(Object.keys(all).sort().map((k) => [k, all[k]]));
    return JSON.stringify(sorted, null, 2) + "\n";
  }
}

/**
 * transformers' causal mask (finfo.min above the diagonal) plus, when `pad` is given, finfo.min on every padded
 * key; both together overflow to -inf in float32, exactly as torch adds them. [L, L] or [B, L, L].
 */
function additiveMask(batch: number, length: number, pad: Int32Array | null): Float32Array {
  const n = pad === null ? 1 : batch;
  const out = new Float32Array(n * length * length);
  for (let b = 0; b < n; b++) {
    for (let i = 0; i < length; i++) {
      for (let j = 0; j < length; j++) {
        const causal = j > i ? MASK_MIN : 0;
        const padding = pad !== null && pad[b * length + j] !== 1 ? MASK_MIN : 0;
        out[(b * length + i) * length + j] = causal + padding; // Float32Array rounds -6.8e38 to -Infinity
      }
    }
  }
  return out;
}

/**
 * The pooled position per row (transformers 4.38): eos_token_id == 2 (legacy configs, SD 1.x) -> argmax(input_ids),
 * i.e. the first 49407 as it is CLIP's highest id; otherwise the first position holding eos_token_id (0 if none).
 */
export function clipPooledPositions(ids: ArrayLike<number>, batch: number, length: number, eosTokenId: number): number[] {
  const out: number[] = [];
  for (let b = 0; b < batch; b++) {
    let best = 0;
    for (let j = 0; j < length; j++) {
      const v = ids[b * length + j];
      if (eosTokenId === 2 ? v > ids[b * length + best] : v === eosTokenId) {
        best = j;
        if (eosTokenId !== 2) break;
      }
    }
    out.push(best);
  }
  return out;
}
