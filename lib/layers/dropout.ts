/** Dropout: a seeded mask in training, the identity in inference. Factory and what the layer table needs. */
import { invalidArg, is } from '../validate';
import { type LayerKind, registerKind, label, noDeclaredInput } from './kind';

/** Dropout: in training (every estimator's step), each value is zeroed with probability `rate` and the rest scaled by 1 / (1 − rate); the identity in inference. */
export type DropoutLayer = {
  /** The layer kind. */
  type: 'dropout';
  /** Probability of zeroing a value, in [0, 1). */
  rate: number;
};

/**
 * Dropout with probability `rate` in [0, 1). The mask comes from the seeded counter-based generator (seed, step,
 * layer, sample), so runs are reproducible, and under ULR all K copies of a sample share it.
 */
export function dropout(rate: number): DropoutLayer {
  if (!(is.number(rate) && rate >= 0 && rate < 1)) throw invalidArg('rate', 'number in [0, 1)', rate);
  return { type: 'dropout', rate };
}

const dropoutKind: LayerKind<DropoutLayer> = {
  toNative: (l) => [{ ...l }],
  declared: noDeclaredInput,
  first: 'dropout needs a layer before it',
  label: (l) => label('dropout', `${l.rate}`),
  revive: (s) => dropout(s.rate as number),
};

declare module './kind' {
  interface LayerTypes {
    /** A `dropout` layer ({@link DropoutLayer}). */
    dropout: DropoutLayer;
  }
}
registerKind(['dropout'], dropoutKind);
