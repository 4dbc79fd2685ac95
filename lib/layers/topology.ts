/**
 * What a layer list computes: each layer's output shape and parameter tensors, and the model's input and output
 * sizes. The shapes are inferred once, natively (`describeLayers`: the layout Model::create makes); this file only
 * finds the model's input from the first layer, names where a native error points, and checks what the layers
 * alone declare (a dense layer's `inputs`, an `inputShape` past the first layer) against the shapes it returns.
 */
import { ConfigError, type ErrorCode, type OneForwardError, ShapeError, errorClasses } from '../errors';
import { type NativeLayer, type NativeLayerInfo, native } from '../native';
import { invalidArg, is } from '../validate';
import './index'; // every kind registered
import { type Layer, kindOf } from './kind';
import type { ImageShape, SequenceShape } from './shapes';

/** What a layer list computes: input and output sizes and the parameter tensors. */
export type Topology = {
  inputs: number;
  inputShape?: ImageShape | SequenceShape;
  outputs: number;
  /** Labels per sample: > 1 when the output is a sequence or node set classified per position. */
  groups: number;
  tensors: { name: string; shape: number[] }[];
  /**
   * Every layer in walk order (a block before its inner layers, which have `depth` 1): the shape of its output
   * ([features], [H, W, C] or [steps, features]) and how many of `tensors` it (with its inner layers) owns.
   */
  perLayer: { layer: Layer; depth: number; output: number[]; tensors: number }[];
};

/** @internal The native spec of a layer list: a block becomes begin, its layers, end. */
export function nativeLayers(layers: readonly Layer[]): NativeLayer[] {
  return layers.flatMap((l) => kindOf(l.type)!.toNative(l, nativeLayers));
}

// One entry per layer of the native spec, in its order: a layer, or the opening or closing of a block. `top` is
// the index of the model's layer that holds it.
type Entry = { layer: Layer; where: string; depth: number; role: 'layer' | 'open' | 'close'; top: number };

function entriesOf(layers: readonly Layer[]): Entry[] {
  const out: Entry[] = [];
  const visit = (list: readonly Layer[], prefix: string, depth: number, top?: number) => {
    for (let i = 0; i < list.length; i++) {
      // an index loop: forEach would skip the holes of a sparse array
      const l = list[i],
        where = `${prefix}[${i}]`,
        t = top ?? i;
      const kind = is.plainObject(l) ? kindOf(l.type) : undefined;
      if (!l || !kind) throw invalidArg(where, 'a layer (of.dense(), of.conv2d(), of.relu(), ...)', l);
      if (!kind.inner) {
        out.push({ layer: l, where, depth, role: 'layer', top: t });
        continue;
      }
      out.push({ layer: l, where, depth, role: 'open', top: t });
      visit(kind.inner(l), `${where}.layers`, depth + 1, t);
      out.push({ layer: l, where, depth, role: 'close', top: t });
    }
  };
  visit(layers, 'layers', 0);
  return out;
}

// The model's input, as its first layer declares it. A leading layer that neither declares one nor needs one
// (flatten) passes the flat input on.
function modelInput(layers: readonly Layer[]): { inputs: number; inputShape?: ImageShape | SequenceShape } {
  const i = layers.findIndex((l) => kindOf(l.type)!.first !== undefined || kindOf(l.type)!.declared(l));
  if (i < 0) throw new ConfigError('a model needs at least one dense, conv2d, pooling or recurrent layer');
  const kind = kindOf(layers[i]!.type)!;
  const shape = kind.declared(layers[i]!);
  if (!shape) throw new ConfigError(`layers[${i}]: ${kind.first}`);
  if (shape.length === 1) return { inputs: shape[0]! };
  return { inputs: size(shape), inputShape: [...shape] as ImageShape | SequenceShape };
}

const sameShape = (a: readonly number[], b: readonly number[]) =>
  a.length === b.length && a.every((v, j) => v === b[j]);
const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

// Walks the entries with the native layout of each: checks what the layers declare against the shapes flowing in,
// and gathers the rows and tensors. `input` is the shape the first entry receives.
function walk(
  entries: readonly Entry[],
  infos: readonly NativeLayerInfo[],
  input: readonly number[],
): Pick<Topology, 'tensors' | 'perLayer'> & { output: number[] } {
  const tensors: Topology['tensors'] = [];
  const perLayer: Topology['perLayer'] = [];
  const open: { row: Topology['perLayer'][number]; first: number }[] = [];
  let shape = [...input];
  entries.forEach((e, k) => {
    const info = infos[k]!;
    if (e.role === 'open') {
      const row = { layer: e.layer, depth: e.depth, output: [] as number[], tensors: 0 };
      perLayer.push(row);
      open.push({ row, first: tensors.length });
      return;
    }
    if (e.role === 'close') {
      const block = open.pop()!;
      block.row.output = shape = [...info.output];
      block.row.tensors = tensors.length - block.first;
      return;
    }
    const kind = kindOf(e.layer.type)!;
    const declared = kind.declared(e.layer);
    // a per-position kind (dense) on a sequence [T, F] declares F
    if (kind.perPosition && declared?.length === 1 && shape.length === 2 && declared[0] !== shape[1]) {
      throw new ConfigError(
        `${e.where}: ${e.layer.type} on a sequence [${shape.join(', ')}] maps each position and takes ${shape[1]} ` +
          `inputs, not ${declared[0]}; for one vector per row add of.flatten(), of.timeMean() or returnSequences: false`,
      );
    }
    if (declared && !sameShape(declared, shape) && !(kind.perPosition && shape.length === 2)) {
      throw new ShapeError(
        declared.length === 1
          ? `${e.where}: ${e.layer.type} expects ${declared[0]} inputs but the previous layer gives ${size(shape)}`
          : `${e.where}: inputShape [${declared.join(', ')}] but the previous layer gives [${shape.join(', ')}]`,
      );
    }
    perLayer.push({ layer: e.layer, depth: e.depth, output: [...info.output], tensors: info.tensors.length });
    tensors.push(...info.tensors.map((t) => ({ name: t.name, shape: [...t.shape] })));
    shape = [...info.output];
  });
  return { tensors, perLayer, output: shape };
}

/**
 * Lays out a layer list natively and checks it: that the layers chain (each kind's needs, what they declare) and
 * that the last one gives no image. Errors name the layer as the caller wrote it (`layers[2].layers[0]`), and come
 * in the order of the layers.
 * @internal
 */
export function topology(layers: readonly Layer[]): Topology {
  const entries = entriesOf(layers);
  const input = modelInput(layers);
  const start = input.inputShape ?? [input.inputs];
  // the layout ignores the loss and the seed
  const { layers: infos, error } = native().describeLayers({
    ...input,
    layers: nativeLayers(layers),
    loss: 'mse',
    seed: 0,
  });
  const { tensors, perLayer, output } = walk(entries.slice(0, infos.length), infos, start);
  if (error) throw located(error, entries, infos, start);
  if (output.length === 3)
    throw new ConfigError('the last layer gives an image; add of.flatten() and a dense layer (or of.globalAvgPool())');
  const t: Topology = {
    inputs: input.inputs,
    outputs: size(output),
    groups: output.length === 2 ? output[0]! : 1,
    tensors,
    perLayer,
  };
  if (input.inputShape) t.inputShape = input.inputShape;
  return t;
}

// The native error of the layer after the described ones, named after the layer as written ("layer N" indexes the
// native spec). A block whose end fails is told the shapes of its input and of its layers.
function located(
  error: { code: ErrorCode; message: string },
  entries: readonly Entry[],
  infos: readonly NativeLayerInfo[],
  start: readonly number[],
): OneForwardError {
  const at = entries[infos.length];
  if (!at) return new errorClasses[error.code](error.message);
  let why = error.message.replace(/^layer \d+: /, '');
  if (at.role === 'close' && error.code === 'ERR_SHAPE') {
    const open = entries.findIndex((e) => e.role === 'open' && e.top === at.top);
    const inner = infos[infos.length - 1]!.output;
    why += `; its input is [${(infos[open]?.output ?? start).join(', ')}] and its layers give [${inner.join(', ')}]`;
  }
  return new errorClasses[error.code](`${at.where}: ${why}`);
}
