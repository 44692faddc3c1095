// The colour words of the kit's captioned datasets and the RGB each is drawn in ([0, 1]), written once: the shapes
// data (datasets/generators/shapes.mjs, through utils/shapes-captions.ts) and the digits data
// (datasets/generators/digits.mjs, through utils/digits-captions.ts) draw and name colours with this table, and
// the judges read colours back against it.
export const COLOUR_RGB = {
  red: [0.9, 0.1, 0.1],
  green: [0.15, 0.7, 0.2],
  blue: [0.12, 0.3, 0.9],
  yellow: [0.97, 0.88, 0.1],
  purple: [0.55, 0.2, 0.75],
  orange: [0.98, 0.55, 0.1],
  white: [0.96, 0.96, 0.96],
  black: [0.07, 0.07, 0.07],
} as const satisfies Record<string, readonly [number, number, number]>;

export type ColourWord = keyof typeof COLOUR_RGB;
