// Residual blocks, out = post(x + f(x)), and concat blocks, out = [x, f(x)] along the last axis. The forward is checked against float64 loops (helpers/spatial.ts), BP
// against float64 central differences (atol 1e-4, rtol 2e-3), the mean ULR estimate against BP (cosine >= 0.98
// over 1,000 steps at K = 64, sigma = 0.05), for a dense block and a convolutional one; checkpoints keep the
// blocks; a residual CNN learns digits; malformed blocks are typed errors.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { randn } from './helpers/native';
import { checkAgainstReference } from './helpers/checks';

const denseNet = (): of.Layer[] => [
  of.dense(5, 4),
  of.tanh(),
  of.residual([of.dense(4, 4), of.sigmoid(), of.dense(4, 4)]),
  of.tanh(),
  of.dense(4, 3),
];
const convNet = (): of.Layer[] => [
  of.conv2d({ inputShape: [6, 5, 2], filters: 3, kernel: 3, padding: 'same' }),
  of.tanh(),
  of.residual([
    of.conv2d({ filters: 3, kernel: 3, padding: 'same' }),
    of.tanh(),
    of.conv2d({ filters: 3, kernel: [1, 3], padding: 'same' }),
  ]),
  of.sigmoid(),
  of.avgPool2d(),
  of.flatten(),
  of.dense(3 * 2 * 3, 3),
];

const denseConcat = (): of.Layer[] => [
  of.dense(5, 4),
  of.tanh(),
  of.concat([of.dense(4, 3), of.sigmoid()]),
  of.tanh(),
  of.dense(7, 3),
];
const convConcat = (): of.Layer[] => [
  of.conv2d({ inputShape: [5, 4, 2], filters: 3, kernel: 3, padding: 'same' }),
  of.tanh(),
  of.concat([of.conv2d({ filters: 2, kernel: 3, padding: 'same' }), of.tanh()]),
  of.flatten(),
  of.dense(5 * 4 * 5, 3),
];

t.test('forward = float64 loops; BP = central differences; ULR converges', async (t) => {
  for (const [name, layers] of [
    ['dense block', denseNet()],
    ['conv block', convNet()],
    ['dense concat', denseConcat()],
    ['conv concat', convConcat()],
  ] as const) {
    checkAgainstReference(t, name, layers);
  }
});

t.test('checkpoints keep residual blocks; malformed blocks are typed errors', async (t) => {
  const m = of.sequential(convNet(), { seed: 4 });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-res-'));
  await m.save(path.join(dir, 'r.ofckpt'));
  const back = await of.load(path.join(dir, 'r.ofckpt'));
  t.same(back.layers, m.layers, 'layers');
  const d = { x: randn(2 * m.inputs, 3), y: Int32Array.from([0, 1]), rows: 2, shape: [m.inputs] };
  t.same(Array.from(back.predict(d)), Array.from(m.predict(d)), 'predictions');
  (back.dispose(), m.dispose());
  fs.rmSync(dir, { recursive: true, force: true });
  t.throws(
    () => of.sequential([of.dense(4, 4), of.residual([of.dense(4, 3)]), of.dense(3, 2)]),
    { code: 'ERR_SHAPE', message: /shape/ },
    'f(x) changes the shape',
  );
  t.throws(
    () => of.sequential([of.residual([of.dense(4, 4)]), of.dense(4, 2)]),
    { code: 'ERR_CONFIG', message: /first layer/ },
    'a block first',
  );
  t.throws(
    () => of.residual([of.residual([of.dense(4, 4)])]),
    { code: 'ERR_CONFIG', message: /nest/ },
    'nested blocks',
  );
  t.throws(() => of.residual([]), { code: 'ERR_CONFIG' }, 'an empty block');
  t.throws(
    () => of.residual([of.relu(), of.dense(4, 4)]),
    { code: 'ERR_CONFIG' },
    'a block starting with an activation',
  );
  t.throws(
    () =>
      of.sequential([
        of.conv2d({ inputShape: [4, 4, 1], filters: 2, kernel: 3 }),
        of.concat([of.maxPool2d()]),
        of.flatten(),
        of.dense(8, 2),
      ]),
    { code: 'ERR_SHAPE', message: /image size/ },
    'concat changes the image size',
  );
  t.same(
    of
      .sequential(convConcat())
      .parameters()
      .map((p) => p.shape.join('x')),
    ['3x3x3x2', '3', '2x3x3x3', '2', '3x100', '3'],
    'concat: channels 3 + 2',
  );
  const r = of.sequential(denseNet(), { seed: 1 });
  t.throws(
    () =>
      r.gradients(
        { x: randn(10, 1), y: Int32Array.from([0, 1]) },
        {
          estimator: of.ulr({
            modules: [
              [0, 2],
              [2, 4],
            ],
          }),
        },
      ),
    { code: 'ERR_CONFIG', message: /ends at layer 1 inside the residual block of layers 1 to 2/ },
    'a module boundary inside a residual block',
  );
  r.dispose();
});

t.test('a residual CNN learns digits (2,000 rows, 1 epoch): BP >= 70%', async (t) => {
  const { train, test } = of.datasets.digits();
  const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 1).subarray(0, 2000)));
  const evalSet = of.data.take(
    test,
    Array.from({ length: 1000 }, (_, i) => i * 2),
  );
  const m = of.sequential(
    [
      of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' }),
      of.relu(),
      of.maxPool2d(),
      of.residual([
        of.conv2d({ filters: 8, kernel: 3, padding: 'same' }),
        of.relu(),
        of.conv2d({ filters: 8, kernel: 3, padding: 'same' }),
      ]),
      of.relu(),
      of.maxPool2d(),
      of.flatten(),
      of.dense(392, 10),
    ],
    { seed: 1 },
  );
  await m.fit(sub, { estimator: of.bp(), optimizer: of.adam({ lr: 1e-3 }), epochs: 1, batchSize: 32 });
  const acc = m.evaluate(evalSet).accuracy;
  t.ok(acc >= 0.7, `residual CNN + BP: ${(acc * 100).toFixed(2)}% >= 70%`);
  m.dispose();
});

t.test('a residual block that starts with dropout passes its skip gradient back (BP)', async (t) => {
  // Dropout at rate 1e-6 keeps (almost surely) every value, scaled by 1 / (1 - 1e-6): the block computes what the
  // same block without it computes, so BP's gradients must agree to ~1e-6 of their size. They did not while the
  // dropout unit's backward skipped the block's pending skip gradient (first layer off by a factor of 5).
  const build = (drop: boolean) =>
    of.sequential(
      [
        of.dense(5, 4),
        of.tanh(),
        of.residual(drop ? [of.dropout(1e-6), of.dense(4, 4)] : [of.dense(4, 4)]),
        of.dense(4, 3),
      ],
      { seed: 3 },
    );
  const a = build(true),
    b = build(false);
  const pa = a.parameters(),
    pb = b.parameters();
  pa.forEach((p, i) => pb[i]!.data.set(p.data));
  const batch = { x: randn(20, 4), y: Int32Array.from([0, 1, 2, 1]) };
  const ga = a.gradients(batch, { estimator: of.bp() }),
    gb = b.gradients(batch, { estimator: of.bp() });
  ga.forEach((g, i) => {
    const err = Array.from(g).reduce((m, v, j) => Math.max(m, Math.abs(v - gb[i]![j]!)), 0);
    const mag = Array.from(gb[i]!).reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    t.ok(err <= 1e-5 * mag, `${pa[i]!.name}: max abs diff ${err.toExponential(2)} (max ${mag.toExponential(2)})`);
  });
});
