// Every lesson is executed top to bottom with real Jupyter and the tslab kernel, offline, as a
// student would run it; a cell that throws fails the test with that cell's source and stderr.
import { describe, it, expect } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { markedClaims, reportedClaims } from "../../kernel-lib/src/eval/claim.js";

const root = path.resolve(__dirname, "../..");
const lessons = fs.readdirSync(path.join(root, "notebooks")).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).sort();

describe("lessons execute headless", () => {
  it("there are lessons", () => expect(lessons.length).toBeGreaterThan(0));
  for (const nb of lessons) {
    it(nb, () => {
      const r = spawnSync(process.execPath, [path.join(root, "scripts/lesson.mjs"), path.join("notebooks", nb)], {
        cwd: root, encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: process.env.HF_HUB_OFFLINE ?? "1" },
        timeout: 1_500_000,
      });
      const summary = (r.stdout.split("\n").find((l) => l.startsWith("{\"notebook\"")) ?? "{}");
      expect(r.status, `${nb} failed:\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-2000)}`).toBe(0);
      const s = JSON.parse(summary);
      expect(s.ok).toBe(true);
      expect(s.png_outputs, `${nb} shows no picture`).toBeGreaterThan(0);
      const executed = JSON.parse(fs.readFileSync(path.join(root, "notebooks/.executed", nb), "utf8"));
      const stderr = executed.cells.flatMap((c: any) => (c.outputs ?? []).filter((o: any) => o.name === "stderr").map((o: any) => String(o.text)));
      expect(stderr.filter((t: string) => /Error|UncaughtException/.test(t)), `${nb} wrote errors to stderr`).toEqual([]);
      // issue 16: every sentence marked <!-- claim: id --> is measured on the picture this run made, and holds
      const text = (v: unknown) => (Array.isArray(v) ? v.join("") : String(v ?? ""));
      const marked = executed.cells.filter((c: any) => c.cell_type === "markdown").flatMap((c: any) => markedClaims(text(c.source)));
      const reported = reportedClaims(executed.cells.flatMap((c: any) => (c.outputs ?? []).map((o: any) => text(o.text ?? o.data?.["text/plain"]))).join("\n"));
      expect(marked.filter((id: string) => reported.get(id) !== true), `${nb}: claims of the prose not measured or not holding (${[...reported].map(([k, v]) => `${k}: ${v}`).join(", ")})`).toEqual([]);
      expect([...reported.keys()].filter((id) => !marked.includes(id)), `${nb}: measured claims no sentence marks`).toEqual([]);
    }, 1_600_000);
  }
});
