// Text cleaning before CLIP's BPE, the two ways transformers' slow CLIPTokenizer does it:
// * "ftfy":  whitespace_clean(ftfy.fix_text(text)).lower()  (ftfy importable, the usual setup)
// * "basic": " ".join(BasicTokenizer(strip_accents=False, do_split_on_punc=False).tokenize(text))
//
// fixText is the part of ftfy 6.1.1's fix_text that does not need its mojibake heuristics:
// everything fix_text does except `fix_encoding` (and its sub-steps restore_byte_a0,
// replace_lossy_sequences, decode_inconsistent_utf8). Text that already is mojibake ("cafÃ©")
// stays as it is here; ftfy would repair it to "café". Other differences: Unicode tables are the
// JS engine's (ICU), not Python's unicodedata, and segment lengths count UTF-16 units.
import { HTML_ENTITY_ENTRIES } from "./html-entities.js";

export type TextCleaning = "ftfy" | "basic";

// ---------------------------------------------------------------------------------------------
// ftfy subset

let entities: Map<string, string> | null = null;
function entityTable(): Map<string, string> {
  if (entities === null) {
    entities = new Map();
    for (const e of HTML_ENTITY_ENTRIES) {
      const semi = e.indexOf(";");
      entities.set(`&${e.slice(0, semi + 1)}`, e.slice(semi + 1));
    }
  }
  return entities;
}

// Python html.unescape's fixes for numeric references (HTML5 rules).
const CP1252_80_9F =
  "\u20ac\u0081\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\u008d\u017d\u008f" +
  "\u0090\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\u009d\u017e\u0178";

function isInvalidCodepoint(n: number): boolean {
  return (
    (n >= 0x1 && n <= 0x8) || n === 0xb || (n >= 0xe && n <= 0x1f) || (n >= 0x7f && n <= 0x9f) ||
    (n >= 0xfdd0 && n <= 0xfdef) || (n & 0xfffe) === 0xfffe
  );
}

/** html.unescape of one complete numeric reference body ("65", "x41"), or null if it is not one. */
function numericCharref(body: string): string | null {
  let n: number;
  if (/^[0-9]+$/.test(body)) n = parseInt(body, 10);
  else if (/^[xX][0-9a-fA-F]+$/.test(body)) n = parseInt(body.slice(1), 16);
  else return null; // html.unescape decodes only a prefix: the ";" survives and ftfy keeps the text
  if (n === 0) return "\ufffd";
  if (n === 0x0d) return "\r";
  if (n >= 0x80 && n <= 0x9f) return CP1252_80_9F[n - 0x80];
  if ((n >= 0xd800 && n <= 0xdfff) || n > 0x10ffff) return "\ufffd";
  if (isInvalidCodepoint(n)) return "";
  return String.fromCodePoint(n);
}

/** ftfy.fixes.unescape_html: entities ending in ";" (html5 table + all-caps Latin forms) and &#...; references. */
export function unescapeHtml(text: string): string {
  const table = entityTable();
  return text.replace(/&#?[0-9A-Za-z]{1,24};/g, (m) => {
    const named = table.get(m);
    if (named !== undefined) return named;
    if (!m.startsWith("&#")) return m;
    const out = numericCharref(m.slice(2, -1));
    // ftfy keeps the reference when the decoded text still holds a ";" (e.g. "&#59;").
    return out === null || out.includes(";") ? m : out;
  });
}

// sloppy-windows-1252 for U+0080..U+009F (undefined bytes stay themselves).
function fixC1Controls(text: string): string {
  return text.replace(/[\u0080-\u009f]/g, (c) => CP1252_80_9F[c.charCodeAt(0) - 0x80]);
}

const LIGATURES: Record<string, string> = {
  "Ĳ": "IJ", "ĳ": "ij", "ŉ": "ʼn", "Ǳ": "DZ", "ǲ": "Dz", "ǳ": "dz", "Ǆ": "DŽ", "ǅ": "Dž", "ǆ": "dž",
  "Ǉ": "LJ", "ǈ": "Lj", "ǉ": "lj", "Ǌ": "NJ", "ǋ": "Nj", "ǌ": "nj",
  "ﬀ": "ff", "ﬁ": "fi", "ﬂ": "fl", "ﬃ": "ffi", "ﬄ": "ffl", "ﬅ": "ſt", "ﬆ": "st",
};
const LIGATURE_RE = new RegExp(`[${Object.keys(LIGATURES).join("")}]`, "g");

// U+3000 -> space, and every U+FF01..U+FFEF whose NFKC form differs.
let widthMap: Map<string, string> | null = null;
function fixCharacterWidth(text: string): string {
  if (!/[\u3000\uff01-\uffef]/.test(text)) return text;
  if (widthMap === null) {
    widthMap = new Map([["\u3000", " "]]);
    for (let i = 0xff01; i < 0xfff0; i++) {
      const c = String.fromCharCode(i);
      const alt = c.normalize("NFKC");
      if (alt !== c) widthMap.set(c, alt);
    }
  }
  const map = widthMap;
  return text.replace(/[\u3000\uff01-\uffef]/g, (c) => map.get(c) ?? c);
}

function uncurlQuotes(text: string): string {
  return text.replace(/[\u201c-\u201f]/g, '"').replace(/[\u02bc\u2018-\u201b]/g, "'");
}

function fixLineBreaks(text: string): string {
  return text.replace(/\r\n/g, "\n").replace(/[\r\u2028\u2029\u0085]/g, "\n");
}

// Unpaired surrogates (in JS, paired ones already are one character).
function fixSurrogates(text: string): string {
  return text.replace(/[\ud800-\udfff]/gu, "\ufffd");
}

// Python's \d in the ANSI pattern is any Unicode decimal digit.
function removeTerminalEscapes(text: string): string {
  return text.replace(/\x1b\[((?:\p{Nd}|;)*)([a-zA-Z])/gu, "");
}

function removeControlChars(text: string): string {
  return text.replace(/[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g, "");
}

/** ftfy.fix_and_explain on one segment: all fixers, then NFC, repeated until nothing changes. */
function fixSegment(text: string, unescape: boolean): string {
  for (;;) {
    const orig = text;
    if (unescape) text = unescapeHtml(text);
    // (fix_encoding would run here: not implemented, see the file comment)
    text = fixC1Controls(text);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES[c]);
    text = fixCharacterWidth(text);
    text = uncurlQuotes(text);
    text = fixLineBreaks(text);
    text = fixSurrogates(text);
    text = removeTerminalEscapes(text);
    text = removeControlChars(text);
    text = text.normalize("NFC");
    if (text === orig) return text;
  }
}

const MAX_DECODE_LENGTH = 1_000_000;

/**
 * ftfy.fix_text with default options, minus mojibake repair. Works line by line; HTML entities are
 * decoded until the first line containing "<" (ftfy's unescape_html="auto"), then no more.
 */
export function fixText(text: string): string {
  const out: string[] = [];
  let unescape = true;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf("\n", pos) + 1;
    if (end === 0) end = text.length;
    if (end - pos > MAX_DECODE_LENGTH) end = pos + MAX_DECODE_LENGTH;
    const segment = text.slice(pos, end);
    if (unescape && segment.includes("<")) unescape = false;
    out.push(fixSegment(segment, unescape));
    pos = end;
  }
  return out.join("");
}

/** transformers' whitespace_clean: runs of whitespace -> one space, then strip. */
export function whitespaceClean(text: string): string {
  return text.replace(/\p{White_Space}+/gu, " ").trim();
}

// ---------------------------------------------------------------------------------------------
// BasicTokenizer(strip_accents=False, do_split_on_punc=False), used when ftfy is not installed

function isCjk(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) || (cp >= 0x3400 && cp <= 0x4dbf) || (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) || (cp >= 0x2b740 && cp <= 0x2b81f) || (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) || (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

// Python str.isspace() (used by str.split()).
const PY_SPACE = /[\t\n\v\f\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+/u;

function pySplit(text: string): string[] {
  return text.split(PY_SPACE).filter((t) => t !== "");
}

/** The text BasicTokenizer hands to CLIP's regex: controls dropped, spaced CJK, NFC, lower case. */
export function basicClean(text: string): string {
  let cleaned = "";
  for (const ch of text) {
    const cp = ch.codePointAt(0)!;
    if (cp === 0 || cp === 0xfffd) continue;
    if (ch === " " || ch === "\t" || ch === "\n" || ch === "\r" || /\p{Zs}/u.test(ch)) cleaned += " ";
    else if (/\p{C}/u.test(ch)) continue;
    else if (isCjk(cp)) cleaned += ` ${ch} `;
    else cleaned += ch;
  }
  return pySplit(cleaned.normalize("NFC")).map((t) => t.toLowerCase()).join(" ");
}

/** The cleaned, lower-cased text CLIP's regex runs on. */
export function cleanText(text: string, mode: TextCleaning = "ftfy"): string {
  return mode === "basic" ? basicClean(text) : whitespaceClean(fixText(text)).toLowerCase();
}
