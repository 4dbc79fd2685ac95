// Small fixed tasks shared by several test files.
import * as of from '../../lib/index';
import { concat } from './close';
import { randn } from './native';
import { backprop, fromParams } from './reference';

// A seeded two-feature task, `rows` rows: class 1 where the features agree in sign (test/61, 62).
export function signTask(rows = 64): { x: number[][]; y: number[] } {
  const x: number[][] = [],
    y: number[] = [];
  for (let i = 0; i < rows; i++) {
    const a = Math.sin(i * 1.7),
      b = Math.cos(i * 0.9);
    x.push([a, b]);
    y.push(a * b > 0 ? 1 : 0);
  }
  return { x, y };
}

// A linear layer 4 -> 3 with squared error on `rows` random rows, and its exact gradient (float64): noise on the output
// adds only a constant to the smoothed loss, so every ULR option must converge to it (test/39, 45).
export function linearTask(seed: number, rows = 2) {
  const model = of.sequential([of.dense(4, 3)], { seed, loss: 'mse' });
  const x = randn(rows * 4, seed + 10),
    y = randn(rows * 3, seed + 20);
  const exact = concat(
    backprop(
      fromParams(
        [{ kind: 'dense', I: 4, O: 3 }],
        model.parameters().map((p) => p.data),
        'mse',
      ),
      x,
      rows,
      y,
    ),
  );
  return { model, x, y, exact };
}

// The MLP 6-5-4-3-3 with mixed activations that module splits cut (test/48, 66).
export function moduleNet(seed = 3, loss: 'crossEntropy' | 'mse' = 'crossEntropy') {
  return of.sequential(
    [of.dense(6, 5), of.tanh(), of.dense(5, 4), of.relu(), of.dense(4, 3), of.sigmoid(), of.dense(3, 3)],
    { seed, loss },
  );
}
