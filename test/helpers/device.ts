// Shared by the device tests (test/55, 63, 64): the devices to test, their tolerances, data and comparisons.
import * as of from '../../lib/index';
import { concat } from './close';

export type Dev = 'sim' | 'cuda';
export const info = of.backend.info();
// Tolerances per device. tol: gradients, relative to the largest; lossTol: a step's loss, relative; fitTol: an epoch's
// loss after training, relative; update: parameters after a few optimizer steps, |got - want| relative to the size of
// the update. CUDA's GEMMs and libm round differently from the CPU, and Adam's first steps are about sign(g), which
// turns a rounding-level difference in a near-zero gradient into a full step of that one parameter.
export type DevSpec = { name: Dev; exact: boolean; tol: number; lossTol: number; fitTol: number; update: number };
export const devices: DevSpec[] = [{ name: 'sim', exact: true, tol: 1e-5, lossTol: 1e-5, fitTol: 1e-3, update: 1e-4 }];
if (info.devices.cuda > 0)
  devices.push({ name: 'cuda', exact: false, tol: 1e-4, lossTol: 1e-3, fitTol: 2e-2, update: 2e-2 });
export const norm = (a: ArrayLike<number>, b?: ArrayLike<number>) =>
  Math.sqrt(Array.from(a).reduce((s, v, i) => s + (v - (b ? b[i]! : 0)) ** 2, 0));
// parameters after training steps: the same within d.update of the update's size (start: the parameters before)
export const updateClose = (d: DevSpec, got: ArrayLike<number>, want: ArrayLike<number>, start: ArrayLike<number>) =>
  norm(got, want) <= d.update * Math.max(norm(want, start), 1e-30);

export const { train, test } = of.datasets.digits();
export const small = of.data.take(
  train,
  Array.from({ length: 2000 }, (_, i) => i),
);
export const val = of.data.take(
  test,
  Array.from({ length: 500 }, (_, i) => i),
);
export const batch = of.data.take(
  train,
  Array.from({ length: 24 }, (_, i) => 100 + i),
);
export const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
export const maxMag = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
export const params = (m: of.Model) => concat(m.parameters().map((p) => p.data));
// biases start at zero: give them values (the same on both engines) so that a bias the device forgets shows
export const withBiases = (...models: of.Model[]) => {
  for (const m of models)
    for (const p of m.parameters())
      if (p.name.endsWith('.bias')) p.data.forEach((_, i) => (p.data[i] = 0.2 * Math.sin(3 * i + 1)));
};
export const bitsEqual = (a: Float32Array, b: Float32Array) =>
  a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
