// The public API of kernel-lib (what notebooks, exercises, checks, scripts and bench import as "kernel-lib"):
// re-exports only, by area, each name listed. Helpers behind these (float32 emulation, betas and sigma tables,
// argument checks, kernel registries, file-format details) stay internal; tests import them by their paths.
// test/public-api.test.ts keeps a must-have list and a few internals that must not leak.

// ---- backend / runtime: which tfjs backend runs, its report and faults, wasm threads and packed weights
export {
  initBackend,
  backendReport,
  formatBackendReport,
  doctor,
  type BackendChoice,
  type BackendAttempt,
  type BackendReport,
  type InitBackendOptions,
  type Loader,
} from "./runtime/backend.js";
export { resetBackend } from "./runtime/reset-backend.js";
export {
  backendFault,
  BackendFaultError,
  BackendOutOfMemoryError,
  type BackendFault,
} from "./runtime/backend-fault.js";
export { wasmThreadsInUse, type WasmThreadsStatus, type WasmThreadsChoice } from "./runtime/wasm-threads.js";
// setKeepPackedWeights: weights + one layer of memory instead of cached packed copies (lessons, bench);
// unregisterWasmTrainingKernels: tfjs' own conv gradients, for bench/run.mjs's before/after
export {
  setKeepPackedWeights,
  getKeepPackedWeights,
  unregisterWasmTrainingKernels,
} from "./runtime/wasm/index.js";
export { prepareTfjsForTraining } from "./runtime/gradient-fixes.js";

// ---- io: safetensors, torch .bin, config.json, float16
export {
  loadSafetensors,
  saveSafetensors,
  serializeSafetensors,
  readSafetensorsHeader,
  SafetensorsError,
  type SafetensorsDtype,
  type SafetensorsHeader,
  type TensorInfo,
  type RawTensor,
  type SaveDtype,
  type Saveable,
} from "./io/safetensors.js";
export { loadTorchBin, TorchBinError } from "./io/torch-bin.js";
export { readConfigFile, ConfigError, type Config, type ConfigSpec } from "./io/config.js";
export { float32ToFloat16, float16ToFloat32, bfloat16ToFloat32 } from "./io/float16.js";

// ---- hub: model id or local folder -> files (the Python cache layout), offline mode, the errors to catch
export {
  hubFileDownload,
  tryHubFile,
  listRepoFiles,
  isLocalPath,
  validateRepoId,
  hubCacheDir,
  isOfflineMode,
  resetHubSession,
  HubError,
  InvalidRepoIdError,
  LocalFolderNotFoundError,
  HubEntryNotFoundError,
  HubRepoNotFoundError,
  HubRevisionNotFoundError,
  HubAuthError,
  HubHttpError,
  HubOfflineError,
  type HubOptions,
  type HubProgress,
} from "./hub/index.js";

// ---- random: torch's CPU generator, diffusers' randn_tensor
export { Generator, randnTensor, manualSeed, type GeneratorState, type TensorOfShape } from "./random/generator.js";

// ---- nn: torch.nn on plain tfjs ops
export {
  Module,
  ModuleList,
  Parameter,
  type ParamInit,
  type ParamLayout,
  type InitMode,
  type HostArray,
  type StateDictProblem,
} from "./nn/module.js";
export { Conv2d, type Conv2dPadding } from "./nn/conv2d.js";
export { Linear } from "./nn/linear.js";
export { GroupNorm, LayerNorm } from "./nn/normalization.js";
export { Embedding } from "./nn/embedding.js";
export { silu, gelu, geluTanh, quickGelu, mish, getActivation, type Activation } from "./nn/activations.js";
export type { OutputHook } from "./nn/output-hook.js";
export { scaledDotProductAttention } from "./nn/scaled-dot-product-attention.js";

// ---- models: diffusers' (and transformers' CLIP) model classes, their configs, call options and outputs
export {
  ModelMixin,
  type ModelClass,
  type ModelLoadOptions,
  type FromConfigOptions,
  type ModelConfigOptions,
  type WeightPlacement,
} from "./models/modeling-utils.js";
export { DigitClassifier, type DigitClassifierConfig } from "./models/digit-classifier.js";
export { UNet2DModel, type UNet2DConfig, type UNet2DForwardOptions, type TimestepInput } from "./models/unet-2d.js";
export {
  UNet2DConditionModel,
  type UNet2DConditionConfig,
  type UNet2DConditionForwardOptions,
} from "./models/unet-2d-condition.js";
export {
  AutoencoderKL,
  type AutoencoderKLConfig,
  type AutoencoderKLForwardOptions,
  type VaeCallOptions,
} from "./models/autoencoder-kl.js";
export type { DiagonalGaussianDistribution, Intermediates } from "./models/vae.js";
export {
  Transformer2DModel,
  type Transformer2DConfig,
  type Transformer2DForwardOptions,
} from "./models/transformer-2d.js";
export {
  CLIPTextModel,
  type CLIPTextConfig,
  type CLIPTextForwardOptions,
  type CLIPTextModelOutput,
  type TokenIdsInput,
} from "./models/clip-text-model.js";
export type { AttentionSliceSize } from "./models/attention-slicing.js";

// ---- tokenizers: transformers' CLIPTokenizer
export {
  CLIPTokenizer,
  TokenizerLoadError,
  type AddedToken,
  type CLIPTokenizerInit,
  type CLIPFromPretrainedOptions,
  type EncodeOptions,
  type Encoding,
  type DecodeOptions,
  type TextCleaning,
} from "./tokenizers/clip.js";

// ---- schedulers: the ten schedulers (each registered on load), their configs and outputs, lookup by name
export {
  SchedulerMixin,
  KarrasDiffusionSchedulers,
  registerScheduler,
  getSchedulerClass,
  registeredSchedulers,
  DDPMScheduler,
  DDIMScheduler,
  PNDMScheduler,
  EulerDiscreteScheduler,
  EulerAncestralDiscreteScheduler,
  LMSDiscreteScheduler,
  HeunDiscreteScheduler,
  DPMSolverMultistepScheduler,
  UniPCMultistepScheduler,
  LCMScheduler,
  UnsupportedSchedulerError,
  findSchedulerName,
  supportedSchedulerNames,
  schedulerFromName,
  type IndexedSchedulerMixin,
  type SigmaDiscreteScheduler,
  type SchedulerClass,
  type SchedulerOutput,
  type SchedulerOutputWithOriginal,
  type SchedulerFromPretrainedOptions,
  type SchedulerNameEntry,
  type KarrasDiffusionSchedulerName,
  type PredictionType,
  type AlphaTransformType,
  type BetaSchedule,
  type Timestep,
  type TimestepSpacing,
  type NoiseOptions,
  type DDPMVarianceType,
  type DDPMSchedulerConfig,
  type DDPMSchedulerOutput,
  type DDPMStepOptions,
  type DDIMSchedulerConfig,
  type DDIMSchedulerOutput,
  type DDIMStepOptions,
  type PNDMSchedulerConfig,
  type PNDMSchedulerOutput,
  type EulerInterpolationType,
  type EulerDiscreteSchedulerConfig,
  type EulerDiscreteSchedulerOutput,
  type EulerDiscreteStepOptions,
  type EulerAncestralDiscreteSchedulerConfig,
  type EulerAncestralDiscreteSchedulerOutput,
  type EulerAncestralDiscreteStepOptions,
  type LMSDiscreteSchedulerConfig,
  type LMSDiscreteSchedulerOutput,
  type LMSDiscreteStepOptions,
  type HeunBetaSchedule,
  type HeunDiscreteSchedulerConfig,
  type HeunDiscreteSchedulerOutput,
  type DPMAlgorithmType,
  type DPMSolverType,
  type DPMFinalSigmasType,
  type DPMSolverMultistepSchedulerConfig,
  type DPMSolverMultistepStepOptions,
  type UniPCSolverType,
  type UniPCMultistepSchedulerConfig,
  type LCMSchedulerConfig,
  type LCMSchedulerOutput,
  type LCMSetTimestepsOptions,
} from "./schedulers/index.js";

// ---- pipelines: DiffusionPipeline (model_index.json -> class) and each pipeline, its call options and output
export { DiffusionPipeline, type AnyPipeline } from "./pipelines/diffusion-pipeline.js";
export { DiffusionPipelineBase, type OutputType } from "./pipelines/pipeline-utils.js";
export type { LoadOptions, ModelIndex } from "./pipelines/pipeline-loading.js";
export { DDPMPipeline, type DDPMPipelineCallOptions, type DDPMPipelineOutput } from "./pipelines/pipeline-ddpm.js";
export {
  StableDiffusionPipeline,
  type StableDiffusionComponents,
  type StableDiffusionCallOptions,
  type StableDiffusionOutput,
  type StepEndState,
  type DenoiseContext,
} from "./pipelines/pipeline-stable-diffusion.js";
export { StableDiffusionImg2ImgPipeline, type Img2ImgCallOptions } from "./pipelines/pipeline-stable-diffusion-img2img.js";
export { StableDiffusionInpaintPipeline, type InpaintCallOptions } from "./pipelines/pipeline-stable-diffusion-inpaint.js";
// the lessons' loader: the Hub id when it loads, else the kit's small offline model with a note
export { fromPretrainedOrOffline, type Loaded } from "./pipelines/offline-fallback.js";

// ---- lora: load / set / fuse / unload live on the pipelines (LoraLoaderMixin); training adapters, saving, explaining files
export {
  LoraLoaderMixin,
  type LoadLoraOptions,
  type FuseLoraOptions,
  type LoraLoaderMethods,
} from "./lora/lora-pipeline.js";
export { LoraLayer, type LoraAdapter, type LoraScope, type LoraTarget } from "./lora/lora-layer.js";
export { loraTargets, type LoraModuleWeights } from "./lora/peft-utils.js";
export {
  loraStateDict,
  explainLoraFile,
  loraExplanationMarkdown,
  type LoraComponent,
  type LoraFormat,
  type LoraSource,
  type LoraFileOptions,
  type LoraKeyRow,
  type LoraExplanation,
  type ParsedLora,
  type PlacedLoraModule,
  type UnplacedLoraKey,
} from "./lora/lora-loader.js";
export {
  addLoraAdapter,
  loraParameters,
  getPeftModelStateDict,
  UNET_LORA_TARGET_MODULES,
  TEXT_ENCODER_LORA_TARGET_MODULES,
  type AddLoraAdapterOptions,
} from "./lora/peft-adapter.js";
export { saveLoraWeights, type LoraSaveModels, type SaveLoraWeightsOptions } from "./lora/lora-save.js";

// ---- memory: offload, the memory plan and budget, measuring and reporting (slicing and tiling are model methods)
export {
  enableModelCpuOffload,
  enableSequentialCpuOffload,
  disableCpuOffload,
  cpuOffload,
  cpuOffloadWithHook,
  type OffloadHandle,
  type OffloadMode,
} from "./memory/offload.js";
export { addForwardHook, type ForwardHook } from "./memory/hooks.js";
export {
  MemoryPlanError,
  chooseMemoryPlan,
  estimatePlan,
  memoryPlanLog,
  type MemoryMode,
  type MemoryPlan,
  type MemoryKnobs,
  type OffloadChoice,
  type PlannedCall,
  type CallEstimate,
  type PlanInput,
  type ChooseOptions,
} from "./memory/memory-plan.js";
export { memoryBudget, setMemoryBudget, type MemoryBudget } from "./memory/memory-budget.js";
export type { ModelCall, ActivationKnobs } from "./memory/memory-estimate.js";
export {
  measureMemory,
  memoryReport,
  formatMemoryReport,
  formatBytes,
  wasmHeapBytes,
  type MemoryMeasurement,
  type MemoryReport,
  type ComponentMemory,
  type ComponentPeak,
} from "./memory/memory-report.js";
// the load policy (weights placed as the memory plan says), installed on import
import "./memory/model-memory.js";

// ---- training: trainers (diffusers' example scripts), losses, AdamW, EMA, clipping, lr schedules
export { Trainer, listCheckpoints, type TrainerOptions, type TrainLogEntry, type PreparedStep } from "./training/trainer.js";
export { DDPMTrainer, saveDDPMPipeline, type BatchSource, type DDPMTrainerOptions } from "./training/ddpm-trainer.js";
export { readDigitPictures, inkMap, strokeWidth, THICK_STROKE_WIDTH, describeDigitReading, matchDigitCaption, type DigitReading, type CaptionMatch } from "./eval/digit-judge.js";
export { importEsm } from "./runtime/import-esm.js";
export { ssimWindows, structuralSimilarity, nearestStructuralSimilarity, type SsimWindows } from "./eval/ssim.js";
export { claim, markedClaims, reportedClaims, CLAIM_ID } from "./eval/claim.js";
export { ClassifierTrainer, crossEntropyLoss, type ClassifierTrainerOptions, type LabelledBatchSource } from "./training/classifier-trainer.js";
export {
  AutoencoderKLTrainer,
  latentScalingFactor,
  type AutoencoderKLTrainerOptions,
} from "./training/autoencoder-kl-trainer.js";
export {
  TextToImageTrainer,
  parameterWeights,
  type CaptionedBatchSource,
  type TextToImageComponents,
  type TextToImageTrainerOptions,
  type TrainableWeights,
} from "./training/text-to-image-trainer.js";
export { ddpmLoss, sampleNoiseAndTimesteps, type DiffusionNoise } from "./training/ddpm-loss.js";
export { AdamW, type AdamWOptions } from "./training/adamw.js";
export { EMAModel, type EMAModelOptions } from "./training/ema-model.js";
export { clipGradNorm } from "./training/clip-grad-norm.js";
export { lrFactor, type LrScheduleName } from "./training/lr-schedule.js";

// ---- display: pictures, grids, plots, progress and live previews, rich notebook output
export { toImage, loadImage, imageGrid, type ImageOptions, type PixelRange } from "./display/image.js";
export { composeGrid, type Cell } from "./display/compose.js";
export { showImages, type ShowOptions } from "./display/show.js";
export { plot, chartPng, chartSvg, type Trace, type Axis, type Layout } from "./display/plot.js";
export { ProgressBar, type ProgressOptions } from "./display/progress.js";
export { LivePreview, type PreviewOptions } from "./display/preview.js";
export { isNotebook, displayMarkdown, displayHtml, displayPng, displayText, newSlot } from "./display/notebook.js";

// ---- utils / checks: the students' self-checks, the shapes captions' grammar, the errors a notebook catches
export {
  compareTensors,
  compareArrays,
  compareNumbers,
  compareData,
  allOf,
  printCheck,
  type CheckResult,
  type CompareOptions,
} from "./utils/compare.js";
export { shapesPrompt, shapesCaption, type ShapesCaptionParts, type PromptRandom, type ShapeColour, type ShapeKind } from "./utils/shapes-captions.js";
export { digitPrompt, digitCaption, parseDigitCaption, DIGIT_COLOURS, DIGIT_COLOUR_NAMES, type DigitCaptionParts, type DigitColour } from "./utils/digits-captions.js";
export { ArgumentError, MAX_PICTURES_PER_CALL, MAX_PICTURE_SIDE } from "./utils/check-argument.js";
export { NonFiniteError } from "./utils/check-finite.js";
