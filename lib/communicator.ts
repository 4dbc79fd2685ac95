/**
 * The communicator a distributed run needs (model.fit's `distributed` option and the `of.distributed` steps): this
 * rank, the number of ranks, and an in-place sum over the ranks. Checked here, and its failures made typed, once
 * for both callers.
 */
import { isThenable } from './callback_guard';
import { BackendError, ConfigError, OneForwardError } from './errors';
import { invalidArg, is } from './validate';

/** What distributed training needs from a communicator: this rank, the number of ranks, an in-place sum. */
export type Communicator = {
  /** This process's rank, in [0, size). */
  rank: number;
  /** The number of ranks. */
  size: number;
  /**
   * Replaces `values` on every rank by their elementwise sum over all ranks. `model.fit` also takes one that
   * returns a promise (resolved once `values` holds the sum); the `of.distributed` steps need it synchronous.
   */
  allreduceSum(values: Float32Array): void | Promise<void>;
  /** Ends every rank with `code`, so that an error on one rank does not leave the others waiting. Optional. */
  abort?(code?: number): never;
  /** Returns once every rank has called it. Optional. */
  barrier?(): void;
};

/** @internal A rank and a size that go together. */
export function checkRanks(rank: unknown, size: unknown): void {
  if (!is.positiveInteger(size)) throw invalidArg('size', 'positive integer', size);
  if (!is.integer(rank) || rank < 0 || rank >= size) throw invalidArg('rank', `integer in [0, ${size - 1}]`, rank);
}

/** @internal `value` as a communicator, or a ConfigError naming what is wrong (`name`: how the caller called it). */
export function checkCommunicator(name: string, value: unknown): Communicator {
  if (typeof value !== 'object' || value === null)
    throw invalidArg(name, 'a communicator { rank, size, allreduceSum }', value);
  const c = value as Record<string, unknown>;
  checkRanks(c.rank, c.size);
  if (!is.fn(c.allreduceSum)) throw invalidArg(`${name}.allreduceSum`, 'function', c.allreduceSum);
  for (const k of ['abort', 'barrier'])
    if (c[k] !== undefined && !is.fn(c[k])) throw invalidArg(`${name}.${k}`, 'function', c[k]);
  return value as Communicator;
}

// What a communicator threw (anything) as a BackendError keeping it as `cause`; oneforward's own errors (the MPI
// communicator's included) pass through.
function communicatorError(what: string, err: unknown): OneForwardError {
  if (err instanceof OneForwardError) return err;
  return new BackendError(`the communicator's ${what} failed: ${err instanceof Error ? err.message : String(err)}`, {
    cause: err,
  });
}

/** @internal A synchronous collective (the `of.distributed` steps): its failure typed, a promise refused. */
export function collective(what: string, f: () => unknown): void {
  let r: unknown;
  try {
    r = f();
  } catch (err) {
    throw communicatorError(what, err);
  }
  if (isThenable(r)) {
    Promise.resolve(r).then(undefined, () => undefined); // never unhandled
    throw new ConfigError(
      `the communicator's ${what} returned a promise: the of.distributed steps need a synchronous one (model.fit's distributed option takes either)`,
    );
  }
}

/**
 * @internal The all-reduce as native fit calls it: `done(undefined, values)` once `values` holds the sum,
 * `done(error)` when the communicator failed (fit then rejects with that error).
 */
export function nativeAllreduce(
  comm: Communicator,
): (values: Float32Array, done: (error?: unknown, values?: Float32Array) => void) => void {
  return (values, done) => {
    let r: unknown;
    try {
      r = comm.allreduceSum(values);
    } catch (err) {
      done(communicatorError('allreduceSum', err));
      return;
    }
    if (!isThenable(r)) return done(undefined, values);
    Promise.resolve(r).then(
      () => done(undefined, values),
      (err: unknown) => done(communicatorError('allreduceSum', err)),
    );
  };
}
