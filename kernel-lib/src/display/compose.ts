// Lays out pictures with text (labels, a title, a caption) into ONE PNG: an SVG with embedded PNGs,
// rasterised by sharp. A PNG survives everywhere (untrusted notebooks drop scripts and may sanitise HTML).
import sharp from "sharp";

export interface Cell { png: Buffer; width: number; height: number; label?: string }

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

/** A grid of cells (all drawn at the size of the first) with optional labels and title. */
export async function composeGrid(cells: Cell[], opts: { cols?: number; title?: string; caption?: string; pad?: number } = {}): Promise<Buffer> {
  const cols = Math.max(1, Math.min(opts.cols ?? cells.length, cells.length));
  const rows = Math.ceil(cells.length / cols);
  const pad = opts.pad ?? 4;
  const cw = cells[0].width, ch = cells[0].height;
  const labelH = cells.some((c) => c.label) ? 18 : 0;
  const titleH = opts.title ? 24 : 0;
  const captionH = opts.caption ? 20 : 0;
  const W = cols * cw + (cols + 1) * pad;
  const H = titleH + rows * (ch + labelH) + (rows + 1) * pad + captionH;
  const parts = [`<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="12">`,
    `<rect width="${W}" height="${H}" fill="white"/>`];
  if (opts.title) parts.push(`<text x="${W / 2}" y="17" text-anchor="middle" font-size="14">${esc(opts.title)}</text>`);
  cells.forEach((c, i) => {
    const x = pad + (i % cols) * (cw + pad);
    const y = titleH + pad + Math.floor(i / cols) * (ch + labelH + pad);
    parts.push(`<image x="${x}" y="${y}" width="${cw}" height="${ch}" preserveAspectRatio="none" xlink:href="data:image/png;base64,${c.png.toString("base64")}"/>`);
    if (c.label) parts.push(`<text x="${x + cw / 2}" y="${y + ch + 14}" text-anchor="middle">${esc(c.label)}</text>`);
  });
  if (opts.caption) parts.push(`<text x="${pad}" y="${H - 6}" font-family="DejaVu Sans Mono, monospace" font-size="11">${esc(opts.caption)}</text>`);
  parts.push("</svg>");
  return sharp(Buffer.from(parts.join(""))).png().toBuffer();
}
