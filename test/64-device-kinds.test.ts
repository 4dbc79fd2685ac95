// The device backend (test/55 has the overview and the core checks): BP and ULR through every layer kind, graph
// convolutions with per-node labels, 80 seeded random models, numeric errors and cancel / save / load, each against
// the CPU engine with the tolerances of test/helpers/device.ts.
import t from 'tap';
import * as os from 'os';
import * as path from 'path';
import * as fs from 'fs';
import * as of from '../lib/index';
import { concat } from './helpers/close';
import { randn } from './helpers/native';
import { configA, configB, configC } from './helpers/spatial';
import { type Dev, devices, small, val, batch, maxAbs, maxMag, params, bitsEqual } from './helpers/device';

for (const d of devices) {
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
    // token models: T = 5 ids of a 7-token vocabulary per row, a label per position
    const [T, V, D] = [5, 7, 6];
    const tokens = {
      x: Float32Array.from({ length: 10 * T }, (_, i) => (3 * i + Math.floor(i / V)) % V),
      y: Int32Array.from({ length: 10 * T }, (_, i) => (2 * i + 1) % V),
      rows: 10,
    };
    const nets: [string, () => of.Layer[], number | 'tokens'][] = [
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
      [
        'embedding, positionalEmbedding, causal attention, dense per position',
        () => [
          of.embedding({ vocab: V, dim: D, steps: T }),
          of.positionalEmbedding(),
          of.multiHeadAttention({ heads: 2, causal: true }),
          of.dense(D, 8),
          of.gelu(),
          of.dense(8, V),
        ],
        'tokens',
      ],
      [
        'gptBlock (pre-LN, causal, 3 heads)',
        () => [
          of.embedding({ vocab: V, dim: D, steps: T }),
          of.positionalEmbedding(),
          ...of.gptBlock({ dim: D, heads: 3, mlp: 2 }),
          of.layerNorm(),
          of.dense(D, V),
        ],
        'tokens',
      ],
    ];
    for (const [name, layers, inputs] of nets) {
      const b =
        inputs === 'tokens'
          ? tokens
          : inputs === 784
            ? batch
            : { x: randn(10 * inputs, 12), y: Int32Array.from({ length: 10 }, (_, i) => i % 3), rows: 10 };
      const quantized = name.includes('binary') || name.includes('ternary'); // bp() refuses them on every backend
      // per layer with parameters: its noise channels (a weight's first dimension, a norm's features, a token table's
      // width)
      const probe = of.sequential(layers(), { seed: 5, backend: 'cpu' });
      const table = (name: string) => name.startsWith('embedding') || name.startsWith('position');
      const firsts = new Map(
        probe
          .parameters()
          .map((p) => [p.name.slice(0, p.name.lastIndexOf('.')), table(p.name) ? p.shape[1]! : p.shape[0]!] as const),
      );
      const channels = [...firsts.values()],
        P = channels.length;
      probe.dispose();
      for (const [label, estimator] of [
        ...(quantized ? [] : [['bp', of.bp()] as const]),
        // the plan's copy groups (estimators/ulr_plan.h) on every kind: a group of one layer and one of the rest
        ['ulr layer-wise K=6, blocks', of.ulr({ copies: 6, injection: 'layerwise', blocks: P > 1 ? [1, P - 1] : [1] })],
        [
          'ulr layer-wise copies per layer, QMC, clean baseline',
          of.ulr({
            copies: channels.map((_, i) => (i % 2 ? 4 : 6)),
            injection: 'layerwise',
            qmc: true,
            baseline: 'clean',
          }),
        ],
        ['ulr learned sigma, sharedPrefix false', of.ulr({ copies: 6, learnSigma: { lr: 0.01 }, sharedPrefix: false })],
        [
          'ulr sigma per channel', // a recurrent unit's per gate row
          of.ulr({ copies: 6, sigma: channels.map((n) => Array.from({ length: n }, (_, i) => 0.05 + 0.05 * (i % 3))) }),
        ],
        // a frozen first layer (a recurrent one included) runs clean in the B-row prefix; its gradient is zero
        ...(P > 1 && !quantized ? [['bp, the first layer frozen', of.bp()] as const] : []),
        ...(P > 1
          ? [['ulr layer-wise K=6, the first layer frozen', of.ulr({ copies: 6, injection: 'layerwise' })] as const]
          : []),
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
        if (label.includes('frozen')) (cpu.freeze(1), dev.freeze(1));
        // the device always shares the prefix: sharedPrefix false is the same estimate, G^T A summed in its order
        const shared = { ...estimator, sharedPrefix: true } as of.Estimator;
        const want = concat(cpu.gradients(b, { estimator: shared, step: 3 })),
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
