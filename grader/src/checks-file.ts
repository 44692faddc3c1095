// The hidden checks of one exercise: exercises/checks/NN-name.checks.ts. A TypeScript file cut into cells by
// directive lines (comments, so the file stays readable and editor-highlighted):
//   //@@ exercise 01-ddpm-step            the exercise notebook it grades (its file name without .ipynb)
//   //@@ data datasets/sd-tiny-random     a folder of the kit the notebook reads (copied into each work folder)
//   //@@ timeout 300                      seconds for the whole notebook (default: the grader's)
//   //@@ setup                            code run once before the checks; it ends with `return { helpers }`,
//                                         which checks reach as `h` (the code is the body of an async function);
//                                         it must not name the student's functions (if one were missing, the
//                                         setup would not compile and every check would fail with it)
//   //@@ check <id> <points> <title>      one check: the body of `async (g) => CheckResult`, in its own cell;
//                                         `g` is a GradeContext, `tf` and `lib` (the kit) are in scope
// Text before the first directive is a comment for teachers and is not run.
import * as fs from "node:fs";

export interface HiddenCheck {
  id: string;
  points: number;
  title: string;
  /** TypeScript: the body of an async function of `g` returning a CheckResult. */
  body: string;
  /** 1-based line of its directive in the checks file. */
  line: number;
}

export interface ExerciseChecks {
  file: string;
  exercise: string;
  data: string[];
  timeoutSeconds: number | null;
  setup: string;
  checks: HiddenCheck[];
}

export class ChecksFileError extends Error {
  constructor(file: string, line: number, what: string) {
    super(`${file}:${line}: ${what}`);
    this.name = "ChecksFileError";
  }
}

const ID = /^[a-z0-9][a-z0-9-]*$/;

/** Parses the text of a checks file (see the top of this file for the format). */
export function parseChecksFile(text: string, file = "<checks>"): ExerciseChecks {
  const out: ExerciseChecks = { file, exercise: "", data: [], timeoutSeconds: null, setup: "", checks: [] };
  let current: { kind: "none" | "setup" | "check"; lines: string[]; check?: HiddenCheck } = { kind: "none", lines: [] };
  let sawSetup = false;
  const flush = () => {
    const body = current.lines.join("\n").replace(/^\s*\n/, "").trimEnd();
    if (current.kind === "setup") out.setup = body;
    if (current.kind === "check") {
      if (!body.trim()) throw new ChecksFileError(file, current.check!.line, `check "${current.check!.id}" has no code`);
      current.check!.body = body;
      out.checks.push(current.check!);
    }
  };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const m = /^\/\/@@\s+(\w+)\s*(.*)$/.exec(raw);
    if (!m) {
      current.lines.push(raw);
      return;
    }
    const [, kind, rest] = m;
    if (kind === "exercise") {
      if (!/^\d\d-[a-z0-9-]+$/.test(rest.trim())) throw new ChecksFileError(file, line, `exercise name "${rest.trim()}" should look like 01-ddpm-step`);
      out.exercise = rest.trim();
    } else if (kind === "data") {
      const p = rest.trim();
      if (!p || p.startsWith("/") || p.split("/").includes("..")) throw new ChecksFileError(file, line, `data "${p}" must be a folder inside the kit (relative, no "..")`);
      out.data.push(p);
    } else if (kind === "timeout") {
      const s = Number(rest.trim());
      if (!(s > 0)) throw new ChecksFileError(file, line, `timeout "${rest.trim()}" must be a positive number of seconds`);
      out.timeoutSeconds = s;
    } else if (kind === "setup" || kind === "check") {
      flush();
      if (kind === "setup") {
        if (sawSetup) throw new ChecksFileError(file, line, "only one //@@ setup section is allowed");
        if (out.checks.length > 0) throw new ChecksFileError(file, line, "//@@ setup must come before the first //@@ check");
        sawSetup = true;
        current = { kind: "setup", lines: [] };
        return;
      }
      const cm = /^(\S+)\s+(\S+)\s+(.+)$/.exec(rest.trim());
      if (!cm) throw new ChecksFileError(file, line, "write //@@ check <id> <points> <title>");
      const [, id, pts, title] = cm;
      if (!ID.test(id)) throw new ChecksFileError(file, line, `check id "${id}": use lower-case letters, digits and dashes`);
      if (out.checks.some((c) => c.id === id) || current.check?.id === id) throw new ChecksFileError(file, line, `check id "${id}" is used twice`);
      const points = Number(pts);
      if (!(points > 0)) throw new ChecksFileError(file, line, `check "${id}": points "${pts}" must be a positive number`);
      current = { kind: "check", lines: [], check: { id, points, title: title.trim(), body: "", line } };
    } else {
      throw new ChecksFileError(file, line, `unknown directive //@@ ${kind} (known: exercise, data, timeout, setup, check)`);
    }
  });
  flush();
  if (!out.exercise) throw new ChecksFileError(file, 1, "missing //@@ exercise <name>");
  if (out.checks.length === 0) throw new ChecksFileError(file, 1, "no //@@ check sections");
  if (out.setup && !/\breturn\b/.test(out.setup)) throw new ChecksFileError(file, 1, "the //@@ setup section must end with `return { ... }` (its helpers, `h` in the checks)");
  return out;
}

/** Reads and parses a checks file. */
export function readChecksFile(file: string): ExerciseChecks {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (e) {
    throw new Error(`cannot read the checks file ${file}: ${(e as Error).message}`);
  }
  return parseChecksFile(text, file);
}

/** Total points of an exercise. */
export function maxPoints(checks: ExerciseChecks): number {
  return checks.checks.reduce((s, c) => s + c.points, 0);
}
