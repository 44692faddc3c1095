// The caption grammar of the captioned-shapes data, written once: datasets/generators/shapes.mjs captions its
// pictures with it (datasets/sd-tiny and its LoRA were trained on those captions; the .mjs generator requires
// this file from kernel-lib/dist), and the hidden checks draw their random prompts with it, so a check asks the
// model in the words it learned: "a red circle", "an orange square on a blue background", "two yellow triangles".
//   <count> <colour> <shape>[s] [on <a|an> <colour> background]

/** The colour words, in the order the generator draws them. */
export const SHAPE_COLOURS = ["red", "green", "blue", "yellow", "purple", "orange", "white", "black"] as const;
export const SHAPE_KINDS = ["circle", "square", "triangle"] as const;
/** How a caption says 1, 2 and 3 shapes ("a" becomes "an" before a vowel). */
export const SHAPE_COUNT_WORDS = ["a", "two", "three"] as const;
/** The share of captions that name the background. */
export const SHAPE_BACKGROUND_SHARE = 0.7;

export type ShapeColour = (typeof SHAPE_COLOURS)[number];
export type ShapeKind = (typeof SHAPE_KINDS)[number];

export interface ShapesCaptionParts {
  /** 1, 2 or 3 shapes */
  count: number;
  colour: ShapeColour;
  kind: ShapeKind;
  /** the background's colour, or null when the caption does not name it */
  background: ShapeColour | null;
}

const an = (w: string): string => (/^[aeiou]/.test(w) ? "an" : "a");

/** The caption of a picture: "two yellow triangles on a black background". */
export function shapesCaption({ count, colour, kind, background }: ShapesCaptionParts): string {
  if (!(count >= 1 && count <= SHAPE_COUNT_WORDS.length && Number.isInteger(count))) {
    throw new RangeError(`shapesCaption: count ${count} must be 1, 2 or 3`);
  }
  const noun = count === 1 ? kind : `${kind}s`;
  const head = `${count === 1 ? an(colour) : SHAPE_COUNT_WORDS[count - 1]} ${colour} ${noun}`;
  return background === null ? head : `${head} on ${an(background)} ${background} background`;
}

/** The seeded choices a check's random source offers (GradeContext's pick / rand). */
export interface PromptRandom {
  pick<T>(items: readonly T[]): T;
  rand(): number;
}

/** A random caption of the grammar (count, colour, shape, and mostly a different background), from `r`. */
export function shapesPrompt(r: PromptRandom): string {
  const colour = r.pick(SHAPE_COLOURS), kind = r.pick(SHAPE_KINDS), count = r.pick([1, 2, 3] as const);
  const background = r.pick(SHAPE_COLOURS.filter((x) => x !== colour));
  return shapesCaption({ count, colour, kind, background: r.rand() < SHAPE_BACKGROUND_SHARE ? background : null });
}
