// Charts for lessons: an interactive plotly.js figure (shown in trusted notebooks and HTML exports)
// paired with a static PNG of the same data (the only thing untrusted notebooks, e.g. ones executed
// by CI, GitHub and nbviewer keep). The static picture is drawn here as SVG and rasterised with sharp.
// Both go in ONE output: its text/html holds the PNG as an <img> that the plotly script replaces when it
// runs (an untrusted notebook strips the script and keeps the picture), image/png the same PNG for front
// ends that do not render HTML, and text/plain a one-line summary.
import * as fs from "node:fs";
import sharp from "sharp";
import { displayBundle, isNotebook, type MimeBundle } from "./notebook.js";

export interface Trace {
  x: number[];
  y: number[];
  name?: string;
  mode?: "lines" | "markers" | "lines+markers";
  type?: "scatter";
}

export interface Axis { title?: string; type?: "linear" | "log"; range?: [number, number] }
export interface Layout { title?: string; xaxis?: Axis; yaxis?: Axis; width?: number; height?: number }

const COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"];

let plotlyInlined = false;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function niceTicks(lo: number, hi: number, n = 5): number[] {
  if (!(hi > lo)) return [lo];
  const step0 = (hi - lo) / n;
  const mag = 10 ** Math.floor(Math.log10(step0));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= step0) ?? step0;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toPrecision(12));
  return out;
}

function fmt(v: number): string {
  if (v === 0) return "0";
  const a = Math.abs(v);
  return a >= 1e4 || a < 1e-3 ? v.toExponential(1) : String(+v.toPrecision(4));
}

/** The chart as SVG text (also usable on its own, e.g. saved next to a notebook). */
export function chartSvg(traces: Trace[], layout: Layout = {}): string {
  const W = layout.width ?? 640, H = layout.height ?? 360;
  const m = { l: 70, r: 150, t: layout.title ? 36 : 16, b: 50 };
  const logX = layout.xaxis?.type === "log", logY = layout.yaxis?.type === "log";
  const tx = (v: number) => (logX ? Math.log10(v) : v), ty = (v: number) => (logY ? Math.log10(v) : v);
  const xs = traces.flatMap((t) => t.x.map(tx)).filter(Number.isFinite);
  const ys = traces.flatMap((t) => t.y.map(ty)).filter(Number.isFinite);
  let [x0, x1] = layout.xaxis?.range ?? [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = layout.yaxis?.range ?? [Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const padY = (y1 - y0) * 0.05; y0 -= padY; y1 += padY;
  const px = (v: number) => m.l + ((v - x0) / (x1 - x0)) * (W - m.l - m.r);
  const py = (v: number) => H - m.b - ((v - y0) / (y1 - y0)) * (H - m.t - m.b);
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="DejaVu Sans, sans-serif" font-size="11">`,
    `<rect width="${W}" height="${H}" fill="white"/>`,
  ];
  // log axes: ticks at powers of ten, plus 2x and 5x when the axis spans fewer than three decades
  const logTicks = (lo: number, hi: number): number[] => {
    const out: number[] = [];
    const mult = hi - lo < 3 ? [1, 2, 5] : [1];
    for (let d = Math.floor(lo); d <= Math.ceil(hi); d++) for (const m of mult) out.push(d + Math.log10(m));
    return out.filter((v) => v >= lo - 1e-9 && v <= hi + 1e-9);
  };
  const tickList = (lo: number, hi: number, log: boolean) => (log ? logTicks(lo, hi) : niceTicks(lo, hi));
  for (const v of tickList(x0, x1, logX)) {
    parts.push(`<line x1="${px(v)}" x2="${px(v)}" y1="${m.t}" y2="${H - m.b}" stroke="#eee"/>`);
    parts.push(`<text x="${px(v)}" y="${H - m.b + 15}" text-anchor="middle">${fmt(logX ? 10 ** v : v)}</text>`);
  }
  for (const v of tickList(y0, y1, logY)) {
    parts.push(`<line x1="${m.l}" x2="${W - m.r}" y1="${py(v)}" y2="${py(v)}" stroke="#eee"/>`);
    parts.push(`<text x="${m.l - 6}" y="${py(v) + 4}" text-anchor="end">${fmt(logY ? 10 ** v : v)}</text>`);
  }
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${W - m.l - m.r}" height="${H - m.t - m.b}" fill="none" stroke="#444"/>`);
  traces.forEach((t, i) => {
    const c = COLORS[i % COLORS.length];
    const pts = t.x.map((x, k) => [px(tx(x)), py(ty(t.y[k]))]).filter(([a, b]) => Number.isFinite(a) && Number.isFinite(b));
    const mode = t.mode ?? "lines";
    if (mode.includes("lines") && pts.length > 1) {
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.map(([a, b]) => `${a.toFixed(1)},${b.toFixed(1)}`).join(" ")}"/>`);
    }
    if (mode.includes("markers")) for (const [a, b] of pts) parts.push(`<circle cx="${a.toFixed(1)}" cy="${b.toFixed(1)}" r="3" fill="${c}"/>`);
    if (t.name) {
      const ly = m.t + 8 + i * 16;
      parts.push(`<line x1="${W - m.r + 10}" x2="${W - m.r + 28}" y1="${ly}" y2="${ly}" stroke="${c}" stroke-width="2"/>`);
      parts.push(`<text x="${W - m.r + 32}" y="${ly + 4}">${esc(t.name)}</text>`);
    }
  });
  if (layout.title) parts.push(`<text x="${W / 2}" y="20" text-anchor="middle" font-size="14">${esc(layout.title)}</text>`);
  if (layout.xaxis?.title) parts.push(`<text x="${(m.l + W - m.r) / 2}" y="${H - 12}" text-anchor="middle">${esc(layout.xaxis.title)}</text>`);
  if (layout.yaxis?.title) parts.push(`<text transform="translate(16 ${(m.t + H - m.b) / 2}) rotate(-90)" text-anchor="middle">${esc(layout.yaxis.title)}</text>`);
  parts.push("</svg>");
  return parts.join("");
}

/** The static chart as PNG bytes. */
export async function chartPng(traces: Trace[], layout: Layout = {}): Promise<Buffer> {
  return sharp(Buffer.from(chartSvg(traces, layout))).png().toBuffer();
}

/**
 * plotly.js inlined once per kernel (4.8 MB), then each figure is a div and a newPlot call. The static
 * PNG (`png`, base64) sits in the same HTML as an <img>, hidden once plotly has drawn the figure.
 */
function plotlyHtml(traces: Trace[], layout: Layout, pngBase64: string): string {
  let html = "";
  if (!plotlyInlined) {
    const src = fs.readFileSync(require.resolve("plotly.js-dist-min"), "utf8");
    html += `<script>${src}</script>`;
    plotlyInlined = true;
  }
  const id = "plt-" + Math.random().toString(36).slice(2);
  const w = layout.width ?? 640, h = layout.height ?? 360;
  // plotly.js 3+ takes titles only as { text } (a bare string is ignored)
  const titled = (a?: Axis) => (a ? { ...a, title: a.title === undefined ? undefined : { text: a.title } } : undefined);
  const plLayout = {
    ...layout, title: layout.title === undefined ? undefined : { text: layout.title }, xaxis: titled(layout.xaxis), yaxis: titled(layout.yaxis),
    width: w, height: h, margin: { l: 60, r: 20, t: layout.title ? 40 : 10, b: 50 },
  };
  const alt = esc(layout.title ?? "chart").replace(/"/g, "&quot;");
  html += `<div class="kit-chart"><img id="${id}-png" src="data:image/png;base64,${pngBase64}" alt="${alt}" width="${layout.width ?? 640}"/><div id="${id}"></div></div><script>(function(){
var draw=function(){window.Plotly.newPlot("${id}",${JSON.stringify(traces.map((t) => ({ type: "scatter", mode: "lines", ...t })))},${JSON.stringify(plLayout)}).then(function(){var i=document.getElementById("${id}-png");if(i)i.style.display="none";});};
if(window.Plotly)draw();else{var n=0,t=setInterval(function(){if(window.Plotly||++n>100){clearInterval(t);if(window.Plotly)draw();}},50);}
})();</script>`;
  return html;
}

/** What `plot` sends: the HTML (plotly figure over its PNG) unless `interactive: false`, the PNG, a summary. */
export async function plotBundle(traces: Trace[], layout: Layout = {}, opts: { interactive?: boolean } = {}): Promise<MimeBundle> {
  const png = await chartPng(traces, layout);
  const bundle: MimeBundle = {};
  if (opts.interactive ?? true) bundle["text/html"] = plotlyHtml(traces, layout, png.toString("base64"));
  bundle["image/png"] = png;
  bundle["text/plain"] = chartSummary(traces, layout);
  return bundle;
}

function chartSummary(traces: Trace[], layout: Layout): string {
  const names = traces.map((t) => t.name).filter((n): n is string => !!n);
  return `[chart${layout.title ? `: ${layout.title}` : ""} — ${traces.length} trace(s)${names.length ? `: ${names.join(", ")}` : ""}]`;
}

/**
 * Shows a chart in the notebook as one output: the interactive plotly figure (unless `interactive: false`)
 * over its static PNG. Outside a notebook it prints a one-line summary (`chartPng` gives the bytes).
 */
export async function plot(traces: Trace[], layout: Layout = {}, opts: { interactive?: boolean } = {}): Promise<void> {
  if (!isNotebook()) {
    console.log(`[chart${layout.title ? `: ${layout.title}` : ""} — ${traces.length} trace(s)]`);
    return;
  }
  displayBundle(await plotBundle(traces, layout, opts));
}
