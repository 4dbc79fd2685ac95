/**
 * The user callbacks of a native run (fit's `onProgress`, `onEpochEnd`, `onBatchEnd`, `onDiverged`). A value a
 * callback throws reaches the native side, which stops the run and rejects with that very value. A callback that
 * returns a promise (an `async` one) is awaited here before the run settles, and its rejection stops the run and
 * becomes the run's rejection, value as is; left alone it would be an unhandled rejection, which ends the process.
 */

/** @internal */
export class CallbackGuard {
  private readonly pending: Promise<void>[] = [];
  private failure: { reason: unknown } | undefined;

  /** @param stop cancels the run (called once, at the first rejection). */
  constructor(private readonly stop: () => void) {}

  /** `fn` as the native side calls it: returned promises are tracked. */
  wrap<A extends unknown[]>(fn: ((...args: A) => unknown) | undefined): ((...args: A) => void) | undefined {
    if (fn === undefined) return undefined;
    return (...args: A) => {
      const r = fn(...args);
      if ((typeof r === 'object' && r !== null) || typeof r === 'function') {
        if (typeof (r as PromiseLike<unknown>).then === 'function') {
          this.pending.push(Promise.resolve(r).then(() => undefined, (reason: unknown) => {
            if (this.failure) return;
            this.failure = { reason };
            this.stop();
          }));
        }
      }
    };
  }

  /** Waits for every promise a callback returned; throws the first rejection's value. */
  async settle(): Promise<void> {
    await Promise.all(this.pending);
    if (this.failure) throw this.failure.reason;
  }
}
