// Reading the kernel's answers out of the executed private notebook, and the score. A check's answers count only
// if they are a `@@GRADE <nonce> {...}` line in the output of that check's own cell, carry this run's nonce and the
// check's id, and appear once; the judge (judge.ts, the grader's process) turns them into a verdict, and its points
// are clamped here to the checks file's maximum. A check cell that printed no such line scores 0, with its stderr
// (a compile error, a timeout) as feedback. Lines printed anywhere else (the student's own cells) are ignored.
import type { ExerciseChecks } from "./checks-file.js";
import { GRADE_MARKER, type CheckLine } from "./check-session.js";
import type { KernelAnswer, Verdict } from "./judge.js";
import { type GradedNotebook, type Notebook, cellSource, cellTags, streamText } from "./graded-notebook.js";
import type { CellStatus, RunnerSummary } from "./execute.js";

export interface CheckOutcome {
  id: string;
  title: string;
  points: number;
  max: number;
  passed: boolean;
  feedback: string;
  /** the checks' own code failed: the grade is not trustworthy (the result's status says "error") */
  graderError?: boolean;
}

export interface CellError {
  cell: number;
  /** the TODO name when the cell is a TODO cell */
  todo: string | null;
  status: CellStatus;
  message: string;
}

/** Strips ANSI colours, node's stack frames and tslab's evalmachine echo from a cell's stderr. */
export function cleanStderr(text: string, maxLines = 12): string {
  // eslint-disable-next-line no-control-regex
  const lines = text.replace(/\u001b\[[0-9;]*m/g, "").split("\n");
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (/^\s+at /.test(l) || /^evalmachine\.<anonymous>:\d+$/.test(l)) continue;
    if (/^\s*\^+\s*$/.test(l)) continue;
    // the echoed source line before a caret
    if (i + 1 < lines.length && /^\s*\^+\s*$/.test(lines[i + 1])) continue;
    if (l.trim() === "" && (kept.length === 0 || kept[kept.length - 1] === "")) continue;
    kept.push(l);
  }
  while (kept.length && kept[kept.length - 1].trim() === "") kept.pop();
  return kept.slice(0, maxLines).join("\n");
}

const STATUS_WORDS: Record<string, string> = {
  timeout: "timed out (the cell ran past the time limit and was skipped)",
  dead: "killed the kernel (the kernel was restarted and the cell skipped)",
  "not-run": "did not run (the notebook's time was up)",
};

function lineFor(text: string, nonce: string, id: string): { line: CheckLine | null; count: number } {
  let found: CheckLine | null = null;
  let count = 0;
  const prefix = `${GRADE_MARKER} ${nonce} `;
  for (const l of text.split("\n")) {
    if (!l.startsWith(prefix)) continue;
    try {
      const v = JSON.parse(l.slice(prefix.length)) as CheckLine;
      if (v && v.id === id) {
        count++;
        found ??= v;
      }
    } catch {
      // not ours
    }
  }
  return { line: found, count };
}

/** Why a name the check needs is missing: the student cell that declares it failed, or no cell declares it. */
function whereDefined(executed: Notebook, built: GradedNotebook, status: Map<number, CellStatus>, name: string): string {
  const decl = new RegExp(`(function\\*?|class|const|let|var)\\s+${name.replace(/[$]/g, "\\$")}\\b`);
  for (let i = 0; i < built.studentCells; i++) {
    const cell = executed.cells[i];
    if (cell?.cell_type !== "code" || !decl.test(cellSource(cell))) continue;
    const st = status.get(i) ?? "not-run";
    if (st === "ok") continue;
    const todo = typeof cell.metadata.todo === "string" ? ` (TODO \`${cell.metadata.todo}\`)` : "";
    return `it is declared in code cell ${i}${todo}, which ${st === "error" ? "failed (see that cell's error below)" : STATUS_WORDS[st] ?? st}.`;
  }
  return "no cell declares it: keep the names the exercise gives.";
}

/** Each check cell's one answer line (checks whose cell printed none, or more than one, are left out). */
export function kernelAnswers(executed: Notebook, built: GradedNotebook, nonce: string): Map<string, { line: CheckLine | null; count: number }> {
  const out = new Map<string, { line: CheckLine | null; count: number }>();
  for (const [index, id] of built.checkCells) {
    const cell = executed.cells[index];
    out.set(id, cell ? lineFor(streamText(cell, "stdout"), nonce, id) : { line: null, count: 0 });
  }
  return out;
}

/** The answers to hand to the judge: one valid line per check, with answers as a list. */
export function answersForJudge(lines: Map<string, { line: CheckLine | null; count: number }>): Record<string, KernelAnswer[]> {
  const out: Record<string, KernelAnswer[]> = {};
  for (const [id, { line, count }] of lines) {
    if (line && count === 1 && line.setupError === undefined && Array.isArray(line.answers)) out[id] = line.answers;
  }
  return out;
}

/** The outcome of every check, in the checks file's order, from the judge's verdicts and the kernel's lines. */
export function scoreChecks(executed: Notebook, built: GradedNotebook, checks: ExerciseChecks, summary: RunnerSummary, nonce: string,
  verdicts: Record<string, Verdict>): CheckOutcome[] {
  const status = new Map(summary.cells.map((c) => [c.index, c.status]));
  const preamble = executed.cells[built.preambleIndex];
  const preambleErr = preamble ? cleanStderr(streamText(preamble, "stderr")) : "";
  const byId = new Map([...built.checkCells].map(([index, id]) => [id, index]));
  const lines = kernelAnswers(executed, built, nonce);
  return checks.checks.map((c) => {
    const index = byId.get(c.id);
    const base = { id: c.id, title: c.title, max: c.points };
    const verdict = verdicts[c.id];
    const clamp = (v: Verdict) => {
      const points = v.passed ? c.points : Math.max(0, Math.min(c.points, Number(v.points ?? 0) || 0));
      return { ...base, points, passed: v.passed === true && points === c.points, feedback: v.feedback, ...(v.graderError ? { graderError: true } : {}) };
    };
    if (index === undefined) return verdict ? clamp(verdict) : { ...base, points: 0, passed: false, feedback: "The judge gave no verdict.", graderError: true };
    const { line, count } = lines.get(c.id) ?? { line: null, count: 0 };
    if (line && count === 1 && line.setupError !== undefined) {
      return { ...base, points: 0, passed: false, feedback: `The checks' setup failed in your notebook's kernel (${line.setupError}), so this check could not call your code.` };
    }
    if (line && count === 1 && verdict) return clamp(verdict);
    if (count > 1) return { ...base, points: 0, passed: false, feedback: `The check's answer line appeared ${count} times: something in the notebook printed grader lines. Scored 0; ask your teacher.` };
    const cell = executed.cells[index];
    const st = status.get(index) ?? "not-run";
    const err = cell ? cleanStderr(streamText(cell, "stderr")) : "";
    let feedback: string;
    if (st !== "ok" && st !== "error") feedback = `The check ${STATUS_WORDS[st] ?? st}.`;
    else if (err && /\$grade|\$setup/.test(err)) feedback = `The grader's preamble failed, so the check could not run (not your fault: tell your teacher):\n${preambleErr || err}`;
    else if (err) {
      const missing = /Cannot find name '([^']+)'/.exec(err);
      feedback = missing
        ? `The check could not find \`${missing[1]}\`: ${whereDefined(executed, built, status, missing[1])}\n${err}`
        : /^\d+:\d+ - /m.test(err)
          ? `The check does not compile against your code (keep the function signatures the exercise gives):\n${err}`
          : `The check could not run:\n${err}`;
    } else if (preambleErr) feedback = `The grader's preamble failed:\n${preambleErr}`;
    else if (line && !verdict) feedback = "The judge could not read what your code returned.";
    else feedback = "The check printed no result.";
    return { ...base, points: 0, passed: false, feedback };
  });
}

/** Errors of the student's own cells (first lines of their stderr), for the report. */
export function studentCellErrors(executed: Notebook, built: GradedNotebook, summary: RunnerSummary): CellError[] {
  const out: CellError[] = [];
  for (const c of summary.cells) {
    if (c.index >= built.studentCells || c.status === "ok") continue;
    const cell = executed.cells[c.index];
    const todo = cell && cellTags(cell).includes("todo") && typeof cell.metadata.todo === "string" ? cell.metadata.todo : null;
    const message = c.status === "error" ? cleanStderr(streamText(cell, "stderr"), 6) : STATUS_WORDS[c.status] ?? c.status;
    out.push({ cell: c.index, todo, status: c.status, message });
  }
  return out;
}
