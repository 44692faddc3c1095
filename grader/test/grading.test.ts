// The grader without Jupyter: checks files (judge and kernel halves), the wire format (exact tensors, untrusted data
// refused), the judge's two phases in this process, the kernel session, the private graded notebook (no references
// in it), reading answers back (forged and duplicated lines, missing results, timeouts), reports, CSV, and the
// exercises' own structure. (notebooks/test/exercises.test.ts runs the real notebooks, the attacks and the sandbox;
// kernel-lib/test/compare.test.ts the feedback texts of the comparisons.)
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
  Judge,
  StudentCodeError,
  answersForJudge,
  buildGradedNotebook,
  decode,
  encode,
  findSubmissions,
  formatCsv,
  formatHtml,
  formatMarkdown,
  kernelAnswers,
  parseChecksFile,
  readChecksFile,
  resolveExercise,
  scoreChecks,
  sessionModule,
  studentCellErrors,
  type GradeResult,
  type KernelCall,
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
//@@ kernel-setup
return { three: 3 };
//@@ check first 2 The first check
const x = g.randn([2, 3]);
const got = g.student("double(x)", "double", { x });
const r = g.compare("double(x)", await got, tf.mul(x, h.two), { atol: 0, rtol: 0 });
return r;
//@@ kernel
return { double: (a: any) => double(a.x) };
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
    expect(c.kernelSetup).toBe("return { three: 3 };");
    expect(c.checks.map((x) => [x.id, x.points, x.title, x.line])).toEqual([["first", 2, "The first check", 10], ["second", 3, "The second one", 17]]);
    expect(c.checks[0].body).toContain("g.student(");
    expect(c.checks[0].kernel).toBe("return { double: (a: any) => double(a.x) };");
    expect(c.checks[1].body.trim()).toBe('return g.fail("no", 1);');
    expect(c.checks[1].kernel).toBe("");
  });

  it("names the file and line of a mistake", () => {
    const bad = (text: string) => () => parseChecksFile(text, "x.checks.ts");
    expect(bad(CHECKS.replace("check second 3", "check first 3"))).toThrow(/x\.checks\.ts:17: check id "first" is used twice/);
    expect(bad(CHECKS.replace("second 3", "second zero"))).toThrow(/x\.checks\.ts:17:.*points "zero"/);
    expect(bad(CHECKS.replace("//@@ kernel\n", ""))).toThrow(/check "first" calls g\.student but has no \/\/@@ kernel part/);
    expect(bad(CHECKS.replace("//@@ kernel-setup\nreturn { three: 3 };\n", "") + "//@@ kernel-setup\nreturn {};\n")).toThrow(/kernel-setup must come before the first/);
    expect(bad(CHECKS.replace("//@@ check first 2 The first check", "//@@ kernel"))).toThrow(/kernel must follow the \/\/@@ check/);
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
      expect(checks.setup, `${n}: the setup must not call the student's code`).not.toMatch(/g\.student\(/);
      // the kernel setup runs before any check cell: naming a student's function there would fail every check
      const todos = grader.todoCells(JSON.parse(fs.readFileSync(path.join(root, "solutions", `${n}.ipynb`), "utf8")) as Notebook)
        .flatMap((t) => [...t.source.matchAll(/^(?:async\s+)?function\s+(\w+)/gm)].map((m) => m[1]));
      for (const f of todos) expect(checks.kernelSetup, `${n}: the kernel setup names ${f}`).not.toMatch(new RegExp(`\\b${f}\\b`));
      // the kernel parts hold no references, tolerances or feedback: those are the judge's
      for (const c of checks.checks) expect(c.kernel, `${n} ${c.id}`).not.toMatch(/\b(atol|rtol|hint|compare\w*|g\.(pass|fail))\b/);
    }
  });

  it("an exercise whose TODO cells must not call a kit function says which, and a hidden check enforces it", () => {
    const withRule = names.filter((n) => readChecksFile(path.join(root, "exercises", "checks", `${n}.checks.ts`)).checks.some((c) => /g\.byHand\(/.test(c.body)));
    expect(withRule).toEqual(["01-ddpm-step", "02-ddim-step", "03-cfg", "04-scheduler-swap", "06-lora", "07-attention-slicing"]);
    for (const n of names) {
      const ex = JSON.parse(fs.readFileSync(path.join(root, "exercises", `${n}.ipynb`), "utf8")) as Notebook;
      expect(ex.cells.some((c) => c.cell_type === "markdown" && src(c).includes("**By hand.**")), n).toBe(withRule.includes(n));
    }
  });

  it("GitHub Classroom runs the grader once per exercise, for its full score", () => {
    const cfg = JSON.parse(fs.readFileSync(path.join(root, ".github", "classroom", "autograding.json"), "utf8")) as { tests: { run: string; points: number; timeout: number }[] };
    expect(cfg.tests.length).toBe(names.length);
    names.forEach((n, i) => {
      const max = readChecksFile(path.join(root, "exercises", "checks", `${n}.checks.ts`)).checks.reduce((s, c) => s + c.points, 0);
      expect(cfg.tests[i].run).toBe(`npm run grade -- exercises/${n}.ipynb --exercise ${n} --min-score 100%`);
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

describe("the wire between the judge and the kernel", () => {
  it("carries tensors exactly, typed arrays, NaN, ±Infinity, undefined, nested data and class names", () => {
    const t = tf.tensor([1 / 3, -0, 1e-30, 3e38], [2, 2]);
    const v = { t, i: tf.tensor([1, 2], [2], "int32"), a: new Float32Array([0.1, 2]), n: [NaN, Infinity, -Infinity, 1.5], u: undefined, s: "x", $k: 1, deep: [[{ z: null }]] };
    const back = decode(JSON.parse(JSON.stringify(encode(v)))) as Record<string, unknown>;
    expect(Array.from((back.t as tf.Tensor).dataSync())).toEqual(Array.from(t.dataSync()));
    expect((back.t as tf.Tensor).shape).toEqual([2, 2]);
    expect((back.i as tf.Tensor).dtype).toBe("int32");
    expect(back.a).toEqual(new Float32Array([0.1, 2]));
    expect(back.n).toEqual([NaN, Infinity, -Infinity, 1.5]);
    expect("u" in back && back.u === undefined).toBe(true);
    expect([back.s, back.$k, back.deep]).toEqual(["x", 1, [[{ z: null }]]]);
    class Sched { config = { a: 1 }; steps = 3; }
    const c = decode(encode(new Sched())) as grader.RemoteObject;
    expect([c.className, (c as unknown as { steps: number }).steps, "config" in c]).toEqual(["Sched", 3, false]);
    expect(String(decode(encode(() => 1)))).toMatch(/<function/);
    tf.dispose([t, back.t as tf.Tensor, back.i as tf.Tensor, v.i]);
  });

  it("refuses forged data with a clear error: wrong byte counts, huge shapes, bad dtypes, prototypes", () => {
    const bytes = Buffer.from(new Float32Array([1, 2, 3]).buffer).toString("base64");
    expect(() => decode({ $t: [2, 2], dtype: "float32", b64: bytes }, undefined, 0, "got")).toThrow(/got: 12 bytes for a float32 tensor of shape \[2,2\] \(needs 16\)/);
    expect(() => decode({ $t: [1e6, 1e6], dtype: "float32", b64: "" })).toThrow(/more than the \d+ a result may hold/);
    expect(() => decode({ $t: [1], dtype: "complex64", b64: "" })).toThrow(/dtype complex64/);
    expect(() => decode({ $t: [-1], dtype: "float32", b64: "" })).toThrow(/is not a shape/);
    expect(() => decode({ $t: [1], dtype: "float32", b64: "!!" })).toThrow(/not base64/);
    const o = decode(JSON.parse('{"__proto__": {"polluted": 1}, "constructor": 2, "ok": 3}')) as Record<string, unknown>;
    expect(o).toEqual({ ok: 3 });
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });
});

describe("the judge (the grader's process)", () => {
  const checks = parseChecksFile(CHECKS, "demo.checks.ts");
  const judge = (seed = 1, extra: Partial<ConstructorParameters<typeof Judge>[1]> = {}) => new Judge(checks, { seed, todo: {}, lib: kit, ...extra });
  const doubled = (call: KernelCall) => {
    const x = decode(call.args) as { x: tf.Tensor };
    const out = encode(tf.mul(x.x, 2));
    return out;
  };

  it("phase 1 draws the inputs and says what to ask the kernel; phase 2 compares the answers with its own references", async () => {
    const j = judge();
    const calls = await j.prepare();
    expect(Object.keys(calls)).toEqual(["first", "second"]);
    expect(calls.first.map((c) => [c.what, c.entry])).toEqual([["double(x)", "double"]]);
    expect(calls.second).toEqual([]);
    const v = await j.finish({ first: [{ ok: doubled(calls.first[0]) }] });
    expect(v.first).toMatchObject({ passed: true });
    expect(v.second).toMatchObject({ passed: false, feedback: "no", points: 1 });
  });

  it("a wrong answer fails with the comparison's feedback; an error the kernel reports is the student's", async () => {
    const j = judge();
    const calls = await j.prepare();
    const wrong = await j.finish({ first: [{ ok: encode(decode(calls.first[0].args) as unknown) }] });
    expect(wrong.first.passed).toBe(false);
    const k = judge();
    await k.prepare();
    const thrown = await k.finish({ first: [{ error: "Error: TODO: write double" }] });
    expect(thrown.first).toMatchObject({ passed: false, feedback: "double(x) threw Error: TODO: write double. Fill in its TODO cell." });
    expect(thrown.first.graderError).toBeUndefined();
  });

  it("the same seed draws the same inputs, another seed others", async () => {
    const args = async (seed: number) => (await judge(seed).prepare()).first[0].args;
    expect(await args(5)).toEqual(await args(5));
    expect(await args(5)).not.toEqual(await args(6));
  });

  it("a check asking the kernel after its first answer, or a failed setup, is the grader's error", async () => {
    const two = parseChecksFile(CHECKS.replace("return r;", 'await g.student("again", "double", { x });\nreturn r;'));
    const j = new Judge(two, { seed: 1, todo: {}, lib: kit });
    const calls = await j.prepare();
    const v = await j.finish({ first: [{ ok: doubled(calls.first[0]) }] });
    expect(v.first).toMatchObject({ passed: false, graderError: true });
    expect(v.first.feedback).toMatch(/not your fault.*issues all its calls before awaiting any/);
    const broken = new Judge(parseChecksFile(CHECKS.replace("const two = 2;", 'throw new Error("no model");')), { seed: 1, todo: {}, lib: kit });
    await broken.prepare();
    const b = await broken.finish({});
    expect(b.second).toMatchObject({ passed: false, graderError: true });
    expect(b.second.feedback).toMatch(/setup failed \(Error: no model\)/);
  });

  it("by-hand rules: broken (with a note for the teacher), untouched, kept", async () => {
    const byHand = parseChecksFile(`//@@ exercise 09-demo
//@@ check by-hand 1 by hand
return g.byHand(["f"], /\\.step\\s*\\(/, "call scheduler.step.", "written by hand.");
`);
    const run = async (todo: string) => {
      const j = new Judge(byHand, { seed: 1, todo: { f: todo }, starter: { f: 'throw new Error("TODO");' }, lib: kit });
      await j.prepare();
      return (await j.finish({}))["by-hand"];
    };
    expect(await run("return s.step(e, t, x); // .step( in a comment does not count")).toMatchObject({ passed: false, notes: ["by-hand rule broken in TODO f: call scheduler.step."] });
    expect(await run('throw new Error("TODO"); // my comment')).toMatchObject({ passed: false, feedback: "fill in the TODO cell(s) f first." });
    expect(await run("return x; // no .step here")).toMatchObject({ passed: true });
  });
});

describe("the graded notebook", () => {
  const checks = parseChecksFile(CHECKS);
  const student = studentNotebook([{ src: "# intro", type: "markdown" }, { src: "function f() { return 1; }", todo: "f" }]);
  const calls: Record<string, KernelCall[]> = { first: [{ what: "double(x)", entry: "double", args: { x: 1 } }], second: [] };

  it("is the student's cells (outputs cleared), a preamble with the nonce and kernel setup, then a cell per check that calls the student", () => {
    const built = buildGradedNotebook(student, checks, { nonce: "n0nce", calls });
    expect(built.studentCells).toBe(2);
    expect(built.notebook.cells[1].outputs).toEqual([]);
    const preamble = grader.cellSource(built.notebook.cells[built.preambleIndex]);
    expect(preamble).toContain('"nonce":"n0nce"');
    expect(preamble).toContain("return { three: 3 };");
    // the session comes from the grader's build by its path, not from kernel-lib (which does not export it)
    expect(preamble).toContain(`import { GradeSession as $GradeSession } from ${JSON.stringify(sessionModule())};`);
    expect(sessionModule()).toBe(path.join(root, "grader", "dist", "check-session.js"));
    expect("GradeSession" in kit).toBe(false);
    // only "first" asks the kernel; "second" is judged without it
    expect([...built.checkCells.values()]).toEqual(["first"]);
    const cell = grader.cellSource(built.notebook.cells[[...built.checkCells.keys()][0]]);
    expect(cell).toContain("return { double: (a: any) => double(a.x) };");
    expect(cell).toContain(JSON.stringify(JSON.stringify(calls.first)));
    // nothing of the judge is in the kernel: no setup helpers, no references, no tolerances, no feedback, no nonce
    for (const c of built.notebook.cells.slice(built.preambleIndex + 1)) {
      const src = grader.cellSource(c);
      for (const secret of ["n0nce", "g.compare", "atol", "const two", "g.fail"]) expect(src).not.toContain(secret);
    }
    expect(preamble).not.toContain("const two");
    expect(built.notebook.metadata.kernelspec).toMatchObject({ name: "tslab" });
  });

  it("lists suspicious student code for the teacher", () => {
    const nb = studentNotebook([
      { src: 'console.log = () => {}; console.info("@@GRADE x")' }, { src: "process.exit(0)" },
      { src: 'const C: any = require("kernel-" + "lib")["Grade" + "Context"].prototype;\nC.compare = () => 1;' },
      { src: 'fs.readFileSync("/proc/1/cmdline"); globalThis.x = 1; tf.add = () => 0;' },
      { src: "let x: tf.Tensor4D = tf.zeros([1]); const f = (a: tf.Tensor): tf.Tensor => a;" },
    ]);
    expect(grader.suspiciousCode(nb)).toEqual([
      "code cell 0 prints grader lines (@@GRADE)", "code cell 0 replaces console or stdout", "code cell 1 exits the kernel or starts processes",
      "code cell 2 patches a prototype", "code cell 2 requires or imports a module by a name built at run time",
      "code cell 3 sets globals or properties by reflection", "code cell 3 replaces a function of tfjs or the kit", "code cell 3 reads /proc",
      "code cell 3 uses absolute paths", "code cell 3 uses the file system",
    ]);
  });
});

describe("reading the answers back", () => {
  const checks = parseChecksFile(CHECKS);
  const nonce = "abc123";
  const student = studentNotebook([{ src: "function helper() {}", todo: "helper" }]);
  const built = buildGradedNotebook(student, checks, { nonce, calls: { first: [{ what: "double(x)", entry: "double", args: null }] } });
  const [firstCell] = [...built.checkCells.keys()];
  const line = (id: string, n = nonce, extra: object = {}) => `\n${GRADE_MARKER} ${n} ${JSON.stringify({ id, answers: [{ ok: 1 }], seconds: 0, ...extra })}\n`;
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
  const verdicts = { first: { passed: false, feedback: "fb first", points: 50 }, second: { passed: true, feedback: "fb second" } };

  it("hands the judge each check's answers from its own cell; the judge's points are clamped to the checks file's maximum", () => {
    const nb = executed({ [firstCell]: { stdout: "noise\n" + line("first") } });
    expect(answersForJudge(kernelAnswers(nb, built, nonce))).toEqual({ first: [{ ok: 1 }] });
    const out = scoreChecks(nb, built, checks, summary(), nonce, verdicts);
    expect(out.map((c) => [c.id, c.points, c.max, c.passed, c.feedback])).toEqual([["first", 2, 2, false, "fb first"], ["second", 3, 3, true, "fb second"]]);
  });

  it("ignores lines without this run's nonce, lines in the student's cells, and lines for another check", () => {
    const nb = executed({
      0: { stdout: line("first") },                         // the student prints genuine-looking lines
      [firstCell]: { stdout: line("first", "guessed") + line("second") },   // a forged nonce; another check's id
    });
    expect(answersForJudge(kernelAnswers(nb, built, nonce))).toEqual({});
    const out = scoreChecks(nb, built, checks, summary(), nonce, { second: verdicts.second });
    expect(out[0]).toMatchObject({ points: 0, feedback: "The check printed no result." });
  });

  it("scores 0 when a check's line appears twice, and says when the kernel setup failed", () => {
    const twice = executed({ [firstCell]: { stdout: line("first") + line("first") } });
    expect(answersForJudge(kernelAnswers(twice, built, nonce))).toEqual({});
    expect(scoreChecks(twice, built, checks, summary(), nonce, verdicts)[0]).toMatchObject({ points: 0, feedback: expect.stringMatching(/appeared 2 times/) });
    const setup = executed({ [firstCell]: { stdout: line("first", nonce, { setupError: "Error: no model" }) } });
    expect(scoreChecks(setup, built, checks, summary(), nonce, verdicts)[0].feedback).toMatch(/setup failed in your notebook's kernel \(Error: no model\)/);
  });

  it("explains a missing result: a name the failed TODO cell declares, a timeout, a grader failure", () => {
    const nb = executed({
      0: { stderr: "Error: TODO: write helper\n    at evalmachine.<anonymous>:3:9\n" },
      [firstCell]: { stderr: "3:5 - Cannot find name 'helper'.\n" },
    });
    nb.cells[0].source = "function helper(): number { throw new Error('TODO'); }";
    const out = scoreChecks(nb, built, checks, summary({ 0: "error" }), nonce, verdicts);
    expect(out[0].feedback).toMatch(/could not find `helper`: it is declared in code cell 0 \(TODO `helper`\), which failed/);
    const timedOut = scoreChecks(executed({}), built, checks, summary({ [firstCell]: "timeout" }), nonce, verdicts);
    expect(timedOut[0].feedback).toBe("The check timed out (the cell ran past the time limit and was skipped).");
    const errors = studentCellErrors(nb, built, summary({ 0: "error" }));
    expect(errors).toEqual([{ cell: 0, todo: "helper", status: "error", message: "Error: TODO: write helper" }]);
    const broken = scoreChecks(executed({ [firstCell]: { stderr: "2:7 - Cannot find name '$grade'.\n" } }), built, checks, summary(), nonce, verdicts);
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
  const lines = () => written.join("").split("\n").filter((l) => l.startsWith(`${GRADE_MARKER} N `)).map((l) => JSON.parse(l.slice(GRADE_MARKER.length + 3)));
  const calls = (...xs: unknown[]) => JSON.stringify(xs.map((x) => ({ what: "f", entry: "f", args: encode(x) })));

  it("answers each call with the raw output, or what the student's code threw; one line per check with the nonce", async () => {
    const s = new GradeSession({ nonce: "N", exercise: "09-demo" }, tf, kit);
    capture();
    await s.setup(async () => ({ add: 10 }));
    await s.run("a", calls({ x: 1 }, { x: 2 }), (k) => ({ f: (a: { x: number }) => a.x + k.add }));
    await s.run("b", calls({ x: 1 }), () => ({ f: () => { throw new Error("TODO: write f"); } }));
    await s.run("c", calls({ t: tf.ones([2]) }), () => ({ f: (a: { t: tf.Tensor }) => tf.mul(a.t, 3) }));
    process.stdout.write = realWrite;
    const [a, b, c] = lines();
    expect(a).toMatchObject({ id: "a", answers: [{ ok: 11 }, { ok: 12 }] });
    expect(b).toMatchObject({ id: "b", answers: [{ error: "Error: TODO: write f" }] });
    expect(Array.from((decode(c.answers[0].ok) as tf.Tensor).dataSync())).toEqual([3, 3]);
  });

  it("reports a failed kernel setup in every check's line", async () => {
    const s = new GradeSession({ nonce: "N", exercise: "09-demo" }, tf, kit);
    capture();
    await s.setup(async () => { throw new Error("no model"); });
    await s.run("a", calls(1), () => ({ f: () => 1 }));
    process.stdout.write = realWrite;
    expect(lines()).toEqual([{ id: "a", answers: [], setupError: "Error: no model", seconds: expect.any(Number) }]);
  });

  it("StudentCodeError keeps what was called and what it threw", () => {
    const e = new StudentCodeError("f()", "RangeError: bad");
    expect(e.message).toBe("f() threw RangeError: bad");
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

  it("one CSV row per notebook, quoted where needed, formulas neutralised, the teacher's notes in their own column", () => {
    const csv = formatCsv([
      result({}), result({ student: 'bob, "the" student', total: 5, status: "timeout", checks: [] }),
      result({ student: '=HYPERLINK("http://x")', notebook: "+x", checks: [], warnings: ["code cell 3 patches a prototype", "by-hand rule broken in TODO step"] }),
      result({ student: "-1", notebook: "@x", checks: [], status: "error", error: "the grader's own checks failed" }),
    ]);
    expect(csv.split("\n")).toEqual([
      "student,notebook,exercise,points,max,percent,status,seconds,failed_checks,notes",
      "alice,alice/ex.ipynb,09-demo,2,5,40,ok,12.35,second,",
      '"bob, ""the"" student",alice/ex.ipynb,09-demo,2,5,40,timeout,12.35,,'.replace(",2,5,40,", ",5,5,100,"),
      `"'=HYPERLINK(""http://x"")",'+x,09-demo,2,5,40,ok,12.35,,code cell 3 patches a prototype; by-hand rule broken in TODO step`,
      "'-1,'@x,09-demo,2,5,40,error,12.35,,error: the grader's own checks failed",
      "",
    ]);
  });
});

describe("finding submissions and their exercise", () => {
  it("reads the exercise from the metadata, the file name, or its NN- prefix", () => {
    const dir = path.join(root, "exercises", "checks");
    const nb = (name?: string) => ({ ...studentNotebook([]), metadata: name ? { exercise: { name } } : {} });
    expect(resolveExercise(nb("06-lora"), "whatever.ipynb", dir)).toBe("06-lora");
    expect(resolveExercise(nb("06-lora"), "x/06-lora.ipynb", dir)).toBe("06-lora");
    // metadata and file name naming different exercises: graded as neither unless --exercise says which
    expect(() => resolveExercise(nb("02-ddim-step"), "x/01-ddpm-step.ipynb", dir)).toThrow(/named like exercise 01-ddpm-step but its metadata says 02-ddim-step: graded as neither; pass --exercise/);
    expect(resolveExercise(nb("02-ddim-step"), "x/01-ddpm-step.ipynb", dir, "02-ddim-step")).toBe("02-ddim-step");
    expect(() => resolveExercise(nb("99-nope"), "x/a.ipynb", dir)).toThrow(/says it is exercise "99-nope".*has no checks/);
    expect(() => resolveExercise(nb(), "x/01-ddpm-step.ipynb", "/nonexistent")).toThrow(/no checks folder at \/nonexistent/);
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
    expect(b.error).toMatch(/says it is exercise "nope" \(metadata.exercise.name\), which has no checks/);
  });

  it("notices a checks file that changed after it was read (hashed before and after every run)", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "checks-"));
    fs.writeFileSync(path.join(dir, "09-demo.checks.ts"), CHECKS);
    const cache = new grader.ChecksCache(dir);
    expect(cache.get("09-demo").checks.length).toBe(2);
    expect(cache.text("09-demo")).toBe(CHECKS);
    expect(cache.changed()).toEqual([]);
    fs.appendFileSync(path.join(dir, "09-demo.checks.ts"), "//@@ check pwned 99 x\nreturn g.pass('x');\n");
    expect(cache.changed()).toEqual([path.join(dir, "09-demo.checks.ts")]);
    // the judge gets the text read before: the change does not reach this session's grades
    expect(cache.text("09-demo")).toBe(CHECKS);
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
