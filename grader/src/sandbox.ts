// The sandbox one submission's kernel runs in. The grader writes a private kernel spec ("tslab-graded") whose argv
// is scripts/sandbox-kernel.sh with this run's settings:
//  - as root (with mount namespaces allowed; a container without CAP_SYS_ADMIN gets the user switch only): each
//    parallel slot has its own unprivileged user (kitgrade0, kitgrade1, ...; created once with
//    useradd), the kernel runs as that user with no capabilities and no new privileges, in a mount namespace where
//    the kit's checkout is covered by an empty tmpfs (checks, solutions, the grader's sources are not there; only
//    node_modules, kernel-lib and grader are bound read-only into the work folder), with a private HOME and TMPDIR
//    in its work folder (mode 0700, its own), and a memory cgroup when the machine lets the grader make one;
//  - not as root, where the machine allows unprivileged user namespaces (most Linux distributions): the same mount
//    and pid namespaces and the same hidden kit and private /tmp, as the grader's own user (root inside a user
//    namespace, nobody outside), without a user switch or cgroup;
//  - not as root without them: the grader's own user, the kit readable (Node's permission model cannot run tslab:
//    it forbids native addons and tslab needs zeromq's); the verdicts still never depend on the kernel, and the
//    checks are hashed around every run;
//  - always: a clean environment (no tokens of the grader's), RLIMIT_DATA (heap and wasm memory) and V8's
//    old-space limit.
import * as crypto from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";
import { execFileSync } from "node:child_process";

export interface SandboxOptions {
  kitRoot: string;
  /** the submission's work folder (made by prepareWorkFolder) */
  work: string;
  /** the grader's private folder for this run (mode 0700, the grader's) */
  priv: string;
  /** parallel slot (0 .. jobs-1): one unprivileged user per slot */
  slot: number;
  /** bytes of memory for the kernel (default 8 GiB) */
  memoryBytes?: number;
  /** environment of the grading run (the kernel gets only a few settings of it, see kernelEnv) */
  env: NodeJS.ProcessEnv;
}

export interface Sandbox {
  /** the kernel spec to run the notebook with */
  kernel: string;
  /** the runner's environment (JUPYTER_PATH holding the private spec) */
  runnerEnv: NodeJS.ProcessEnv;
  /** the judge's environment: the kernel's HF and TFJS settings, so both load the same model the same way */
  judgeEnv: NodeJS.ProcessEnv;
  /** what protects this run, in words, for the report */
  description: string;
  /** removes the cgroup (the work folder is the caller's) */
  cleanup(): void;
}

export const DEFAULT_MEMORY = 8 * 2 ** 30;

const isRoot = (): boolean => typeof process.getuid === "function" && process.getuid() === 0;

const nsCache = new Map<string, boolean>();
/** Whether unshare with `flags` (and a tmpfs mount inside) works here; asked once per process. */
function unshareWorks(flags: string[]): boolean {
  const key = flags.join(" ");
  if (!nsCache.has(key)) {
    try {
      execFileSync("unshare", [...flags, "--mount", "--pid", "--fork", "--mount-proc", "--", "sh", "-c", "mount -t tmpfs probe /mnt"], { stdio: "ignore", timeout: 10_000 });
      nsCache.set(key, true);
    } catch {
      nsCache.set(key, false);
    }
  }
  return nsCache.get(key)!;
}

/** Whether this machine lets an unprivileged process make user, mount and pid namespaces (and mount in them). */
export function userNamespacesWork(): boolean {
  return unshareWorks(["--user", "--map-root-user"]);
}

/** Whether root may make mount and pid namespaces here (a container without CAP_SYS_ADMIN may not). */
export function mountNamespacesWork(): boolean {
  return unshareWorks([]);
}

/** The unprivileged user of a slot, created if missing (root only). */
export function ensureSandboxUser(slot: number): string {
  const name = `kitgrade${slot}`;
  try {
    execFileSync("id", ["-u", name], { stdio: "ignore" });
  } catch {
    try {
      execFileSync("useradd", ["--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", "--user-group", name], { stdio: "pipe" });
    } catch (e) {
      // another grader may have made it meanwhile
      try {
        execFileSync("id", ["-u", name], { stdio: "ignore" });
      } catch {
        throw new Error(`could not create the sandbox user ${name} (useradd): ${(e as Error).message}`);
      }
    }
  }
  return name;
}

/** A memory cgroup (v2 or v1) limited to `bytes`, or "" when this machine does not let us make one. */
function makeCgroup(bytes: number): string {
  const name = `kitgrade-${process.pid}-${crypto.randomBytes(4).toString("hex")}`;
  const tries: [string, string][] = [];
  if (fs.existsSync("/sys/fs/cgroup/cgroup.controllers") && /\bmemory\b/.test(fs.readFileSync("/sys/fs/cgroup/cgroup.controllers", "utf8"))) tries.push(["/sys/fs/cgroup", "memory.max"]);
  if (fs.existsSync("/sys/fs/cgroup/memory/memory.limit_in_bytes")) tries.push(["/sys/fs/cgroup/memory", "memory.limit_in_bytes"]);
  for (const [base, file] of tries) {
    const dir = path.join(base, name);
    try {
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, file), String(bytes));
      return dir;
    } catch {
      try {
        fs.rmdirSync(dir);
      } catch {
        // not made
      }
    }
  }
  return "";
}

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;

/** The kernel's environment: only the Hub's offline and cache settings, TFJS_* and KIT_MEMORY_BUDGET, with plain
 * values (no tokens, nothing else of the grader's). */
function kernelEnv(env: NodeJS.ProcessEnv, home: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) {
    if (v !== undefined && /^(HF_HUB_OFFLINE|HF_HOME|HF_HUB_CACHE|HF_ENDPOINT|TFJS_[A-Z0-9_]+|KIT_MEMORY_BUDGET)$/.test(k) && /^[\w./:@+,=-]*$/.test(v)) out[k] = v;
  }
  // the Hugging Face cache is the grader's HF_HOME when given, else an empty one in the work folder (offline models)
  out.HF_HOME ??= path.join(home, ".cache", "huggingface");
  return out;
}

/** Prepares the sandbox of one submission (see the top of this file). */
export function prepareSandbox(opts: SandboxOptions): Sandbox {
  const memory = opts.memoryBytes ?? DEFAULT_MEMORY;
  const root = isRoot();
  const user = root ? ensureSandboxUser(opts.slot) : "";
  const userns = !root && userNamespacesWork();
  const rootns = root && mountNamespacesWork();
  const hidden = rootns || userns;
  const home = path.join(opts.work, "home");
  for (const d of [".kernel", "home", "tmp"]) fs.mkdirSync(path.join(opts.work, d), { recursive: true, mode: 0o700 });
  for (const d of ["node_modules", "kernel-lib", "grader"]) {
    const p = path.join(opts.work, d);
    if (fs.existsSync(p)) fs.rmSync(p, { recursive: true, force: true });
    // in namespaces: mount points, bound read-only inside the kernel's namespace; otherwise links to the kit
    if (hidden) fs.mkdirSync(p);
    else fs.symlinkSync(path.join(opts.kitRoot, d), p, "dir");
  }
  const cgroup = root ? makeCgroup(memory) : "";
  if (root) {
    execFileSync("chown", ["-R", `${user}:${user}`, opts.work]);
    if (hidden) for (const d of ["node_modules", "kernel-lib", "grader"]) fs.chownSync(path.join(opts.work, d), 0, 0);
    fs.chmodSync(opts.work, 0o700);
  }
  const env = kernelEnv(opts.env, home);
  const settings = path.join(opts.priv, "sandbox.sh");
  const vars: Record<string, string> = {
    WORK: opts.work, KIT: opts.kitRoot, NODE_BIN: process.execPath, MEM_BYTES: String(memory),
    OLD_SPACE_MB: String(Math.max(512, Math.floor(memory / 2 ** 21))), SANDBOX_USER: user, ROOTNS: rootns ? "1" : "", USERNS: userns ? "1" : "", CGROUP: cgroup,
    KERNEL_ENV: Object.entries(env).map(([k, v]) => `${k}=${v}`).join(" "),
  };
  fs.writeFileSync(settings, Object.entries(vars).map(([k, v]) => `${k}=${shq(v)}`).join("\n") + "\n", { mode: 0o600 });
  const specDir = path.join(opts.priv, "jupyter", "kernels", "tslab-graded");
  fs.mkdirSync(specDir, { recursive: true });
  const script = path.join(opts.kitRoot, "scripts", "sandbox-kernel.sh");
  fs.writeFileSync(path.join(specDir, "kernel.json"), JSON.stringify({
    argv: ["/bin/sh", script, settings, "{connection_file}"], display_name: "TypeScript (graded)", language: "typescript",
  }));
  const jp = path.join(opts.priv, "jupyter");
  const gib = (b: number) => `${Math.round((b / 2 ** 30) * 10) / 10} GiB`;
  const description = root
    ? `kernel as user ${user} (no capabilities), ${rootns ? "the kit hidden by a mount namespace" : "no mount namespaces here (the kit is readable)"}, memory ${gib(memory)} (RLIMIT_DATA${cgroup ? " and a memory cgroup" : ""})`
    : userns
      ? `kernel as the grader's own user in a user namespace (not root), the kit hidden by a mount namespace, memory ${gib(memory)} (RLIMIT_DATA)`
      : `kernel as the grader's own user (not root, no user namespaces: the kit is readable), memory ${gib(memory)} (RLIMIT_DATA)`;
  return {
    kernel: "tslab-graded",
    runnerEnv: { ...opts.env, JUPYTER_PATH: jp + (opts.env.JUPYTER_PATH ? path.delimiter + opts.env.JUPYTER_PATH : "") },
    judgeEnv: { ...opts.env, ...env },
    description,
    cleanup: () => {
      if (!cgroup) return;
      for (let i = 0; i < 20; i++) {
        try {
          fs.rmdirSync(cgroup);
          return;
        } catch {
          execFileSync("sleep", ["0.1"]);
        }
      }
    },
  };
}
