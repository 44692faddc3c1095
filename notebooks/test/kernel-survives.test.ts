// Issue 13 §1: no bad number or bad file kills the kernel. A notebook of probes (each bad call in its own cell,
// as a student would type it) runs with real Jupyter and the tslab kernel; every probe must end in a clear,
// catchable error naming what was wrong, leave tf.memory().numTensors unchanged, and the last cell (a valid
// generate() on the same pipeline) must still draw a finite picture. A probe that aborts Node or the wasm module
// shows up as a dead kernel at that cell.
import { describe, it, expect, beforeAll } from "vitest";
import * as fs from "node:fs";
import * as path from "node:path";
import { spawnSync } from "node:child_process";
import { fixture } from "../../kernel-lib/test/helpers.js";
import { writeTorchBin } from "../../kernel-lib/test/torch-bin-writer.js";
import { op, tensorOps, pickle, zipOf, deflatedZeros } from "../../kernel-lib/test/bad-files.js";
import { saveSafetensors } from "../../kernel-lib/src/io/safetensors.js";

const root = path.resolve(__dirname, "../..");
// under runs/ (git-ignored) so that the kernel, started in the notebook's folder, resolves "kernel-lib"
const work = path.join(root, "runs", "kernel-survives");
const COMMIT = "0123456789abcdef0123456789abcdef01234567";

/** Bad model folders, as a download or a student's own save could leave them. */
function badFiles(): Record<string, string> {
  const dir = path.join(work, "files");
  fs.rmSync(dir, { recursive: true, force: true });
  const unetConfig = fixture("models", "unet-ddpm-tiny", "config.json");
  const folder = (name: string, weights: string, bytes?: Uint8Array) => {
    const d = path.join(dir, name);
    fs.mkdirSync(d, { recursive: true });
    fs.copyFileSync(unetConfig, path.join(d, "config.json"));
    if (bytes) fs.writeFileSync(path.join(d, weights), bytes);
    return d;
  };
  const stride0 = folder("stride0", "diffusion_pytorch_model.bin");
  writeTorchBin(path.join(stride0, "diffusion_pytorch_model.bin"), { w: { dtype: "F32", shape: [1], data: [7] } },
    { views: { "conv_in.weight": { of: "w", storageOffset: 0, shape: [2 ** 28], stride: [0] } } });
  const bombPickle = pickle([0x7d, ...op.str("conv_in.weight"), ...tensorOps(1, 1), 0x73]);
  const bomb = folder("bomb", "diffusion_pytorch_model.bin", zipOf([
    { name: "m/data.pkl", data: bombPickle },
    { name: "m/data/0", data: deflatedZeros(1024), deflated: true, size: 1 << 30, crc: 0 },
  ]));
  const N = 5000;
  const deepKey = [0x7d, ...new Array<number>(N).fill(0x5d), ...new Array<number>(N - 1).fill(0x61), 0x4e, 0x73];
  const deep = folder("deep", "diffusion_pytorch_model.bin", zipOf([{ name: "k/data.pkl", data: pickle(deepKey) }]));
  const i64 = folder("i64", "diffusion_pytorch_model.safetensors");
  saveSafetensors(path.join(i64, "diffusion_pytorch_model.safetensors"), { ids: { dtype: "I64", shape: [3], data: new Float64Array([1, 2 ** 33 + 5, 3]) } });
  const vaeAsUnet = path.join(dir, "vae-as-unet");
  fs.mkdirSync(vaeAsUnet);
  fs.copyFileSync(fixture("sd-tiny-pipe", "vae", "config.json"), path.join(vaeAsUnet, "config.json"));
  // a Hub cache whose refs/main leads outside it
  const cache = path.join(dir, "hf-cache");
  const storage = path.join(cache, "models--org--tiny");
  fs.mkdirSync(path.join(storage, "snapshots", COMMIT), { recursive: true });
  fs.copyFileSync(unetConfig, path.join(storage, "snapshots", COMMIT, "config.json"));
  fs.mkdirSync(path.join(storage, "refs"));
  fs.writeFileSync(path.join(storage, "refs", "main"), "../../../outside");
  return { stride0, bomb, deep, i64, vaeAsUnet, cache, sd: fixture("sd-tiny-pipe") };
}

const code = (source: string) => ({ cell_type: "code", metadata: {}, execution_count: null, outputs: [], source });

/** The probes: name -> [cell body, what its error must say]. */
const PROBES: [string, string, RegExp][] = [
  ["PNDM setTimesteps(1e9)", `K.PNDMScheduler.fromConfig({}).setTimesteps(1e9)`, /ArgumentError: \w+\.setTimesteps: num_inference_steps 1000000000 cannot be larger than num_train_timesteps 1000 .*use an integer in \[1, 1000\]/],
  ["generate numInferenceSteps 1e9", `pipe.generate({ ...OK, numInferenceSteps: 1e9 })`, /numInferenceSteps must be an integer in \[1, 1000\]; got 1000000000/],
  ["DDPMScheduler num_train_timesteps 1e9", `K.DDPMScheduler.fromConfig({ num_train_timesteps: 1e9 })`, /num_train_timesteps.*got 1000000000/],
  ["UNet config layers_per_block 1e9", `K.UNet2DConditionModel.fromConfig({ ...pipe.unet.config, layers_per_block: 1e9 })`, /"layers_per_block" must be an integer in \[1, \d+\]; got 1000000000/],
  ...["EulerDiscreteScheduler", "EulerAncestralDiscreteScheduler", "LMSDiscreteScheduler", "HeunDiscreteScheduler", "DPMSolverMultistepScheduler", "UniPCMultistepScheduler"]
    .map((n): [string, string, RegExp] => [`${n} setTimesteps(1e9)`, `(K as any).${n}.fromConfig(pipe.scheduler.config).setTimesteps(1e9)`, /ArgumentError: \w+\.setTimesteps: num_inference_steps 1000000000 cannot be larger than num_train_timesteps 1000 .*use an integer in \[1, 1000\]/]),
  ["guidanceScale NaN", `pipe.generate({ ...OK, guidanceScale: NaN })`, /guidanceScale must be a finite number; got NaN/],
  ["guidanceScale Infinity", `pipe.generate({ ...OK, guidanceScale: Infinity })`, /guidanceScale must be a finite number; got Infinity/],
  ["LoRA scale NaN", `pipe.generate({ ...OK, crossAttentionKwargs: { scale: NaN } })`, /crossAttentionKwargs.scale must be a finite number; got NaN/],
  ["numImagesPerPrompt -1", `pipe.generate({ ...OK, numImagesPerPrompt: -1 })`, /numImagesPerPrompt must be an integer in \[1, 1024\]; got -1/],
  ["numImagesPerPrompt 0", `pipe.generate({ ...OK, numImagesPerPrompt: 0 })`, /numImagesPerPrompt must be an integer in \[1, 1024\]; got 0/],
  ["PNDM setTimesteps(1001)", `K.PNDMScheduler.fromConfig(pipe.scheduler.config).setTimesteps(1001)`, /1001/],
  ["DPM++ step at timestep 5000", `{ const s = K.DPMSolverMultistepScheduler.fromConfig(pipe.scheduler.config); s.setTimesteps(10); const x = tf.zeros([1, 8, 8, 4]); try { s.step(x, 5000, x); } finally { x.dispose(); s.dispose(); } }`, /5000/],
  ["UniPC step at timestep NaN", `{ const s = K.UniPCMultistepScheduler.fromConfig(pipe.scheduler.config); s.setTimesteps(10); const x = tf.zeros([1, 8, 8, 4]); try { s.step(x, NaN, x); } finally { x.dispose(); s.dispose(); } }`, /got NaN/],
  ["numeric prompt", `pipe.generate({ ...OK, prompt: 42 as any })`, /prompt must be a string or a non-empty array of strings; got 42/],
  ["img2img picture in [0, 255]", `{ const image = tf.fill([1, 64, 64, 3], 200); try { await new K.StableDiffusionImg2ImgPipeline(pipe).generate({ ...OK, image }); } finally { image.dispose(); } }`, /image values must be in \[0, 1\].*divide the tensor by 255/],
  [".bin stride-0 [2^28]", `K.UNet2DModel.fromPretrained(FILES.stride0)`, /stride0.diffusion_pytorch_model\.bin: tensor "conv_in\.weight" \(size \[268435456\], stride \[0\]/],
  [".bin deflate bomb", `K.UNet2DModel.fromPretrained(FILES.bomb)`, /bomb.diffusion_pytorch_model\.bin: zip entry "m\/data\/0" declares 1073741824 bytes/],
  [".bin pickle nested 5000 deep", `K.UNet2DModel.fromPretrained(FILES.deep)`, /deep.diffusion_pytorch_model\.bin: data\.pkl: a key .* is a tuple\/list; allowed: strings/],
  ["safetensors I64 beyond int32", `K.UNet2DModel.fromPretrained(FILES.i64)`, /i64.diffusion_pytorch_model\.safetensors: tensor "ids" \(I64 \[3\]\) holds 8589934597/],
  ["config of another class", `K.UNet2DConditionModel.fromPretrained(FILES.vaeAsUnet)`, /"_class_name" is "AutoencoderKL", but UNet2DConditionModel\.fromPretrained was called/],
  ["refs/main outside the cache", `K.UNet2DModel.fromPretrained("org/tiny", { cacheDir: FILES.cache, localFilesOnly: true })`, /refs.main holds "\.\.\/\.\.\/\.\.\/outside"; allowed: a 40-character lowercase hex commit hash/],
];

function notebook(files: Record<string, string>): object {
  const cells = [
    code(`import * as tf from "@tensorflow/tfjs";
import * as K from "kernel-lib";
await K.initBackend();
const FILES: Record<string, string> = ${JSON.stringify(files)};
/** Runs one bad call; prints its error's first line and the tensors it left behind. */
async function probe(name: string, fn: () => unknown): Promise<void> {
  const n0 = tf.memory().numTensors;
  let said = "no error";
  try { await fn(); } catch (e) { said = \`\${(e as Error).name}: \${String((e as Error).message).split("\\n")[0]}\`; }
  console.log(\`PROBE \${name} | leaked \${tf.memory().numTensors - n0} | \${said.slice(0, 600)}\`);
}`),
    code(`const pipe = await K.DiffusionPipeline.fromPretrained<K.StableDiffusionPipeline>(FILES.sd);
pipe.setProgressBarConfig({ disable: true });
const OK = { prompt: "a cat", numInferenceSteps: 2, outputType: "np" as const };`),
    ...PROBES.map(([name, body]) => code(`await probe(${JSON.stringify(name)}, async () => ${body.startsWith("{") ? body : `{ await ${body}; }`});`)),
    code(`pipe.scheduler.dispose();
const n0 = tf.memory().numTensors;
const { images } = await pipe.generate({ ...OK, generator: new K.Generator().manualSeed(0) });
const finite = Array.from(images.dataSync()).every(Number.isFinite);
console.log(\`ALIVE finite=\${finite} shape=\${images.shape.join("x")}\`);
images.dispose();
pipe.scheduler.dispose();
console.log(\`ALIVE leaked \${tf.memory().numTensors - n0}\`);`),
  ];
  return { cells, metadata: { kernelspec: { name: "tslab", display_name: "TypeScript", language: "typescript" } }, nbformat: 4, nbformat_minor: 5 };
}

describe("the kernel survives every bad number and bad file of issue 13", () => {
  let out = "";
  let status: number | null = null;
  let log = "";
  beforeAll(() => {
    fs.mkdirSync(work, { recursive: true });
    const nb = path.join(work, "probes.ipynb");
    fs.writeFileSync(nb, JSON.stringify(notebook(badFiles()), null, 1));
    const executed = path.join(work, "probes.executed.ipynb");
    const r = spawnSync(process.execPath, [path.join(root, "scripts/lesson.mjs"), nb, "--out", executed], {
      cwd: root, encoding: "utf8", env: { ...process.env, HF_HUB_OFFLINE: "1" },
    });
    status = r.status;
    log = `${r.stderr.slice(-4000)}\n${r.stdout.slice(-2000)}`;
    const cells = fs.existsSync(executed) ? JSON.parse(fs.readFileSync(executed, "utf8")).cells : [];
    out = cells.flatMap((c: { outputs?: { text?: string | string[] }[] }) => (c.outputs ?? []).map((o) => [o.text ?? ""].flat().join(""))).join("");
  });

  it("every cell ran: no probe killed the kernel", () => {
    expect(status, log).toBe(0);
  });

  for (const [name, , said] of PROBES) {
    it(`${name}: a clear error, no tensor left behind`, () => {
      const line = out.split("\n").find((l) => l.startsWith(`PROBE ${name} |`));
      expect(line, `no output for the probe (the kernel died before it?)\n${log}`).toBeDefined();
      expect(line).toMatch(/\| leaked 0 \|/);
      expect(line).toMatch(said);
    });
  }

  it("afterwards the same pipeline draws a finite picture and frees what it made", () => {
    expect(out).toContain("ALIVE finite=true shape=1x64x64x3");
    expect(out).toContain("ALIVE leaked 0");
  });
});
