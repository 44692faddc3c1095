// Showing things in a Jupyter notebook run by the tslab kernel. Outside a kernel (tests, scripts)
// the same calls print a one-line note instead, so library code can always call them.
//
// Every call sends ONE display_data holding a MIME bundle that the common front ends render: markdown
// goes with its HTML (Jupyter Notebook 6 does not render a lone text/markdown display_data), a chart's
// interactive HTML with its PNG, and text/plain always, last. tslab's own `Display` sends one MIME type
// per message, so the bundle goes through the kernel's message writer (see `sendBundle`).
import * as tslab from "tslab";
import MarkdownIt from "markdown-it";

type Display = ReturnType<typeof tslab.newDisplay>;

/** MIME type -> content; binary content (PNG bytes) is sent base64-encoded, as Jupyter wants. */
export type MimeBundle = Record<string, string | Uint8Array>;

/** True inside a tslab kernel process (`tslab kernel --config-path ...`), where rich output reaches Jupyter. */
export function isNotebook(): boolean {
  const script = process.argv[1] ?? "";
  return /tslab/.test(script) && process.argv.includes("kernel");
}

// GitHub-flavoured tables on; raw HTML in the text is shown as text (table cells hold data such as
// prompts and tokens like `a</w>`, never markup).
const md = new MarkdownIt({ html: false, linkify: false, typographer: false });

/** The HTML of a markdown text (markdown-it, CommonMark with GitHub's tables and strikethrough). */
export function markdownToHtml(text: string): string {
  return md.render(text);
}

/** Plain text of an HTML fragment, for the text/plain part of a bundle (scripts and styles dropped). */
export function htmlToPlainText(html: string, max = 2000): string {
  const text = html
    .replace(/<(script|style)\b[\s\S]*?<\/\1\s*>/gi, " ")
    .replace(/<[^>]*>/g, " ")
    .replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, "\"").replace(/&#39;/g, "'").replace(/&amp;/g, "&")
    .replace(/\s+/g, " ")
    .trim();
  return text.length > max ? text.slice(0, max - 1) + "…" : text;
}

/** The bundle `displayMarkdown` sends: the markdown, its HTML, the markdown again as plain text. */
export function markdownBundle(text: string): MimeBundle {
  return { "text/markdown": text, "text/html": markdownToHtml(text), "text/plain": text };
}

/** The message content of a display_data (or update_display_data) for a bundle; text/plain goes last. */
export function displayDataContent(bundle: MimeBundle, displayId?: string): { data: Record<string, string>; metadata: object; transient: object } {
  const data: Record<string, string> = {};
  const keys = Object.keys(bundle).sort((a, b) => Number(a === "text/plain") - Number(b === "text/plain"));
  for (const k of keys) {
    const v = bundle[k];
    data[k] = typeof v === "string" ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("base64");
  }
  return { data, metadata: {}, transient: displayId ? { display_id: displayId } : {} };
}

type Writer = (content: ReturnType<typeof displayDataContent>, update: boolean) => void;

/**
 * The tslab kernel's display_data writer for the cell running now. tslab 1.0.22 (pinned in package.json)
 * keeps it as `lastWriteDisplayData` of its jupyter module, the function its own `Display.raw` calls
 * with `{ data: { [type]: content } }`; given a bundle it sends the whole bundle in one message.
 */
function kernelWriter(): Writer | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const jupyter = require("tslab/dist/jupyter") as { lastWriteDisplayData?: unknown };
    return typeof jupyter.lastWriteDisplayData === "function" ? (jupyter.lastWriteDisplayData as Writer) : null;
  } catch {
    return null;
  }
}

// The richest type first, for a front end (or a tslab) that takes one type only.
const PREFERENCE = ["text/html", "image/png", "image/svg+xml", "text/markdown", "text/plain"];

/**
 * Sends one bundle to the notebook through `d` (tslab.display, or a slot from `newSlot()`, which this
 * call then overwrites as tslab's own calls do). Without the kernel's writer (another tslab) it falls
 * back to the richest single type through `d.raw`.
 */
export function sendBundle(bundle: MimeBundle, d: Display = tslab.display, writer: Writer | null = kernelWriter()): void {
  // tslab's Display keeps its display id (slots only) and whether it has been shown (then updates)
  const impl = d as unknown as { id?: string; update?: boolean; raw?: Display["raw"] };
  if (!writer || !("update" in impl || "id" in impl)) {
    const type = PREFERENCE.find((t) => t in bundle) ?? Object.keys(bundle)[0];
    if (type) d.raw(type, bundle[type]);
    return;
  }
  const update = impl.update === true;
  if (impl.id) impl.update = true;
  writer(displayDataContent(bundle, impl.id), update);
}

/** Sends the bundle inside a notebook; elsewhere prints `fallback` (when not empty). */
export function displayBundle(bundle: MimeBundle, d: Display = tslab.display, fallback = ""): void {
  if (!isNotebook()) {
    if (fallback) console.log(fallback);
    return;
  }
  sendBundle(bundle, d);
}

/** A PNG picture (with `note` as its plain-text stand-in, also what is printed outside a notebook). */
export function displayPng(png: Uint8Array, d: Display = tslab.display, note = ""): void {
  displayBundle({ "image/png": png, "text/plain": note || "[picture]" }, d, note);
}

/** HTML (with its text, or `note`, as plain text; `note` is also what is printed outside a notebook). */
export function displayHtml(html: string, d: Display = tslab.display, note = ""): void {
  displayBundle({ "text/html": html, "text/plain": note || htmlToPlainText(html) }, d, note);
}

/** Markdown, sent with its HTML (rendered by markdown-it) so every front end shows it, tables included. */
export function displayMarkdown(text: string, d: Display = tslab.display): void {
  displayBundle(markdownBundle(text), d, text);
}

export function displayText(text: string, d: Display = tslab.display): void {
  displayBundle({ "text/plain": text }, d, text);
}

/** One output slot that later calls overwrite (Jupyter's update_display_data). */
export function newSlot(): Display {
  return tslab.newDisplay();
}
