// Loaders that used to give plausible but wrong results (test/81 has the hostile files): empty CSV cells, wrapping
// labels, corrupt first lines, IDX float labels, bad attack options, a resume on a smaller data set, and a seeded
// fuzz of corrupted checkpoints, safetensors, CSV and IDX files: every failure typed, every file that loads
// self-consistent.
import t from 'tap';
import * as fs from 'fs';
import * as path from 'path';
import * as of from '../lib/index';
import { scratchFiles } from './helpers/files';

const { dir, file, checkpoint } = scratchFiles(t, 'of-loaders-');

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
