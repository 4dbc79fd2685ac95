// In-process communicators for distributed tests: `size` ranks in this process, whose allreduceSum returns a promise
// that resolves once every rank has called it, with the sum taken in rank order (float32, the same on every rank).
// model.fit runs each rank's loop on its own native thread, so the ranks of one process train concurrently.
import type * as of from '../../lib/index';

export function inProcess(size: number): of.Communicator[] {
  let waiting: { values: Float32Array; resolve: () => void }[] = [];
  let arrived = 0;
  return Array.from({ length: size }, (_, rank) => ({
    rank,
    size,
    allreduceSum(values: Float32Array): Promise<void> {
      return new Promise<void>((resolve) => {
        waiting[rank] = { values, resolve };
        if (++arrived < size) return;
        const sum = Float32Array.from(waiting[0]!.values);
        for (let r = 1; r < size; r++) {
          const v = waiting[r]!.values;
          for (let i = 0; i < sum.length; i++) sum[i]! += v[i]!;
        }
        const all = waiting;
        waiting = [];
        arrived = 0;
        for (const w of all) {
          w.values.set(sum);
          w.resolve();
        }
      });
    },
  }));
}
