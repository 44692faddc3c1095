// diffusers ModelMixin._convert_deprecated_attention_blocks (v0.27.2, models/modeling_utils.py).
//
// Old checkpoints (google/ddpm-cat-256 and the other google/ddpm-*, the SD 1.x VAE, ...) come from the
// pre-0.13 `AttentionBlock`, whose projections were named query/key/value/proj_attn. diffusers now builds those
// blocks as `Attention(..., _from_deprecated_attn_block=True)` and, when loading, renames for every such module
// path P (and only these eight keys; P.group_norm.* keeps its name):
//   P.query.{weight,bias}     -> P.to_q.{weight,bias}
//   P.key.{weight,bias}       -> P.to_k.{weight,bias}
//   P.value.{weight,bias}     -> P.to_v.{weight,bias}
//   P.proj_attn.{weight,bias} -> P.to_out.0.{weight,bias}
// Keys already in the new form are left alone (the state dict may have been converted before).
//
// diffusers finds P by walking the model; without a model we recognise it by name: the deprecated-block
// Attention modules are exactly the `attentions.<i>` children of UNetMidBlock2D, Attn(Skip)Down/UpBlock2D,
// AttnDownEncoderBlock2D and AttnUpDecoderBlock2D, so P is any key prefix ending in `attentions.<i>`.

const DEPRECATED = /^(.*(?:^|\.)attentions\.\d+)\.(query|key|value|proj_attn)\.(weight|bias)$/;

const RENAME: Record<string, string> = { query: "to_q", key: "to_k", value: "to_v", proj_attn: "to_out.0" };

/** The new name of a deprecated attention key, or null when `key` is not one. */
export function deprecatedAttentionKey(key: string): string | null {
  const m = DEPRECATED.exec(key);
  return m ? `${m[1]}.${RENAME[m[2]]}.${m[3]}` : null;
}

/**
 * Returns a new state dict with the deprecated attention names renamed (query -> to_q, key -> to_k, value -> to_v,
 * proj_attn -> to_out.0); every other key is copied unchanged. Order follows the input, a renamed key taking the
 * place of its old name. As in diffusers, if both the old and the new name are present the old one's value wins.
 */
export function convertDeprecatedAttentionBlocks<T>(stateDict: Map<string, T>): Map<string, T> {
  const renamed = new Map<string, string>();
  for (const k of stateDict.keys()) {
    const n = deprecatedAttentionKey(k);
    if (n !== null) renamed.set(k, n);
  }
  const targets = new Set(renamed.values());
  const out = new Map<string, T>();
  for (const [k, v] of stateDict) {
    const n = renamed.get(k);
    if (n !== undefined) out.set(n, v);
    else if (!targets.has(k)) out.set(k, v); // an existing new-style key is replaced by the deprecated one
  }
  return out;
}
