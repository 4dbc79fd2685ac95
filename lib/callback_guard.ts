/**
 * The user callbacks of a native run (fit's `onProgress`, `onEpochEnd`, `onBatchEnd`, `onDiverged`, `loss`). A
 * value a callback throws reaches the native side, which stops the run and rejects with that very value (never
 * decorated). A callback that returns a promise (an `async` one) is awaited here before the run settles, and its
 * rejection stops the run and becomes the run's rejection, value as is; left alone it would be an unhandled
 * rejection, which ends the process. An abort stops that wait at once. A loss must be synchronous: a promise it
 * returns is refused (a DataError), and its rejection is handled here.
 */
import { AbortError, DataError } from './errors';
import type { LossFunction } from './native';

/** @internal Whether `r` is a promise or any other thenable. */
export const isThenable = (r: unknown): r is PromiseLike<unknown> =>
  ((typeof r === 'object' && r !== null) || typeof r === 'function') &&
  typeof (r as PromiseLike<unknown>).then === 'function';

/**
 * @internal `loss` as the native side calls it: a promise it returns (an `async` loss) gets a no-op rejection
 * handler (nothing is unhandled) and is refused with a DataError; `onThrow` sees each value the loss throws.
 */
export function syncLoss(loss: LossFunction, onThrow?: (value: unknown) => void): LossFunction {
  return (outputs, targets, rows) => {
    let r: ReturnType<LossFunction>;
    try {
      r = loss(outputs, targets, rows);
    } catch (err) {
      onThrow?.(err);
      throw err;
    }
    if (isThenable(r)) {
      // Promise.resolve runs a foreign thenable's then() later, inside a promise job: a throwing then() only rejects it.
      Promise.resolve(r).then(undefined, () => undefined);
      throw new DataError(
        `the loss function must return ${rows} finite per-row losses (a Float32Array, Float64Array or array): got a promise; the loss must be synchronous (not an async function)`,
      );
    }
    return r;
  };
}

/** @internal */
export class CallbackGuard {
  private readonly pending: Promise<void>[] = [];
  private inFlight = 0;
  private failure: { reason: unknown } | undefined;
  private readonly thrown = new Set<unknown>();

  /** @param stop cancels the run (called once, at the first rejection). */
  constructor(private readonly stop: () => void) {}

  /** `fn` as the native side calls it: returned promises are tracked, thrown values remembered. */
  wrap<A extends unknown[]>(fn: ((...args: A) => unknown) | undefined): ((...args: A) => void) | undefined {
    if (fn === undefined) return undefined;
    return (...args: A) => {
      let r: unknown;
      try {
        r = fn(...args);
      } catch (err) {
        this.thrown.add(err);
        throw err;
      }
      if (isThenable(r)) {
        this.inFlight++;
        this.pending.push(
          Promise.resolve(r)
            .then(
              () => undefined,
              (reason: unknown) => {
                if (this.failure) return;
                this.failure = { reason };
                this.stop();
              },
            )
            .finally(() => this.inFlight--),
        );
      }
    };
  }

  /** `loss` as the native side calls it (see {@link syncLoss}); thrown values are remembered. */
  wrapLoss(loss: LossFunction): LossFunction {
    return syncLoss(loss, (err) => this.thrown.add(err));
  }

  /** Whether `value` is one a callback threw or rejected with: the run rejects with it as is. */
  isUserValue(value: unknown): boolean {
    return this.thrown.has(value) || (this.failure !== undefined && this.failure.reason === value);
  }

  /**
   * Waits for every promise a callback returned, or until `signal` aborts (the promises left pending keep their
   * handlers, so a later rejection is not unhandled); throws the first rejection's value, else an AbortError
   * when the wait was cut short.
   */
  async settle(signal?: AbortSignal): Promise<void> {
    if (this.inFlight > 0 && !signal?.aborted) {
      let onAbort: () => void = () => undefined;
      const aborted = new Promise<void>((resolve) => (onAbort = resolve));
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        await Promise.race([Promise.all(this.pending), aborted]);
      } finally {
        signal?.removeEventListener('abort', onAbort);
      }
    }
    if (this.failure) throw this.failure.reason;
    if (this.inFlight > 0) throw new AbortError("training was cancelled while fit waited for a callback's promise");
  }
}
