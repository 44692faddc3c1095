import { registerKernel } from "./jupyter-env.mjs";
console.log(`tslab kernel registered in ${registerKernel()}`);
