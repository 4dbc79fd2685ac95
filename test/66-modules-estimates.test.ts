// Local module training (ulr({ modules }); test/48 has the exact checks per layer kind): one-layer modules are plain
// ULR bit for bit; the mean estimate converges to the gradient (cosine >= 0.99 over 200 steps at K = 64, sigma =
// 0.05; measured 0.9987-0.9998); concurrent and sequential reductions and 1 or 2 threads give the same bits;
// pipelining applies the first module one step late; frozen prefixes, a JS loss, fit; bad configurations.
import t from 'tap';
import * as of from '../lib/index';
import { moduleNet } from './helpers/tasks';
import { cosine } from './helpers/close';
import { randn } from './helpers/native';

const B = 5;
const x = randn(B * 6, 11);
const y = new Int32Array([0, 1, 2, 1, 0]);

const flat = (g: Float32Array[]) => Float64Array.from(g.flatMap((a) => Array.from(a)));
const same = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));

const seqKind = (cell: typeof of.gru) => () => [
  cell({ units: 3, inputShape: [3, 2] }),
  of.dense(3, 3),
  of.tanh(),
  of.dense(3, 3),
];

t.test('one-layer modules are plain ULR, bit for bit', async (t) => {
  const m = moduleNet();
  const one: [number, number][] = [
    [0, 1],
    [1, 2],
    [2, 3],
    [3, 4],
  ];
  for (const opts of [
    { copies: 8 },
    { copies: 8, antithetic: true },
    { copies: 6, noise: 'laplace' as const, baseline: 'mean' as const },
    { copies: 4, sigma: [0.1, 0.2, [0.1, 0.2, 0.3], 0.05] },
  ]) {
    const plain = flat(m.gradients({ x, y }, { estimator: of.ulr(opts), step: 4 }));
    const mods = flat(m.gradients({ x, y }, { estimator: of.ulr({ ...opts, modules: one }), step: 4 }));
    t.ok(same(mods, plain), JSON.stringify(opts));
  }
  m.dispose();
});

t.test('the mean module estimate converges to the gradient (cosine >= 0.99, 200 steps, K = 64)', async (t) => {
  const m = moduleNet();
  const want = flat(m.gradients({ x, y }, { estimator: of.bp() }));
  for (const modules of [
    [
      [0, 2],
      [2, 4],
    ],
    [[0, 4]],
    [
      [0, 1],
      [1, 4],
    ],
  ] as [number, number][][]) {
    const mean = new Float64Array(want.length);
    const N = 200;
    for (let s = 0; s < N; s++) {
      const g = flat(m.gradients({ x, y }, { estimator: of.ulr({ copies: 64, sigma: 0.05, modules }), step: s }));
      for (let i = 0; i < g.length; i++) mean[i]! += g[i]! / N;
    }
    const c = cosine(mean, want);
    t.ok(c >= 0.99, `modules ${JSON.stringify(modules)}: cosine ${c.toFixed(5)}`);
  }
  m.dispose();
});

t.test('concurrent and sequential reductions, 1 or 2 threads: the same bits', async (t) => {
  const m = moduleNet();
  const modules: [number, number][] = [
    [0, 2],
    [2, 3],
    [3, 4],
  ];
  const xb = randn(64 * 6, 13),
    yb = Int32Array.from({ length: 64 }, (_, i) => i % 3);
  const ref = flat(m.gradients({ x: xb, y: yb }, { estimator: of.ulr({ copies: 16, modules, concurrent: false }) }));
  const before = of.backend.info().threads;
  try {
    for (const threads of [1, 2]) {
      of.backend.setThreads(threads);
      for (const concurrent of [true, false]) {
        const g = flat(m.gradients({ x: xb, y: yb }, { estimator: of.ulr({ copies: 16, modules, concurrent }) }));
        t.ok(same(g, ref), `threads ${threads}, concurrent ${concurrent}`);
      }
    }
  } finally {
    of.backend.setThreads(before);
  }
  m.dispose();
});

t.test('pipelining applies the first module gradient one step late, the others at once', async (t) => {
  const modules: [number, number][] = [
    [0, 2],
    [2, 4],
  ];
  const x2 = randn(B * 6, 14),
    y2 = new Int32Array([2, 2, 1, 0, 1]);
  const lr = 0.5;
  const piped = moduleNet(),
    ref = moduleNet();
  const p0 = piped.parameters().map((p) => Float64Array.from(p.data));
  const firstModule = 4; // tensors of dense layers 0-1: W0, b0, W1, b1
  // reference: the gradients a pipelined run uses, computed without pipelining at the same parameters
  const g1 = ref.gradients({ x, y }, { estimator: of.ulr({ copies: 8, modules }), step: 0 });
  piped.trainStep({ x, y }, { estimator: of.ulr({ copies: 8, modules, pipeline: true }), optimizer: of.sgd({ lr }) });
  const p1 = piped.parameters().map((p) => Float64Array.from(p.data));
  t.ok(
    p1.slice(0, firstModule).every((p, i) => same(p, p0[i]!)),
    'step 1: the first module does not move',
  );
  const expect1 = p0.map((p, i) => p.map((v, j) => Math.fround(v - Math.fround(lr * g1[i]![j]!))));
  t.ok(
    p1.slice(firstModule).every((p, i) => same(p, expect1[i + firstModule]!)),
    'step 1: the second module takes its fresh gradient',
  );
  // step 2: the first module takes step 1's gradient (computed at p0 on batch 1)
  piped.trainStep(
    { x: x2, y: y2 },
    { estimator: of.ulr({ copies: 8, modules, pipeline: true }), optimizer: of.sgd({ lr }) },
  );
  const p2 = piped.parameters().map((p) => Float64Array.from(p.data));
  t.ok(
    p2.slice(0, firstModule).every((p, i) => same(p, expect1[i]!)),
    'step 2: the first module takes the gradient of step 1',
  );
  t.notOk(same(p2[firstModule]!, p1[firstModule]!), 'step 2: the second module moves again');
  (piped.dispose(), ref.dispose());
});

t.test('modules with a frozen prefix, a JS loss, and in fit', async (t) => {
  const m = moduleNet();
  m.freeze(1);
  const w0 = Float32Array.from(m.parameters()[0]!.data);
  const g = m.gradients(
    { x, y },
    {
      estimator: of.ulr({
        copies: 8,
        modules: [
          [0, 2],
          [2, 4],
        ],
      }),
    },
  );
  t.ok(g[0]!.every((v) => v === 0) && g[1]!.every((v) => v === 0), 'frozen layer: zero gradient');
  t.ok(
    g[2]!.some((v) => v !== 0),
    'the rest of the first module still trains',
  );
  m.trainStep(
    { x, y },
    {
      estimator: of.ulr({
        copies: 8,
        modules: [
          [0, 2],
          [2, 4],
        ],
      }),
    },
  );
  t.ok(same(m.parameters()[0]!.data, w0), 'frozen layer unchanged by a step');
  m.freeze(0);
  // a JS cross-entropy gives the built-in estimate (same noise, losses to float precision)
  const ce: of.LossFunction = (out, targets, rows) => {
    // targets: one per row
    const cols = out.length / rows;
    const l = new Float64Array(rows);
    for (let r = 0; r < rows; r++) {
      const o = Array.from(out.subarray(r * cols, (r + 1) * cols));
      const mx = Math.max(...o);
      l[r] = mx + Math.log(o.reduce((s, v) => s + Math.exp(v - mx), 0)) - o[targets[r]!]!;
    }
    return l;
  };
  const est = of.ulr({
    copies: 8,
    modules: [
      [0, 3],
      [3, 4],
    ],
  });
  const builtin = flat(m.gradients({ x, y }, { estimator: est, step: 2 }));
  const js = flat(m.gradients({ x, y }, { estimator: est, step: 2, loss: ce }));
  const err = Math.max(...builtin.map((v, i) => Math.abs(v - js[i]!)));
  t.ok(err < 1e-4, `JS loss vs built-in: max abs diff ${err.toExponential(2)}`);
  m.dispose();

  const { train, test } = of.datasets.digits();
  const d = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 1 });
  await d.fit(train, {
    estimator: of.ulr({ copies: 16, modules: [[0, 2]] }),
    optimizer: of.adam({ lr: 1e-3 }),
    epochs: 1,
    batchSize: 64,
  });
  const acc = d.evaluate(test).accuracy;
  t.ok(acc >= 0.85, `digits, 1 epoch, one module (noise on the logits, BP inside): ${(acc * 100).toFixed(2)}% >= 85%`);
  d.dispose();
});

t.test('bad module configurations are ERR_CONFIG', async (t) => {
  const m = moduleNet();
  const bad = (est: () => of.Estimator, why: string) =>
    t.throws(() => m.gradients({ x, y }, { estimator: est() }), { code: 'ERR_CONFIG' }, why);
  bad(
    () =>
      of.ulr({
        modules: [
          [0, 2],
          [2, 3],
        ],
      }),
    'modules short of the last layer',
  );
  bad(
    () =>
      of.ulr({
        modules: [
          [0, 2],
          [3, 4],
        ],
      }),
    'a gap between modules',
  );
  bad(() => of.ulr({ modules: [[1, 4]] }), 'not starting at 0');
  bad(() => of.ulr({ modules: [[0, 5]] }), 'past the last layer');
  bad(
    () =>
      of.ulr({
        modules: [
          [0, 2],
          [2, 2],
        ],
      }),
    'an empty module',
  );
  bad(() => of.ulr({ modules: [] }), 'no modules');
  bad(() => of.ulr({ modules: [[0, 4]], injection: 'layerwise' }), 'with layer-wise injection');
  bad(() => of.ulr({ modules: [[0, 4]], baseline: 'clean' }), 'with the clean baseline');
  bad(() => of.ulr({ pipeline: true }), 'pipeline without modules');
  bad(() => of.ulr({ inner: 'bp' }), 'inner without modules');
  // without modules, pipeline false is what it says (off), and concurrent orders the layers' block sums: same bits
  const plain = m.gradients({ x, y }, { estimator: of.ulr({ copies: 4 }), step: 1 });
  for (const extra of [{ pipeline: false }, { concurrent: false }, { concurrent: true }]) {
    const g = m.gradients({ x, y }, { estimator: of.ulr({ copies: 4, ...extra }), step: 1 });
    t.ok(same(flat(g), flat(plain)), `without modules, ${JSON.stringify(extra)} is accepted and gives the same bits`);
  }
  bad(() => of.ulr({ modules: [[0, 4]], inner: 'es' as 'bp' }), 'an unknown inner method');
  bad(
    () =>
      ({
        kind: 'ulr',
        copies: 8,
        sigma: 0.1,
        modules: [
          [0, 2],
          [1, 4],
        ],
      }) as unknown as of.Estimator,
    'overlapping (native check)',
  );
  m.dispose();
  const refuse = (layers: of.Layer[], est: of.Estimator, message: RegExp, why: string) => {
    const n = of.sequential(layers, { seed: 1 });
    t.throws(
      () => n.gradients({ x: randn(2 * n.inputs, 3), y: Int32Array.from([0, 1]), rows: 2 }, { estimator: est }),
      { code: 'ERR_CONFIG', message },
      why,
    );
    n.dispose();
  };
  const block = () => [
    of.dense(6, 5),
    of.tanh(),
    of.residual([of.dense(5, 5), of.tanh(), of.dense(5, 5)]),
    of.tanh(),
    of.dense(5, 3),
  ];
  refuse(
    block(),
    of.ulr({
      modules: [
        [0, 2],
        [2, 4],
      ],
    }),
    /ends at layer 1 inside the residual block of layers 1 to 2/,
    'a boundary at a block start',
  );
  refuse(
    block(),
    of.ulr({
      modules: [
        [0, 3],
        [3, 4],
      ],
    }),
    /ends at layer 2 inside the residual block of layers 1 to 2/,
    "a boundary at a block's end",
  );
  refuse(
    [of.dense(6, 5), of.tanh(), of.concat([of.dense(5, 3), of.dense(3, 3)]), of.dense(8, 3)],
    of.ulr({
      modules: [
        [0, 2],
        [2, 4],
      ],
    }),
    /concat block of layers 1 to 2/,
    'a boundary inside a concat block',
  );
  refuse(
    [of.dense(6, 5), of.sign(), of.dense(5, 3)],
    of.ulr({ modules: [[0, 2]] }),
    /'sign' activation after layer 0/,
    'a step inside a module',
  );
  refuse(
    [of.dense(6, 5), of.batchNorm(), of.dense(5, 3)],
    of.ulr({
      modules: [
        [0, 2],
        [2, 3],
      ],
      pipeline: true,
    }),
    /batchNorm/,
    'pipeline with batchNorm in the first module',
  );
  refuse(
    seqKind(of.gru)(),
    {
      ...of.ulr({
        modules: [
          [0, 1],
          [1, 3],
        ],
      }),
      exactBoundary: true,
    } as of.Estimator,
    /not recurrent/,
    'the exact boundary hook at a recurrent boundary',
  );
});

// The device (its host simulation) runs modules in models of every kind, batchNorm (its statistics held constant),
// blocks and token models included:
// the group runner's forward noisy at the boundaries, each boundary's reduction, BP inside each module. Its estimates
// are the CPU's up to the GEMMs' rounding (measured <= 5.3e-7 of the largest entry; the bound: 1e-5 of it), and
// pipelining delays the first module as the CPU does (three SGD steps).
t.test('modules on the device: every kind, the CPU estimate', async (t) => {
  const models: [string, () => of.Layer[], number][] = [
    ['gru', () => [of.gru({ units: 6, inputShape: [4, 3] }), of.dense(6, 5), of.tanh(), of.dense(5, 3)], 12],
    [
      'lstm',
      () => [of.lstm({ units: 5, inputShape: [4, 3], returnSequences: true }), of.gru({ units: 4 }), of.dense(4, 3)],
      12,
    ],
    ['layerNorm', () => [of.dense(12, 8), of.relu(), of.layerNorm(), of.gelu(), of.dense(8, 3)], 12],
    ['dropout', () => [of.dense(12, 8), of.relu(), of.dropout(0.3), of.dense(8, 6), of.tanh(), of.dense(6, 3)], 12],
    [
      'conv',
      () => [
        of.conv2d({ filters: 3, kernel: 3, inputShape: [5, 5, 1] }),
        of.relu(),
        of.maxPool2d({ size: 2 }),
        of.flatten(),
        of.dense(3, 4),
        of.tanh(),
        of.dense(4, 3),
      ],
      25,
    ],
  ];
  const configs = [
    {
      modules: [
        [0, 1],
        [1, 3],
      ],
    },
    {
      modules: [
        [0, 2],
        [2, 3],
      ],
      antithetic: true,
    },
    {
      modules: [
        [0, 1],
        [1, 2],
        [2, 3],
      ],
      storeNoise: false,
    },
  ];
  const B = 5;
  const yb = Int32Array.from({ length: B }, (_, i) => i % 3);
  const residualNet = () => [
    of.dense(12, 8),
    of.relu(),
    of.residual([of.dense(8, 8), of.tanh(), of.dense(8, 8), of.tanh()]),
    of.gelu(), // the block's post-activation: BP reads its sum and act(v) kept apart
    of.dense(8, 5),
    of.tanh(),
    of.dense(5, 3),
  ];
  const gpt = () => [
    of.embedding({ vocab: 7, dim: 8, steps: 4 }),
    of.positionalEmbedding(),
    ...of.gptBlock({ dim: 8, heads: 2 }),
    of.layerNorm(),
    of.dense(8, 7),
  ];
  const ids = (n: number, k: number) => Int32Array.from({ length: n }, (_, i) => (k * i) % 7);
  const cases: [string, () => of.Layer[], Float32Array, Int32Array, object[]][] = [
    ...models.map(([name, layers, features]): [string, () => of.Layer[], Float32Array, Int32Array, object[]] => [
      name,
      layers,
      randn(B * features, 3),
      yb,
      configs,
    ]),
    [
      'batchNorm',
      () => [of.dense(12, 8), of.batchNorm(), of.relu(), of.dense(8, 6), of.batchNorm(), of.tanh(), of.dense(6, 3)],
      randn(B * 12, 3),
      yb,
      [
        {
          modules: [
            [0, 2],
            [2, 5],
          ],
        },
        {
          modules: [
            [0, 1],
            [1, 4],
            [4, 5],
          ],
        },
      ],
    ],
    [
      'residual',
      residualNet,
      randn(B * 12, 3),
      yb,
      [
        {
          modules: [
            [0, 1],
            [1, 5],
          ],
        },
        {
          modules: [
            [0, 4],
            [4, 5],
          ],
        },
      ],
    ],
    [
      'gptBlock',
      gpt,
      Float32Array.from(ids(B * 4, 3)),
      ids(B * 4, 5),
      [
        {
          modules: [
            [0, 2],
            [2, 10],
          ],
        },
        {
          modules: [
            [0, 9],
            [9, 10],
          ],
        },
      ],
    ],
  ];
  for (const [name, layers, xb, yb, cfgs] of cases) {
    for (const cfg of cfgs) {
      const estimator = of.ulr({ copies: 4, ...cfg } as of.UlrOptions);
      const [cpu, sim] = (['cpu', 'sim'] as const).map((backend) => of.sequential(layers(), { seed: 2, backend }));
      const want = flat(cpu!.gradients({ x: xb, y: yb, rows: B }, { estimator, step: 1 }));
      const got = flat(sim!.gradients({ x: xb, y: yb, rows: B }, { estimator, step: 1 }));
      const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      const diff = want.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0);
      t.equal(sim!.backendInfo().placement, 'sim', `${name} ${JSON.stringify(cfg)}: on the device`);
      t.ok(
        diff <= 1e-5 * scale,
        `${name} ${JSON.stringify(cfg)}: max difference ${diff.toExponential(2)} of ${scale.toFixed(3)}`,
      );
      cpu!.dispose();
      sim!.dispose();
    }
  }
  for (const [name, layers, features] of [models[2]!, models[4]!]) {
    const xb = randn(B * features, 5);
    const estimator = of.ulr({
      copies: 4,
      modules: [
        [0, 1],
        [1, 3],
      ],
      pipeline: true,
    });
    const [cpu, sim] = (['cpu', 'sim'] as const).map((backend) => of.sequential(layers(), { seed: 2, backend }));
    for (let s = 0; s < 3; s++)
      for (const m of [cpu!, sim!])
        m.trainStep({ x: xb, y: yb, rows: B }, { estimator, optimizer: of.sgd({ lr: 0.1 }) });
    const want = flat(cpu!.parameters().map((p) => p.data));
    const got = flat(sim!.parameters().map((p) => p.data));
    const diff = want.reduce((m, v, i) => Math.max(m, Math.abs(v - got[i]!)), 0);
    t.equal(sim!.backendInfo().placement, 'sim', `${name} pipelined: on the device`);
    t.ok(diff <= 1e-5, `${name} pipelined, three steps: max difference ${diff.toExponential(2)}`);
    cpu!.dispose();
    sim!.dispose();
  }
});
