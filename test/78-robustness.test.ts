// Robustness: the engine's input gradient against float64 finite differences, and attacks that behave as they
// must (eps = 0 changes nothing, FGSM lowers accuracy, PGD is at least as strong, corruptions are seeded).
import t from 'tap';
import * as of from '../lib/index';
import { fromParams, loss } from './helpers/reference';
import { assertClose } from './helpers/close';
import { mlp, randn } from './helpers/native';

t.test('input gradients match finite differences', async (t) => {
  const { model, spec } = mlp([5, 6, 3], 'tanh', { seed: 4 });
  const x = randn(3 * 5, 12),
    y = Int32Array.from([0, 2, 1]);
  const g = model._native!.inputGradients(x, y, 3).grads;
  const ref = fromParams(
    spec,
    model.parameters().map((p) => p.data),
    'crossEntropy',
  );
  const fd = Array.from(x, (_, i) => {
    const h = 1e-4,
      xp = Float64Array.from(x),
      xm = Float64Array.from(x);
    ((xp[i]! += h), (xm[i]! -= h));
    return (loss(ref, xp, 3, y) - loss(ref, xm, 3, y)) / (2 * h);
  });
  assertClose(t, g, fd, { atol: 1e-5, rtol: 1e-3, label: 'd loss / d x' });
  const signModel = of.sequential([of.dense(5, 4), of.sign(), of.dense(4, 3)]);
  t.throws(() => signModel._native!.inputGradients(x, y, 3), { code: 'ERR_CONFIG' }, 'needs a differentiable model');
  model.dispose();
  signModel.dispose();
});

t.test('FGSM, PGD and corruptions on a trained digits model', async (t) => {
  const { train, test } = of.datasets.digits();
  const m = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 1 });
  await m.fit(train, { estimator: of.bp(), epochs: 2, batchSize: 64 });
  const sub = of.data.take(
    test,
    Array.from({ length: 500 }, (_, i) => i * 4),
  );
  const r = of.robustness.evaluate(m, sub, {
    attacks: [
      { kind: 'fgsm', eps: 0 },
      { kind: 'fgsm', eps: 0.1 },
      { kind: 'pgd', eps: 0.1 },
      { kind: 'gaussian', std: 0.3 },
      { kind: 'saltPepper', p: 0.1 },
    ],
  });
  const [clean, zero, fgsm, pgd, gauss, sp] = r.map((x) => x.accuracy);
  t.equal(zero, clean, 'eps = 0 leaves accuracy unchanged');
  t.ok(fgsm! < clean! - 0.2, `FGSM eps 0.1: ${(100 * fgsm!).toFixed(1)}% vs ${(100 * clean!).toFixed(1)}% clean`);
  t.ok(pgd! <= fgsm!, `PGD (${(100 * pgd!).toFixed(1)}%) is at least as strong as FGSM`);
  t.ok(
    gauss! < clean! && sp! < clean!,
    `corruptions lower accuracy: gaussian ${(100 * gauss!).toFixed(1)}%, salt-and-pepper ${(100 * sp!).toFixed(1)}%`,
  );
  const again = of.robustness.evaluate(m, sub, { attacks: [{ kind: 'gaussian', std: 0.3 }] });
  t.equal(again[1]!.accuracy, gauss, 'corruptions are seeded');
  t.throws(() => of.robustness.evaluate(m, sub, { attacks: [{ kind: 'fgsm', eps: -1 }] }), { code: 'ERR_CONFIG' });
  m.dispose();
});
