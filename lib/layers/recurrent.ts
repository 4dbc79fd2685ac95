/**
 * Recurrent layers over a sequence (steps, features): Elman `rnn`, `gru`, `lstm`, and leaky integrate-and-fire
 * `lif` neurons. Factories, options and what the layer table needs (kind.ts); the cells are native.
 */
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, registerKind, label, present } from './kind';
import { type SequenceShape, sequenceShapeOf } from './shapes';

/** A recurrent layer over a sequence: Elman `rnn`, `gru`, `lstm`, or leaky integrate-and-fire `lif` neurons. */
export type RecurrentLayer = {
  /** The layer kind: which cell. */
  type: 'rnn' | 'gru' | 'lstm' | 'lif';
  /** Hidden units (state size). */
  units: number;
  /** Whether the output is every step's state (a sequence) or only the last step's. */
  returnSequences: boolean;
  /** [steps, features] of the input sequences, when given (required on a model's first layer). */
  inputShape?: SequenceShape;
  /** `lif` only: membrane decay per step, in [0, 1]. */
  beta?: number;
  /** `lif` only: the membrane potential at which a neuron spikes. */
  threshold?: number;
  /** `lif` only: the steepness of the surrogate derivative `bp()` uses. */
  slope?: number;
};

/** Options of the recurrent layers. */
export type RecurrentOptions = {
  /** Hidden units. */
  units: number;
  /** Output every step's state (a sequence) or only the last (a vector). Defaults to `false` (`lif`: `true`). */
  returnSequences?: boolean;
  /** [steps, features] of the input sequences; required on the first layer of a model. */
  inputShape?: SequenceShape;
};

type LifOptions = RecurrentOptions & { beta?: number; threshold?: number; slope?: number };
const LIF_KEYS = ['beta', 'threshold', 'slope'] as const;

function recurrent(type: RecurrentLayer['type'], options: LifOptions, keys: readonly string[]): RecurrentLayer {
  const o = optionsObject(type, options, ['units', 'returnSequences', 'inputShape', ...keys]);
  if (!is.positiveInteger(o.units) || (o.units as number) > 1 << 20)
    throw invalidArg('units', 'positive integer', o.units);
  if (o.returnSequences !== undefined && !is.bool(o.returnSequences))
    throw invalidArg('returnSequences', 'boolean', o.returnSequences);
  const layer: RecurrentLayer = {
    type,
    units: o.units as number,
    returnSequences: (o.returnSequences as boolean | undefined) ?? type === 'lif',
  };
  const shape = sequenceShapeOf(o.inputShape);
  if (shape) layer.inputShape = shape;
  if (o.beta !== undefined && !(is.number(o.beta) && (o.beta as number) >= 0 && (o.beta as number) <= 1))
    throw invalidArg('beta', 'number in [0, 1]', o.beta);
  if (o.threshold !== undefined && !is.number(o.threshold)) throw invalidArg('threshold', 'finite number', o.threshold);
  if (o.slope !== undefined && !is.positive(o.slope)) throw invalidArg('slope', 'positive number', o.slope);
  for (const key of LIF_KEYS) if (o[key] !== undefined) layer[key] = o[key] as number;
  return layer;
}

/** Elman recurrent layer: h_t = tanh(W x_t + U h_{t-1} + b). ULR puts noise on every step's pre-activation. */
export const rnn = (options: RecurrentOptions): RecurrentLayer => recurrent('rnn', options, []);
/** GRU (update z, reset r, candidate n = tanh(W x + U (r ⊙ h) + b); h = z ⊙ h_prev + (1 − z) ⊙ n). */
export const gru = (options: RecurrentOptions): RecurrentLayer => recurrent('gru', options, []);
/** LSTM (input, forget, cell, output gates; the forget bias starts at 1). */
export const lstm = (options: RecurrentOptions): RecurrentLayer => recurrent('lstm', options, []);
/**
 * Leaky integrate-and-fire neurons: membrane u_t = beta·u_{t-1}·(1 − s_{t-1}) + W x_t + b, spike
 * s_t = step(u_t − threshold), reset to 0 after a spike. The output is the spikes (a sequence by default).
 * ULR trains the Heaviside spike as it is; `bp()` uses the surrogate derivative 1 / (1 + slope·|u − threshold|)².
 * Defaults: beta 0.9, threshold 1, slope 5.
 */
export const lif = (
  options: RecurrentOptions & { beta?: number; threshold?: number; slope?: number },
): RecurrentLayer => recurrent('lif', options, LIF_KEYS);

const recurrentKind: LayerKind<RecurrentLayer> = {
  toNative: ({ inputShape: _, ...l }) => [l],
  declared: (l) => l.inputShape,
  first: 'the first recurrent layer needs inputShape [steps, features]',
  label: (l) =>
    label(
      l.type,
      `${l.units} units`,
      l.returnSequences && 'sequences',
      l.beta !== undefined && `β=${l.beta}`,
      l.threshold !== undefined && `threshold ${l.threshold}`,
    ),
  revive: (s) =>
    recurrent(
      s.type as RecurrentLayer['type'],
      present(s, ['units', 'returnSequences', 'inputShape', ...LIF_KEYS]) as LifOptions,
      s.type === 'lif' ? LIF_KEYS : [],
    ),
};

declare module './kind' {
  interface LayerTypes {
    /** A `rnn` layer ({@link RecurrentLayer}). */
    rnn: RecurrentLayer;
    /** A `gru` layer ({@link RecurrentLayer}). */
    gru: RecurrentLayer;
    /** A `lstm` layer ({@link RecurrentLayer}). */
    lstm: RecurrentLayer;
    /** A `lif` layer ({@link RecurrentLayer}). */
    lif: RecurrentLayer;
  }
}
registerKind(['rnn', 'gru', 'lstm', 'lif'], recurrentKind);
