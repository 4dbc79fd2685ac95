/**
 * The dense (fully connected) layer: y = x Wᵀ + b, W of shape (units, inputs); on a sequence (steps, inputs) it acts
 * per position. Factory, options and what the layer table needs (kind.ts); the math is native.
 */
import { ConfigError } from '../errors';
import { invalidArg, is, optionsObject } from '../validate';
import { type ActivationName, activation } from './activation';
import { type Layer, type LayerKind, registerKind, label, present } from './kind';
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
  /** A low-rank adapter (see {@link AdapterOptions}); absent means none. */
  adapter?: AdapterOptions;
};

/**
 * A low-rank adapter (LoRA, Hu et al. 2021) on a dense layer: `y = x Wᵀ + (alpha / rank) (x Aᵀ) Bᵀ + b`, with W and
 * b frozen (no gradient, no update, not perturbed by SPSA / ES) and only A (rank, inputs) and B (units, rank)
 * training. A starts uniform in ±1/√inputs and B at zero, so a fresh adapter leaves the layer's output unchanged.
 * Parameters: `denseN.weight`, `denseN.bias`, `denseN.lora_a`, `denseN.lora_b` (PEFT's lora_A / lora_B shapes).
 */
export type AdapterOptions = {
  /** The rank r: an integer in [1, min(inputs, units)]. */
  rank: number;
  /** The update's scale is alpha / rank. Defaults to the rank (scale 1). */
  alpha?: number;
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
  /**
   * A low-rank adapter: W and b freeze and only the adapter trains (see {@link AdapterOptions}). Start from a
   * pretrained model with {@link withAdapters}. Needs real weights.
   */
  adapter?: AdapterOptions;
};

/**
 * A dense (fully connected) layer with `inputs` in-features and `units` out-features.
 * Weights are Glorot-uniform from the model seed, biases zero. After a layer that gives a sequence (steps, F) it
 * maps each position: `inputs` = F, output (steps, units); such a layer cannot be frozen.
 */
export function dense(inputs: number, units: number, options?: DenseOptions): DenseLayer {
  if (!is.positiveInteger(inputs)) throw invalidArg('inputs', 'positive integer', inputs);
  if (!is.positiveInteger(units)) throw invalidArg('units', 'positive integer', units);
  const o = optionsObject('dense', options, ['bias', 'trainable', 'weights', 'adapter']);
  if (o.bias !== undefined && !is.bool(o.bias)) throw invalidArg('bias', 'boolean', o.bias);
  if (o.trainable !== undefined && !is.bool(o.trainable)) throw invalidArg('trainable', 'boolean', o.trainable);
  const layer: DenseLayer = { type: 'dense', inputs, units, bias: (o.bias as boolean | undefined) ?? true };
  if (o.trainable === false) layer.trainable = false;
  const q = weightsOf(o.weights);
  if (q) layer.weights = q;
  if (o.adapter !== undefined) {
    if (q) throw new ConfigError(`dense: an adapter needs real weights, not ${q} ones`);
    layer.adapter = adapterOf(o.adapter, Math.min(inputs, units));
  }
  return layer;
}

/**
 * A multilayer perceptron: dense layers through `widths` (inputs, hidden widths..., outputs) with `act` between them
 * and none after the last (the loss applies softmax). Spread it into a layer list.
 * @example
 * of.sequential(of.mlp([784, 256, 10]))   // dense(784, 256), relu(), dense(256, 10)
 */
export function mlp(widths: readonly number[], act: ActivationName = 'relu'): Layer[] {
  if (!Array.isArray(widths) || widths.length < 2 || !widths.every((w) => is.positiveInteger(w)))
    throw invalidArg('widths', 'array of at least 2 positive integers', widths);
  activation(act); // an unknown name fails here, also with no hidden layer
  const layers: Layer[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    if (i > 0) layers.push(activation(act));
    layers.push(dense(widths[i]!, widths[i + 1]!));
  }
  return layers;
}

/** The adapter option checked: rank an integer in [1, maxRank], alpha positive. */
function adapterOf(a: unknown, maxRank: number): AdapterOptions {
  const o = optionsObject('adapter', a, ['rank', 'alpha']);
  if (!is.integer(o.rank) || (o.rank as number) < 1 || (o.rank as number) > maxRank)
    throw invalidArg('adapter.rank', `integer in [1, ${maxRank}] (min(inputs, units))`, o.rank);
  const out: AdapterOptions = { rank: o.rank as number };
  if (o.alpha !== undefined) {
    if (!is.number(o.alpha) || !((o.alpha as number) > 0) || !Number.isFinite(o.alpha))
      throw invalidArg('adapter.alpha', 'positive finite number', o.alpha);
    out.alpha = o.alpha as number;
  }
  return out;
}

const denseKind: LayerKind<DenseLayer> = {
  toNative: (l) => [
    {
      type: 'dense',
      units: l.units,
      bias: l.bias,
      trainable: l.trainable !== false,
      ...(l.weights ? { weights: l.weights } : {}),
      ...(l.adapter ? { adapterRank: l.adapter.rank, adapterAlpha: l.adapter.alpha ?? l.adapter.rank } : {}),
    },
  ],
  declared: (l) => [l.inputs],
  perPosition: true,
  label: (l) =>
    label(
      'dense',
      `${l.inputs}→${l.units}`,
      !l.bias && 'no bias',
      l.weights && `${l.weights} weights`,
      l.adapter && `adapter rank ${l.adapter.rank}${l.adapter.alpha !== undefined ? ` alpha ${l.adapter.alpha}` : ''}`,
    ),
  setTrainable: (l, trainable) => {
    if (trainable) delete l.trainable;
    else l.trainable = false;
  },
  frozenParams: (l) => (l.adapter ? l.units * l.inputs + (l.bias ? l.units : 0) : 0),
  withAdapter: (l, adapter) => dense(l.inputs, l.units, { ...present(l, ['bias', 'trainable', 'weights']), adapter }),
  revive: (s) => dense(s.inputs as number, s.units as number, present(s, ['bias', 'trainable', 'weights', 'adapter'])),
};

declare module './kind' {
  interface LayerTypes {
    /** A `dense` layer ({@link DenseLayer}). */
    dense: DenseLayer;
  }
}
registerKind(['dense'], denseKind);
