import { initBackend } from "../src/runtime/backend.js";

// Tests use wasm on one thread unless told otherwise (the fallback order and the threaded build are
// tested separately, in child processes), so results do not depend on the machine's load.
process.env.TFJS_WASM_THREADS ??= "1";
await initBackend({ prefer: (process.env.TFJS_BACKEND as "wasm" | "cpu" | "tensorflow") ?? "wasm" });
