// The public API (src/index.ts, what "kernel-lib" exports): the names lessons, exercises, checks, scripts and a
// diffusers user rely on are there, by area, every model, scheduler and pipeline class among them; and a few
// internals (float32 emulation, kernel registries, file-format limits) are not. Tests reach internals by path.
import { describe, it, expect } from "vitest";
import * as api from "../src/index.js";
// Types in public signatures: removing one from index.ts fails `npm run typecheck` on this file.
import type {
  BackendReport,
  CheckResult,
  CompareOptions,
  DDPMPipelineOutput,
  HubOptions,
  LoadLoraOptions,
  MemoryPlan,
  PlannedCall,
  SchedulerClass,
  SchedulerMixin,
  StableDiffusionCallOptions,
  StableDiffusionOutput,
  UNet2DConditionConfig,
  DDPMTrainerOptions,
} from "../src/index.js";

export type PublicTypes = [BackendReport, CheckResult, CompareOptions, DDPMPipelineOutput, HubOptions, LoadLoraOptions,
  MemoryPlan, PlannedCall, SchedulerClass<SchedulerMixin>, StableDiffusionCallOptions, StableDiffusionOutput,
  UNet2DConditionConfig, DDPMTrainerOptions];

const MODELS = ["ModelMixin", "UNet2DModel", "UNet2DConditionModel", "AutoencoderKL", "Transformer2DModel", "CLIPTextModel"];
const SCHEDULERS = ["DDPMScheduler", "DDIMScheduler", "PNDMScheduler", "EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler",
  "LMSDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler", "LCMScheduler"];
const PIPELINES = ["DiffusionPipeline", "DDPMPipeline", "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline",
  "StableDiffusionInpaintPipeline"];

/** One or two names per area (plus every class above). */
const MUST_HAVE: Record<string, string[]> = {
  backend: ["initBackend", "doctor", "formatBackendReport", "resetBackend", "backendFault", "BackendFaultError", "wasmThreadsInUse",
    "setKeepPackedWeights"],
  io: ["loadSafetensors", "saveSafetensors", "SafetensorsError", "loadTorchBin", "TorchBinError", "readConfigFile", "ConfigError"],
  hub: ["hubFileDownload", "HubError", "HubOfflineError", "isOfflineMode"],
  random: ["Generator", "randnTensor"],
  nn: ["Module", "Parameter", "Conv2d", "Linear", "GroupNorm", "LayerNorm", "Embedding", "silu", "scaledDotProductAttention"],
  models: MODELS,
  tokenizers: ["CLIPTokenizer", "TokenizerLoadError"],
  schedulers: [...SCHEDULERS, "SchedulerMixin", "schedulerFromName", "getSchedulerClass", "UnsupportedSchedulerError"],
  pipelines: [...PIPELINES, "fromPretrainedOrOffline"],
  lora: ["LoraLayer", "addLoraAdapter", "saveLoraWeights", "explainLoraFile"],
  memory: ["enableModelCpuOffload", "cpuOffload", "chooseMemoryPlan", "MemoryPlanError", "memoryReport", "memoryBudget"],
  training: ["DDPMTrainer", "TextToImageTrainer", "AdamW", "EMAModel", "lrFactor", "ddpmLoss"],
  display: ["showImages", "imageGrid", "plot", "ProgressBar", "displayMarkdown"],
  utils: ["compareTensors", "printCheck", "ArgumentError", "NonFiniteError"],
};

/** Helpers behind the API: tests import them from their files. */
const INTERNALS = ["fmaF32", "npArange", "linspaceF32", "betasForAlphaBar", "karrasSigmas", "checkShape", "asSample",
  "WASM_KERNELS", "registerWasmKernels", "wasmKernelsRegistered", "MAX_VIEW_COPIES", "MAX_INFLATE_RATIO", "int64ToInt32",
  "setModelLoadPolicy", "applyLoraScale", "COMPONENT_CLASSES", "markdownBundle", "checkInteger", "findCudaLibraries"];

describe("public API", () => {
  const exported = new Set(Object.keys(api));

  for (const [area, names] of Object.entries(MUST_HAVE)) {
    it(`exports the ${area} names`, () => {
      expect(names.filter((n) => !exported.has(n))).toEqual([]);
    });
  }

  it("every model, scheduler and pipeline is a class", () => {
    for (const n of [...MODELS, ...SCHEDULERS, ...PIPELINES]) expect(typeof (api as Record<string, unknown>)[n], n).toBe("function");
  });

  it("every registered scheduler is exported under its diffusers name", () => {
    const registered = api.registeredSchedulers();
    expect(registered.length).toBe(SCHEDULERS.length);
    for (const n of registered) expect((api as Record<string, unknown>)[n], n).toBe(api.getSchedulerClass(n));
  });

  it("keeps internals internal", () => {
    expect(INTERNALS.filter((n) => exported.has(n))).toEqual([]);
  });

  it("stays curated (a few hundred internals were dropped; the list grows on purpose only)", () => {
    expect(exported.size).toBeLessThan(200);
  });
});
