// The judge's process (node grader/dist/judge-cli.js), started by the grader for one submission, in the kit's
// exercises/ folder (so the checks' "../datasets/..." paths are the kit's own), as the grader's user, never reachable
// from the student's kernel. JSON lines on stdin and stdout:
//   in  {"checksFile", "checksText", "seed", "todo", "starter"} -> out @@JUDGE {"calls": {checkId: KernelCall[]}}
//   in  {"answers": {checkId: KernelAnswer[]}}    -> out @@JUDGE {"verdicts": {checkId: Verdict}}
//   any failure                                   -> out @@JUDGE {"error": "..."} and exit 1
// Other lines on stdout (the checks' own console.log) are not the protocol's.
import * as readline from "node:readline";
import * as kit from "kernel-lib";
import { parseChecksFile } from "./checks-file.js";
import { Judge } from "./judge.js";

export const JUDGE_MARKER = "@@JUDGE";

function say(v: unknown): void {
  process.stdout.write(`\n${JUDGE_MARKER} ${JSON.stringify(v)}\n`);
}

async function main(): Promise<void> {
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  const next = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next();
    if (r.done) throw new Error("the grader closed the judge's input");
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  const job = await next();
  await kit.initBackend();
  const judge = new Judge(parseChecksFile(String(job.checksText), String(job.checksFile)), {
    seed: Number(job.seed), todo: (job.todo ?? {}) as Record<string, string>, starter: (job.starter ?? {}) as Record<string, string>, lib: kit,
  });
  say({ calls: await judge.prepare() });
  const answers = await next();
  say({ verdicts: await judge.finish((answers.answers ?? {}) as Parameters<Judge["finish"]>[0]) });
}

if (require.main === module) {
  main().then(
    () => process.exit(0),
    (e) => {
      say({ error: e instanceof Error ? e.message : String(e) });
      process.exit(1);
    },
  );
}
