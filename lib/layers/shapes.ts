/**
 * Shapes and option readers that several layer kinds share: image and sequence shapes, padding, window pairs and
 * quantized weights. Plain checks on user input; no shape arithmetic (that is the native model's, see topology.ts).
 */
import { invalidArg, is } from '../validate';

/** Height, width and channels of an image; images are channels-last (each row of x is H·W·C values). */
export type ImageShape = [number, number, number];
/** Steps and features per step of a sequence input (each row of x is steps·features values, step-major). */
export type SequenceShape = [number, number];
/** Zero padding: `'valid'` (none), `'same'` (output = ceil(input / stride), TensorFlow's rule), or [top, left]. */
export type Padding = 'valid' | 'same' | [number, number];
/**
 * Weights the forward computes with, from the real ones kept for training: `'binary'`: sign(W)·mean|W| per output
 * (XNOR-Net's scaling); `'ternary'`: the same with the values |W| <= 0.7·mean|W| set to 0 (TWN). No derivative:
 * `ulr()` trains them (its estimate is for the quantized weights and updates the real ones); `bp()` refuses.
 */
export type QuantizedWeights = 'binary' | 'ternary';

/** @internal One integer or a pair of them, each in [min, 65536]. */
export function pairOf(name: string, v: unknown, min: number): [number, number] {
  const p = typeof v === 'number' ? [v, v] : v;
  if (
    !Array.isArray(p) ||
    p.length !== 2 ||
    !p.every((x) => is.integer(x) && (x as number) >= min && (x as number) <= 65536)
  ) {
    throw invalidArg(name, `integer >= ${min} or a pair of them`, v);
  }
  return [p[0] as number, p[1] as number];
}

/** @internal */
export function paddingOf(v: unknown): Padding {
  if (v === undefined || v === 'valid') return 'valid';
  if (v === 'same') return 'same';
  return pairOf('padding', v, 0);
}

/** @internal */
export function imageShapeOf(v: unknown): ImageShape | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => is.positiveInteger(x) && (x as number) <= 65536)) {
    throw invalidArg('inputShape', '[height, width, channels] of positive integers', v);
  }
  return [v[0], v[1], v[2]] as ImageShape;
}

/** @internal */
export function sequenceShapeOf(v: unknown): SequenceShape | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => is.positiveInteger(x) && (x as number) <= 1 << 24)) {
    throw invalidArg('inputShape', '[steps, features] of positive integers', v);
  }
  return [v[0], v[1]] as SequenceShape;
}

/** @internal `'real'` (or absent) reads as undefined: real weights. */
export function weightsOf(v: unknown): QuantizedWeights | undefined {
  if (v === undefined || v === 'real') return undefined;
  if (v === 'binary' || v === 'ternary') return v;
  throw invalidArg('weights', "'real', 'binary' or 'ternary'", v);
}

/** @internal "3×3": a window pair for labels. */
export const pairLabel = (p: [number, number]): string => `${p[0]}×${p[1]}`;

/** @internal The label of a padding other than the default. */
export const paddingLabel = (p: Padding): string | undefined =>
  p === 'valid' ? undefined : p === 'same' ? 'same' : `pad ${pairLabel(p)}`;
