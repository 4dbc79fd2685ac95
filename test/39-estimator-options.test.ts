// Estimators and ULR options beyond the densities (test/45): SPSA and ES against BP, the learned sigma, sigma per
// output channel, QMC noise and copies 'auto' — each unbiased against the exact or BP gradient by a z-test or a
// cosine with the tolerance stated where it is asserted, and each kept by checkpoints where it has state.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { linearTask } from './helpers/tasks';
import { fromParams, gaussian, smoothedGradient } from './helpers/reference';
import { assertClose, concat, cosine, relErr } from './helpers/close';
import { mlp, randn } from './helpers/native';
import { maxAbs, zScores } from './helpers/stats';

t.test('SPSA and ES agree with BP in expectation on a tiny net, and train through fit', async (t) => {
  const { model } = mlp([4, 5, 3], 'tanh', { seed: 3 });
  const x = randn(4 * 4, 30),
    y = Int32Array.from([0, 1, 2, 1]);
  const bpg = concat(model.gradients({ x, y }, { estimator: of.bp() }));
  const norm = (a: Float64Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0));
  for (const est of [
    of.spsa({ perturbations: 4000 }),
    of.es({ population: 4000, rankShaping: false }),
    of.es({ population: 4000 }),
  ]) {
    const g = concat(model.gradients({ x, y }, { estimator: est, step: 1 }));
    t.ok(cosine(g, bpg) > 0.99, `${JSON.stringify(est)}: cosine ${cosine(g, bpg).toFixed(4)}`);
    if (est.kind === 'spsa' || !est.rankShaping)
      t.ok(Math.abs(norm(g) / norm(bpg) - 1) < 0.1, `scale ${(norm(g) / norm(bpg)).toFixed(3)}`);
  }
  const est = Array.from({ length: 200 }, (_, s) =>
    concat(model.gradients({ x, y }, { estimator: of.spsa({ perturbations: 32 }), step: s })),
  );
  t.ok(maxAbs(zScores(est, bpg)) < 5, `SPSA z-test against BP: max |z| = ${maxAbs(zScores(est, bpg)).toFixed(2)}`);
  t.throws(() => of.spsa({ epsilon: 0 }), { code: 'ERR_CONFIG' });
  t.throws(() => of.es({ population: 0 }), { code: 'ERR_CONFIG' });
  model.dispose();
  const { train, test } = of.datasets.digits();
  for (const e of [of.spsa({ perturbations: 8 }), of.es({ population: 16, sigma: 0.01 })]) {
    const m = of.sequential([of.dense(784, 16), of.relu(), of.dense(16, 10)], { seed: 1 });
    const h = await m.fit(train, {
      estimator: e,
      optimizer: of.adam({ lr: 3e-3 }),
      epochs: 1,
      batchSize: 64,
      validation: test,
    });
    t.ok(
      h.epochs[0]!.valAccuracy! > 0.3,
      `${e.kind}: ${(100 * h.epochs[0]!.valAccuracy!).toFixed(1)}% after one epoch (chance 10%)`,
    );
    m.dispose();
  }
});

t.test('learnable log sigma: unbiased sigma gradient, sigma moves, kept by checkpoints', async (t) => {
  // Linear layer, squared error: J(sigma) = J(0) + sigma^2, so dJ/d(log sigma) = 2 sigma^2.
  const { model, x, y } = linearTask(12);
  const sigma = 0.5,
    lr = 1e-5;
  const grads: number[] = [];
  let prev = Math.log(sigma);
  for (let i = 0; i < 300; i++) {
    model.trainStep(
      { x, y },
      { estimator: of.ulr({ copies: 64, sigma, learnSigma: { lr } }), optimizer: of.sgd({ lr: 1e-12 }) },
    );
    const now = model._native!.exportState().logSigma![0]!;
    grads.push((prev - now) / lr);
    prev = now;
  }
  const mean = grads.reduce((a, b) => a + b) / grads.length;
  const se = Math.sqrt(grads.reduce((a, g) => a + (g - mean) ** 2, 0) / (grads.length - 1) / grads.length);
  const want = 2 * Math.exp(prev) ** 2;
  t.ok(
    Math.abs(mean - want) < 5 * se,
    `mean d/dlog(sigma) ${mean.toFixed(4)} vs ${want.toFixed(4)} (se ${se.toFixed(4)})`,
  );
  t.ok(model.sigma![0]! < sigma, `sigma moved down the loss: ${model.sigma![0]!.toFixed(6)}`);
  const file = path.join(os.tmpdir(), `of-sigma-${process.pid}.ofm`);
  await model.save(file);
  const back = await of.load(file);
  t.same(back.sigma, model.sigma, 'checkpoint round trip');
  fs.rmSync(file);
  t.throws(() => of.ulr({ learnSigma: { lr: 0.1 }, sigmaSchedule: { kind: 'cosine' } }), {
    code: 'ERR_CONFIG',
    message: /sigmaSchedule/,
  });
  back.dispose();
  model.dispose();
});

t.test('sigma per output channel: unbiased, and equal channels match one sigma per layer', async (t) => {
  const { model, x, y, exact } = linearTask(14);
  const est = Array.from({ length: 300 }, (_, s) =>
    concat(model.gradients({ x, y }, { estimator: of.ulr({ copies: 8, sigma: [[0.2, 0.5, 1.0]] }), step: s })),
  );
  t.ok(maxAbs(zScores(est, exact)) < 5, `per-channel sigma: max |z| = ${maxAbs(zScores(est, exact)).toFixed(2)}`);
  const { model: mm } = mlp([6, 9, 4], 'tanh', { seed: 5 });
  const xx = randn(5 * 6, 9),
    yy = Int32Array.from([0, 3, 1, 2, 3]);
  for (const injection of of.INJECTIONS) {
    const one = concat(
      mm.gradients({ x: xx, y: yy }, { estimator: of.ulr({ copies: 8, sigma: [0.3, 0.2], injection }), step: 4 }),
    );
    const ch = concat(
      mm.gradients(
        { x: xx, y: yy },
        { estimator: of.ulr({ copies: 8, sigma: [new Array(9).fill(0.3), 0.2], injection }), step: 4 },
      ),
    );
    assertClose(t, ch, one, {
      atol: 1e-5 * maxAbs(one),
      rtol: 1e-4,
      label: `${injection}: equal channel sigmas = one sigma`,
    });
  }
  t.throws(() => mm.gradients({ x: xx, y: yy }, { estimator: of.ulr({ sigma: [[0.1, 0.2], 0.2] }) }), {
    code: 'ERR_CONFIG',
    message: /one value per output \(9\)/,
  });
  t.throws(() => of.ulr({ sigma: [[0.1, -1]] }), { code: 'ERR_CONFIG' });
  model.dispose();
  mm.dispose();
});

t.test('QMC noise (randomized Sobol across copies): unbiased, and lower variance than plain at equal K', async (t) => {
  const { model, x, y, exact } = linearTask(15);
  for (const o of [
    { baseline: 'clean' },
    { baseline: 'none' },
    { baseline: 'clean', antithetic: true },
  ] as of.UlrOptions[]) {
    const est = Array.from({ length: 300 }, (_, s) =>
      concat(model.gradients({ x, y }, { estimator: of.ulr({ copies: 8, sigma: 0.4, qmc: true, ...o }), step: s })),
    );
    t.ok(
      maxAbs(zScores(est, exact)) < 5,
      `qmc ${JSON.stringify(o)}: max |z| = ${maxAbs(zScores(est, exact)).toFixed(2)}`,
    );
  }
  model.dispose();
  const { model: mm } = mlp([6, 8, 3], 'tanh', { seed: 8 });
  const xx = randn(4 * 6, 80),
    yy = Int32Array.from([2, 0, 1, 2]);
  const totalVar = (o: of.UlrOptions) => {
    const est = Array.from({ length: 200 }, (_, s) =>
      concat(mm.gradients({ x: xx, y: yy }, { estimator: of.ulr({ copies: 16, sigma: 0.1, ...o }), step: s })),
    );
    const m = est[0]!.map((_, i) => est.reduce((a, e) => a + e[i]!, 0) / est.length);
    return est.reduce((a, e) => a + e.reduce((b, v, i) => b + (v - m[i]!) ** 2, 0), 0) / (est.length - 1);
  };
  for (const baseline of ['clean', 'none'] as const) {
    const plain = totalVar({ baseline }),
      qmc = totalVar({ baseline, qmc: true });
    t.ok(
      qmc < plain,
      `baseline ${baseline}: variance ${qmc.toExponential(3)} (qmc) < ${plain.toExponential(3)} (plain)`,
    );
  }
  t.throws(() => of.ulr({ qmc: true }), { code: 'ERR_CONFIG', message: /qmc needs baseline/ });
  t.throws(() => of.ulr({ qmc: true, baseline: 'clean', noise: 'laplace' }), {
    code: 'ERR_CONFIG',
    message: /normal noise/,
  });
  mm.dispose();
});

t.test("copies: 'auto' (layer-wise): Neyman allocation from running variances, kept by checkpoints", async (t) => {
  const { train, test } = of.datasets.digits();
  const m = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 4 });
  const auto = of.ulr({ injection: 'layerwise', copies: 'auto', budget: 16 });
  for (let i = 0; i < 10; i++)
    m.trainStep(
      { x: train.x.subarray(i * 64 * 784, (i + 1) * 64 * 784), y: train.y.subarray(i * 64, (i + 1) * 64) },
      { estimator: auto },
    );
  const v = m._native!.exportState().layerVar!;
  t.ok(
    v.length === 2 && v.every((x) => x > 0),
    `running per-copy variances ${v.map((x) => x.toExponential(2)).join(', ')}`,
  );
  // The allocation the engine must use: K_l = U sqrt(V_l / c_l) / sum_j sqrt(V_j c_j), U the uniform cost.
  const cost = [64 + 64 * 10, 10];
  const uniform = 16 * (cost[0]! + cost[1]!);
  const norm = v.reduce((a, x, l) => a + Math.sqrt(x * cost[l]!), 0);
  const k = v.map((x, l) => Math.min(4096, Math.max(2, Math.round((uniform * Math.sqrt(x / cost[l]!)) / norm))));
  const batch = { x: train.x.subarray(0, 64 * 784), y: train.y.subarray(0, 64) };
  const a = concat(m.gradients(batch, { estimator: auto, step: 99 }));
  const b = concat(m.gradients(batch, { estimator: of.ulr({ injection: 'layerwise', copies: k }), step: 99 }));
  t.ok(
    a.every((x, i) => x === b[i]),
    `auto used copies [${k.join(', ')}]`,
  );
  t.notSame(k, [16, 16], 'the allocation moved away from uniform');
  const file = path.join(os.tmpdir(), `of-auto-${process.pid}.ofm`);
  await m.save(file);
  const back = await of.load(file);
  t.same(back._native!.exportState().layerVar, v, 'checkpoint round trip');
  fs.rmSync(file);
  back.dispose();
  const h = await m.fit(train, { estimator: auto, epochs: 1, batchSize: 64, validation: test });
  t.ok(h.epochs[0]!.valAccuracy! > 0.8, `trains: ${(100 * h.epochs[0]!.valAccuracy!).toFixed(1)}% after one epoch`);
  t.throws(() => of.ulr({ copies: 'auto' }), { code: 'ERR_CONFIG', message: /layerwise/ });
  m.dispose();
});

t.test(
  'layer-wise blocks: one block of every layer is the all-at-once estimator; a 2-layer block is unbiased',
  async (t) => {
    const { model, spec } = mlp([5, 7, 6, 3], 'tanh', { seed: 21 });
    const x = randn(4 * 5, 41),
      y = Int32Array.from([0, 2, 1, 2]);
    const all = concat(model.gradients({ x, y }, { estimator: of.ulr({ copies: 8, sigma: 0.2 }), step: 3 }));
    const one = concat(
      model.gradients(
        { x, y },
        { estimator: of.ulr({ copies: 8, sigma: 0.2, injection: 'layerwise', blocks: [3] }), step: 3 },
      ),
    );
    assertClose(t, one, all, { atol: 1e-5 * maxAbs(all), rtol: 1e-4, label: 'blocks [3] vs injection all' });
    // blocks [2, 1]: the first block's parameters follow its own smoothed loss (noise in layers 0 and 1 only).
    const sigma = 0.4;
    const ref = fromParams(
      spec,
      model.parameters().map((p) => p.data),
      'crossEntropy',
    );
    const est = Array.from({ length: 300 }, (_, s) =>
      model.gradients(
        { x, y },
        { estimator: of.ulr({ copies: 16, sigma, injection: 'layerwise', blocks: [2, 1] }), step: s },
      ),
    );
    const normal = gaussian(321);
    const draws = Array.from({ length: 3000 }, () => smoothedGradient(ref, x, 4, y, [sigma, sigma, 0], 2, normal));
    const idx = [0, 1, 2, 3];
    const pick = (g: ArrayLike<number>[]) => concat(idx.map((p) => g[p]!));
    const refAll = draws.map(pick),
      mine = est.map(pick);
    const mean = (xs: Float64Array[]) => xs[0]!.map((_, i) => xs.reduce((a, e) => a + e[i]!, 0) / xs.length);
    const se2 = (xs: Float64Array[], mu: Float64Array) =>
      mu.map((m, i) => xs.reduce((a, e) => a + (e[i]! - m) ** 2, 0) / (xs.length - 1) / xs.length);
    const mr = mean(refAll),
      mm = mean(mine);
    const vr = se2(refAll, mr),
      vm = se2(mine, mm);
    const z = mm.map((v, i) => (v - mr[i]!) / Math.sqrt(vm[i]! + vr[i]!));
    t.ok(maxAbs(z) < 5, `blocks [2, 1], first block: max |z| = ${maxAbs(z).toFixed(2)} over ${z.length}`);
    t.throws(() => model.gradients({ x, y }, { estimator: of.ulr({ injection: 'layerwise', blocks: [2, 2] }) }), {
      code: 'ERR_CONFIG',
      message: /cover the 3 layers with parameters/,
    });
    t.throws(() => of.ulr({ blocks: [1, 2] }), { code: 'ERR_CONFIG', message: /layerwise/ });
    model.dispose();
  },
);

t.test('bp({ sigma }): the exact gradient of the noise-injected loss, unbiased for the smoothed loss', async (t) => {
  const sigma = 0.8;
  const { model, spec } = mlp([4, 5, 3], 'tanh', { seed: 12 });
  const x1 = randn(4, 41),
    y1 = Int32Array.from([2]);
  // one sample in R rows: each row draws its own noise, so the batch gradient averages R noise draws
  const R = 4000;
  const x = Float32Array.from({ length: R * 4 }, (_, i) => x1[i % 4]!);
  const y = new Int32Array(R).fill(2);
  const ref = fromParams(
    spec,
    model.parameters().map((p) => p.data),
    'crossEntropy',
  );
  const normal = gaussian(7);
  const draws = Array.from({ length: 20000 }, () =>
    concat(smoothedGradient(ref, x1, 1, y1, [sigma, sigma], 2, normal)),
  );
  const smooth = draws[0]!.map((_, i) => draws.reduce((a, d) => a + d[i]!, 0) / draws.length);
  const noisy = concat(model.gradients({ x, y }, { estimator: of.bp({ sigma }) }));
  const plain = concat(model.gradients({ x, y }, { estimator: of.bp() }));
  const err = (g: ArrayLike<number>) => relErr(g, smooth);
  // tolerance 5%: the batch mean of 4,000 draws against 40,000; plain BP is the smoothed gradient's sigma -> 0 limit
  t.ok(err(noisy) < 0.05, `noisy BP vs the smoothed gradient: relative error ${err(noisy).toFixed(4)} < 0.05`);
  t.ok(err(plain) > 0.1, `plain BP is measurably another gradient: ${err(plain).toFixed(4)} > 0.1`);
  t.same(
    Array.from(concat(model.gradients({ x, y }, { estimator: of.bp({ sigma: 0 }) }))),
    Array.from(plain),
    'sigma 0 is plain BP, bit for bit',
  );
  for (const bad of [-1, NaN, Infinity, '0.1'])
    t.throws(() => of.bp({ sigma: bad as number }), { code: 'ERR_CONFIG' }, `sigma ${String(bad)} is refused`);
  const gru = of.sequential([of.gru({ units: 3, inputShape: [2, 2] }), of.dense(3, 2)], { seed: 1 });
  t.throws(
    () => gru.gradients({ x: new Float32Array(4), y: Int32Array.from([0]) }, { estimator: of.bp({ sigma: 0.1 }) }),
    { code: 'ERR_CONFIG', message: /recurrent/ },
    'recurrent layers: a typed refusal',
  );
});
