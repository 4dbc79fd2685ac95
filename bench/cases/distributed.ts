// Bench case "distributed" (issue 7), run under mpirun by bench/run.ts with 1 thread per rank: per-step compute
// time and all-reduce time of data-parallel BP and ULR, and of seed-replay ES, on the digits MLP 784-256-10
// (batch 64 per step, 40 steps after 5 warm-up steps). Rank 0 prints one JSON line.
import * as of from '../../lib/index';

const comm = of.distributed.mpi();
const { train } = of.datasets.digits();
const batches = Array.from({ length: 45 }, (_, s) =>
  of.data.take(train, Array.from(of.data.permutation(train.rows, 100 + s).subarray(0, 64))),
);
const ms = (t0: bigint) => Number(process.hrtime.bigint() - t0) / 1e6;
const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
const rows: Record<string, unknown>[] = [];

for (const [name, estimator] of [
  ['bp', of.bp()],
  ['ulr K=32', of.ulr({ copies: 32 })],
  ['es population 32', of.es({ population: 32, sigma: 0.01 })],
] as const) {
  const m = of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed: 1 });
  const optimizer = of.adam({ lr: 1e-3 });
  const compute: number[] = [],
    communicate: number[] = [];
  let bytes = 0;
  batches.forEach((b, s) => {
    comm.barrier();
    let t0 = process.hrtime.bigint();
    let share: Float32Array;
    if (estimator.kind === 'es')
      share = of.distributed.seedReplayLosses(m, b, { rank: comm.rank, size: comm.size, estimator });
    else share = of.distributed.dataParallelGradients(m, b, { rank: comm.rank, size: comm.size, estimator });
    const c = ms(t0);
    comm.barrier(); // all-reduce time without the wait for the slowest rank
    t0 = process.hrtime.bigint();
    comm.allreduceSum(share);
    const a = ms(t0);
    t0 = process.hrtime.bigint();
    if (estimator.kind === 'es') of.distributed.seedReplayUpdate(m, share, { estimator, optimizer, rows: b.rows });
    else m.applyGradients(share, { optimizer, rows: b.rows });
    const u = ms(t0);
    bytes = share.byteLength;
    if (s >= 5) (compute.push(c + u), communicate.push(a));
  });
  rows.push({
    mode: estimator.kind === 'es' ? 'seed replay' : 'data-parallel',
    estimator: name,
    computeMs: median(compute),
    allreduceMs: median(communicate),
    bytesPerStep: bytes,
  });
  m.dispose();
}
if (comm.rank === 0)
  process.stdout.write(JSON.stringify({ ranks: comm.size, library: comm.library.split('\n')[0], rows }) + '\n');
comm.finalize();
