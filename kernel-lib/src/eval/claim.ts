// A sentence of a lesson about a picture, measured on the picture the reader got. The lesson's markdown marks the
// sentence with <!-- claim: id -->; a code cell measures it and calls claim(id, holds, measured). The line it prints
// ("✔ claim id: ...") is what notebooks/test/lessons.test.ts looks for, offline, for every marked id.
import { ArgumentError } from "../utils/check-argument.js";

/** Claim ids: lower-case words joined by "-", as in the markdown marker <!-- claim: id -->. */
export const CLAIM_ID = /^[a-z0-9]+(?:-[a-z0-9]+)*$/;

/**
 * Prints whether the prose's claim `id` holds on this run, with what was measured. A claim that does not hold is
 * said plainly (on another model, e.g. the real checkpoint, the numbers differ and the reader sees which). Prints, returns nothing.
 */
export function claim(id: string, holds: boolean, measured: string): void {
  if (typeof id !== "string" || !CLAIM_ID.test(id)) throw new ArgumentError(`claim: id must be lower-case words joined by "-" (as in <!-- claim: id -->); got ${JSON.stringify(id)}`);
  if (typeof holds !== "boolean") throw new ArgumentError(`claim "${id}": holds must be a boolean; got ${typeof holds}`);
  if (typeof measured !== "string" || measured.trim() === "") throw new ArgumentError(`claim "${id}": say what was measured (a non-empty string)`);
  const line = holds
    ? `✔ claim ${id}: ${measured}`
    : `✘ claim ${id} does not hold on this run: ${measured}`;
  console.log(line); // nothing returned: a claim at the end of a cell prints only its line
}

/** The claim ids a notebook's markdown marks (<!-- claim: id -->), in order. */
export function markedClaims(markdown: string): string[] {
  return [...markdown.matchAll(/<!--\s*claim:\s*([^\s>]+)\s*-->/g)].map((m) => m[1]);
}

/** The claims an executed notebook's outputs report: id -> held (a claim reported twice must hold both times). */
export function reportedClaims(outputText: string): Map<string, boolean> {
  const out = new Map<string, boolean>();
  for (const m of outputText.matchAll(/^(✔|✘) claim ([a-z0-9-]+)(?::| does not hold)/gm)) {
    out.set(m[2], (out.get(m[2]) ?? true) && m[1] === "✔");
  }
  return out;
}
