/**
 * Sequence reshapes: `repeat` turns a flat input into a sequence of identical steps (the input current of a spiking
 * net), `timeMean` averages a sequence over its steps (spike rates). Factories and what the layer table needs.
 */
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, registerKind, label, noDeclaredInput } from './kind';

/** Repeats a flat input for `steps` steps (a sequence of identical steps: the input current of a spiking net). */
export type RepeatLayer = {
  /** The layer kind. */
  type: 'repeat';
  /** Steps of the output sequence. */
  steps: number;
  /** Size of the flat input, when given (required on a model's first layer). */
  inputs?: number;
};
/** The mean over the steps of a sequence (spike rates of a spiking layer). */
export type TimeMeanLayer = {
  /** The layer kind. */
  type: 'timeMean';
};

/** Repeats a flat input for `steps` steps; `inputs` (its size) is needed when it is the first layer. */
export function repeat(steps: number, options?: { inputs?: number }): RepeatLayer {
  if (!is.positiveInteger(steps) || steps > 65536) throw invalidArg('steps', 'integer in [1, 65536]', steps);
  const o = optionsObject('repeat', options, ['inputs']);
  if (o.inputs !== undefined && !(is.positiveInteger(o.inputs) && (o.inputs as number) <= 1 << 24))
    throw invalidArg('inputs', 'positive integer', o.inputs);
  return o.inputs === undefined ? { type: 'repeat', steps } : { type: 'repeat', steps, inputs: o.inputs as number };
}
/** The mean over a sequence's steps. */
export const timeMean = (): TimeMeanLayer => ({ type: 'timeMean' });

const repeatKind: LayerKind<RepeatLayer> = {
  toNative: (l) => [{ type: 'repeat', steps: l.steps }],
  declared: (l) => (l.inputs === undefined ? undefined : [l.inputs]),
  first: 'a first repeat layer needs { inputs }',
  label: (l) => label('repeat', `${l.steps} steps`),
  revive: (s) => repeat(s.steps as number, s.inputs === undefined ? undefined : { inputs: s.inputs as number }),
};

const timeMeanKind: LayerKind<TimeMeanLayer> = {
  toNative: (l) => [{ ...l }],
  declared: noDeclaredInput,
  first: 'timeMean needs a sequence input',
  label: (l) => l.type,
  revive: () => timeMean(),
};

declare module './kind' {
  interface LayerTypes {
    /** A `repeat` layer ({@link RepeatLayer}). */
    repeat: RepeatLayer;
    /** A `timeMean` layer ({@link TimeMeanLayer}). */
    timeMean: TimeMeanLayer;
  }
}
registerKind(['repeat'], repeatKind);
registerKind(['timeMean'], timeMeanKind);
