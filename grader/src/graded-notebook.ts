// The student's notebook as the grader sees it (.ipynb JSON, nbformat 4), and the grader's private copy of it:
// the student's cells as submitted (outputs cleared), then a preamble cell (the GradeSession with this run's
// nonce and seed, and the checks file's setup), then one cell per hidden check. TODO cells are the code cells
// tagged "todo" (metadata.todo names them); visible check cells are tagged "check".
import * as fs from "node:fs";
import * as path from "node:path";
import type { ExerciseChecks } from "./checks-file.js";
import type { GradeSessionConfig } from "./check-session.js";
import type { KernelCall } from "./judge.js";

export interface NotebookOutput {
  output_type: string;
  name?: string;
  text?: string | string[];
  data?: Record<string, unknown>;
  [k: string]: unknown;
}

export interface NotebookCell {
  cell_type: "code" | "markdown" | "raw";
  source: string | string[];
  metadata: Record<string, unknown>;
  outputs?: NotebookOutput[];
  execution_count?: number | null;
  id?: string;
  [k: string]: unknown;
}

export interface Notebook {
  cells: NotebookCell[];
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

export function readNotebook(file: string): Notebook {
  let nb: Notebook;
  try {
    nb = JSON.parse(fs.readFileSync(file, "utf8")) as Notebook;
  } catch (e) {
    throw new Error(`${file} is not a readable notebook (.ipynb JSON): ${(e as Error).message}`);
  }
  if (!nb || !Array.isArray(nb.cells) || nb.nbformat !== 4) {
    throw new Error(`${file} is not an nbformat 4 notebook (no "cells" list, or nbformat ${String(nb?.nbformat)}); open it in Jupyter and save it again`);
  }
  return nb;
}

export function cellSource(cell: NotebookCell): string {
  return Array.isArray(cell.source) ? cell.source.join("") : String(cell.source ?? "");
}

export function cellTags(cell: NotebookCell): string[] {
  const tags = cell.metadata?.tags;
  return Array.isArray(tags) ? tags.map(String) : [];
}

/** Text a cell wrote on one stream. */
export function streamText(cell: NotebookCell, stream: "stdout" | "stderr"): string {
  return (cell.outputs ?? [])
    .filter((o) => o.output_type === "stream" && o.name === stream)
    .map((o) => (Array.isArray(o.text) ? o.text.join("") : String(o.text ?? "")))
    .join("");
}

export interface TodoCell {
  index: number;
  name: string;
  source: string;
}

/** The TODO cells (tag "todo"), named by metadata.todo (else "cell-<index>"). */
export function todoCells(nb: Notebook): TodoCell[] {
  return nb.cells
    .map((c, index) => ({ c, index }))
    .filter(({ c }) => c.cell_type === "code" && cellTags(c).includes("todo"))
    .map(({ c, index }) => ({ index, name: typeof c.metadata.todo === "string" ? c.metadata.todo : `cell-${index}`, source: cellSource(c) }));
}

function codeCell(source: string, role: string): NotebookCell {
  return { cell_type: "code", source, metadata: { grader: role }, outputs: [], execution_count: null };
}

/** grader/dist/check-session.js, the in-kernel half of the grader (this file runs from grader/src or grader/dist). */
export function sessionModule(): string {
  return path.resolve(__dirname, "../dist/check-session.js");
}

export interface GradedNotebook {
  notebook: Notebook;
  /** Cells [0, studentCells) are the student's. */
  studentCells: number;
  preambleIndex: number;
  /** cell index -> check id */
  checkCells: Map<number, string>;
}

/**
 * The grader's private notebook: the student's cells, the preamble (session and kernel setup), then one cell per
 * check that calls the student's code: its kernel part and the calls the judge sent (`calls`, by check id). The
 * nonce appears only in the preamble; no reference, tolerance or verdict is in any cell (the judge keeps them).
 */
export function buildGradedNotebook(student: Notebook, checks: ExerciseChecks,
  run: { nonce: string; calls: Record<string, KernelCall[]>; /** where the kernel finds check-session.js (default: the kit's) */ session?: string }): GradedNotebook {
  const cells: NotebookCell[] = student.cells.map((c) => ({
    cell_type: c.cell_type,
    source: cellSource(c),
    metadata: { ...(c.metadata ?? {}) },
    ...(c.cell_type === "code" ? { outputs: [], execution_count: null } : {}),
  }));
  const studentCells = cells.length;
  const config: GradeSessionConfig = { nonce: run.nonce, exercise: checks.exercise };
  // tslab mangles identifiers that start with "__"; "$" keeps the grader's names clear of the student's.
  // The session comes from the grader's own build by its path: kernel-lib does not export it, and the work
  // folder's node_modules need not know the grader.
  const preamble = [
    `import * as $gradeTf from "@tensorflow/tfjs";`,
    `import * as $gradeLib from "kernel-lib";`,
    `import { GradeSession as $GradeSession } from ${JSON.stringify(run.session ?? sessionModule())};`,
    `await $gradeLib.initBackend();`,
    `const $grade = new $GradeSession(${JSON.stringify(config)}, $gradeTf, $gradeLib);`,
    checks.kernelSetup ? `await $grade.setup(async (tf, lib) => {\n${checks.kernelSetup}\n});` : "",
    `console.log("grading ${checks.exercise}: ${checks.checks.length} hidden checks");`,
  ].filter(Boolean).join("\n");
  cells.push(codeCell(preamble, "preamble"));
  const preambleIndex = cells.length - 1;
  const checkCells = new Map<number, string>();
  for (const c of checks.checks) {
    const calls = run.calls[c.id] ?? [];
    if (calls.length === 0) continue;
    const src = `// hidden check "${c.id}": the student's outputs for the grader's judge\nawait $grade.run(${JSON.stringify(c.id)}, ${JSON.stringify(JSON.stringify(calls))}, async (k) => {\nconst tf = $gradeTf; const lib = $gradeLib;\n${c.kernel}\n});`;
    cells.push(codeCell(src, `check:${c.id}`));
    checkCells.set(cells.length - 1, c.id);
  }
  const notebook: Notebook = {
    cells,
    metadata: {
      kernelspec: { name: "tslab", display_name: "TypeScript", language: "typescript" },
      language_info: { name: "typescript" },
    },
    nbformat: 4,
    nbformat_minor: 4,
  };
  return { notebook, studentCells, preambleIndex, checkCells };
}

/**
 * Things in the student's cells a teacher should look at (not scored): the grader's names, patching of prototypes,
 * globals, console or stdout, code built at run time (eval, dynamic require/import with a built name), reads of
 * /proc, of absolute paths or of the file system, processes. Static: a determined cheat can hide from it, which is
 * why the verdicts do not depend on anything in the kernel; it tells the teacher where to look.
 */
export function suspiciousCode(nb: Notebook): string[] {
  const rules: [RegExp, string][] = [
    [/@@GRADE|@@JUDGE/, "prints grader lines (@@GRADE)"],
    [/\$grade|GradeSession|GradeContext|check-session|grader\/dist|\bJudge\b/, "refers to the grader"],
    [/process\.stdout\.write\s*=|\bstdout\b[^;\n]*\.\s*write\s*=(?![=>])|console\.(log|info|error)\s*=|defineProperty\(\s*(console|process)/, "replaces console or stdout"],
    [/\.\s*prototype\b|\[\s*["'`]prototype["'`]\s*\]|setPrototypeOf|__proto__/, "patches a prototype"],
    [/\b(globalThis|global)\s*(\.\s*\w+|\[[^\]]*\])\s*=(?![=>])|Reflect\.(set|defineProperty)\s*\(/, "sets globals or properties by reflection"],
    [/(^|[;{}])\s*(tf|lib|kit|kernelLib)\s*\.\s*\w+\s*=(?![=>])/m, "replaces a function of tfjs or the kit"],
    [/\brequire\s*\(\s*(?!["'][^"'`$]*["']\s*\))|\bimport\s*\(\s*(?!["'][^"'`$]*["']\s*\))/, "requires or imports a module by a name built at run time"],
    [/\beval\s*\(|\bnew\s+Function\s*\(|\bFunction\s*\(\s*["'`]|vm\.run|runInContext/, "runs code built from strings (eval, Function)"],
    [/\/proc\b/, "reads /proc"],
    [/["'`]\/(etc|root|home|tmp|proc|sys|work|var|usr|opt|mnt|srv)\b/, "uses absolute paths"],
    [/["'](node:)?fs(\/promises)?["']|readFileSync|readdirSync|writeFileSync|createReadStream/, "uses the file system"],
    [/process\.exit|process\.kill|child_process|execSync|spawnSync|\bspawn\s*\(/, "exits the kernel or starts processes"],
    [/checks\.ts|exercises\/checks|solutions\//, "mentions the hidden checks' or the solutions' files"],
  ];
  const found: string[] = [];
  nb.cells.forEach((c, i) => {
    if (c.cell_type !== "code") return;
    const src = cellSource(c);
    for (const [re, what] of rules) if (re.test(src)) found.push(`code cell ${i} ${what}`);
  });
  return found;
}
