// CLIPTokenizer against transformers' slow tokenizer goldens (../shared/fixtures/tokenizer/golden.json).
import { beforeAll, describe, expect, it } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import {
  CLIPTokenizer,
  TokenizerLoadError,
  bytesToUnicode,
  cleanUpTokenization,
  parseMergesFile,
} from "../src/tokenizers/clip.js";
import { basicClean, fixText, unescapeHtml, whitespaceClean } from "../src/tokenizers/text-clean.js";
import { fixture } from "./helpers.js";

interface GoldenCase {
  prompt: string;
  input_ids: number[];
  attention_mask: number[];
  tokens: string[];
  ids_untruncated: number[];
  n_tokens_untruncated: number;
  truncated: boolean;
}
interface Golden {
  modes: { ftfy: GoldenCase[]; basic: GoldenCase[] };
  comparison: { index: number; ftfy_vs_basic_equal: boolean; openai_ids: number[] }[];
}

const DIR = fixture("tokenizer");
const golden = JSON.parse(fs.readFileSync(path.join(DIR, "golden.json"), "utf8")) as Golden;

function loadLocal(textCleaning?: "ftfy" | "basic"): CLIPTokenizer {
  const vocab = JSON.parse(fs.readFileSync(path.join(DIR, "vocab.json"), "utf8")) as Record<string, number>;
  const merges = parseMergesFile(fs.readFileSync(path.join(DIR, "merges.txt"), "utf8"));
  return new CLIPTokenizer({ vocab, merges, textCleaning });
}

let tok: CLIPTokenizer;
let basic: CLIPTokenizer;
beforeAll(async () => {
  tok = await CLIPTokenizer.fromPretrained(DIR);
  basic = await CLIPTokenizer.fromPretrained(DIR, { textCleaning: "basic" });
});

describe("CLIPTokenizer: golden prompts, ftfy mode (transformers slow tokenizer + ftfy)", () => {
  it("has 32 prompts", () => {
    expect(golden.modes.ftfy).toHaveLength(32);
  });

  it.each(golden.modes.ftfy.map((c, i) => [i, JSON.stringify(c.prompt).slice(0, 50), c] as const))(
    "prompt %i %s",
    (_i, _name, c) => {
      const enc = tok.encode(c.prompt, { padding: "max_length", maxLength: 77, truncation: true });
      expect(enc.inputIds[0]).toEqual(c.input_ids);
      expect(enc.attentionMask[0]).toEqual(c.attention_mask);
      const ids = tok.encode(c.prompt).inputIds[0];
      expect(ids).toEqual(c.ids_untruncated);
      expect(ids.length).toBe(c.n_tokens_untruncated);
      expect(c.truncated).toBe(ids.length > 77);
      const n = c.attention_mask.reduce((a, b) => a + b, 0);
      expect(tok.convertIdsToTokens(enc.inputIds[0].slice(0, n))).toEqual(c.tokens);
      const bpe = tok.tokenize(c.prompt);
      expect([tok.bosToken, ...bpe.slice(0, 75), tok.eosToken]).toEqual(c.tokens);
    },
  );

  it("equals OpenAI's SimpleTokenizer ids on every prompt", () => {
    for (const cmp of golden.comparison) {
      expect(tok.encode(golden.modes.ftfy[cmp.index].prompt).inputIds[0]).toEqual(cmp.openai_ids);
    }
  });
});

describe("CLIPTokenizer: golden prompts, basic mode (no ftfy)", () => {
  it.each(golden.modes.basic.map((c, i) => [i, JSON.stringify(c.prompt).slice(0, 50), c] as const))(
    "prompt %i %s",
    (_i, _name, c) => {
      const enc = basic.encode(c.prompt, { padding: "max_length", maxLength: 77, truncation: true });
      expect(enc.inputIds[0]).toEqual(c.input_ids);
      expect(enc.attentionMask[0]).toEqual(c.attention_mask);
      expect(basic.encode(c.prompt).inputIds[0]).toEqual(c.ids_untruncated);
    },
  );

  it("differs from ftfy mode exactly where the goldens say", () => {
    for (const cmp of golden.comparison) {
      const p = golden.modes.ftfy[cmp.index].prompt;
      const same = JSON.stringify(tok.encode(p).inputIds) === JSON.stringify(basic.encode(p).inputIds);
      expect(same, p).toBe(cmp.ftfy_vs_basic_equal);
    }
  });
});

describe("CLIPTokenizer: special tokens and config", () => {
  it("reads the SD1.x files: ids, max length, pad = <|endoftext|>", () => {
    expect(tok.bosTokenId).toBe(49406);
    expect(tok.eosTokenId).toBe(49407);
    expect(tok.padTokenId).toBe(49407);
    expect(tok.unkTokenId).toBe(49407);
    expect(tok.padToken).toBe("<|endoftext|>");
    expect(tok.modelMaxLength).toBe(77);
    expect(tok.vocabSize).toBe(49408);
    expect(tok.bpeRanks.size).toBe(48894);
  });

  it("pad token '!' (other CLIP configs) is id 0 and pads with 0", () => {
    const t = new CLIPTokenizer({ vocab: tok.encoder, merges: [...tok.bpeRanks.keys()], padToken: "!" });
    expect(t.padTokenId).toBe(0);
    const enc = t.encode("a cat", { padding: "max_length" });
    expect(enc.inputIds[0].slice(0, 5)).toEqual([49406, 320, 2368, 49407, 0]);
    expect(enc.inputIds[0]).toHaveLength(77);
    // As in the slow tokenizer, a typed "!" is then the added token "!" (id 0), not "!</w>".
    expect(t.tokenize("hi!")).toEqual(["hi</w>", "!"]);
    expect(tok.tokenize("hi!")).toEqual(["hi</w>", "!</w>"]);
  });

  it("recognises special-token text, also when cleaning made it", () => {
    expect(tok.tokenize("a<|endoftext|>b")).toEqual(["a</w>", "<|endoftext|>", "b</w>"]);
    expect(tok.tokenize("<|ENDOFTEXT|> x")).toEqual(["<|endoftext|>", "x</w>"]);
    expect(tok.encode("<|startoftext|>").inputIds[0]).toEqual([49406, 49406, 49407]);
  });

  it("constructor from parsed data equals fromPretrained", () => {
    const t = loadLocal();
    for (const c of golden.modes.ftfy) expect(t.encode(c.prompt).inputIds).toEqual(tok.encode(c.prompt).inputIds);
    // merges as pairs, with the header line left in
    const pairs = [...tok.bpeRanks.keys()].map((k) => k.split(" ") as [string, string]);
    const t2 = new CLIPTokenizer({ vocab: Object.fromEntries(tok.encoder), merges: pairs });
    expect(t2.encode("supercalifragilistic").inputIds).toEqual(tok.encode("supercalifragilistic").inputIds);
    const t3 = new CLIPTokenizer({ vocab: tok.encoder, merges: ["#version: 0.2", ...tok.bpeRanks.keys()] });
    expect(t3.bpeRanks.size).toBe(48894);
  });

  it("byte map has 256 distinct printable characters", () => {
    const m = bytesToUnicode();
    expect(new Set(m).size).toBe(256);
    expect(m[0x20]).toBe("Ġ");
    expect(m[0x41]).toBe("A");
    expect(m[0xad]).toBe("Ń");
  });
});

describe("CLIPTokenizer: encode options", () => {
  const prompts = ["a watercolor fox", "a photograph of an astronaut riding a horse", ""];

  it("batch encode equals one-by-one", () => {
    const batch = tok.encode(prompts, { padding: "max_length", maxLength: 77, truncation: true });
    expect(batch.inputIds).toHaveLength(3);
    prompts.forEach((p, i) => {
      const one = tok.encode(p, { padding: "max_length", maxLength: 77, truncation: true });
      expect(batch.inputIds[i]).toEqual(one.inputIds[0]);
      expect(batch.attentionMask[i]).toEqual(one.attentionMask[0]);
    });
  });

  it('padding "longest" pads to the longest row with the pad id, mask 0', () => {
    const enc = tok.encode(prompts, { padding: "longest" });
    expect(enc.inputIds.map((r) => r.length)).toEqual([10, 10, 10]);
    expect(enc.inputIds[0]).toEqual([49406, 320, 14211, 3240, 49407, 49407, 49407, 49407, 49407, 49407]);
    expect(enc.attentionMask[0]).toEqual([1, 1, 1, 1, 1, 0, 0, 0, 0, 0]);
    expect(enc.attentionMask[1]).toEqual(new Array(10).fill(1));
    expect(enc.attentionMask[2]).toEqual([1, 1, 0, 0, 0, 0, 0, 0, 0, 0]);
    expect(tok.encode(prompts, { padding: true }).inputIds).toEqual(enc.inputIds);
  });

  it("padding false gives ragged rows; no truncation by default", () => {
    const long = golden.modes.ftfy[18];
    const enc = tok.encode([prompts[0], long.prompt], { padding: false });
    expect(enc.inputIds[0]).toEqual([49406, 320, 14211, 3240, 49407]);
    expect(enc.inputIds[1]).toEqual(long.ids_untruncated);
    expect(enc.attentionMask[1]).toEqual(new Array(82).fill(1));
  });

  it("truncation keeps 75 tokens + BOS + EOS; maxLength without padding truncates (transformers)", () => {
    const long = golden.modes.ftfy[18];
    const t = tok.encode(long.prompt, { truncation: true }).inputIds[0];
    expect(t).toEqual(long.input_ids);
    expect(tok.encode(long.prompt, { maxLength: 10 }).inputIds[0]).toEqual([...long.ids_untruncated.slice(0, 9), 49407]);
    // padding to max_length without truncation leaves a longer row alone
    expect(tok.encode(long.prompt, { padding: "max_length" }).inputIds[0]).toHaveLength(82);
  });

  it("addSpecialTokens false", () => {
    expect(tok.encode("a watercolor fox", { addSpecialTokens: false }).inputIds[0]).toEqual([320, 14211, 3240]);
  });
});

describe("CLIPTokenizer: decode", () => {
  it("round-trips plain lower-case text", () => {
    for (const text of ["a watercolor fox", "a photograph of an astronaut riding a horse", "the quick brown fox jumps over the lazy dog"]) {
      const ids = tok.encode(text, { padding: "max_length", maxLength: 77, truncation: true }).inputIds[0];
      expect(tok.decode(ids, { skipSpecialTokens: true })).toBe(text);
    }
  });

  it("keeps special tokens unless asked, like the slow tokenizer", () => {
    const ids = tok.encode("a watercolor fox").inputIds[0];
    expect(tok.decode(ids)).toBe("<|startoftext|>a watercolor fox <|endoftext|>");
  });

  it("decodes multi-byte characters across tokens", () => {
    for (const text of ["café crème brûlée", "東京の夜景", "a 🦊 fox emoji 🎨✨"]) {
      expect(tok.decode(tok.encode(text).inputIds[0], { skipSpecialTokens: true })).toBe(text);
    }
  });

  it("clean_up_tokenization_spaces on request", () => {
    const ids = tok.encode("hello , world !").inputIds[0];
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe("hello , world !");
    expect(tok.decode(ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: true })).toBe("hello, world!");
    expect(cleanUpTokenization("do n't , it 's , i 'm")).toBe("don't, it's, i'm");
  });
});

describe("text cleaning (ftfy subset, basic)", () => {
  it("unescapes HTML as ftfy: named, all-caps, numeric; keeps ambiguous text", () => {
    expect(unescapeHtml("a &amp; b &lt;3 &eacute; &EACUTE; &#65;&#x42;")).toBe("a & b <3 é É AB");
    expect(unescapeHtml("this&not that &amp &#59; &#12abc; &bogus;")).toBe("this&not that &amp &#59; &#12abc; &bogus;");
    expect(unescapeHtml("&#128; &#0; &#x110000;")).toBe("€ \ufffd \ufffd");
    expect(unescapeHtml("P&EACUTE;REZ BUNDESSTRA&SZLIG;E &ntilde; &Ntilde; &NTILDE; &nTILDE; &LT;")).toBe("PÉREZ BUNDESSTRASSE ñ Ñ Ñ &nTILDE; <");
    // fix_text repeats until stable, so double escapes unescape fully; a line with "<" stops it
    expect(fixText("&amp;lt;")).toBe("<");
    expect(fixText("&amp; <b>\n&amp;")).toBe("&amp; <b>\n&amp;");
    expect(fixText("&amp;\n<b> &amp;")).toBe("&\n<b> &amp;");
  });

  it("quotes, widths, ligatures, C1, line breaks, controls, escapes, NFC", () => {
    expect(fixText("don’t “quote” ‘me’")).toBe("don't \"quote\" 'me'");
    expect(fixText("ｆｕｌｌ\u3000ＡＢＣ！")).toBe("full ABC!");
    expect(fixText("ﬁne ﬂow")).toBe("fine flow");
    expect(fixText("\u0093hi\u0094")).toBe("“hi”".replace(/[“”]/g, '"'));
    expect(fixText("a\r\nb\rc\u2028d")).toBe("a\nb\nc\nd");
    expect(fixText("a\u0000b\u200bc\ufeffd\x1b[31mred\x1b[0m")).toBe("ab\u200bcdred");
    expect(fixText("e\u0301")).toBe("é");
    expect(fixText("…—–")).toBe("…—–");
  });

  it("whitespace_clean and basic cleaning", () => {
    expect(whitespaceClean("  a \t b\n\nc  ")).toBe("a b c");
    expect(basicClean("Hello\tWORLD 東京 x\u0000y")).toBe("hello world 東 京 xy");
  });
});

describe("CLIPTokenizer.fromPretrained", () => {
  it("loads the sd-tiny-pipe folder with subfolder tokenizer", async () => {
    const t = await CLIPTokenizer.fromPretrained(fixture("sd-tiny-pipe"), { subfolder: "tokenizer" });
    expect(t.vocabSize).toBe(49408);
    expect(t.bpeRanks.size).toBe(48894);
    expect(t.padTokenId).toBe(49407);
    const c = golden.modes.ftfy[1];
    expect(t.encode(c.prompt, { padding: "max_length", maxLength: t.modelMaxLength, truncation: true }).inputIds[0]).toEqual(c.input_ids);
  });

  it("missing vocab.json: a clear error naming the folder and the file", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clip-tok-"));
    try {
      fs.mkdirSync(path.join(dir, "tokenizer"));
      fs.copyFileSync(path.join(DIR, "merges.txt"), path.join(dir, "tokenizer", "merges.txt"));
      const p = CLIPTokenizer.fromPretrained(dir, { subfolder: "tokenizer" });
      await expect(p).rejects.toThrow(TokenizerLoadError);
      await expect(p).rejects.toThrow(/vocab\.json/);
      await expect(p).rejects.toThrow(dir);
      await expect(p).rejects.toThrow(/subfolder "tokenizer"/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("tokenizer_config.json and special_tokens_map.json are honoured", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "clip-tok-"));
    try {
      for (const f of ["vocab.json", "merges.txt"]) fs.copyFileSync(path.join(DIR, f), path.join(dir, f));
      fs.writeFileSync(path.join(dir, "tokenizer_config.json"), JSON.stringify({ model_max_length: 16, pad_token: "<|endoftext|>" }));
      fs.writeFileSync(path.join(dir, "special_tokens_map.json"), JSON.stringify({ pad_token: { content: "!", lstrip: false, rstrip: false } }));
      const t = await CLIPTokenizer.fromPretrained(dir);
      expect(t.modelMaxLength).toBe(16);
      expect(t.padTokenId).toBe(0);
      expect(t.encode("a", { padding: "max_length" }).inputIds[0]).toEqual([49406, 320, 49407, ...new Array(13).fill(0)]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
