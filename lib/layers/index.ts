/**
 * Layers: plain, serializable descriptions (tfjs-layers style) that stay data until a model is built. One file per
 * kind (or tight family) holds its factory, types and docs, and registers itself in the table of kinds (kind.ts);
 * this file is the public surface of them all. What the layers compute together (shapes, parameter tensors) is the
 * native model's answer: see topology.ts.
 */
export * from './activation';
export * from './attention';
export * from './blocks';
export * from './conv2d';
export * from './dense';
export * from './dropout';
export * from './embedding';
export * from './flatten';
export * from './graph_conv';
export * from './norm';
export * from './pool';
export * from './recurrent';
export * from './sequence';
export type { Layer, LayerTypes } from './kind';
export type { ImageShape, Padding, QuantizedWeights, SequenceShape } from './shapes';
