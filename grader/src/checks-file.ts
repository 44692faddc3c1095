// The hidden checks of one exercise: exercises/checks/NN-name.checks.ts. A TypeScript file cut into sections by
// directive lines (comments, so the file stays readable and editor-highlighted). Each check has two halves: the
// judge (run by the grader in its own process, judge.ts) and the kernel part (run in the student's kernel,
// check-session.ts), which only calls the student's functions on the inputs the judge sends.
//   //@@ exercise 01-ddpm-step            the exercise notebook it grades (its file name without .ipynb)
//   //@@ data datasets/sd-tiny-random     a folder of the kit the notebook reads (copied into each work folder)
//   //@@ timeout 300                      seconds for the whole notebook (default: the grader's)
//   //@@ setup                            JUDGE: code run once before the checks; it ends with `return { helpers }`,
//                                         which judge bodies reach as `h` (`g`, `tf`, `lib` are in scope)
//   //@@ kernel-setup                     KERNEL: code run once in the student's kernel before the check cells
//                                         (e.g. loading the pipeline the student's functions get); it ends with
//                                         `return { ... }`, reached as `k`; it must not name the student's functions
//   //@@ check <id> <points> <title>      JUDGE: the body of `async (g) => CheckResult`: draws inputs, asks for the
//                                         student's outputs with `g.student(what, entry, args)` (all calls before
//                                         the first await of one), computes references and compares
//   //@@ kernel                           KERNEL: that check's part, in its own cell: `return { entry: (a: any) =>
//                                         ..., ... }`, each entry calling the student's functions on the args `a`
//                                         (`k`, `tf`, `lib` in scope); it returns raw outputs, never a verdict
// Text before the first directive is a comment for teachers and is not run.
import * as fs from "node:fs";

export interface HiddenCheck {
  id: string;
  points: number;
  title: string;
  /** TypeScript, run by the judge: the body of an async function of `g` returning a CheckResult. */
  body: string;
  /** TypeScript, run in the kernel: the body of a function of `k` returning the check's entries ("" if none). */
  kernel: string;
  /** 1-based line of its directive in the checks file. */
  line: number;
}

export interface ExerciseChecks {
  file: string;
  exercise: string;
  data: string[];
  timeoutSeconds: number | null;
  setup: string;
  kernelSetup: string;
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
  const out: ExerciseChecks = { file, exercise: "", data: [], timeoutSeconds: null, setup: "", kernelSetup: "", checks: [] };
  let current: { kind: "none" | "setup" | "kernel-setup" | "check" | "kernel"; lines: string[]; check?: HiddenCheck; line?: number } = { kind: "none", lines: [] };
  const seen = new Set<string>();
  const flush = () => {
    const body = current.lines.join("\n").replace(/^\s*\n/, "").trimEnd();
    if (current.kind === "setup") out.setup = body;
    if (current.kind === "kernel-setup") {
      if (!/\breturn\b/.test(body)) throw new ChecksFileError(file, current.line!, "the //@@ kernel-setup section must end with `return { ... }` (`k` in the kernel parts)");
      out.kernelSetup = body;
    }
    if (current.kind === "check") {
      if (!body.trim()) throw new ChecksFileError(file, current.check!.line, `check "${current.check!.id}" has no code`);
      current.check!.body = body;
      out.checks.push(current.check!);
    }
    if (current.kind === "kernel") {
      if (!/\breturn\b/.test(body)) throw new ChecksFileError(file, current.line!, `the kernel part of check "${current.check!.id}" must \`return { entry: (a: any) => ..., ... }\``);
      current.check!.kernel = body;
    }
  };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = i + 1;
    const m = /^\/\/@@\s+([\w-]+)\s*(.*)$/.exec(raw);
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
    } else if (kind === "setup" || kind === "check" || kind === "kernel") {
      flush();
      if (kind === "setup") {
        if (seen.has("setup")) throw new ChecksFileError(file, line, "only one //@@ setup section is allowed");
        if (out.checks.length > 0) throw new ChecksFileError(file, line, "//@@ setup must come before the first //@@ check");
        seen.add("setup");
        current = { kind: "setup", lines: [], line };
        return;
      }
      if (kind === "kernel") {
        if (rest.trim() === "setup") throw new ChecksFileError(file, line, "write //@@ kernel-setup");
        const owner = current.kind === "check" ? current.check : undefined;
        if (!owner) throw new ChecksFileError(file, line, "//@@ kernel must follow the //@@ check whose kernel part it is");
        current = { kind: "kernel", lines: [], check: owner, line };
        return;
      }
      const cm = /^(\S+)\s+(\S+)\s+(.+)$/.exec(rest.trim());
      if (!cm) throw new ChecksFileError(file, line, "write //@@ check <id> <points> <title>");
      const [, id, pts, title] = cm;
      if (!ID.test(id)) throw new ChecksFileError(file, line, `check id "${id}": use lower-case letters, digits and dashes`);
      if (out.checks.some((c) => c.id === id) || current.check?.id === id) throw new ChecksFileError(file, line, `check id "${id}" is used twice`);
      const points = Number(pts);
      if (!(points > 0)) throw new ChecksFileError(file, line, `check "${id}": points "${pts}" must be a positive number`);
      current = { kind: "check", lines: [], check: { id, points, title: title.trim(), body: "", kernel: "", line } };
    } else if (kind === "kernel-setup") {
      flush();
      if (seen.has("kernel-setup")) throw new ChecksFileError(file, line, "only one //@@ kernel-setup section is allowed");
      if (out.checks.length > 0 || current.kind === "check") throw new ChecksFileError(file, line, "//@@ kernel-setup must come before the first //@@ check");
      seen.add("kernel-setup");
      current = { kind: "kernel-setup", lines: [], line };
    } else {
      throw new ChecksFileError(file, line, `unknown directive //@@ ${kind} (known: exercise, data, timeout, setup, kernel-setup, check, kernel)`);
    }
  });
  flush();
  if (!out.exercise) throw new ChecksFileError(file, 1, "missing //@@ exercise <name>");
  if (out.checks.length === 0) throw new ChecksFileError(file, 1, "no //@@ check sections");
  if (out.setup && !/\breturn\b/.test(out.setup)) throw new ChecksFileError(file, 1, "the //@@ setup section must end with `return { ... }` (its helpers, `h` in the checks)");
  for (const c of out.checks) {
    if (/\bg\.student\s*[(<]/.test(c.body) && !c.kernel) throw new ChecksFileError(file, c.line, `check "${c.id}" calls g.student but has no //@@ kernel part`);
  }
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
