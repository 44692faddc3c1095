// What the student sees, in a real browser (`npm run test:browser`; also part of `npm test`, after the other
// tests: vitest.config.mts runs this file's project last, so the lesson copies notebooks/test/lessons.test.ts
// just executed are reused). Every executed lesson and solution is opened in Jupyter Notebook (the project's,
// as `npm start` runs it) in headless Chromium twice, untrusted (as a file someone else executed: scripts
// dropped, HTML sanitised) and trusted (as the student who ran it sees it: plotly draws), and nbconvert's HTML
// of it is opened with JavaScript off (as GitHub shows it). Each code cell's outputs must render visible
// content of their kind (tables, loaded pictures, charts, text) and no "Javascript error" box may appear.
// The exercises as handed out (no outputs) must open with their prose rendered. Screenshots:
// test-results/browser/<folder>/<notebook>.{trusted,untrusted,nbconvert}.png.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import type { Browser } from "puppeteer-core";
import {
  root, resultsDir, readNotebook, executedLesson, executedSolution, startJupyter, stopJupyter, serveCopy, launchBrowser,
  checkNotebookPage, checkNbconvertPage, nbconvertHtml, errorOutputs, expectations, tmpWork, chromiumPath, type JupyterServer, type PageReport,
} from "./browser-harness.js";

const list = (dir: string) => fs.readdirSync(path.join(root, dir)).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort();
// BROWSER_TEST_ONLY=01,solutions/03 narrows the run while developing
const only = process.env.BROWSER_TEST_ONLY?.split(",").map((s) => s.trim()).filter(Boolean);
const picked = (folder: string, nb: string) => !only || only.some((o) => (o.includes("/") ? `${folder}/${nb}`.startsWith(o) : folder === "notebooks" && nb.startsWith(o)));
const lessons = list("notebooks").filter((nb) => picked("notebooks", nb));
const solutions = list("solutions").filter((nb) => picked("solutions", nb));
const exercises = list("exercises").filter((nb) => picked("exercises", nb));

const LONG = 3_600_000; // ample: executing a lesson on a busy machine; nothing here is timed

let browser: Browser | undefined;
let server: JupyterServer | undefined;
let work = "";

beforeAll(async () => {
  if (!fs.existsSync(chromiumPath())) throw new Error(`no Chromium at ${chromiumPath()}: sudo apt-get install chromium (or set CHROMIUM_PATH)`);
  fs.rmSync(path.join(resultsDir, "screenshots"), { recursive: true, force: true });
  work = tmpWork();
  server = await startJupyter(work);
  browser = await launchBrowser();
}, LONG);

afterAll(async () => {
  await browser?.close().catch(() => undefined);
  if (server) await stopJupyter(server);
  if (work) fs.rmSync(work, { recursive: true, force: true });
}, LONG);

function expectClean(r: PageReport, what: string): void {
  expect(r.problems, `${what}:\n${r.problems.join("\n")}`).toEqual([]);
  // an exception thrown by an output's script (Jupyter's own console noise, e.g. a blocked font, is not one)
  expect(r.consoleErrors.filter((e) => e.startsWith("uncaught:")), `${what}: uncaught errors in the page`).toEqual([]);
}

function summary(r: PageReport): string {
  return `${r.outputs} outputs: ${r.tables} tables, ${r.images} pictures, ${r.plots} charts`;
}

function executedNotebook(folder: "notebooks" | "solutions", nb: string) {
  const get = folder === "notebooks" ? executedLesson : executedSolution;
  let file = "";
  return {
    it: () => it(`${folder}/${nb}: executed, without errors`, async () => {
      const r = await get(nb);
      file = r.file;
      const executed = readNotebook(file);
      expect(errorOutputs(executed), `${folder}/${nb} has cells that failed`).toEqual([]);
      expect(expectations(executed, true).length, `${folder}/${nb} has no outputs`).toBeGreaterThan(0);
    }, LONG),
    file: () => {
      if (!file) throw new Error(`${folder}/${nb} was not executed (see the test before)`);
      return file;
    },
  };
}

for (const [folder, names] of [["notebooks", lessons], ["solutions", solutions]] as const) {
  if (names.length) describe(`${folder}: executed, as the student sees them`, () => {
    for (const nb of names) {
      const base = nb.replace(/\.ipynb$/, "");
      const shot = (view: string) => path.join(resultsDir, "screenshots", folder, `${base}.${view}.png`);
      const ex = executedNotebook(folder, nb);
      ex.it();
      for (const trusted of [false, true]) {
        const view = trusted ? "trusted" : "untrusted";
        it(`${folder}/${nb}: Jupyter Notebook, ${view}`, async () => {
          const executed = readNotebook(ex.file());
          const rel = path.join(view, folder, nb);
          serveCopy(server!, executed, rel, trusted);
          const r = await checkNotebookPage(browser!, server!, rel, executed, trusted, shot(view));
          console.log(`${folder}/${nb} (${view}): ${summary(r)}${r.consoleErrors.length ? `; ${r.consoleErrors.length} console message(s) at error level` : ""}`);
          expectClean(r, `${folder}/${nb} in Jupyter Notebook (${view})`);
        }, LONG);
      }
      it(`${folder}/${nb}: nbconvert HTML with JavaScript off (GitHub's view)`, async () => {
        const [html] = nbconvertHtml(server!.python, server!.env, [ex.file()], path.join(resultsDir, "html", folder));
        const r = await checkNbconvertPage(browser!, html, readNotebook(ex.file()), shot("nbconvert"));
        console.log(`${folder}/${nb} (nbconvert): ${summary(r)}`);
        expectClean(r, `${folder}/${nb} as nbconvert HTML`);
      }, LONG);
    }
  });
}

if (exercises.length) describe("exercises: as handed out", () => {
  for (const nb of exercises) {
    it(`exercises/${nb}: opens in Jupyter Notebook with its prose rendered`, async () => {
      const plain = readNotebook(path.join(root, "exercises", nb));
      const rel = path.join("handout", nb);
      serveCopy(server!, plain, rel, false);
      const r = await checkNotebookPage(browser!, server!, rel, plain, false, path.join(resultsDir, "screenshots", "exercises", nb.replace(/\.ipynb$/, ".png")));
      expect(r.markdownCells).toBeGreaterThan(0);
      expectClean(r, `exercises/${nb} in Jupyter Notebook`);
    }, LONG);
  }
});
