/**
 * Elementwise activations: the layer that follows a computing layer (at most one each; after a residual block it
 * applies to the sum). Factories by name, and what the layer table needs (kind.ts).
 */
import { ConfigError } from '../errors';
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, registerKind, label, noDeclaredInput, present } from './kind';

/** Activation functions. `step` and `sign` have no useful derivative: only `ulr()` can train them. */
export const ACTIVATIONS = [
  'identity',
  'relu',
  'leakyRelu',
  'tanh',
  'sigmoid',
  'gelu',
  'step',
  'sign',
  'quantize',
] as const;
/** One of {@link ACTIVATIONS}. */
export type ActivationName = (typeof ACTIVATIONS)[number];

/** An elementwise activation. */
export type ActivationLayer = {
  /** The layer kind. */
  type: 'activation';
  /** Which function. */
  activation: ActivationName;
  /** The negative slope of `leakyRelu`. */
  alpha?: number;
  /** The number of output levels of `quantize` (2^bits). */
  levels?: number;
};

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
/**
 * Quantized activation: clamps to [0, 1] and rounds to 2^bits levels (a `bits`-bit unsigned activation, as in
 * quantized networks). Not differentiable: train with `ulr()`. `bits` defaults to 2.
 */
export function quantize(options?: { bits?: number }): ActivationLayer {
  const o = optionsObject('quantize', options, ['bits']);
  const bits = o.bits ?? 2;
  if (!is.integer(bits) || (bits as number) < 1 || (bits as number) > 16)
    throw invalidArg('bits', 'integer in [1, 16]', bits);
  return { type: 'activation', activation: 'quantize', levels: 2 ** (bits as number) };
}

const activationKind: LayerKind<ActivationLayer> = {
  toNative: (l) => [{ ...l }],
  declared: noDeclaredInput,
  first: 'the first layer must be dense, conv2d or a pooling layer (an activation needs a layer before it)',
  label: (l) =>
    label(l.activation, l.alpha !== undefined && `α=${l.alpha}`, l.levels !== undefined && `${l.levels} levels`),
  revive: (s) => {
    if (s.activation !== 'quantize') return activation(s.activation as ActivationName, present(s, ['alpha']));
    if (!is.integer(s.levels)) throw invalidArg('levels', 'a power of 2 in [2, 65536]', s.levels);
    return quantize({ bits: Math.log2(s.levels) });
  },
};

declare module './kind' {
  interface LayerTypes {
    /** A `activation` layer ({@link ActivationLayer}). */
    activation: ActivationLayer;
  }
}
registerKind(['activation'], activationKind);
