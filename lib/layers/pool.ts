/**
 * Pooling over channels-last images: max and average pooling over windows, and global average pooling
 * (H, W, C) -> C. Factories, options and what the layer table needs (kind.ts).
 */
import { optionsObject } from '../validate';
import { type LayerKind, registerKind, label, present } from './kind';
import { type ImageShape, type Padding, imageShapeOf, paddingLabel, pairLabel, pairOf, paddingOf } from './shapes';

/** Max or average pooling over windows, per channel. */
export type Pool2dLayer = {
  /** The layer kind: max or average. */
  type: 'maxPool2d' | 'avgPool2d';
  /** Window height and width. */
  kernel: [number, number];
  /** Vertical and horizontal stride. */
  strides: [number, number];
  /** Zero padding (padding taps never count). */
  padding: Padding;
  /** Always [1, 1]: pooling windows are dense. */
  dilation: [1, 1];
  /** [H, W, C] of the input images, when given (required on a model's first layer). */
  inputShape?: ImageShape;
};
/** The mean over all positions of each channel: an image (H, W, C) becomes C values. */
export type GlobalAvgPoolLayer = {
  /** The layer kind. */
  type: 'globalAvgPool';
};

/** Options of {@link maxPool2d} and {@link avgPool2d}. */
export type Pool2dOptions = {
  /** Window height and width. Defaults to `2`. */
  size?: number | [number, number];
  /** Defaults to the window size. */
  strides?: number | [number, number];
  /** `'valid'` (default), `'same'` or [top, left]; padding taps never count (max ignores them, avg divides by the taps inside). */
  padding?: 'valid' | 'same' | number | [number, number];
  /** [H, W, C] of the input images, when this is the first layer. */
  inputShape?: ImageShape;
};

function pool(type: 'maxPool2d' | 'avgPool2d', options?: Pool2dOptions): Pool2dLayer {
  const o = optionsObject(type, options, ['size', 'strides', 'padding', 'inputShape']);
  const kernel = pairOf('size', o.size ?? 2, 1);
  const layer: Pool2dLayer = {
    type,
    kernel,
    strides: pairOf('strides', o.strides ?? kernel, 1),
    padding: paddingOf(o.padding),
    dilation: [1, 1],
  };
  const shape = imageShapeOf(o.inputShape);
  if (shape) layer.inputShape = shape;
  return layer;
}

/** Max pooling per channel (BP routes the gradient to the first maximal tap). */
export const maxPool2d = (options?: Pool2dOptions): Pool2dLayer => pool('maxPool2d', options);
/** Average pooling per channel. */
export const avgPool2d = (options?: Pool2dOptions): Pool2dLayer => pool('avgPool2d', options);
/** Global average pooling: (H, W, C) -> C. */
export const globalAvgPool = (): GlobalAvgPoolLayer => ({ type: 'globalAvgPool' });

const FIRST_SPATIAL = 'the first spatial layer needs inputShape [height, width, channels]';

// Max and average pooling.
const pool2dKind: LayerKind<Pool2dLayer> = {
  toNative: ({ inputShape: _, ...l }) => [l],
  declared: (l) => l.inputShape,
  first: FIRST_SPATIAL,
  label: (l) =>
    label(
      l.type,
      pairLabel(l.kernel),
      (l.strides[0] !== l.kernel[0] || l.strides[1] !== l.kernel[1]) && `stride ${pairLabel(l.strides)}`,
      paddingLabel(l.padding),
    ),
  revive: (s) => {
    const d = s.dilation;
    if (!Array.isArray(d) || d.length !== 2 || d[0] !== 1 || d[1] !== 1) throw new Error('bad dilation');
    const options = { size: s.kernel, ...present(s, ['strides', 'padding', 'inputShape']) } as Pool2dOptions;
    return s.type === 'maxPool2d' ? maxPool2d(options) : avgPool2d(options);
  },
};

const globalAvgPoolKind: LayerKind<GlobalAvgPoolLayer> = {
  toNative: (l) => [{ ...l }],
  declared: () => undefined,
  first: FIRST_SPATIAL,
  label: (l) => l.type,
  revive: () => globalAvgPool(),
};

declare module './kind' {
  interface LayerTypes {
    /** A `maxPool2d` layer ({@link Pool2dLayer}). */
    maxPool2d: Pool2dLayer;
    /** A `avgPool2d` layer ({@link Pool2dLayer}). */
    avgPool2d: Pool2dLayer;
    /** A `globalAvgPool` layer ({@link GlobalAvgPoolLayer}). */
    globalAvgPool: GlobalAvgPoolLayer;
  }
}
registerKind(['maxPool2d', 'avgPool2d'], pool2dKind);
registerKind(['globalAvgPool'], globalAvgPoolKind);
