/**
 * The dense (fully connected) layer: y = x Wᵀ + b, W of shape (units, inputs). Factory, options and what the
 * layer table needs (kind.ts); the math is native.
 */
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, registerKind, label, present } from './kind';
import { type QuantizedWeights, weightsOf } from './shapes';

/** A fully connected layer: `y = x Wᵀ + b`, W of shape (units, inputs). */
export type DenseLayer = {
  /** The layer kind. */
  type: 'dense';
  /** In-features I. */
  inputs: number;
  /** Out-features O. */
  units: number;
  /** Whether the layer has a bias vector. */
  bias: boolean;
  /** `false` when the layer is frozen (no gradient, no update); absent means trainable. */
  trainable?: boolean;
  /** Binary or ternary forward weights; absent means real weights. */
  weights?: QuantizedWeights;
};

/** Options of {@link dense}. */
export type DenseOptions = {
  /** Whether the layer has a bias vector. Defaults to `true`. */
  bias?: boolean;
  /**
   * `false` freezes the layer (fine-tuning): no gradient, no update. Only a leading run of dense layers can be
   * frozen; their clean forward then runs once per sample. Defaults to `true`.
   */
  trainable?: boolean;
  /** Binary or ternary weights in the forward (see {@link QuantizedWeights}). Defaults to real weights. */
  weights?: QuantizedWeights;
};

/**
 * A dense (fully connected) layer with `inputs` in-features and `units` out-features.
 * Weights are Glorot-uniform from the model seed, biases zero.
 */
export function dense(inputs: number, units: number, options?: DenseOptions): DenseLayer {
  if (!is.positiveInteger(inputs)) throw invalidArg('inputs', 'positive integer', inputs);
  if (!is.positiveInteger(units)) throw invalidArg('units', 'positive integer', units);
  const o = optionsObject('dense', options, ['bias', 'trainable', 'weights']);
  if (o.bias !== undefined && !is.bool(o.bias)) throw invalidArg('bias', 'boolean', o.bias);
  if (o.trainable !== undefined && !is.bool(o.trainable)) throw invalidArg('trainable', 'boolean', o.trainable);
  const layer: DenseLayer = { type: 'dense', inputs, units, bias: (o.bias as boolean | undefined) ?? true };
  if (o.trainable === false) layer.trainable = false;
  const q = weightsOf(o.weights);
  if (q) layer.weights = q;
  return layer;
}

const denseKind: LayerKind<DenseLayer> = {
  toNative: (l) => [
    {
      type: 'dense',
      units: l.units,
      bias: l.bias,
      trainable: l.trainable !== false,
      ...(l.weights ? { weights: l.weights } : {}),
    },
  ],
  declared: (l) => [l.inputs],
  label: (l) => label('dense', `${l.inputs}→${l.units}`, !l.bias && 'no bias', l.weights && `${l.weights} weights`),
  setTrainable: (l, trainable) => {
    if (trainable) delete l.trainable;
    else l.trainable = false;
  },
  revive: (s) => dense(s.inputs as number, s.units as number, present(s, ['bias', 'trainable', 'weights'])),
};

declare module './kind' {
  interface LayerTypes {
    /** A `dense` layer ({@link DenseLayer}). */
    dense: DenseLayer;
  }
}
registerKind(['dense'], denseKind);
