// Every scheduler, imported once so each registers itself (fromConfig swaps, model_index.json loading,
// schedulerFromName), and re-exported.
export * from "./scheduling-utils.js";
export * from "./scheduling-ddpm.js";
export * from "./scheduling-ddim.js";
export * from "./scheduling-pndm.js";
export * from "./scheduling-euler-discrete.js";
export * from "./scheduling-euler-ancestral-discrete.js";
export * from "./scheduling-lms-discrete.js";
export * from "./scheduling-heun-discrete.js";
export * from "./scheduling-dpmsolver-multistep.js";
export * from "./scheduling-unipc-multistep.js";
export * from "./scheduling-lcm.js";
export * from "./scheduler-names.js";
