import { initBackend } from "../src/runtime/backend.js";

// Tests use wasm unless TFJS_BACKEND says otherwise (the fallback order is tested separately).
await initBackend({ prefer: (process.env.TFJS_BACKEND as "wasm" | "cpu" | "tensorflow") ?? "wasm" });
