// Showing things in a Jupyter notebook run by the tslab kernel. Outside a kernel (tests, scripts)
// the same calls print a one-line note instead, so library code can always call them.
import * as tslab from "tslab";

type Display = ReturnType<typeof tslab.newDisplay>;

/** True inside a tslab kernel process (`tslab kernel --config-path ...`), where rich output reaches Jupyter. */
export function isNotebook(): boolean {
  const script = process.argv[1] ?? "";
  return /tslab/.test(script) && process.argv.includes("kernel");
}

function safe(fn: (d: Display) => void, d: Display, fallback: string): void {
  if (!isNotebook()) {
    if (fallback) console.log(fallback);
    return;
  }
  fn(d);
}

export function displayPng(png: Uint8Array, d: Display = tslab.display, note = ""): void {
  safe((x) => x.png(png), d, note);
}

export function displayHtml(html: string, d: Display = tslab.display, note = ""): void {
  safe((x) => x.html(html), d, note);
}

export function displayMarkdown(md: string, d: Display = tslab.display): void {
  safe((x) => x.markdown(md), d, md);
}

export function displayText(text: string, d: Display = tslab.display): void {
  safe((x) => x.text(text), d, text);
}

/** One output slot that later calls overwrite (Jupyter's update_display_data). */
export function newSlot(): Display {
  return tslab.newDisplay();
}
