/*
## CLIPTokenizer — what it reproduces, and where it differs

Reproduces transformers' **slow** `CLIPTokenizer` (tokenization_clip.py + PreTrainedTokenizer):
split on added/special tokens, clean the text, CLIP's regex, byte-level BPE with `</w>` word ends,
BOS/EOS, truncation, right padding, attention mask, decode.

Text cleaning (`textCleaning`):
* `"ftfy"` (default) = transformers with `ftfy` installed: `whitespace_clean(ftfy.fix_text(t)).lower()`.
  Our `fixText` (text-clean.ts) has all of ftfy 6.1.1's fix_text steps except mojibake repair
  (`fix_encoding`): HTML entities (`&amp;` → `&`, only until a line holding `<`), curly quotes,
  full-width forms, Latin ligatures, C1 controls as Windows-1252, line breaks, terminal escapes,
  control characters, NFC. Text that already is mojibake (`"cafÃ©"`) is kept; ftfy would fix it.
  This mode also equals OpenAI's original `SimpleTokenizer` on the golden prompts.
* `"basic"` = transformers without ftfy (`BasicTokenizer`): NFC, controls dropped, lower case, and a
  space around every CJK ideograph (so each one becomes its own word with `</w>`). It does NOT decode
  HTML entities, uncurl quotes or fold full-width letters.
* The fast Rust tokenizer (`CLIPTokenizerFast`, tokenizer.json) is not reproduced: it does NFC +
  lower case only (no ftfy, no CJK splitting), so it matches neither mode on such text.

Other differences: Unicode tables (categories, case mapping, NFC/NFKC) come from the JS engine,
not from Python's unicodedata. `modelMaxLength` defaults to 77 when the config has none
(transformers: 1e30). With `pad_token` "!" (non-SD CLIP configs), "!" is an added special token, so
a typed "!" becomes id 0 ("!" without `</w>`), exactly as in the slow tokenizer.
*/
import * as fs from "node:fs/promises";
import { HubEntryNotFoundError, hubFileDownload, tryHubFile, type HubOptions } from "../hub/index.js";
import { cleanText, type TextCleaning } from "./text-clean.js";

export type { TextCleaning } from "./text-clean.js";

/** A token the tokenizer never splits (transformers' AddedToken). */
export interface AddedToken {
  content: string;
  lstrip?: boolean;
  rstrip?: boolean;
  singleWord?: boolean;
  special?: boolean;
}

export interface CLIPTokenizerInit {
  /** vocab.json: token -> id. */
  vocab: Record<string, number> | Map<string, number>;
  /** merges.txt lines ("a b") or pairs, in rank order; a leading "#version" line is skipped. */
  merges: readonly string[] | readonly (readonly [string, string])[];
  bosToken?: string | AddedToken;
  eosToken?: string | AddedToken;
  unkToken?: string | AddedToken;
  /** null: no pad token (padding then throws). */
  padToken?: string | AddedToken | null;
  additionalSpecialTokens?: (string | AddedToken)[];
  /** Extra added tokens by id (tokenizer_config.json `added_tokens_decoder`, added_tokens.json). */
  addedTokens?: Record<number, string | AddedToken>;
  /** Default 77. */
  modelMaxLength?: number;
  /** Default "ftfy". */
  textCleaning?: TextCleaning;
  /** decode() default; transformers' default is false. */
  cleanUpTokenizationSpaces?: boolean;
}

export interface EncodeOptions {
  /** "max_length": to maxLength (default modelMaxLength); "longest"/true: to the longest in the batch. Default false. */
  padding?: "max_length" | "longest" | boolean;
  maxLength?: number;
  /**
   * Keep at most maxLength ids (default modelMaxLength) including BOS/EOS. Default false, except true
   * when maxLength is given without padding (as transformers).
   */
  truncation?: boolean;
  /** Add BOS/EOS (default true). */
  addSpecialTokens?: boolean;
}

export interface Encoding {
  inputIds: number[][];
  attentionMask: number[][];
}

export interface DecodeOptions {
  skipSpecialTokens?: boolean;
  cleanUpTokenizationSpaces?: boolean;
  /** Join added tokens and text with spaces (transformers' slow default true). */
  spacesBetweenSpecialTokens?: boolean;
}

export interface CLIPFromPretrainedOptions extends HubOptions {
  textCleaning?: TextCleaning;
}

/** A tokenizer file is missing or unreadable. */
export class TokenizerLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "TokenizerLoadError";
  }
}

/** CLIP keeps at most 49152 - 256 - 2 merges (the rest of a longer merges.txt is ignored). */
export const CLIP_MAX_MERGES = 49152 - 256 - 2;
const WORD_END = "</w>";
const CACHE_LIMIT = 100_000;

// GPT-2/CLIP byte <-> printable character map: printable Latin-1 bytes map to themselves,
// the other 68 bytes to U+0100.. in byte order.
const BYTE_ENCODER: string[] = [];
const BYTE_DECODER = new Map<string, number>();
{
  let n = 0;
  for (let b = 0; b < 256; b++) {
    const printable = (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
    BYTE_ENCODER[b] = String.fromCharCode(printable ? b : 256 + n++);
    BYTE_DECODER.set(BYTE_ENCODER[b], b);
  }
}

/** The 256-entry byte -> character table of byte-level BPE. */
export function bytesToUnicode(): readonly string[] {
  return BYTE_ENCODER;
}

const PAT = /<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+/giu;
const utf8 = new TextEncoder();

function toAdded(t: string | AddedToken, special: boolean): Required<AddedToken> {
  const a = typeof t === "string" ? { content: t } : t;
  return {
    content: a.content,
    lstrip: a.lstrip ?? false,
    rstrip: a.rstrip ?? false,
    singleWord: a.singleWord ?? false,
    special: a.special ?? special,
  };
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** Python str.rstrip()/lstrip() whitespace (str.isspace). */
const PY_WS = "[\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]";
const PY_LSTRIP = new RegExp(`^${PY_WS}+`, "u");
const PY_RSTRIP = new RegExp(`${PY_WS}+$`, "u");

export class CLIPTokenizer {
  readonly encoder: Map<string, number>;
  readonly decoder: Map<number, string>;
  readonly bpeRanks: Map<string, number>;
  readonly modelMaxLength: number;
  readonly textCleaning: TextCleaning;
  readonly cleanUpTokenizationSpaces: boolean;
  readonly bosToken: string;
  readonly eosToken: string;
  readonly unkToken: string;
  readonly padToken: string | null;
  readonly additionalSpecialTokens: string[];

  private readonly addedDecoder = new Map<number, Required<AddedToken>>();
  private readonly addedEncoder = new Map<string, number>();
  private readonly specialIds: Set<number>;
  private readonly specialTokens: Set<string>;
  private splitRe: RegExp | null = null;
  private cache = new Map<string, string[]>();

  constructor(init: CLIPTokenizerInit) {
    this.encoder = init.vocab instanceof Map ? new Map(init.vocab) : new Map(Object.entries(init.vocab));
    this.decoder = new Map();
    for (const [k, v] of this.encoder) this.decoder.set(v, k);

    let merges = init.merges;
    if (merges.length > 0 && typeof merges[0] === "string" && (merges[0] as string).startsWith("#version")) {
      merges = (merges as readonly string[]).slice(1);
    }
    this.bpeRanks = new Map();
    const count = Math.min(merges.length, CLIP_MAX_MERGES);
    for (let i = 0; i < count; i++) {
      const m = merges[i];
      const pair = typeof m === "string" ? m.trim().split(/\s+/) : m;
      if (pair.length !== 2 || pair[0] === "") continue;
      this.bpeRanks.set(`${pair[0]} ${pair[1]}`, i); // a repeated pair keeps its last rank (Python dict)
    }

    this.modelMaxLength = init.modelMaxLength ?? 77;
    this.textCleaning = init.textCleaning ?? "ftfy";
    this.cleanUpTokenizationSpaces = init.cleanUpTokenizationSpaces ?? false;

    // PreTrainedTokenizer.__init__: added_tokens_decoder first, then the special tokens
    // (bos, eos, unk, pad, additional) not yet added, with new ids after the vocab.
    for (const [id, tok] of Object.entries(init.addedTokens ?? {})) {
      const a = toAdded(tok, false);
      this.addedDecoder.set(Number(id), a);
      this.addedEncoder.set(a.content, Number(id));
    }
    const bos = toAdded(init.bosToken ?? "<|startoftext|>", true);
    const eos = toAdded(init.eosToken ?? "<|endoftext|>", true);
    const unk = toAdded(init.unkToken ?? "<|endoftext|>", true);
    const pad = init.padToken === null ? null : toAdded(init.padToken ?? "<|endoftext|>", true);
    const extra = (init.additionalSpecialTokens ?? []).map((t) => toAdded(t, true));
    this.bosToken = bos.content;
    this.eosToken = eos.content;
    this.unkToken = unk.content;
    this.padToken = pad?.content ?? null;
    this.additionalSpecialTokens = extra.map((t) => t.content);
    const specials = [bos, eos, unk, ...(pad ? [pad] : []), ...extra];
    for (const t of specials) this.addToken({ ...t, special: true });
    this.specialTokens = new Set(specials.map((t) => t.content));
    this.specialIds = new Set(specials.map((t) => this.convertTokenToId(t.content)));
    this.resetCache();
  }

  /**
   * Loads vocab.json and merges.txt (required), tokenizer_config.json, special_tokens_map.json and
   * added_tokens.json (optional) from a Hub repo or local folder, as transformers' from_pretrained.
   */
  static async fromPretrained(idOrPath: string, opts: CLIPFromPretrainedOptions = {}): Promise<CLIPTokenizer> {
    const { textCleaning, ...hubOpts } = opts;
    const where = `${idOrPath}${opts.subfolder ? ` (subfolder "${opts.subfolder}")` : ""}`;
    const required = async (name: string): Promise<string> => {
      try {
        return await fs.readFile(await hubFileDownload(idOrPath, name, hubOpts), "utf8");
      } catch (e) {
        if (e instanceof HubEntryNotFoundError) {
          throw new TokenizerLoadError(`CLIPTokenizer needs ${name} in ${where}, and it is missing. ${e.message}`, { cause: e });
        }
        throw e;
      }
    };
    const optional = async (name: string): Promise<Record<string, unknown> | null> => {
      const path = await tryHubFile(idOrPath, name, hubOpts);
      return path === null ? null : parseJson(await fs.readFile(path, "utf8"), `${name} of ${where}`);
    };
    const [vocabText, mergesText, config, specialMap, addedJson] = await Promise.all([
      required("vocab.json"),
      required("merges.txt"),
      optional("tokenizer_config.json"),
      optional("special_tokens_map.json"),
      optional("added_tokens.json"),
    ]);
    const vocab = parseJson(vocabText, `vocab.json of ${where}`) as Record<string, number>;
    return new CLIPTokenizer({
      vocab,
      merges: parseMergesFile(mergesText),
      textCleaning,
      ...tokenizerInitFromConfig(config ?? {}, specialMap ?? {}, addedJson ?? {}),
    });
  }

  /** Size of vocab.json (without added tokens). */
  get vocabSize(): number {
    return this.encoder.size;
  }

  get bosTokenId(): number {
    return this.convertTokenToId(this.bosToken);
  }
  get eosTokenId(): number {
    return this.convertTokenToId(this.eosToken);
  }
  get unkTokenId(): number {
    return this.convertTokenToId(this.unkToken);
  }
  get padTokenId(): number | null {
    return this.padToken === null ? null : this.convertTokenToId(this.padToken);
  }
  get allSpecialIds(): number[] {
    return [...this.specialIds];
  }

  /** vocab.json plus the added tokens. */
  getVocab(): Map<string, number> {
    const v = new Map(this.encoder);
    for (const [k, id] of this.addedEncoder) v.set(k, id);
    return v;
  }

  /** BPE tokens of a text, without BOS/EOS (transformers' tokenize). */
  tokenize(text: string): string[] {
    const chunks = this.splitOnAddedTokens(text);
    const out: string[] = [];
    for (const chunk of chunks) {
      if (chunk === "") continue;
      if (this.addedEncoder.has(chunk)) out.push(chunk);
      else for (const t of this.tokenizeChunk(chunk)) out.push(t);
    }
    return out;
  }

  convertTokensToIds(tokens: string): number;
  convertTokensToIds(tokens: readonly string[]): number[];
  convertTokensToIds(tokens: string | readonly string[]): number | number[] {
    return typeof tokens === "string" ? this.convertTokenToId(tokens) : tokens.map((t) => this.convertTokenToId(t));
  }

  convertIdsToTokens(ids: readonly number[], skipSpecialTokens = false): string[] {
    const out: string[] = [];
    for (const id of ids) {
      if (skipSpecialTokens && this.specialIds.has(id)) continue;
      const tok = this.addedDecoder.get(id)?.content ?? this.decoder.get(id);
      if (tok === undefined) throw new RangeError(`Token id ${id} is not in the vocabulary (size ${this.vocabSize}).`);
      out.push(tok);
    }
    return out;
  }

  /** Tokens back to text: bytes from the BPE characters, UTF-8 decoded (errors replaced), "</w>" -> " ". */
  convertTokensToString(tokens: readonly string[]): string {
    const text = tokens.join("");
    const bytes = new Uint8Array(text.length);
    let n = 0;
    for (const c of text) {
      const b = BYTE_DECODER.get(c);
      if (b === undefined) throw new Error(`Character ${JSON.stringify(c)} is not a byte-level BPE character.`);
      bytes[n++] = b;
    }
    return pyStrip(new TextDecoder("utf-8").decode(bytes.subarray(0, n)).replaceAll(WORD_END, " "));
  }

  /** One or many texts to ids with BOS/EOS, truncated and padded as asked. */
  encode(texts: string | readonly string[], opts: EncodeOptions = {}): Encoding {
    const list = typeof texts === "string" ? [texts] : texts;
    const padding = opts.padding === true ? "longest" : (opts.padding ?? false);
    const addSpecial = opts.addSpecialTokens ?? true;
    const truncation = opts.truncation ?? (opts.maxLength !== undefined && padding === false);
    const maxLength = opts.maxLength ?? this.modelMaxLength;
    const nSpecial = addSpecial ? 2 : 0;

    const inputIds = list.map((text) => {
      let ids = this.convertTokensToIds(this.tokenize(text));
      if (truncation && ids.length + nSpecial > maxLength) ids = ids.slice(0, Math.max(0, maxLength - nSpecial));
      return addSpecial ? [this.bosTokenId, ...ids, this.eosTokenId] : ids;
    });
    const attentionMask = inputIds.map((ids) => ids.map(() => 1));

    if (padding !== false) {
      const target = padding === "max_length" ? maxLength : Math.max(0, ...inputIds.map((ids) => ids.length));
      const padId = this.padTokenId;
      for (let i = 0; i < inputIds.length; i++) {
        const missing = target - inputIds[i].length;
        if (missing <= 0) continue;
        if (padId === null) throw new Error("Padding was asked for, but this tokenizer has no pad token.");
        inputIds[i].push(...new Array<number>(missing).fill(padId));
        attentionMask[i].push(...new Array<number>(missing).fill(0));
      }
    }
    return { inputIds, attentionMask };
  }

  /** Ids back to text (transformers' slow decode). */
  decode(ids: readonly number[], opts: DecodeOptions = {}): string {
    const skip = opts.skipSpecialTokens ?? false;
    const tokens = this.convertIdsToTokens(ids, skip);
    // Legacy added tokens are kept verbatim, the rest goes through the byte decoder.
    const parts: string[] = [];
    let current: string[] = [];
    for (const t of tokens) {
      if (skip && this.specialTokens.has(t)) continue;
      if (this.isLegacyAdded(t)) {
        if (current.length > 0) {
          const s = this.convertTokensToString(current);
          if (s.length > 0) parts.push(s);
          current = [];
        }
        parts.push(t);
      } else {
        current.push(t);
      }
    }
    if (current.length > 0) parts.push(this.convertTokensToString(current));
    const text = parts.join((opts.spacesBetweenSpecialTokens ?? true) ? " " : "");
    return (opts.cleanUpTokenizationSpaces ?? this.cleanUpTokenizationSpaces) ? cleanUpTokenization(text) : text;
  }

  batchDecode(batch: readonly (readonly number[])[], opts: DecodeOptions = {}): string[] {
    return batch.map((ids) => this.decode(ids, opts));
  }

  /** Byte-level BPE of one pre-token (already mapped through bytesToUnicode), as space-free symbols. */
  bpe(token: string): string[] {
    const hit = this.cache.get(token);
    if (hit !== undefined) return hit;
    let word = Array.from(token);
    if (word.length === 0) return [];
    word[word.length - 1] += WORD_END;
    if (word.length === 1) return word;

    for (;;) {
      let best = Infinity;
      let first = "";
      let second = "";
      for (let i = 0; i < word.length - 1; i++) {
        const r = this.bpeRanks.get(`${word[i]} ${word[i + 1]}`);
        if (r !== undefined && r < best) {
          best = r;
          first = word[i];
          second = word[i + 1];
        }
      }
      if (best === Infinity) break;
      const merged: string[] = [];
      for (let i = 0; i < word.length; ) {
        if (i < word.length - 1 && word[i] === first && word[i + 1] === second) {
          merged.push(first + second);
          i += 2;
        } else {
          merged.push(word[i++]);
        }
      }
      word = merged;
      if (word.length === 1) break;
    }
    if (this.cache.size >= CACHE_LIMIT) this.resetCache();
    this.cache.set(token, word);
    return word;
  }

  // ---------------------------------------------------------------------------------------------

  private resetCache(): void {
    this.cache = new Map([
      ["<|startoftext|>", ["<|startoftext|>"]],
      ["<|endoftext|>", ["<|endoftext|>"]],
    ]);
  }

  /** Added tokens decode() keeps verbatim: non-special ones, and additional special ones beyond the vocab. */
  private isLegacyAdded(t: string): boolean {
    const id = this.addedEncoder.get(t);
    if (id === undefined) return false;
    return !this.specialTokens.has(t) || (this.additionalSpecialTokens.includes(t) && id >= this.vocabSize);
  }

  private convertTokenToId(token: string): number {
    const id = this.addedEncoder.get(token) ?? this.encoder.get(token) ?? this.encoder.get(this.unkToken);
    if (id === undefined) throw new Error(`Token ${JSON.stringify(token)} is not in the vocabulary, nor is the unk token.`);
    return id;
  }

  /** _add_tokens: an existing vocab entry keeps its id, a new token gets the next free id. */
  private addToken(tok: Required<AddedToken>): void {
    if (tok.content === "" || this.addedEncoder.has(tok.content)) return;
    let id = this.encoder.get(tok.content);
    if (id === undefined) {
      const used = new Set([...this.encoder.keys(), ...this.addedEncoder.keys()]);
      id = used.size;
    }
    this.addedDecoder.set(id, tok);
    this.addedEncoder.set(tok.content, id);
    this.splitRe = null;
  }

  /** PreTrainedTokenizer.tokenize's split on added tokens (leftmost, longest), with lstrip/rstrip/single_word. */
  private splitOnAddedTokens(text: string): string[] {
    if (this.addedEncoder.size === 0) return [text];
    if (this.splitRe === null) {
      const alts = [...this.addedEncoder.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
      this.splitRe = new RegExp(`(${alts.join("|")})`, "u");
    }
    const tokens = text.split(this.splitRe);
    for (let i = 0; i < tokens.length; i++) {
      const id = this.addedEncoder.get(tokens[i]);
      if (id === undefined || i % 2 === 0) continue; // even slots are the text between matches
      const tok = this.addedDecoder.get(id)!;
      const left = i > 0 ? tokens[i - 1] : "";
      const right = i < tokens.length - 1 ? tokens[i + 1] : "";
      if (tok.rstrip && right) tokens[i + 1] = right.replace(PY_LSTRIP, "");
      if (tok.lstrip && left) tokens[i - 1] = left.replace(PY_RSTRIP, "");
      if (tok.singleWord && left && !left.endsWith(" ")) {
        tokens[i - 1] += tokens[i];
        tokens[i] = "";
      } else if (tok.singleWord && right && !right.startsWith(" ")) {
        tokens[i] += right;
        tokens[i + 1] = "";
      }
    }
    return tokens;
  }

  /** CLIPTokenizer._tokenize: clean, regex pre-tokens, bytes -> characters, BPE. */
  private tokenizeChunk(chunk: string): string[] {
    const text = cleanText(chunk, this.textCleaning);
    const out: string[] = [];
    for (const m of text.matchAll(PAT)) {
      let mapped = "";
      for (const b of utf8.encode(m[0])) mapped += BYTE_ENCODER[b];
      for (const t of this.bpe(mapped)) out.push(t);
    }
    return out;
  }
}

/** merges.txt as transformers reads it for CLIP: strip, drop the first line, keep CLIP_MAX_MERGES lines. */
export function parseMergesFile(text: string): string[] {
  return pyStrip(text).split("\n").slice(1, CLIP_MAX_MERGES + 1);
}

function parseJson(text: string, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new TokenizerLoadError(`${what} is not valid JSON: ${(e as Error).message}`, { cause: e });
  }
  if (v === null || typeof v !== "object" || Array.isArray(v)) throw new TokenizerLoadError(`${what} must hold a JSON object.`);
  return v as Record<string, unknown>;
}

function pyStrip(s: string): string {
  return s.replace(PY_LSTRIP, "").replace(PY_RSTRIP, "");
}

/** A token as the JSON files store it: a string or an AddedToken dict; null/absent -> undefined. */
function jsonToken(v: unknown): string | AddedToken | null | undefined {
  if (v === null) return null;
  if (typeof v === "string") return v;
  if (v !== undefined && typeof v === "object" && typeof (v as { content?: unknown }).content === "string") {
    const o = v as Record<string, unknown>;
    return {
      content: o.content as string,
      lstrip: o.lstrip === true,
      rstrip: o.rstrip === true,
      singleWord: o.single_word === true,
      ...(typeof o.special === "boolean" ? { special: o.special } : {}),
    };
  }
  return undefined;
}

/** Constructor options from tokenizer_config.json, special_tokens_map.json (wins) and added_tokens.json. */
export function tokenizerInitFromConfig(
  config: Record<string, unknown>,
  specialTokensMap: Record<string, unknown> = {},
  addedTokensJson: Record<string, unknown> = {},
): Omit<CLIPTokenizerInit, "vocab" | "merges"> {
  const merged = { ...config, ...specialTokensMap };
  const init: Omit<CLIPTokenizerInit, "vocab" | "merges"> = {};
  const bos = jsonToken(merged.bos_token);
  const eos = jsonToken(merged.eos_token);
  const unk = jsonToken(merged.unk_token);
  const pad = jsonToken(merged.pad_token);
  if (bos) init.bosToken = bos;
  if (eos) init.eosToken = eos;
  if (unk) init.unkToken = unk;
  if (pad !== undefined) init.padToken = pad;
  if (Array.isArray(merged.additional_special_tokens)) {
    init.additionalSpecialTokens = merged.additional_special_tokens
      .map(jsonToken)
      .filter((t): t is string | AddedToken => t !== null && t !== undefined);
  }
  if (typeof config.model_max_length === "number") init.modelMaxLength = config.model_max_length;
  if (typeof config.clean_up_tokenization_spaces === "boolean") {
    init.cleanUpTokenizationSpaces = config.clean_up_tokenization_spaces;
  }
  const added: Record<number, string | AddedToken> = {};
  const decoder = config.added_tokens_decoder;
  if (decoder && typeof decoder === "object") {
    for (const [id, v] of Object.entries(decoder as Record<string, unknown>)) {
      const t = jsonToken(v);
      if (t) added[Number(id)] = t;
    }
  }
  for (const [content, id] of Object.entries(addedTokensJson)) {
    if (typeof id === "number" && !(id in added)) added[id] = content;
  }
  if (Object.keys(added).length > 0) init.addedTokens = added;
  return init;
}

/** transformers' clean_up_tokenization: drop spaces before punctuation and English contractions. */
export function cleanUpTokenization(text: string): string {
  return text
    .replaceAll(" .", ".")
    .replaceAll(" ?", "?")
    .replaceAll(" !", "!")
    .replaceAll(" ,", ",")
    .replaceAll(" ' ", "'")
    .replaceAll(" n't", "n't")
    .replaceAll(" 'm", "'m")
    .replaceAll(" 's", "'s")
    .replaceAll(" 've", "'ve")
    .replaceAll(" 're", "'re");
}
