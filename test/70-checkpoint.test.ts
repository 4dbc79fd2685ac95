// Checkpoints: round trip, bit-identical resume (after whole epochs, from a save in onEpochEnd, after a cancel
// mid-epoch), atomic replacement, and rejection of truncated, corrupted, wrong-version and hostile files with
// ERR_CHECKPOINT.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-ckpt-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const { train, test } = of.datasets.digits();
const small = of.data.take(
  train,
  Array.from({ length: 800 }, (_, i) => (i * 7) % train.rows),
);
const bits = (m: of.Model) =>
  Buffer.concat(m.parameters().map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength)));
const build = () => of.sequential([of.dense(784, 32), of.leakyRelu({ alpha: 0.05 }), of.dense(32, 10)], { seed: 21 });
const fitOpts = { estimator: of.ulr({ copies: 8 }), optimizer: of.adam({ lr: 2e-3 }), batchSize: 40 };

t.test('save and load round-trip parameters, optimizer state and counters', async (t) => {
  const m = build();
  await m.fit(small, { ...fitOpts, epochs: 1 });
  const file = path.join(dir, 'a.ofm');
  await m.save(file);
  const m2 = await of.load(file);
  t.ok(bits(m2).equals(bits(m)), 'parameters bit-identical');
  t.same(m2.layers, m.layers);
  t.equal(m2.step, m.step);
  t.equal(m2.epochsRun, 1);
  t.same(m2._native!.exportState(), m._native!.exportState(), 'optimizer moments and counters');
  t.same(Array.from(m2.predict(test.x.subarray(0, 784 * 4))), Array.from(m.predict(test.x.subarray(0, 784 * 4))));
  const fresh = of.sequential([of.dense(3, 2)], { seed: 1, loss: 'mse' });
  await fresh.save(path.join(dir, 'fresh.ofm'));
  const f2 = await of.load(path.join(dir, 'fresh.ofm'));
  t.equal(f2.loss, 'mse');
  t.same(f2._native!.exportState().m, null, 'no optimizer state before the first step');
  for (const x of [m, m2, fresh, f2]) x.dispose();
});

t.test('resume after whole epochs is bit-identical to an uninterrupted run', async (t) => {
  const straight = build();
  await straight.fit(small, { ...fitOpts, epochs: 3 });
  const first = build();
  await first.fit(small, { ...fitOpts, epochs: 1 });
  const file = path.join(dir, 'b.ofm');
  await first.save(file);
  const resumed = await of.load(file);
  const h = await resumed.fit(small, { ...fitOpts, epochs: 3, resume: true });
  t.same(
    h.epochs.map((e) => e.epoch),
    [2, 3],
    'epochs 2 and 3 ran',
  );
  t.ok(bits(resumed).equals(bits(straight)), 'same parameters as 3 uninterrupted epochs');
  // a checkpoint written from onEpochEnd (training waits while save takes its snapshot) resumes the same way
  const saving = build();
  const epochFile = path.join(dir, 'b-epoch1.ofm');
  await saving.fit(small, {
    ...fitOpts,
    epochs: 3,
    onEpochEnd: (e) => (e.epoch === 1 ? saving.save(epochFile) : undefined),
  });
  t.ok(bits(saving).equals(bits(straight)), 'saving in onEpochEnd does not change training');
  const fromEpoch = await of.load(epochFile);
  t.equal(fromEpoch.epochsRun, 1, 'the file saved in onEpochEnd holds epoch 1');
  await fromEpoch.fit(small, { ...fitOpts, epochs: 3, resume: true });
  t.ok(bits(fromEpoch).equals(bits(straight)), 'and resumes to the same parameters');
  for (const x of [straight, first, resumed, saving, fromEpoch]) x.dispose();
});

t.test('cancel mid-epoch, save, load, resume: bit-identical', async (t) => {
  // Slow enough steps that the first progress event (~100 ms) comes mid-epoch.
  const opts = { estimator: of.ulr({ copies: 32 }), optimizer: of.adam({ lr: 1e-3 }), batchSize: 16 };
  const net = () => of.sequential([of.dense(784, 128), of.relu(), of.dense(128, 10)], { seed: 5 });
  const straight = net();
  await straight.fit(train, { ...opts, epochs: 2 });
  const m = net();
  const ac = new AbortController();
  await t.rejects(m.fit(train, { ...opts, epochs: 2, signal: ac.signal, onProgress: () => ac.abort() }), {
    code: 'ABORT_ERR',
  });
  const st = m._native!.state();
  t.ok(st.epochStep! > 0 && st.epochStep! < Math.ceil(train.rows / 16), `cancelled mid-epoch at batch ${st.epochStep}`);
  const file = path.join(dir, 'c.ofm');
  await m.save(file);
  const resumed = await of.load(file);
  await resumed.fit(train, { ...opts, epochs: 2, resume: true });
  t.ok(bits(resumed).equals(bits(straight)), 'same parameters as two uninterrupted epochs');
  t.equal(resumed.step, straight.step);
  for (const x of [straight, m, resumed]) x.dispose();
});

t.test('saving replaces the old file atomically; failures leave it intact', async (t) => {
  const m = build();
  const file = path.join(dir, 'd.ofm');
  await m.save(file);
  const before = fs.readFileSync(file);
  await m.fit(small, { ...fitOpts, epochs: 1 });
  await m.save(file);
  t.notOk(fs.readFileSync(file).equals(before), 'replaced');
  t.same(
    fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp files left',
  );
  await t.rejects(m.save(path.join(dir, 'missing', 'x.ofm')), {
    name: 'CheckpointError',
    code: 'ERR_CHECKPOINT',
    message: /cannot write/,
  });
  // saves in flight together land in call order: the file holds the last snapshot
  const snapshots: Buffer[] = [],
    saves: Promise<void>[] = [];
  for (let i = 0; i < 4; i++) {
    saves.push(m.save(file));
    snapshots.push(bits(m));
    m.trainStep(of.data.take(small, [i, i + 1]), { estimator: of.bp() });
  }
  await Promise.all(saves);
  const last = await of.load(file);
  t.ok(bits(last).equals(snapshots[3]!), 'four saves in flight at once: the file holds the last one');
  last.dispose();
  const ac = new AbortController();
  const running = m.fit(train, { ...fitOpts, epochs: 1, signal: ac.signal });
  await t.rejects(m.save(file), { code: 'ERR_BUSY' }, 'no save while training');
  ac.abort();
  await t.rejects(running, { code: 'ABORT_ERR' });
  t.ok((await of.load(file)) instanceof of.Model, 'the file still loads');
  m.dispose();
  await t.rejects(m.save(file), { code: 'ERR_CHECKPOINT', message: /disposed/ });
});

t.test('save refuses non-finite weights: a good checkpoint is never replaced by one load refuses', async (t) => {
  const m = build();
  await m.fit(small, { ...fitOpts, epochs: 1 });
  const file = path.join(dir, 'good.ofm');
  await m.save(file);
  const good = fs.readFileSync(file);
  const p = m.parameters();
  for (const [i, v] of [
    [0, NaN],
    [1, Infinity],
    [2, -Infinity],
  ] as const) {
    const old = p[i]!.data[3]!;
    p[i]!.data[3] = v;
    await t.rejects(
      m.save(file),
      {
        name: 'NumericError',
        code: 'ERR_NUMERIC',
        message: new RegExp(`not saved: ${p[i]!.name} holds ${v} at index 3`),
      },
      `${p[i]!.name}[3] = ${v}`,
    );
    p[i]!.data[3] = old;
  }
  t.ok(fs.readFileSync(file).equals(good), 'the good file is untouched');
  t.same(
    fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')),
    [],
    'no temp files left',
  );
  t.ok((await of.load(file)) instanceof of.Model, 'and still loads');
  await m.save(path.join(dir, 'good2.ofm'));
  t.ok((await of.load(path.join(dir, 'good2.ofm'))) instanceof of.Model, 'finite weights save again');
  m.dispose();
});

t.test('bad files are rejected with ERR_CHECKPOINT before any large allocation', async (t) => {
  const m = build();
  await m.fit(small, { ...fitOpts, epochs: 1 });
  const good = path.join(dir, 'good.ofm');
  await m.save(good);
  m.dispose();
  const bytes = fs.readFileSync(good);
  const headerLen = bytes.readUInt32LE(8);
  const header = JSON.parse(bytes.subarray(16, 16 + headerLen).toString('utf8'));
  const dataOffset = Math.ceil((16 + headerLen) / 64) * 64;
  const write = (name: string, b: Buffer) => (fs.writeFileSync(path.join(dir, name), b), path.join(dir, name));
  const withHeader = (h: unknown, data = bytes.subarray(dataOffset)) => {
    const json = Buffer.from(JSON.stringify(h));
    const pre = Buffer.alloc(16);
    bytes.copy(pre, 0, 0, 8);
    pre.writeUInt32LE(json.length, 8);
    const off = Math.ceil((16 + json.length) / 64) * 64;
    return Buffer.concat([pre, json, Buffer.alloc(off - 16 - json.length), data]);
  };
  const cases: [string, Buffer, RegExp][] = [
    ['empty', Buffer.alloc(0), /bad magic/],
    ['magic', Buffer.concat([Buffer.from('NOTACKPT'), bytes.subarray(8)]), /bad magic/],
    [
      'header length',
      Buffer.concat([bytes.subarray(0, 8), Buffer.from([0xff, 0xff, 0xff, 0x7f]), bytes.subarray(12)]),
      /header/,
    ],
    ['truncated header', bytes.subarray(0, 40), /header/],
    ['truncated data', bytes.subarray(0, bytes.length - 100), /size mismatch/],
    ['extra data', Buffer.concat([bytes, Buffer.alloc(4)]), /size mismatch/],
    ['not json', withHeader('x').fill(0x7b, 16, 20), /JSON/],
    ['version', withHeader({ ...header, version: 99 }), /unsupported format version 99/],
    ['dtype', withHeader({ ...header, dtype: 'float16' }), /dtype/],
    [
      'huge shape',
      withHeader({
        ...header,
        model: { ...header.model, layers: [{ type: 'dense', inputs: 1 << 24, units: 1 << 24, bias: true }] },
      }),
      /does not match|size mismatch|dense weight is too large/,
    ],
    [
      'negative offset',
      withHeader({
        ...header,
        tensors: header.tensors.map((x: { offset: number }, i: number) => (i === 1 ? { ...x, offset: -4 } : x)),
      }),
      /does not match/,
    ],
    [
      'wrong shape',
      withHeader({
        ...header,
        tensors: header.tensors.map((x: { shape: number[] }, i: number) => (i === 0 ? { ...x, shape: [10, 784] } : x)),
      }),
      /does not match/,
    ],
    ['bad layer', withHeader({ ...header, model: { ...header.model, layers: [{ type: 'conv' }] } }), /unknown layer/],
    ['bad seed', withHeader({ ...header, model: { ...header.model, seed: -1 } }), /model section/],
    [
      'bad optimizer',
      withHeader({ ...header, state: { ...header.state, optimizer: { kind: 'rmsprop', t: 1 } } }),
      /optimizer/,
    ],
    [
      'flipped bit',
      (() => {
        const b = Buffer.from(bytes);
        b[b.length - 5]! ^= 0x10;
        return b;
      })(),
      /checksum/,
    ],
  ];
  for (const [name, b, msg] of cases) {
    await t.rejects(
      of.load(write(`${name.replace(/ /g, '_')}.ofm`, b)),
      { name: 'CheckpointError', code: 'ERR_CHECKPOINT', message: msg },
      name,
    );
  }
  await t.rejects(of.load(path.join(dir, 'nope.ofm')), { code: 'ERR_CHECKPOINT', message: /cannot read/ });
  // Seeded random bytes, and random corruptions of a good file: never a crash, always ERR_CHECKPOINT.
  let seed = 12345;
  const rnd = () => (seed = (seed * 1103515245 + 12345) >>> 0) / 2 ** 32;
  let typed = 0;
  for (let i = 0; i < 200; i++) {
    const b =
      i % 2
        ? Buffer.from(Array.from({ length: Math.floor(rnd() * 4096) }, () => Math.floor(rnd() * 256)))
        : Buffer.from(bytes);
    if (i % 2 === 0)
      for (let k = 0; k < 1 + Math.floor(rnd() * 8); k++) b[Math.floor(rnd() * b.length)] = Math.floor(rnd() * 256);
    try {
      (await of.load(write('fuzz.ofm', b))).dispose();
    } catch (err) {
      if ((err as of.OneForwardError).code === 'ERR_CHECKPOINT') typed++;
      else throw err;
    }
  }
  t.equal(typed, 200, '200 random or corrupted files: every one rejected with ERR_CHECKPOINT');
});
