/**
 * Blocks around inner layers f: `residual` (out = x + f(x), ResNet) and `concat` (out = [x, f(x)] along the last
 * axis, DenseNet). The native spec gets them flattened: begin, the inner layers, end.
 */
import { ConfigError } from '../errors';
import { invalidArg, is } from '../validate';
import { type Layer, type LayerKind, label, registerKind } from './kind';

/**
 * A residual block: out = x + f(x), f the inner layers (whose output has the input's shape). An activation layer
 * right after the block applies to the sum (ResNet's relu(x + f(x))).
 */
export type ResidualLayer = {
  /** The layer kind. */
  type: 'residual';
  /** The inner layers f. */
  layers: Layer[];
};
/**
 * A concatenation block: out = [x, f(x)] along the last axis (features; channels of an image; features of each
 * step), as in DenseNet. f must keep the positions (image size, steps).
 */
export type ConcatLayer = {
  /** The layer kind. */
  type: 'concat';
  /** The inner layers f. */
  layers: Layer[];
};

/**
 * A residual block around `layers` (out = x + f(x)); put an activation after it for relu(x + f(x)). Blocks do not
 * nest yet, and cannot be the first layer (the skip needs an input shape).
 * @example
 * of.residual([of.conv2d({ filters: 16, kernel: 3, padding: 'same' }), of.relu(), of.conv2d({ filters: 16, kernel: 3, padding: 'same' })])
 */
export function residual(layers: Layer[]): ResidualLayer {
  return { type: 'residual', layers: blockLayers('residual', layers) };
}

/**
 * A concatenation block around `layers`: out = [x, f(x)] along the last axis. Blocks do not nest yet.
 * @example
 * of.concat([of.conv2d({ filters: 8, kernel: 3, padding: 'same' }), of.relu()])  // channels C -> C + 8
 */
export function concat(layers: Layer[]): ConcatLayer {
  return { type: 'concat', layers: blockLayers('concat', layers) };
}

function blockLayers(kind: string, layers: Layer[]): Layer[] {
  if (!Array.isArray(layers) || layers.length === 0) throw invalidArg('layers', 'non-empty array of layers', layers);
  for (let i = 0; i < layers.length; i++) {
    // an index loop: forEach would skip the holes of a sparse array
    const l = layers[i];
    if (!is.plainObject(l) || typeof l.type !== 'string') throw invalidArg(`${kind} layers[${i}]`, 'a layer', l);
    if (l.type === 'residual' || l.type === 'concat') throw new ConfigError(`${kind} blocks do not nest yet`);
  }
  if (layers[0]!.type === 'activation') throw new ConfigError(`a ${kind} block cannot start with an activation`);
  return [...layers];
}

// Residual and concat blocks.
const blockKind: LayerKind<ResidualLayer | ConcatLayer> = {
  toNative: (l, inner) => [{ type: `${l.type}Begin` }, ...inner(l.layers), { type: `${l.type}End` }],
  declared: () => undefined,
  first: 'a block cannot be the first layer (its skip needs an input shape)',
  inner: (l) => l.layers,
  label: (l) => label(l.type, `${l.layers.length} layers`),
  revive: (s, inner) => (s.type === 'residual' ? residual(inner(s.layers)) : concat(inner(s.layers))),
};

declare module './kind' {
  interface LayerTypes {
    /** A `residual` layer ({@link ResidualLayer}). */
    residual: ResidualLayer;
    /** A `concat` layer ({@link ConcatLayer}). */
    concat: ConcatLayer;
  }
}
registerKind(['residual', 'concat'], blockKind);
