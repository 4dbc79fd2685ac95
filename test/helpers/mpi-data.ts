// The model and batches shared by the MPI helper and its test (the same seeds on every rank).
import * as of from '../../lib/index';

export const mpiNet = () =>
  of.sequential([of.dense(784, 32), of.relu(), of.dropout(0.1), of.dense(32, 10)], { seed: 5 });
export function mpiBatches(): of.Dataset[] {
  const { train } = of.datasets.digits();
  return [0, 1, 2].map((s) => of.data.take(train, Array.from(of.data.permutation(train.rows, 70 + s).subarray(0, 20))));
}

/** The training set of the `fit` case: 256 digits (8 batches of 32). */
export function mpiFitData(): of.Dataset {
  return of.data.take(
    of.datasets.digits().train,
    Array.from({ length: 256 }, (_, i) => i * 31),
  );
}
