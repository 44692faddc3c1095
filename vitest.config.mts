import { defineConfig } from "vitest/config";

// Unit and parity tests run on the wasm backend (the one every machine has); notebook tests
// execute lessons with real Jupyter and take longer.
export default defineConfig({
  test: {
    include: ["kernel-lib/test/**/*.test.ts", "notebooks/test/**/*.test.ts", "bench/test/**/*.test.ts"],
    setupFiles: ["kernel-lib/test/setup.ts"],
    // Limits catch hangs only, never slowness: a machine whose two cores are busy with other jobs runs the
    // suite 2-3x slower (.ci/run-under-load proves it passes so), so no test may come near its limit.
    testTimeout: 1_200_000,
    hookTimeout: 1_200_000,
    pool: "forks",
    maxWorkers: 2,
    reporters: process.env.CI ? ["default", ["json", { outputFile: "test-results/vitest.json" }]] : ["default"],
  },
});
