// What a Keras / tfjs user reaches for: model.summary() (counts checked against parameters(), shapes from the
// native layout of the layers), predictClass (the arg-max of predict; of.data.fromArrays: test/61), fit's validationSplit (the same run as the explicit split) and earlyStopping (stops
// exactly at its epoch; restoreBest puts back the best epoch's parameters bit for bit).
import t from 'tap';
import * as util from 'util';
import * as of from '../lib/index';
import { signTask } from './helpers/tasks';
import { topology } from '../lib/layers/topology';
import { nat } from './helpers/native';

const bits = (m: of.Model) =>
  Buffer.concat(m.parameters().map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength)));

const data = () => of.data.fromArrays(signTask().x, signTask().y);
const mlp = (seed = 1) => of.sequential([of.dense(2, 8), of.tanh(), of.dense(8, 2)], { seed });

// The table's rows between its rules: [index, layer, shape, params, trainable].
function rows(summary: string): string[][] {
  const lines = summary.split('\n');
  const rules = lines.flatMap((l, i) => (l.startsWith('─') ? [i] : []));
  return lines.slice(rules[1]! + 1, rules[2]).map((l) => l.trim().split(/\s{2,}/));
}
// Parameter counts per layer with parameters, from parameters(): dense0.weight + dense0.bias -> one layer.
function perLayer(m: of.Model): number[] {
  const sizes = new Map<string, number>();
  for (const p of m.parameters())
    sizes.set(p.name.split('.')[0]!, (sizes.get(p.name.split('.')[0]!) ?? 0) + p.data.length);
  return [...sizes.values()];
}
const fmt = (n: number) => n.toLocaleString('en-US');

t.test('summary(): one row per layer, counts that match parameters(), totals and bytes', async (t) => {
  const k = of.datasets.karate();
  const models: [string, of.Model][] = [
    ['mlp', of.sequential([of.dense(784, 64), of.relu(), of.dropout(0.2), of.dense(64, 10)], { seed: 1 })],
    [
      'cnn',
      of.sequential([
        of.conv2d({ inputShape: [8, 8, 1], filters: 4, kernel: 3, padding: 'same' }),
        of.relu(),
        of.maxPool2d(),
        of.residual([of.conv2d({ filters: 4, kernel: 3, padding: 'same' }), of.batchNorm()]),
        of.relu(),
        of.concat([of.conv2d({ filters: 2, kernel: 1, bias: false })]),
        of.groupNorm({ groups: 2 }),
        of.globalAvgPool(),
        of.dense(6, 3),
      ]),
    ],
    [
      'rnn',
      of.sequential([
        of.gru({ inputShape: [5, 3], units: 4, returnSequences: true }),
        of.layerNorm(),
        of.lstm({ units: 3, returnSequences: true }),
        of.rnn({ units: 2 }),
        of.dense(2, 2),
      ]),
    ],
    [
      'graph',
      of.sequential([
        of.graphConv({ graph: k.graph, units: 16, inputShape: [34, 34] }),
        of.relu(),
        of.graphConv({ graph: k.graph, units: 2 }),
      ]),
    ],
  ];
  for (const [name, m] of models) {
    const s = m.summary();
    const total = m.parameters().reduce((a, p) => a + p.data.length, 0);
    t.equal(total, m.parameterCount, `${name}: parameters() and parameterCount agree`);
    t.match(s, `Total params: ${fmt(total)} (`, `${name}: total ${total}`);
    t.match(s, `Trainable params: ${fmt(total)} (`, `${name}: all trainable`);
    t.match(s, 'Frozen params: 0 (0 B)');
    const table = rows(s);
    const withParams = table
      .filter((r) => r[4] === 'yes' || r[4] === 'frozen')
      .map((r) => Number(r[3]!.replace(/,/g, '')));
    t.same(withParams, perLayer(m), `${name}: each layer's count is its tensors' size`);
    t.equal(table.filter((r) => !r[0]!.includes('.')).length, m.layers.length, `${name}: one top-level row per layer`);
    t.equal(String(m), s, 'toString() is the summary');
    t.equal(util.inspect(m), s, 'util.inspect shows the summary');
  }
  const cnn = rows(models[1]![1].summary());
  t.same(
    cnn.map((r) => r[2]),
    [
      '[8, 8, 4]',
      '[8, 8, 4]',
      '[4, 4, 4]',
      '[4, 4, 4]',
      '[4, 4, 4]',
      '[4, 4, 4]',
      '[4, 4, 4]',
      '[4, 4, 6]',
      '[4, 4, 2]',
      '[4, 4, 6]',
      '[6]',
      '[3]',
    ],
    'output shapes',
  );
  t.same(
    cnn.map((r) => r[0]),
    ['0', '1', '2', '3', '3.0', '3.1', '4', '5', '5.0', '6', '7', '8'],
    'block layers numbered under their block',
  );
  t.match(cnn[0]![1], 'conv2d(4 filters, 3×3, same)');
  t.equal(cnn[3]![3], '156', 'a block row counts its inner layers (148 + 8)');
  t.match(models[0]![1].summary(), `Total params: 50,890 (198.8 KiB)`, 'float32 bytes: 50,890 × 4 = 203,560 B');
  t.same(
    rows(models[2]![1].summary()).map((r) => r[2]),
    ['[5, 4]', '[5, 4]', '[5, 3]', '[2]', '[2]'],
  );
  t.same(
    rows(models[3]![1].summary()).map((r) => r[2]),
    ['[34, 16]', '[34, 16]', '[34, 2]'],
  );
  for (const [, m] of models) m.dispose();
});

t.test('the native layout: tensors as parameters() names them, shapes of every kind, nothing allocated', async (t) => {
  const lists: of.Layer[][] = [
    [
      of.repeat(4, { inputs: 3 }),
      of.lif({ units: 5 }),
      of.gru({ units: 4, returnSequences: true }),
      of.layerNorm(),
      of.lstm({ units: 3, returnSequences: true }),
      of.timeMean(),
      of.dense(3, 2),
    ],
    [
      of.conv2d({ inputShape: [6, 6, 2], filters: 3, kernel: 3, padding: 'same', bias: false }),
      of.batchNorm(),
      of.avgPool2d(),
      of.concat([of.conv2d({ filters: 2, kernel: 1 })]),
      of.groupNorm({ groups: 5 }),
      of.flatten(),
      of.dense(45, 2),
    ],
  ];
  for (const layers of lists) {
    const m = of.sequential(layers);
    t.same(
      topology(layers).tensors,
      m.parameters().map((p) => ({ name: p.name, shape: p.shape })),
      `${layers.map((l) => l.type).join(', ')}: names and shapes`,
    );
    m.dispose();
  }
  t.same(
    topology(lists[0]!).perLayer.map((r) => r.output),
    [[4, 3], [4, 5], [4, 4], [4, 4], [4, 3], [3], [2]],
  );
  t.same(
    topology(lists[1]!).perLayer.map((r) => r.output),
    [[6, 6, 3], [6, 6, 3], [3, 3, 3], [3, 3, 5], [3, 3, 2], [3, 3, 5], [45], [2]],
  );
  const before = nat.allocStats(true);
  const big = topology([of.dense(1 << 15, 1 << 15), of.relu(), of.dense(1 << 15, 2)]); // 2^30 weights, 4 GiB of float32
  t.same(big.tensors[0], { name: 'dense0.weight', shape: [1 << 15, 1 << 15] });
  t.equal(nat.allocStats().peak, before.peak, 'no parameter slab allocated');
});

t.test('summary(): frozen layers and a disposed model', async (t) => {
  const m = of.sequential([of.dense(4, 8, { trainable: false }), of.relu(), of.dense(8, 8), of.relu(), of.dense(8, 3)]);
  let s = m.summary();
  t.same(
    rows(s).map((r) => r[4] ?? ''),
    ['frozen', '', 'yes', '', 'yes'],
  );
  t.match(s, 'Trainable params: 99 (396 B)');
  t.match(s, 'Frozen params: 40 (160 B)');
  m.freeze(2);
  s = m.summary();
  t.same(
    rows(s).map((r) => r[4] ?? ''),
    ['frozen', '', 'frozen', '', 'yes'],
  );
  t.match(s, 'Trainable params: 27 (108 B)');
  const before = rows(s);
  m.dispose();
  t.match(m.summary(), /^Model: crossEntropy loss, seed 0, disposed/, 'a disposed model still describes its layers');
  t.match(`${m}`, 'Total params: 139');
  t.same(rows(m.summary()), before, 'after dispose the frozen layers still show as frozen');
  t.match(m.summary(), 'Trainable params: 27 (108 B)');
  t.match(m.summary(), 'Frozen params: 112 (448 B)');

  // A frozen layer given at construction, and a freeze() of layers that carry no trainable flag (conv2d).
  const given = of.sequential([of.dense(4, 8, { trainable: false }), of.relu(), of.dense(8, 3)]);
  given.dispose();
  t.same(
    rows(given.summary()).map((r) => r[4] ?? ''),
    ['frozen', '', 'yes'],
    'trainable: false, after dispose',
  );
  t.match(given.summary(), 'Frozen params: 40 (160 B)');
  const cnn = of.sequential([
    of.conv2d({ inputShape: [4, 4, 1], filters: 2, kernel: 3 }),
    of.relu(),
    of.flatten(),
    of.dense(8, 2),
  ]);
  cnn.freeze(1);
  const frozenCnn = cnn.summary();
  t.match(frozenCnn, 'Frozen params: 20 (80 B)', 'conv2d 2 × (3 × 3 × 1) + 2 biases');
  cnn[Symbol.dispose]();
  t.throws(() => cnn.parameters(), { code: 'ERR_DISPOSED' }, '[Symbol.dispose]() disposes');
  t.same(rows(cnn.summary()), rows(frozenCnn), 'freeze() of a conv model, after dispose');
  t.match(cnn.summary(), 'Frozen params: 20 (80 B)');
});

t.test('predictClass is the arg-max of predict', async (t) => {
  const d = data();
  const m = mlp();
  await m.fit(d, { estimator: of.bp(), epochs: 3, batchSize: 8 });
  const logits = m.predict(d);
  const want = Int32Array.from({ length: d.rows }, (_, r) => (logits[2 * r + 1]! > logits[2 * r]! ? 1 : 0));
  t.same(m.predictClass(d), want, 'from a Dataset');
  t.same(m.predictClass(d.x), want, 'from a Float32Array');
  t.same(m.predictClass(d.x.subarray(0, 6), 3), want.subarray(0, 3), 'with rows');
  t.throws(() => m.predictClass(new Float32Array(3)), { code: 'ERR_SHAPE' });
  m.dispose();

  // Per-position classifiers: one class per node.
  const k = of.datasets.karate();
  const g = of.sequential(
    [
      of.graphConv({ graph: k.graph, units: 4, inputShape: [34, 34] }),
      of.relu(),
      of.graphConv({ graph: k.graph, units: 2 }),
    ],
    { seed: 3 },
  );
  const out = g.predict(k.train);
  const cls = g.predictClass(k.train);
  t.equal(cls.length, 34);
  t.ok(
    cls.every((c, i) => c === (out[2 * i + 1]! > out[2 * i]! ? 1 : 0)),
    'per node',
  );
  g.dispose();
});

t.test('validationSplit: the last rows validate, as the explicit split does', async (t) => {
  const d = data();
  const opts = { estimator: of.bp(), optimizer: of.adam({ lr: 1e-2 }), epochs: 3, batchSize: 8 };
  const a = mlp(),
    b = mlp();
  const ha = await a.fit(d, { ...opts, validationSplit: 0.25 });
  const idx = (from: number, to: number) => Int32Array.from({ length: to - from }, (_, i) => from + i);
  const hb = await b.fit(of.data.take(d, idx(0, 48)), { ...opts, validation: of.data.take(d, idx(48, 64)) });
  t.same(ha.history, hb.history, 'the same losses and validation numbers');
  t.ok(bits(a).equals(bits(b)), 'bit-identical parameters');
  t.equal(ha.epochs[0]!.steps, 6, '48 training rows in batches of 8');
  // Keras' split point: floor(rows * (1 - split)); 10 rows at 0.3 -> 7 train, 3 validate
  const ten = of.data.fromArrays(signTask(10).x, signTask(10).y);
  const h = await a.fit(ten, { estimator: of.bp(), batchSize: 1, validationSplit: 0.3 });
  t.equal(h.epochs[0]!.steps, 7);

  await t.rejects(a.fit(d, { validationSplit: 0.2, validation: d }), {
    code: 'ERR_CONFIG',
    message: /validation or validationSplit, not both/,
  });
  for (const bad of [0, 1, -0.5, 1.5, NaN, '0.2']) {
    await t.rejects(
      a.fit(d, { validationSplit: bad as number }),
      { code: 'ERR_CONFIG', message: /number in \(0, 1\) for validationSplit/ },
      `validationSplit ${String(bad)}`,
    );
  }
  await t.rejects(a.fit(ten, { validationSplit: 0.95 }), {
    code: 'ERR_CONFIG',
    message: /leaves 0 to train on and 10 to validate/,
  });
  await t.rejects(a.fit(ten, { validationSplit: 1e-17 }), {
    code: 'ERR_CONFIG',
    message: /leaves 10 to train on and 0 to validate/,
  });
  a.dispose();
  b.dispose();
});

t.test('earlyStopping: stops exactly at the epoch without improvement; fit resolves', async (t) => {
  const d = data();
  // A plateau: a learning rate too small to move the loss by minDelta.
  const plateau = { estimator: of.bp(), optimizer: of.sgd({ lr: 1e-9 }), epochs: 30, batchSize: 8 };
  const m = mlp();
  const seen: number[] = [];
  const h = await m.fit(d, {
    ...plateau,
    onEpochEnd: (e) => seen.push(e.epoch),
    earlyStopping: { monitor: 'loss', patience: 2, minDelta: 1e-4 },
  });
  t.same(
    h.epochs.map((e) => e.epoch),
    [1, 2, 3],
    'epoch 1 is the best; 2 and 3 do not improve: patience 2 stops after 3',
  );
  t.equal(h.stoppedEpoch, 3);
  t.equal(h.bestEpoch, 1);
  t.same(seen, [1, 2, 3], 'onEpochEnd for the epochs that ran');
  t.equal(m.epochsRun, 3, 'no step of a fourth epoch ran');
  t.equal(m.step, 3 * 8, '8 steps an epoch');
  m.dispose();

  const p0 = mlp();
  const h0 = await p0.fit(d, { ...plateau, earlyStopping: { monitor: 'loss', minDelta: 1e-4 } });
  t.equal(h0.stoppedEpoch, 2, 'patience 0 (the default) stops at the first epoch without improvement');
  p0.dispose();

  // Training that keeps improving runs every epoch.
  const r = mlp();
  const hr = await r.fit(d, {
    estimator: of.bp(),
    optimizer: of.adam({ lr: 1e-2 }),
    epochs: 4,
    batchSize: 8,
    shuffle: false,
    earlyStopping: { monitor: 'loss' },
  });
  t.equal(hr.epochs.length, 4);
  t.equal(hr.stoppedEpoch, undefined, 'no stoppedEpoch when it did not stop');
  r.dispose();
});

t.test('earlyStopping: the weights are those of the stopping epoch, or of the best with restoreBest', async (t) => {
  const d = data();
  // minDelta far above any change: epoch 1 stays the best while the weights keep moving.
  const opts = { estimator: of.bp(), optimizer: of.adam({ lr: 1e-2 }), epochs: 20, batchSize: 8 };
  const stopped = mlp();
  const hs = await stopped.fit(d, { ...opts, earlyStopping: { monitor: 'loss', patience: 3, minDelta: 10 } });
  t.equal(hs.stoppedEpoch, 4);
  const plain4 = mlp();
  await plain4.fit(d, { ...opts, epochs: 4 });
  t.ok(bits(stopped).equals(bits(plain4)), 'without restoreBest: bit-identical to 4 plain epochs');

  const restored = mlp();
  const hr = await restored.fit(d, {
    ...opts,
    earlyStopping: { monitor: 'loss', patience: 3, minDelta: 10, restoreBest: true },
  });
  t.equal(hr.stoppedEpoch, 4);
  t.equal(hr.bestEpoch, 1);
  const plain1 = mlp();
  await plain1.fit(d, { ...opts, epochs: 1 });
  t.ok(bits(restored).equals(bits(plain1)), 'restoreBest: bit-identical to 1 plain epoch');
  t.notOk(bits(plain1).equals(bits(plain4)), 'and the epochs in between did change the weights');

  // The default monitor with validation data is valLoss; the best epoch is its minimum.
  const v = mlp(4);
  const hv = await v.fit(d, {
    ...opts,
    epochs: 8,
    validationSplit: 0.25,
    earlyStopping: { patience: 8, restoreBest: true },
  });
  const vl = hv.history.valLoss;
  t.equal(hv.bestEpoch, vl.indexOf(Math.min(...vl)) + 1, `best valLoss at epoch ${hv.bestEpoch}`);
  t.equal(
    v.evaluate(
      of.data.take(
        d,
        Int32Array.from({ length: 16 }, (_, i) => 48 + i),
      ),
    ).loss,
    Math.min(...vl),
    'the restored weights give the best valLoss',
  );
  for (const m of [stopped, plain4, restored, plain1, v]) m.dispose();
});

t.test('earlyStopping: the user abort still rejects; option errors', async (t) => {
  const d = data();
  const m = mlp();
  const controller = new AbortController();
  await t.rejects(
    m.fit(d, {
      estimator: of.bp(),
      epochs: 10,
      signal: controller.signal,
      onEpochEnd: () => controller.abort(),
      earlyStopping: { monitor: 'loss', minDelta: 10 },
    }),
    { name: 'AbortError', code: 'ABORT_ERR' },
  );
  const bad: [unknown, RegExp][] = [
    [
      { patient: 2 },
      /Unknown option 'patient' for earlyStopping; valid options: monitor, patience, minDelta, restoreBest/,
    ],
    [{ monitor: 'val_loss' }, /'valLoss' \| 'loss' \| 'valAccuracy' \| 'accuracy' for earlyStopping.monitor/],
    [{ monitor: 'valLoss' }, /monitors valLoss but fit has no validation data/],
    [{ patience: -1 }, /integer >= 0 for earlyStopping.patience/],
    [{ patience: 1.5 }, /earlyStopping.patience/],
    [{ minDelta: NaN }, /finite number >= 0 for earlyStopping.minDelta/],
    [{ restoreBest: 'yes' }, /boolean for earlyStopping.restoreBest/],
    [true, /plain object for earlyStopping options/],
  ];
  const before = m.step;
  for (const [es, message] of bad) {
    await t.rejects(
      m.fit(d, { earlyStopping: es as of.EarlyStoppingOptions }),
      { name: 'ConfigError', code: 'ERR_CONFIG', message },
      JSON.stringify(es),
    );
  }
  const mse = of.sequential([of.dense(2, 2)], { loss: 'mse' });
  await t.rejects(mse.fit(of.data.fromArrays([[1, 2]], [[1, 2]]), { earlyStopping: { monitor: 'accuracy' } }), {
    code: 'ERR_CONFIG',
    message: /mse model reports no accuracy/,
  });
  t.equal(m.step, before, 'a rejected call trains nothing');
  m.dispose();
  mse.dispose();
});

t.test(
  'of.mlp: dense layers through the widths, the activation between them, the same model as written out',
  async (t) => {
    const a = of.sequential(of.mlp([2, 8, 5, 2], 'tanh'), { seed: 3 });
    const b = of.sequential([of.dense(2, 8), of.tanh(), of.dense(8, 5), of.tanh(), of.dense(5, 2)], { seed: 3 });
    t.same(
      a.layers.map((l) => l.type),
      ['dense', 'activation', 'dense', 'activation', 'dense'],
    );
    t.ok(bits(a).equals(bits(b)), 'the same parameters bit for bit');
    t.same(of.mlp([3, 4]), [of.dense(3, 4)], 'two widths: one dense layer, no activation');
    t.same(of.mlp([3, 4, 2])[1], of.relu(), 'relu by default');
    for (const bad of [[3], [3, 0], [3, 2.5], 'x', undefined] as unknown[])
      t.throws(() => of.mlp(bad as number[]), { code: 'ERR_CONFIG' }, `widths ${JSON.stringify(bad)}`);
    t.throws(() => of.mlp([3, 4], 'nope' as of.ActivationName), { code: 'ERR_CONFIG' }, 'an unknown activation');
    a.dispose();
    b.dispose();
  },
);
