/**
 * Graph convolution (Kipf & Welling 2017) on one undirected graph: node features (nodes, F) -> Â X Wᵀ + b,
 * (nodes, units), with Â = D^-1/2 (A + I) D^-1/2. Factory, types and what the layer table needs (kind.ts).
 */
import { ShapeError } from '../errors';
import { invalidArg, is, optionsObject } from '../validate';
import { type LayerKind, registerKind, label, present } from './kind';
import { type SequenceShape, sequenceShapeOf } from './shapes';

/** An undirected graph on nodes 0..nodes-1. */
export type Graph = {
  /** Number of nodes. */
  nodes: number;
  /** Undirected edges as [i, j] pairs of node indices. */
  edges: [number, number][];
};
/**
 * A graph convolution (Kipf & Welling 2017): node features (nodes, F) -> Â X Wᵀ + b, (nodes, units), with
 * Â = D^-1/2 (A + I) D^-1/2. A row of x holds every node's features (the whole graph is one sample).
 */
export type GraphConvLayer = {
  /** The layer kind. */
  type: 'graphConv';
  /** Output features per node. */
  units: number;
  /** The graph whose normalized adjacency Â mixes the nodes. */
  graph: Graph;
  /** [nodes, features] of the input, when given (required on a model's first layer). */
  inputShape?: SequenceShape;
};

/**
 * A graph convolution layer on `graph`; `inputShape` [nodes, features] on the first layer. Train it with
 * per-node labels (crossEntropy; -1 = unlabeled): the model's output is every node's class scores.
 * @example
 * const k = of.datasets.karate();
 * of.sequential([of.graphConv({ graph: k.graph, units: 16, inputShape: [34, 34] }), of.relu(), of.graphConv({ graph: k.graph, units: 2 })])
 */
export function graphConv(options: { units: number; graph: Graph; inputShape?: SequenceShape }): GraphConvLayer {
  const o = optionsObject('graphConv', options, ['units', 'graph', 'inputShape']);
  if (!is.positiveInteger(o.units) || (o.units as number) > 1 << 20)
    throw invalidArg('units', 'positive integer', o.units);
  const g = o.graph as Graph | undefined;
  if (!is.plainObject(g) || !is.positiveInteger(g.nodes) || !Array.isArray(g.edges))
    throw invalidArg('graph', '{ nodes, edges: [[i, j], ...] }', g);
  for (const e of g.edges) {
    if (!Array.isArray(e) || e.length !== 2 || !e.every((v) => is.integer(v) && v >= 0 && v < g.nodes)) {
      throw invalidArg('graph.edges', `[i, j] pairs of node indices in [0, ${g.nodes})`, e);
    }
  }
  const layer: GraphConvLayer = {
    type: 'graphConv',
    units: o.units as number,
    graph: { nodes: g.nodes, edges: g.edges.map((e) => [e[0], e[1]] as [number, number]) },
  };
  const shape = sequenceShapeOf(o.inputShape);
  if (shape) {
    if (shape[0] !== g.nodes) throw new ShapeError(`graphConv: inputShape has ${shape[0]} nodes, the graph ${g.nodes}`);
    layer.inputShape = shape;
  }
  return layer;
}

const graphConvKind: LayerKind<GraphConvLayer> = {
  toNative: ({ inputShape: _, ...l }) => [l],
  declared: (l) => l.inputShape,
  first: 'the first graphConv needs inputShape [nodes, features]',
  label: (l) => label('graphConv', `${l.units} units`, `${l.graph.nodes} nodes`, `${l.graph.edges.length} edges`),
  revive: (s) => graphConv(present(s, ['units', 'graph', 'inputShape']) as Parameters<typeof graphConv>[0]),
};

declare module './kind' {
  interface LayerTypes {
    /** A `graphConv` layer ({@link GraphConvLayer}). */
    graphConv: GraphConvLayer;
  }
}
registerKind(['graphConv'], graphConvKind);
