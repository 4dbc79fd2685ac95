// Graph convolutions (Kipf & Welling): a row of x is a whole graph's node features, the output every node's
// class scores, and labels come one per node (-1 = unlabeled). The forward is checked against float64 loops
// (normalized adjacency from the edge list), BP against float64 central differences (atol 1e-4, rtol 2e-3), the
// mean ULR estimate against BP (cosine >= 0.98 over 1,000 steps at K = 64, sigma = 0.05), and both estimators
// learn node classification: Zachary's karate club from one labeled member per club (>= 85% of the other 32),
// and a seeded 4-community stochastic block model (>= 60%; chance 25%).
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { assertClose, concat, cosine } from './helpers/close';
import { randn } from './helpers/native';
import { finiteDifferences, forwardRow } from './helpers/spatial';

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
const layers = (): of.Layer[] => [
  of.graphConv({ graph, units: 4, inputShape: [7, 3] }),
  of.tanh(),
  of.graphConv({ graph, units: 3 }),
];
const data = () => ({
  x: randn(2 * 21, 5),
  y: Int32Array.from([0, 1, -1, 2, 2, -1, 0, /* row 2 */ 1, -1, -1, 0, 2, 1, 1]),
  rows: 2,
  shape: [7, 3],
});

t.test('forward = float64 loops; BP = float64 central differences; labels per node', async (t) => {
  const m = of.sequential(layers(), { seed: 3 });
  t.equal(m.groups, 7, 'one label per node');
  t.equal(m.outputs, 21, 'the 3 class scores of every node');
  const d = data();
  const params = m.parameters().map((p) => Float64Array.from(p.data));
  const want = concat([0, 1].map((r) => forwardRow(m.layers, params, d.x.subarray(r * 21, (r + 1) * 21))));
  assertClose(t, m.predict(d), want, { atol: 1e-5, rtol: 1e-4, label: 'forward' });
  const got = m.gradients(d, { estimator: of.bp() });
  const fd = finiteDifferences(m.layers, params, d.x, d.y, d.rows);
  m.parameters().forEach((p, i) => assertClose(t, got[i]!, fd[i]!, { atol: 1e-4, rtol: 2e-3, label: p.name }));
  t.same(
    m.parameters().map((p) => `${p.name} [${p.shape.join(', ')}]`),
    ['graph0.weight [4, 3]', 'graph0.bias [4]', 'graph1.weight [3, 4]', 'graph1.bias [3]'],
    'tensors',
  );
  const ev = m.evaluate(d);
  const pred = m.predict(d);
  let hits = 0,
    n = 0;
  d.y.forEach((label, i) => {
    if (label < 0) return;
    const s = Array.from(pred.subarray(i * 3, i * 3 + 3));
    hits += s.indexOf(Math.max(...s)) === label ? 1 : 0;
    n++;
  });
  t.equal(ev.accuracy, hits / n, 'accuracy counts labeled nodes only');
  m.dispose();
});

t.test('the mean ULR estimate converges to the gradient (cosine >= 0.98, 1,000 steps, K = 64)', async (t) => {
  const m = of.sequential(layers(), { seed: 3 });
  const d = data();
  const want = concat(m.gradients(d, { estimator: of.bp() }));
  const mean = new Float64Array(want.length);
  for (let s = 0; s < 1000; s++) {
    const g = concat(m.gradients(d, { estimator: of.ulr({ copies: 64, sigma: 0.05 }), step: s }));
    for (let i = 0; i < g.length; i++) mean[i]! += g[i]! / 1000;
  }
  const c = cosine(mean, want);
  t.ok(c >= 0.98, `cosine ${c.toFixed(4)}`);
  m.dispose();
});

t.test('node classification: karate club and a stochastic block model, BP and ULR', async (t) => {
  for (const [name, task, bar] of [
    ['karate club, 1 labeled member per club', of.datasets.karate(), 0.85],
    ['SBM, 200 nodes, 4 communities, 5 labeled each', of.datasets.sbm(), 0.6],
  ] as const) {
    const N = task.graph.nodes,
      F = task.train.shape[1]!;
    for (const [est, estimator] of [
      ['bp', of.bp()],
      ['ulr K=64', of.ulr({ copies: 64 })],
    ] as const) {
      const m = of.sequential(
        [
          of.graphConv({ graph: task.graph, units: 16, inputShape: [N, F] }),
          of.relu(),
          of.graphConv({ graph: task.graph, units: task.classes }),
        ],
        { seed: 1 },
      );
      for (let s = 0; s < 200; s++) m.trainStep(task.train, { estimator, optimizer: of.adam({ lr: 0.01 }) });
      const acc = m.evaluate(task.test).accuracy;
      t.ok(
        acc >= bar,
        `${name}, ${est}, 200 steps: ${(acc * 100).toFixed(1)}% of the unlabeled nodes >= ${bar * 100}%`,
      );
      m.dispose();
    }
  }
  const k = of.datasets.karate();
  t.equal(Array.from(k.train.y).filter((v) => v >= 0).length, 2, 'karate: 2 labeled members');
  t.equal(k.graph.edges.length, 78, 'karate: 78 friendships');
  t.same(
    [Array.from(k.labels).filter((v) => v === 0).length, Array.from(k.labels).filter((v) => v === 1).length],
    [17, 17],
    'two clubs of 17',
  );
});

t.test('checkpoints keep the graph; bad graphs and labels are typed errors', async (t) => {
  const m = of.sequential(layers(), { seed: 3 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-graph-'));
  await m.save(path.join(dir, 'g.ofckpt'));
  const back = await of.load(path.join(dir, 'g.ofckpt'));
  t.same(back.layers, m.layers, 'layers and graph');
  t.same(Array.from(back.predict(data())), Array.from(m.predict(data())), 'predictions');
  back.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
  t.throws(
    () => of.graphConv({ graph: { nodes: 3, edges: [[0, 3]] }, units: 2 }),
    { code: 'ERR_CONFIG' },
    'edge outside the graph',
  );
  t.throws(() => of.graphConv({ graph, units: 2, inputShape: [6, 3] }), { code: 'ERR_SHAPE' }, 'node count disagrees');
  t.throws(
    () => of.sequential([of.dense(4, 4), of.graphConv({ graph, units: 2 })]),
    { code: 'ERR_CONFIG' },
    'graphConv on a flat input',
  );
  t.throws(
    () => of.sequential(layers(), { loss: 'mse' }),
    { code: 'ERR_CONFIG', message: /per position/ },
    'per-node outputs with mse',
  );
  t.throws(
    () => m.evaluate({ ...data(), y: new Int32Array(14).fill(3) }),
    { code: 'ERR_DATA', message: /out of range/ },
    'label >= classes',
  );
  t.throws(
    () => m.evaluate({ ...data(), y: new Int32Array(2) }),
    { code: 'ERR_SHAPE' },
    'one label per row instead of per node',
  );
  m.dispose();
});
