// Hostile files and silent wrong results. Every loader (checkpoint, safetensors, IDX, CSV) meets /dev/zero, a FIFO
// with no writer, a socket, a directory, a missing file, huge declared sizes and headers nested 200,000 deep, each
// in a child process with a timeout and a small heap (a regression would hang or eat memory, not take this process
// down).
// Then the inputs that used to give plausible but wrong results: non-finite predict inputs, empty CSV cells,
// wrapping labels, truncated IDX float labels, short or non-finite weights, overlapping safetensors offsets, bad
// attack options, a resume on a smaller data set.
import t from 'tap';
import { spawn, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-files-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string, data: string | Buffer) => (
  fs.writeFileSync(path.join(dir, name), data),
  path.join(dir, name)
);
const lib = JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'));

type Outcome = {
  ok?: true;
  name?: string;
  code?: string;
  message?: string;
  cause?: string;
  signal?: string | null;
  timedOut?: boolean;
  stderr?: string;
};

// At most 3 children at a time: the timeout below must measure a hang, not a busy machine.
let running = 0;
const waiting: (() => void)[] = [];
async function limited<T>(f: () => Promise<T>): Promise<T> {
  if (running >= 3) await new Promise<void>((r) => waiting.push(r));
  running++;
  try {
    return await f();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

// One call in a child (heap 96 MiB, 30 s): prints its error's class, code, message and cause's code.
function inChild(call: string): Promise<Outcome> {
  return limited(() => spawnChild(call));
}

function spawnChild(call: string): Promise<Outcome> {
  const script = `
    const of = require(${lib});
    (async () => { await (${call}); return { ok: true }; })().then(
      (r) => process.stdout.write(JSON.stringify(r)),
      (e) => process.stdout.write(JSON.stringify({ name: e && e.name, code: e && e.code, message: String(e && e.message), cause: e && e.cause && e.cause.code })));`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--max-old-space-size=96', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '',
      err = '',
      timedOut = false;
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), 30000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(out) as Outcome);
      } catch {
        resolve({ signal, timedOut, stderr: err.slice(-400) });
      }
    });
  });
}

const loaders = (p: string) => ({
  load: `of.load(${JSON.stringify(p)})`,
  readSafetensors: `of.readSafetensors(${JSON.stringify(p)})`,
  loadCsv: `of.data.loadCsv(${JSON.stringify(p)})`,
  loadIdx: `of.data.loadIdx(${JSON.stringify(p)}, ${JSON.stringify(p)})`,
});
const codeOf = {
  load: 'ERR_CHECKPOINT',
  readSafetensors: 'ERR_CHECKPOINT',
  loadCsv: 'ERR_DATA',
  loadIdx: 'ERR_DATA',
} as const;

t.test('devices, FIFOs, directories, missing files: a typed error at once, nothing read', async (t) => {
  const posix = process.platform !== 'win32';
  const fifo = path.join(dir, 'fifo');
  const haveFifo = posix && spawnSync('mkfifo', [fifo]).status === 0;
  const cases: [string, string, RegExp][] = [
    [dir, 'a directory', /not a regular file \(a directory\)/],
    [path.join(dir, 'missing'), 'a missing file', /no such file/],
  ];
  if (posix && fs.existsSync('/dev/zero'))
    cases.push(['/dev/zero', '/dev/zero', /not a regular file \(a character device\)/]);
  if (haveFifo) cases.push([fifo, 'a FIFO with no writer', /not a regular file \(a FIFO\)/]);
  else t.comment('no mkfifo here: the FIFO cases are skipped');
  const socket = path.join(dir, 'socket');
  const server = posix ? net.createServer().listen(socket) : undefined;
  if (server) {
    await new Promise((r) => server.once('listening', r));
    t.teardown(() => server.close());
    cases.push([socket, 'a socket', /not a regular file/]);
  }
  const runs = cases.flatMap(([p, what, re]) =>
    Object.entries(loaders(p)).map(async ([fn, call]) => {
      const r = await inChild(call);
      t.match(
        r,
        { code: codeOf[fn as keyof typeof codeOf], message: re },
        `${fn}(${what}): ${r.code} ${r.message ?? JSON.stringify(r)}`,
      );
      if (what === 'a missing file') t.equal(r.cause, 'ENOENT', `${fn}: the system error is the cause`);
    }),
  );
  await Promise.all(runs);
});

t.test('paths that are not strings are refused, not read as file descriptors', async (t) => {
  t.throws(() => of.data.loadCsv(123 as never), {
    code: 'ERR_CONFIG',
    message: /Expected a file path for file but received 123/,
  });
  t.throws(() => of.data.loadIdx(0 as never, 'x'), { code: 'ERR_CONFIG', message: /imagesPath/ });
  await t.rejects(of.readSafetensors(3 as never), { code: 'ERR_CONFIG' });
  await t.rejects(of.load(3 as never), { code: 'ERR_CHECKPOINT' });
});

// A checkpoint of a small model, and its parts.
async function checkpoint(name: string) {
  const m = of.sequential([of.dense(4, 8), of.relu(), of.dense(8, 3)], { seed: 1 });
  const p = path.join(dir, name);
  await m.save(p);
  m.dispose();
  const buf = fs.readFileSync(p);
  const len = buf.readUInt32LE(8);
  return {
    p,
    buf,
    header: JSON.parse(buf.subarray(16, 16 + len).toString()) as Record<string, unknown>,
    dataOffset: Math.ceil((16 + len) / 64) * 64,
  };
}
function writeCheckpoint(name: string, header: string, data: Buffer) {
  const json = Buffer.from(header);
  const pre = Buffer.alloc(16);
  pre.write('OFCKPT01', 0, 'ascii');
  pre.writeUInt32LE(json.length, 8);
  const pad = Buffer.alloc(Math.ceil((16 + json.length) / 64) * 64 - 16 - json.length);
  return file(name, Buffer.concat([pre, json, pad, data]));
}
function safetensors(name: string, header: unknown, data: Buffer) {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return file(name, Buffer.concat([len, json, data]));
}

t.test('huge declared sizes and deep headers are refused before any allocation', async (t) => {
  const { header } = await checkpoint('base.ofm');
  const deepLayers = '{"type":"residual","layers":['.repeat(100000) + '{"type":"flatten"}' + ']}'.repeat(100000);
  const deep = JSON.stringify(header).replace('"layers":[', `"layers":[${deepLayers},`);
  const bigLen = Buffer.alloc(16);
  bigLen.write('OFCKPT01', 0, 'ascii');
  bigLen.writeUInt32LE(0xffffffff, 8);
  const bigModel = JSON.stringify({
    ...header,
    model: {
      ...(header.model as object),
      layers: [
        { type: 'dense', inputs: 1 << 24, units: 1 << 24, bias: true },
        { type: 'dense', inputs: 1 << 24, units: 2, bias: true },
      ],
    },
  });
  const idxHuge = Buffer.alloc(12);
  (idxHuge.writeUInt32BE(0x00000802, 0), idxHuge.writeUInt32BE(0xffffffff, 4), idxHuge.writeUInt32BE(0xffffffff, 8));
  const stBigLen = Buffer.alloc(16);
  stBigLen.writeBigUInt64LE(1n << 60n);
  const cases: [string, string, string, RegExp][] = [
    [
      'checkpoint nested 100,000 deep',
      `of.load(${JSON.stringify(writeCheckpoint('deep.ofm', deep, Buffer.alloc(0)))})`,
      'ERR_CHECKPOINT',
      /nested deeper than 64/,
    ],
    [
      'checkpoint header length 2^32 - 1',
      `of.load(${JSON.stringify(file('biglen.ofm', bigLen))})`,
      'ERR_CHECKPOINT',
      /header \(length 4294967295\)/,
    ],
    [
      'checkpoint declaring 2^48 weights',
      `of.load(${JSON.stringify(writeCheckpoint('bigmodel.ofm', bigModel, Buffer.alloc(64)))})`,
      'ERR_CHECKPOINT',
      /does not match|size mismatch|dense weight is too large/,
    ],
    [
      'safetensors header length 2^60',
      `of.readSafetensors(${JSON.stringify(file('biglen.safetensors', stBigLen))})`,
      'ERR_CHECKPOINT',
      /bad header length/,
    ],
    [
      'safetensors nested 200,000 deep',
      `of.readSafetensors(${JSON.stringify(safetensors('deep.safetensors', '{"a":' + '['.repeat(200000) + ']'.repeat(200000) + '}', Buffer.alloc(0)))})`,
      'ERR_CHECKPOINT',
      /nested deeper than 64/,
    ],
    [
      'safetensors tensor of 2^62 values',
      `of.readSafetensors(${JSON.stringify(safetensors('big.safetensors', { w: { dtype: 'F32', shape: [2 ** 31, 2 ** 31], data_offsets: [0, 16] } }, Buffer.alloc(16)))})`,
      'ERR_CHECKPOINT',
      /do not fit/,
    ],
    [
      'IDX declaring 2^64 bytes',
      `of.data.loadIdx(${JSON.stringify(file('huge.idx', idxHuge))}, 'x')`,
      'ERR_DATA',
      /expected .* bytes for dims \[4294967295, 4294967295\]/,
    ],
  ];
  await Promise.all(
    cases.map(async ([what, call, code, re]) => {
      const r = await inChild(call);
      t.match(r, { code, message: re }, `${what}: ${r.code} ${r.message ?? JSON.stringify(r)}`);
    }),
  );
});

t.test('files of 2-4 GiB: the magic is checked first, and whole reads go in chunks (no abort)', async (t) => {
  // Sparse files: no disk space used. A read length beyond int32 made FileHandle.read abort the process.
  const sparse = (name: string, size: number, head?: Buffer) => {
    const p = path.join(dir, name);
    fs.writeFileSync(p, head ?? Buffer.alloc(0));
    fs.truncateSync(p, size);
    return p;
  };
  const sizes = [2 ** 31 - 1, 2 ** 31, 2 ** 32 - 1];
  const expect: Record<string, [string, RegExp]> = {
    load: ['ERR_CHECKPOINT', /not a oneforward checkpoint \(bad magic\)/],
    readSafetensors: ['ERR_CHECKPOINT', /bad header length 0/],
    loadWeights: ['ERR_CHECKPOINT', /bad header length 0/],
    loadIdx: ['ERR_DATA', /unsupported IDX type 0x0/],
    loadCsv: ['ERR_DATA', /exceeds the maximum of \d+ bytes/],
  };
  await Promise.all(
    sizes.map(async (size) => {
      const p = JSON.stringify(sparse(`junk-${size}`, size));
      const calls = {
        ...loaders(JSON.parse(p) as string),
        loadWeights: `of.sequential([of.dense(2, 2)]).loadWeights(${p})`,
      };
      for (const [fn, call] of Object.entries(calls)) {
        const t0 = Date.now();
        const r = await inChild(call);
        const [code, re] = expect[fn]!;
        t.match(r, { code, message: re }, `${fn}(${size} junk bytes): ${r.code} ${r.message ?? JSON.stringify(r)}`);
        t.ok(
          Date.now() - t0 < 10000,
          `${fn}(${size} bytes) answered in ${Date.now() - t0} ms (nothing read past the head)`,
        );
      }
    }),
  );
  // Heads that pass: the whole 2 GiB + a few bytes is read (in 1 GiB chunks), then refused by the next check.
  const ckpt = Buffer.alloc(16);
  ckpt.write('OFCKPT01', 0, 'ascii');
  ckpt.writeUInt32LE(8, 8);
  const big = JSON.stringify(sparse('big.ofm', 2 ** 31 + 64, ckpt));
  t.match(
    await inChild(`of.load(${big})`),
    { code: 'ERR_CHECKPOINT', message: /header is not valid JSON/ },
    'a 2 GiB checkpoint is read whole (async) and its header refused',
  );
  const idxHead = Buffer.alloc(8);
  (idxHead.writeUInt32BE(0x00000801, 0), idxHead.writeUInt32BE(2 ** 31, 4));
  const idx = JSON.stringify(sparse('big.idx', 2 ** 31 + 8, idxHead));
  t.match(
    await inChild(`of.data.loadIdx(${idx}, ${JSON.stringify(path.join(dir, 'missing.idx'))})`),
    { code: 'ERR_DATA', cause: 'ENOENT' },
    'a 2 GiB IDX file is read whole (sync), then the missing labels file is the error',
  );
});

t.test('a checkpoint with non-finite weights is refused', async (t) => {
  const { p, buf, header, dataOffset } = await checkpoint('nan.ofm');
  const bad = Buffer.from(buf);
  for (let i = dataOffset; i < bad.length; i += 4) bad.writeFloatLE(NaN, i);
  const sum = 'sha256:' + createHash('sha256').update(bad.subarray(dataOffset)).digest('hex');
  bad.write(sum, bad.indexOf(header.checksum as string), 'ascii'); // same length: the header stays valid
  fs.writeFileSync(p, bad);
  await t.rejects(of.load(p), {
    name: 'CheckpointError',
    code: 'ERR_CHECKPOINT',
    message: /tensor dense0.weight holds NaN at index 0/,
  });
});

t.test('safetensors: overlapping, unaligned or gapped offsets are refused', async (t) => {
  const data = Buffer.alloc(32);
  const f32 = (begin: number, end: number, n: number) => ({ dtype: 'F32', shape: [n], data_offsets: [begin, end] });
  await t.rejects(
    of.readSafetensors(
      safetensors('overlap.safetensors', { a: f32(0, 16, 4), b: f32(8, 24, 4), c: f32(24, 32, 2) }, data),
    ),
    { code: 'ERR_CHECKPOINT', message: /tensor b: .* overlap another tensor/ },
  );
  await t.rejects(
    of.readSafetensors(
      safetensors(
        'unaligned.safetensors',
        { a: { dtype: 'F16', shape: [1], data_offsets: [0, 2] }, b: f32(2, 30, 7) },
        data,
      ),
    ),
    { code: 'ERR_CHECKPOINT', message: /tensor b: .* not aligned to its 4-byte elements/ },
  );
  await t.rejects(of.readSafetensors(safetensors('gap.safetensors', { a: f32(0, 8, 2), b: f32(16, 32, 4) }, data)), {
    code: 'ERR_CHECKPOINT',
    message: /leave a hole after byte 8/,
  });
  await t.rejects(of.readSafetensors(safetensors('short.safetensors', { a: f32(0, 16, 4) }, data)), {
    code: 'ERR_CHECKPOINT',
    message: /cover 16 of 32 data bytes/,
  });
  const ok = await of.readSafetensors(safetensors('ok.safetensors', { b: f32(16, 32, 4), a: f32(0, 16, 4) }, data));
  t.same([...ok.keys()], ['b', 'a'], 'tensors in any header order that tile the data load');
  await t.rejects(of.writeSafetensors(path.join(dir, 'w.safetensors'), { a: { shape: [2], data: [1, 2] as never } }), {
    code: 'ERR_CONFIG',
    message: /Float32Array for tensors.a.data/,
  });
  await t.rejects(
    of.writeSafetensors(path.join(dir, 'w.safetensors'), { a: { shape: [3], data: new Float32Array(2) } }),
    { code: 'ERR_CONFIG', message: /3 values for shape \[3\]/ },
  );
});

t.test('loadWeights checks every tensor before writing any', async (t) => {
  const m = of.sequential([of.dense(3, 4), of.relu(), of.dense(4, 2)], { seed: 1 });
  const before = m.parameters().map((p) => Float32Array.from(p.data));
  const tensors = (edit: (name: string, data: Float32Array) => Float32Array) =>
    new Map(
      m.parameters().map((p) => [
        p.name,
        {
          dtype: 'F32',
          shape: [...p.shape],
          data: edit(
            p.name,
            Float32Array.from(p.data, (v) => v + 1),
          ),
        },
      ]),
    );
  await t.rejects(m.loadWeights(tensors((n, d) => (n === 'dense0.weight' ? d.subarray(0, 5) : d))), {
    code: 'ERR_CHECKPOINT',
    message: /dense0.weight: shape \[4, 3\] holds 12 values, the tensor has 5/,
  });
  await t.rejects(m.loadWeights(tensors((n, d) => (n === 'dense1.bias' ? new Float32Array(9) : d))), {
    code: 'ERR_CHECKPOINT',
    message: /dense1.bias/,
  });
  await t.rejects(m.loadWeights(tensors((n, d) => (n === 'dense1.weight' ? d.fill(Infinity) : d))), {
    code: 'ERR_CHECKPOINT',
    message: /dense1.weight: non-finite value Infinity at index 0/,
  });
  t.same(
    m.parameters().map((p) => Array.from(p.data)),
    before.map((b) => Array.from(b)),
    'no parameter changed (a later bad tensor stops the load before the first write)',
  );
  await t.rejects(m.loadWeights(42 as never), { code: 'ERR_CONFIG', message: /safetensors path or a Map/ });
  await t.rejects(m.loadWeights({} as never), { code: 'ERR_CONFIG' });
  await t.rejects(
    m.loadWeights(new Map(m.parameters().map((p) => [p.name, { shape: p.shape, data: null }])) as never),
    { code: 'ERR_CHECKPOINT', message: /expected a tensor/ },
  );
  t.same(
    await m.loadWeights(tensors((_, d) => d)),
    ['dense0.weight', 'dense0.bias', 'dense1.weight', 'dense1.bias'],
    'good tensors load',
  );
  m.dispose();
});

t.test('predict refuses non-finite inputs like fit and evaluate, naming the first', async (t) => {
  const m = of.sequential([of.dense(4, 8), of.relu(), of.dense(8, 3)], { seed: 1 });
  for (const [v, shown] of [
    [NaN, 'NaN'],
    [Infinity, 'Infinity'],
    [-Infinity, '-Infinity'],
    [1e39, 'Infinity'],
  ] as const) {
    const x = new Float32Array(8).fill(0.5);
    x[6] = v;
    t.throws(
      () => m.predict(x),
      {
        name: 'DataError',
        code: 'ERR_DATA',
        message: new RegExp(`non-finite value \\(${shown}\\) at index 6 \\(row 1, column 2\\)`),
      },
      `predict with ${v}`,
    );
    await t.rejects(m.predictAsync(x), { code: 'ERR_DATA', message: /index 6/ }, `predictAsync with ${v}`);
    t.throws(
      () => m.predict({ x, y: Int32Array.from([0, 1]), rows: 2, shape: [4] }),
      { code: 'ERR_DATA' },
      'a data set too',
    );
  }
  t.throws(
    () => m.predict(new Proxy(new Float32Array(4), {})),
    { code: 'ERR_CONFIG' },
    'a Proxy of a Float32Array is refused',
  );
  t.equal(m.predict(new Float32Array(8).fill(0.5)).length, 6, 'finite inputs still predict');
  m.dispose();
});

t.test('CSV: empty cells, wrapping labels, a lone header line are errors', async (t) => {
  t.throws(() => of.data.loadCsv(file('empty.csv', 'label,a,b\n0,1,2\n1,,3\n')), {
    name: 'DataError',
    code: 'ERR_DATA',
    message: /line 3, column 2 is empty/,
  });
  t.throws(() => of.data.loadCsv(file('blank.csv', '0,1, \n')), {
    code: 'ERR_DATA',
    message: /line 1, column 3 is empty/,
  });
  t.throws(() => of.data.loadCsv(file('wrap.csv', '1e10,1,2\n')), {
    code: 'ERR_DATA',
    message: /label '1e10' on line 1 is not a class index/,
  });
  t.throws(() => of.data.loadCsv(file('big.csv', '1,1e39\n')), {
    code: 'ERR_DATA',
    message: /line 1, column 2 \(1e39\) overflows float32/,
  });
  t.throws(() => of.data.loadCsv(file('one.csv', 'label,a,b\n')), {
    code: 'ERR_DATA',
    message: /no data rows \(the only line was taken as a header: none of its cells is a number/,
  });
  t.throws(() => of.data.loadCsv(file('one2.csv', '1,a,3\n'), { header: false }), {
    code: 'ERR_DATA',
    message: /line 1, column 2 is not a number \('a'\)$/,
  });
  const d = of.data.loadCsv(file('good.csv', 'label,a,b\n\n2,0.5,1\n0,-1,3\n'));
  t.same(
    { rows: d.rows, x: Array.from(d.x), y: Array.from(d.y) },
    { rows: 2, x: [0.5, 1, -1, 3], y: [2, 0] },
    'a good CSV still loads (blank lines skipped)',
  );
});

t.test('CSV: a corrupt first data line is an error, not a header; decimal numbers only; any line ending', async (t) => {
  // A line with a number in it is data: its bad cell is reported, not the line dropped as a header.
  t.throws(() => of.data.loadCsv(file('corrupt.csv', '1,2,x,4,5\n2,1,2,3,4\n0,1,2,3,4\n')), {
    code: 'ERR_DATA',
    message: /line 1, column 3 is not a number \('x'\) \(the first line was read as data .* pass header: true/,
  });
  t.equal(
    of.data.loadCsv(file('corrupt-h.csv', '1,2,x,4,5\n2,1,2,3,4\n0,1,2,3,4\n'), { header: true }).rows,
    2,
    'header: true still takes it as a header',
  );
  for (const cell of ['0x10', '0b11', '0o7', 'Infinity', '1_000', '1e', '.']) {
    t.throws(
      () => of.data.loadCsv(file('radix.csv', `1,2\n0,${cell}\n`)),
      { code: 'ERR_DATA', message: new RegExp(`line 2, column 2 is not a number \\('${cell}'\\)`) },
      `'${cell}' is not a decimal number`,
    );
  }
  const d = of.data.loadCsv(file('decimal.csv', 'label,a,b,c,d\n1, -1.5e3 ,+.5,2.,1E-2\n'));
  t.same(Array.from(d.x), [-1500, 0.5, 2, 0.01].map(Math.fround), 'signs, points and exponents parse');
  for (const [name, eol] of [
    ['crlf', '\r\n'],
    ['lf', '\n'],
    ['cr', '\r'],
  ]) {
    const e = of.data.loadCsv(file(`${name}.csv`, ['label,a,b', '1,2,3', '0,4,5', ''].join(eol!)));
    t.same(
      { rows: e.rows, x: Array.from(e.x), y: Array.from(e.y) },
      { rows: 2, x: [2, 3, 4, 5], y: [1, 0] },
      `${name} line endings`,
    );
  }
  const err = (() => {
    try {
      of.data.loadCsv(file('ctl.csv', '1,2,3\r0,1\tx\u001b[2J,1\r'));
    } catch (e) {
      return e as Error;
    }
  })();
  t.match(
    err,
    { code: 'ERR_DATA', message: /line 2, column 2 is not a number \('1\\x09x\\x1b\[2J'\)/ },
    'control characters are escaped in the message',
  );
  t.notOk(/[\x00-\x1f]/.test(err?.message ?? ''), 'no raw control character in the message');
});

t.test('IDX: float labels must be integers in the int32 range', async (t) => {
  const idx = (
    type: number,
    dims: number[],
    values: number[],
    write: (b: Buffer, v: number, o: number) => void,
    size: number,
  ) => {
    const b = Buffer.alloc(4 + 4 * dims.length + size * values.length);
    b.writeUInt32BE((type << 8) | dims.length, 0);
    dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
    values.forEach((v, i) => write(b, v, 4 + 4 * dims.length + size * i));
    return b;
  };
  const images = file(
    'img.idx',
    idx(0x08, [2, 2], [0, 255, 128, 64], (b, v, o) => b.writeUInt8(v, o), 1),
  );
  const labels = (name: string, vs: number[]) =>
    file(
      name,
      idx(0x0e, [2], vs, (b, v, o) => b.writeDoubleBE(v, o), 8),
    );
  t.throws(() => of.data.loadIdx(images, labels('big.idx', [1, 1e20])), {
    code: 'ERR_DATA',
    message: /label 100000000000000000000 at index 1 is not an integer class index/,
  });
  t.throws(() => of.data.loadIdx(images, labels('frac.idx', [1.5, 0])), {
    code: 'ERR_DATA',
    message: /label 1.5 at index 0/,
  });
  const d = of.data.loadIdx(images, labels('ok.idx', [3, 0]));
  t.same(
    { y: Array.from(d.y), x: Array.from(d.x) },
    { y: [3, 0], x: [0, 1, 128 / 255, 64 / 255].map(Math.fround) },
    'integer float labels load',
  );
  // Float images may hold NaN, Infinity or a double beyond float32: refused like loadCsv's cells.
  for (const [v, shown] of [
    [NaN, 'NaN'],
    [Infinity, 'Infinity'],
    [1e39, '1e\\+39'],
  ] as const) {
    const img = file(
      'fimg.idx',
      idx(0x0e, [2, 2], [0.5, 1, v, 2], (b, x, o) => b.writeDoubleBE(x, o), 8),
    );
    t.throws(
      () => of.data.loadIdx(img, labels('ok2.idx', [1, 0])),
      {
        name: 'DataError',
        code: 'ERR_DATA',
        message: new RegExp(`fimg.idx: feature ${shown} at index 2 is not a finite float32`),
      },
      `image value ${v}`,
    );
  }
  const f = of.data.loadIdx(
    file(
      'fimg2.idx',
      idx(0x0d, [2, 1], [-2.5, 3e38], (b, x, o) => b.writeFloatBE(x, o), 4),
    ),
    labels('ok3.idx', [1, 0]),
  );
  t.same(Array.from(f.x), [-2.5, Math.fround(3e38)], 'finite float images load unscaled');
});

t.test('attack options, sizes and a resume on a smaller data set', async (t) => {
  const m = of.sequential([of.dense(4, 8), of.relu(), of.dense(8, 3)], { seed: 1 });
  const d = { x: new Float32Array(8).fill(0.5), y: Int32Array.from([0, 1]), rows: 2, shape: [4] };
  for (const steps of [-1, NaN, 0, 2.5, 1e9]) {
    t.throws(
      () => of.robustness.evaluate(m, d, { attacks: [{ kind: 'pgd', eps: 0.1, steps }] }),
      { code: 'ERR_CONFIG', message: /attacks\[0\].steps/ },
      `pgd steps ${steps}`,
    );
  }
  t.throws(() => of.robustness.evaluate(m, d, { attacks: [{ kind: 'pgd', eps: 0.1, alpha: -1 }] }), {
    code: 'ERR_CONFIG',
    message: /alpha/,
  });
  t.throws(() => of.robustness.evaluate(m, d, { attacks: [{ kind: 'fgsm', eps: 0.1 }, null as never] }), {
    code: 'ERR_CONFIG',
    message: /attacks\[1\]/,
  });
  t.throws(() => of.datasets.sbm({ nodes: 65536 }), { code: 'ERR_CONFIG', message: /nodes/ });
  t.throws(() => of.datasets.sbm({ nodes: 16384, pIn: 0.5 }), {
    code: 'ERR_CONFIG',
    message: /expected edges exceeds the maximum/,
  });
  t.throws(() => of.data.permutation(2 ** 31, 1), { code: 'ERR_CONFIG', message: /integer in \[0, 2\^24\] for n/ });

  // An epoch cancelled after 3 batches of 2, then resumed on 4 rows (2 batches): refused, not an empty epoch.
  const big = {
    x: Float32Array.from({ length: 40 }, (_, i) => Math.sin(i)),
    y: Int32Array.from({ length: 10 }, (_, i) => i % 3),
    rows: 10,
    shape: [4],
  };
  const ac = new AbortController();
  let calls = 0; // a JS loss runs on the event loop while its step waits: the cancel lands inside that step
  const loss = (_: Float32Array, __: unknown, rows: number) => (
    ++calls === 4 && ac.abort(),
    new Float32Array(rows).fill(1)
  );
  await t.rejects(
    m.fit(big, { estimator: of.ulr({ copies: 2 }), batchSize: 2, epochs: 1, loss, signal: ac.signal, shuffle: false }),
    { code: 'ABORT_ERR' },
  );
  t.equal(m._native!.state().epochStep, 3, 'cancelled after 3 batches');
  const small = of.data.take(big, [0, 1, 2, 3]);
  await t.rejects(m.fit(small, { estimator: of.bp(), batchSize: 2, epochs: 1, resume: true }), {
    code: 'ERR_CONFIG',
    message: /resume: the interrupted epoch had run 3 batches, but 4 rows in batches of 2 make only 2/,
  });
  const h = await m.fit(big, { estimator: of.bp(), batchSize: 2, epochs: 1, resume: true });
  t.equal(h.epochs.length, 1, 'the same data resumes');
  t.ok(h.epochs[0]!.loss > 0, `its epoch has a loss (${h.epochs[0]!.loss})`);
  m.dispose();
});

// Corrupted files: ONEFORWARD_FILES_FUZZ seeded mutations (bytes flipped, in the header or anywhere; cut short;
// a slice repeated) of a checkpoint, a safetensors file, a CSV and an IDX pair, each loaded in this process. Every
// failure must be typed; a file that still loads must be self-consistent (a checkpoint with the very weights that
// were saved, the sha256 covering them; tensors and rows whose lengths match their shapes; finite features,
// integer labels). `npm run bench -- adversarial` runs thousands.
const FILES_FUZZ = Number(process.env.ONEFORWARD_FILES_FUZZ ?? 100);
const FILES_SEED = Number(process.env.ONEFORWARD_FILES_SEED ?? 81);

t.test(
  `${FILES_FUZZ} corrupted files (seed ${FILES_SEED}): typed errors, never a wrong result`,
  { timeout: 900000 },
  async (t) => {
    let s = FILES_SEED >>> 0;
    const r = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
    const int = (n: number) => Math.floor(r() * n);
    const base = await checkpoint('fuzz-base.ofm');
    const saved = (await of.load(base.p))
      .parameters()
      .map((p) => ({ name: p.name, shape: [...p.shape], data: Array.from(p.data) }));
    const st = path.join(dir, 'fuzz-base.safetensors');
    await of.writeSafetensors(
      st,
      {
        w: { shape: [3, 4], data: Float32Array.from({ length: 12 }, (_, i) => i / 7) },
        b: { shape: [4], data: new Float32Array(4).fill(0.5) },
      },
      { note: 'base' },
    );
    const csv = Buffer.from('label,a,b,c\n0,0.5,1,2\n2,-1,3,1e3\n1,0,0,0\n');
    const idxFile = (type: number, dims: number[], bytes: number[]) => {
      const b = Buffer.alloc(4 + 4 * dims.length + bytes.length);
      b.writeUInt32BE((type << 8) | dims.length, 0);
      dims.forEach((d, i) => b.writeUInt32BE(d, 4 + 4 * i));
      Buffer.from(bytes).copy(b, 4 + 4 * dims.length);
      return b;
    };
    const images = idxFile(
      0x08,
      [3, 2, 2],
      Array.from({ length: 12 }, (_, i) => i * 20),
    );
    const labels = idxFile(0x08, [3], [1, 0, 2]);
    const sources = { checkpoint: base.buf, safetensors: fs.readFileSync(st), csv, images, labels };
    const mutate = (b: Buffer, headerEnd: number): Buffer => {
      const out = Buffer.from(b);
      const k = r();
      if (k < 0.6) {
        const end = r() < 0.5 ? Math.min(headerEnd, out.length) : out.length;
        for (let n = 1 + int(4); n > 0; n--) out[int(end)] = int(256);
        return out;
      }
      if (k < 0.8) return out.subarray(0, int(out.length));
      const at = int(out.length),
        len = 1 + int(16);
      return Buffer.concat([out.subarray(0, at), out.subarray(at, at + len), out.subarray(at)]);
    };
    const finite = (a: ArrayLike<number>) => Array.prototype.every.call(a, Number.isFinite as (v: unknown) => boolean);
    const counts = { loaded: 0, typed: 0, untyped: [] as string[], wrong: [] as string[] };
    for (let i = 0; i < FILES_FUZZ; i++) {
      const kind = (['checkpoint', 'safetensors', 'csv', 'idx'] as const)[int(4)]!;
      const p = path.join(dir, `fuzz-${i % 8}`);
      let check: () => Promise<string | undefined>;
      if (kind === 'checkpoint') {
        fs.writeFileSync(p, mutate(sources.checkpoint, base.dataOffset));
        check = async () => {
          const m = await of.load(p);
          const got = m.parameters().map((q) => ({ name: q.name, shape: [...q.shape], data: Array.from(q.data) }));
          m.dispose();
          return JSON.stringify(got) === JSON.stringify(saved) ? undefined : 'loaded other weights than were saved';
        };
      } else if (kind === 'safetensors') {
        fs.writeFileSync(p, mutate(sources.safetensors, 8 + Number(sources.safetensors.readBigUInt64LE(0))));
        check = async () => {
          for (const [name, x] of await of.readSafetensors(p)) {
            if (x.data.length !== x.shape.reduce((a, b) => a * b, 1))
              return `tensor ${name}: ${x.data.length} values for shape [${x.shape.join(', ')}]`;
          }
          return undefined;
        };
      } else {
        const twoFiles = kind === 'idx';
        if (twoFiles) {
          const which = r() < 0.5;
          fs.writeFileSync(p, which ? mutate(sources.images, 16) : sources.images);
          fs.writeFileSync(p + '.labels', which ? sources.labels : mutate(sources.labels, 8));
        } else fs.writeFileSync(p, mutate(sources.csv, sources.csv.length));
        check = async () => {
          const d = twoFiles ? of.data.loadIdx(p, p + '.labels') : of.data.loadCsv(p);
          const cols = (d.shape ?? []).reduce((a, b) => a * b, 1);
          if (d.x.length !== d.rows * cols || d.y.length !== d.rows)
            return `${d.rows} rows of shape [${d.shape}] but ${d.x.length} features and ${d.y.length} labels`;
          if (!finite(d.x)) return 'non-finite features';
          if (!(d.y instanceof Int32Array) || !d.y.every((v) => v >= 0))
            return `labels ${Array.from(d.y).slice(0, 8)} are not class indices`;
          return undefined;
        };
      }
      try {
        const wrong = await check();
        counts.loaded++;
        if (wrong) counts.wrong.push(`#${i} ${kind}: ${wrong}`);
      } catch (e) {
        if (e instanceof of.OneForwardError && of.ERROR_CODES.includes(e.code)) counts.typed++;
        else counts.untyped.push(`#${i} ${kind}: ${String((e as Error)?.stack ?? e).slice(0, 300)}`);
      }
    }
    t.same(
      counts.untyped,
      [],
      `${counts.typed} corrupted files refused with typed errors, ${counts.untyped.length} with untyped ones`,
    );
    t.same(counts.wrong, [], `${counts.loaded} loaded anyway, ${counts.wrong.length} of them wrong`);
    t.ok(counts.typed > 0 && counts.loaded > 0, 'the fuzz exercises both paths');
  },
);
