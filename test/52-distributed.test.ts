// Data-parallel training (of.distributed) with an in-process communicator standing in for MPI: N replicas of one
// model each estimate the gradient of their shard of every batch (with the noise rows a single process would use
// for those samples), the shares are summed, and every replica applies the same update. Checks: the summed shares
// equal the single-process estimate (max abs diff <= 1e-5; only the order of float sums differs), and after 5 Adam
// steps every replica holds the single-process parameters (max abs diff <= 1e-4) for BP and ULR, with 2 and 3
// ranks, on an MLP with dropout and on a CNN; the replicas stay bit-identical to each other. Seed replay (SPSA,
// ES): ranks evaluate disjoint directions and exchange only the losses; every replica equals one process bit for bit.
import t from 'tap';
import * as of from '../lib/index';
import { concat } from './helpers/close';
import { nat, randn } from './helpers/native';

const { train } = of.datasets.digits();
const batches = [0, 1, 2, 3, 4].map((s) =>
  of.data.take(train, Array.from(of.data.permutation(train.rows, 40 + s).subarray(0, 24))),
);
const nets: [string, () => of.Model][] = [
  [
    'MLP with dropout',
    () => of.sequential([of.dense(784, 32), of.relu(), of.dropout(0.2), of.dense(32, 10)], { seed: 3 }),
  ],
  [
    'CNN',
    () =>
      of.sequential(
        [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
          of.relu(),
          of.flatten(),
          of.dense(676, 10),
        ],
        { seed: 3 },
      ),
  ],
];
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

t.test('shards cover the batch contiguously', async (t) => {
  const b = batches[0]!;
  const parts = [0, 1, 2].map((r) => of.distributed.shard(b, r, 3));
  t.same(
    parts.map((p) => p.sampleOffset),
    [0, 8, 16],
    'offsets',
  );
  t.same(Array.from(concat(parts.map((p) => p.batch.x))), Array.from(b.x), 'rows in order');
  t.throws(() => of.distributed.shard(b, 3, 3), { code: 'ERR_CONFIG' }, 'rank out of range');
});

t.test('summed shard estimates = the single-process estimate', async (t) => {
  for (const [name, build] of nets) {
    const m = build();
    for (const [en, estimator] of [
      ['bp', of.bp()],
      ['ulr K=8', of.ulr({ copies: 8 })],
    ] as const) {
      const whole = concat(m.gradients(batches[0]!, { estimator }));
      for (const size of [2, 3]) {
        const sum = new Float64Array(whole.length);
        for (let r = 0; r < size; r++) {
          const g = of.distributed.dataParallelGradients(m, batches[0]!, { rank: r, size, estimator });
          g.forEach((v, i) => (sum[i]! += v));
        }
        const d = maxAbs(sum, whole);
        t.ok(d <= 1e-5, `${name}, ${en}, ${size} ranks: max abs diff ${d.toExponential(2)}`);
      }
    }
    m.dispose();
  }
});

t.test('5 data-parallel Adam steps = 5 single-process steps', async (t) => {
  for (const [name, build] of nets) {
    for (const [en, estimator] of [
      ['bp', of.bp()],
      ['ulr K=8', of.ulr({ copies: 8 })],
    ] as const) {
      for (const size of [2, 3]) {
        const single = build();
        const replicas = Array.from({ length: size }, build);
        const optimizer = of.adam({ lr: 1e-3 });
        for (const b of batches) {
          single.trainStep(b, { estimator, optimizer });
          const shares = replicas.map((m, r) =>
            of.distributed.dataParallelGradients(m, b, { rank: r, size, estimator }),
          );
          const sum = new Float32Array(shares[0]!.length);
          for (const s of shares) s.forEach((v, i) => (sum[i]! += v)); // the all-reduce
          for (const m of replicas) m.applyGradients(Float32Array.from(sum), { optimizer, rows: b.rows });
        }
        const want = concat(single.parameters().map((p) => p.data));
        const got = replicas.map((m) => concat(m.parameters().map((p) => p.data)));
        const d = maxAbs(got[0]!, want);
        t.ok(d <= 1e-4, `${name}, ${en}, ${size} ranks: max abs parameter diff ${d.toExponential(2)}`);
        t.ok(
          got.every((g) => maxAbs(g, got[0]!) === 0),
          `${name}, ${en}, ${size} ranks: replicas bit-identical`,
        );
        t.equal(replicas[0]!.step, single.step, 'step counters agree');
        single.dispose();
        replicas.forEach((m) => m.dispose());
      }
    }
  }
});

t.test('bad input is a typed error', async (t) => {
  const m = nets[0]![1]();
  t.throws(() => m.applyGradients(new Float32Array(3), { rows: 1 }), { code: 'ERR_SHAPE' }, 'wrong length');
  t.throws(
    () => m.applyGradients(new Float32Array(m.parameterCount).fill(NaN), { rows: 1 }),
    { code: 'ERR_NUMERIC' },
    'NaN',
  );
  t.throws(
    () => m.gradients(batches[0]!, { estimator: of.ulr({ modules: [[0, 2]] }), sampleOffset: 4 }),
    { code: 'ERR_CONFIG' },
    'sampleOffset with modules',
  );
  m.dispose();
});

t.test('seed replay (SPSA, ES): 2 and 3 ranks exchanging only losses = one process, bit for bit', async (t) => {
  // 'frozen MLP': a dense model with its first layer frozen, whose single-process step trains the tail from the
  // frozen stack's clean output, so the ranks leave the frozen prefix unperturbed too
  const frozenMlp = () => {
    const m = of.sequential([of.dense(784, 16), of.tanh(), of.dense(16, 12), of.relu(), of.dense(12, 10)], { seed: 3 });
    m.freeze(1);
    return m;
  };
  for (const [name, estimator] of [
    ['spsa', of.spsa({ perturbations: 6, epsilon: 1e-3 })],
    ['es', of.es({ population: 7, sigma: 0.01 })],
  ] as const) {
    for (const [net, build, size] of [
      ['MLP with dropout', nets[0]![1], 2],
      ['MLP with dropout', nets[0]![1], 3],
      ['frozen MLP', frozenMlp, 2],
    ] as const) {
      const single = build();
      const replicas = Array.from({ length: size }, build);
      const optimizer = of.adam({ lr: 1e-3 });
      for (const b of batches.slice(0, 3)) {
        single.trainStep(b, { estimator, optimizer });
        const shares = replicas.map((m, r) => of.distributed.seedReplayLosses(m, b, { rank: r, size, estimator }));
        const sum = new Float32Array(shares[0]!.length);
        for (const s of shares) s.forEach((v, i) => (sum[i]! += v)); // the all-reduce: disjoint slices, exact
        for (const m of replicas)
          of.distributed.seedReplayUpdate(m, Float32Array.from(sum), { estimator, optimizer, rows: b.rows });
      }
      const want = concat(single.parameters().map((p) => p.data));
      const same = replicas.every((m) => maxAbs(concat(m.parameters().map((p) => p.data)), want) === 0);
      t.ok(same, `${name}, ${net}, ${size} ranks: every replica equals the single process bit for bit`);
      single.dispose();
      replicas.forEach((m) => m.dispose());
    }
  }
  const m = nets[0]![1]();
  t.throws(
    () =>
      of.distributed.seedReplayLosses(m, batches[0]!, {
        rank: 0,
        size: 2,
        estimator: of.ulr() as unknown as of.SpsaEstimator,
      }),
    { code: 'ERR_CONFIG' },
    'needs spsa or es',
  );
  t.throws(
    () =>
      of.distributed.seedReplayUpdate(m, new Float32Array(3), { estimator: of.spsa({ perturbations: 4 }), rows: 2 }),
    { code: 'ERR_SHAPE' },
    'wrong loss count',
  );
  m.dispose();
});

t.test('copy-parallel ULR: the K copies split over 2 or 3 ranks, losses exchanged first = one process', async (t) => {
  for (const [name, build] of nets) {
    for (const estimator of [
      of.ulr({ copies: 8 }),
      of.ulr({ copies: 8, antithetic: true }),
      of.ulr({ copies: 6, baseline: 'mean' }),
    ]) {
      for (const size of [2, 3]) {
        if (estimator.antithetic && size === 3) continue;
        const label = `${name}, K=${estimator.copies as number}${estimator.antithetic ? ' pairs' : ''}, ${estimator.baseline}, ${size} ranks`;
        const single = build();
        const replicas = Array.from({ length: size }, build);
        const want = concat(single.gradients(batches[0]!, { estimator }));
        const losses = new Float32Array(batches[0]!.rows * (estimator.copies as number));
        replicas.forEach((m, r) =>
          of.distributed
            .copyParallelLosses(m, batches[0]!, { rank: r, size, estimator })
            .forEach((v, i) => (losses[i]! += v)),
        );
        const sum = new Float64Array(want.length);
        replicas.forEach((m, r) =>
          of.distributed
            .copyParallelGradients(m, batches[0]!, losses, { rank: r, size, estimator })
            .forEach((v, i) => (sum[i]! += v)),
        );
        const d = maxAbs(sum, want);
        t.ok(d <= 1e-5, `${label}: summed shares vs one process, max abs diff ${d.toExponential(2)}`);
        single.dispose();
        replicas.forEach((m) => m.dispose());
      }
    }
  }
  t.throws(
    () => of.distributed.copySlice(of.ulr({ copies: 4 }), 0, 3),
    { code: 'ERR_CONFIG' },
    'fewer than 2 copies per rank',
  );
  t.same(of.distributed.copySlice(of.ulr({ copies: 12, antithetic: true }), 1, 2), [6, 12], 'slices on whole pairs');
});

// SPSA / ES perturb only what trains: a direction is zero on a frozen prefix of any kind (here a dense layer before a
// layerNorm, which the dense-tail shortcut does not cover) and on the frozen ranges. The losses the seed replay
// exchanges are the model's at theta +- eps z_p with z_p regenerated here from its Philox stream and zeroed on the
// prefix (float rounding: 1e-6 relative); the whole-slab direction gives visibly other losses.
t.test('seed replay: the directions leave a frozen prefix alone', async (t) => {
  const layers = () => [of.dense(4, 5, { trainable: false }), of.layerNorm(), of.tanh(), of.dense(5, 3)];
  const m = of.sequential(layers(), { seed: 11 });
  const rows = 6;
  const batch = { x: randn(rows * 4, 2), y: Int32Array.from({ length: rows }, (_, i) => i % 3), rows, shape: [4] };
  const eps = 0.1;
  const losses = of.distributed.seedReplayLosses(m, batch, {
    rank: 0,
    size: 1,
    estimator: of.spsa({ perturbations: 2, epsilon: eps }),
  });
  const theta = m.parameters().map((p) => Float64Array.from(p.data));
  const n = theta.reduce((s, p) => s + p.length, 0);
  const frozen = 4 * 5 + 5; // the frozen dense layer's weight and bias lead the slab
  const probe = of.sequential(layers(), { seed: 11 });
  const lossAt = (z: Float32Array, sign: number) => {
    let off = 0;
    probe.parameters().forEach((p, i) => {
      p.data.forEach((_, j) => (p.data[j] = theta[i]![j]! + sign * eps * z[off + j]!));
      off += p.data.length;
    });
    return probe.evaluate(batch).loss;
  };
  for (let p = 0; p < 2; p++) {
    const z = nat.noise(1, n, 11, 0, 0xfffe, p, false);
    const whole = lossAt(z, 1);
    z.fill(0, 0, frozen);
    for (const [sign, got] of [
      [1, losses[p]!],
      [-1, losses[2 + p]!],
    ] as const) {
      const want = lossAt(z, sign);
      t.ok(Math.abs(got - want) <= 1e-6 * Math.abs(want), `direction ${p}, sign ${sign}: ${got} vs ${want}`);
    }
    t.ok(Math.abs(whole - losses[p]!) > 1e-4, `direction ${p}: perturbing the prefix too gives ${whole}`);
  }
  m.dispose();
  probe.dispose();
});
