// npm run doctor: which tfjs backend runs and why, where models are cached, whether the Hub is used.
import { doctor } from "./backend.js";
import { hubCacheDir, isOfflineMode } from "../hub/index.js";

doctor().then(() => {
  console.log(`Hugging Face cache: ${hubCacheDir()}${isOfflineMode() ? " (HF_HUB_OFFLINE is set: the Hub is not contacted)" : ""}`);
});
