// node bench/grade-times.mjs [--json=bench/results/grading.json] [--jobs=1]
// How long the autograder takes per notebook offline: grades every solution (full marks expected) and every
// untouched exercise with scripts/grade.mjs in one run, and writes per notebook the seconds, the score and the
// sandbox, with the machine's load. The budget (issue 15) is 30 s per notebook; this is where it is measured,
// never in a timed test.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { spawnSync, execSync } from "node:child_process";
import { fileURLToPath } from "node:url";

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const arg = (name, dflt) => process.argv.slice(2).find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? dflt;
const out = path.resolve(root, arg("json", "bench/results/grading.json"));
const jobs = arg("jobs", "1");

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "grade-times-"));
for (const who of ["solution", "exercise"]) {
  fs.mkdirSync(path.join(tmp, who));
  for (const f of fs.readdirSync(path.join(root, "exercises")).filter((f) => /^\d\d-.*\.ipynb$/.test(f))) {
    fs.copyFileSync(path.join(root, who === "solution" ? "solutions" : "exercises", f), path.join(tmp, who, f));
  }
}
const json = path.join(tmp, "r.json");
const load0 = os.loadavg()[0];
const t0 = Date.now();
const r = spawnSync(process.execPath, [path.join(root, "scripts/grade.mjs"), tmp, "--jobs", jobs, "--json", json, "--csv", path.join(tmp, "r.csv")], { cwd: root, encoding: "utf8" });
if (!fs.existsSync(json)) throw new Error(`grade.mjs failed (${r.status}): ${r.stderr.slice(-3000)}`);
const results = JSON.parse(fs.readFileSync(json, "utf8"));
const rows = results.map((x) => ({ who: x.student, exercise: x.exercise, seconds: x.seconds, total: x.total, max: x.max, status: x.status }));
const commit = execSync("git rev-parse --short HEAD", { cwd: root, encoding: "utf8" }).trim();
const report = {
  date: new Date().toISOString(), commit, jobs: Number(jobs), cpus: os.cpus().length, loadBefore: load0, loadAfter: os.loadavg()[0],
  wallSeconds: (Date.now() - t0) / 1000, sandbox: results[0]?.sandbox ?? null, rows,
};
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify(report, null, 2) + "\n");
console.log(`| exercise | solution (s) | score | untouched (s) | score |\n| --- | ---: | ---: | ---: | ---: |`);
for (const ex of [...new Set(rows.map((x) => x.exercise))].sort()) {
  const s = rows.find((x) => x.who === "solution" && x.exercise === ex), e = rows.find((x) => x.who === "exercise" && x.exercise === ex);
  console.log(`| ${ex} | ${s?.seconds.toFixed(1)} | ${s?.total} / ${s?.max} | ${e?.seconds.toFixed(1)} | ${e?.total} / ${e?.max} |`);
}
console.log(`\n${rows.length} notebooks in ${report.wallSeconds.toFixed(0)} s (jobs ${jobs}, load ${load0.toFixed(2)} -> ${report.loadAfter.toFixed(2)}); ${out}`);
fs.rmSync(tmp, { recursive: true, force: true });
