// Bad input gets a typed error with a stable code, never a crash: wrong-typed calls into every native entry
// point first (better-sqlite3's habit), then the public API's validation, then runtime errors.
import t from 'tap';
import * as of from '../lib/index';
import { nat } from './helpers/native';

const layers = () => [of.dense(4, 8), of.relu(), of.dense(8, 3)];
const good = () => ({ x: new Float32Array(2 * 4).fill(0.5), y: Int32Array.from([0, 2]), rows: 2, shape: [4] });

t.test('native entry points reject wrong types without crashing', async (t) => {
  const m = new nat.NativeModel({ inputs: 4, layers: [{ type: 'dense', units: 3 }], loss: 'crossEntropy', seed: 1 });
  const anyM = m as unknown as Record<string, (...a: unknown[]) => unknown>;
  const junk: unknown[][] = [
    [],
    [1, 2, 3],
    ['x', {}, null],
    [new Float64Array(4), new Int32Array(1), 1],
    [new Float32Array(4), new Int32Array(1), -1],
  ];
  for (const method of ['predict', 'evaluate', 'gradients', 'trainStep', 'fit']) {
    for (const args of junk) {
      t.throws(
        () => anyM[method]!.apply(m, args),
        { name: /Error$/ },
        `${method}(${args.map((a) => typeof a).join(', ')}) throws`,
      );
    }
  }
  const anyB = nat as unknown as Record<string, (...a: unknown[]) => unknown>;
  for (const fn of ['gemm', 'noise', 'philox', 'setThreads', 'describeLayers']) {
    t.throws(() => anyB[fn]!('nope'), { code: 'ERR_CONFIG' }, `${fn}('nope') throws`);
  }
  t.throws(() => new nat.NativeModel({ inputs: 0, layers: [], loss: 'crossEntropy', seed: 1 }), { code: /ERR_/ });
  t.throws(
    () =>
      new nat.NativeModel({
        inputs: 4,
        layers: [{ type: 'activation', activation: 'relu' }],
        loss: 'crossEntropy',
        seed: 1,
      }),
    { code: 'ERR_CONFIG' },
  );
  t.throws(
    () =>
      nat.gemm(new Float32Array(1), new Float32Array(1), new Float32Array(1), 2, 2, 2, false, false, 1, 0, null, false),
    { code: 'ERR_SHAPE' },
  );
  m.dispose();
});

t.test('layer and model construction errors', async (t) => {
  t.throws(() => of.dense(0, 3), {
    name: 'ConfigError',
    code: 'ERR_CONFIG',
    message: /Expected positive integer for inputs but received 0 of type number/,
  });
  t.throws(() => of.dense(3, 2.5), { code: 'ERR_CONFIG', message: /units/ });
  t.throws(() => of.dense(3, 2, { bais: true } as never), { code: 'ERR_CONFIG', message: /Unknown option 'bais'/ });
  t.throws(() => of.activation('swish' as never), { code: 'ERR_CONFIG', message: /activation/ });
  t.throws(() => of.sequential([]), { code: 'ERR_CONFIG' });
  t.throws(() => of.sequential([of.dense(4, 8), of.dense(9, 3)]), {
    name: 'ShapeError',
    code: 'ERR_SHAPE',
    message: /expects 9 inputs but the previous layer gives 8/,
  });
  t.throws(() => of.sequential([of.relu(), of.dense(4, 3)]), {
    code: 'ERR_CONFIG',
    message: /first layer must be dense/,
  });
  t.throws(() => of.sequential([of.dense(4, 3), of.relu(), of.tanh()]), {
    code: 'ERR_CONFIG',
    message: /two activations/,
  });
  t.throws(() => of.sequential(layers(), { seed: -1 }), { code: 'ERR_CONFIG', message: /seed/ });
  t.throws(() => of.sequential(layers(), { loss: 'hinge' as never }), { code: 'ERR_CONFIG', message: /loss/ });
  t.throws(() => of.sequential([of.dense(4, 1)]), { code: 'ERR_CONFIG', message: /at least 2 outputs/ });
});

t.test('layer list errors name the layer as written, in the order of the layers', async (t) => {
  const d = () => of.dense(4, 4);
  t.throws(
    () => of.sequential([d(), of.residual([d(), of.relu(), of.tanh()]), of.dense(4, 2)]),
    { code: 'ERR_CONFIG', message: /^layers\[1\]\.layers\[2\]: two activations/ },
    'an inner layer by its path',
  );
  t.throws(
    () => of.sequential([d(), of.residual([of.dense(4, 3)]), of.dense(3, 2)]),
    { name: 'ShapeError', message: /^layers\[1\]: .*its input is \[4\] and its layers give \[3\]/ },
    'a block end with both shapes',
  );
  t.throws(
    () => of.sequential([of.dense(4, 6), of.dense(5, 3), of.relu(), of.tanh()]),
    { name: 'ShapeError', message: /^layers\[1\]: dense expects 5 inputs but the previous layer gives 6/ },
    'a declared size before a later error comes first',
  );
  t.throws(
    () => of.sequential([d(), of.residual([d(), of.dense(5, 4), of.relu(), of.relu()])]),
    { name: 'ShapeError', message: /^layers\[1\]\.layers\[1\]: dense expects 5/ },
    'also inside a block',
  );
  t.throws(
    () => of.sequential([d(), of.concat([d(), { type: 'dense2' } as never])]),
    { code: 'ERR_CONFIG', message: /for layers\[1\]\.layers\[1\]/ },
    'an unknown kind',
  );
  t.throws(() => of.sequential([of.concat([d()]), of.dense(8, 2)]), {
    code: 'ERR_CONFIG',
    message: /^layers\[0\]: a block cannot be the first layer/,
  });
});

t.test('estimator and optimizer option errors', async (t) => {
  t.throws(() => of.ulr({ copies: 1 }), { code: 'ERR_CONFIG', message: /copies/ });
  t.throws(() => of.ulr({ copies: 7, antithetic: true }), {
    code: 'ERR_CONFIG',
    message: /even copies with antithetic/,
  });
  t.doesNotThrow(() => of.ulr({ copies: 7 }));
  t.throws(() => of.ulr({ sigma: 0 }), { code: 'ERR_CONFIG', message: /sigma/ });
  t.throws(() => of.ulr({ sigma: -0.1 }), { code: 'ERR_CONFIG', message: /sigma/ });
  t.throws(() => of.ulr({ sigma: [0.1, NaN] }), { code: 'ERR_CONFIG', message: /sigma/ });
  t.throws(() => of.ulr({ copys: 4 } as never), { code: 'ERR_CONFIG', message: /Unknown option 'copys'/ });
  t.throws(() => of.ulr({ baseline: 'median' as never }), { code: 'ERR_CONFIG', message: /baseline/ });
  t.throws(() => of.adam({ lr: 0 }), { code: 'ERR_CONFIG', message: /lr/ });
  t.throws(() => of.sgd({ lr: -1 }), { code: 'ERR_CONFIG', message: /lr/ });
  t.throws(() => of.sgd({ momentum: 1 }), { code: 'ERR_CONFIG', message: /momentum/ });
  t.throws(() => of.adamw({ beta2: 1.5 }), { code: 'ERR_CONFIG', message: /beta2/ });
  t.throws(() => of.adam({ clipNorm: -1 }), { code: 'ERR_CONFIG', message: /clipNorm/ });
  const m = of.sequential([of.dense(4, 8), of.relu(), of.dense(8, 3), of.relu(), of.dense(3, 2)]);
  t.throws(
    () => m.gradients({ x: good().x, y: Int32Array.from([0, 1]) }, { estimator: of.ulr({ sigma: [0.1, 0.2] }) }),
    { code: 'ERR_CONFIG', message: /one per layer with parameters \(3\)/ },
  );
  m.dispose();
});

t.test('data errors: shapes, NaN, labels, batch size', async (t) => {
  const m = of.sequential(layers(), { seed: 1 });
  const d = good();
  const fit = (data: unknown, o: of.FitOptions = {}) => m.fit(data as of.Dataset, { epochs: 1, ...o });
  await t.rejects(fit({ ...d, x: new Float32Array(7) }), { name: 'ShapeError', code: 'ERR_SHAPE' });
  await t.rejects(fit({ ...d, x: new Float32Array(8), shape: [3] }), { code: 'ERR_SHAPE' });
  await t.rejects(fit({ ...d, y: Int32Array.from([0]) }), { code: 'ERR_SHAPE', message: /y has 1 values, expected 2/ });
  await t.rejects(fit({ ...d, y: Int32Array.from([0, 3]) }), {
    name: 'DataError',
    code: 'ERR_DATA',
    message: /label 3 at row 1 is out of range \[0, 3\)/,
  });
  await t.rejects(fit({ ...d, y: Int32Array.from([-1, 0]) }), { code: 'ERR_DATA', message: /label -1/ });
  const nanX = new Float32Array(8).fill(0.5);
  nanX[5] = NaN;
  await t.rejects(fit({ ...d, x: nanX }), { code: 'ERR_DATA', message: /non-finite value at row 1, column 1/ });
  const infX = new Float32Array(8).fill(0.5);
  infX[0] = Infinity;
  t.throws(() => m.evaluate({ ...d, x: infX }), { code: 'ERR_DATA' });
  await t.rejects(fit({ ...d, y: new Float32Array(2) }), { code: 'ERR_CONFIG', message: /Int32Array/ });
  await t.rejects(fit(d, { batchSize: 0 }), {
    code: 'ERR_CONFIG',
    message: /Expected positive integer for batchSize but received 0/,
  });
  await t.rejects(fit(d, { epochs: -1 }), { code: 'ERR_CONFIG' });
  await t.rejects(fit(d, { epochz: 1 } as never), { code: 'ERR_CONFIG', message: /Unknown option 'epochz'/ });
  await t.rejects(fit(d, { validation: { ...d, x: new Float32Array(3) } }), { code: 'ERR_SHAPE' });
  await t.rejects(fit(d, { estimator: { kind: 'magic' } as never }), { code: 'ERR_CONFIG' });
  t.throws(() => m.predict(new Float32Array(5)), { code: 'ERR_SHAPE' });
  t.throws(() => m.predict(new Float32Array(8), 3), { code: 'ERR_SHAPE' });
  // A direct native call with the same bad data is refused too (the native side re-checks).
  t.throws(() => m._native!.evaluate(d.x, Int32Array.from([0, 9]), 2), { code: 'ERR_DATA' });
  t.throws(() => m._native!.predict(d.x, 3), { code: 'ERR_SHAPE' });
  m.dispose();
});

t.test('runtime errors: divergence, disposed, busy', async (t) => {
  const m = of.sequential([of.dense(2, 4), of.relu(), of.dense(4, 2)], { seed: 3, loss: 'mse' });
  const data = {
    x: Float32Array.from([1e18, 2e18, -1e18, 3e18]),
    y: Float32Array.from([1, 0, 0, 1]),
    rows: 2,
    shape: [2],
  };
  const diverged: { reason: string; epoch: number; step: number }[] = [];
  await t.rejects(
    m.fit(data, { estimator: of.bp(), optimizer: of.sgd({ lr: 1 }), epochs: 3, onDiverged: (d) => diverged.push(d) }),
    {
      name: 'NumericError',
      code: 'ERR_NUMERIC',
      message: /non-finite loss at step \d+ \(seed 3\).*epoch \d+, batch \d+/,
    },
  );
  t.equal(diverged.length, 1, 'one diverged event');
  t.match(diverged[0]!, { reason: /non-finite loss/, epoch: Number, step: Number }, 'with the reason and where');
  const m3 = of.sequential([of.dense(2, 4), of.relu(), of.dense(4, 2)], { seed: 3, loss: 'mse' });
  const before = m3.parameters().map((p) => Float32Array.from(p.data));
  const seen: string[] = [];
  await t.rejects(
    m3.fit(
      { ...data, x: Float32Array.from([1, 2, -1, 3]) },
      { estimator: of.bp(), epochs: 1, maxGradNorm: 1e-9, onDiverged: (d) => seen.push(d.reason) },
    ),
    { code: 'ERR_NUMERIC', message: /exploding update: gradient norm .* > maxGradNorm/ },
  );
  t.equal(seen.length, 1, 'exploding update reported');
  t.ok(
    m3.parameters().every((p, i) => p.data.every((v, j) => v === before[i]![j])),
    'no update was applied',
  );
  m3.dispose();
  t.ok(
    m.parameters().every((p) => p.data.every(Number.isFinite)),
    'parameters stay finite after a refused step',
  );
  m.dispose();
  t.throws(() => m.predict(new Float32Array(2)), { name: 'DisposedError', code: 'ERR_DISPOSED' });
  t.doesNotThrow(() => m.dispose(), 'dispose is idempotent');

  const { train } = of.datasets.digits();
  const busy = of.sequential([of.dense(784, 32), of.relu(), of.dense(32, 10)]);
  const running = busy.fit(train, { estimator: of.ulr({ copies: 8 }), epochs: 1, batchSize: 16 });
  t.throws(() => busy.predict(train.x.subarray(0, 784)), { name: 'BusyError', code: 'ERR_BUSY' });
  t.throws(() => busy.dispose(), { code: 'ERR_BUSY' });
  await t.rejects(busy.fit(train, { epochs: 1 }), { code: 'ERR_BUSY' });
  await running;
  t.doesNotThrow(() => busy.predict(train.x.subarray(0, 784)), 'usable again after fit');
  busy.dispose();
});

t.test('errors are OneForwardError instances with the documented codes', async (t) => {
  const err = (() => {
    try {
      of.dense(-1, 1);
    } catch (e) {
      return e;
    }
  })();
  t.ok(err instanceof of.OneForwardError);
  t.ok(err instanceof of.ConfigError);
  t.ok(of.ERROR_CODES.includes((err as of.OneForwardError).code));
  const nativeErr = (() => {
    try {
      nat.setThreads(-5);
    } catch (e) {
      return e;
    }
  })();
  t.ok(nativeErr instanceof of.OneForwardError, 'native errors are instances of the registered classes');
});
