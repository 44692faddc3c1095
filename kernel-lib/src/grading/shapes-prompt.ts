// Random prompts in the vocabulary of datasets/sd-tiny (its captions come from datasets/generators/shapes.mjs):
// "a red circle", "two yellow triangles on a black background". Hidden checks draw them with the check's seeded
// random source, so a grading run is reproducible; SD 1.5 reads them as plain English.
export const SHAPE_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"] as const;
export const SHAPE_KINDS = ["circle", "square", "triangle"] as const;

/** The seeded choices a check's random source offers (CheckSession's pick / rand). */
export interface PromptRandom {
  pick<T>(items: readonly T[]): T;
  rand(): number;
}

const an = (w: string): string => (/^[aeiou]/.test(w) ? "an" : "a");

/** One caption as the generator writes them: count, colour, shape, and in 70 % of them a different background. */
export function shapesPrompt(r: PromptRandom): string {
  const colour = r.pick(SHAPE_COLOURS), shape = r.pick(SHAPE_KINDS), count = r.pick(["a", "two", "three"] as const);
  const bg = r.pick(SHAPE_COLOURS.filter((x) => x !== colour));
  return `${count === "a" ? an(colour) : count} ${colour} ${count === "a" ? shape : shape + "s"}` + (r.rand() < 0.7 ? ` on ${an(bg)} ${bg} background` : "");
}
