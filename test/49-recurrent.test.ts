// Sequence layers: rnn, gru, lstm (BP through time), lif spiking neurons (Heaviside spikes; surrogate BP), repeat
// and timeMean. The forward is checked against float64 loops (helpers/spatial.ts), BP against float64 central
// differences (atol 1e-4, rtol 2e-3), ULR's mean against BP (cosine >= 0.98 over 1,000 steps at K = 64,
// sigma = 0.05; noise on every gate at every step), thread counts give the same bits, checkpoints round-trip,
// and small budgets learn: a GRU solves the adding problem with BP, a spiking MLP learns digits with ULR.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { assertClose, concat, cosine } from './helpers/close';
import { randn } from './helpers/native';
import { checkThreads } from './helpers/checks';
import { finiteDifferences, forwardRow } from './helpers/spatial';

const T = 5,
  F = 4;
const cells = { rnn: of.rnn, gru: of.gru, lstm: of.lstm } as const;
function model(cell: keyof typeof cells, returnSequences: boolean) {
  const layers: of.Layer[] = returnSequences
    ? [cells[cell]({ units: 3, inputShape: [T, F], returnSequences: true }), of.flatten(), of.dense(T * 3, 3)]
    : [cells[cell]({ units: 3, inputShape: [T, F] }), of.dense(3, 3)];
  return { layers, m: of.sequential(layers, { seed: 2 }) };
}
const batch = (inputs: number) => ({
  rows: 3,
  x: randn(3 * inputs, 9, 0.9),
  y: Int32Array.from([0, 2, 1]),
  shape: [inputs],
});
const tensors = (m: of.Model) => m.parameters().map((p) => Float64Array.from(p.data));
const rowsOf = (d: { x: Float32Array; rows: number }, n: number) =>
  Array.from({ length: d.rows }, (_, r) => d.x.subarray(r * n, (r + 1) * n));

t.test('forward = float64 loops; BP through time = float64 central differences', async (t) => {
  for (const cell of ['rnn', 'gru', 'lstm'] as const) {
    for (const seq of [false, true]) {
      const { layers, m } = model(cell, seq);
      const d = batch(m.inputs);
      const want = concat(rowsOf(d, m.inputs).map((x) => forwardRow(layers, tensors(m), x)));
      assertClose(t, m.predict(d), want, { atol: 1e-5, rtol: 1e-4, label: `${cell}, returnSequences ${seq}: forward` });
      const got = m.gradients(d, { estimator: of.bp() });
      const fd = finiteDifferences(layers, tensors(m), d.x, d.y, d.rows);
      m.parameters().forEach((p, i) =>
        assertClose(t, got[i]!, fd[i]!, {
          atol: 1e-4,
          rtol: 2e-3,
          label: `${cell}, returnSequences ${seq}: ${p.name}`,
        }),
      );
      m.dispose();
    }
  }
  // spiking: repeat -> lif -> timeMean -> dense; the forward is exact (spikes are 0/1 counts)
  const layers: of.Layer[] = [
    of.repeat(6, { inputs: 5 }),
    of.lif({ units: 4, threshold: 0.5 }),
    of.timeMean(),
    of.dense(4, 3),
  ];
  const m = of.sequential(layers, { seed: 3 });
  const d = { ...batch(5), x: randn(15, 4, 2) };
  const want = concat(rowsOf(d, 5).map((x) => forwardRow(layers, tensors(m), x)));
  assertClose(t, m.predict(d), want, { atol: 1e-5, rtol: 1e-4, label: 'lif: forward' });
  t.same(
    m.parameters().map((p) => `${p.name} [${p.shape.join(', ')}]`),
    ['lif0.weight [4, 5]', 'lif0.bias [4]', 'dense0.weight [3, 4]', 'dense0.bias [3]'],
    'lif tensors',
  );
  const g = m.gradients(d, { estimator: of.bp() });
  t.ok(
    g.every((a) => a.every(Number.isFinite)) && g[0]!.some((v) => v !== 0),
    'lif: surrogate BP gives finite, non-zero gradients',
  );
  m.dispose();
});

t.test('the mean ULR estimate converges to the gradient (cosine >= 0.98, 1,000 steps, K = 64)', async (t) => {
  for (const cell of ['rnn', 'gru', 'lstm'] as const) {
    const { m } = model(cell, true);
    const d = batch(m.inputs);
    const want = concat(m.gradients(d, { estimator: of.bp() }));
    const mean = new Float64Array(want.length);
    const N = 1000;
    for (let s = 0; s < N; s++) {
      const g = concat(m.gradients(d, { estimator: of.ulr({ copies: 64, sigma: 0.05 }), step: s }));
      for (let i = 0; i < g.length; i++) mean[i]! += g[i]! / N;
    }
    const c = cosine(mean, want);
    t.ok(c >= 0.98, `${cell}: cosine ${c.toFixed(4)}`);
    m.dispose();
  }
});

t.test('1 or 2 threads: the same bits; checkpoints round-trip', async (t) => {
  const layers: of.Layer[] = [
    of.gru({ units: 8, inputShape: [7, 3], returnSequences: true }),
    of.lstm({ units: 5 }),
    of.dense(5, 2),
  ];
  const m = of.sequential(layers, { seed: 5 });
  checkThreads(t, m, 30, 2);
  const x = randn(30 * m.inputs, 6),
    y = Int32Array.from({ length: 30 }, (_, i) => i % 2);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-seq-'));
  const file = path.join(dir, 'seq.ofckpt');
  await m.save(file);
  const back = await of.load(file);
  t.same(back.layers, m.layers, 'layers');
  const d = { x, y, rows: 30, shape: [m.inputs] };
  t.same(Array.from(back.predict(d)), Array.from(m.predict(d)), 'predictions');
  const spiking = of.sequential(
    [of.repeat(4, { inputs: 6 }), of.lif({ units: 5, beta: 0.8, slope: 3 }), of.timeMean(), of.dense(5, 2)],
    { seed: 1 },
  );
  await spiking.save(file);
  const back2 = await of.load(file);
  t.same(back2.layers, spiking.layers, 'spiking layers');
  (m.dispose(), back.dispose(), spiking.dispose(), back2.dispose());
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('bad sequence layer lists are typed errors', async (t) => {
  t.throws(
    () => of.sequential([of.gru({ units: 4 }), of.dense(4, 2)]),
    { code: 'ERR_CONFIG', message: /inputShape/ },
    'no input shape',
  );
  t.throws(
    () => of.sequential([of.gru({ units: 4, inputShape: [5, 3], returnSequences: true }), of.dense(20, 2)]),
    { code: 'ERR_CONFIG', message: /timeMean/ },
    'dense on a sequence',
  );
  t.throws(
    () => of.sequential([of.dense(4, 4), of.rnn({ units: 3 }), of.dense(3, 2)]),
    { code: 'ERR_CONFIG', message: /sequence input/ },
    'rnn on a flat input',
  );
  t.throws(
    () => of.sequential([of.rnn({ units: 3, inputShape: [4, 2], returnSequences: true })], { loss: 'mse' }),
    { code: 'ERR_CONFIG', message: /sequence/ },
    'ends with a sequence, mse',
  );
  t.throws(
    () => of.sequential([of.repeat(3), of.lif({ units: 2 }), of.timeMean(), of.dense(2, 2)]),
    { code: 'ERR_CONFIG', message: /inputs/ },
    'first repeat without inputs',
  );
  t.throws(() => of.lif({ units: 3, beta: 1.5 }), { code: 'ERR_CONFIG' }, 'beta out of range');
  t.throws(() => of.gru({ units: 0 }), { code: 'ERR_CONFIG' }, 'zero units');
  t.throws(() => of.gru({ units: 2, beta: 0.5 } as of.RecurrentOptions), { code: 'ERR_CONFIG' }, 'lif option on a gru');
});

t.test('small budgets learn: GRU on the adding problem (BP), spiking MLP on digits (ULR)', async (t) => {
  const train = of.datasets.adding({ rows: 4000, steps: 20, seed: 1 }),
    test = of.datasets.adding({ rows: 1000, steps: 20, seed: 2 });
  t.same(train.shape, [20, 2], 'adding: [steps, 2]');
  const ok = Array.from({ length: train.rows }, (_, r) => {
    let markers = 0,
      sum = 0;
    for (let s = 0; s < 20; s++)
      if (train.x[(r * 20 + s) * 2 + 1] === 1) (markers++, (sum += train.x[(r * 20 + s) * 2]!));
    return markers === 2 && Math.abs(sum - (train.y as Float32Array)[r]!) < 1e-6;
  });
  t.ok(ok.every(Boolean), 'adding: two markers per row, target = the sum of the marked values');
  const gru = of.sequential([of.gru({ units: 32, inputShape: [20, 2] }), of.dense(32, 1)], { seed: 1, loss: 'mse' });
  await gru.fit(train, { estimator: of.bp(), optimizer: of.adam({ lr: 3e-3 }), epochs: 5, batchSize: 32 });
  const mse = gru.evaluate(test).loss;
  t.ok(mse < 0.05, `adding, GRU + BP, 5 epochs: test MSE ${mse.toFixed(4)} < 0.05 (always 1: about 0.167)`);
  gru.dispose();

  const { train: digits, test: dtest } = of.datasets.digits();
  const sub = of.data.take(digits, Array.from(of.data.permutation(digits.rows, 1).subarray(0, 2000)));
  const evalSet = of.data.take(
    dtest,
    Array.from({ length: 1000 }, (_, i) => i * 2),
  );
  const spiking = of.sequential(
    [of.dense(784, 128), of.repeat(6), of.lif({ units: 128 }), of.timeMean(), of.dense(128, 10)],
    { seed: 1 },
  );
  await spiking.fit(sub, {
    estimator: of.ulr({ copies: 16 }),
    optimizer: of.adam({ lr: 1e-3 }),
    epochs: 1,
    batchSize: 32,
  });
  const acc = spiking.evaluate(evalSet).accuracy;
  t.ok(
    acc >= 0.5,
    `spiking MLP (lif, 6 steps) + ULR, 2,000 rows, 1 epoch: ${(acc * 100).toFixed(2)}% >= 50% (chance 10%)`,
  );
  spiking.dispose();
});
