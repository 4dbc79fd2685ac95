/**
 * The 2-D convolution over channels-last images: kernel (filters, kh, kw, channels), one bias per filter.
 * Factory, options and what the layer table needs (kind.ts); output sizes come from the native model.
 */
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, registerKind, label, present } from './kind';
import {
  type ImageShape,
  type Padding,
  type QuantizedWeights,
  imageShapeOf,
  pairLabel,
  paddingLabel,
  pairOf,
  paddingOf,
  weightsOf,
} from './shapes';

/** A 2-D convolution over channels-last images: kernel (filters, kh, kw, channels), one bias per filter. */
export type Conv2dLayer = {
  /** The layer kind. */
  type: 'conv2d';
  /** Output channels. */
  filters: number;
  /** Kernel height and width. */
  kernel: [number, number];
  /** Vertical and horizontal stride. */
  strides: [number, number];
  /** Zero padding. */
  padding: Padding;
  /** Vertical and horizontal dilation (1: dense kernel). */
  dilation: [number, number];
  /** Whether each filter has a bias. */
  bias: boolean;
  /** [H, W, C] of the input images, when given (required on a model's first layer). */
  inputShape?: ImageShape;
  /** Binary or ternary forward weights; absent means real weights. */
  weights?: QuantizedWeights;
};

/** Options of {@link conv2d}. */
export type Conv2dOptions = {
  /** Output channels. */
  filters: number;
  /** Kernel height and width (one number: square). */
  kernel: number | [number, number];
  /** Defaults to `1`. */
  strides?: number | [number, number];
  /** `'valid'` (default), `'same'`, or explicit [top, left] zero padding (the same at bottom/right). */
  padding?: 'valid' | 'same' | number | [number, number];
  /** Defaults to `1`. */
  dilation?: number | [number, number];
  /** Defaults to `true`. */
  bias?: boolean;
  /** [H, W, C] of the input images; required on the first layer of a model. */
  inputShape?: ImageShape;
  /** Binary or ternary weights in the forward (see {@link QuantizedWeights}). Defaults to real weights. */
  weights?: QuantizedWeights;
};

/**
 * A 2-D convolution on channels-last images, computed as im2row patches times the kernel in one GEMM.
 * Weights are Glorot-uniform (fans kh·kw·C and kh·kw·filters), biases zero. ULR puts its noise on every output
 * (position, channel) of the pre-activation.
 * @example
 * of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' })
 */
export function conv2d(options: Conv2dOptions): Conv2dLayer {
  const o = optionsObject('conv2d', options, [
    'filters',
    'kernel',
    'strides',
    'padding',
    'dilation',
    'bias',
    'inputShape',
    'weights',
  ]);
  if (!is.positiveInteger(o.filters) || (o.filters as number) > 1 << 20)
    throw invalidArg('filters', 'positive integer', o.filters);
  if (o.bias !== undefined && !is.bool(o.bias)) throw invalidArg('bias', 'boolean', o.bias);
  const layer: Conv2dLayer = {
    type: 'conv2d',
    filters: o.filters as number,
    kernel: pairOf('kernel', o.kernel, 1),
    strides: pairOf('strides', o.strides ?? 1, 1),
    padding: paddingOf(o.padding),
    dilation: pairOf('dilation', o.dilation ?? 1, 1),
    bias: (o.bias as boolean | undefined) ?? true,
  };
  const shape = imageShapeOf(o.inputShape);
  if (shape) layer.inputShape = shape;
  const q = weightsOf(o.weights);
  if (q) layer.weights = q;
  return layer;
}

const conv2dKind: LayerKind<Conv2dLayer> = {
  toNative: ({ inputShape: _, ...l }) => [l],
  declared: (l) => l.inputShape,
  first: 'the first spatial layer needs inputShape [height, width, channels]',
  label: (l) =>
    label(
      'conv2d',
      `${l.filters} filters`,
      pairLabel(l.kernel),
      (l.strides[0] !== 1 || l.strides[1] !== 1) && `stride ${pairLabel(l.strides)}`,
      paddingLabel(l.padding),
      (l.dilation[0] !== 1 || l.dilation[1] !== 1) && `dilation ${pairLabel(l.dilation)}`,
      !l.bias && 'no bias',
      l.weights && `${l.weights} weights`,
    ),
  revive: (s) =>
    conv2d(
      present(s, [
        'filters',
        'kernel',
        'strides',
        'padding',
        'dilation',
        'bias',
        'inputShape',
        'weights',
      ]) as Conv2dOptions,
    ),
};

declare module './kind' {
  interface LayerTypes {
    /** A `conv2d` layer ({@link Conv2dLayer}). */
    conv2d: Conv2dLayer;
  }
}
registerKind(['conv2d'], conv2dKind);
