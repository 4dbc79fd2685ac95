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
import t from 'tap';
import * as os from 'os';
import * as path from 'path';
import * as fs from 'fs';
import * as of from '../lib/index';
import { concat } from './helpers/close';
import { nat, randn } from './helpers/native';
import { configA, configB, configC } from './helpers/spatial';

type Dev = 'sim' | 'cuda';
const info = of.backend.info();
// Tolerances per device. tol: gradients, relative to the largest; lossTol: a step's loss, relative; fitTol: an epoch's
// loss after training, relative; update: parameters after a few optimizer steps, |got - want| relative to the size of
// the update. CUDA's GEMMs and libm round differently from the CPU, and Adam's first steps are about sign(g), which
// turns a rounding-level difference in a near-zero gradient into a full step of that one parameter.
type DevSpec = { name: Dev; exact: boolean; tol: number; lossTol: number; fitTol: number; update: number };
const devices: DevSpec[] = [{ name: 'sim', exact: true, tol: 1e-5, lossTol: 1e-5, fitTol: 1e-3, update: 1e-4 }];
if (info.devices.cuda > 0)
  devices.push({ name: 'cuda', exact: false, tol: 1e-4, lossTol: 1e-3, fitTol: 2e-2, update: 2e-2 });
const norm = (a: ArrayLike<number>, b?: ArrayLike<number>) =>
  Math.sqrt(Array.from(a).reduce((s, v, i) => s + (v - (b ? b[i]! : 0)) ** 2, 0));
// parameters after training steps: the same within d.update of the update's size (start: the parameters before)
const updateClose = (d: DevSpec, got: ArrayLike<number>, want: ArrayLike<number>, start: ArrayLike<number>) =>
  norm(got, want) <= d.update * Math.max(norm(want, start), 1e-30);

const { train, test } = of.datasets.digits();
const small = of.data.take(
  train,
  Array.from({ length: 2000 }, (_, i) => i),
);
const val = of.data.take(
  test,
  Array.from({ length: 500 }, (_, i) => i),
);
const batch = of.data.take(
  train,
  Array.from({ length: 24 }, (_, i) => 100 + i),
);
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);
const maxMag = (a: ArrayLike<number>) => Array.from(a).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
const params = (m: of.Model) => concat(m.parameters().map((p) => p.data));
// biases start at zero: give them values (the same on both engines) so that a bias the device forgets shows
const withBiases = (...models: of.Model[]) => {
  for (const m of models)
    for (const p of m.parameters())
      if (p.name.endsWith('.bias')) p.data.forEach((_, i) => (p.data[i] = 0.2 * Math.sin(3 * i + 1)));
};
const bitsEqual = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));

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

  t.test(`${d.name}: local modules (computation-flow rearrangement) match the CPU engine`, async (t) => {
    const layers = () => [
      of.dense(784, 24),
      of.tanh(),
      of.dense(24, 16),
      of.relu(),
      of.dense(16, 12),
      of.sigmoid(),
      of.dense(12, 10),
    ];
    const splits: [number, number][][] = [
      [
        [0, 2],
        [2, 4],
      ],
      [
        [0, 1],
        [1, 4],
      ],
      [[0, 4]],
      [
        [0, 1],
        [1, 2],
        [2, 3],
        [3, 4],
      ],
      [
        [0, 3],
        [3, 4],
      ],
    ];
    for (const modules of splits) {
      for (const estimator of [
        of.ulr({ copies: 8, modules }),
        of.ulr({ copies: 6, modules, antithetic: true, baseline: 'mean' }),
      ]) {
        const cpu = of.sequential(layers(), { seed: 6, backend: 'cpu' });
        const dev = of.sequential(layers(), { seed: 6, backend: d.name, allowTf32: false });
        withBiases(cpu, dev);
        const want = concat(cpu.gradients(batch, { estimator })),
          got = concat(dev.gradients(batch, { estimator }));
        const name = `${JSON.stringify(modules)}${estimator.antithetic ? ', antithetic' : ''}`;
        t.ok(
          maxAbs(got, want) <= d.tol * maxMag(want),
          `${name}: max abs diff ${maxAbs(got, want).toExponential(2)} (max |g| ${maxMag(want).toExponential(2)})`,
        );
        t.equal(dev.backendInfo().placement, d.name, `${name}: ran on the device`);
      }
    }
    // per-channel sigma (noise and score scaled per output, alpha 1) and a frozen prefix (module ends shift to the tail)
    const channels = [0.05, Array.from({ length: 16 }, (_, i) => 0.02 + 0.004 * i), 0.03, 0.08];
    const extra: [string, of.Estimator, number][] = [
      [
        'per-channel sigma',
        of.ulr({
          copies: 8,
          modules: [
            [0, 2],
            [2, 4],
          ],
          sigma: channels,
        }),
        0,
      ],
      [
        '1 frozen, modules [0,2][2,4]',
        of.ulr({
          copies: 8,
          modules: [
            [0, 2],
            [2, 4],
          ],
        }),
        1,
      ],
      [
        '2 frozen, modules [0,1][1,3][3,4]',
        of.ulr({
          copies: 6,
          modules: [
            [0, 1],
            [1, 3],
            [3, 4],
          ],
          antithetic: true,
        }),
        2,
      ],
    ];
    for (const [name, estimator, frozen] of extra) {
      const cpu = of.sequential(layers(), { seed: 8, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 8, backend: d.name, allowTf32: false });
      (cpu.freeze(frozen), dev.freeze(frozen));
      const want = concat(cpu.gradients(batch, { estimator })),
        got = concat(dev.gradients(batch, { estimator }));
      t.ok(maxMag(want) > 0, `${name}: a gradient to compare`);
      t.ok(
        maxAbs(got, want) <= d.tol * maxMag(want),
        `${name}: max abs diff ${maxAbs(got, want).toExponential(2)} (max |g| ${maxMag(want).toExponential(2)})`,
      );
      t.equal(dev.backendInfo().placement, d.name, `${name}: ran on the device`);
    }
    // conv and pooling models (module ends count layers with parameters; a pool before a layer belongs to its module);
    // configB starts with a pool, so the first module's B rows begin with one; 'CNN, 1 frozen' keeps its frozen conv in
    // the first module and zeroes its gradient
    const convNets: [string, () => of.Layer[], number, number][] = [
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
        784,
        0,
      ],
      [
        'CNN, 1 frozen',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
          of.relu(),
          of.maxPool2d(),
          of.conv2d({ filters: 4, kernel: 3 }),
          of.tanh(),
          of.flatten(),
          of.dense(64, 10),
        ],
        784,
        1,
      ],
      ['A', configA, 7 * 6 * 3, 0],
      ['B', configB, 9 * 8 * 2, 0],
    ];
    for (const [net, layers, inputs, frozen] of convNets) {
      const b =
        inputs === 784
          ? batch
          : { x: randn(10 * inputs, 13), y: Int32Array.from({ length: 10 }, (_, i) => i % 3), rows: 10 };
      const P = layers().filter((l) => l.type === 'conv2d' || l.type === 'dense').length;
      const splits: [number, number][][] = [
        [[0, P]],
        [
          [0, 1],
          [1, P],
        ],
        [
          [0, P - 1],
          [P - 1, P],
        ],
        Array.from({ length: P }, (_, i) => [i, i + 1] as [number, number]),
      ];
      for (const modules of splits) {
        const estimator = of.ulr({
          copies: 6,
          modules,
          antithetic: modules.length === 2,
          baseline: modules.length === 1 ? 'mean' : 'loo',
        });
        const cpu = of.sequential(layers(), { seed: 9, backend: 'cpu' });
        const dev = of.sequential(layers(), { seed: 9, backend: d.name, allowTf32: false });
        (cpu.freeze(frozen), dev.freeze(frozen), withBiases(cpu, dev));
        const want = concat(cpu.gradients(b, { estimator })),
          got = concat(dev.gradients(b, { estimator }));
        const name = `${net}, modules ${JSON.stringify(modules)}`;
        t.ok(
          maxAbs(got, want) <= d.tol * maxMag(want),
          `${name}: max abs diff ${maxAbs(got, want).toExponential(2)} (max |g| ${maxMag(want).toExponential(2)})`,
        );
        t.equal(dev.backendInfo().placement, d.name, `${name}: ran on the device`);
      }
    }
    // pipelined: a training step reduces the previous step's first module (its gradient one step late); the first
    // step has none, so the first module does not move
    {
      const est = of.ulr({
        copies: 8,
        modules: [
          [0, 2],
          [2, 4],
        ],
        pipeline: true,
      });
      const cpu = of.sequential(layers(), { seed: 10, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 10, backend: d.name, allowTf32: false });
      withBiases(cpu, dev);
      const start = params(dev);
      const firstModule = dev
        .parameters()
        .slice(0, 4)
        .reduce((a, p) => a + p.data.length, 0);
      const optimizer = of.sgd({ lr: 0.1 });
      for (let i = 0; i < 4; i++) {
        const b = of.data.take(
          small,
          Array.from({ length: 32 - 4 * i }, (_, j) => 40 * i + j),
        ); // changing batch sizes
        (cpu.trainStep(b, { estimator: est, optimizer }), dev.trainStep(b, { estimator: est, optimizer }));
        const [pc, pd] = [params(cpu), params(dev)];
        if (i === 0) {
          t.ok(
            bitsEqual(
              Float32Array.from(pd.subarray(0, firstModule)),
              Float32Array.from(start.subarray(0, firstModule)),
            ),
            'pipelined: the first step leaves the first module alone',
          );
          t.notOk(
            bitsEqual(Float32Array.from(pd.subarray(firstModule)), Float32Array.from(start.subarray(firstModule))),
            'pipelined: the first step moves the later module',
          );
        }
        t.ok(
          updateClose(d, pd, pc, start),
          `pipelined, step ${i + 1}: |diff| ${norm(pd, pc).toExponential(2)} (update ${norm(pc, start).toExponential(2)})`,
        );
      }
      t.equal(dev.backendInfo().placement, d.name, 'pipelined modules ran on the device');
      // freeze(1) drops the kept first module (its units are now others, though the tail's first module ends at the same
      // unit index 2 with modules [0,3][3,4]): the next step leaves the new first module alone
      (cpu.freeze(1), dev.freeze(1));
      const before = params(dev);
      const b = of.data.take(
        small,
        Array.from({ length: 20 }, (_, j) => 500 + j),
      );
      const est2 = of.ulr({
        copies: 8,
        modules: [
          [0, 3],
          [3, 4],
        ],
        pipeline: true,
      });
      (cpu.trainStep(b, { estimator: est2, optimizer }), dev.trainStep(b, { estimator: est2, optimizer }));
      const layer1 = [
        dev.parameters()[0]!.data.length + dev.parameters()[1]!.data.length,
        dev
          .parameters()
          .slice(0, 6)
          .reduce((a, p) => a + p.data.length, 0),
      ]; // layers 1 and 2: the tail's first module
      t.ok(
        bitsEqual(
          Float32Array.from(params(dev).subarray(layer1[0], layer1[1])),
          Float32Array.from(before.subarray(layer1[0], layer1[1])),
        ),
        'pipelined, after freeze(1): the step leaves the new first module alone',
      );
      t.ok(
        updateClose(d, params(dev), params(cpu), before),
        `pipelined, after freeze(1): |diff| ${norm(params(dev), params(cpu)).toExponential(2)}`,
      );
      (cpu.freeze(0), dev.freeze(0));
      const [hc, hd] = [
        await cpu.fit(small, { estimator: est, epochs: 1, batchSize: 50 }),
        await dev.fit(small, { estimator: est, epochs: 1, batchSize: 50 }),
      ];
      t.ok(
        Math.abs(hd.epochs[0]!.loss - hc.epochs[0]!.loss) <= d.fitTol * hc.epochs[0]!.loss,
        `fit with pipelined modules: loss ${hd.epochs[0]!.loss} vs ${hc.epochs[0]!.loss}`,
      );
    }
    const est = of.ulr({
      copies: 8,
      modules: [
        [0, 2],
        [2, 4],
      ],
    });
    const cpu = of.sequential(layers(), { seed: 7, backend: 'cpu' });
    const dev = of.sequential(layers(), { seed: 7, backend: d.name, allowTf32: false });
    const [hc, hd] = [
      await cpu.fit(small, { estimator: est, epochs: 1, batchSize: 32 }),
      await dev.fit(small, { estimator: est, epochs: 1, batchSize: 32 }),
    ];
    t.ok(
      Math.abs(hd.epochs[0]!.loss - hc.epochs[0]!.loss) <= d.fitTol * hc.epochs[0]!.loss,
      `fit with modules: loss ${hd.epochs[0]!.loss} vs ${hc.epochs[0]!.loss}`,
    );
  });

  t.test(`${d.name}: copy-parallel ranks on the device sum to the CPU's single-process estimate`, async (t) => {
    // each rank's copy slice draws the noise rows of the whole K (slice-mapped Philox rows); losses exchanged first
    const nets: [string, () => of.Layer[], number][] = [
      ['MLP', () => [of.dense(784, 16), of.tanh(), of.dense(16, 10)], 784],
      [
        'CNN',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 3, kernel: 3, strides: 2 }),
          of.relu(),
          of.maxPool2d(),
          of.flatten(),
          of.dense(108, 10),
        ],
        784,
      ],
      ['gru', () => [of.gru({ units: 5, inputShape: [4, 3] }), of.tanh(), of.dense(5, 3)], 12],
    ];
    for (const [name, layers, inputs] of nets) {
      const b: of.Dataset =
        inputs === 784
          ? batch
          : { x: randn(10 * inputs, 14), y: Int32Array.from({ length: 10 }, (_, i) => i % 3), rows: 10, shape: [4, 3] };
      for (const estimator of [of.ulr({ copies: 8 }), of.ulr({ copies: 8, antithetic: true, storeNoise: false })]) {
        const size = 2;
        const single = of.sequential(layers(), { seed: 3, backend: 'cpu' });
        const ranks = Array.from({ length: size }, () =>
          of.sequential(layers(), { seed: 3, backend: d.name, allowTf32: false }),
        );
        withBiases(single, ...ranks);
        const want = concat(single.gradients(b, { estimator }));
        const losses = new Float32Array(b.rows * 8);
        ranks.forEach((m, r) =>
          of.distributed.copyParallelLosses(m, b, { rank: r, size, estimator }).forEach((v, i) => (losses[i]! += v)),
        );
        const sum = new Float64Array(want.length);
        ranks.forEach((m, r) =>
          of.distributed
            .copyParallelGradients(m, b, losses, { rank: r, size, estimator })
            .forEach((v, i) => (sum[i]! += v)),
        );
        const label = `${name}${estimator.antithetic ? ', pairs, storeNoise false' : ''}`;
        t.ok(
          maxAbs(sum, want) <= d.tol * maxMag(want),
          `${label}: summed shares, max abs diff ${maxAbs(sum, want).toExponential(2)} (max |g| ${maxMag(want).toExponential(2)})`,
        );
        t.equal(ranks[0]!.backendInfo().placement, d.name, `${label}: the ranks ran on the device`);
      }
    }
  });

  t.test(`${d.name}: seed-replay ranks on the device match the CPU's single process`, async (t) => {
    // each rank evaluates its directions on the device; the summed losses give every rank the same update there
    const layers = () => [of.dense(784, 16), of.tanh(), of.dense(16, 12), of.relu(), of.dense(12, 10)];
    for (const [name, estimator] of [
      ['spsa', of.spsa({ perturbations: 6 })],
      ['es', of.es({ population: 5 })],
    ] as const) {
      for (const frozen of [0, 1]) {
        const size = 2;
        const single = of.sequential(layers(), { seed: 5, backend: 'cpu' });
        const ranks = Array.from({ length: size }, () =>
          of.sequential(layers(), { seed: 5, backend: d.name, allowTf32: false }),
        );
        (single.freeze(frozen), ranks.forEach((m) => m.freeze(frozen)));
        const start = params(single);
        const optimizer = of.adam({ lr: 1e-2 });
        for (let i = 0; i < 3; i++) {
          const b = of.data.take(
            small,
            Array.from({ length: 24 }, (_, j) => 30 * i + j),
          );
          single.trainStep(b, { estimator, optimizer });
          const sum = new Float32Array(2 * (name === 'spsa' ? 6 : 5));
          ranks.forEach((m, r) =>
            of.distributed.seedReplayLosses(m, b, { rank: r, size, estimator }).forEach((v, k) => (sum[k]! += v)),
          );
          ranks.forEach((m) =>
            of.distributed.seedReplayUpdate(m, Float32Array.from(sum), { estimator, optimizer, rows: b.rows }),
          );
        }
        const [pc, p0, p1] = [params(single), params(ranks[0]!), params(ranks[1]!)];
        const label = `${name}, ${frozen} frozen`;
        t.ok(bitsEqual(Float32Array.from(p0), Float32Array.from(p1)), `${label}: the ranks hold the same parameters`);
        if (d.exact)
          t.ok(bitsEqual(Float32Array.from(p0), Float32Array.from(pc)), `${label}: 3 steps, the single process's bits`);
        else t.ok(updateClose(d, p0, pc, start), `${label}: 3 steps, |diff| ${norm(p0, pc).toExponential(2)}`);
        t.equal(ranks[0]!.backendInfo().placement, d.name, `${label}: the ranks ran on the device`);
      }
    }
  });

  t.test(`${d.name}: SPSA and ES match the CPU engine`, async (t) => {
    // directions regenerated on the device from the same counters, inference forwards at theta +- eps z, the same
    // coefficients (computed on the host from the losses read back), the same seed replay
    const layers = () => [of.dense(784, 12), of.relu(), of.dropout(0.2), of.dense(12, 10, { weights: 'binary' })];
    for (const [label, estimator] of [
      ['spsa', of.spsa({ perturbations: 4 })],
      ['es', of.es({ population: 6 })],
      ['es, no rank shaping, no pairs', of.es({ population: 5, antithetic: false, rankShaping: false })],
    ] as const) {
      const cpu = of.sequential(layers(), { seed: 3, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 3, backend: d.name, allowTf32: false });
      const want = concat(cpu.gradients(batch, { estimator })),
        got = concat(dev.gradients(batch, { estimator }));
      t.ok(
        maxAbs(got, want) <= d.tol * maxMag(want),
        `${label}: max abs diff ${maxAbs(got, want).toExponential(2)} (max |g| ${maxMag(want).toExponential(2)})`,
      );
      t.equal(dev.backendInfo().placement, d.name, `${label}: ran on the device`);
      const [lc, ld] = [cpu.trainStep(batch, { estimator }), dev.trainStep(batch, { estimator })];
      t.ok(Math.abs(ld - lc) <= d.lossTol * Math.abs(lc), `${label}: a step's loss ${ld} vs ${lc}`);
    }
  });

  t.test(`${d.name}: a JS loss runs on the device`, async (t) => {
    // the outputs of every copy go to JS once per step and its per-row losses come back: the estimate equals the CPU's
    const absLoss: of.LossFunction = (out, y) => {
      const labels = y as Int32Array,
        C = 10,
        rows = out.length / C,
        K = rows / labels.length;
      return Float32Array.from({ length: rows }, (_, r) => Math.abs(out[r * C + labels[Math.floor(r / K)]!]! - 1));
    };
    const layers = () => [of.dense(784, 16), of.relu(), of.dense(16, 10)];
    const cpu = of.sequential(layers(), { seed: 1, backend: 'cpu' });
    const dev = of.sequential(layers(), { seed: 1, backend: d.name, allowTf32: false });
    const estimator = of.ulr({ copies: 8 });
    const want = concat(cpu.gradients(batch, { estimator, loss: absLoss })),
      got = concat(dev.gradients(batch, { estimator, loss: absLoss }));
    t.ok(maxAbs(got, want) <= d.tol * maxMag(want), `gradients: max abs diff ${maxAbs(got, want).toExponential(2)}`);
    t.equal(dev.backendInfo().placement, d.name, 'ran on the device');
    const mods = of.ulr({
      copies: 8,
      modules: [
        [0, 1],
        [1, 2],
      ],
    });
    const wantM = concat(cpu.gradients(batch, { estimator: mods, loss: absLoss })),
      gotM = concat(dev.gradients(batch, { estimator: mods, loss: absLoss }));
    t.ok(maxAbs(gotM, wantM) <= d.tol * maxMag(wantM), `modules: max abs diff ${maxAbs(gotM, wantM).toExponential(2)}`);
    t.equal(dev.backendInfo().placement, d.name, 'modules with the JS loss ran on the device');
    for (const lw of [
      of.ulr({ copies: [6, 8], injection: 'layerwise' }),
      of.ulr({ copies: 6, injection: 'layerwise', blocks: [2] }),
    ]) {
      const wantL = concat(cpu.gradients(batch, { estimator: lw, loss: absLoss })),
        gotL = concat(dev.gradients(batch, { estimator: lw, loss: absLoss }));
      t.ok(
        maxAbs(gotL, wantL) <= d.tol * maxMag(wantL),
        `layer-wise${lw.blocks ? ' blocks' : ''}: max abs diff ${maxAbs(gotL, wantL).toExponential(2)}`,
      );
      t.equal(dev.backendInfo().placement, d.name, 'layer-wise with the JS loss ran on the device');
    }
    const opts = { estimator, loss: absLoss, epochs: 1, batchSize: 50, validation: val };
    const [hc, hd] = [await cpu.fit(small, opts), await dev.fit(small, opts)];
    t.ok(
      Math.abs(hd.epochs[0]!.loss - hc.epochs[0]!.loss) <= d.fitTol * hc.epochs[0]!.loss,
      `fit with the JS loss: ${hd.epochs[0]!.loss} vs ${hc.epochs[0]!.loss}`,
    );
    t.equal(dev.backendInfo().placement, d.name, 'the fit ran on the device');
    const bad: of.LossFunction = (out) => new Float32Array(out.length / 10).fill(NaN);
    t.throws(
      () => dev.gradients(batch, { estimator, loss: bad }),
      { code: 'ERR_DATA', message: /not finite/ },
      'a non-finite answer is ERR_DATA',
    );
  });

  t.test(`${d.name}: fit's validation runs on the device in inference mode`, async (t) => {
    // dropout off and batchNorm's running statistics: the device's epoch-end validation equals the CPU's evaluate()
    // of the same parameters (the host copy an epoch end writes)
    const layers = () => [
      of.dense(784, 32),
      of.batchNorm(),
      of.relu(),
      of.dropout(0.3),
      of.dense(32, 10, { weights: 'binary' }),
    ];
    const m = of.sequential(layers(), { seed: 12, backend: d.name, allowTf32: false });
    const h = await m.fit(small, { estimator: of.ulr({ copies: 8 }), epochs: 1, batchSize: 64, validation: val });
    const cpuEval = m.evaluate(val); // predict and evaluate run on the CPU
    const e = h.epochs[0]!;
    t.ok(
      Math.abs(e.valLoss! - cpuEval.loss) <= 10 * d.tol * cpuEval.loss,
      `validation loss ${e.valLoss} vs the CPU's ${cpuEval.loss}`,
    );
    t.ok(
      Math.abs(e.valAccuracy! - cpuEval.accuracy) <= (d.exact ? 0 : 0.01),
      `validation accuracy ${e.valAccuracy} vs the CPU's ${cpuEval.accuracy}`,
    );
  });

  t.test(
    `${d.name}: fit with the running baseline (a step waits for the previous one) matches the CPU engine`,
    async (t) => {
      const est = of.ulr({ copies: 8, baseline: 'running' });
      const hs = [];
      for (const backend of ['cpu', d.name] as const) {
        const m = of.sequential([of.dense(784, 32), of.relu(), of.dense(32, 10)], {
          seed: 6,
          backend,
          allowTf32: false,
        });
        const progress: number[] = [];
        const h = await m.fit(small, {
          estimator: est,
          epochs: 1,
          batchSize: 64,
          onProgress: (p) => progress.push(p.loss),
        });
        t.ok(progress.length > 0 && progress.every(Number.isFinite), `${backend}: progress reports finite losses`);
        hs.push(h.epochs[0]!.loss);
      }
      t.ok(Math.abs(hs[1]! - hs[0]!) <= d.fitTol * hs[0]!, `epoch loss ${hs[1]} vs ${hs[0]}`);
    },
  );

  t.test(`${d.name}: layer-wise copies 'auto' matches the CPU engine`, async (t) => {
    // each training step reads the layers' estimate variances back, and the next one allocates its copies from them
    const layers = () => [of.dense(784, 24), of.relu(), of.dense(24, 16), of.tanh(), of.dense(16, 10)];
    const cpu = of.sequential(layers(), { seed: 4, backend: 'cpu' });
    const dev = of.sequential(layers(), { seed: 4, backend: d.name, allowTf32: false });
    withBiases(cpu, dev);
    const auto = of.ulr({ injection: 'layerwise', copies: 'auto', budget: 12, antithetic: true });
    const optimizer = of.sgd({ lr: 0.05 });
    for (let i = 0; i < 6; i++) {
      const b = of.data.take(
        small,
        Array.from({ length: 48 }, (_, j) => i * 48 + j),
      );
      (cpu.trainStep(b, { estimator: auto, optimizer }), dev.trainStep(b, { estimator: auto, optimizer }));
    }
    const [vc, vd] = [cpu._native!.exportState().layerVar!, dev._native!.exportState().layerVar!];
    t.equal(vd.length, 3, 'running variances recorded');
    t.ok(
      vd.every((v, l) => Math.abs(v - vc[l]!) <= 1e-3 * vc[l]!),
      `running variances ${vd.map((v) => v.toExponential(3)).join(', ')} vs ${vc.map((v) => v.toExponential(3)).join(', ')}`,
    );
    const want = concat(cpu.gradients(batch, { estimator: auto, step: 50 })),
      got = concat(dev.gradients(batch, { estimator: auto, step: 50 }));
    t.ok(
      maxAbs(got, want) <= 10 * d.tol * maxMag(want),
      `gradients with the allocated copies: max abs diff ${maxAbs(got, want).toExponential(2)}`,
    );
    t.equal(dev.backendInfo().placement, d.name, 'ran on the device');
    const h = await dev.fit(small, { estimator: auto, epochs: 1, batchSize: 100 });
    t.ok(
      Number.isFinite(h.epochs[0]!.loss) && dev.backendInfo().placement === d.name,
      `fit on the device: loss ${h.epochs[0]!.loss}`,
    );
  });

  t.test(`${d.name}: what the device does not run falls back to the CPU`, async (t) => {
    const mlp = () => [of.dense(784, 16), of.relu(), of.dense(16, 10)];
    const cases: [string, () => of.Layer[], of.Estimator, RegExp, of.LossFunction?][] = [
      [
        'the exact-boundary test hook of modules',
        mlp,
        {
          ...of.ulr({
            copies: 4,
            modules: [
              [0, 1],
              [1, 2],
            ],
          }),
          exactBoundary: true,
        } as of.Estimator,
        /boundary/,
      ],
    ];
    for (const [name, layers, estimator, why, loss] of cases) {
      const cpu = of.sequential(layers(), { seed: 1, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 1, backend: d.name });
      const want = concat(cpu.gradients(batch, { estimator, loss }));
      const got = concat(dev.gradients(batch, { estimator, loss }));
      t.ok(bitsEqual(Float32Array.from(got), Float32Array.from(want)), `${name}: the CPU's bits`);
      t.match(dev.backendInfo().placement, why, `${name}: ${dev.backendInfo().placement}`);
    }
  });

  t.test(`${d.name}: BP and ULR through every layer kind match the CPU engine`, async (t) => {
    // batchNorm's running statistics, after 3 training steps: predictions (which use them) equal the CPU's
    for (const estimator of [of.bp(), of.ulr({ copies: 8 })]) {
      const layers = () => [
        of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
        of.batchNorm(),
        of.relu(),
        of.flatten(),
        of.dense(676, 10),
      ];
      const cpu = of.sequential(layers(), { seed: 4, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 4, backend: d.name, allowTf32: false });
      const optimizer = of.sgd({ lr: 0.05 }); // (Adam's first steps are about sign(g): they would magnify float noise)
      for (let s = 0; s < 3; s++)
        (cpu.trainStep(batch, { estimator, optimizer }), dev.trainStep(batch, { estimator, optimizer }));
      const [pc, pd] = [cpu.predict(val), dev.predict(val)];
      t.ok(
        maxAbs(pd, pc) <= 10 * d.tol * maxMag(pc),
        `batchNorm CNN, ${estimator.kind}: predictions after 3 steps (running statistics), max abs diff ${maxAbs(pd, pc).toExponential(2)}`,
      );
    }
    // configA: conv (stride 2, 'same') -> avgPool ('same') -> dilated conv -> maxPool -> dense; configB: a maxPool
    // first (the clean B-row prefix), a conv without bias, globalAvgPool, two dense layers; configC: smooth units.
    const cnn = () => [
      of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
      of.relu(),
      of.maxPool2d({ size: 2 }),
      of.flatten(),
      of.dense(144, 10),
    ];
    const nets: [string, () => of.Layer[], number][] = [
      ['A', configA, 7 * 6 * 3],
      ['B', configB, 9 * 8 * 2],
      ['C', configC, 6 * 5 * 2],
      ['digits CNN', cnn, 784],
      [
        'dropout MLP',
        () => [
          of.dense(784, 32),
          of.relu(),
          of.dropout(0.3),
          of.dense(32, 16),
          of.tanh(),
          of.dropout(0.5),
          of.dense(16, 10),
        ],
        784,
      ],
      [
        'residual MLP',
        () => [
          of.dense(784, 16),
          of.tanh(),
          of.residual([of.dense(16, 16), of.sigmoid(), of.dense(16, 16)]),
          of.tanh(),
          of.dense(16, 10),
        ],
        784,
      ],
      [
        'residual blocks of one unit and starting with dropout',
        () => [
          of.dense(784, 16),
          of.relu(),
          of.residual([of.dense(16, 16)]),
          of.gelu(),
          of.residual([of.dropout(0.3), of.dense(16, 16), of.tanh()]),
          of.dense(16, 10),
        ],
        784,
      ],
      [
        'residual CNN',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2, padding: 'same' }),
          of.relu(),
          of.residual([
            of.conv2d({ filters: 4, kernel: 3, padding: 'same' }),
            of.relu(),
            of.conv2d({ filters: 4, kernel: 3, padding: 'same' }),
          ]),
          of.relu(),
          of.maxPool2d(),
          of.flatten(),
          of.dense(196, 10),
        ],
        784,
      ],
      [
        'binary-weight MLP',
        () => [of.dense(784, 32, { weights: 'binary' }), of.relu(), of.dense(32, 10, { weights: 'binary' })],
        784,
      ],
      [
        'ternary-weight CNN',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2, weights: 'ternary' }),
          of.relu(),
          of.maxPool2d({ size: 2 }),
          of.flatten(),
          of.dense(144, 10, { weights: 'ternary' }),
        ],
        784,
      ],
      [
        'concat MLP',
        () => [of.dense(784, 12), of.tanh(), of.concat([of.dense(12, 6), of.sigmoid()]), of.tanh(), of.dense(18, 10)],
        784,
      ],
      [
        'concat CNN',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 3, kernel: 3, strides: 2, padding: 'same' }),
          of.relu(),
          of.concat([of.conv2d({ filters: 2, kernel: 3, padding: 'same' }), of.tanh()]),
          of.maxPool2d(),
          of.flatten(),
          of.dense(245, 10),
        ],
        784,
      ],
      [
        'a concat block starting at the first noisy unit (its input from the B-row prefix)',
        () => [
          of.maxPool2d({ inputShape: [28, 28, 1], size: 2 }),
          of.concat([of.conv2d({ filters: 2, kernel: 3, padding: 'same' }), of.tanh()]),
          of.residual([of.conv2d({ filters: 3, kernel: 3, padding: 'same' })]),
          of.relu(),
          of.flatten(),
          of.dense(588, 10),
        ],
        784,
      ],
      [
        'a residual block starting at the first noisy unit',
        () => [
          of.maxPool2d({ inputShape: [28, 28, 1], size: 2 }),
          of.residual([
            of.conv2d({ filters: 1, kernel: 3, padding: 'same' }),
            of.tanh(),
            of.conv2d({ filters: 1, kernel: 3, padding: 'same' }),
          ]),
          of.relu(),
          of.flatten(),
          of.dense(196, 10),
        ],
        784,
      ],
      [
        'layerNorm MLP',
        () => [
          of.dense(784, 24),
          of.layerNorm(),
          of.relu(),
          of.dense(24, 12),
          of.layerNorm(),
          of.tanh(),
          of.dense(12, 10),
        ],
        784,
      ],
      ['groupNorm MLP', () => [of.dense(784, 24), of.groupNorm({ groups: 3 }), of.relu(), of.dense(24, 10)], 784],
      [
        'conv with layerNorm (over channels) and groupNorm (over positions)',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
          of.layerNorm(),
          of.relu(),
          of.conv2d({ filters: 6, kernel: 3, strides: 2 }),
          of.groupNorm({ groups: 2 }),
          of.tanh(),
          of.flatten(),
          of.dense(216, 10),
        ],
        784,
      ],
      ['batchNorm MLP', () => [of.dense(784, 24), of.batchNorm(), of.relu(), of.dense(24, 10)], 784],
      [
        'batchNorm CNN',
        () => [
          of.conv2d({ inputShape: [28, 28, 1], filters: 4, kernel: 3, strides: 2 }),
          of.batchNorm(),
          of.relu(),
          of.maxPool2d(),
          of.flatten(),
          of.dense(144, 10),
        ],
        784,
      ],
      ['rnn over 4 steps', () => [of.rnn({ units: 5, inputShape: [4, 3] }), of.dense(5, 3)], 12],
      ['gru', () => [of.gru({ units: 5, inputShape: [4, 3] }), of.tanh(), of.dense(5, 3)], 12],
      [
        'lstm, returnSequences + timeMean',
        () => [of.lstm({ units: 5, inputShape: [4, 3], returnSequences: true }), of.timeMean(), of.dense(5, 3)],
        12,
      ],
      [
        'gru after dense and repeat (not the first noisy unit), returnSequences into gru',
        () => [
          of.dense(12, 8),
          of.tanh(),
          of.repeat(4),
          of.gru({ units: 4, returnSequences: true }),
          of.gru({ units: 3 }),
          of.dense(3, 3),
        ],
        12,
      ],
      [
        'spiking: repeat, lif, timeMean',
        () => [of.repeat(6, { inputs: 12 }), of.lif({ units: 6, threshold: 0.5 }), of.timeMean(), of.dense(6, 3)],
        12,
      ],
      [
        'maxPool and dropout before the first conv (the B-row prefix)',
        () => [
          of.maxPool2d({ inputShape: [28, 28, 1], size: 2 }),
          of.dropout(0.2),
          of.conv2d({ filters: 4, kernel: 3 }),
          of.relu(),
          of.flatten(),
          of.dense(576, 10),
        ],
        784,
      ],
    ];
    for (const [name, layers, inputs] of nets) {
      const b =
        inputs === 784
          ? batch
          : { x: randn(10 * inputs, 12), y: Int32Array.from({ length: 10 }, (_, i) => i % 3), rows: 10 };
      const quantized = name.includes('binary') || name.includes('ternary'); // bp() refuses them on every backend
      for (const [label, estimator] of [
        ...(quantized ? [] : [['bp', of.bp()] as const]),
        ['ulr K=8', of.ulr({ copies: 8 })],
        [
          'ulr antithetic K=6, sigma per layer',
          of.ulr({
            copies: 6,
            antithetic: true,
            sigma:
              name === 'B' || name === 'dropout MLP' || name === 'residual MLP'
                ? [0.2, 0.1, 0.05, 0.1].slice(0, name === 'residual MLP' ? 4 : 3)
                : 0.1,
          }),
        ],
        ['ulr K=96', of.ulr({ copies: 96 })],
        ['ulr K=8, storeNoise false', of.ulr({ copies: 8, storeNoise: false })],
      ] as const) {
        const cpu = of.sequential(layers(), { seed: 5, backend: 'cpu' });
        const dev = of.sequential(layers(), { seed: 5, backend: d.name, allowTf32: false });
        const want = concat(cpu.gradients(b, { estimator, step: 3 })),
          got = concat(dev.gradients(b, { estimator, step: 3 }));
        const diff = maxAbs(got, want),
          mag = maxMag(want);
        t.ok(
          diff <= d.tol * mag,
          `${name}, ${label}: max abs diff ${diff.toExponential(2)} (max |g| ${mag.toExponential(2)})`,
        );
        t.equal(dev.backendInfo().placement, d.name, `${name}, ${label}: ran on the device`);
      }
    }
    for (const estimator of [of.bp(), of.ulr({ copies: 8 })]) {
      const cpu = of.sequential(cnn(), { seed: 9, backend: 'cpu' });
      const dev = of.sequential(cnn(), { seed: 9, backend: d.name, allowTf32: false });
      const opts = { estimator, epochs: 1, batchSize: 32, validation: val };
      const [hc, hd] = [await cpu.fit(small, opts), await dev.fit(small, opts)];
      const [a, b] = [hd.epochs[0]!, hc.epochs[0]!];
      t.equal(dev.backendInfo().placement, d.name, `digits CNN, ${estimator.kind}: fit ran on the device`);
      t.ok(
        Math.abs(a.loss - b.loss) <= d.fitTol * b.loss,
        `digits CNN, ${estimator.kind}: fit loss ${a.loss.toFixed(5)} vs ${b.loss.toFixed(5)}`,
      );
      t.ok(
        Math.abs(a.valAccuracy! - b.valAccuracy!) <= 10 * d.fitTol,
        `digits CNN, ${estimator.kind}: val accuracy ${a.valAccuracy} vs ${b.valAccuracy}`,
      );
    }
  });

  t.test(`${d.name}: graph convolutions with per-node labels (-1: unlabeled) match the CPU engine`, async (t) => {
    const graph: of.Graph = {
      nodes: 7,
      edges: [
        [0, 1],
        [1, 2],
        [2, 0],
        [3, 4],
        [4, 5],
        [5, 6],
        [2, 3],
        [1, 1],
      ],
    };
    const layers = () => [
      of.graphConv({ graph, units: 4, inputShape: [7, 3] }),
      of.tanh(),
      of.graphConv({ graph, units: 3 }),
    ];
    const b = { x: randn(2 * 21, 5), y: Int32Array.from([0, 1, -1, 2, 2, -1, 0, 1, -1, -1, 0, 2, 1, 1]), rows: 2 };
    for (const [label, estimator] of [
      ['bp', of.bp()],
      ['ulr K=8', of.ulr({ copies: 8 })],
      ['ulr antithetic K=96', of.ulr({ copies: 96, antithetic: true })],
    ] as const) {
      const cpu = of.sequential(layers(), { seed: 3, backend: 'cpu' });
      const dev = of.sequential(layers(), { seed: 3, backend: d.name, allowTf32: false });
      const want = concat(cpu.gradients(b, { estimator })),
        got = concat(dev.gradients(b, { estimator }));
      t.ok(
        maxAbs(got, want) <= d.tol * maxMag(want),
        `${label}: max abs diff ${maxAbs(got, want).toExponential(2)} (max |g| ${maxMag(want).toExponential(2)})`,
      );
      t.equal(dev.backendInfo().placement, d.name, `${label}: ran on the device`);
      const [lc, ld] = [cpu.trainStep(b, { estimator }), dev.trainStep(b, { estimator })];
      t.ok(Math.abs(ld - lc) <= d.lossTol * Math.abs(lc), `${label}: a training step's loss ${ld} vs ${lc}`);
    }
    const task = of.datasets.karate(),
      { train, test } = task;
    const opts = { estimator: of.ulr({ copies: 64 }), optimizer: of.adam({ lr: 0.01 }), epochs: 200, batchSize: 1 };
    const gcn = (backend: 'cpu' | Dev) =>
      of.sequential(
        [
          of.graphConv({ graph: task.graph, units: 16, inputShape: [train.shape[0]!, train.shape[1]!] }),
          of.relu(),
          of.graphConv({ graph: task.graph, units: 2 }),
        ],
        { seed: 1, backend, allowTf32: false },
      );
    const [mc, md] = [gcn('cpu'), gcn(d.name)];
    const [hc, hd] = [await mc.fit(train, opts), await md.fit(train, opts)];
    t.equal(md.backendInfo().placement, d.name, 'karate club: fit ran on the device');
    const last = (h: of.History) => h.epochs[h.epochs.length - 1]!.loss;
    t.ok(
      Math.abs(last(hd) - last(hc)) <= 10 * d.fitTol * last(hc) + 1e-4,
      `karate club, 200 steps: loss ${last(hd).toFixed(5)} vs ${last(hc).toFixed(5)}`,
    );
    const [ac, ad] = [mc.evaluate(test).accuracy, md.evaluate(test).accuracy];
    t.ok(ac >= 0.85 && ad >= 0.85, `karate club: test accuracy ${ad} vs ${ac} (both >= 0.85)`);
  });

  t.test(`${d.name}: 80 random models and estimators match the CPU engine`, async (t) => {
    // seeded: random stacks of dense layers (random widths and activations, some with dropout, norms or a residual
    // block), random batch sizes, losses and ULR settings; gradients within the file's tolerance of the CPU's
    let s = 55;
    const r = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const acts = ['relu', 'tanh', 'sigmoid', 'gelu', 'leakyRelu', 'identity'] as const;
    let worst = 0;
    for (let c = 0; c < 80; c++) {
      const inputs = 1 + Math.floor(r() * 9),
        classes = 2 + Math.floor(r() * 4),
        depth = 1 + Math.floor(r() * 3);
      const layers: of.Layer[] = [];
      let w = inputs;
      for (let l = 0; l < depth; l++) {
        const o = 1 + Math.floor(r() * 12);
        layers.push(of.dense(w, o, { bias: r() < 0.8 }), of.activation(pick(acts)));
        const extra = r();
        if (extra < 0.15) layers.push(of.dropout(0.3));
        else if (extra < 0.3) layers.push(of.layerNorm());
        else if (extra < 0.4) layers.push(of.residual([of.dense(o, o), of.activation(pick(acts))]));
        w = o;
      }
      layers.push(of.dense(w, classes));
      const loss = r() < 0.75 ? 'crossEntropy' : 'mse';
      const rows = 1 + Math.floor(r() * 9);
      const b = {
        x: randn(rows * inputs, 100 + c),
        y:
          loss === 'mse'
            ? randn(rows * classes, 200 + c)
            : Int32Array.from({ length: rows }, () => Math.floor(r() * classes)),
        rows,
      };
      const anti = r() < 0.3;
      const estimator =
        r() < 0.25
          ? of.bp()
          : of.ulr({
              copies: anti ? 2 * (1 + Math.floor(r() * 40)) : 2 + Math.floor(r() * 80),
              antithetic: anti,
              sigma: 0.02 + r() * 0.5,
              baseline: pick(['loo', 'mean', 'none', 'running'] as const),
              noise: pick(['normal', 'normal', 'laplace', 'logistic'] as const),
              score: r() < 0.2 ? 'sign' : 'exact',
            });
      const cpu = of.sequential(layers, { seed: c, loss, backend: 'cpu' });
      const dev = of.sequential(layers, { seed: c, loss, backend: d.name, allowTf32: false });
      const want = concat(cpu.gradients(b, { estimator, step: c })),
        got = concat(dev.gradients(b, { estimator, step: c }));
      const rel = maxAbs(got, want) / Math.max(maxMag(want), 1e-30);
      worst = Math.max(worst, rel);
      if (!(rel <= d.tol) || dev.backendInfo().placement !== d.name) {
        t.fail(
          `case ${c}: ${layers.map((l) => l.type).join('-')}, ${JSON.stringify(estimator)}, rows ${rows}, ${loss}: relative diff ${rel}, ${dev.backendInfo().placement}`,
        );
        return;
      }
    }
    t.ok(
      worst <= d.tol,
      `80 cases on the device; the largest diff was ${worst.toExponential(2)} of the largest gradient (tolerance ${d.tol})`,
    );
  });

  t.test(`${d.name}: numeric errors leave the last good parameters`, async (t) => {
    const layers = () => [of.dense(784, 16), of.relu(), of.dense(16, 10)];
    const dev = of.sequential(layers(), { seed: 3, backend: d.name });
    const cpu = of.sequential(layers(), { seed: 3, backend: 'cpu' });
    const blowUp = of.sgd({ lr: 1e30 });
    for (const m of [cpu, dev]) m.trainStep(batch, { estimator: of.bp(), optimizer: blowUp });
    const before = params(dev);
    t.throws(
      () => dev.trainStep(batch, { estimator: of.bp(), optimizer: blowUp }),
      { code: 'ERR_NUMERIC' },
      'a non-finite loss is ERR_NUMERIC',
    );
    t.throws(
      () => cpu.trainStep(batch, { estimator: of.bp(), optimizer: blowUp }),
      { code: 'ERR_NUMERIC' },
      'as on the CPU',
    );
    t.ok(
      bitsEqual(Float32Array.from(params(dev)), Float32Array.from(before)),
      'parameters untouched by the failed step',
    );
    // in fit, steps run without a wait: the failed step is found when their results are read back, and the model
    // must still end where the CPU's does (same batch, same step counter, the parameters of the last good step)
    const ends: { message: string; step: number; diverged: string; params: Float64Array }[] = [];
    for (const backend of ['cpu', d.name] as const) {
      const f = of.sequential(layers(), { seed: 3, backend });
      let diverged = '';
      const err = await f
        .fit(small, {
          estimator: of.bp(),
          optimizer: of.sgd({ lr: 1e30 }),
          epochs: 2,
          batchSize: 16,
          onDiverged: (x) => (diverged = `${x.epoch}/${x.step}`),
        })
        .then(
          () => null,
          (e: Error & { code: string }) => e,
        );
      t.equal(err?.code, 'ERR_NUMERIC', `${backend}: a diverging fit is ERR_NUMERIC`);
      ends.push({ message: err?.message ?? '', step: f.step, diverged, params: params(f) });
    }
    t.match(ends[0]!.message, /\[epoch 1, batch \d+\]/, `the CPU names the batch: ${ends[0]!.message}`);
    t.equal(ends[1]!.message, ends[0]!.message, 'the device names the same step and batch');
    t.equal(ends[1]!.step, ends[0]!.step, 'the same step counter');
    t.equal(ends[1]!.diverged, ends[0]!.diverged, `onDiverged with the same epoch/batch (${ends[0]!.diverged})`);
    if (d.exact)
      t.ok(
        bitsEqual(Float32Array.from(ends[1]!.params), Float32Array.from(ends[0]!.params)),
        'the parameters of the last good step, bit for bit',
      );
    const m = of.sequential(layers(), { seed: 3, backend: d.name });
    const start = params(m);
    await t.rejects(
      m.fit(small, { estimator: of.ulr({ copies: 4 }), epochs: 1, maxGradNorm: 1e-9 }),
      { code: 'ERR_NUMERIC', message: /exploding update/ },
      'maxGradNorm stops fit',
    );
    t.ok(bitsEqual(Float32Array.from(params(m)), Float32Array.from(start)), 'and no update was applied');
    t.equal(m.step, 0, 'no step counted');
  });

  t.test(`${d.name}: cancel, save and load keep the device's training`, async (t) => {
    const m = of.sequential([of.dense(784, 32), of.relu(), of.dense(32, 10)], { seed: 5, backend: d.name });
    const start = params(m);
    const ac = new AbortController();
    await t.rejects(
      m.fit(small, {
        estimator: of.ulr({ copies: 8 }),
        epochs: 20,
        batchSize: 16,
        signal: ac.signal,
        onProgress: (p) => {
          if (p.step >= 20) ac.abort();
        },
      }),
      { code: 'ABORT_ERR' },
    );
    t.ok(m.step >= 20, `cancelled after ${m.step} steps`);
    t.ok(maxAbs(params(m), start) > 0, 'the host holds the parameters trained on the device');
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'of-dev-')), 'm.ofm');
    await m.save(file);
    const back = await of.load(file);
    t.ok(bitsEqual(back.predict(val), m.predict(val)), 'a saved and loaded copy predicts the same bits');
    const s0 = m.step;
    await m.fit(small, { estimator: of.ulr({ copies: 8 }), epochs: 1, batchSize: 500 });
    t.equal(m.step, s0 + 4, 'training continues after a cancel');
  });
}

if (devices.length === 1) t.comment(`CUDA checks skipped: ${info.reason}`);
