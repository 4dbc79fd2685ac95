/**
 * Multi-head self-attention over a sequence (T, D), and the pre-LN transformer block built from it. Factories, types
 * and what the layer table needs (kind.ts); the math is native (native/units/attention.cpp).
 */
import { invalidArg, is, optionsObject } from '../validate';
import { residual } from './blocks';
import { mlp } from './dense';
import { type Layer, type LayerKind, label, present, registerKind } from './kind';
import { layerNorm } from './norm';
import { type SequenceShape, sequenceShapeOf } from './shapes';

/**
 * Multi-head self-attention over a sequence (T, D): per position Q, K, V = x W_qkvᵀ + b_qkv (D -> 3D), per head of
 * D / heads values softmax(Q Kᵀ / √(D / heads) + mask) V, then the output projection (D -> D). Parameters:
 * attention<n>.qkv.weight (3D, D) and .bias, attention<n>.out.weight (D, D) and .bias.
 */
export type MultiHeadAttentionLayer = {
  /** The layer kind. */
  type: 'multiHeadAttention';
  /** Attention heads (divides the features D). */
  heads: number;
  /** Whether position t attends to positions ≤ t only (a language model's mask). */
  causal: boolean;
  /** [steps, features] of the input, when given (required on a model's first layer). */
  inputShape?: SequenceShape;
};

/**
 * Multi-head self-attention; `heads` must divide the features, `causal` (default false) masks the future. Under ULR
 * the noise goes on the two projections' outputs (the softmax needs no derivative).
 */
export function multiHeadAttention(options: {
  heads: number;
  causal?: boolean;
  inputShape?: SequenceShape;
}): MultiHeadAttentionLayer {
  const o = optionsObject('multiHeadAttention', options, ['heads', 'causal', 'inputShape']);
  if (!is.positiveInteger(o.heads) || (o.heads as number) > 65536)
    throw invalidArg('heads', 'positive integer', o.heads);
  if (o.causal !== undefined && !is.bool(o.causal)) throw invalidArg('causal', 'boolean', o.causal);
  const layer: MultiHeadAttentionLayer = {
    type: 'multiHeadAttention',
    heads: o.heads as number,
    causal: (o.causal as boolean | undefined) ?? false,
  };
  const shape = sequenceShapeOf(o.inputShape);
  if (shape) layer.inputShape = shape;
  return layer;
}

/**
 * The pre-LN transformer block (GPT-2) on a sequence of width `dim`, as two residual layers to spread into a layer
 * list: x + attention(layerNorm(x)), then x + dense(gelu(dense(layerNorm(x)))) with a hidden width of `mlp`·dim.
 * Defaults: causal true, mlp 4.
 * @example
 * of.sequential([of.embedding({ vocab: 65, dim: 32, steps: 16 }), of.positionalEmbedding(), ...of.gptBlock({ dim: 32, heads: 4 }), of.layerNorm(), of.dense(32, 65)])
 */
export function gptBlock(options: { dim: number; heads: number; causal?: boolean; mlp?: number }): Layer[] {
  const o = optionsObject('gptBlock', options, ['dim', 'heads', 'causal', 'mlp']);
  if (!is.positiveInteger(o.dim)) throw invalidArg('dim', 'positive integer', o.dim);
  if (o.mlp !== undefined && !is.positiveInteger(o.mlp)) throw invalidArg('mlp', 'positive integer', o.mlp);
  const D = o.dim as number,
    hidden = D * ((o.mlp as number | undefined) ?? 4);
  return [
    residual([
      layerNorm(),
      multiHeadAttention({ heads: o.heads as number, causal: (o.causal as boolean | undefined) ?? true }),
    ]),
    residual([layerNorm(), ...mlp([D, hidden, D], 'gelu')]),
  ];
}

const attentionKind: LayerKind<MultiHeadAttentionLayer> = {
  toNative: ({ inputShape: _, ...l }) => [l],
  declared: (l) => l.inputShape,
  first: 'the first multiHeadAttention needs inputShape [steps, features]',
  parameterLayers: 2,
  label: (l) => label('multiHeadAttention', `${l.heads} heads`, l.causal && 'causal'),
  revive: (s) => multiHeadAttention(present(s, ['heads', 'causal', 'inputShape']) as { heads: number }),
};

declare module './kind' {
  interface LayerTypes {
    /** A `multiHeadAttention` layer ({@link MultiHeadAttentionLayer}). */
    multiHeadAttention: MultiHeadAttentionLayer;
  }
}
registerKind(['multiHeadAttention'], attentionKind);
