/**
 * Layers: plain, serializable descriptions (tfjs-layers style) that stay data until a model is built. One file per
 * kind (or tight family) holds its factory, types and docs; this file is the one table that lists every kind.
 * What the layers compute together (shapes, parameter tensors) is the native model's answer: see topology.ts.
 */
import { type ActivationLayer, activationKind } from './activation';
import { type MultiHeadAttentionLayer, attentionKind } from './attention';
import { type ConcatLayer, type ResidualLayer, blockKind } from './blocks';
import { type Conv2dLayer, conv2dKind } from './conv2d';
import { type DenseLayer, denseKind } from './dense';
import { type DropoutLayer, dropoutKind } from './dropout';
import {
  type EmbeddingLayer,
  type PositionalEmbeddingLayer,
  embeddingKind,
  positionalEmbeddingKind,
} from './embedding';
import { type FlattenLayer, flattenKind } from './flatten';
import { type GraphConvLayer, graphConvKind } from './graph_conv';
import type { LayerKind } from './kind';
import { type BatchNormLayer, type GroupNormLayer, type LayerNormLayer, normKind } from './norm';
import { type GlobalAvgPoolLayer, type Pool2dLayer, globalAvgPoolKind, pool2dKind } from './pool';
import { type RecurrentLayer, recurrentKind } from './recurrent';
import { type RepeatLayer, type TimeMeanLayer, repeatKind, timeMeanKind } from './sequence';

export {
  ACTIVATIONS,
  type ActivationLayer,
  type ActivationName,
  activation,
  gelu,
  identity,
  leakyRelu,
  quantize,
  relu,
  sigmoid,
  sign,
  step,
  tanh,
} from './activation';
export { type MultiHeadAttentionLayer, gptBlock, multiHeadAttention } from './attention';
export { type ConcatLayer, type ResidualLayer, concat, residual } from './blocks';
export { type Conv2dLayer, type Conv2dOptions, conv2d } from './conv2d';
export { type DenseLayer, type DenseOptions, dense } from './dense';
export { type DropoutLayer, dropout } from './dropout';
export { type EmbeddingLayer, type PositionalEmbeddingLayer, embedding, positionalEmbedding } from './embedding';
export { type FlattenLayer, flatten } from './flatten';
export { type Graph, type GraphConvLayer, graphConv } from './graph_conv';
export { type BatchNormLayer, type GroupNormLayer, type LayerNormLayer, batchNorm, groupNorm, layerNorm } from './norm';
export {
  type GlobalAvgPoolLayer,
  type Pool2dLayer,
  type Pool2dOptions,
  avgPool2d,
  globalAvgPool,
  maxPool2d,
} from './pool';
export { type RecurrentLayer, type RecurrentOptions, gru, lif, lstm, rnn } from './recurrent';
export { type RepeatLayer, type TimeMeanLayer, repeat, timeMean } from './sequence';
export type { ImageShape, Padding, QuantizedWeights, SequenceShape } from './shapes';

/** Any layer. */
export type Layer =
  | DenseLayer
  | ActivationLayer
  | Conv2dLayer
  | Pool2dLayer
  | GlobalAvgPoolLayer
  | FlattenLayer
  | RecurrentLayer
  | RepeatLayer
  | TimeMeanLayer
  | GraphConvLayer
  | ResidualLayer
  | ConcatLayer
  | DropoutLayer
  | LayerNormLayer
  | BatchNormLayer
  | GroupNormLayer
  | EmbeddingLayer
  | PositionalEmbeddingLayer
  | MultiHeadAttentionLayer;

/** @internal Every layer kind, by its `type`: the one table of kinds. */
export const LAYER_KINDS: Readonly<Record<Layer['type'], LayerKind<Layer>>> = {
  dense: denseKind,
  activation: activationKind,
  conv2d: conv2dKind,
  maxPool2d: pool2dKind,
  avgPool2d: pool2dKind,
  globalAvgPool: globalAvgPoolKind,
  flatten: flattenKind,
  rnn: recurrentKind,
  gru: recurrentKind,
  lstm: recurrentKind,
  lif: recurrentKind,
  repeat: repeatKind,
  timeMean: timeMeanKind,
  graphConv: graphConvKind,
  residual: blockKind,
  concat: blockKind,
  dropout: dropoutKind,
  layerNorm: normKind,
  batchNorm: normKind,
  groupNorm: normKind,
  embedding: embeddingKind,
  positionalEmbedding: positionalEmbeddingKind,
  multiHeadAttention: attentionKind,
};

/** @internal The kind of a layer `type`, or undefined for anything else (an own key only: never `toString`). */
export function kindOf(type: unknown): LayerKind<Layer> | undefined {
  return typeof type === 'string' && Object.hasOwn(LAYER_KINDS, type) ? LAYER_KINDS[type as Layer['type']] : undefined;
}
