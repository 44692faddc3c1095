// The caption grammar of the coloured-digits data (real MNIST handwriting, coloured and placed on a coloured
// background), written once: datasets/generators/digits.mjs captions its pictures with it, and the judge that
// reads a generated picture back (eval/digit-judge) and the checks' prompts use the same words.
//   <a|an> [thick] <colour> <digit> [on <a|an> <colour> background]
// e.g. "a red 7 on a blue background", "a thick green 3", "an orange 0 on a white background".
import { COLOUR_RGB, type ColourWord } from "./colour-words.js";

/** The colour words, in the order the generator draws them, with the RGB ([0, 1]) each is drawn in (the shapes data's). */
export const DIGIT_COLOURS = COLOUR_RGB;

export type DigitColour = ColourWord;
export const DIGIT_COLOUR_NAMES = Object.keys(DIGIT_COLOURS) as DigitColour[];
/** The share of captions that name the background, and of pictures drawn with thick strokes. */
export const DIGIT_BACKGROUND_SHARE = 0.7;
export const DIGIT_THICK_SHARE = 0.3;

export interface DigitCaptionParts {
  /** 0 .. 9 */
  digit: number;
  colour: DigitColour;
  /** the background's colour, or null when the caption does not name it */
  background: DigitColour | null;
  thick: boolean;
}

const an = (w: string): string => (/^[aeiou8]/.test(w) ? "an" : "a");

/** The caption of a picture: "a thick red 7 on a blue background". */
export function digitCaption({ digit, colour, background, thick }: DigitCaptionParts): string {
  if (!(Number.isInteger(digit) && digit >= 0 && digit <= 9)) throw new RangeError(`digitCaption: digit ${digit} must be an integer from 0 to 9`);
  if (!(colour in DIGIT_COLOURS)) throw new RangeError(`digitCaption: colour "${colour}" is not one of ${DIGIT_COLOUR_NAMES.join(", ")}`);
  if (background !== null && !(background in DIGIT_COLOURS)) throw new RangeError(`digitCaption: background "${background}" is not one of ${DIGIT_COLOUR_NAMES.join(", ")}`);
  const words = thick ? `thick ${colour} ${digit}` : `${colour} ${digit}`;
  const head = `${an(words)} ${words}`;
  return background === null ? head : `${head} on ${an(background)} ${background} background`;
}

/** The parts of a caption of this grammar (null when it is not one). */
export function parseDigitCaption(text: string): DigitCaptionParts | null {
  const names = DIGIT_COLOUR_NAMES.join("|");
  const m = new RegExp(`^an? (thick )?(${names}) (\\d)(?: on an? (${names}) background)?$`).exec(text.trim());
  if (!m) return null;
  return { thick: m[1] !== undefined, colour: m[2] as DigitColour, digit: Number(m[3]), background: (m[4] as DigitColour | undefined) ?? null };
}

/** The seeded choices a random caption needs (a Generator-backed source, or a check's GradeContext). */
export interface DigitPromptRandom {
  pick<T>(items: readonly T[]): T;
  rand(): number;
}

/** A random caption of the grammar: a digit, a colour, mostly a different background, sometimes thick strokes. */
export function digitPrompt(r: DigitPromptRandom): string {
  const digit = r.pick([0, 1, 2, 3, 4, 5, 6, 7, 8, 9] as const), colour = r.pick(DIGIT_COLOUR_NAMES);
  const background = r.pick(DIGIT_COLOUR_NAMES.filter((x) => x !== colour));
  return digitCaption({ digit, colour, background: r.rand() < DIGIT_BACKGROUND_SHARE ? background : null, thick: r.rand() < DIGIT_THICK_SHARE });
}
