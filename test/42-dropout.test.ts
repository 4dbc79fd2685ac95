// Dropout: the identity in inference; in training each value of a sample is zeroed with probability `rate` (the
// rest scaled by 1 / (1 - rate)), from a counter-based mask of (seed, step, layer, sample) shared by all of a
// sample's ULR copies. Checks: predictions ignore it; with one sample, the gradient columns of the next layer are
// exactly zero for the dropped units (BP and ULR alike: ULR's copies share the mask); the drop fraction is near
// the rate (binomial, 400 units: within 0.43-0.57 at rate 0.5); masks follow the step; training still works; a residual
// block may end with dropout.
import t from 'tap';
import * as of from '../lib/index';
import { assertClose, concat } from './helpers/close';
import { bitsEqual } from './helpers/device';
import { randn } from './helpers/native';
import { forwardRow } from './helpers/spatial';

t.test('dropout: identity in inference, one mask per sample and step in training', async (t) => {
  const layers = [of.dense(5, 400), of.relu(), of.dropout(0.5), of.dense(400, 3)];
  const m = of.sequential(layers, { seed: 2 });
  const d = { x: randn(5, 3), y: Int32Array.from([1]), rows: 1, shape: [5] };
  const want = forwardRow(
    layers,
    m.parameters().map((p) => Float64Array.from(p.data)),
    d.x,
  );
  assertClose(t, m.predict(d), want, {
    atol: 1e-5,
    rtol: 1e-4,
    label: 'predictions: dropout is the identity in inference',
  });
  const bp = m.gradients(d, { estimator: of.bp() });
  const dead = Array.from({ length: 400 }, (_, j) => [0, 1, 2].every((o) => bp[2]![o * 400 + j] === 0));
  const relu0 = (() => {
    // units that relu already silences give zero columns too: count only live ones
    const W = m.parameters()[0]!.data,
      b = m.parameters()[1]!.data;
    return Array.from({ length: 400 }, (_, j) => {
      let v = b[j]!;
      for (let i = 0; i < 5; i++) v += W[j * 5 + i]! * d.x[i]!;
      return v <= 0;
    });
  })();
  const live = relu0.filter((z) => !z).length;
  const dropped = dead.filter((z, j) => z && !relu0[j]).length;
  t.ok(dropped / live > 0.43 && dropped / live < 0.57, `bp: ${dropped} of ${live} live units dropped (rate 0.5)`);
  t.ok(
    dead.every(
      (z, j) => !z || relu0[j] || Array.from({ length: 5 }, (_, i) => bp[0]![j * 5 + i]).every((v) => v === 0),
    ),
    'dropped units pass no gradient back',
  );
  const ulr = m.gradients(d, { estimator: of.ulr({ copies: 16 }), step: m.step });
  t.ok(
    dead.every((z, j) => !z || relu0[j] || [0, 1, 2].every((o) => ulr[2]![o * 400 + j] === 0)),
    'ulr: the same units dropped in every copy',
  );
  const again = m.gradients(d, { estimator: of.bp() });
  t.same(Array.from(again[2]!), Array.from(bp[2]!), 'same step: same mask');
  const pattern = (g: Float32Array[]) => Array.from({ length: 400 }, (_, j) => g[2]![j] === 0).join('');
  m.trainStep(d, { estimator: of.bp(), optimizer: of.sgd({ lr: 1e-9 }) });
  t.not(pattern(m.gradients(d, { estimator: of.bp() })), pattern(bp), 'next step: a new mask');
  t.throws(() => of.dropout(1), { code: 'ERR_CONFIG' }, 'rate 1');
  m.dispose();
});

t.test('an MLP with dropout trains on digits (2,000 rows, 1 epoch): BP >= 80%, ULR >= 60%', async (t) => {
  const { train, test } = of.datasets.digits();
  const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 1).subarray(0, 2000)));
  for (const [name, est, bar] of [
    ['bp', of.bp(), 0.8],
    ['ulr K=16', of.ulr({ copies: 16 }), 0.6],
  ] as const) {
    const m = of.sequential([of.dense(784, 128), of.relu(), of.dropout(0.2), of.dense(128, 10)], { seed: 1 });
    await m.fit(sub, { estimator: est, optimizer: of.adam({ lr: 1e-3 }), epochs: 1, batchSize: 32 });
    const acc = m.evaluate(test).accuracy;
    t.ok(acc >= bar, `${name}: ${(acc * 100).toFixed(2)}% >= ${bar * 100}%`);
    m.dispose();
  }
});

t.test('a residual block may end with dropout: at rate 0 BP is the block without it; sim equals the CPU', async (t) => {
  const d = {
    x: Float32Array.from({ length: 16 * 6 }, (_, i) => Math.sin(1.3 * i)),
    y: Int32Array.from({ length: 16 }, (_, i) => i % 3),
  };
  const layers = (...tail: of.Layer[]) => [
    of.dense(6, 8),
    of.relu(),
    of.residual([of.dense(8, 8), of.tanh(), ...tail]),
    of.dense(8, 3),
  ];
  const ref = of.sequential(layers(), { seed: 3 });
  const model = (rate: number, backend: 'cpu' | 'sim') => {
    const m = of.sequential(layers(of.dropout(rate)), { seed: 3, backend });
    m.parameters().forEach((p, i) => p.data.set(ref.parameters()[i]!.data));
    return m;
  };
  const grad = (m: of.Model, estimator: of.Estimator) => Float32Array.from(concat(m.gradients(d, { estimator })));
  t.ok(bitsEqual(grad(model(0, 'cpu'), of.bp()), grad(ref, of.bp())), 'rate 0: the same BP gradient');
  for (const estimator of [of.bp(), of.ulr({ copies: 4 })]) {
    const cpu = grad(model(0.5, 'cpu'), estimator),
      sim = grad(model(0.5, 'sim'), estimator);
    t.ok(bitsEqual(sim, cpu), `${estimator.kind}: the simulated device's gradient is the CPU's, bit for bit`);
  }
});
