// Test access to the raw native binding (kernels, RNG) and small shared builders.
import { native } from '../../lib/native';
import * as of from '../../lib/index';
import { gaussian } from './reference';

export const nat = native();

/** A random Float32Array from a seeded normal stream. */
export function randn(n: number, seed: number, scale = 1): Float32Array {
  const g = gaussian(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = g() * scale;
  return a;
}

/** The [dense, act] spec list the reference model understands, for a model built from `widths`. */
export function mlp(widths: number[], act: of.ActivationName, options: of.SequentialOptions = {}) {
  const layers: of.Layer[] = [];
  const spec: ({ kind: 'dense'; I: number; O: number } | { kind: 'act'; act: of.ActivationName })[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    layers.push(of.dense(widths[i]!, widths[i + 1]!));
    spec.push({ kind: 'dense', I: widths[i]!, O: widths[i + 1]! });
    if (i + 2 < widths.length) {
      layers.push(of.activation(act));
      spec.push({ kind: 'act', act });
    }
  }
  return { model: of.sequential(layers, options), spec };
}
