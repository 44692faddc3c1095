// What the student sees, in a real browser: helpers for notebooks/test/browser.test.ts.
// Executed notebooks are served by the project's Jupyter Notebook (as `npm start` runs it) and opened in
// headless Chromium (Debian's, driven by puppeteer-core); nbconvert's HTML of each is opened with
// JavaScript off (what GitHub shows). For every code cell with outputs, each output must render visible
// content of its kind: a table where a markdown table was displayed, a loaded picture where a PNG was,
// the plotly figure (trusted) or its picture (untrusted) where a chart was, text otherwise.
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import type { Browser, Page } from "puppeteer-core";

export const root = path.resolve(__dirname, "../..");
export const resultsDir = path.join(root, "test-results", "browser");

type Output = { output_type: string; name?: string; data?: Record<string, string | string[]> };
type Cell = { cell_type: string; source: string | string[]; outputs?: Output[] };
export type Notebook = { cells: Cell[]; metadata: Record<string, unknown> };

export type Kind = "table" | "image" | "plot" | "text" | "error";
/** The outputs one code cell must show, in order. */
export interface CellExpectation { index: number; kinds: Kind[] }

const join = (v: string | string[] | undefined) => (Array.isArray(v) ? v.join("") : v ?? "");
const hasMarkdownTable = (md: string) => /^\s*\|.*\|\s*\n\s*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$/m.test(md);

/** What one display_data / execute_result must look like. */
export function kindOf(o: Output): Kind {
  if (o.output_type === "error") return "error";
  if (o.output_type === "stream") return "text";
  const d = o.data ?? {};
  const html = join(d["text/html"]), md = join(d["text/markdown"]);
  if (/Plotly\.newPlot/.test(html)) return "plot";
  if (hasMarkdownTable(md) || /<table[\s>]/i.test(html)) return "table";
  if (d["image/png"] || d["image/jpeg"] || /<img\s/i.test(html)) return "image";
  return "text";
}

/**
 * Per code cell with outputs, the kinds to find. Jupyter Notebook and nbconvert show consecutive outputs of
 * one stream (stdout, stderr) in one area (`mergeStreams`).
 */
export function expectations(nb: Notebook, mergeStreams: boolean): CellExpectation[] {
  const out: CellExpectation[] = [];
  nb.cells.forEach((c, index) => {
    if (c.cell_type !== "code" || !c.outputs?.length) return;
    const kinds: Kind[] = [];
    let lastStream: string | null = null;
    for (const o of c.outputs) {
      if (o.output_type === "stream") {
        if (mergeStreams && lastStream === o.name) continue;
        lastStream = o.name ?? "";
      } else lastStream = null;
      kinds.push(kindOf(o));
    }
    out.push({ index, kinds });
  });
  return out;
}

/** Error outputs in an executed notebook (a cell that threw): the student would see a traceback. */
export function errorOutputs(nb: Notebook): string[] {
  return nb.cells.flatMap((c, i) => (c.outputs ?? []).filter((o) => o.output_type === "error").map(() => `cell ${i}`));
}

export const readNotebook = (file: string): Notebook => JSON.parse(fs.readFileSync(file, "utf8"));

// ---- executed copies ----------------------------------------------------------------------------

function newestMtime(dir: string): number {
  let t = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newestMtime(p) : fs.statSync(p).mtimeMs);
  }
  return t;
}

/**
 * An executed copy is reused when it is newer than its notebook and than every file of kernel-lib/src
 * (the displays it shows come from there); BROWSER_TEST_REUSE=1 reuses any copy that exists.
 */
export function isFresh(executed: string, source: string): boolean {
  if (!fs.existsSync(executed)) return false;
  if (process.env.BROWSER_TEST_REUSE === "1") return true;
  const t = fs.statSync(executed).mtimeMs;
  return t >= fs.statSync(source).mtimeMs && t >= newestMtime(path.join(root, "kernel-lib", "src"));
}

/** Runs `node script args` (lesson.mjs) or the python runner; resolves with exit code and output tail. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; tail: string }> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, env, stdio: ["ignore", "pipe", "pipe"] });
    let log = "";
    const keep = (d: Buffer) => { log = (log + d).slice(-8000); };
    child.stdout.on("data", keep);
    child.stderr.on("data", keep);
    child.on("close", (code) => resolve({ code, tail: log }));
    child.on("error", (e) => resolve({ code: -1, tail: String(e) }));
  });
}

/** notebooks/.executed/<nb>, executed now (as `npm run lesson` does) unless a fresh copy is there. */
export async function executedLesson(nb: string): Promise<{ file: string; executedNow: boolean }> {
  const file = path.join(root, "notebooks", ".executed", nb);
  if (isFresh(file, path.join(root, "notebooks", nb))) return { file, executedNow: false };
  const r = await run(process.execPath, [path.join(root, "scripts", "lesson.mjs"), path.join("notebooks", nb)],
    { ...process.env, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE ?? "1" });
  if (r.code !== 0) throw new Error(`executing ${nb} failed (exit ${r.code}):\n${r.tail}`);
  return { file, executedNow: true };
}

/** test-results/browser/executed/solutions/<nb>: the solution executed in solutions/ (as a student runs it). */
export async function executedSolution(nb: string): Promise<{ file: string; executedNow: boolean }> {
  const source = path.join(root, "solutions", nb);
  const file = path.join(resultsDir, "executed", "solutions", nb);
  if (isFresh(file, source)) return { file, executedNow: false };
  const { registerKernel, jupyterPython, env } = await import("../../scripts/jupyter-env.mjs");
  registerKernel();
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const r = await run(jupyterPython(), [path.join(root, "scripts", "run_notebook.py"), source, "--out", file, "--cwd", path.join(root, "solutions")],
    { ...env(), HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE ?? "1" });
  if (r.code !== 0) throw new Error(`executing solutions/${nb} failed (exit ${r.code}):\n${r.tail}`);
  return { file, executedNow: true };
}

// ---- Jupyter ------------------------------------------------------------------------------------

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface JupyterServer {
  url: string;
  token: string;
  /** the folder it serves */
  dir: string;
  /** its private data folder (the notebook signatures that make a notebook trusted) */
  dataDir: string;
  python: string;
  env: NodeJS.ProcessEnv;
  child: ChildProcess;
}

/** Jupyter Notebook as `npm start` runs it (project kernel spec), on a free port with a token, private config and data. */
export async function startJupyter(work: string): Promise<JupyterServer> {
  const { registerKernel, jupyterPython, env } = await import("../../scripts/jupyter-env.mjs");
  registerKernel();
  const python = jupyterPython();
  const dir = path.join(work, "serve"), dataDir = path.join(work, "data");
  for (const d of [dir, dataDir, path.join(work, "config"), path.join(work, "runtime")]) fs.mkdirSync(d, { recursive: true });
  const port = await freePort();
  const token = Math.random().toString(36).slice(2) + Math.random().toString(36).slice(2);
  const jenv = {
    ...env(), JUPYTER_DATA_DIR: dataDir, JUPYTER_CONFIG_DIR: path.join(work, "config"), JUPYTER_RUNTIME_DIR: path.join(work, "runtime"),
    HF_HUB_OFFLINE: "1",
  };
  const args = ["-m", "notebook", `--notebook-dir=${dir}`, "--no-browser", "--ip=127.0.0.1", `--port=${port}`, "--port-retries=0",
    `--NotebookApp.token=${token}`, "--NotebookApp.open_browser=False"];
  if (process.getuid?.() === 0) args.push("--allow-root");
  fs.mkdirSync(resultsDir, { recursive: true });
  const log = fs.openSync(path.join(resultsDir, "jupyter.log"), "w");
  const child = spawn(python, args, { cwd: dir, env: jenv, stdio: ["ignore", log, log] });
  fs.closeSync(log);
  const url = `http://127.0.0.1:${port}`;
  // up when its API answers (no time limit of our own: the test's is ample); gone if the process ended
  for (;;) {
    if (child.exitCode !== null) throw new Error(`jupyter notebook exited (${child.exitCode}); see test-results/browser/jupyter.log`);
    try {
      const r = await fetch(`${url}/api/status?token=${token}`);
      if (r.ok) break;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  return { url, token, dir, dataDir, python, env: jenv, child };
}

/** Shuts the kernels that opening notebooks started (each page starts one). */
export async function shutdownKernels(s: JupyterServer): Promise<void> {
  const r = await fetch(`${s.url}/api/sessions?token=${s.token}`);
  if (!r.ok) return;
  for (const session of (await r.json()) as { id: string }[]) {
    await fetch(`${s.url}/api/sessions/${session.id}?token=${s.token}`, { method: "DELETE" });
  }
}

/** Asks the server to stop (it shuts its kernels down), then ends the process it is if it lingers. */
export async function stopJupyter(s: JupyterServer): Promise<void> {
  try {
    await shutdownKernels(s);
    await fetch(`${s.url}/api/shutdown?token=${s.token}`, { method: "POST" });
  } catch {
    // already down
  }
  const exited = new Promise<void>((r) => (s.child.exitCode !== null ? r() : s.child.once("exit", () => r())));
  const timer = setTimeout(() => s.child.kill("SIGTERM"), 30_000);
  const hard = setTimeout(() => s.child.kill("SIGKILL"), 60_000);
  await exited;
  clearTimeout(timer);
  clearTimeout(hard);
}

/**
 * Copies `nb` to <serve>/<rel>: trusted = signed with the server's key (as a notebook the student ran
 * is), else marked so that its signature differs from the trusted copy's.
 */
export function serveCopy(s: JupyterServer, nb: Notebook, rel: string, trusted: boolean): string {
  const file = path.join(s.dir, rel);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const copy = { ...nb, metadata: { ...nb.metadata, browser_test: trusted ? "trusted" : "untrusted" } };
  fs.writeFileSync(file, JSON.stringify(copy));
  if (trusted) {
    const r = spawnSync(s.python, ["-c", "import sys, nbformat\nfrom nbformat.sign import NotebookNotary\nn = NotebookNotary()\nfor p in sys.argv[1:]:\n    n.sign(nbformat.read(p, as_version=4))\n", file],
      { env: s.env, encoding: "utf8" });
    if (r.status !== 0) throw new Error(`signing ${rel} failed: ${r.stderr}`);
  }
  return file;
}

// ---- the browser --------------------------------------------------------------------------------

export const chromiumPath = () => process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export async function launchBrowser(): Promise<Browser> {
  const puppeteer = (await import("puppeteer-core")).default;
  return puppeteer.launch({
    executablePath: chromiumPath(),
    headless: true,
    protocolTimeout: 0,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--hide-scrollbars", "--font-render-hinting=none"],
    defaultViewport: { width: 1280, height: 900 },
  });
}

export interface PageReport {
  problems: string[];
  outputs: number;
  tables: number;
  images: number;
  plots: number;
  markdownCells: number;
  consoleErrors: string[];
}

/** Runs in the page: checks each expected cell's output areas. Cells are the page's cells, in notebook order. */
function checkInPage(args: { cellSel: string; areaSel: string; subSel: string; mdSel: string; expected: CellExpectation[]; requirePlotly: boolean }): Omit<PageReport, "consoleErrors"> {
  const visible = (el: Element | null): boolean => {
    if (!el) return false;
    const r = el.getBoundingClientRect();
    if (r.width <= 0 || r.height <= 0) return false;
    for (let e: Element | null = el; e; e = e.parentElement) {
      const st = getComputedStyle(e);
      if (st.display === "none" || st.visibility === "hidden" || st.opacity === "0") return false;
    }
    return true;
  };
  const loaded = (i: HTMLImageElement) => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0;
  const cells = Array.from(document.querySelectorAll(args.cellSel));
  const problems: string[] = [];
  let outputs = 0, tables = 0, images = 0, plots = 0, markdownCells = 0;
  for (const c of Array.from(document.querySelectorAll(args.mdSel))) {
    markdownCells++;
    if (!(c as HTMLElement).innerText.trim() || !visible(c)) problems.push(`a markdown cell is empty or hidden: ${(c as HTMLElement).innerText.slice(0, 60)}`);
  }
  for (const exp of args.expected) {
    const cell = cells[exp.index];
    if (!cell) { problems.push(`cell ${exp.index}: not on the page (${cells.length} cells)`); continue; }
    const areas = Array.from(cell.querySelectorAll(args.areaSel));
    if (areas.length !== exp.kinds.length) {
      problems.push(`cell ${exp.index}: ${exp.kinds.length} outputs (${exp.kinds.join(", ")}) in the notebook, ${areas.length} shown`);
    }
    exp.kinds.forEach((kind, k) => {
      const area = areas[k];
      if (!area) return;
      outputs++;
      const sub = area.querySelector(args.subSel) ?? area;
      const where = `cell ${exp.index} output ${k} (${kind})`;
      if (!visible(sub)) { problems.push(`${where}: not visible`); return; }
      const imgs = Array.from(sub.querySelectorAll("img")) as HTMLImageElement[];
      for (const i of imgs) if (!loaded(i)) problems.push(`${where}: a picture did not load (${i.src.slice(0, 40)}…)`);
      const shownImg = imgs.some((i) => loaded(i) && visible(i));
      if (kind === "table") {
        const t = Array.from(sub.querySelectorAll("table")).filter((x) => visible(x) && x.querySelectorAll("tr").length >= 2);
        if (t.length) tables++; else problems.push(`${where}: no visible table`);
      } else if (kind === "image") {
        if (shownImg) images++; else problems.push(`${where}: no visible picture`);
      } else if (kind === "plot") {
        const figure = Array.from(sub.querySelectorAll(".js-plotly-plot .main-svg")).some(visible);
        if (args.requirePlotly ? figure : figure || shownImg) plots++;
        else problems.push(`${where}: ${args.requirePlotly ? "the plotly figure was not drawn" : "neither the figure nor its picture is visible"}`);
      } else if (!(sub as HTMLElement).innerText.trim()) problems.push(`${where}: empty`);
    });
  }
  const jsErrors = document.querySelectorAll(".js-error").length;
  if (jsErrors || /Javascript error adding output/.test(document.body.innerText)) problems.push(`"Javascript error adding output!" shown (${jsErrors} boxes)`);
  return { problems, outputs, tables, images, plots, markdownCells };
}

async function settle(page: Page, plotsExpected: number, plotly: boolean): Promise<void> {
  // pictures decoded (a data: URL loads at once, but decoding a large one takes a moment)
  await page.waitForFunction(() => Array.from(document.images).every((i) => i.complete), { timeout: 0, polling: 200 });
  if (plotly && plotsExpected > 0) {
    // plotly draws asynchronously; give up after a long wait and let the check report what is missing
    await page.waitForFunction((n: number) => document.querySelectorAll(".js-plotly-plot .main-svg").length >= n,
      { timeout: 600_000, polling: 500 }, plotsExpected).catch(() => undefined);
  }
}

/** Full-page screenshot of a Notebook page (whose cells scroll inside #site, not the page). */
async function screenshot(page: Page, file: string): Promise<void> {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  await page.addStyleTag({ content: "html, body, #site { height: auto !important; overflow: visible !important; } #header { position: static !important; }" });
  await page.screenshot({ path: file as `${string}.png`, fullPage: true, captureBeyondViewport: true });
}

/** Opens <server>/notebooks/<rel> and checks it; saves a screenshot to `shot`. */
export async function checkNotebookPage(browser: Browser, s: JupyterServer, rel: string, nb: Notebook, trusted: boolean, shot: string): Promise<PageReport> {
  const page = await browser.newPage();
  page.setDefaultTimeout(0);
  page.setDefaultNavigationTimeout(0);
  const consoleErrors: string[] = [];
  page.on("pageerror", (e) => consoleErrors.push(`uncaught: ${e instanceof Error ? e.message : String(e)}`));
  page.on("console", (m) => { if (m.type() === "error") consoleErrors.push(m.text()); });
  try {
    await page.goto(`${s.url}/notebooks/${rel.split(path.sep).map(encodeURIComponent).join("/")}?token=${s.token}`, { waitUntil: "load" });
    await page.waitForFunction(() => (window as unknown as { Jupyter?: { notebook?: { _fully_loaded?: boolean } } }).Jupyter?.notebook?._fully_loaded === true,
      { timeout: 0, polling: 200 });
    const expected = expectations(nb, true);
    const plotsExpected = expected.reduce((n, e) => n + e.kinds.filter((k) => k === "plot").length, 0);
    await settle(page, plotsExpected, trusted);
    const isTrusted = await page.evaluate(() => (window as unknown as { Jupyter: { notebook: { trusted: boolean } } }).Jupyter.notebook.trusted);
    const report = await page.evaluate(checkInPage, {
      cellSel: "#notebook-container > .cell", areaSel: ".output_wrapper .output > .output_area", subSel: ".output_subarea",
      mdSel: "#notebook-container > .text_cell .text_cell_render", expected, requirePlotly: trusted,
    });
    if (isTrusted !== trusted) report.problems.push(`the notebook opened ${isTrusted ? "trusted" : "untrusted"}`);
    await screenshot(page, shot);
    return { ...report, consoleErrors };
  } finally {
    await page.close();
    await shutdownKernels(s).catch(() => undefined);
  }
}

/** nbconvert's HTML of each file (one run), written beside `outDir`; returns the HTML paths in order. */
export function nbconvertHtml(python: string, env: NodeJS.ProcessEnv, files: string[], outDir: string): string[] {
  fs.mkdirSync(outDir, { recursive: true });
  const r = spawnSync(python, ["-m", "nbconvert", "--to", "html", "--output-dir", outDir, ...files], { env, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`nbconvert failed (${r.status}):\n${r.stderr.slice(-3000)}`);
  return files.map((f) => path.join(outDir, path.basename(f, ".ipynb") + ".html"));
}

/** Opens nbconvert's HTML with JavaScript off and no network (as GitHub shows a notebook) and checks it. */
export async function checkNbconvertPage(browser: Browser, html: string, nb: Notebook, shot: string): Promise<PageReport> {
  const page = await browser.newPage();
  page.setDefaultTimeout(0);
  page.setDefaultNavigationTimeout(0);
  await page.setJavaScriptEnabled(false);
  await page.setRequestInterception(true);
  page.on("request", (req) => (/^(file|data):/.test(req.url()) ? req.continue() : req.abort()));
  const consoleErrors: string[] = [];
  try {
    await page.goto("file://" + html, { waitUntil: "load" });
    const expected = expectations(nb, true);
    const report = await page.evaluate(checkInPage, {
      cellSel: ".jp-Cell", areaSel: ".jp-OutputArea > .jp-OutputArea-child", subSel: ".jp-OutputArea-output",
      mdSel: ".jp-MarkdownCell .jp-RenderedHTMLCommon", expected, requirePlotly: false,
    });
    fs.mkdirSync(path.dirname(shot), { recursive: true });
    await page.screenshot({ path: shot as `${string}.png`, fullPage: true, captureBeyondViewport: true });
    return { ...report, consoleErrors };
  } finally {
    await page.close();
  }
}

export const tmpWork = () => fs.mkdtempSync(path.join(os.tmpdir(), "browser-test-"));
