// Forward hooks (accelerate's add_hook_to_module / ModelHook): code run just before and just after a
// module's method, installed on the instance by replacing the method, as accelerate replaces module.forward.
// Several hooks may sit on one method (offload + a memory probe); each is removed on its own.
// Only synchronous methods (forward, encode, decode): the post hook runs when the method returns or throws.

export interface ForwardHook {
  /** `args`: the call's arguments (read-only: a hook must not change them) */
  preForward?(target: object, method: string, args: unknown[]): void;
  postForward?(target: object, method: string): void;
}

interface Wrapped {
  /** The instance's own property before the first hook, if it had one. */
  own: PropertyDescriptor | undefined;
  hooks: ForwardHook[];
}

const installed = new WeakMap<object, Map<string, Wrapped>>();

/**
 * Runs hook.preForward / hook.postForward around each named method of `target` (missing methods are skipped).
 * Returns a function that removes this hook; the method is restored once its last hook is gone.
 */
export function addForwardHook(target: object, methods: readonly string[], hook: ForwardHook): () => void {
  let perTarget = installed.get(target);
  if (!perTarget) installed.set(target, (perTarget = new Map()));
  const names = methods.filter((m) => typeof (target as Record<string, unknown>)[m] === "function");
  for (const name of names) {
    let w = perTarget.get(name);
    if (!w) {
      const own = Object.getOwnPropertyDescriptor(target, name);
      const original = (target as Record<string, (...a: unknown[]) => unknown>)[name];
      const entry: Wrapped = { own, hooks: [] };
      const wrapper = function (this: unknown, ...args: unknown[]): unknown {
        const hooks = [...entry.hooks];
        for (const h of hooks) h.preForward?.(target, name, args);
        try {
          return original.apply(this, args);
        } finally {
          for (const h of hooks.reverse()) h.postForward?.(target, name);
        }
      };
      Object.defineProperty(target, name, { value: wrapper, writable: true, configurable: true, enumerable: false });
      perTarget.set(name, (w = entry));
    }
    w.hooks.push(hook);
  }
  return () => {
    for (const name of names) {
      const w = perTarget!.get(name);
      if (!w) continue;
      w.hooks = w.hooks.filter((h) => h !== hook);
      if (w.hooks.length > 0) continue;
      if (w.own) Object.defineProperty(target, name, w.own);
      else delete (target as Record<string, unknown>)[name];
      perTarget!.delete(name);
    }
  };
}

/** Has `target` any hook on `method`? */
export function hasForwardHook(target: object, method: string): boolean {
  return (installed.get(target)?.get(method)?.hooks.length ?? 0) > 0;
}

/** The methods that run a whole model (diffusers' forward, and the VAE's encode / decode under apply_forward_hook). */
export const MODEL_METHODS = ["forward", "encode", "decode"] as const;
