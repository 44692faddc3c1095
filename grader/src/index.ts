// The grader's API (what scripts/grade.mjs and the grader's tests use): re-exports only. Teachers' tool; kernel-lib
// does not export it and students never import it.
export * from "./checks-file.js";
export * from "./check-session.js";
export * from "./graded-notebook.js";
export * from "./execute.js";
export * from "./score.js";
export * from "./report.js";
export * from "./grade.js";
export * from "./judge.js";
export * from "./judge-process.js";
export * from "./wire.js";
export * from "./sandbox.js";
