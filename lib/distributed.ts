/**
 * Data-parallel training over any communicator (issue 7's first mode). Every rank holds the same model (same seed)
 * and takes a contiguous shard of every batch; it estimates the gradient of its shard with the noise rows a single
 * process would use for those samples (`sampleOffset`), scales it by its share of the batch, all-reduces the sum,
 * and applies the same update. The result equals one process training on the whole batch up to the order of the
 * floating-point sums (bit-identical BP and ULR noise; the baseline of ULR is per sample, so sharding by whole
 * samples leaves it unchanged).
 *
 * Communication per step: one all-reduce of `parameterCount` float32 values (4 bytes each).
 *
 * The communicator is an interface: an MPI binding provides one under `mpirun`; tests use an in-process one.
 */
import type { Dataset } from './data';
import { take } from './data';
import { type Estimator, ulr } from './estimators';
import type { Model } from './model';
import type { Optimizer } from './optimizers';
import { invalidArg, is } from './validate';

/** What data-parallel training needs from a communicator: this rank, the number of ranks, an in-place sum. */
export type Communicator = { rank: number; size: number; allreduceSum(values: Float32Array): void };

/** The contiguous rows of `batch` that `rank` of `size` takes, and the index of its first sample. */
export function shard(batch: Dataset, rank: number, size: number): { batch: Dataset; sampleOffset: number } {
  if (!is.positiveInteger(size)) throw invalidArg('size', 'positive integer', size);
  if (!is.integer(rank) || rank < 0 || rank >= size) throw invalidArg('rank', `integer in [0, ${size - 1}]`, rank);
  const lo = Math.floor((rank * batch.rows) / size), hi = Math.floor(((rank + 1) * batch.rows) / size);
  return { batch: take(batch, Array.from({ length: hi - lo }, (_, i) => lo + i)), sampleOffset: lo };
}

/**
 * This rank's share of the gradient of the batch's mean loss: its shard's estimate times (shard rows / batch rows),
 * flat (`parameterCount` values). The sum over ranks is the whole batch's estimate. Zeros for an empty shard.
 */
export function dataParallelGradients(model: Model, batch: Dataset, options: { rank: number; size: number; estimator?: Estimator }): Float32Array {
  const { batch: part, sampleOffset } = shard(batch, options.rank, options.size);
  const out = new Float32Array(model.parameterCount);
  if (part.rows === 0) return out;
  const grads = model.gradients(part, { estimator: options.estimator ?? ulr(), sampleOffset });
  const scale = part.rows / batch.rows;
  let off = 0;
  for (const g of grads) {
    for (let i = 0; i < g.length; i++) out[off + i] = g[i]! * scale;
    off += g.length;
  }
  return out;
}

/** One data-parallel step on `batch` (the same batch on every rank): shard, estimate, all-reduce, update. */
export function dataParallelStep(model: Model, batch: Dataset, options: { comm: Communicator; estimator?: Estimator; optimizer?: Optimizer }): void {
  const { comm } = options;
  const g = dataParallelGradients(model, batch, { rank: comm.rank, size: comm.size, ...(options.estimator ? { estimator: options.estimator } : {}) });
  comm.allreduceSum(g);
  model.applyGradients(g, { rows: batch.rows, ...(options.optimizer ? { optimizer: options.optimizer } : {}) });
}
