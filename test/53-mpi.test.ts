// MPI (the optional oneforward_mpi addon): 2 ranks under mpirun on this machine train data-parallel with BP and ULR
// and must end within 1e-4 (max abs) of one process training on the same batches, and seed-replay SPSA bit for bit;
// of.distributed.fit (model.fit with the distributed option) on 1 rank equals model.fit without it bit for bit, and
// on 2 ranks within 1e-5 (the same batches in the same order; only the order of float sums differs); a rank that
// throws ends the job on both ranks (non-zero exit, well within 60 s). Skipped, saying why, where no MPI was found
// at install time or mpirun is missing.
import t from 'tap';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { mpiBatches, mpiFitData, mpiNet } from './helpers/mpi-data';

const mpirun = spawnSync('mpirun', ['--version'], { encoding: 'utf8' });
const why = !of.distributed.mpiAvailable()
  ? 'the MPI addon was not built (no MPI found at install time)'
  : mpirun.error
    ? 'mpirun is not installed'
    : '';
const helper = path.join(__dirname, 'helpers', 'mpi-train.js');
const run = (mode: string, np = 2, extra: string[] = []) =>
  spawnSync(
    'mpirun',
    [
      '--allow-run-as-root',
      '--oversubscribe',
      '--mca',
      'btl',
      'self,vader,tcp',
      '-np',
      String(np),
      process.execPath,
      helper,
      mode,
      ...extra,
    ],
    {
      encoding: 'utf8',
      timeout: 120000,
      maxBuffer: 64 << 20,
      env: { ...process.env, OMPI_MCA_btl_vader_single_copy_mechanism: 'none' },
    },
  );

t.test('backend.info() says whether MPI was built', async (t) => {
  t.equal(of.backend.info().mpi, of.distributed.mpiAvailable(), `mpi: ${of.backend.info().mpi}`);
});

t.test('2 MPI ranks, data-parallel = one process', { skip: why || false }, async (t) => {
  const r = run('train');
  t.equal(r.status, 0, `mpirun exits 0${r.status ? `: ${r.stderr.slice(-400)}` : ''}`);
  const res = JSON.parse(r.stdout.trim().split('\n').pop()!) as {
    size: number;
    library: string;
    params: Record<string, number[]>;
  };
  t.equal(res.size, 2, `2 ranks (${res.library})`);
  for (const [name, estimator] of [
    ['bp', of.bp()],
    ['ulr', of.ulr({ copies: 8 })],
  ] as const) {
    const m = mpiNet();
    for (const b of mpiBatches()) m.trainStep(b, { estimator, optimizer: of.adam({ lr: 1e-3 }) });
    const want = m.parameters().flatMap((p) => Array.from(p.data));
    const d = want.reduce((mx, v, i) => Math.max(mx, Math.abs(v - res.params[name]![i]!)), 0);
    t.ok(d <= 1e-4, `${name}: max abs parameter diff ${d.toExponential(2)} <= 1e-4`);
    m.dispose();
  }
  const c = mpiNet();
  for (const b of mpiBatches()) c.trainStep(b, { estimator: of.ulr({ copies: 8 }), optimizer: of.adam({ lr: 1e-3 }) });
  const cw = c.parameters().flatMap((p) => Array.from(p.data));
  const cd = cw.reduce((mx, v, i) => Math.max(mx, Math.abs(v - res.params.copies![i]!)), 0);
  t.ok(cd <= 1e-4, `copy-parallel ULR (4 of 8 copies per rank): max abs parameter diff ${cd.toExponential(2)} <= 1e-4`);
  c.dispose();
  const s = mpiNet();
  for (const b of mpiBatches())
    s.trainStep(b, { estimator: of.spsa({ perturbations: 6 }), optimizer: of.adam({ lr: 1e-3 }) });
  const want = s.parameters().flatMap((p) => Array.from(p.data));
  t.ok(
    want.every((v, i) => Object.is(v, res.params.spsa![i])),
    'seed-replay SPSA: bit-identical to one process',
  );
  s.dispose();
});

t.test('a rank that throws ends the job on every rank', { skip: why || false }, async (t) => {
  const t0 = Date.now();
  const r = run('fail');
  const secs = (Date.now() - t0) / 1000;
  t.not(r.status, 0, `non-zero exit (${r.status})`);
  t.ok(secs < 60, `ended in ${secs.toFixed(1)} s`);
  t.match(r.stderr, /rank 1 fails on purpose/, "the failing rank's error is reported");
});

t.test(
  'fitDistributed: 1 rank = model.fit, 2 ranks = 1 rank; rank 0 writes a checkpoint every rank can load',
  { skip: why || false },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-mpi-'));
    const results = [1, 2].map((np) => {
      const r = run('fit', np, [path.join(dir, `fit${np}.ofckpt`)]);
      t.equal(r.status, 0, `${np} rank(s): mpirun exits 0${r.status ? `: ${r.stderr.slice(-300)}` : ''}`);
      return JSON.parse(r.stdout.trim().split('\n').pop()!) as {
        size: number;
        epochs: { valAccuracy: number }[];
        batches: number;
        params: number[];
      };
    });
    const single = mpiNet();
    await single.fit(mpiFitData(), { estimator: of.ulr({ copies: 8 }), epochs: 2, batchSize: 32 });
    const want = single.parameters().flatMap((p) => Array.from(p.data));
    single.dispose();
    t.ok(
      want.every((v, i) => Object.is(v, results[0]!.params[i])),
      '1 rank: bit for bit model.fit without the option',
    );
    const d = results[0]!.params.reduce((mx, v, i) => Math.max(mx, Math.abs(v - results[1]!.params[i]!)), 0);
    t.ok(d <= 1e-5, `2 ranks vs 1 rank after 2 epochs: max abs parameter diff ${d.toExponential(2)} <= 1e-5`);
    t.equal(results[1]!.batches, 16, 'onBatchEnd: 16 calls on rank 0 (8 batches of 32, 2 epochs)');
    t.ok(
      results[1]!.epochs.length === 2 && results[1]!.epochs[1]!.valAccuracy > 0.15,
      `validation on rank 0 after 16 ULR steps: ${(results[1]!.epochs[1]!.valAccuracy * 100).toFixed(1)}% > 15% (chance 10%)`,
    );
    const back = await of.load(path.join(dir, 'fit2.ofckpt'));
    t.same(
      back.parameters().flatMap((p) => Array.from(p.data)),
      results[1]!.params,
      "the checkpoint holds rank 0's parameters",
    );
    back.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  },
);
