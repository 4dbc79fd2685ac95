// Local module training (ulr({ modules })): noise only at module boundaries, the LR estimate of the gradient
// there, BP inside each module. Exact checks: with the exact boundary gradient (test hook) it is BP bit for
// bit (dense, conv; the other layer kinds to 1e-5 of the largest gradient), for every layer kind; pipelining with
// dropout, a residual block or a recurrent boundary in the first module; boundaries inside residual or concat blocks
// are refused. (One-layer modules, the statistical check, reductions, pipelining, fit and errors: test/66.)
import t from 'tap';
import * as of from '../lib/index';
import { moduleNet } from './helpers/tasks';
import { randn } from './helpers/native';
import { configA, configB, configC } from './helpers/spatial';

const B = 5;
const x = randn(B * 6, 11);
const y = new Int32Array([0, 1, 2, 1, 0]);

const flat = (g: Float32Array[]) => Float64Array.from(g.flatMap((a) => Array.from(a)));
const same = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  a.length === b.length && Array.from(a).every((v, i) => Object.is(v, b[i]));
const SPLITS: [number, number][][] = [
  [[0, 4]],
  [
    [0, 1],
    [1, 2],
    [2, 3],
    [3, 4],
  ],
  [
    [0, 2],
    [2, 4],
  ],
  [
    [0, 1],
    [1, 4],
  ],
  [
    [0, 3],
    [3, 4],
  ],
];

t.test('exact boundary gradients (test hook): every module split gives BP bit for bit', async (t) => {
  for (const loss of ['crossEntropy', 'mse'] as const) {
    const m = moduleNet(3, loss);
    const yy = loss === 'mse' ? randn(B * 3, 12) : y;
    const want = flat(m.gradients({ x, y: yy }, { estimator: of.bp() }));
    for (const modules of SPLITS) {
      const est = { ...of.ulr({ modules }), exactBoundary: true } as of.Estimator;
      t.ok(
        same(flat(m.gradients({ x, y: yy }, { estimator: est })), want),
        `${loss}, modules ${JSON.stringify(modules)}`,
      );
    }
    m.dispose();
  }
});

t.test(
  'spatial models (conv, pooling): exact boundaries give BP and one-layer modules give ULR, bit for bit',
  async (t) => {
    for (const [name, layers] of [
      ['A', configA()],
      ['B', configB()],
      ['C', configC()],
    ] as const) {
      // the CPU engine on every backend: the device trains modules of dense models only (others fall back to the
      // CPU), so under a device BP and plain ULR would run on another engine than the modules they are compared with
      const m = of.sequential(layers, { seed: 4, backend: 'cpu' });
      const P = m.parameters().filter((p) => p.name.endsWith('.weight')).length; // modules count layers with parameters
      const xs = randn(5 * m.inputs, 21),
        ys = Int32Array.from([0, 2, 1, 1, 0]);
      const want = flat(m.gradients({ x: xs, y: ys }, { estimator: of.bp() }));
      const one = Array.from({ length: P }, (_, i) => [i, i + 1] as [number, number]);
      for (const modules of [
        [[0, P]],
        one,
        [
          [0, 1],
          [1, P],
        ],
      ] as [number, number][][]) {
        const est = { ...of.ulr({ modules }), exactBoundary: true } as of.Estimator;
        t.ok(
          same(flat(m.gradients({ x: xs, y: ys }, { estimator: est })), want),
          `config ${name}, exact boundaries, modules ${JSON.stringify(modules)}`,
        );
      }
      const plain = flat(m.gradients({ x: xs, y: ys }, { estimator: of.ulr({ copies: 8 }), step: 3 }));
      t.ok(
        same(flat(m.gradients({ x: xs, y: ys }, { estimator: of.ulr({ copies: 8, modules: one }), step: 3 })), plain),
        `config ${name}, one-layer modules`,
      );
      m.dispose();
    }
  },
);

// Every layer kind inside modules: a tiny model of the kind, its number of layers with parameters, and splits whose
// boundaries are not recurrent (the exact boundary hook needs a boundary's gradient at one pre-activation).
const graph: of.Graph = {
  nodes: 4,
  edges: [
    [0, 1],
    [1, 2],
    [2, 3],
    [3, 0],
  ],
};
const seqKind = (cell: typeof of.gru) => () => [
  cell({ units: 3, inputShape: [3, 2] }),
  of.dense(3, 3),
  of.tanh(),
  of.dense(3, 3),
];
const KINDS: { name: string; layers: () => of.Layer[]; exact: [number, number][][]; one: boolean }[] = [
  {
    name: 'gru',
    layers: seqKind(of.gru),
    exact: [
      [[0, 3]],
      [
        [0, 2],
        [2, 3],
      ],
    ],
    one: true,
  },
  {
    name: 'lstm',
    layers: seqKind(of.lstm),
    exact: [
      [[0, 3]],
      [
        [0, 2],
        [2, 3],
      ],
    ],
    one: true,
  },
  {
    name: 'rnn',
    layers: seqKind(of.rnn),
    exact: [
      [
        [0, 2],
        [2, 3],
      ],
    ],
    one: true,
  },
  {
    name: 'lif',
    layers: () => [of.repeat(3, { inputs: 4 }), of.lif({ units: 3 }), of.timeMean(), of.dense(3, 3)],
    exact: [],
    one: true,
  },
  {
    name: 'layerNorm',
    layers: () => [of.dense(6, 5), of.layerNorm(), of.tanh(), of.dense(5, 3)],
    exact: [
      [[0, 3]],
      [
        [0, 1],
        [1, 2],
        [2, 3],
      ],
    ],
    one: true,
  },
  {
    name: 'batchNorm',
    layers: () => [of.dense(6, 5), of.batchNorm(), of.tanh(), of.dense(5, 3)],
    exact: [
      [[0, 3]],
      [
        [0, 1],
        [1, 2],
        [2, 3],
      ],
    ],
    one: true,
  },
  {
    name: 'groupNorm',
    layers: () => [of.dense(6, 6), of.groupNorm({ groups: 2 }), of.tanh(), of.dense(6, 3)],
    exact: [
      [[0, 3]],
      [
        [0, 2],
        [2, 3],
      ],
    ],
    one: true,
  },
  {
    name: 'ternary conv',
    layers: () => [
      of.conv2d({ inputShape: [4, 4, 1], filters: 3, kernel: 3, weights: 'ternary' }),
      of.tanh(),
      of.flatten(),
      of.dense(12, 3, { weights: 'binary' }),
    ],
    exact: [],
    one: true,
  },
  {
    name: 'dropout',
    layers: () => [of.dense(6, 5), of.tanh(), of.dropout(0.4), of.dense(5, 3)],
    exact: [
      [[0, 2]],
      [
        [0, 1],
        [1, 2],
      ],
    ],
    one: true,
  },
  {
    name: 'graphConv',
    layers: () => [of.graphConv({ graph, units: 4, inputShape: [4, 3] }), of.tanh(), of.graphConv({ graph, units: 3 })],
    exact: [
      [[0, 2]],
      [
        [0, 1],
        [1, 2],
      ],
    ],
    one: true,
  },
  {
    name: 'residual',
    layers: () => [
      of.dense(6, 5),
      of.tanh(),
      of.residual([of.dense(5, 5), of.tanh(), of.dense(5, 5)]),
      of.tanh(),
      of.dense(5, 3),
    ],
    exact: [
      [[0, 4]],
      [
        [0, 1],
        [1, 4],
      ],
    ],
    one: false,
  },
  {
    name: 'concat',
    layers: () => [of.dense(6, 5), of.tanh(), of.concat([of.dense(5, 3), of.sigmoid()]), of.tanh(), of.dense(8, 3)],
    exact: [
      [
        [0, 1],
        [1, 3],
      ],
    ],
    one: false,
  },
];

t.test(
  'every layer kind: exact boundaries give BP (float precision), one-layer modules give plain ULR bit for bit',
  async (t) => {
    for (const kind of KINDS) {
      const m = of.sequential(kind.layers(), { seed: 5, backend: 'cpu' }); // the CPU engine's two paths (test/55: the device's)
      const P = m.parameters().filter((p) => p.name.endsWith('.weight') || p.name.endsWith('.gain')).length;
      const d = { x: randn(4 * m.inputs, 23), y: Int32Array.from({ length: 4 * m.groups }, (_, i) => i % 3), rows: 4 };
      if (kind.exact.length) {
        const want = flat(m.gradients(d, { estimator: of.bp() }));
        const scale = Math.max(...want.map(Math.abs));
        for (const modules of kind.exact) {
          const got = flat(
            m.gradients(d, { estimator: { ...of.ulr({ modules }), exactBoundary: true } as of.Estimator }),
          );
          const err = Math.max(...got.map((v, i) => Math.abs(v - want[i]!)));
          t.ok(
            err <= 1e-5 * scale,
            `${kind.name}, modules ${JSON.stringify(modules)}: exact boundaries vs BP, max abs diff ${err.toExponential(2)}`,
          );
        }
      }
      if (kind.one) {
        const one = Array.from({ length: P }, (_, i) => [i, i + 1] as [number, number]);
        for (const opts of [{ copies: 8 }, { copies: 6, antithetic: true, baseline: 'mean' as const }]) {
          const plain = flat(m.gradients(d, { estimator: of.ulr(opts), step: 3 }));
          const mods = flat(m.gradients(d, { estimator: of.ulr({ ...opts, modules: one }), step: 3 }));
          t.ok(same(mods, plain), `${kind.name}, ${JSON.stringify(opts)}: one-layer modules are plain ULR`);
        }
      }
      m.dispose();
    }
  },
);

t.test('pipelining with dropout, a residual block or a recurrent boundary in the first module', async (t) => {
  const nets: [string, () => of.Layer[], [number, number][]][] = [
    [
      'dropout',
      () => [of.dense(6, 5), of.tanh(), of.dropout(0.4), of.dense(5, 4), of.tanh(), of.dense(4, 3)],
      [
        [0, 2],
        [2, 3],
      ],
    ],
    [
      'residual',
      () => [
        of.dense(6, 5),
        of.tanh(),
        of.residual([of.dense(5, 5), of.tanh(), of.dense(5, 5)]),
        of.tanh(),
        of.dense(5, 4),
        of.tanh(),
        of.dense(4, 3),
      ],
      [
        [0, 4],
        [4, 5],
      ],
    ],
    [
      'gru',
      seqKind(of.gru),
      [
        [0, 1],
        [1, 3],
      ],
    ],
  ];
  const lr = 0.5;
  for (const [name, layers, modules] of nets) {
    const piped = of.sequential(layers(), { seed: 6, backend: 'cpu' }),
      ref = of.sequential(layers(), { seed: 6, backend: 'cpu' });
    const d1 = { x: randn(5 * piped.inputs, 31), y: Int32Array.from([0, 1, 2, 1, 0]), rows: 5 };
    const d2 = { x: randn(5 * piped.inputs, 32), y: Int32Array.from([2, 2, 1, 0, 1]), rows: 5 };
    const layerOf = piped.parameters().map((p) => p.name.split('.')[0]!);
    const firstModule = layerOf.indexOf([...new Set(layerOf)][modules[0]![1]]!); // tensors of the first module's layers
    const p0 = piped.parameters().map((p) => Float64Array.from(p.data));
    const g1 = ref.gradients(d1, { estimator: of.ulr({ copies: 8, modules }), step: 0 });
    const est = of.ulr({ copies: 8, modules, pipeline: true });
    piped.trainStep(d1, { estimator: est, optimizer: of.sgd({ lr }) });
    piped.trainStep(d2, { estimator: est, optimizer: of.sgd({ lr }) });
    const p2 = piped.parameters().map((p) => Float64Array.from(p.data));
    const expect = p0.map((p, i) => p.map((v, j) => Math.fround(v - Math.fround(lr * g1[i]![j]!))));
    t.ok(
      p2.slice(0, firstModule).every((p, i) => same(p, expect[i]!)),
      `${name}: step 2 gives the first module the gradient of step 1`,
    );
    (piped.dispose(), ref.dispose());
  }
});
