// Hostile files and silent wrong results. Every loader (checkpoint, safetensors, IDX, CSV) meets /dev/zero, a FIFO
// with no writer, a socket, a directory, a missing file, huge declared sizes and headers nested 200,000 deep, each
// in a child process with a timeout and a small heap (a regression would hang or eat memory, not take this process
// down).
// Then the inputs that used to give plausible but wrong results: non-finite predict inputs, short or non-finite
// weights, overlapping safetensors offsets (CSV, IDX, attack options and the file fuzz: test/84).
import t from 'tap';
import { spawn, spawnSync } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as net from 'net';
import * as path from 'path';
import * as of from '../lib/index';
import { scratchFiles } from './helpers/files';

const { dir, file, checkpoint, writeCheckpoint, safetensors } = scratchFiles(t, 'of-files-');
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
    child.on('close', (code, signal) => {
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
