// The device backend (test/55 has the overview and the core checks): local modules, copy-parallel and seed-replay
// ranks, SPSA and ES, a JS loss, fit's validation, copies 'auto' and the CPU fallback, each against the CPU engine
// with the tolerances of test/helpers/device.ts.
import t from 'tap';
import * as of from '../lib/index';
import { concat } from './helpers/close';
import { randn } from './helpers/native';
import { configA, configB } from './helpers/spatial';
import {
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

for (const d of devices) {
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
}
