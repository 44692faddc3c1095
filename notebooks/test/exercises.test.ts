// The exercises' hidden checks, proven with real Jupyter and the tslab kernel: every solution scores full marks,
// every untouched exercise and every "cheating" variant (constants, inputs returned unchanged) scores less; and
// `npm run grade` on a class folder (a good, a partial, a crashing and a hanging submission) writes the expected CSV.
// All notebooks are graded in one `scripts/grade.mjs` run per folder (two in parallel) to keep this fast.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { CHEATS } from "./exercise-cheats.js";

const root = path.resolve(__dirname, "../..");
const exercises = fs.readdirSync(path.join(root, "exercises")).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).map((f) => f.slice(0, -6)).sort();

interface Result { notebook: string; student: string; exercise: string; total: number; max: number; status: string; checks: { id: string; passed: boolean; feedback: string }[] }
type Cell = { cell_type: string; source: string | string[]; metadata: { tags?: string[]; todo?: string } };

function readNb(file: string): { cells: Cell[] } {
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

/** The solution with the named TODO cells replaced. */
function variant(name: string, replace: Record<string, string>): string {
  const nb = readNb(path.join(root, "solutions", `${name}.ipynb`));
  for (const c of nb.cells) {
    const todo = c.metadata.todo;
    if (c.cell_type === "code" && todo && todo in replace) c.source = replace[todo];
  }
  return JSON.stringify(nb);
}

function grade(folder: string, extra: string[]): { results: Result[]; csv: string } {
  const json = path.join(folder, "..", `${path.basename(folder)}.json`);
  const csv = path.join(folder, "..", `${path.basename(folder)}.csv`);
  const r = spawnSync(process.execPath, [path.join(root, "scripts/grade.mjs"), folder, "--json", json, "--csv", csv, ...extra], {
    cwd: root, encoding: "utf8", timeout: 1_700_000,
  });
  if (r.status !== 0 || !fs.existsSync(json)) throw new Error(`grade.mjs failed (${r.status}):\n${r.stderr.slice(-4000)}\n${r.stdout.slice(-2000)}`);
  return { results: JSON.parse(fs.readFileSync(json, "utf8")), csv: fs.readFileSync(csv, "utf8") };
}

describe("exercises: solutions full, untouched and cheating variants less", () => {
  let tmp = "";
  let results: Result[] = [];
  const find = (variantName: string, ex: string) => results.find((r) => r.student === variantName && r.exercise === ex);

  it("every exercise has a solution, hidden checks and a cheating variant", () => {
    expect(exercises.length).toBeGreaterThanOrEqual(8);
    for (const ex of exercises) {
      expect(fs.existsSync(path.join(root, "solutions", `${ex}.ipynb`)), `solutions/${ex}.ipynb`).toBe(true);
      expect(fs.existsSync(path.join(root, "exercises", "checks", `${ex}.checks.ts`)), `exercises/checks/${ex}.checks.ts`).toBe(true);
      expect(Object.keys(CHEATS), "a cheating variant in exercise-cheats.ts").toContain(ex);
    }
  });

  beforeAll(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "exercise-test-"));
    const classDir = path.join(tmp, "submissions");
    for (const v of ["solution", "exercise", "cheat"]) fs.mkdirSync(path.join(classDir, v), { recursive: true });
    for (const ex of exercises) {
      fs.copyFileSync(path.join(root, "solutions", `${ex}.ipynb`), path.join(classDir, "solution", `${ex}.ipynb`));
      fs.copyFileSync(path.join(root, "exercises", `${ex}.ipynb`), path.join(classDir, "exercise", `${ex}.ipynb`));
      fs.writeFileSync(path.join(classDir, "cheat", `${ex}.ipynb`), variant(ex, CHEATS[ex] ?? {}));
    }
    const t0 = Date.now();
    results = grade(classDir, ["--jobs", "2"]).results;
    console.log(`${results.length} notebooks graded in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  }, 1_800_000);
  afterAll(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

  for (const ex of exercises) {
    it(`${ex}: the solution scores full marks`, () => {
      const r = find("solution", ex)!;
      expect(r, "graded").toBeDefined();
      const failed = r.checks.filter((c) => !c.passed).map((c) => `${c.id}: ${c.feedback}`);
      expect(failed, `solution of ${ex}`).toEqual([]);
      expect(r.total).toBe(r.max);
      expect(r.status).toBe("ok");
    });
    it(`${ex}: the untouched exercise scores less, each TODO's checks saying so`, () => {
      const r = find("exercise", ex)!;
      expect(r.max).toBeGreaterThan(0);
      expect(r.total).toBeLessThan(r.max);
      expect(r.checks.some((c) => /TODO/.test(c.feedback))).toBe(true);
    });
    it(`${ex}: the cheating variant scores less`, () => {
      const r = find("cheat", ex)!;
      expect(r.total).toBeLessThan(r.max);
    });
  }
});

describe("npm run grade on a class folder", () => {
  it("one good, one partial, one crashing and one hanging submission give the expected CSV", () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "class-test-"));
    const dir = path.join(tmp, "submitted");
    const put = (student: string, text: string) => {
      fs.mkdirSync(path.join(dir, student, "06-lora"), { recursive: true });
      fs.writeFileSync(path.join(dir, student, "06-lora", "06-lora.ipynb"), text);
    };
    put("alice", variant("06-lora", {}));
    // forgets alpha / r when merging: only the merge check fails
    put("bob", variant("06-lora", { merge: `function mergeLora(W: tf.Tensor2D, A: tf.Tensor2D, B: tf.Tensor2D, alpha: number, scale: number): tf.Tensor2D {
  return tf.tidy(() => tf.add(W, tf.mul(tf.matMul(B, A), scale)) as tf.Tensor2D);
}` }));
    // kills the kernel in the merge cell: the grader restarts it without that cell; mergeLora's checks fail
    put("carol", variant("06-lora", { merge: "process.exit(1);" }));
    // never finishes the merge cell: it times out alone, is skipped, and the rest is graded
    put("dave", variant("06-lora", { merge: "while (true) {}" }));
    // a cell limit with room for a busy machine's ordinary cells; only dave's loop reaches it
    const t0 = Date.now();
    const { csv, results } = grade(dir, ["--jobs", "2", "--cell-timeout", "120", "--report", path.join(tmp, "feedback")]);
    const rows = csv.trim().split("\n").map((l) => l.split(","));
    expect(rows[0]).toEqual(["student", "notebook", "exercise", "points", "max", "percent", "status", "seconds", "failed_checks"]);
    const withoutSeconds = rows.slice(1).map((r) => [...r.slice(0, 7), r[8]].join(","));
    expect(withoutSeconds).toEqual([
      "alice,alice/06-lora/06-lora.ipynb,06-lora,8,8,100,ok,",
      "bob,bob/06-lora/06-lora.ipynb,06-lora,5,8,62.5,ok,merge",
      "carol,carol/06-lora/06-lora.ipynb,06-lora,4,8,50,crashed,merge no-leak",
      "dave,dave/06-lora/06-lora.ipynb,06-lora,4,8,50,timeout,merge no-leak",
    ]);
    // feedback laid out as nbgrader's feedback/<student>/<assignment>/<notebook>.html
    expect(fs.readFileSync(path.join(tmp, "feedback", "bob", "06-lora", "06-lora.html"), "utf8")).toContain("Score: 5 / 8");
    const bob = results.find((r) => r.student === "bob")!;
    expect(bob.checks.find((c) => c.id === "merge")!.feedback).toMatch(/alpha \/ r/);
    console.log(`class folder graded in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    fs.rmSync(tmp, { recursive: true, force: true });
  }, 900_000);
});
