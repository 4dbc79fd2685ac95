/**
 * Layers: plain, serializable descriptions (tfjs-layers style) that stay data until a model is built.
 * A dense layer may be followed by one activation; noise for ULR goes into every dense pre-activation.
 */
import { ConfigError } from './errors';
import { invalidArg, is, optionsObject } from './validate';

/** Activation functions. `step` and `sign` have no useful derivative: only `ulr()` can train them. */
export const ACTIVATIONS = ['identity', 'relu', 'leakyRelu', 'tanh', 'sigmoid', 'gelu', 'step', 'sign'] as const;
export type ActivationName = (typeof ACTIVATIONS)[number];

/** A fully connected layer: `y = x Wᵀ + b`, W of shape (units, inputs). */
export type DenseLayer = { type: 'dense'; inputs: number; units: number; bias: boolean; trainable?: boolean };
/** An elementwise activation. */
export type ActivationLayer = { type: 'activation'; activation: ActivationName; alpha?: number };
/** Any layer. */
export type Layer = DenseLayer | ActivationLayer;

/** Options of {@link dense}. */
export type DenseOptions = {
  /** Whether the layer has a bias vector. Defaults to `true`. */
  bias?: boolean;
  /**
   * `false` freezes the layer (fine-tuning): no gradient, no update. Only a leading run of dense layers can be
   * frozen; their clean forward then runs once per sample. Defaults to `true`.
   */
  trainable?: boolean;
};

/**
 * A dense (fully connected) layer with `inputs` in-features and `units` out-features.
 * Weights are Glorot-uniform from the model seed, biases zero.
 */
export function dense(inputs: number, units: number, options?: DenseOptions): DenseLayer {
  if (!is.positiveInteger(inputs)) throw invalidArg('inputs', 'positive integer', inputs);
  if (!is.positiveInteger(units)) throw invalidArg('units', 'positive integer', units);
  const o = optionsObject('dense', options, ['bias', 'trainable']);
  if (o.bias !== undefined && !is.bool(o.bias)) throw invalidArg('bias', 'boolean', o.bias);
  if (o.trainable !== undefined && !is.bool(o.trainable)) throw invalidArg('trainable', 'boolean', o.trainable);
  const layer: DenseLayer = { type: 'dense', inputs, units, bias: (o.bias as boolean | undefined) ?? true };
  if (o.trainable === false) layer.trainable = false;
  return layer;
}

/** An activation layer by name. */
export function activation(name: ActivationName, options?: { alpha?: number }): ActivationLayer {
  if (!(ACTIVATIONS as readonly string[]).includes(name)) {
    throw invalidArg('activation', `one of ${ACTIVATIONS.join(', ')}`, name);
  }
  const o = optionsObject(name, options, ['alpha']);
  if (o.alpha !== undefined) {
    if (name !== 'leakyRelu') throw new ConfigError(`option 'alpha' applies to leakyRelu only, not ${name}`);
    if (!is.number(o.alpha)) throw invalidArg('alpha', 'finite number', o.alpha);
    return { type: 'activation', activation: name, alpha: o.alpha };
  }
  return { type: 'activation', activation: name };
}

/** max(0, x). */
export const relu = (): ActivationLayer => activation('relu');
/** x for x > 0, alpha·x otherwise. `alpha` defaults to `0.01`. */
export const leakyRelu = (options?: { alpha?: number }): ActivationLayer =>
  activation('leakyRelu', { alpha: options?.alpha ?? 0.01 });
/** Hyperbolic tangent. */
export const tanh = (): ActivationLayer => activation('tanh');
/** Logistic sigmoid 1 / (1 + e^-x). */
export const sigmoid = (): ActivationLayer => activation('sigmoid');
/** GELU, exact erf form: x·Φ(x). */
export const gelu = (): ActivationLayer => activation('gelu');
/** The identity (no-op), for explicitness. */
export const identity = (): ActivationLayer => activation('identity');
/** Heaviside step: 1 for x > 0, else 0. Not differentiable: train with `ulr()`. */
export const step = (): ActivationLayer => activation('step');
/** Sign: -1, 0 or 1. Not differentiable: train with `ulr()`. */
export const sign = (): ActivationLayer => activation('sign');
