import { configDefaults, defineConfig } from "vitest/config";

// Unit and parity tests run on the wasm backend (the one every machine has); notebook tests
// execute lessons with real Jupyter and take longer. The browser test (notebooks/test/browser.test.ts)
// is its own project with a later group order, so it starts after the lessons test has written the
// executed copies it opens (`npm run test:browser` runs it alone; it executes what is missing).
const browserTest = "notebooks/test/browser.test.ts";

export default defineConfig({
  test: {
    // Limits catch hangs only, never slowness: a machine whose two cores are busy with other jobs runs the
    // suite 2-3x slower (.ci/run-under-load proves it passes so), so no test may come near its limit.
    testTimeout: 1_200_000,
    hookTimeout: 1_200_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: process.env.CI ? ["default", ["json", { outputFile: "test-results/vitest.json" }]] : ["default"],
    projects: [
      {
        extends: true,
        test: {
          name: "kit",
          include: ["kernel-lib/test/**/*.test.ts", "grader/test/**/*.test.ts", "notebooks/test/**/*.test.ts", "bench/test/**/*.test.ts"],
          exclude: [...configDefaults.exclude, browserTest],
          setupFiles: ["kernel-lib/test/setup.ts"],
        },
      },
      { extends: true, test: { name: "browser", include: [browserTest], sequence: { groupOrder: 1 } } },
    ],
  },
});
