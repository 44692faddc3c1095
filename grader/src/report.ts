// What the grader writes: a feedback report for the student (Markdown or HTML), and a class summary (CSV).
import type { GradeResult } from "./grade.js";

const pct = (r: GradeResult): string => (r.max > 0 ? `${Math.round((1000 * r.total) / r.max) / 10}%` : "-");
const num = (x: number): string => String(Math.round(x * 100) / 100);

/** The student's feedback report in Markdown. */
export function formatMarkdown(r: GradeResult): string {
  const out: string[] = [];
  out.push(`# Feedback: ${r.exercise || r.notebook}`, "");
  out.push(`**Score: ${num(r.total)} / ${num(r.max)}** (${pct(r)})${r.status === "ok" ? "" : ` — ${r.status}${r.error ? `: ${r.error}` : ""}`}`, "");
  out.push(`Notebook \`${r.notebook}\`${r.student ? `, student \`${r.student}\`` : ""}; graded ${r.gradedAt} in ${num(r.seconds)} s; random seed ${r.seed} (the checks draw fresh inputs every run).${r.sandbox ? ` Sandbox: ${r.sandbox}.` : ""}`, "");
  if (r.checks.length) {
    out.push("| | check | points |", "|---|---|---|");
    for (const c of r.checks) out.push(`| ${c.passed ? "✅" : c.points > 0 ? "🟡" : "❌"} | ${c.title} (\`${c.id}\`) | ${num(c.points)} / ${num(c.max)} |`);
    out.push("");
  }
  const todo = r.checks.filter((c) => !c.passed);
  if (todo.length) {
    out.push("## What to fix", "");
    for (const c of todo) out.push(`### ${c.title} — ${num(c.points)} / ${num(c.max)}`, "", "```text", c.feedback, "```", "");
  }
  if (r.cellErrors.length) {
    out.push("## Cells of your notebook that failed", "");
    for (const e of r.cellErrors) {
      out.push(`* code cell ${e.cell}${e.todo ? ` (TODO \`${e.todo}\`)` : ""}: ${e.status}`, "", "  ```text", ...e.message.split("\n").map((l) => `  ${l}`), "  ```", "");
    }
  }
  const passed = r.checks.filter((c) => c.passed);
  if (passed.length) {
    out.push("## Passed", "");
    for (const c of passed) out.push(`* ${c.title}: ${c.feedback.split("\n")[0]}`);
    out.push("");
  }
  if (r.warnings.length) {
    out.push("## Notes for the teacher", "", ...r.warnings.map((w) => `* ${w}`), "");
  }
  return out.join("\n");
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}

/** The same report as a standalone HTML page. */
export function formatHtml(r: GradeResult): string {
  const rows = r.checks
    .map((c) => `<tr class="${c.passed ? "ok" : c.points > 0 ? "part" : "bad"}"><td>${c.passed ? "✔" : c.points > 0 ? "◐" : "✘"}</td><td>${esc(c.title)} <code>${esc(c.id)}</code></td><td>${num(c.points)} / ${num(c.max)}</td></tr>`)
    .join("\n");
  const fixes = r.checks
    .filter((c) => !c.passed)
    .map((c) => `<h3>${esc(c.title)} — ${num(c.points)} / ${num(c.max)}</h3>\n<pre>${esc(c.feedback)}</pre>`)
    .join("\n");
  const cells = r.cellErrors
    .map((e) => `<li>code cell ${e.cell}${e.todo ? ` (TODO <code>${esc(e.todo)}</code>)` : ""}: ${esc(e.status)}<pre>${esc(e.message)}</pre></li>`)
    .join("\n");
  const warn = r.warnings.map((w) => `<li>${esc(w)}</li>`).join("\n");
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>Feedback: ${esc(r.exercise || r.notebook)}</title>
<style>body{font-family:system-ui,sans-serif;max-width:52em;margin:2em auto;padding:0 1em;line-height:1.45}
table{border-collapse:collapse}td,th{padding:.3em .7em;border-bottom:1px solid #ddd}tr.ok td:first-child{color:#1a7f37}
tr.part td:first-child{color:#9a6700}tr.bad td:first-child{color:#cf222e}pre{background:#f6f8fa;padding:.7em;white-space:pre-wrap}
.score{font-size:1.4em}</style></head><body>
<h1>Feedback: ${esc(r.exercise || r.notebook)}</h1>
<p class="score"><b>Score: ${num(r.total)} / ${num(r.max)}</b> (${pct(r)})${r.status === "ok" ? "" : ` — ${esc(r.status)}${r.error ? `: ${esc(r.error)}` : ""}`}</p>
<p>Notebook <code>${esc(r.notebook)}</code>${r.student ? `, student <code>${esc(r.student)}</code>` : ""}; graded ${esc(r.gradedAt)} in ${num(r.seconds)} s; random seed ${r.seed}.${r.sandbox ? ` Sandbox: ${esc(r.sandbox)}.` : ""}</p>
<table><tr><th></th><th>check</th><th>points</th></tr>
${rows}
</table>
${fixes ? `<h2>What to fix</h2>\n${fixes}` : ""}
${cells ? `<h2>Cells of your notebook that failed</h2><ul>${cells}</ul>` : ""}
${warn ? `<h2>Notes for the teacher</h2><ul>${warn}</ul>` : ""}
</body></html>
`;
}

/** One CSV cell: quoted where needed; text a spreadsheet would run as a formula (=, +, -, @, tab, CR) starts with '. */
function csvField(v: string | number): string {
  let s = String(v);
  if (typeof v === "string" && /^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\n\r]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

export const CSV_COLUMNS = ["student", "notebook", "exercise", "points", "max", "percent", "status", "seconds", "failed_checks", "notes"] as const;

/** One row per graded notebook. */
export function formatCsv(results: GradeResult[]): string {
  const rows = results.map((r) =>
    [
      r.student,
      r.notebook,
      r.exercise,
      num(r.total),
      num(r.max),
      r.max > 0 ? num((100 * r.total) / r.max) : "0",
      r.status,
      num(r.seconds),
      r.checks.filter((c) => !c.passed).map((c) => c.id).join(" "),
      [...(r.error ? [`${r.status}: ${r.error}`] : []), ...r.warnings].join("; "),
    ].map(csvField).join(","),
  );
  return [CSV_COLUMNS.join(","), ...rows].join("\n") + "\n";
}
