// Run under mpirun by test/53-mpi.test.ts. `train`: data-parallel BP and ULR, and seed-replay SPSA, on fixed digits
// batches; rank 0 prints the parameters as JSON. `fit`: of.distributed.fit (model.fit with the distributed option)
// for 2 epochs with a checkpoint; rank 0 prints its history, parameters and onBatchEnd count. `fail`: rank 1 throws
// and aborts the job; rank 0 waits in a barrier it never leaves.
import * as of from '../../lib/index';
import { mpiBatches, mpiFitData, mpiNet } from './mpi-data';

const comm = of.distributed.mpi();
if (process.argv[2] === 'fit') {
  const { train, test } = of.datasets.digits();
  const m = mpiNet();
  let batches = 0;
  of.distributed
    .fit(m, mpiFitData(), {
      comm,
      estimator: of.ulr({ copies: 8 }),
      epochs: 2,
      batchSize: 32,
      checkpoint: process.argv[3]!,
      validation: of.data.take(
        test,
        Array.from({ length: 200 }, (_, i) => i * 9),
      ),
      onBatchEnd: () => void batches++,
    })
    .then((h) => {
      if (comm.rank === 0)
        process.stdout.write(
          JSON.stringify({
            size: comm.size,
            epochs: h.epochs,
            batches,
            params: m.parameters().flatMap((p) => Array.from(p.data)),
          }) + '\n',
        );
      comm.finalize();
    });
} else if (process.argv[2] === 'fail') {
  try {
    if (comm.rank === 1) throw new Error('rank 1 fails on purpose');
    comm.barrier();
  } catch (err) {
    process.stderr.write(`rank ${comm.rank}: ${(err as Error).message}\n`);
    comm.abort(3);
  }
} else {
  const out: Record<string, number[]> = {};
  for (const [name, estimator] of [
    ['bp', of.bp()],
    ['ulr', of.ulr({ copies: 8 })],
  ] as const) {
    const m = mpiNet();
    for (const b of mpiBatches())
      of.distributed.dataParallelStep(m, b, { comm, estimator, optimizer: of.adam({ lr: 1e-3 }) });
    out[name] = m.parameters().flatMap((p) => Array.from(p.data));
    m.dispose();
  }
  const copies = mpiNet(); // copy-parallel ULR: each rank runs half of the 8 copies of every sample
  for (const b of mpiBatches())
    of.distributed.copyParallelStep(copies, b, {
      comm,
      estimator: of.ulr({ copies: 8 }),
      optimizer: of.adam({ lr: 1e-3 }),
    });
  out.copies = copies.parameters().flatMap((p) => Array.from(p.data));
  copies.dispose();
  const spsa = mpiNet(); // seed replay: only losses cross the network
  for (const b of mpiBatches())
    of.distributed.seedReplayStep(spsa, b, {
      comm,
      estimator: of.spsa({ perturbations: 6 }),
      optimizer: of.adam({ lr: 1e-3 }),
    });
  out.spsa = spsa.parameters().flatMap((p) => Array.from(p.data));
  spsa.dispose();
  if (comm.rank === 0)
    process.stdout.write(JSON.stringify({ size: comm.size, library: comm.library.split('\n')[0], params: out }) + '\n');
  comm.finalize();
}
