/**
 * Normalization layers over the last axis (features; an image's channels; a step's features), each with a learned
 * gain and bias per value of that axis: layer, batch and group normalization. Factories and the layer table's needs.
 */
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, registerKind, label, noDeclaredInput } from './kind';

/** Layer normalization over the last axis of each position (features; an image's channels; a step's features), with a learned gain and bias per value of that axis. */
export type LayerNormLayer = {
  /** The layer kind. */
  type: 'layerNorm';
};
/**
 * Batch normalization per channel (the last axis) over a batch's rows and positions, with a learned gain and bias.
 * Training uses the batch's statistics (ULR: the clean batch's, for every noisy copy) and moves running statistics
 * by momentum 0.1; inference uses the running statistics (kept in checkpoints).
 */
export type BatchNormLayer = {
  /** The layer kind. */
  type: 'batchNorm';
};
/** Group normalization: channels in `groups` groups, each normalized over all positions of a sample (Wu & He 2018). */
export type GroupNormLayer = {
  /** The layer kind. */
  type: 'groupNorm';
  /** Number of channel groups (divides the channels). */
  groups: number;
};

/**
 * Layer normalization: each position's values along the last axis get mean 0 and variance 1 (eps 1e-5), then a
 * gain (starts at 1) and a bias (starts at 0) per value. Under ULR its output takes noise like any layer with
 * parameters, and the gain's LR gradient is Σ w·s(ε)·x̂ / σ.
 */
export const layerNorm = (): LayerNormLayer => ({ type: 'layerNorm' });
/**
 * Batch normalization: per channel over the batch (training) or with running statistics (inference); eps 1e-5,
 * momentum 0.1. Under ULR the noisy copies use the clean batch's statistics (the paper keeps batch norm in
 * evaluation mode in its noisy passes), computed by one clean pass over the batch.
 */
export const batchNorm = (): BatchNormLayer => ({ type: 'batchNorm' });
/**
 * Group normalization: the channels (last axis) split into `groups` groups; each group of a sample is normalized
 * over all its positions and channels (eps 1e-5), then a gain and a bias per channel. `groups` must divide the
 * channels; 1 group normalizes the whole sample.
 */
export function groupNorm(options: { groups: number }): GroupNormLayer {
  const o = optionsObject('groupNorm', options, ['groups']);
  if (!is.positiveInteger(o.groups)) throw invalidArg('groups', 'positive integer', o.groups);
  return { type: 'groupNorm', groups: o.groups as number };
}

// Layer, batch and group normalization.
const normKind: LayerKind<LayerNormLayer | BatchNormLayer | GroupNormLayer> = {
  toNative: (l) => [{ ...l }],
  declared: noDeclaredInput,
  first: 'normalization needs a layer before it',
  label: (l) => (l.type === 'groupNorm' ? label(l.type, `${l.groups} groups`) : l.type),
  revive: (s) =>
    s.type === 'groupNorm'
      ? groupNorm({ groups: s.groups as number })
      : s.type === 'batchNorm'
        ? batchNorm()
        : layerNorm(),
};

declare module './kind' {
  interface LayerTypes {
    /** A `layerNorm` layer ({@link LayerNormLayer}). */
    layerNorm: LayerNormLayer;
    /** A `batchNorm` layer ({@link BatchNormLayer}). */
    batchNorm: BatchNormLayer;
    /** A `groupNorm` layer ({@link GroupNormLayer}). */
    groupNorm: GroupNormLayer;
  }
}
registerKind(['layerNorm', 'batchNorm', 'groupNorm'], normKind);
