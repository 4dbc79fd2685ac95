// of.data.fromArrays: rows, flat values with a shape, typed arrays, one-hot rows as class indices, values as
// targets (round trips), and every error by class, code and message.
import t from 'tap';
import * as of from '../lib/index';
import { signTask } from './helpers/tasks';

const mlp = (seed = 1) => of.sequential([of.dense(2, 8), of.tanh(), of.dense(8, 2)], { seed });

t.test('fromArrays: rows, flat values with a shape, typed arrays', async (t) => {
  const d = of.data.fromArrays(
    [
      [1, 2, 3],
      [4, 5, 6],
    ],
    [1, 0],
  );
  t.same(d.shape, [3]);
  t.equal(d.rows, 2);
  t.ok(d.x instanceof Float32Array && d.y instanceof Int32Array);
  t.same(Array.from(d.x), [1, 2, 3, 4, 5, 6]);
  t.same(Array.from(d.y), [1, 0]);

  const img = of.data.fromArrays([0, 1, 2, 3, 4, 5, 6, 7], Int32Array.from([2, 0]), { shape: [2, 2, 1] });
  t.same(img.shape, [2, 2, 1]);
  t.equal(img.rows, 2);
  const xs = new Float32Array([1, 2, 3, 4]);
  t.equal(of.data.fromArrays(xs, [0, 1], { shape: [2] }).x, xs, 'a Float32Array x is used as is');
  t.same(
    Array.from(of.data.fromArrays([Float64Array.of(1, 2), Uint8Array.of(3, 4)], [0, 1]).x),
    [1, 2, 3, 4],
    'rows as typed arrays',
  );
  t.same(of.data.fromArrays([[1, 2]], [5], { shape: [2, 1] }).shape, [2, 1], 'a shape for rows');
  t.ok(
    of.data.fromArrays([[1], [2]], new Float64Array([0.5, 1.5])).y instanceof Float32Array,
    'a float typed y is targets',
  );
});

t.test('fromArrays: one-hot rows become class indices; values stay targets', async (t) => {
  const { x, y } = signTask(8);
  const hot = y.map((c) => (c === 1 ? [0, 1] : [1, 0]));
  const d = of.data.fromArrays(x, hot);
  t.ok(d.y instanceof Int32Array, 'one-hot rows -> Int32Array');
  t.same(Array.from(d.y), y);
  t.same(
    Array.from(of.data.fromArrays(x, Float32Array.from(hot.flat()), { labels: 'oneHot' }).y),
    y,
    'flat one-hot with labels: oneHot',
  );
  t.same(
    Array.from(of.data.fromArrays([[0], [0]], [[2], [1]], { labels: 'index' }).y),
    [2, 1],
    'one-column rows as indices',
  );

  // fit rejects one-hot targets given as floats for a crossEntropy model, and says how to convert them
  const m = mlp();
  const raw = { x: d.x, y: Float32Array.from(hot.flat()), rows: 8, shape: [2] };
  await t.rejects(m.fit(raw, { estimator: of.bp() }), {
    code: 'ERR_CONFIG',
    message: /Int32Array of class labels.*labels: 'oneHot'/,
  });
  const h = await m.fit(d, { estimator: of.bp(), epochs: 1, batchSize: 4 });
  t.equal(h.epochs.length, 1, 'fromArrays one-hot labels train');
  m.dispose();

  const reg = of.data.fromArrays(
    x,
    x.map(([a, b]) => [a! + b!, a! - b!]),
  );
  t.ok(reg.y instanceof Float32Array, 'rows that are not one-hot are targets');
  t.equal(reg.y.length, 16);
  const forced = of.data.fromArrays(
    [[1], [2]],
    [
      [1, 0],
      [0, 1],
    ],
    { labels: 'values' },
  );
  t.same(Array.from(forced.y), [1, 0, 0, 1], 'labels: values keeps one-hot-looking rows as floats');
  const scalar = of.data.fromArrays([[1], [2]], [0.25, 1.5], { labels: 'values' });
  t.same(Array.from(scalar.y), [0.25, 1.5]);
  const mse = of.sequential([of.dense(1, 4), of.tanh(), of.dense(4, 1)], { loss: 'mse', seed: 1 });
  t.equal(mse.evaluate(scalar).accuracy, 0, 'values train an mse model');
  mse.dispose();
});

t.test(
  'fromArrays: rows nested deeper (tfjs arraySync() of images) and float class indices (dataSync())',
  async (t) => {
    // Two 3×2×1 images: value (r, i, j) = 100 r + 10 i + j, so the flat order is checked, not only the count.
    const images = [0, 1].map((r) => [0, 1, 2].map((i) => [0, 1].map((j) => [100 * r + 10 * i + j])));
    const d = of.data.fromArrays(images, [1, 0]);
    t.same(d.shape, [3, 2, 1], 'the row shape from the nesting [3][2][1]');
    t.equal(d.rows, 2);
    t.same(Array.from(d.x), [0, 1, 10, 11, 20, 21, 100, 101, 110, 111, 120, 121], 'flattened row-major');
    t.same(
      of.data.fromArrays(
        [
          [
            [1, 2],
            [3, 4],
          ],
        ],
        [0],
      ).shape,
      [2, 2],
      'number[][][] -> shape [2, 2]',
    );
    t.same(
      of.data.fromArrays([[Float32Array.of(1, 2), Float32Array.of(3, 4)]], [0]).shape,
      [2, 2],
      'rows of typed arrays',
    );
    t.same(of.data.fromArrays(images, [1, 0], { shape: [6] }).shape, [6], 'an explicit shape of as many values wins');
    const conv = of.sequential(
      [of.conv2d({ inputShape: [3, 2, 1], filters: 2, kernel: 2 }), of.relu(), of.flatten(), of.dense(4, 2)],
      { seed: 1 },
    );
    t.equal(conv.predict(d).length, 4, 'a conv2d model reads the inferred image shape');
    conv.dispose();

    const shapeErr = { name: 'ShapeError', code: 'ERR_SHAPE' };
    const ragged = images.map((img) => img.map((row) => row.map((px) => [...px])));
    ragged[1]![2]![1] = [5, 6];
    t.throws(
      () => of.data.fromArrays(ragged, [1, 0]),
      { ...shapeErr, message: /x\[1\]\[2\]\[1\] has 2 values but x\[0\]\[0\]\[0\] has 1/ },
      'ragged innermost',
    );
    t.throws(
      () =>
        of.data.fromArrays(
          [
            [
              [1, 2],
              [3, 4],
            ],
            [[1, 2]],
          ],
          [0, 1],
        ),
      { ...shapeErr, message: /x\[1\] has 1 values but x\[0\] has 2/ },
    );
    t.throws(
      () =>
        of.data.fromArrays(
          [
            [
              [1, 2],
              [3, 4],
            ],
            [[1, 2], 3],
          ] as never,
          [0, 1],
        ),
      { ...shapeErr, message: /x\[1\]\[1\] is a number but x\[0\]\[0\] is an array/ },
    );
    t.throws(
      () =>
        of.data.fromArrays(
          [
            [
              [1, 2],
              [3, 4],
            ],
            [
              [1, 2],
              [3, [4]],
            ],
          ] as never,
          [0, 1],
        ),
      { ...shapeErr, message: /x\[1\]\[1\]\[1\] is an array but x\[0\]\[0\]\[0\] is a number/ },
    );
    t.throws(
      () =>
        of.data.fromArrays(
          [
            [
              [1, 2],
              [3, NaN],
            ],
          ],
          [0],
        ),
      { name: 'DataError', code: 'ERR_DATA', message: /x\[0\]\[1\]\[1\] is NaN/ },
      'the full path of a non-finite value',
    );
    t.throws(
      () =>
        of.data.fromArrays(
          [
            [
              [1, 2],
              [3, 'a'],
            ],
          ] as never,
          [0],
        ),
      { name: 'DataError', message: /x\[0\]\[1\]\[1\] is not a number \(string\)/ },
    );
    const loop: unknown[] = [];
    loop.push(loop);
    t.throws(
      () => of.data.fromArrays([loop] as never, [0]),
      { ...shapeErr, message: /nested deeper than 32/ },
      'an array that contains itself',
    );

    // Class indices held as floats, as tfjs labels.dataSync() gives them: targets by default, and fit says how to fix it.
    const x = [
      [0, 0],
      [0, 1],
      [1, 0],
      [1, 1],
    ];
    const floatY = new Float32Array([0, 1, 1, 0]);
    const asTargets = of.data.fromArrays(x, floatY);
    t.ok(asTargets.y instanceof Float32Array);
    const m = mlp();
    await t.rejects(m.fit(asTargets, { estimator: of.bp() }), {
      code: 'ERR_CONFIG',
      message:
        /Expected Int32Array of class labels \(crossEntropy loss\) for train\.y but received a Float32Array.*of\.data\.fromArrays\(x, y, \{ labels: 'index' \}\) or Int32Array\.from\(y\)/,
    });
    const fixed = of.data.fromArrays(x, floatY, { labels: 'index' });
    t.same(Array.from(fixed.y), [0, 1, 1, 0]);
    t.ok(fixed.y instanceof Int32Array, "labels: 'index' reads float class indices");
    t.equal((await m.fit(fixed, { estimator: of.bp(), epochs: 1, batchSize: 4 })).epochs.length, 1, 'and they train');
    m.dispose();
  },
);

t.test('fromArrays: errors by class, code and message', async (t) => {
  const shape = { name: 'ShapeError', code: 'ERR_SHAPE' };
  const dataErr = { name: 'DataError', code: 'ERR_DATA' };
  t.throws(() => of.data.fromArrays([[1, 2], [3, 4], [5]], [0, 1, 0]), {
    ...shape,
    message: /x\[2\] has 1 values but x\[0\] has 2/,
  });
  t.throws(
    () =>
      of.data.fromArrays(
        [
          [1, 2],
          [NaN, 4],
        ],
        [0, 1],
      ),
    { ...dataErr, message: /x\[1\]\[0\] is NaN/ },
  );
  t.throws(() => of.data.fromArrays([1, Infinity], [0], { shape: [2] }), { ...dataErr, message: /x\[1\] is Infinity/ });
  t.throws(
    () => of.data.fromArrays([[1e39]], [0]),
    { ...dataErr, message: /x\[0\]\[0\] is Infinity/ },
    'beyond float32',
  );
  t.throws(() => of.data.fromArrays([[1], [2]], [0, 0.5]), {
    ...dataErr,
    message: /y\[1\] = 0.5 is not a class index.*labels: 'values'/,
  });
  t.throws(() => of.data.fromArrays([[1], [2]], [0, -1]), { ...dataErr, message: /y\[1\] = -1 is not a class index/ });
  t.throws(() => of.data.fromArrays([[1], [2]], Int32Array.of(0, -3)), { ...dataErr, message: /y\[1\] = -3/ });
  t.throws(
    () =>
      of.data.fromArrays(
        [[1], [2]],
        [
          [0, 1],
          [1, 1],
        ],
        { labels: 'oneHot' },
      ),
    { ...dataErr, message: /y\[1\] is not one-hot \(\[1, 1\]\)/ },
  );
  t.throws(
    () =>
      of.data.fromArrays(
        [[1], [2]],
        [
          [0, 1],
          [NaN, 0],
        ],
      ),
    { ...dataErr, message: /y\[1\]\[0\] is NaN/ },
  );
  t.throws(() => of.data.fromArrays([[1], [2], [3], [4]], [0, 1, 0]), {
    ...shape,
    message: /y has 3 values but x has 4 rows/,
  });
  t.throws(() => of.data.fromArrays([[1], [2]], [[1, 0]]), { ...shape, message: /y has 1 rows but x has 2 rows/ });
  t.throws(
    () =>
      of.data.fromArrays(
        [[1], [2]],
        [
          [0, 1],
          [1, 0],
        ],
        { labels: 'index' },
      ),
    { ...shape, message: /2 values per row/ },
  );
  t.throws(() => of.data.fromArrays([1, 2, 3], [0]), { ...shape, message: /x is flat.*options.shape/ });
  t.throws(() => of.data.fromArrays([1, 2, 3], [0], { shape: [2] }), {
    ...shape,
    message: /not a whole number of rows/,
  });
  t.throws(() => of.data.fromArrays([[1, 2]], [0], { shape: [3] }), {
    ...shape,
    message: /holds 3 values but the rows of x have 2/,
  });
  t.throws(() => of.data.fromArrays([[1, 2]], [0], { shapes: [2] } as never), {
    code: 'ERR_CONFIG',
    message: /Unknown option 'shapes' for fromArrays/,
  });
  t.throws(() => of.data.fromArrays([[1, 2]], [0], { labels: 'onehot' } as never), {
    code: 'ERR_CONFIG',
    message: /'index' \| 'oneHot' \| 'values'/,
  });
  t.throws(() => of.data.fromArrays([[1, 2]], [0], { shape: [0] }), { code: 'ERR_CONFIG', message: /shape/ });
  t.throws(() => of.data.fromArrays([], []), { code: 'ERR_CONFIG', message: /non-empty/ });
  t.throws(() => of.data.fromArrays('1,2' as never, [0]), { code: 'ERR_CONFIG', message: /for x/ });
  t.throws(() => of.data.fromArrays([[1], 'a'] as never, [0, 1]), { code: 'ERR_CONFIG', message: /x\[1\]/ });
  t.throws(() => of.data.fromArrays([[1]], { 0: 1 } as never), { code: 'ERR_CONFIG', message: /for y/ });
  t.throws(() => of.data.fromArrays([[1]], BigInt64Array.of(1n) as never), { code: 'ERR_CONFIG', message: /for y/ });
});
