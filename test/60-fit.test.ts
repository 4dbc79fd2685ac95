// End to end: the documented examples run, digits trains to the accuracy bars with BP and ULR,
// fit reports progress, cancels through AbortSignal, keeps the event loop free, trains several models at
// once, and is bit-reproducible for a seed whatever the thread count.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFile, spawn } from 'child_process';
import { promisify } from 'util';
import * as of from '../lib/index';

const { train, test } = of.datasets.digits();
const root = path.resolve(__dirname, '..', '..');
const bits = (m: of.Model) =>
  Buffer.concat(m.parameters().map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength)));

t.test('the digits data set: 10,000 real digits, deterministic 80/20 split', async (t) => {
  t.equal(train.rows + test.rows, 10000);
  t.equal(train.rows, 7996);
  t.same(train.shape, [784]);
  t.ok(
    train.x.every((v) => v >= 0 && v <= 1),
    'pixels in [0, 1]',
  );
  const counts = new Array(10).fill(0);
  for (const y of test.y) counts[y]++;
  t.ok(
    counts.every((c) => c > 150),
    `every class in the test split: ${counts.join(' ')}`,
  );
  t.equal(of.datasets.digits(), of.datasets.digits(), 'parsed once');
});

t.test('the sequential/fit @example runs', async (t) => {
  // Mirrors the @example of Model.fit in lib/model.ts.
  const model = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 1 });
  const history = await model.fit(train, {
    estimator: of.ulr({ copies: 8 }),
    epochs: 1,
    batchSize: 64,
    validation: test,
  });
  t.equal(history.epochs.length, 1);
  t.ok(
    history.epochs[0]!.valAccuracy! > 0.5,
    `one ULR epoch of a 64-unit MLP: ${(100 * history.epochs[0]!.valAccuracy!).toFixed(1)}%`,
  );
  t.same(history.history.valAccuracy, [history.epochs[0]!.valAccuracy]);
  model.dispose();
});

t.test('digits, 5 epochs, MLP 784-256-10, Adam 1e-3, batch 64: BP >= 92%, ULR K=32 >= 90%', async (t) => {
  const run = async (estimator: of.Estimator, seed: number) => {
    const model = of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed });
    const epochs: of.EpochLog[] = [];
    const h = await model.fit(train, {
      estimator,
      optimizer: of.adam({ lr: 1e-3 }),
      epochs: 5,
      batchSize: 64,
      validation: test,
      onEpochEnd: (e) => epochs.push(e),
    });
    const acc = model.evaluate(test).accuracy;
    t.equal(acc, h.epochs[4]!.valAccuracy, 'history reports the same validation accuracy');
    t.same(
      epochs.map((e) => e.epoch),
      [1, 2, 3, 4, 5],
      'onEpochEnd once per epoch',
    );
    t.ok(
      h.history.loss[4]! < h.history.loss[0]!,
      `training loss fell ${h.history.loss[0]!.toFixed(3)} -> ${h.history.loss[4]!.toFixed(3)}`,
    );
    model.dispose();
    return acc;
  };
  const bp = await run(of.bp(), 1);
  t.ok(bp >= 0.92, `bp: test accuracy ${(100 * bp).toFixed(2)}% (bar 92%)`);
  // ULR is stochastic in its gradient: the bar is on the mean of three seeds (each also >= 89.5%).
  const ulr = [
    await run(of.ulr({ copies: 32, sigma: 0.1 }), 1),
    await run(of.ulr({ copies: 32, sigma: 0.1 }), 2),
    await run(of.ulr({ copies: 32, sigma: 0.1 }), 3),
  ];
  const mean = ulr.reduce((a, b) => a + b) / ulr.length;
  t.ok(
    mean >= 0.9,
    `ulr K=32: mean test accuracy ${(100 * mean).toFixed(2)}% over seeds 1-3 (${ulr.map((a) => (100 * a).toFixed(2)).join(', ')}) (bar 90%)`,
  );
  t.ok(Math.min(...ulr) >= 0.895, 'every seed >= 89.5%');
});

t.test('progress, AbortSignal and a free event loop', async (t) => {
  const model = of.sequential([of.dense(784, 128), of.relu(), of.dense(128, 10)], { seed: 2 });
  const controller = new AbortController();
  const progress: of.Progress[] = [];
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const run = model.fit(train, {
    estimator: of.ulr({ copies: 32 }),
    epochs: 50,
    batchSize: 32,
    signal: controller.signal,
    onProgress: (p) => {
      progress.push(p);
      if (progress.length === 3) controller.abort();
    },
  });
  await t.rejects(run, { name: 'AbortError', code: 'ABORT_ERR' });
  clearInterval(timer);
  t.ok(ticks >= 10, `event loop ticked ${ticks} times during fit`);
  t.ok(progress.length >= 3, `${progress.length} progress events`);
  const p = progress[0]!;
  t.ok(
    p.step > 0 &&
      p.step <= p.steps &&
      p.epoch === 1 &&
      p.epochs === 50 &&
      Number.isFinite(p.loss) &&
      p.samplesPerSecond > 0,
    'progress fields',
  );
  t.ok(
    p.eta > 0 && Number.isFinite(p.eta) && p.eta > p.elapsed,
    `eta ${p.eta.toFixed(1)} s after ${p.elapsed.toFixed(2)} s of 50 epochs`,
  );
  t.ok(model.step > 0 && model.step < 50 * Math.ceil(train.rows / 32), `stopped after ${model.step} steps`);
  const acc = model.evaluate(test).accuracy;
  t.ok(Number.isFinite(acc), 'the model stays usable after cancel');
  await t.rejects(
    model.fit(train, { epochs: 1, signal: AbortSignal.abort() }),
    { code: 'ABORT_ERR' },
    'an aborted signal rejects at once',
  );
  const err = new Error('stop from callback');
  await t.rejects(
    model.fit(train, {
      epochs: 5,
      estimator: of.bp(),
      onProgress: () => {
        throw err;
      },
    }),
    err,
    'a throwing callback rejects fit with its error',
  );
  model.dispose();
});

t.test('predictAsync and evaluateAsync: same results, concurrent, guarded against fit and dispose', async (t) => {
  const model = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 4 });
  await model.fit(train, { estimator: of.bp(), epochs: 1, batchSize: 64 });
  const sync = model.predict(test);
  const all = await Promise.all(Array.from({ length: 12 }, () => model.predictAsync(test)));
  t.ok(
    all.every((a) => Buffer.from(a.buffer).equals(Buffer.from(sync.buffer))),
    '12 concurrent predictAsync equal predict',
  );
  t.same(await model.evaluateAsync(test), model.evaluate(test));
  const pending = model.predictAsync(test);
  t.throws(() => model.dispose(), { code: 'ERR_BUSY' }, 'no dispose while a prediction is pending');
  await t.rejects(model.fit(train, { epochs: 1 }), { code: 'ERR_BUSY' }, 'no fit while a prediction is pending');
  await pending;
  const running = model.fit(train, { estimator: of.bp(), epochs: 1, batchSize: 64 });
  await t.rejects(model.predictAsync(test), { code: 'ERR_BUSY' }, 'no predict while training');
  await running;
  await t.rejects(model.predictAsync(new Float32Array(5)), { code: 'ERR_SHAPE' });
  model.dispose();
});

t.test('same seed, any thread count, alone or concurrent: bit-identical parameters', async (t) => {
  const small = of.data.take(
    train,
    Array.from({ length: 600 }, (_, i) => (i * 13) % train.rows),
  );
  const trainOne = async (estimator: of.Estimator, threads: number) => {
    of.backend.setThreads(threads);
    const m = of.sequential([of.dense(784, 48), of.relu(), of.dense(48, 10)], { seed: 11 });
    const h = await m.fit(small, { estimator, epochs: 2, batchSize: 50 });
    const out = { bits: bits(m), loss: h.history.loss };
    m.dispose();
    return out;
  };
  for (const [name, est] of [
    ['bp', of.bp()],
    ['ulr', of.ulr({ copies: 16 })],
  ] as const) {
    const a = await trainOne(est, 1);
    const b = await trainOne(est, 2);
    const c = await trainOne(est, 2);
    t.ok(a.bits.equals(b.bits), `${name}: 1 thread vs 2 threads`);
    t.ok(b.bits.equals(c.bits), `${name}: two runs`);
    t.same(a.loss, c.loss, `${name}: identical loss curves`);
  }
  of.backend.setThreads(0);
  // Two models at once (one gets the pool, the other runs inline): same bits as alone.
  const alone = await trainOne(of.ulr({ copies: 16 }), 0);
  const m1 = of.sequential([of.dense(784, 48), of.relu(), of.dense(48, 10)], { seed: 11 });
  const m2 = of.sequential([of.dense(784, 48), of.relu(), of.dense(48, 10)], { seed: 12 });
  await Promise.all([
    m1.fit(small, { estimator: of.ulr({ copies: 16 }), epochs: 2, batchSize: 50 }),
    m2.fit(small, { estimator: of.bp(), epochs: 2, batchSize: 50 }),
  ]);
  t.ok(bits(m1).equals(alone.bits), 'concurrent training gives the same bits as training alone');
  m1.dispose();
  m2.dispose();
});

t.test('sign and step networks train with ULR', async (t) => {
  // XOR-like task on 4 points, hidden sign units: BP cannot train it, ULR can.
  const x = Float32Array.from([0, 0, 0, 1, 1, 0, 1, 1]);
  const y = Int32Array.from([0, 1, 1, 0]);
  const data = {
    x: Float32Array.from({ length: 400 * 2 }, (_, i) => x[i % 8]!),
    y: Int32Array.from({ length: 400 }, (_, i) => y[i % 4]!),
    rows: 400,
    shape: [2],
  };
  const m = of.sequential([of.dense(2, 16), of.sign(), of.dense(16, 2)], { seed: 5 });
  await m.fit(data, {
    estimator: of.ulr({ copies: 32, sigma: 0.3 }),
    optimizer: of.adam({ lr: 0.02 }),
    epochs: 20,
    batchSize: 20,
  });
  const acc = m.evaluate({ x, y, rows: 4, shape: [2] }).accuracy;
  t.equal(acc, 1, `XOR through sign units: accuracy ${acc}`);
  m.dispose();
});

t.test('IDX and CSV loaders', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-data-'));
  const images = Buffer.alloc(16 + 3 * 4);
  (images.writeUInt32BE(0x00000803, 0),
    images.writeUInt32BE(3, 4),
    images.writeUInt32BE(2, 8),
    images.writeUInt32BE(2, 12));
  for (let i = 0; i < 12; i++) images[16 + i] = i * 20;
  const labels = Buffer.from([0, 0, 8, 1, 0, 0, 0, 3, 2, 0, 1]);
  fs.writeFileSync(path.join(dir, 'img.idx'), images);
  fs.writeFileSync(path.join(dir, 'lab.idx'), labels);
  const d = of.data.loadIdx(path.join(dir, 'img.idx'), path.join(dir, 'lab.idx'));
  t.equal(d.rows, 3);
  t.same(d.shape, [2, 2]);
  t.same(Array.from(d.y), [2, 0, 1]);
  t.ok(Math.abs(d.x[11]! - 220 / 255) < 1e-7);
  fs.writeFileSync(path.join(dir, 'bad.idx'), images.subarray(0, 20));
  t.throws(() => of.data.loadIdx(path.join(dir, 'bad.idx'), path.join(dir, 'lab.idx')), {
    code: 'ERR_DATA',
    message: /expected 28 bytes/,
  });
  fs.writeFileSync(path.join(dir, 'd.csv'), 'label,a,b\n1,0.5,1.5\n0,2,3\n');
  const c = of.data.loadCsv(path.join(dir, 'd.csv'));
  t.same(Array.from(c.y), [1, 0]);
  t.same(Array.from(c.x), [0.5, 1.5, 2, 3]);
  fs.writeFileSync(path.join(dir, 'e.csv'), '1,0.5\n0,x\n');
  t.throws(() => of.data.loadCsv(path.join(dir, 'e.csv')), { code: 'ERR_DATA', message: /not a number/ });
  const p = of.data.permutation(100, 3);
  t.same(
    [...p].sort((a, b) => a - b),
    Array.from({ length: 100 }, (_, i) => i),
    'a permutation',
  );
  t.same(Array.from(of.data.permutation(100, 3)), Array.from(p), 'seeded');
  t.notSame(Array.from(of.data.permutation(100, 4)), Array.from(p));
  const sizes = [...of.data.batches(c, 1, { shuffle: true, seed: 1 })].map((b) => b.rows);
  t.same(sizes, [1, 1]);
  fs.rmSync(dir, { recursive: true });
});

t.test('Ctrl-C (SIGINT) stops the CLI cleanly: exit 130, the model saved and loadable', async (t) => {
  const saved = path.join(os.tmpdir(), `of-sigint-${process.pid}.ofm`);
  const child = spawn(
    process.execPath,
    [
      path.join(root, 'bin', 'oneforward.js'),
      'train',
      '--epochs',
      '1000',
      '--layers',
      '784-32-10',
      '--no-progress',
      '--save',
      saved,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d.toString();
    if (/epoch 1: loss/.test(err)) child.kill('SIGINT');
  });
  const code = await new Promise((r) => child.once('exit', (c) => r(c)));
  t.equal(code, 130, 'exit code 130');
  t.match(err, /interrupted; saved/);
  const m = await of.load(saved);
  t.ok(m.epochsRun >= 1 && m.step > 0, `saved after ${m.epochsRun} epochs, ${m.step} steps`);
  m.dispose();
  fs.rmSync(saved);
});

t.test('the CLI trains and reports test accuracy; errors exit 1', async (t) => {
  const run = promisify(execFile);
  const cli = path.join(root, 'bin', 'oneforward.js');
  const saved = path.join(os.tmpdir(), `of-cli-${process.pid}.ofm`);
  const ok = await run(process.execPath, [
    cli,
    'train',
    '--estimator',
    'bp',
    '--epochs',
    '1',
    '--layers',
    '784-32-10',
    '--no-progress',
    '--save',
    saved,
  ]);
  const acc = /test accuracy: (\d+\.\d+)%/.exec(ok.stdout);
  t.ok(acc, 'prints the test accuracy');
  t.match(ok.stderr, /epoch 1: loss/);
  const ev = await run(process.execPath, [cli, 'eval', '--model', saved]);
  t.match(
    ev.stdout,
    new RegExp(`accuracy ${acc![1]!.replace('.', '\\.')}% on 2004 rows`),
    'eval of the saved model reproduces the accuracy',
  );
  fs.rmSync(saved);
  const info = await run(process.execPath, [cli, 'info']);
  t.equal(JSON.parse(info.stdout).active, 'cpu');
  await t.rejects(run(process.execPath, [cli, 'train', '--estimator', 'magic', '--epochs', '1']), {
    code: 1,
    stderr: /unknown estimator 'magic'/,
  });
});
