/** Flatten: an image or a sequence read as one flat vector (channels-last, step-major order: no data moves). */
import { type LayerKind, registerKind, noDeclaredInput } from './kind';

/** Turns an image into a flat vector (channels-last order: no data moves). */
export type FlattenLayer = {
  /** The layer kind. */
  type: 'flatten';
};

/** Flattens an image to a vector (channels-last order). */
export const flatten = (): FlattenLayer => ({ type: 'flatten' });

/** A leading flatten does nothing (no input shape to declare, none needed): the model's input is flat. */
const flattenKind: LayerKind<FlattenLayer> = {
  toNative: (l) => [{ ...l }],
  declared: noDeclaredInput,
  label: (l) => l.type,
  revive: () => flatten(),
};

declare module './kind' {
  interface LayerTypes {
    /** A `flatten` layer ({@link FlattenLayer}). */
    flatten: FlattenLayer;
  }
}
registerKind(['flatten'], flattenKind);
