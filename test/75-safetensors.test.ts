// safetensors interchange: write/read round trip, F16/BF16/F64 conversion, loading into a model through a
// name mapping, and rejection of broken files and mismatched weights with ERR_CHECKPOINT.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-st-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));

t.test('weights from a safetensors file with a name mapping', async (t) => {
  const src = of.sequential([of.dense(6, 5), of.tanh(), of.dense(5, 3)], { seed: 1 });
  const [w0, b0, w1, b1] = src.parameters();
  const file = path.join(dir, 'model.safetensors');
  await of.writeSafetensors(
    file,
    { 'fc1.weight': w0!, 'fc1.bias': b0!, 'fc2.weight': w1!, 'fc2.bias': b1! },
    { format: 'pt' },
  );
  const read = await of.readSafetensors(file);
  t.same([...read.keys()], ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
  t.same(read.get('fc1.weight')!.shape, [5, 6]);
  const dst = of.sequential([of.dense(6, 5), of.tanh(), of.dense(5, 3)], { seed: 2 });
  const names = await dst.loadWeights(file, {
    map: {
      'fc1.weight': 'dense0.weight',
      'fc1.bias': 'dense0.bias',
      'fc2.weight': 'dense1.weight',
      'fc2.bias': 'dense1.bias',
    },
  });
  t.same(names, ['dense0.weight', 'dense0.bias', 'dense1.weight', 'dense1.bias']);
  const x = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i));
  t.same(Array.from(dst.predict(x)), Array.from(src.predict(x)), 'same outputs after loading');
  // Mismatches change nothing.
  const before = dst.parameters().map((p) => Array.from(p.data));
  const other = of.sequential([of.dense(6, 4), of.tanh(), of.dense(4, 3)], { seed: 3 });
  await t.rejects(
    other.loadWeights(file, {
      map: {
        'fc1.weight': 'dense0.weight',
        'fc1.bias': 'dense0.bias',
        'fc2.weight': 'dense1.weight',
        'fc2.bias': 'dense1.bias',
      },
    }),
    { code: 'ERR_CHECKPOINT', message: /dense0.weight: expected shape \[4, 6\]/ },
  );
  await t.rejects(dst.loadWeights(file), { code: 'ERR_CHECKPOINT', message: /weights missing for dense0.weight/ });
  t.same(
    dst.parameters().map((p) => Array.from(p.data)),
    before,
    'parameters untouched by the failed loads',
  );
  for (const m of [src, dst, other]) m.dispose();
});

t.test('F16, BF16 and F64 tensors are converted exactly', async (t) => {
  const header = JSON.stringify({
    h: { dtype: 'F16', shape: [3], data_offsets: [8, 14] },
    b: { dtype: 'BF16', shape: [2], data_offsets: [14, 18] },
    d: { dtype: 'F64', shape: [1], data_offsets: [0, 8] }, // first: every tensor starts at a multiple of its element size
  });
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const data = Buffer.alloc(18);
  [0x3e00, 0xc000, 0x3400].forEach((v, i) => data.writeUInt16LE(v, 8 + 2 * i)); // 1.5, -2, 0.25
  [0x3fc0, 0xbf80].forEach((v, i) => data.writeUInt16LE(v, 14 + 2 * i)); // 1.5, -1
  data.writeDoubleLE(0.125, 0);
  const file = path.join(dir, 'mixed.safetensors');
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(header), data]));
  const r = await of.readSafetensors(file);
  t.same(Array.from(r.get('h')!.data), [1.5, -2, 0.25]);
  t.same(Array.from(r.get('b')!.data), [1.5, -1]);
  t.same(Array.from(r.get('d')!.data), [0.125]);
});

t.test('broken safetensors files are rejected with ERR_CHECKPOINT', async (t) => {
  const ok = path.join(dir, 'ok.safetensors');
  await of.writeSafetensors(ok, { a: { shape: [2, 2], data: Float32Array.from([1, 2, 3, 4]) } });
  const bytes = fs.readFileSync(ok);
  const write = (name: string, b: Buffer) => (fs.writeFileSync(path.join(dir, name), b), path.join(dir, name));
  const withHeader = (h: unknown, data = Buffer.alloc(16)) => {
    const json = Buffer.from(JSON.stringify(h));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return Buffer.concat([len, json, data]);
  };
  const cases: [string, Buffer, RegExp][] = [
    ['short', Buffer.alloc(4), /too short/],
    [
      'huge header',
      Buffer.concat([Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]), bytes.subarray(8)]),
      /bad header length/,
    ],
    ['truncated', bytes.subarray(0, bytes.length - 3), /do not fit/],
    ['not json', withHeader('x').fill(0x7b, 8, 10), /not valid JSON|not an object/],
    ['dtype', withHeader({ a: { dtype: 'I8', shape: [4], data_offsets: [0, 4] } }), /unsupported dtype I8/],
    ['offsets', withHeader({ a: { dtype: 'F32', shape: [4], data_offsets: [8, 24] } }), /do not fit/],
    ['negative', withHeader({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 4] } }), /bad shape/],
  ];
  for (const [name, b, msg] of cases)
    await t.rejects(of.readSafetensors(write(`${name}.st`, b)), { code: 'ERR_CHECKPOINT', message: msg }, name);
});

t.test('a frozen prefix: no gradient, no update, estimates of the rest agree with BP', async (t) => {
  const { train } = of.datasets.digits();
  const small = of.data.take(
    train,
    Array.from({ length: 256 }, (_, i) => i * 29),
  );
  for (const est of [
    of.bp(),
    of.ulr({ copies: 8 }),
    of.ulr({ copies: 8, injection: 'layerwise' }),
    of.spsa({ perturbations: 4 }),
  ]) {
    const m = of.sequential([of.dense(784, 32), of.tanh(), of.dense(32, 16), of.tanh(), of.dense(16, 10)], { seed: 2 });
    m.freeze(1);
    const before = m.parameters().map((p) => Float32Array.from(p.data));
    await m.fit(small, { estimator: est, optimizer: of.adamw({ lr: 1e-2 }), epochs: 1, batchSize: 32 });
    const after = m.parameters();
    t.ok(
      after.slice(0, 2).every((p, i) => p.data.every((v, j) => v === before[i]![j])),
      `${est.kind}: frozen layer untouched (even by weight decay)`,
    );
    t.ok(
      after.slice(2).some((p, i) => p.data.some((v, j) => v !== before[i + 2]![j])),
      `${est.kind}: the rest trained`,
    );
    m.dispose();
  }
  const m = of.sequential(
    [of.dense(6, 8, { trainable: false }), of.tanh(), of.dense(8, 5), of.tanh(), of.dense(5, 3)],
    { seed: 3 },
  );
  t.equal(m.frozen, 1);
  const x = Float32Array.from({ length: 4 * 6 }, (_, i) => Math.sin(i)),
    y = Int32Array.from([0, 1, 2, 1]);
  const bpg = m.gradients({ x, y }, { estimator: of.bp() });
  t.ok(bpg[0]!.every((v) => v === 0) && bpg[1]!.every((v) => v === 0), 'BP: zero gradient for the frozen layer');
  const g = m.gradients({ x, y }, { estimator: of.ulr({ copies: 20000, sigma: 0.05 }), step: 1 });
  t.ok(
    g[0]!.every((v) => v === 0),
    'ULR: zero gradient for the frozen layer',
  );
  const rest = (gs: Float32Array[]) => Float64Array.from(gs.slice(2).flatMap((a) => Array.from(a)));
  const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);
  const cos = dot(rest(g), rest(bpg)) / Math.sqrt(dot(rest(g), rest(g)) * dot(rest(bpg), rest(bpg)));
  t.ok(cos > 0.99, `ULR on the trainable layers vs BP: cosine ${cos.toFixed(4)}`);
  const file = path.join(dir, 'frozen.ofm');
  await m.save(file);
  const back = await of.load(file);
  t.equal(back.frozen, 1, 'a checkpoint keeps the frozen prefix');
  back.dispose();
  t.throws(() => of.sequential([of.dense(6, 8), of.tanh(), of.dense(8, 3, { trainable: false })]), {
    code: 'ERR_CONFIG',
    message: /leading run/,
  });
  t.throws(() => m.freeze(3), { code: 'ERR_CONFIG' });
  m.freeze(0);
  t.equal(m.frozen, 0, 'unfrozen');
  m.dispose();
});
