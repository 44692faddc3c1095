// Finding model files: local folders, the Python-compatible Hugging Face cache, the Hub.
export { hubFileDownload, tryHubFile } from "./resolve.js";
export { listRepoFiles } from "./list.js";
export { isLocalPath, validateRepoId } from "./repo-id.js";
export { hubCacheDir, isOfflineMode } from "./env.js";
export { resetHubSession } from "./session.js";
export type { HubOptions, HubProgress } from "./options.js";
export * from "./errors.js";
