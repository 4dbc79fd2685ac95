/**
 * Model.fit, the one training loop: the options are checked here, then the epochs run natively on their own
 * thread (native/model/train.cpp), in one process or over the ranks of a communicator. This file turns the
 * callbacks, the AbortSignal, early stopping, validationSplit and the `distributed` option into that call's
 * arguments, and its epochs into a History. No math here.
 */
import { AbortError, ConfigError, DisposedError, withCallerStack } from './errors';
import { type Dataset, sliceRows } from './data';
import { EarlyStopping, type EarlyStoppingOptions } from './callbacks';
import { type Estimator, toNative, ulr } from './estimators';
import type { Model } from './model';
import type { EpochLog, BatchLog, LossFunction, NativeDistributed, Progress } from './native';
import { type Optimizer, adam } from './optimizers';
import { invalidArg, is, optionsObject } from './validate';
import { CallbackGuard } from './callback_guard';
import { type Communicator, checkCommunicator, nativeAllreduce } from './communicator';

/** What {@link Model.fit} resolves to. */
export type History = {
  /** One log per epoch trained, in order. */
  epochs: EpochLog[];
  /** The same numbers as columns, tfjs-style. */
  history: {
    /** Mean training loss per epoch. */
    loss: number[];
    /** Training accuracy per epoch. */
    accuracy: number[];
    /** Validation loss per epoch (empty without `validation`). */
    valLoss: number[];
    /** Validation accuracy per epoch (empty without `validation`). */
    valAccuracy: number[];
    /** exp(loss) per epoch (empty unless the loss is `crossEntropy`). */
    perplexity: number[];
    /** exp(valLoss) per epoch (empty without `validation` or unless the loss is `crossEntropy`). */
    valPerplexity: number[];
    /** The learning rate of each epoch's last update. */
    lr: number[];
  };
  /** With `earlyStopping`: the epoch (as in `epochs[].epoch`) after which it stopped training; undefined if it did not. */
  stoppedEpoch?: number;
  /** With `earlyStopping`: the epoch with the best monitored value (whose parameters `restoreBest` puts back). */
  bestEpoch?: number;
};

/**
 * Options of {@link Model.fit}. Callbacks (`onProgress`, `onEpochEnd`, `onBatchEnd`, `onDiverged`, `loss`) run on
 * the main thread. One rule for all of them: whatever a callback throws (an Error or any other value: a string,
 * `42`, `undefined`) stops training, and fit rejects with that same value, unwrapped. A callback that returns a
 * promise (an `async` one) is awaited before fit settles (training does not wait for it; fit waits as long as the
 * promise does, unless `signal` aborts, which rejects fit at once without waiting); if it rejects, training stops
 * and fit rejects with the rejection value. `loss` is the exception: it must be synchronous. A callback cannot use
 * the model it reports on (`ERR_BUSY`), except that `onEpochEnd` may read and save it (training waits for it).
 */
export type FitOptions = {
  /** Gradient estimator. Defaults to `of.ulr()`. */
  estimator?: Estimator;
  /** Optimizer. Defaults to `of.adam()`. */
  optimizer?: Optimizer;
  /** Passes over the training data. Defaults to `1`. */
  epochs?: number;
  /** Samples per step. Defaults to `32`. */
  batchSize?: number;
  /** Reshuffle every epoch (seeded by the model seed and epoch count). Defaults to `true`. */
  shuffle?: boolean;
  /** Evaluated (clean forward) after every epoch. */
  validation?: Dataset;
  /**
   * A fraction in (0, 1) of the training rows to hold out as `validation` instead: the last rows, taken before
   * any shuffling (as Keras does), floor(rows · (1 − validationSplit)) train. Not with `validation`. Defaults
   * to none.
   */
  validationSplit?: number;
  /**
   * Stops training when an epoch metric stops improving (Keras' EarlyStopping; see {@link EarlyStoppingOptions}).
   * It decides in the epoch callback, which runs before the next epoch starts, so training ends exactly at
   * that epoch: fit resolves (no AbortError), `History.stoppedEpoch` says where. Defaults to off.
   */
  earlyStopping?: EarlyStoppingOptions;
  /** Called with progress at most ~10 times a second. Throwing stops training; fit rejects with the thrown value. */
  onProgress?: (p: Progress) => void;
  /**
   * Called after every epoch, before the next one starts (training waits for it to return, so it may read the
   * parameters, or save the model: `model.save` takes its snapshot before it returns). Throwing (or a returned
   * promise rejecting) stops training; fit rejects with that value.
   */
  onEpochEnd?: (e: EpochLog) => void;
  /**
   * Called after every optimizer step, in order, none dropped, with that batch's loss and learning rate. Calls
   * are queued from the training thread (at most 1024 waiting: beyond that, training waits for JS to catch up),
   * so they may run a few steps behind training. Throwing stops training; fit rejects with that error. Without it
   * no per-batch work is done; with it, a device waits for each step's loss. Defaults to none.
   */
  onBatchEnd?: (b: BatchLog) => void;
  /**
   * Called once if training diverges (a non-finite loss), with the reason and where, before fit rejects with
   * a `NumericError`; the parameters are those of the last good step.
   */
  onDiverged?: (d: { reason: string; epoch: number; step: number }) => void;
  /**
   * Stop as diverged (an "exploding update": `onDiverged`, then a `NumericError`) when a step's gradient norm
   * exceeds this, before the update is applied. Costs one pass over the gradients per step. Defaults to off.
   */
  maxGradNorm?: number;
  /**
   * Cancels training; fit rejects with an `AbortError`. On the CPU a cancel also stops the step in flight within
   * one of its tasks (a block of rows, a GEMM tile), so a large step does not run to its end first; that step is
   * dropped whole, never half-applied: the model keeps the parameters (and optimizer state) of its last completed
   * step. On a device the step in flight completes first. fit then rejects without waiting for a callback's
   * pending promise.
   */
  signal?: AbortSignal;
  /**
   * Continue where this model's training stopped (typically after `of.load`): `epochs` is then the total to
   * reach, counting the epochs already done, and an epoch cut short by a cancel continues at its next batch.
   * The result is bit-identical to an uninterrupted run with the same seed. Defaults to `false` (`epochs`
   * more epochs, each from its start).
   */
  resume?: boolean;
  /**
   * A black-box per-row loss computed in JS instead of the model's built-in loss, for training only
   * (evaluation and `validation` keep the built-in one). ULR needs only its values; `bp()` refuses it. It
   * costs one JS round trip per step: the training thread waits while the event loop runs the function. It must
   * be synchronous: a promise it returns (an `async` loss) stops training with a DataError (`ERR_DATA`).
   */
  loss?: LossFunction;
  /**
   * Trains on every rank of a communicator (see {@link DistributedOptions}): call fit with the same model (same
   * seed and state), data and options on every rank. Defaults to one process.
   */
  distributed?: DistributedOptions;
};

/**
 * How a distributed fit splits each step over the ranks. `'data'`: every rank estimates its contiguous shard of the
 * batch (bp, ulr). `'copies'`: every rank runs its slice of ULR's K copies of every sample (at least 2, whole
 * antithetic pairs, per rank). `'seeds'`: every rank evaluates its slice of the SPSA / ES directions, and only
 * their losses are exchanged.
 */
export const DISTRIBUTED_MODES = ['data', 'copies', 'seeds'] as const;
/** One of {@link DISTRIBUTED_MODES}. */
export type DistributedMode = (typeof DISTRIBUTED_MODES)[number];

/**
 * The `distributed` option of {@link Model.fit}. Every rank runs fit's own loop on the same data set, so the ranks
 * shuffle alike and take the batches in the single-process order; per step each rank computes its part (`mode`),
 * an all-reduce (two for `'copies'`) joins the parts, and every rank applies the same update. The replicas stay
 * bit-identical to each other. With one rank, modes `'data'` and `'seeds'` train bit for bit as fit without the
 * option; with R ranks, `'data'` equals one process up to the order of the float sums and `'seeds'` equals it bit
 * for bit. Every rank validates and calls its own callbacks (the same numbers everywhere, so early stopping stops
 * every rank at the same epoch). A cancel or an error on one rank stops every rank at the same step (the others
 * reject with an `AbortError`). Before the first step the ranks compare their data set size, options, counters and
 * parameters: a mismatch is a ConfigError on every rank, not a hang. Not supported distributed (ConfigError): with
 * `'data'`, ULR's layer-wise injection, modules, qmc, learnSigma and the running baseline, and batchNorm on several
 * ranks; with `'copies'`, a loss function and baselines other than loo, mean and none; with `'seeds'`, maxGradNorm.
 */
export type DistributedOptions = {
  /** The ranks: `of.distributed.mpi()` under `mpirun`, or any `{ rank, size, allreduceSum }` (it may be async). */
  communicator: Communicator;
  /** How a step is split over the ranks. Defaults to `'seeds'` for `spsa()` and `es()`, else `'data'`. */
  mode?: DistributedMode;
};

// The `distributed` option as the native fit takes it.
function distributedConfig(value: unknown, estimator: Estimator): NativeDistributed {
  const o = optionsObject('distributed', value, ['communicator', 'mode']);
  const comm = checkCommunicator('distributed.communicator', o.communicator);
  const mode = o.mode ?? (estimator.kind === 'spsa' || estimator.kind === 'es' ? 'seeds' : 'data');
  if (!(DISTRIBUTED_MODES as readonly unknown[]).includes(mode))
    throw invalidArg('distributed.mode', DISTRIBUTED_MODES.join(' | '), mode);
  return { rank: comm.rank, size: comm.size, mode: mode as DistributedMode, allreduce: nativeAllreduce(comm) };
}

/** @internal {@link Model.fit}; `stack` is the caller's (a rejection keeps it). */
export async function fitModel(
  model: Model,
  train: Dataset,
  options: FitOptions | undefined,
  stack: string | undefined,
): Promise<History> {
  const o = optionsObject('fit', options, [
    'estimator',
    'optimizer',
    'epochs',
    'batchSize',
    'shuffle',
    'validation',
    'onProgress',
    'onEpochEnd',
    'onDiverged',
    'signal',
    'resume',
    'loss',
    'maxGradNorm',
    'validationSplit',
    'earlyStopping',
    'onBatchEnd',
    'distributed',
  ]) as FitOptions;
  const nat = model._native;
  if (!nat) throw new DisposedError('this model has been disposed');
  model.checkData('train', train);
  if (o.validation !== undefined) model.checkData('validation', o.validation);
  let v = o.validation;
  if (o.validationSplit !== undefined) {
    const split = o.validationSplit;
    if (!(is.number(split) && split > 0 && split < 1)) throw invalidArg('validationSplit', 'number in (0, 1)', split);
    if (v !== undefined) throw new ConfigError('give validation or validationSplit, not both');
    const keep = Math.floor(train.rows * (1 - split)); // Keras' split point
    if (keep < 1 || keep >= train.rows) {
      throw new ConfigError(
        `validationSplit ${split} of ${train.rows} rows leaves ${keep} to train on and ${train.rows - keep} to validate; each needs at least 1`,
      );
    }
    v = sliceRows(train, keep, train.rows);
    train = sliceRows(train, 0, keep);
  }
  const stopper =
    o.earlyStopping !== undefined ? new EarlyStopping(o.earlyStopping, v !== undefined, model.loss) : undefined;
  const epochs = o.epochs ?? 1;
  const batchSize = o.batchSize ?? 32;
  if (!is.integer(epochs) || epochs < 0) throw invalidArg('epochs', 'integer >= 0', epochs);
  if (!is.positiveInteger(batchSize)) throw invalidArg('batchSize', 'positive integer', batchSize);
  if (o.shuffle !== undefined && !is.bool(o.shuffle)) throw invalidArg('shuffle', 'boolean', o.shuffle);
  if (o.resume !== undefined && !is.bool(o.resume)) throw invalidArg('resume', 'boolean', o.resume);
  if (o.maxGradNorm !== undefined && !is.positive(o.maxGradNorm))
    throw invalidArg('maxGradNorm', 'positive number', o.maxGradNorm);
  for (const k of ['onProgress', 'onEpochEnd', 'onDiverged', 'onBatchEnd', 'loss'] as const) {
    if (o[k] !== undefined && typeof o[k] !== 'function') throw invalidArg(k, 'function', o[k]);
  }
  if (o.resume) {
    // An epoch cut short continues at its next batch: with fewer batches now, it would be an empty epoch (loss 0).
    const { epochStep = 0, epochs: done = 0 } = nat.state();
    const steps = Math.ceil(train.rows / Math.min(batchSize, train.rows));
    if (epochStep >= steps && done < epochs) {
      throw new ConfigError(
        `resume: the interrupted epoch had run ${epochStep} batches, but ${train.rows} rows in batches of ${batchSize} make only ${steps}; resume with the data set and batchSize of the interrupted run, or fit without resume`,
      );
    }
  }
  const signal = o.signal;
  if (signal !== undefined && !(signal instanceof AbortSignal)) throw invalidArg('signal', 'AbortSignal', signal);
  if (signal?.aborted) throw new AbortError('training was cancelled before it started');
  const estimator = toNative(o.estimator ?? ulr());
  const optimizer = o.optimizer ?? adam();
  const distributed = o.distributed !== undefined ? distributedConfig(o.distributed, o.estimator ?? ulr()) : undefined;
  const epochsOut: EpochLog[] = [];
  let best: Float32Array[] | undefined; // restoreBest: the parameters after the best epoch
  const onAbort = () => nat.cancel();
  const callbacks = new CallbackGuard(() => nat.cancel());
  const onEpochEnd = callbacks.wrap(o.onEpochEnd);
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await nat.fit(
      train.x,
      train.y,
      train.rows,
      v ? v.x : null,
      v ? v.y : null,
      v ? v.rows : 0,
      {
        epochs,
        batchSize,
        shuffle: o.shuffle ?? true,
        resume: o.resume ?? false,
        estimator,
        optimizer,
        ...(o.loss ? { loss: callbacks.wrapLoss(o.loss) } : {}),
        ...(o.onDiverged ? { onDiverged: callbacks.wrap(o.onDiverged)! } : {}),
        ...(o.onBatchEnd ? { onBatchEnd: callbacks.wrap(o.onBatchEnd)! } : {}),
        ...(o.maxGradNorm ? { maxGradNorm: o.maxGradNorm } : {}),
        ...(distributed ? { distributed } : {}),
      },
      callbacks.wrap(o.onProgress) ?? null,
      (e) => {
        if (stopper?.stoppedEpoch !== undefined) return;
        if (model.loss === 'crossEntropy') {
          e.perplexity = Math.exp(e.loss);
          if (e.valLoss !== undefined) e.valPerplexity = Math.exp(e.valLoss);
        }
        epochsOut.push(e);
        onEpochEnd?.(e);
        if (!stopper) return;
        const { improved, stop } = stopper.update(e);
        // The training thread waits while this runs: the parameters are those of this epoch's end.
        if (improved && stopper.restoreBest) best = nat.parameters().map((p) => p.data.slice());
        if (stop) nat.cancel(); // seen before the next epoch's first step
      },
    );
  } catch (err) {
    // A callback's rejection cancelled the run: it is the reason, not the AbortError. After an abort, promises
    // still pending are not waited for.
    await callbacks.settle(signal);
    // Our own cancel (early stopping) ends fit normally; the user's abort still rejects.
    const ours = err instanceof AbortError && stopper?.stoppedEpoch !== undefined && !signal?.aborted;
    // A value a callback or the loss threw is the rejection as is; only the library's own errors get the stack.
    if (!ours) throw callbacks.isUserValue(err) ? err : withCallerStack(err, stack);
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
  await callbacks.settle(signal);
  if (best) nat.parameters().forEach((p, i) => p.data.set(best![i]!));
  const col = (k: keyof EpochLog) => epochsOut.map((e) => e[k]).filter((x): x is number => typeof x === 'number');
  const history: History = {
    epochs: epochsOut,
    history: {
      loss: col('loss'),
      accuracy: col('accuracy'),
      valLoss: col('valLoss'),
      valAccuracy: col('valAccuracy'),
      perplexity: col('perplexity'),
      valPerplexity: col('valPerplexity'),
      lr: col('lr'),
    },
  };
  if (stopper) {
    if (stopper.stoppedEpoch !== undefined) history.stoppedEpoch = stopper.stoppedEpoch;
    if (stopper.bestEpoch !== undefined) history.bestEpoch = stopper.bestEpoch;
  }
  return history;
}
