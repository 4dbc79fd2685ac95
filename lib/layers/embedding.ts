/**
 * The learned tables of a token model: `embedding` (token ids -> vectors) and `positionalEmbedding` (a learned vector
 * per position, GPT-2 style). Factories, types and what the layer table needs (kind.ts); the math is native.
 */
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, label, registerKind } from './kind';

/**
 * Token embedding: each row of x is `steps` token ids (floats holding integers in [0, vocab)); the output is the
 * sequence (steps, dim) of their table rows. Table (vocab, dim), uniform with variance 1 (±√3) from the model seed.
 */
export type EmbeddingLayer = {
  /** The layer kind. */
  type: 'embedding';
  /** Token ids are integers in [0, vocab). */
  vocab: number;
  /** Values per token (the model width D). */
  dim: number;
  /** Tokens per row of x (T): the model's input is [steps]. */
  steps: number;
};
/** A learned vector added at each position of a sequence (T, D): table (T, D), GPT-2's learned positions. */
export type PositionalEmbeddingLayer = {
  /** The layer kind. */
  type: 'positionalEmbedding';
};

/**
 * Token embedding, the first layer of a token model: x holds `steps` token ids per row (integers in [0, vocab) as
 * floats; anything else is a DataError before training or inference reads it), the output is (steps, dim).
 * Input gradients are undefined for such a model (ERR_CONFIG).
 * @example
 * of.sequential([of.embedding({ vocab: 65, dim: 32, steps: 16 }), of.positionalEmbedding(), ...of.gptBlock({ dim: 32, heads: 4 }), of.dense(32, 65)])
 */
export function embedding(options: { vocab: number; dim: number; steps: number }): EmbeddingLayer {
  const o = optionsObject('embedding', options, ['vocab', 'dim', 'steps']);
  if (!is.positiveInteger(o.vocab) || (o.vocab as number) > 1 << 24)
    throw invalidArg('vocab', 'positive integer', o.vocab);
  if (!is.positiveInteger(o.dim) || (o.dim as number) > 1 << 20) throw invalidArg('dim', 'positive integer', o.dim);
  if (!is.positiveInteger(o.steps) || (o.steps as number) > 1 << 24)
    throw invalidArg('steps', 'positive integer', o.steps);
  return { type: 'embedding', vocab: o.vocab as number, dim: o.dim as number, steps: o.steps as number };
}
/** Adds a learned vector per position to a sequence (after an embedding). Table uniform with variance 1 (±√3). */
export const positionalEmbedding = (): PositionalEmbeddingLayer => ({ type: 'positionalEmbedding' });

const embeddingKind: LayerKind<EmbeddingLayer> = {
  toNative: (l) => [{ type: 'embedding', vocab: l.vocab, dim: l.dim }],
  declared: (l) => [l.steps],
  label: (l) => label('embedding', `${l.vocab} tokens`, `${l.dim} dims`),
  revive: (s) => embedding({ vocab: s.vocab as number, dim: s.dim as number, steps: s.steps as number }),
};

const positionalEmbeddingKind: LayerKind<PositionalEmbeddingLayer> = {
  toNative: (l) => [{ ...l }],
  declared: () => undefined,
  first: 'positionalEmbedding needs a sequence input (an embedding before it)',
  label: (l) => l.type,
  revive: () => positionalEmbedding(),
};

declare module './kind' {
  interface LayerTypes {
    /** An `embedding` layer ({@link EmbeddingLayer}). */
    embedding: EmbeddingLayer;
    /** A `positionalEmbedding` layer ({@link PositionalEmbeddingLayer}). */
    positionalEmbedding: PositionalEmbeddingLayer;
  }
}
registerKind(['embedding'], embeddingKind);
registerKind(['positionalEmbedding'], positionalEmbeddingKind);
