// The exercises' hidden checks, proven with real Jupyter and the tslab kernel: every solution scores full marks,
// every untouched exercise and every "cheating" variant (constants, inputs returned unchanged) scores less; the
// attacks of a cheating student (patching the checks in the kernel, trapping stdout, another exercise under this
// one's name, a by-hand rule broken, probing the machine from a cell) score what they earned, with notes for the
// teacher, and the sandbox's denials are observed; exit codes fail closed; and `npm run grade` on a class folder (a
// good, a partial, a crashing and a hanging submission) writes the expected CSV.
// Notebooks are graded in one `scripts/grade.mjs` run per folder (two in parallel) to keep this fast.
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { CHEATS } from "./exercise-cheats.js";

const root = path.resolve(__dirname, "../..");
const exercises = fs.readdirSync(path.join(root, "exercises")).filter((f) => /^\d\d-.*\.ipynb$/.test(f)).map((f) => f.slice(0, -6)).sort();

interface Result {
  notebook: string; student: string; exercise: string; total: number; max: number; status: string; error?: string; sandbox?: string; warnings: string[];
  checks: { id: string; passed: boolean; feedback: string }[]; cellErrors: { cell: number; message: string }[];
}
type Cell = { cell_type: string; source: string | string[]; metadata: { tags?: string[]; todo?: string } };

function readNb(file: string): { cells: Cell[] } {
  return JSON.parse(fs.readFileSync(file, "utf8"));
}

/** The solution (or the untouched exercise) with the named TODO cells replaced and `extra` cells appended. */
function variant(name: string, replace: Record<string, string>, extra: string[] = [], from: "solutions" | "exercises" = "solutions"): string {
  const nb = readNb(path.join(root, from, `${name}.ipynb`));
  for (const c of nb.cells) {
    const todo = c.metadata.todo;
    if (c.cell_type === "code" && todo && todo in replace) c.source = replace[todo];
  }
  for (const src of extra) nb.cells.push({ cell_type: "code", source: src, metadata: {}, outputs: [], execution_count: null } as unknown as Cell);
  return JSON.stringify(nb);
}

/** scripts/grade.mjs on one notebook: its exit code and output (for the exit-code rules; these fail before Jupyter). */
function gradeExit(args: string[]): { status: number | null; out: string } {
  const r = spawnSync(process.execPath, [path.join(root, "scripts/grade.mjs"), ...args], { cwd: root, encoding: "utf8", timeout: 600_000 });
  return { status: r.status, out: r.stdout + r.stderr };
}

// The attacks a cheating student made on the old in-kernel grader (issue 15), each a cell appended to a notebook.
// 1. Patch the checks' comparisons and the session's answers in the kernel, module names built at run time.
const PATCH = `const C: any = require("kernel-" + "lib")["Grade" + "Context"]?.prototype ?? {};
for (const m of ["compare", "compareNumber", "compareArray", "compareData", "all", "fail"]) C[m] = () => ({ passed: true, feedback: "matches" });
const S: any = require(process.cwd() + "/../grader/dist/" + "check-session.js").GradeSession.prototype;
const run = S.run;
S.run = async function (this: unknown, id: string, calls: string, part: unknown) {
  return run.call(this, id, calls, async () => ({ posterior: () => ({ x0Coeff: 1, xtCoeff: 1, variance: 1 }), step: () => 0, leak: () => 0 }));
};`;
// 2. Trap stdout and rewrite every grader line (strings built at run time).
const TRAP = `const w = process.stdout.write.bind(process.stdout);
const M = "@@" + "GRADE";
(process.stdout as any).write = (s: string, ...rest: unknown[]) => w(String(s).split("\\n").map((l) => l.startsWith(M) ? l.replace(/"passed":false/g, '"passed":true') : l).join("\\n"), ...rest);`;
// 3. Probe the machine from a cell; the results come back as the cell's error (the grader reports it).
const PROBE = `import * as fs from "fs";
const probes: Record<string, string> = {};
const tryIt = (what: string, fn: () => unknown) => { try { fn(); probes[what] = "allowed"; } catch (e) { probes[what] = "denied"; } };
tryIt("root", () => { if (process.getuid!() !== 0) throw new Error("not root"); });
tryIt("shadow", () => fs.readFileSync("/etc/shadow", "utf8"));
tryIt("checks", () => fs.readFileSync(${JSON.stringify(path.join(root, "exercises/checks/01-ddpm-step.checks.ts"))}, "utf8"));
tryIt("solutions", () => fs.readFileSync(${JSON.stringify(path.join(root, "solutions/01-ddpm-step.ipynb"))}, "utf8"));
tryIt("write-checks", () => fs.appendFileSync(${JSON.stringify(path.join(root, "exercises/checks/01-ddpm-step.checks.ts"))}, "\\n//@@ check x 99 pwned\\nreturn g.pass('x');\\n"));
tryIt("write-kit", () => fs.writeFileSync(${JSON.stringify(path.join(root, "pwned.txt"))}, "x"));
tryIt("write-node-modules", () => fs.writeFileSync(process.cwd() + "/../node_modules/pwned.txt", "x"));
tryIt("others", () => { if (fs.readdirSync("/proc").filter((p) => /^\\d+$/.test(p)).some((p) => { try { return /run_notebook|judge-cli|graded\\.ipynb/.test(fs.readFileSync("/proc/" + p + "/cmdline", "utf8")); } catch { return false; } })) return; throw new Error("none"); });
tryIt("private", () => {
  // the grader's folder of work and private folders: "allowed" if anything but this kernel's own folder shows
  const own = process.cwd().replace(/\\/exercises$/, ""), names = fs.readdirSync(require("path").dirname(own));
  if (!names.some((n: string) => n.startsWith("grade-private") || (n.startsWith("grade-work") && !own.endsWith(n)))) throw new Error("only its own");
});
tryIt("shared-tmp", () => fs.writeFileSync("/tmp/kit-grade-probe.txt", "x"));
tryIt("token", () => { if (!process.env.KIT_TEST_SECRET_TOKEN && !process.env.GRADER_SECRET) throw new Error("none"); });
tryIt("20GB", () => { const a = []; for (let i = 0; i < 20; i++) a.push(new Uint8Array(1e9).fill(1)); });
throw new Error("PROBES " + JSON.stringify(probes));`;
// 4. Write it yourself? ddpmStep handing the work to the scheduler.
const BY_LIBRARY = `function ddpmStep(scheduler: DDPMScheduler, eps: tf.Tensor, t: number, x: tf.Tensor, noise: tf.Tensor): tf.Tensor {
  const out = scheduler.step(eps, t, x, { noise });
  out.predOriginalSample.dispose();
  return out.prevSample;
}`;

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

describe("a cheating student's attacks", () => {
  let tmp = "";
  let results: Result[] = [];
  const get = (student: string) => results.find((r) => r.student === student)!;
  const asRoot = process.getuid?.() === 0;
  const checksFile = path.join(root, "exercises/checks/01-ddpm-step.checks.ts");
  let checksBefore = "";

  beforeAll(() => {
    checksBefore = fs.readFileSync(checksFile, "utf8");
    fs.rmSync("/tmp/kit-grade-probe.txt", { force: true });
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), "attack-test-"));
    const dir = path.join(tmp, "submitted");
    const put = (student: string, file: string, text: string) => {
      fs.mkdirSync(path.join(dir, student), { recursive: true });
      fs.writeFileSync(path.join(dir, student, file), text);
    };
    put("patch", "01-ddpm-step.ipynb", variant("01-ddpm-step", {}, [PATCH], "exercises"));
    put("trap", "01-ddpm-step.ipynb", variant("01-ddpm-step", {}, [TRAP], "exercises"));
    put("other", "01-ddpm-step.ipynb", fs.readFileSync(path.join(root, "solutions/02-ddim-step.ipynb"), "utf8"));
    put("library", "01-ddpm-step.ipynb", variant("01-ddpm-step", { step: BY_LIBRARY }));
    put("probe", "01-ddpm-step.ipynb", variant("01-ddpm-step", {}, [PROBE]));
    put("=HYPERLINK(1)", "06-lora.ipynb", variant("06-lora", {}));
    const env = { ...process.env, KIT_TEST_SECRET_TOKEN: "s3cret", GRADER_SECRET: "s3cret" };
    const csv = path.join(tmp, "grades.csv"), json = path.join(tmp, "grades.json");
    const r = spawnSync(process.execPath, [path.join(root, "scripts/grade.mjs"), dir, "--jobs", "2", "--csv", csv, "--json", json], { cwd: root, env, encoding: "utf8", timeout: 1_700_000 });
    if (!fs.existsSync(json)) throw new Error(`grade.mjs failed (${r.status}):\n${r.stderr.slice(-4000)}`);
    results = JSON.parse(fs.readFileSync(json, "utf8"));
  }, 1_800_000);
  afterAll(() => { if (tmp) fs.rmSync(tmp, { recursive: true, force: true }); });

  it("patching the checks and the session in the kernel earns nothing, and the teacher is told", () => {
    const r = get("patch");
    expect([r.status, r.total]).toEqual(["ok", 0]);
    expect(r.warnings.join("\n")).toMatch(/patches a prototype/);
    expect(r.warnings.join("\n")).toMatch(/requires or imports a module by a name built at run time/);
  });

  it("rewriting the grader's lines on stdout earns nothing, and the teacher is told", () => {
    const r = get("trap");
    expect([r.status, r.total]).toEqual(["ok", 0]);
    expect(r.warnings.join("\n")).toMatch(/replaces console or stdout/);
  });

  it("another exercise saved under this one's name is graded as neither", () => {
    const r = get("other");
    expect([r.status, r.total]).toEqual(["error", 0]);
    expect(r.error).toMatch(/named like exercise 01-ddpm-step but its metadata says 02-ddim-step: graded as neither; pass --exercise/);
  });

  it("a TODO that hands the work to the library loses the by-hand point, with a note", () => {
    const r = get("library");
    expect(r.checks.find((c) => c.id === "by-hand")).toMatchObject({ passed: false });
    expect(r.total).toBe(r.max - 1);
    expect(r.warnings.join("\n")).toMatch(/by-hand rule broken in TODO step/);
  });

  it("the sandbox denies what a cell should not reach, and the checks are unchanged", () => {
    const r = get("probe");
    const line = r.cellErrors.map((e) => e.message).join("\n").match(/PROBES (\{.*\})/);
    expect(line, JSON.stringify(r.cellErrors)).not.toBeNull();
    const probes = JSON.parse(line![1]) as Record<string, string>;
    expect(fs.readFileSync(checksFile, "utf8")).toBe(checksBefore);
    expect(fs.existsSync(path.join(root, "pwned.txt"))).toBe(false);
    if (/hidden by a mount namespace/.test(r.sandbox ?? "")) {
      expect(fs.existsSync("/tmp/kit-grade-probe.txt"), "a file the kernel wrote to /tmp is on the machine").toBe(false);
    }
    expect(r.status).toBe("ok");
    expect(r.total).toBe(r.max);
    // never: the grader's secrets in the environment, 20 GB of memory
    expect([probes.token, probes["20GB"]]).toEqual(["denied", "denied"]);
    if (asRoot && /hidden by a mount namespace/.test(r.sandbox ?? "")) {
      expect(r.sandbox).toMatch(/kernel as user kitgrade\d \(no capabilities\), the kit hidden by a mount namespace/);
      for (const k of ["root", "shadow", "checks", "solutions", "write-checks", "write-kit", "write-node-modules", "others", "private"]) expect(probes[k], k).toBe("denied");
    } else if (asRoot) {
      // root in a container that forbids mount namespaces: the user switch alone (the kit is readable, not writable)
      expect(r.sandbox).toMatch(/kernel as user kitgrade\d \(no capabilities\), no mount namespaces here/);
      for (const k of ["root", "shadow", "write-checks", "write-kit", "write-node-modules", "private"]) expect(probes[k], k).toBe("denied");
    } else if (/user namespace/.test(r.sandbox ?? "")) {
      // not root, in an unprivileged user namespace: the same hidden kit (writes land in its private tmpfs)
      for (const k of ["shadow", "checks", "solutions", "write-checks", "write-node-modules", "others"]) expect(probes[k], k).toBe("denied");
    } else {
      expect(r.sandbox).toMatch(/not root, no user namespaces: the kit is readable/);
    }
    expect(r.warnings.join("\n")).toMatch(/reads \/proc/);
  });

  it("a name that a spreadsheet would run is neutralised in the CSV", () => {
    const csv = fs.readFileSync(path.join(tmp, "grades.csv"), "utf8");
    expect(csv).toMatch(/^'=HYPERLINK\(1\),'=HYPERLINK\(1\)\/06-lora.ipynb,06-lora,9,9,100,ok,/m);
  });

  it("--min-score fails closed: nbformat 3, not JSON, unreadable checks, a mismatched exercise", () => {
    const dir = path.join(tmp, "bad");
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, "01-ddpm-step.ipynb"), JSON.stringify({ nbformat: 3, nbformat_minor: 0, worksheets: [], metadata: {} }));
    fs.writeFileSync(path.join(dir, "02-ddim-step.ipynb"), "{ not json");
    fs.copyFileSync(path.join(root, "solutions/02-ddim-step.ipynb"), path.join(dir, "03-cfg.ipynb"));
    for (const f of ["01-ddpm-step.ipynb", "02-ddim-step.ipynb", "03-cfg.ipynb"]) {
      const r = gradeExit([path.join(dir, f), "--min-score", "100%"]);
      expect(r.status, `${f}: ${r.out.slice(-500)}`).toBe(1);
      expect(r.out).toMatch(/could not grade/);
    }
    const nochecks = gradeExit([path.join(root, "solutions/01-ddpm-step.ipynb"), "--checks", "/nonexistent", "--min-score", "100%"]);
    expect(nochecks.status).toBe(2);
    expect(nochecks.out).toMatch(/no checks folder at \/nonexistent/);
  });
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
    // forgets alpha / r when merging: the merge check fails, and the leak check (which counts only for right results)
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
    expect(rows[0]).toEqual(["student", "notebook", "exercise", "points", "max", "percent", "status", "seconds", "failed_checks", "notes"]);
    const withoutSeconds = rows.slice(1).map((r) => [...r.slice(0, 7), ...r.slice(8)].join(","));
    expect(withoutSeconds).toEqual([
      "alice,alice/06-lora/06-lora.ipynb,06-lora,9,9,100,ok,,",
      "bob,bob/06-lora/06-lora.ipynb,06-lora,5,9,55.56,ok,merge no-leak,",
      "carol,carol/06-lora/06-lora.ipynb,06-lora,5,9,55.56,crashed,merge no-leak,code cell 7 exits the kernel or starts processes",
      "dave,dave/06-lora/06-lora.ipynb,06-lora,5,9,55.56,timeout,merge no-leak,",
    ]);
    // feedback laid out as nbgrader's feedback/<student>/<assignment>/<notebook>.html
    expect(fs.readFileSync(path.join(tmp, "feedback", "bob", "06-lora", "06-lora.html"), "utf8")).toContain("Score: 5 / 9");
    const bob = results.find((r) => r.student === "bob")!;
    expect(bob.checks.find((c) => c.id === "merge")!.feedback).toMatch(/alpha \/ r/);
    console.log(`class folder graded in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    fs.rmSync(tmp, { recursive: true, force: true });
  }, 900_000);
});
