// The grader without Jupyter: checks files, the private graded notebook, reading scores back (forged and
// duplicated result lines, missing results, timeouts), the in-kernel session, reports, CSV, and the exercises' own
// structure. (notebooks/test/exercises.test.ts runs the real notebooks; kernel-lib/test/compare.test.ts the
// feedback texts of the comparisons.)
import { describe, it, expect, afterEach } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as tf from "@tensorflow/tfjs";
import * as kit from "kernel-lib";
import * as grader from "../src/index.js";
import {
  ChecksFileError,
  GRADE_MARKER,
  GradeSession,
  StudentCodeError,
  buildGradedNotebook,
  findSubmissions,
  formatCsv,
  formatHtml,
  formatMarkdown,
  parseChecksFile,
  readChecksFile,
  resolveExercise,
  scoreChecks,
  sessionModule,
  studentCellErrors,
  type GradeResult,
  type Notebook,
  type RunnerSummary,
} from "../src/index.js";

const root = path.resolve(__dirname, "../..");

const CHECKS = `// a comment for teachers
//@@ exercise 09-demo
//@@ data datasets/sd-tiny-random
//@@ timeout 120
//@@ setup
const two = 2;
return { two };
//@@ check first 2 The first check
return g.pass("ok");
//@@ check second 3 The second one
return g.fail("no", 1);
`;

function studentNotebook(cells: { src: string; todo?: string; type?: "code" | "markdown" }[]): Notebook {
  return {
    nbformat: 4, nbformat_minor: 5, metadata: { exercise: { name: "09-demo" } },
    cells: cells.map((c) => ({ cell_type: c.type ?? "code", source: c.src, metadata: c.todo ? { tags: ["todo"], todo: c.todo } : {}, outputs: [{ output_type: "stream", name: "stdout", text: "old" }] })),
  };
}

describe("checks files", () => {
  it("parses directives, setup and checks", () => {
    const c = parseChecksFile(CHECKS, "demo.checks.ts");
    expect(c.exercise).toBe("09-demo");
    expect(c.data).toEqual(["datasets/sd-tiny-random"]);
    expect(c.timeoutSeconds).toBe(120);
    expect(c.setup).toContain("return { two }");
    expect(c.checks.map((x) => [x.id, x.points, x.title, x.line])).toEqual([["first", 2, "The first check", 8], ["second", 3, "The second one", 10]]);
    expect(c.checks[1].body.trim()).toBe('return g.fail("no", 1);');
  });

  it("names the file and line of a mistake", () => {
    const bad = (text: string) => () => parseChecksFile(text, "x.checks.ts");
    expect(bad(CHECKS.replace("check second 3", "check first 3"))).toThrow(/x\.checks\.ts:10: check id "first" is used twice/);
    expect(bad(CHECKS.replace("second 3", "second zero"))).toThrow(/x\.checks\.ts:10:.*points "zero"/);
    expect(bad(CHECKS.replace("//@@ exercise 09-demo\n", ""))).toThrow(/missing \/\/@@ exercise/);
    expect(bad(CHECKS.replace("//@@ timeout 120", "//@@ teimout 120"))).toThrow(/x\.checks\.ts:4: unknown directive \/\/@@ teimout/);
    expect(bad(CHECKS.replace("datasets/sd-tiny-random", "../secrets"))).toThrow(ChecksFileError);
    expect(bad(CHECKS.replace("return { two };", ""))).toThrow(/setup section must end with `return/);
  });
});

describe("the exercises", () => {
  const names = fs.readdirSync(path.join(root, "exercises")).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).map((f) => f.slice(0, -6));
  const src = (c: { source: string | string[] }) => (Array.isArray(c.source) ? c.source.join("") : c.source);

  it("eight or more, each with a solution and a checks file that parses", () => {
    expect(names.length).toBeGreaterThanOrEqual(8);
    for (const n of names) {
      const checks = readChecksFile(path.join(root, "exercises", "checks", `${n}.checks.ts`));
      expect(checks.exercise).toBe(n);
      for (const d of checks.data) expect(fs.existsSync(path.join(root, d)), `${n} needs ${d}`).toBe(true);
      expect(checks.setup, `${n}: the setup must not depend on the student's functions`).not.toMatch(/g\.student\(/);
    }
  });

  it("GitHub Classroom runs the grader once per exercise, for its full score", () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(root, ".github", "classroom", "autograding.json"), "utf8")) as { tests: { run: string; points: number; timeout: number }[] };
    expect(cfg.tests.length).toBe(names.length);
    names.forEach((n, i) => {
      const max = readChecksFile(path.join(root, "exercises", "checks", `${n}.checks.ts`)).checks.reduce((s, c) => s + c.points, 0);
      expect(cfg.tests[i].run).toBe(`npm run grade -- exercises/${n}.ipynb --min-score 100%`);
      expect(cfg.tests[i].points, n).toBe(max);
    });
  });

  for (const n of names) {
    it(`${n}: the solution differs from the exercise only in its TODO cells`, () => {
      const ex = JSON.parse(fs.readFileSync(path.join(root, "exercises", `${n}.ipynb`), "utf8")) as Notebook;
      const sol = JSON.parse(fs.readFileSync(path.join(root, "solutions", `${n}.ipynb`), "utf8")) as Notebook;
      expect(ex.metadata.kernelspec).toMatchObject({ name: "tslab" });
      expect((ex.metadata.exercise as { name: string }).name).toBe(n);
      expect(sol.cells.length).toBe(ex.cells.length);
      const todos = grader.todoCells(ex);
      expect(todos.length).toBeGreaterThan(0);
      expect(grader.todoCells(sol).map((t) => t.name)).toEqual(todos.map((t) => t.name));
      ex.cells.forEach((c, i) => {
        const isTodo = (c.metadata.tags as string[] | undefined)?.includes("todo");
        if (isTodo) {
          expect(src(c), `${n} cell ${i}`).toMatch(/throw new Error\("TODO/);
          expect(src(sol.cells[i]), `${n} solution cell ${i}`).not.toMatch(/TODO/);
        } else expect(src(sol.cells[i]), `${n} cell ${i}`).toBe(src(c));
        expect(c.outputs ?? [], `${n} cell ${i} is saved without outputs`).toEqual([]);
      });
    });
  }
});

describe("the graded notebook", () => {
  const checks = parseChecksFile(CHECKS);
  const student = studentNotebook([{ src: "# intro", type: "markdown" }, { src: "function f() { return 1; }", todo: "f" }]);

  it("is the student's cells (outputs cleared), a preamble holding the nonce, then one cell per check", () => {
    const built = buildGradedNotebook(student, checks, { nonce: "n0nce", seed: 7 });
    expect(built.studentCells).toBe(2);
    expect(built.notebook.cells[1].outputs).toEqual([]);
    const preamble = grader.cellSource(built.notebook.cells[built.preambleIndex]);
    expect(preamble).toContain('"nonce":"n0nce"');
    // the session comes from the grader's build by its path, not from kernel-lib (which does not export it)
    expect(preamble).toContain(`import { GradeSession as $GradeSession } from ${JSON.stringify(sessionModule())};`);
    expect(sessionModule()).toBe(path.join(root, "grader", "dist", "check-session.js"));
    expect("GradeSession" in kit).toBe(false);
    expect(preamble).toContain('"todo":{"f":"function f() { return 1; }"}');
    expect([...built.checkCells.values()]).toEqual(["first", "second"]);
    for (const i of built.checkCells.keys()) expect(grader.cellSource(built.notebook.cells[i])).not.toContain("n0nce");
    expect(built.notebook.metadata.kernelspec).toMatchObject({ name: "tslab" });
  });

  it("lists suspicious student code for the teacher", () => {
    const nb = studentNotebook([{ src: 'console.log = () => {}; console.info("@@GRADE x")' }, { src: "process.exit(0)" }]);
    expect(grader.suspiciousCode(nb)).toEqual([
      "code cell 0 prints grader result lines (@@GRADE)", "code cell 0 replaces console or stdout", "code cell 1 exits the kernel or starts processes",
    ]);
  });
});

describe("reading the score back", () => {
  const checks = parseChecksFile(CHECKS);
  const nonce = "abc123";
  const student = studentNotebook([{ src: "function helper() {}", todo: "helper" }]);
  const built = buildGradedNotebook(student, checks, { nonce, seed: 1 });
  const [firstCell, secondCell] = [...built.checkCells.keys()];
  const line = (id: string, points: number, passed: boolean, n = nonce) => `\n${GRADE_MARKER} ${n} ${JSON.stringify({ id, points, max: 99, passed, feedback: `fb ${id}`, seconds: 0 })}\n`;
  const executed = (outputs: Record<number, { stdout?: string; stderr?: string }>): Notebook => {
    const nb = structuredClone(built.notebook);
    for (const [i, o] of Object.entries(outputs)) {
      nb.cells[Number(i)].outputs = [
        ...(o.stdout ? [{ output_type: "stream", name: "stdout", text: o.stdout }] : []),
        ...(o.stderr ? [{ output_type: "stream", name: "stderr", text: o.stderr }] : []),
      ];
    }
    return nb;
  };
  const summary = (statuses: Record<number, string> = {}): RunnerSummary => ({
    attempts: 1, seconds: 1,
    cells: built.notebook.cells.map((c, index) => ({ index, status: (statuses[index] ?? "ok") as "ok", seconds: 0.1 })).filter((c) => built.notebook.cells[c.index].cell_type === "code"),
  });

  it("takes each check's line from its own cell, clamped to the checks file's maximum", () => {
    const out = scoreChecks(executed({ [firstCell]: { stdout: line("first", 50, true) }, [secondCell]: { stdout: "noise\n" + line("second", 1, false) } }), built, checks, summary(), nonce);
    expect(out.map((c) => [c.id, c.points, c.max, c.passed, c.feedback])).toEqual([["first", 2, 2, true, "fb first"], ["second", 1, 3, false, "fb second"]]);
  });

  it("ignores lines without this run's nonce, lines in the student's cells, and lines for another check", () => {
    const out = scoreChecks(executed({
      0: { stdout: line("first", 2, true) + line("second", 3, true) },          // the student prints genuine-looking lines
      [firstCell]: { stdout: line("first", 2, true, "guessed") },               // a forged nonce
      [secondCell]: { stdout: line("first", 2, true) },                         // the right nonce, the wrong cell
    }), built, checks, summary(), nonce);
    expect(out.map((c) => c.points)).toEqual([0, 0]);
    expect(out[0].feedback).toBe("The check printed no result.");
  });

  it("scores 0 when a check's line appears twice", () => {
    const out = scoreChecks(executed({ [firstCell]: { stdout: line("first", 2, true) + line("first", 2, true) } }), built, checks, summary(), nonce);
    expect(out[0].points).toBe(0);
    expect(out[0].feedback).toMatch(/appeared 2 times/);
  });

  it("explains a missing result: a name the failed TODO cell declares, a timeout, a grader failure", () => {
    const nb = executed({
      0: { stderr: "Error: TODO: write helper\n    at evalmachine.<anonymous>:3:9\n" },
      [firstCell]: { stderr: "3:5 - Cannot find name 'helper'.\n" },
    });
    nb.cells[0].source = "function helper(): number { throw new Error('TODO'); }";
    const out = scoreChecks(nb, built, checks, summary({ 0: "error", [secondCell]: "timeout" }), nonce);
    expect(out[0].feedback).toMatch(/could not find `helper`: it is declared in code cell 0 \(TODO `helper`\), which failed/);
    expect(out[1].feedback).toBe("The check timed out (the cell ran past the time limit and was skipped).");
    const errors = studentCellErrors(nb, built, summary({ 0: "error" }));
    expect(errors).toEqual([{ cell: 0, todo: "helper", status: "error", message: "Error: TODO: write helper" }]);
    const broken = scoreChecks(executed({ [firstCell]: { stderr: "2:7 - Cannot find name '$grade'.\n" } }), built, checks, summary(), nonce);
    expect(broken[0].feedback).toMatch(/grader's preamble failed/);
  });
});

describe("the session inside the kernel", () => {
  const written: string[] = [];
  const realWrite = process.stdout.write;
  const capture = () => {
    written.length = 0;
    process.stdout.write = ((s: string) => { written.push(String(s)); return true; }) as typeof process.stdout.write;
  };
  afterEach(() => { process.stdout.write = realWrite; });
  const session = () => new GradeSession({ nonce: "N", seed: 3, exercise: "09-demo", checks: [{ id: "a", max: 2, title: "A" }, { id: "b", max: 1, title: "B" }], todo: { f: "// TODO\nf()" } }, tf, kit);
  const lines = () => written.join("").split("\n").filter((l) => l.startsWith(`${GRADE_MARKER} N `)).map((l) => JSON.parse(l.slice(GRADE_MARKER.length + 3)));

  it("prints one line per check with the nonce; errors in the student's code become feedback", async () => {
    const s = session();
    capture();
    await s.run("a", async (g) => g.pass(`seed ${g.seed}, todo ${g.todoCode("f").trim()}`));
    await s.run("b", async (g) => g.student("f()", () => { throw new Error("TODO: write f"); }));
    process.stdout.write = realWrite;
    const [a, b] = lines();
    expect(a).toMatchObject({ id: "a", points: 2, max: 2, passed: true });
    expect(a.feedback).toMatch(/todo f\(\)$/);
    expect(b).toMatchObject({ id: "b", points: 0, passed: false, feedback: "f() threw Error: TODO: write f. Fill in its TODO cell." });
  });

  it("clamps partial points, rejects a second run of a check, and reports a failed setup in every check", async () => {
    const s = session();
    capture();
    await s.run("a", async (g) => g.fail("half", 5));
    await s.run("a", async (g) => g.pass("again"));
    const helpers = await s.setup(async () => { throw new Error("no model"); });
    await s.run("b", async (g) => g.pass("unreached"));
    process.stdout.write = realWrite;
    expect(helpers).toBeUndefined();
    expect(lines().map((l) => [l.id, l.points, l.feedback])).toEqual([
      ["a", 2, "half"], ["a", 0, "check a ran twice"], ["b", 0, "The grader's setup failed (Error: no model), so this check could not run."],
    ]);
  });

  it("draws the same inputs for the same seed and check, others for another seed", async () => {
    const draw = async (seed: number) => {
      const s = new GradeSession({ nonce: "N", seed, exercise: "x", checks: [{ id: "a", max: 1, title: "A" }], todo: {} }, tf, kit);
      let v: number[] = [];
      capture();
      await s.run("a", async (g) => { v = [g.rand(), g.int(0, 9), g.uniform(2, 3)]; return g.pass(""); });
      process.stdout.write = realWrite;
      return v;
    };
    expect(await draw(5)).toEqual(await draw(5));
    expect(await draw(5)).not.toEqual(await draw(6));
  });

  it("StudentCodeError keeps the original error", () => {
    const e = new StudentCodeError("f()", new RangeError("bad"));
    expect(e.message).toBe("f() threw RangeError: bad");
    expect(e.original).toBeInstanceOf(RangeError);
  });
});

describe("reports and the class summary", () => {
  const result = (over: Partial<GradeResult>): GradeResult => ({
    notebook: "alice/ex.ipynb", student: "alice", exercise: "09-demo", total: 2, max: 5, status: "ok", seconds: 12.345, seed: 9,
    gradedAt: "2026-01-01T00:00:00.000Z", cellErrors: [], warnings: [], slowestCells: [],
    checks: [{ id: "first", title: "First", points: 2, max: 2, passed: true, feedback: "fine" }, { id: "second", title: "Second", points: 0, max: 3, passed: false, feedback: "<script>alert(1)</script> off" }],
    ...over,
  });

  it("Markdown and HTML carry the score and the feedback, HTML-escaped", () => {
    expect(formatMarkdown(result({}))).toContain("**Score: 2 / 5** (40%)");
    const html = formatHtml(result({}));
    expect(html).toContain("<b>Score: 2 / 5</b>");
    expect(html).toContain("&lt;script&gt;alert(1)&lt;/script&gt; off");
    expect(html).not.toContain("<script>alert");
  });

  it("one CSV row per notebook, quoted where needed", () => {
    const csv = formatCsv([result({}), result({ student: 'bob, "the" student', total: 5, status: "timeout", checks: [] })]);
    expect(csv.split("\n")).toEqual([
      "student,notebook,exercise,points,max,percent,status,seconds,failed_checks",
      "alice,alice/ex.ipynb,09-demo,2,5,40,ok,12.35,second",
      '"bob, ""the"" student",alice/ex.ipynb,09-demo,5,5,100,timeout,12.35,',
      "",
    ]);
  });
});

describe("finding submissions and their exercise", () => {
  it("reads the exercise from the metadata, the file name, or its NN- prefix", () => {
    const dir = path.join(root, "exercises", "checks");
    const nb = (name?: string) => ({ ...studentNotebook([]), metadata: name ? { exercise: { name } } : {} });
    expect(resolveExercise(nb("06-lora"), "whatever.ipynb", dir)).toBe("06-lora");
    expect(resolveExercise(nb(), "x/03-cfg.ipynb", dir)).toBe("03-cfg");
    expect(resolveExercise(nb(), "x/05 my copy.ipynb", dir)).toBe("05-guidance-sweep");
    expect(resolveExercise(nb("06-lora"), "x.ipynb", dir, "01-ddpm-step")).toBe("01-ddpm-step");
    expect(() => resolveExercise(nb(), "x/notes.ipynb", dir)).toThrow(/cannot tell which exercise .*--exercise/);
  });

  it("a file that cannot be graded gives status error and the reason, without running Jupyter", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "bad-"));
    fs.writeFileSync(path.join(dir, "01-ddpm-step.ipynb"), "not json");
    fs.writeFileSync(path.join(dir, "notes.ipynb"), JSON.stringify(studentNotebook([])).replace('"09-demo"', '"nope"'));
    const opts = { kitRoot: root, jupyter: { python: "/nonexistent/python", env: {} } };
    const a = await grader.gradeNotebook(path.join(dir, "01-ddpm-step.ipynb"), opts);
    expect([a.status, a.total]).toEqual(["error", 0]);
    expect(a.error).toMatch(/not a readable notebook/);
    const b = await grader.gradeNotebook(path.join(dir, "notes.ipynb"), opts);
    expect(b.error).toMatch(/cannot tell which exercise/);
  });

  it("walks a class folder: student = first folder (nbgrader's submitted/<student>/...), checkpoints skipped", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "subs-"));
    for (const p of ["alice/a1/01-x.ipynb", "alice/a1/.ipynb_checkpoints/01-x-checkpoint.ipynb", "bob.ipynb", "carol/notes.txt"]) {
      fs.mkdirSync(path.dirname(path.join(dir, p)), { recursive: true });
      fs.writeFileSync(path.join(dir, p), "{}");
    }
    expect(findSubmissions(dir).map((s) => [path.relative(dir, s.file), s.student])).toEqual([["alice/a1/01-x.ipynb", "alice"], ["bob.ipynb", "bob"]]);
  });
});
