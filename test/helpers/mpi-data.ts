// The model and batches shared by the MPI helper and its test (the same seeds on every rank).
import * as of from '../../lib/index';

export const mpiNet = () => of.sequential([of.dense(784, 32), of.relu(), of.dropout(0.1), of.dense(32, 10)], { seed: 5 });
export function mpiBatches(): of.Dataset[] {
  const { train } = of.datasets.digits();
  return [0, 1, 2].map((s) => of.data.take(train, Array.from(of.data.permutation(train.rows, 70 + s).subarray(0, 20))));
}
