// The public API of kernel-lib (what notebooks import as "kernel-lib"): re-exports only.
export * from "./runtime/backend.js";
export * from "./io/safetensors.js";
export * from "./io/float16.js";
export * from "./io/config.js";
export * from "./random/generator.js";
export * from "./display/image.js";
export * from "./display/notebook.js";
export * from "./display/plot.js";
export * from "./display/progress.js";
export * from "./display/preview.js";
export * from "./display/show.js";
