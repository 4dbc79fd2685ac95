// The device backend (native/device, native/cuda). `npm test` pins ONEFORWARD_BACKEND=cpu so that the other files
// test the CPU engine on any machine; this one names its backends. The same checks run on the host simulation of a
// device ('sim', every machine) and on CUDA where a GPU answers (skipped otherwise, with the reason). Against the
// CPU engine:
// - the noise of the fused noisy forward is bit-identical (every density, antithetic pairs, odd widths and rows);
// - the device GEMM in all four transpose cases (sim: bit-identical, being our CPU GEMM; CUDA: rel. error <= 1e-5
//   in float32, <= 1e-2 with TF32; beta = 0 never reads C, which starts as NaN);
// - gradients of BP and ULR for every layer kind (29 models, up to 4 estimators each, plus 80 seeded random
//   models): max abs diff <= tol max |g_cpu|, with tol 1e-5 on the simulation (only the order of float sums
//   differs) and 1e-4 on CUDA (cuBLAS order, libm);
// - optimizer steps (SGD, momentum + Nesterov + decay, Adam, AdamW + clipping) and frozen prefixes: bit-identical on
//   the simulation for dense models;
// - fits (digits MLP and CNN, the karate club): per-epoch loss within fitTol (relative; 1e-3 on the simulation) and
//   validation accuracy within 10 fitTol;
// - what the device does not run falls back to the CPU with the same bits, and says why (placement);
// - errors: a non-finite loss and maxGradNorm stop with ERR_NUMERIC and leave the last good parameters, as on the CPU.
// (Local modules, distributed pieces, SPSA, JS losses: test/63. Every layer kind, random models, errors: test/64.)
import t from 'tap';
import * as of from '../lib/index';
import { concat } from './helpers/close';
import { nat, randn } from './helpers/native';
import {
  info,
  devices,
  norm,
  updateClose,
  small,
  val,
  batch,
  maxAbs,
  maxMag,
  params,
  withBiases,
  bitsEqual,
} from './helpers/device';

t.test('backend selection', async (t) => {
  t.ok(info.compiled.includes('cpu'), 'the CPU is always compiled');
  t.type(info.reason, 'string');
  t.ok(info.reason.length > 0, `info() says why: ${info.reason}`);
  if (info.devices.cuda === 0) {
    t.equal(of.sequential([of.dense(4, 2)], { backend: 'auto' }).backend, 'cpu', "'auto' falls back to the CPU");
    t.throws(
      () => of.sequential([of.dense(4, 2)], { backend: 'cuda' }),
      { code: 'ERR_BACKEND' },
      "backend 'cuda' without a GPU is ERR_BACKEND",
    );
    t.throws(
      () => nat.deviceNoise('cuda', 2, 2, 0, 0, 0, 0, false, 0),
      { code: 'ERR_BACKEND' },
      'so is a CUDA kernel test',
    );
    const prev = process.env.ONEFORWARD_BACKEND;
    process.env.ONEFORWARD_BACKEND = 'cuda';
    try {
      t.throws(() => of.sequential([of.dense(4, 2)]), { code: 'ERR_BACKEND' }, 'and ONEFORWARD_BACKEND=cuda');
    } finally {
      if (prev === undefined) delete process.env.ONEFORWARD_BACKEND;
      else process.env.ONEFORWARD_BACKEND = prev;
    }
  } else {
    t.equal(
      of.sequential([of.dense(4, 2)], { backend: 'auto' }).backend,
      'cuda',
      "'auto' picks CUDA when a GPU answers",
    );
  }
  t.throws(
    () => of.sequential([of.dense(4, 2)], { backend: 'tpu' as 'cpu' }),
    { code: 'ERR_CONFIG' },
    'an unknown backend',
  );
  t.throws(
    () => of.sequential([of.dense(4, 2)], { allowTf32: 1 as unknown as boolean }),
    { code: 'ERR_CONFIG' },
    'allowTf32 must be boolean',
  );
  const m = of.sequential([of.dense(4, 2)], { backend: 'cpu' });
  t.same(
    m.backendInfo(),
    { name: 'cpu', device: 'host CPU', blas: 'oneforward', tf32: false, placement: 'cpu' },
    'a CPU model reports itself',
  );
});

t.test("our CUDA SGEMM's tile code, run on the host, in every transpose case", async (t) => {
  // The kernel of native/cuda/gemm.cu with its phases run thread by thread (device/tiled_gemm.h): shapes that leave
  // partial tiles and slices on every side, K = 0, and one larger than a tile in each dimension.
  for (const [M, N, K] of [
    [37, 70, 19],
    [64, 64, 16],
    [1, 1, 1],
    [130, 3, 0],
    [65, 129, 33],
  ] as const) {
    const A = randn(M * K, 1),
      B = randn(K * N, 2),
      C0 = randn(M * N, 3);
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      for (const beta of [0, 0.5]) {
        const want = C0.slice();
        nat.gemm(want, A, B, M, N, K, ta, tb, 1.5, beta, null, true);
        const got = beta === 0 ? new Float32Array(M * N).fill(NaN) : C0.slice();
        nat.deviceGemm('tiled', got, A, B, M, N, K, ta, tb, 1.5, beta, false);
        const err = maxAbs(got, want),
          scale = Math.max(maxMag(want), 1e-30);
        t.ok(
          err <= 1e-5 * scale * Math.sqrt(K + 1),
          `${M}x${N}x${K}, ta ${ta}, tb ${tb}, beta ${beta}: ${err.toExponential(2)}`,
        );
      }
    }
  }
});

for (const d of devices) {
  t.test(`${d.name}: noise is bit-identical to the CPU's`, async (t) => {
    const cases: [number, number, boolean, number, number, number][] = [
      [7, 200, false, 0, 0, 1],
      [6, 64, true, 0, 3, 2],
      [5, 33, false, 1, 10, 3],
      [4, 130, true, 2, 1, 2 ** 40 + 5],
      [3, 1, false, 0, 7, 9],
      [9, 257, true, 1, 0, 11],
    ];
    for (const [R, O, anti, density, row0, seed] of cases) {
      const got = nat.deviceNoise(d.name, R, O, seed, 123456, 3, row0, anti, density);
      const want = nat.noise(R, O, seed, 123456, 3, row0, anti, false, density);
      t.ok(bitsEqual(got, want), `${R}x${O}, antithetic ${anti}, density ${density}, row0 ${row0}`);
    }
  });

  t.test(`${d.name}: GEMM in every transpose case`, async (t) => {
    const [M, N, K] = [37, 70, 19];
    const A = randn(M * K, 1),
      B = randn(K * N, 2),
      C0 = randn(M * N, 3);
    for (const [ta, tb] of [
      [false, false],
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      for (const beta of [0, 0.5]) {
        const want = C0.slice();
        nat.gemm(want, A, B, M, N, K, ta, tb, 1.5, beta, null, false);
        const got = beta === 0 ? new Float32Array(M * N).fill(NaN) : C0.slice();
        nat.deviceGemm(d.name, got, A, B, M, N, K, ta, tb, 1.5, beta, false);
        if (d.exact) t.ok(bitsEqual(got, want), `ta ${ta}, tb ${tb}, beta ${beta}: same bits`);
        else
          t.ok(
            maxAbs(got, want) <= 1e-5 * maxMag(want) * Math.sqrt(K),
            `ta ${ta}, tb ${tb}, beta ${beta}: ${maxAbs(got, want)}`,
          );
      }
    }
    if (d.name === 'cuda') {
      const want = new Float32Array(M * N),
        got = new Float32Array(M * N);
      nat.gemm(want, A, B, M, N, K, false, true, 1, 0, null, false);
      nat.deviceGemm('cuda', got, A, B, M, N, K, false, true, 1, 0, true);
      t.ok(maxAbs(got, want) <= 1e-2 * maxMag(want), `TF32: ${maxAbs(got, want)}`);
    }
  });

  t.test(`${d.name}: gradients match the CPU engine`, async (t) => {
    const nets: [
      string,
      () => of.Layer[],
      of.LossName,
      { x: Float32Array; y: Int32Array | Float32Array; rows: number },
    ][] = [
      ['784-48 tanh-10, cross-entropy', () => [of.dense(784, 48), of.tanh(), of.dense(48, 10)], 'crossEntropy', batch],
      [
        '20-16 relu-16 gelu-3 (no bias), mse',
        () => [of.dense(20, 16), of.relu(), of.dense(16, 16, { bias: false }), of.gelu(), of.dense(16, 3)],
        'mse',
        { x: randn(24 * 20, 5), y: randn(24 * 3, 6), rows: 24 },
      ],
      [
        '784-32 leakyRelu-16 sigmoid-10, cross-entropy',
        () => [of.dense(784, 32), of.leakyRelu(), of.dense(32, 16), of.sigmoid(), of.dense(16, 10)],
        'crossEntropy',
        batch,
      ],
    ];
    const ests: [string, of.Estimator][] = [
      ['bp', of.bp()],
      ['ulr K=8', of.ulr({ copies: 8 })],
      ['ulr antithetic K=6', of.ulr({ copies: 6, antithetic: true })],
      ['ulr K=96 (sample sums in two chunks; CPU blocks of other sizes)', of.ulr({ copies: 96 })],
      ['ulr antithetic K=130', of.ulr({ copies: 130, antithetic: true })],
      ['ulr K=2050 (row weights in three stages), mean baseline', of.ulr({ copies: 2050, baseline: 'mean' })],
      ['ulr laplace, mean baseline', of.ulr({ copies: 8, noise: 'laplace', baseline: 'mean' })],
      [
        'ulr logistic, sign score, no baseline',
        of.ulr({ copies: 8, noise: 'logistic', score: 'sign', baseline: 'none' }),
      ],
      [
        'ulr sigma per layer, running baseline',
        of.ulr({ copies: 4, sigma: [0.05, 0.2, 0.1].slice(0, 3), baseline: 'running' }),
      ],
      ['ulr clean baseline', of.ulr({ copies: 8, baseline: 'clean' })],
      ['ulr layer-wise K=8', of.ulr({ copies: 8, injection: 'layerwise' })],
      [
        'ulr layer-wise antithetic K=6, clean baseline',
        of.ulr({ copies: 6, injection: 'layerwise', antithetic: true, baseline: 'clean' }),
      ],
      ['ulr layer-wise K=40, running baseline', of.ulr({ copies: 40, injection: 'layerwise', baseline: 'running' })],
      ['ulr QMC noise, running baseline', of.ulr({ copies: 8, qmc: true, baseline: 'running' })],
      ['ulr QMC noise, antithetic, no baseline', of.ulr({ copies: 12, qmc: true, antithetic: true, baseline: 'none' })],
      [
        'ulr sigma per channel in the first layer',
        of.ulr({ copies: 8, sigma: [Array.from({ length: 16 }, (_, i) => 0.05 + 0.02 * i), 0.1, 0.2] }),
      ],
      // storeNoise false: the reduction regenerates the noise into the weighted scores
      [
        'ulr storeNoise false, antithetic, laplace',
        of.ulr({ copies: 8, storeNoise: false, antithetic: true, noise: 'laplace' }),
      ],
      [
        'ulr storeNoise false, logistic, sign score',
        of.ulr({ copies: 6, storeNoise: false, noise: 'logistic', score: 'sign' }),
      ],
      [
        'ulr storeNoise false, sigma per channel in the first layer',
        of.ulr({
          copies: 8,
          storeNoise: false,
          sigma: [Array.from({ length: 16 }, (_, i) => 0.05 + 0.02 * i), 0.1, 0.2],
        }),
      ],
      [
        'ulr layer-wise, sigma per channel in the first layer',
        of.ulr({
          copies: 8,
          injection: 'layerwise',
          sigma: [Array.from({ length: 16 }, (_, i) => 0.05 + 0.02 * i), 0.1, 0.2],
        }),
      ],
      [
        'ulr layer-wise QMC noise, running baseline',
        of.ulr({ copies: 8, injection: 'layerwise', qmc: true, baseline: 'running' }),
      ],
      [
        'ulr layer-wise QMC noise, antithetic, clean baseline',
        of.ulr({ copies: 12, injection: 'layerwise', qmc: true, antithetic: true, baseline: 'clean' }),
      ],
      // blocks: a group's later layers see noisy inputs and reduce per row
      ['ulr layer-wise blocks [2, 1]', of.ulr({ copies: 8, injection: 'layerwise', blocks: [2, 1] })],
      [
        'ulr layer-wise blocks [1, 2], copies per layer, antithetic, sigma per layer',
        of.ulr({
          copies: [6, 10, 4],
          injection: 'layerwise',
          blocks: [1, 2],
          antithetic: true,
          sigma: [0.05, 0.2, 0.1],
        }),
      ],
      [
        'ulr layer-wise blocks [3], QMC, sigma per channel',
        of.ulr({
          copies: 8,
          injection: 'layerwise',
          blocks: [3],
          qmc: true,
          baseline: 'none',
          sigma: [Array.from({ length: 16 }, (_, i) => 0.05 + 0.02 * i), 0.1, 0.2],
        }),
      ],
    ];
    for (const [name, layers, loss, b] of nets) {
      for (const [en, estimator] of ests) {
        if (
          (en.includes('per layer') || en.includes('per channel') || en.includes('blocks')) &&
          layers().filter((l) => l.type === 'dense').length !== 3
        )
          continue;
        if (en.includes('per channel') && (layers()[0] as of.DenseLayer).units !== 16) continue;
        if (en.includes('K=2050') && !name.startsWith('20-16')) continue;
        const cpu = of.sequential(layers(), { seed: 7, loss, backend: 'cpu' });
        const dev = of.sequential(layers(), { seed: 7, loss, backend: d.name, allowTf32: false });
        withBiases(cpu, dev);
        const want = concat(cpu.gradients(b, { estimator, step: 5 }));
        const got = concat(dev.gradients(b, { estimator, step: 5 }));
        const diff = maxAbs(got, want),
          mag = maxMag(want);
        t.ok(
          diff <= d.tol * mag,
          `${name}, ${en}: max abs diff ${diff.toExponential(2)} (max |g| ${mag.toExponential(2)})`,
        );
        t.equal(dev.backendInfo().placement, d.name, 'ran on the device');
      }
    }
    // regenerated scores are the stored path's arithmetic: the same bits on the device
    for (const [name, layers] of [
      ['MLP', () => [of.dense(784, 32), of.tanh(), of.dense(32, 10)]],
      [
        'CNN',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
          of.relu(),
          of.maxPool2d(),
          of.flatten(),
          of.dense(144, 10),
        ],
      ],
    ] as const) {
      const dev = of.sequential(layers(), { seed: 3, backend: d.name, allowTf32: false });
      withBiases(dev);
      for (const o of [{ antithetic: true }, { noise: 'logistic' as const, score: 'sign' as const }]) {
        const stored = concat(dev.gradients(batch, { estimator: of.ulr({ copies: 8, ...o }), step: 2 }));
        const regen = concat(
          dev.gradients(batch, { estimator: of.ulr({ copies: 8, storeNoise: false, ...o }), step: 2 }),
        );
        t.ok(
          bitsEqual(Float32Array.from(regen), Float32Array.from(stored)),
          `${name} ${JSON.stringify(o)}: storeNoise false gives the stored path's bits`,
        );
      }
    }
    // the 0-1 loss with step units: ULR only
    const layers = () => [of.dense(784, 32), of.step(), of.dense(32, 10)];
    const cpu = of.sequential(layers(), { seed: 2, loss: 'zeroOne', backend: 'cpu' });
    const dev = of.sequential(layers(), { seed: 2, loss: 'zeroOne', backend: d.name, allowTf32: false });
    const est = of.ulr({ copies: 16, sigma: 0.5 });
    const want = concat(cpu.gradients(batch, { estimator: est })),
      got = concat(dev.gradients(batch, { estimator: est }));
    t.ok(maxAbs(got, want) <= d.tol * maxMag(want), `step units, 0-1 loss: ${maxAbs(got, want).toExponential(2)}`);
  });

  t.test(`${d.name}: optimizer steps match the CPU engine`, async (t) => {
    const opts: [string, of.Optimizer][] = [
      ['sgd', of.sgd({ lr: 0.1 })],
      ['sgd momentum nesterov decay', of.sgd({ lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-3 })],
      ['adam', of.adam({ lr: 1e-2 })],
      ['adamw clipNorm', of.adamw({ lr: 1e-2, weightDecay: 0.1, clipNorm: 0.05 })],
    ];
    for (const [name, optimizer] of opts) {
      for (const estimator of [of.bp(), of.ulr({ copies: 4 })]) {
        const layers = () => [of.dense(784, 24), of.relu(), of.dense(24, 10)];
        const cpu = of.sequential(layers(), { seed: 4, backend: 'cpu' });
        const dev = of.sequential(layers(), { seed: 4, backend: d.name, allowTf32: false });
        const start = params(cpu);
        for (let s = 0; s < 3; s++) {
          const lc = cpu.trainStep(batch, { estimator, optimizer });
          const ld = dev.trainStep(batch, { estimator, optimizer });
          t.ok(
            Math.abs(lc - ld) <= d.lossTol * Math.abs(lc),
            `${name}, ${estimator.kind}, step ${s}: loss ${ld} vs ${lc}`,
          );
        }
        const want = params(cpu),
          got = params(dev);
        if (d.exact && estimator.kind === 'bp')
          t.ok(bitsEqual(Float32Array.from(got), Float32Array.from(want)), `${name}, bp: same bits after 3 steps`);
        else
          t.ok(
            updateClose(d, got, want, start),
            `${name}, ${estimator.kind}: after 3 steps, |diff| ${norm(got, want).toExponential(2)} (update ${norm(want, start).toExponential(2)})`,
          );
        t.equal(dev.step, 3, 'the step counter moved');
      }
    }
  });

  t.test(`${d.name}: a frozen prefix (fine-tuning) matches the CPU engine`, async (t) => {
    // a dense model trains its tail as a model of its own (estimators/estimate.cpp); others keep frozen units clean in
    // ULR's B-row prefix and zero their BP gradients (generic.cpp): both conventions, as the CPU has them
    const nets: [string, () => of.Layer[]][] = [
      ['MLP', () => [of.dense(784, 32), of.relu(), of.dense(32, 16), of.tanh(), of.dense(16, 10)]],
      [
        'CNN',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
          of.relu(),
          of.maxPool2d(),
          of.conv2d({ filters: 4, kernel: 3 }),
          of.tanh(),
          of.flatten(),
          of.dense(64, 10),
        ],
      ],
      [
        'dropout MLP',
        () => [of.dense(784, 32), of.relu(), of.dropout(0.2), of.dense(32, 16), of.tanh(), of.dense(16, 10)],
      ],
    ];
    for (const [net, layers] of nets)
      for (const frozen of [1, 2]) {
        const channels = of.ulr({
          copies: 6,
          sigma: [0.1, Array.from({ length: 16 }, (_, i) => 0.03 * (i + 1)), 0.05],
        });
        for (const [label, estimator] of [
          ['bp', of.bp()],
          ['ulr K=8', of.ulr({ copies: 8 })],
          ['ulr, sigma per layer, antithetic', of.ulr({ copies: 6, sigma: [0.3, 0.1, 0.05], antithetic: true })],
          ...(net === 'MLP' ? [['ulr, sigma per channel', channels] as const] : []),
          ['spsa', of.spsa({ perturbations: 4 })],
          ['es', of.es({ population: 6 })],
        ] as const) {
          const cpu = of.sequential(layers(), { seed: 8, backend: 'cpu' });
          const dev = of.sequential(layers(), { seed: 8, backend: d.name, allowTf32: false });
          (cpu.freeze(frozen), dev.freeze(frozen));
          const want = concat(cpu.gradients(batch, { estimator })),
            got = concat(dev.gradients(batch, { estimator }));
          const name = `${net}, ${frozen} frozen, ${label}`;
          // SPSA's gradient is a loss difference over 2 epsilon = 2e-3: the CPU's direct convolution and the
          // device's im2row + GEMM round a loss apart by ~1e-7 of it, which that division magnifies 500x
          const tol = net === 'CNN' && label === 'spsa' ? 10 * d.tol : d.tol;
          t.ok(
            maxAbs(got, want) <= tol * maxMag(want),
            `${name}: gradients, max abs diff ${maxAbs(got, want).toExponential(2)}`,
          );
          t.equal(dev.backendInfo().placement, d.name, `${name}: ran on the device`);
          const start = params(dev);
          const optimizer = of.adamw({ lr: 1e-2, clipNorm: 0.5 });
          for (let s = 0; s < 3; s++)
            (cpu.trainStep(batch, { estimator, optimizer }), dev.trainStep(batch, { estimator, optimizer }));
          const [pc, pd] = [params(cpu), params(dev)];
          if (d.exact && net !== 'CNN')
            t.ok(bitsEqual(Float32Array.from(pd), Float32Array.from(pc)), `${name}: 3 AdamW steps, same bits`);
          else
            t.ok(
              updateClose(d, pd, pc, start),
              `${name}: 3 AdamW steps, |diff| ${norm(pd, pc).toExponential(2)} (update ${norm(pc, start).toExponential(2)})`,
            );
          const frozenCount = dev
            .parameters()
            .slice(0, 2 * frozen)
            .reduce((a, p) => a + p.data.length, 0);
          t.ok(
            bitsEqual(
              Float32Array.from(pd.subarray(0, frozenCount)),
              Float32Array.from(start.subarray(0, frozenCount)),
            ),
            `${name}: the frozen layers never moved`,
          );
        }
      }
  });

  t.test(`${d.name}: fit matches the CPU engine`, async (t) => {
    for (const estimator of [of.bp(), of.ulr({ copies: 16 }), of.ulr({ copies: [8, 24], injection: 'layerwise' })]) {
      const layers = () => [of.dense(784, 64), of.relu(), of.dense(64, 10)];
      const cpu = of.sequential(layers(), { seed: 9, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 9, backend: d.name, allowTf32: false });
      const opts = { estimator, epochs: 2, batchSize: 32, validation: val };
      const hc = await cpu.fit(small, opts);
      const hd = await dev.fit(small, opts);
      t.equal(dev.backendInfo().placement, d.name, `${estimator.kind}: fit ran on the device`);
      for (let e = 0; e < 2; e++) {
        const [a, b] = [hd.epochs[e]!, hc.epochs[e]!];
        t.ok(
          Math.abs(a.loss - b.loss) <= d.fitTol * b.loss,
          `${estimator.kind}, epoch ${e + 1}: loss ${a.loss.toFixed(5)} vs ${b.loss.toFixed(5)}`,
        );
        t.ok(
          Math.abs(a.valAccuracy! - b.valAccuracy!) <= 10 * d.fitTol,
          `${estimator.kind}, epoch ${e + 1}: val accuracy ${a.valAccuracy} vs ${b.valAccuracy}`,
        );
      }
      t.ok(
        Math.abs(dev.evaluate(val).accuracy - hd.epochs[1]!.valAccuracy!) < 1e-9,
        'the host holds the trained parameters after fit',
      );
      t.equal(dev.step, cpu.step, 'step counters agree');
    }
  });

  t.test(`${d.name}: a learned sigma matches the CPU engine`, async (t) => {
    // the gradient of log sigma per layer comes back each step and moves the model's sigma on the host, as on the CPU
    for (const noise of ['normal', 'logistic'] as const) {
      const layers = () => [of.dense(784, 16), of.tanh(), of.dense(16, 10)];
      const cpu = of.sequential(layers(), { seed: 2, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 2, backend: d.name, allowTf32: false });
      const estimator = of.ulr({ copies: 8, sigma: [0.2, 0.1], noise, learnSigma: { lr: 0.05 } });
      const optimizer = of.sgd({ lr: 0.05 });
      const start = params(cpu);
      for (let s = 0; s < 3; s++)
        (cpu.trainStep(batch, { estimator, optimizer }), dev.trainStep(batch, { estimator, optimizer }));
      t.equal(dev.backendInfo().placement, d.name, `${noise}: ran on the device`);
      const [sc, sd] = [cpu.sigma!, dev.sigma!];
      t.ok(
        sd.every((v, i) => Math.abs(v - sc[i]!) <= 10 * d.tol * sc[i]!),
        `${noise}: the learned sigma ${sd.map((v) => v.toFixed(6))} vs ${sc.map((v) => v.toFixed(6))}`,
      );
      t.ok(
        sc.some((v, i) => v !== [0.2, 0.1][i]),
        `${noise}: sigma moved`,
      );
      t.ok(updateClose(d, params(dev), params(cpu), start), `${noise}: the parameters after 3 steps`);
      const h = await dev.fit(small, { estimator, optimizer, epochs: 1, batchSize: 100 });
      t.ok(
        Number.isFinite(h.epochs[0]!.loss) && dev.sigma!.every(Number.isFinite),
        `${noise}: fit with a learned sigma on the device`,
      );
    }
  });
}
