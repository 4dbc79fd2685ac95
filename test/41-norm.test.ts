// Normalization. layerNorm: per position over the last axis; groupNorm: per group of channels over all positions;
// both with a gain and a bias. batchNorm (at the end):
// BP through the batch statistics against float64 central differences, ULR with the clean batch statistics
// (cosine >= 0.98 for the layers whose gradients do not go through them), running statistics in checkpoints.
// For layerNorm the forward is checked against
// float64 loops, BP against float64 central differences (atol 1e-4, rtol 2e-3) and the mean ULR estimate against
// BP (cosine >= 0.98 over 1,000 steps at K = 64, sigma = 0.05), on a dense model, a conv model (over channels)
// and a sequence model (over each step's features); checkpoints keep it; an MLP with it trains.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { assertClose, concat, cosine } from './helpers/close';
import { randn } from './helpers/native';
import { checkAgainstReference } from './helpers/checks';

const configs: [string, () => of.Layer[]][] = [
  ['dense', () => [of.dense(5, 6), of.layerNorm(), of.tanh(), of.dense(6, 3)]],
  [
    'conv (over channels)',
    () => [
      of.conv2d({ inputShape: [4, 3, 2], filters: 4, kernel: 3, padding: 'same' }),
      of.layerNorm(),
      of.tanh(),
      of.flatten(),
      of.dense(48, 3),
    ],
  ],
  [
    'sequence (per step)',
    () => [
      of.rnn({ units: 4, inputShape: [3, 2], returnSequences: true }),
      of.layerNorm(),
      of.flatten(),
      of.dense(12, 3),
    ],
  ],
  ['groupNorm, dense, 2 groups', () => [of.dense(5, 6), of.groupNorm({ groups: 2 }), of.tanh(), of.dense(6, 3)]],
  [
    'groupNorm, conv, 2 groups over all positions',
    () => [
      of.conv2d({ inputShape: [4, 3, 2], filters: 4, kernel: 3, padding: 'same' }),
      of.groupNorm({ groups: 2 }),
      of.tanh(),
      of.flatten(),
      of.dense(48, 3),
    ],
  ],
];

t.test('forward = float64 loops; BP = central differences; ULR converges', async (t) => {
  // non-trivial gain and bias
  const prepare = (m: of.Model) => {
    for (const p of m.parameters())
      if (p.name.startsWith('norm') || p.name.startsWith('groupnorm'))
        p.data.set(Array.from(p.data, (_, i) => (p.name.endsWith('weight') ? 0.8 + 0.1 * i : 0.05 * i)));
  };
  for (const [name, build] of configs) checkAgainstReference(t, name, build(), { seed: 6, prepare });
});

t.test(
  'gain starts at 1 and bias at 0; an MLP with layerNorm trains (2,000 rows, 1 epoch): BP >= 80%, ULR >= 60%',
  async (t) => {
    const { train, test } = of.datasets.digits();
    const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 1).subarray(0, 2000)));
    for (const [name, est, bar] of [
      ['bp', of.bp(), 0.8],
      ['ulr K=16', of.ulr({ copies: 16 }), 0.6],
    ] as const) {
      const m = of.sequential([of.dense(784, 128), of.layerNorm(), of.relu(), of.dense(128, 10)], { seed: 1 });
      const [gain, bias] = m.parameters().slice(2, 4);
      t.ok(
        gain!.data.every((v) => v === 1) && bias!.data.every((v) => v === 0),
        `${name}: norm0 starts as the identity`,
      );
      await m.fit(sub, { estimator: est, optimizer: of.adam({ lr: 1e-3 }), epochs: 1, batchSize: 32 });
      const acc = m.evaluate(test).accuracy;
      t.ok(acc >= bar, `${name}: ${(acc * 100).toFixed(2)}% >= ${bar * 100}%`);
      const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'of-ln-')), 'ln.ofckpt');
      await m.save(file);
      const back = await of.load(file);
      t.equal(back.evaluate(test).accuracy, acc, `${name}: the checkpoint gives the same accuracy`);
      (back.dispose(), m.dispose());
      fs.rmSync(path.dirname(file), { recursive: true, force: true });
    }
  },
);

// batchNorm in training mode, float64: dense(5, 4) -> batchNorm (batch statistics over the rows) -> tanh -> dense(4, 3).
function bnLoss(params: Float64Array[], x: ArrayLike<number>, y: ArrayLike<number>, rows: number): number {
  const [W0, b0, g, bb, W1, b1] = params as [
    Float64Array,
    Float64Array,
    Float64Array,
    Float64Array,
    Float64Array,
    Float64Array,
  ];
  const h = Array.from({ length: rows }, (_, r) =>
    Array.from(
      { length: 4 },
      (_, j) => b0[j]! + Array.from({ length: 5 }, (_, i) => W0[j * 5 + i]! * x[r * 5 + i]!).reduce((a, z) => a + z, 0),
    ),
  );
  const mu = [0, 1, 2, 3].map((j) => h.reduce((a, row) => a + row[j]!, 0) / rows);
  const vr = [0, 1, 2, 3].map((j) => h.reduce((a, row) => a + (row[j]! - mu[j]!) ** 2, 0) / rows);
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    const a = [0, 1, 2, 3].map((j) => Math.tanh((g[j]! * (h[r]![j]! - mu[j]!)) / Math.sqrt(vr[j]! + 1e-5) + bb[j]!));
    const o = [0, 1, 2].map((c) => b1[c]! + a.reduce((s, z, j) => s + W1[c * 4 + j]! * z, 0));
    const mx = Math.max(...o);
    sum += mx + Math.log(o.reduce((s, z) => s + Math.exp(z - mx), 0)) - o[y[r]!]!;
  }
  return sum / rows;
}

t.test(
  'batchNorm: BP through the batch statistics; ULR with the clean batch statistics; running statistics persist',
  async (t) => {
    const m = of.sequential([of.dense(5, 4), of.batchNorm(), of.tanh(), of.dense(4, 3)], { seed: 3 });
    m.parameters()[2]!.data.set([0.9, 1.1, 1.2, 0.8]);
    m.parameters()[3]!.data.set([0.1, -0.2, 0.05, 0]);
    const d = { x: randn(6 * 5, 2), y: Int32Array.from([0, 1, 2, 0, 1, 2]), rows: 6, shape: [5] };
    const params = m.parameters().map((p) => Float64Array.from(p.data));
    const fd = params.map((tensor) =>
      Float64Array.from(tensor, (v, i) => {
        tensor[i] = v + 1e-6;
        const a = bnLoss(params, d.x, d.y, 6);
        tensor[i] = v - 1e-6;
        const b = bnLoss(params, d.x, d.y, 6);
        tensor[i] = v;
        return (a - b) / 2e-6;
      }),
    );
    const bp = m.gradients(d, { estimator: of.bp() });
    m.parameters().forEach((p, i) =>
      assertClose(t, bp[i]!, fd[i]!, { atol: 1e-4, rtol: 2e-3, label: `bp: ${p.name}` }),
    );
    // ULR treats the statistics as constants (evaluation mode with this batch's statistics): its expectation matches
    // BP for the batchNorm gain and bias and the layers after it, whose gradients do not go through the statistics
    const after = concat(bp.slice(2));
    const mean = new Float64Array(after.length);
    for (let s = 0; s < 1000; s++) {
      const g = concat(m.gradients(d, { estimator: of.ulr({ copies: 64, sigma: 0.05 }), step: s }).slice(2));
      for (let i = 0; i < g.length; i++) mean[i]! += g[i]! / 1000;
    }
    const c = cosine(mean, after);
    t.ok(c >= 0.98, `ulr, batchNorm and later layers: cosine ${c.toFixed(4)}`);
    const before = m.predict(d);
    m.trainStep(d, { estimator: of.bp(), optimizer: of.sgd({ lr: 1e-9 }) });
    t.notSame(
      Array.from(m.predict(d)),
      Array.from(before),
      'a training step moves the running statistics (inference output changes)',
    );
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'of-bn-')), 'bn.ofckpt');
    await m.save(file);
    const back = await of.load(file);
    t.same(Array.from(back.predict(d)), Array.from(m.predict(d)), 'the checkpoint keeps the running statistics');
    (back.dispose(), m.dispose());
    fs.rmSync(path.dirname(file), { recursive: true, force: true });

    const { train, test } = of.datasets.digits();
    const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 1).subarray(0, 2000)));
    for (const [name, est, bar] of [
      ['bp', of.bp(), 0.8],
      ['ulr K=16', of.ulr({ copies: 16 }), 0.6],
    ] as const) {
      const net = of.sequential([of.dense(784, 128), of.batchNorm(), of.relu(), of.dense(128, 10)], { seed: 1 });
      await net.fit(sub, { estimator: est, optimizer: of.adam({ lr: 1e-3 }), epochs: 1, batchSize: 32 });
      const acc = net.evaluate(test).accuracy;
      t.ok(acc >= bar, `MLP with batchNorm, ${name}: ${(acc * 100).toFixed(2)}% >= ${bar * 100}%`);
      net.dispose();
    }
  },
);
