// The estimator family: noise densities (normal, Laplace, logistic) with their exact scores, the sign-
// compressed score, and the clean-loss baseline. A linear layer with squared error has an exact gradient
// (noise on the output adds only a constant to the smoothed loss), so every option must converge to it:
// relative error < 3% at K = 65,536 and shrinking ~1/sqrt(K); unbiased by a z-test at small K.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { linearTask } from './helpers/tasks';
import { backprop, fromParams, gaussian, smoothedGradient } from './helpers/reference';
import { concat, relErr } from './helpers/close';
import { mlp, nat, randn } from './helpers/native';
import { ksNormal, maxAbs, zScores } from './helpers/stats';

t.test('Laplace and logistic noise follow their distributions; the fast path equals the scalar oracle', async (t) => {
  const cdf: Record<string, (x: number) => number> = {
    laplace: (x) => (x < 0 ? 0.5 * Math.exp(x) : 1 - 0.5 * Math.exp(-x)),
    logistic: (x) => 1 / (1 + Math.exp(-x)),
  };
  for (const [i, name, seed] of [
    [1, 'laplace', 5],
    [2, 'logistic', 5],
    [1, 'laplace', 6],
    [2, 'logistic', 7],
  ] as const) {
    const z = nat.noise(40, 257, seed, 1, 0, 0, false, false, i);
    const slow = nat.noise(40, 257, seed, 1, 0, 0, false, true, i);
    t.ok(Buffer.from(z.buffer).equals(Buffer.from(slow.buffer)), `${name}: vectorized = scalar noise_at()`);
    // KS against the CDF, by probability-integral transform to a normal and the existing normal KS test.
    const g = Float64Array.from(z, (v) => {
      const u = Math.min(1 - 1e-12, Math.max(1e-12, cdf[name]!(v)));
      return Math.SQRT2 * inverseErf(2 * u - 1);
    });
    const { p } = ksNormal(g);
    t.ok(p > 0.001, `${name}, seed ${seed}: KS p = ${p.toFixed(4)}`);
  }
});

// Inverse error function (Giles' approximation, ~1e-9 relative), for the probability-integral transform.
function inverseErf(x: number): number {
  let w = -Math.log((1 - x) * (1 + x)),
    p: number;
  if (w < 6.25) {
    w -= 3.125;
    p = -3.6444120640178196996e-21;
    for (const c of [
      -1.685059138182016589e-19, 1.2858480715256400167e-18, 1.115787767802518096e-17, -1.333171662854620906e-16,
      2.0972767875968561637e-17, 6.6376381343583238325e-15, -4.0545662729752068639e-14, -8.1519341976054721522e-14,
      2.6335093153082322977e-12, -1.2975133253453532498e-11, -5.4154120542946279317e-11, 1.051212273321532285e-9,
      -4.1126339803469836976e-9, -2.9070369957882005086e-8, 4.2347877827932403518e-7, -1.3654692000834678645e-6,
      -1.3882523362786468719e-5, 0.0001867342080340571352, -0.00074070253416626697512, -0.0060336708714301490533,
      0.24015818242558961693, 1.6536545626831027356,
    ])
      p = c + p * w;
  } else if (w < 16) {
    w = Math.sqrt(w) - 3.25;
    p = 2.2137376921775787049e-9;
    for (const c of [
      9.0756561938885390979e-8, -2.7517406297064545428e-7, 1.8239629214389227755e-8, 1.5027403968909827627e-6,
      -4.013867526981545969e-6, 2.9234449089955446044e-6, 1.2475304481671778723e-5, -4.7318229009055733981e-5,
      6.8284851459573175448e-5, 2.4031110387097893999e-5, -0.0003550375203628474796, 0.00095328937973738049703,
      -0.0016882755560235047313, 0.0024914420961078508066, -0.0037512085075692412107, 0.005370914553590063617,
      1.0052589676941592334, 3.0838856104922207635,
    ])
      p = c + p * w;
  } else {
    w = Math.sqrt(w) - 5;
    p = -2.7109920616438573243e-11;
    for (const c of [
      -2.5556418169965252055e-10, 1.5076572693500548083e-9, -3.7894654401267369937e-9, 7.6157012080783393804e-9,
      -1.4960026627149240478e-8, 2.9147953450901080826e-8, -6.7711997758452339498e-8, 2.2900482228026654717e-7,
      -9.9298272942317002539e-7, 4.5260625972231537039e-6, -1.9681778105531670567e-5, 7.5995277030017761139e-5,
      -0.00021503011930044477347, -0.00013871931833623122026, 1.0103004648645343977, 4.8499064014085844221,
    ])
      p = c + p * w;
  }
  return p * x;
}

const options: [string, of.UlrOptions][] = [];
for (const noise of of.DENSITIES)
  for (const score of of.SCORES)
    for (const antithetic of [false, true])
      options.push([`${noise}/${score}${antithetic ? '/antithetic' : ''}`, { noise, score, antithetic }]);
for (const antithetic of [false, true])
  options.push([`qmc/clean${antithetic ? '/antithetic' : ''}`, { qmc: true, baseline: 'clean', antithetic }]);

t.test('every density and score converges to the exact gradient: < 3% at K = 65,536, ~1/sqrt(K)', async (t) => {
  const { model, x, y, exact } = linearTask(3);
  for (const [name, o] of options) {
    // Root-mean-square relative error over independent estimates (steps), so the ratio is not one draw's luck.
    const err = (copies: number, draws: number) =>
      Math.sqrt(
        Array.from({ length: draws }, (_, i) => i + 1).reduce(
          (a, step) =>
            a +
            relErr(
              concat(model.gradients({ x, y }, { estimator: of.ulr({ copies, sigma: 0.5, ...o }), step })),
              exact,
            ) **
              2,
          0,
        ) / draws,
      );
    const small = err(1024, 64),
      big = err(65536, 8);
    t.ok(big < 0.03, `${name}: relative error ${(100 * big).toFixed(2)}% at K = 65,536`);
    t.ok(
      small / big > 4,
      `${name}: error ratio K=1,024 / K=65,536 = ${(small / big).toFixed(1)} (1/sqrt(K) predicts 8)`,
    );
  }
  model.dispose();
});

t.test('unbiased at small K: z-test against the exact gradient (N = 300, max |z| < 5)', async (t) => {
  const { model, x, y, exact } = linearTask(4);
  const cases: [string, of.UlrOptions][] = [
    ['laplace', { noise: 'laplace' }],
    ['logistic', { noise: 'logistic' }],
    ['normal/sign', { score: 'sign' }],
    ['logistic/sign', { noise: 'logistic', score: 'sign' }],
    ['clean baseline', { baseline: 'clean' }],
    ['clean baseline, antithetic', { baseline: 'clean', antithetic: true }],
  ];
  for (const [name, o] of cases) {
    const est = Array.from({ length: 300 }, (_, s) =>
      concat(model.gradients({ x, y }, { estimator: of.ulr({ copies: 8, sigma: 0.4, ...o }), step: s })),
    );
    const z = zScores(est, exact);
    t.ok(maxAbs(z) < 5, `${name}: max |z| = ${maxAbs(z).toFixed(2)} over ${z.length}`);
  }
  model.dispose();
});

t.test('the clean baseline and the densities train digits', async (t) => {
  const { train, test } = of.datasets.digits();
  for (const o of [
    { baseline: 'clean' },
    { noise: 'logistic' },
    { noise: 'laplace', sigma: 0.05 },
  ] as of.UlrOptions[]) {
    const m = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 2 });
    const h = await m.fit(train, {
      estimator: of.ulr({ copies: 16, ...o }),
      epochs: 1,
      batchSize: 64,
      validation: test,
    });
    t.ok(
      h.epochs[0]!.valAccuracy! > 0.75,
      `${JSON.stringify(o)}: ${(100 * h.epochs[0]!.valAccuracy!).toFixed(1)}% after one epoch`,
    );
    m.dispose();
  }
});

t.test('gradientCheck: per-layer cosine, error, variance, SNR and a suggestion', async (t) => {
  const m = of.sequential([of.dense(6, 8), of.tanh(), of.dense(8, 3)], { seed: 9 });
  const batch = { x: randn(4 * 6, 90), y: Int32Array.from([0, 2, 1, 2]) };
  const good = m.gradientCheck(batch, { estimator: of.ulr({ copies: 4096, sigma: 0.05 }), trials: 8 });
  t.same(
    good.map((l) => l.layer),
    ['dense0', 'dense1'],
  );
  for (const l of good)
    t.ok(
      l.cosine! > 0.99 && l.suggestion === 'ok',
      `${l.layer}: K=4096 cosine ${l.cosine!.toFixed(4)}, snr ${l.snr.toFixed(1)}, ${l.suggestion}`,
    );
  const noisy = m.gradientCheck(batch, { estimator: of.ulr({ copies: 2, sigma: 0.05 }), trials: 8 });
  t.ok(
    noisy.some((l) => l.suggestion === 'more copies'),
    `K=2: ${noisy.map((l) => `${l.layer} ${l.suggestion} (trial cosine ${l.meanTrialCosine!.toFixed(2)})`).join(', ')}`,
  );
  const smooth = m.gradientCheck(batch, { estimator: of.ulr({ copies: 4096, sigma: 3 }), trials: 8 });
  t.ok(
    smooth.some((l) => l.suggestion === 'smaller sigma'),
    `sigma=3: ${smooth.map((l) => `${l.layer} ${l.suggestion} (error ${l.relativeError!.toFixed(2)})`).join(', ')}`,
  );
  const sign = of.sequential([of.dense(6, 8), of.sign(), of.dense(8, 3)], { seed: 9 });
  const ns = sign.gradientCheck(batch, { estimator: of.ulr({ copies: 64 }), trials: 4 });
  t.ok(
    ns.every((l) => l.cosine === undefined && Number.isFinite(l.snr)),
    'no BP for sign networks: variance and SNR only',
  );
  m.dispose();
  sign.dispose();
});

t.test("layer-wise injection: each layer's estimate is unbiased for its own smoothed loss (z-test)", async (t) => {
  const sigma = 0.5;
  const { model, spec } = mlp([4, 5, 3], 'tanh', { seed: 11 });
  const x = randn(4 * 4, 31),
    y = Int32Array.from([0, 1, 2, 1]);
  const ref = fromParams(
    spec,
    model.parameters().map((p) => p.data),
    'crossEntropy',
  );
  const est = Array.from({ length: 300 }, (_, s) =>
    model.gradients({ x, y }, { estimator: of.ulr({ copies: 16, sigma, injection: 'layerwise' }), step: s }),
  );
  // Layer l's reference: pathwise gradient with noise in layer l only, averaged over 3,000 antithetic draws.
  for (const [l, sig] of [
    [0, [sigma, 0]],
    [1, [0, sigma]],
  ] as const) {
    const normal = gaussian(100 + l);
    const draws = Array.from({ length: 3000 }, () => smoothedGradient(ref, x, 4, y, [...sig], 2, normal));
    const idx = [2 * l, 2 * l + 1];
    const refMean = concat(
      idx.map((p) => {
        const n = draws[0]![p]!.length;
        return Float64Array.from({ length: n }, (_, i) => draws.reduce((a, d) => a + d[p]![i]!, 0) / draws.length);
      }),
    );
    const refVar = concat(
      idx.map((p) => {
        const n = draws[0]![p]!.length;
        return Float64Array.from({ length: n }, (_, i) => {
          const mu = draws.reduce((a, d) => a + d[p]![i]!, 0) / draws.length;
          return draws.reduce((a, d) => a + (d[p]![i]! - mu) ** 2, 0) / (draws.length - 1) / draws.length;
        });
      }),
    );
    const mine = est.map((g) => concat(idx.map((p) => g[p]!)));
    const m = mine[0]!.map((_, i) => mine.reduce((a, e) => a + e[i]!, 0) / mine.length);
    const v = m.map((mu, i) => mine.reduce((a, e) => a + (e[i]! - mu) ** 2, 0) / (mine.length - 1) / mine.length);
    const z = m.map((mu, i) => (mu - refMean[i]!) / Math.sqrt(v[i]! + refVar[i]!));
    t.ok(maxAbs(z) < 5, `layer ${l}: max |z| = ${maxAbs(z).toFixed(2)} over ${z.length}`);
  }
  t.throws(() => of.ulr({ copies: [4, 8] }), { code: 'ERR_CONFIG', message: /layerwise/ });
  t.throws(() => model.gradients({ x, y }, { estimator: of.ulr({ copies: [4, 8, 2], injection: 'layerwise' }) }), {
    code: 'ERR_CONFIG',
    message: /one per layer with parameters/,
  });
  t.throws(() => model.gradients({ x, y }, { estimator: of.ulr({ injection: 'layerwise' }), loss: () => [] }), {
    code: 'ERR_DATA',
    message: /must return/,
  });
  const perLayer = concat(
    model.gradients({ x, y }, { estimator: of.ulr({ copies: [8, 4], injection: 'layerwise' }), step: 1 }),
  );
  t.ok(perLayer.every(Number.isFinite), 'copies per layer');
  const regen = concat(
    model.gradients(
      { x, y },
      { estimator: of.ulr({ copies: [8, 4], injection: 'layerwise', storeNoise: false }), step: 1 },
    ),
  );
  t.ok(
    regen.every((v, i) => v === perLayer[i]),
    'regenerated noise: bit-identical',
  );
  model.dispose();
});

t.test('layer-wise beats all-at-once in per-layer cosine to BP (MLP 784-128-128-10, K = 64 and 512)', async (t) => {
  const { train } = of.datasets.digits();
  const m = of.sequential([of.dense(784, 128), of.relu(), of.dense(128, 128), of.relu(), of.dense(128, 10)], {
    seed: 1,
  });
  const batch = { x: train.x.subarray(0, 64 * 784), y: train.y.subarray(0, 64) };
  for (const copies of [64, 512]) {
    const all = m.gradientCheck(batch, { estimator: of.ulr({ copies }), trials: 6 });
    const lw = m.gradientCheck(batch, { estimator: of.ulr({ copies, injection: 'layerwise' }), trials: 6 });
    lw.forEach((l, i) =>
      t.ok(
        l.meanTrialCosine! > all[i]!.meanTrialCosine!,
        `K=${copies} ${l.layer}: layer-wise ${l.meanTrialCosine!.toFixed(3)} > all ${all[i]!.meanTrialCosine!.toFixed(3)}`,
      ),
    );
  }
  m.dispose();
});

t.test('running-average baseline: unbiased, kept by checkpoints', async (t) => {
  const { model, x, y, exact } = linearTask(6);
  for (let i = 0; i < 20; i++)
    model.trainStep(
      { x, y },
      { estimator: of.ulr({ copies: 8, baseline: 'running' }), optimizer: of.sgd({ lr: 1e-4 }) },
    );
  const st = model._native!.exportState();
  t.ok(st.runningLoss !== null && st.runningLoss > 0, `running baseline ${st.runningLoss?.toFixed(4)} after 20 steps`);
  const exact2 = concat(
    backprop(
      fromParams(
        [{ kind: 'dense', I: 4, O: 3 }],
        model.parameters().map((p) => p.data),
        'mse',
      ),
      x,
      2, // linearTask's rows
      y,
    ),
  );
  const est = Array.from({ length: 300 }, (_, s) =>
    concat(model.gradients({ x, y }, { estimator: of.ulr({ copies: 8, sigma: 0.4, baseline: 'running' }), step: s })),
  );
  t.ok(maxAbs(zScores(est, exact2)) < 5, `max |z| = ${maxAbs(zScores(est, exact2)).toFixed(2)}`);
  t.equal(model._native!.exportState().runningLoss, st.runningLoss, 'gradients() leaves the running value alone');
  t.notSame(exact2, exact, 'the model moved');
  const file = path.join(os.tmpdir(), `of-running-${process.pid}.ofm`);
  await model.save(file);
  const back = await of.load(file);
  t.equal(back._native!.exportState().runningLoss, st.runningLoss, 'checkpoint round trip');
  fs.rmSync(file);
  back.dispose();
  model.dispose();
});

t.test('sigma schedules: a step schedule equals fitting each epoch with its own sigma', async (t) => {
  const { train } = of.datasets.digits();
  const small = of.data.take(
    train,
    Array.from({ length: 300 }, (_, i) => i * 25),
  );
  const net = () => of.sequential([of.dense(784, 16), of.relu(), of.dense(16, 10)], { seed: 8 });
  const a = net();
  await a.fit(small, {
    estimator: of.ulr({ copies: 8, sigma: 0.2, sigmaSchedule: { kind: 'step', every: 1, gamma: 0.5 } }),
    epochs: 2,
    batchSize: 30,
  });
  const b = net();
  await b.fit(small, { estimator: of.ulr({ copies: 8, sigma: 0.2 }), epochs: 1, batchSize: 30 });
  await b.fit(small, { estimator: of.ulr({ copies: 8, sigma: 0.1 }), epochs: 1, batchSize: 30 });
  const bits = (m: of.Model) =>
    Buffer.concat(m.parameters().map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength)));
  t.ok(bits(a).equals(bits(b)), 'bit-identical');
  const c = net();
  await c.fit(small, {
    estimator: of.ulr({ copies: 8, sigma: 0.2, sigmaSchedule: { kind: 'cosine', min: 0.1 } }),
    epochs: 2,
    batchSize: 30,
  });
  t.notOk(bits(c).equals(bits(a)), 'cosine differs from step');
  t.throws(() => of.ulr({ sigmaSchedule: { kind: 'linear' as never } }), {
    code: 'ERR_CONFIG',
    message: /sigmaSchedule.kind/,
  });
  t.throws(() => of.ulr({ sigmaSchedule: { kind: 'step', gamma: 2 } }), { code: 'ERR_CONFIG', message: /gamma/ });
  for (const m of [a, b, c]) m.dispose();
});
