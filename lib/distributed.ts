/**
 * The steps of distributed training over any communicator, one at a time (model.fit's `distributed` option runs
 * them in fit's own loop; `fit` here is its alias). Data-parallel: every rank holds the same model (same seed)
 * and takes a contiguous shard of every batch; it estimates the gradient of its shard with the noise rows a single
 * process would use for those samples (`sampleOffset`), scales it by its share of the batch, all-reduces the sum,
 * and applies the same update. The result equals one process training on the whole batch up to the order of the
 * floating-point sums (bit-identical BP and ULR noise; the baseline of ULR is per sample, so sharding by whole
 * samples leaves it unchanged).
 *
 * Communication per step: one all-reduce of `parameterCount` float32 values (4 bytes each).
 *
 * The communicator is an interface: `mpi()` gives MPI_COMM_WORLD under `mpirun` (the optional oneforward_mpi addon);
 * tests also use an in-process one.
 */
import * as fs from 'fs';
import * as path from 'path';
import { type Dataset, checkDataset, take } from './data';
import { type EsEstimator, type Estimator, type SpsaEstimator, type UlrEstimator, toNative, ulr } from './estimators';
import { Model } from './model';
import type { DistributedMode, History } from './fit';
import type { BatchLog, EpochLog } from './native';
import { type Optimizer, adam } from './optimizers';
import {
  AbortError,
  BackendError,
  ConfigError,
  DisposedError,
  type ErrorCode,
  OneForwardError,
  errorClasses,
} from './errors';
import { checkKeys, invalidArg, is } from './validate';
import { type Communicator, checkCommunicator, checkRanks, collective } from './communicator';

export type { Communicator };

// Every entry point checks its arguments first: a malformed call is ERR_CONFIG, never a TypeError from inside.
function checkModel(model: unknown): Model {
  if (!(model instanceof Model)) throw invalidArg('model', 'a Model', model);
  if (!model._native) throw new DisposedError('this model has been disposed');
  return model;
}

function checkOptions(what: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof options !== 'object' || options === null || Array.isArray(options))
    throw invalidArg(`${what} options`, 'an object', options);
  checkKeys(what, options, allowed);
  return options as Record<string, unknown>;
}

const checkComm = (comm: unknown): Communicator => checkCommunicator('comm', comm);

/** The contiguous rows of `batch` that `rank` of `size` takes, and the index of its first sample. */
export function shard(
  batch: Dataset,
  rank: number,
  size: number,
): {
  /** This rank's rows. */
  batch: Dataset;
  /** The index, in `batch`, of its first row. */
  sampleOffset: number;
} {
  checkDataset('batch', batch);
  checkRanks(rank, size);
  const lo = Math.floor((rank * batch.rows) / size),
    hi = Math.floor(((rank + 1) * batch.rows) / size);
  return {
    batch: take(
      batch,
      Array.from({ length: hi - lo }, (_, i) => lo + i),
    ),
    sampleOffset: lo,
  };
}

/**
 * This rank's share of the gradient of the batch's mean loss: its shard's estimate times (shard rows / batch rows),
 * flat (`parameterCount` values). The sum over ranks is the whole batch's estimate. Zeros for an empty shard.
 */
export function dataParallelGradients(
  model: Model,
  batch: Dataset,
  options: { rank: number; size: number; estimator?: Estimator },
): Float32Array {
  checkModel(model);
  checkOptions('dataParallelGradients', options, ['rank', 'size', 'estimator']);
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

/**
 * One data-parallel step on `batch` (the same batch on every rank): shard, estimate, all-reduce, update.
 * @throws ConfigError (`ERR_CONFIG`) for malformed arguments; BackendError (`ERR_BACKEND`) when `comm` fails.
 */
export function dataParallelStep(
  model: Model,
  batch: Dataset,
  options: { comm: Communicator; estimator?: Estimator; optimizer?: Optimizer },
): void {
  checkOptions('dataParallelStep', options, ['comm', 'estimator', 'optimizer']);
  const comm = checkComm(options.comm);
  const g = dataParallelGradients(model, batch, {
    rank: comm.rank,
    size: comm.size,
    ...(options.estimator ? { estimator: options.estimator } : {}),
  });
  collective('allreduceSum', () => comm.allreduceSum(g));
  model.applyGradients(g, { rows: batch.rows, ...(options.optimizer ? { optimizer: options.optimizer } : {}) });
}

/**
 * Seed replay (SPSA and ES): this rank's share of a step's perturbation losses, `2 · population` values (the losses
 * at θ + εz_p, then at θ − εz_p) with this rank's directions filled in and zeros elsewhere. Summed over ranks
 * (an all-reduce of 8·P bytes), they are all the losses, and {@link seedReplayUpdate} turns them into the same
 * update on every rank: no gradient is ever sent.
 */
export function seedReplayLosses(
  model: Model,
  batch: Dataset,
  options: { rank: number; size: number; estimator: SpsaEstimator | EsEstimator },
): Float32Array {
  checkModel(model);
  checkDataset('batch', batch);
  const { rank, size, estimator } = checkOptions('seedReplayLosses', options, [
    'rank',
    'size',
    'estimator',
  ]) as typeof options;
  checkRanks(rank, size);
  const est = toNative(estimator);
  if (est.kind !== 'spsa' && est.kind !== 'es') throw invalidArg('estimator', 'of.spsa() or of.es()', estimator);
  const P = est.population!;
  const nat = model._native;
  if (!nat) throw new DisposedError('this model has been disposed');
  return nat.perturbationLosses(
    batch.x,
    batch.y,
    batch.rows,
    est,
    Math.floor((rank * P) / size),
    Math.floor(((rank + 1) * P) / size),
  );
}

/** Seed replay: the update from all of a step's perturbation losses (the sum of every rank's {@link seedReplayLosses}). */
export function seedReplayUpdate(
  model: Model,
  losses: Float32Array,
  options: { estimator: SpsaEstimator | EsEstimator; optimizer?: Optimizer; rows: number },
): void {
  checkModel(model);
  if (!is.float32Array(losses)) throw invalidArg('losses', 'Float32Array', losses);
  checkOptions('seedReplayUpdate', options, ['estimator', 'optimizer', 'rows']);
  if (!is.positiveInteger(options.rows)) throw invalidArg('rows', 'positive integer', options.rows);
  const nat = model._native;
  if (!nat) throw new DisposedError('this model has been disposed');
  nat.applyPerturbationUpdate(losses, toNative(options.estimator), options.optimizer ?? adam(), options.rows);
}

/** One seed-replay step (SPSA or ES) on `batch` (the same batch on every rank): disjoint directions, losses all-reduced, the same update everywhere. */
export function seedReplayStep(
  model: Model,
  batch: Dataset,
  options: { comm: Communicator; estimator: SpsaEstimator | EsEstimator; optimizer?: Optimizer },
): void {
  checkOptions('seedReplayStep', options, ['comm', 'estimator', 'optimizer']);
  const comm = checkComm(options.comm);
  const losses = seedReplayLosses(model, batch, { rank: comm.rank, size: comm.size, estimator: options.estimator });
  collective('allreduceSum', () => comm.allreduceSum(losses));
  seedReplayUpdate(model, losses, {
    estimator: options.estimator,
    rows: batch.rows,
    ...(options.optimizer ? { optimizer: options.optimizer } : {}),
  });
}

/**
 * Copy-parallel ULR: the copies [k0, k1) of `rank` out of K = estimator.copies (whole antithetic pairs), at least 2
 * per rank.
 */
export function copySlice(estimator: UlrEstimator, rank: number, size: number): [number, number] {
  if (!is.plainObject(estimator) || estimator.kind !== 'ulr') throw invalidArg('estimator', 'of.ulr()', estimator);
  checkRanks(rank, size);
  if (typeof estimator.copies !== 'number')
    throw invalidArg('estimator.copies', 'one number of copies', estimator.copies);
  const K = estimator.copies,
    unit = estimator.antithetic ? 2 : 1,
    units = K / unit;
  if (units < size || K / size < 2)
    throw new ConfigError(
      `copy-parallel ULR needs at least 2 copies (whole pairs) per rank: ${K} copies over ${size} ranks`,
    );
  return [unit * Math.floor((rank * units) / size), unit * Math.floor(((rank + 1) * units) / size)];
}

/**
 * Copy-parallel ULR, phase 1: the losses of this rank's copies of every sample (batch rows × K, zeros elsewhere;
 * a forward only). Summed over ranks (an all-reduce of 4·B·K bytes) they are every copy's loss.
 */
export function copyParallelLosses(
  model: Model,
  batch: Dataset,
  options: { rank: number; size: number; estimator: UlrEstimator },
): Float32Array {
  checkModel(model);
  checkDataset('batch', batch);
  checkOptions('copyParallelLosses', options, ['rank', 'size', 'estimator']);
  const [k0, k1] = copySlice(options.estimator, options.rank, options.size);
  const nat = model._native;
  if (!nat) throw new DisposedError('this model has been disposed');
  return nat.copyLosses(batch.x, batch.y, batch.rows, toNative(options.estimator), k0, k1);
}

/**
 * Copy-parallel ULR, phase 2: this rank's share of the estimate (`parameterCount` values) from its copies, with
 * row weights (the leave-one-out baseline over all K copies) from every copy's loss. Summed over ranks, it is the
 * single-process estimate up to the order of float sums.
 */
export function copyParallelGradients(
  model: Model,
  batch: Dataset,
  losses: Float32Array,
  options: { rank: number; size: number; estimator: UlrEstimator },
): Float32Array {
  checkModel(model);
  checkDataset('batch', batch);
  if (!is.float32Array(losses)) throw invalidArg('losses', 'Float32Array', losses);
  checkOptions('copyParallelGradients', options, ['rank', 'size', 'estimator']);
  const [k0, k1] = copySlice(options.estimator, options.rank, options.size);
  const nat = model._native;
  if (!nat) throw new DisposedError('this model has been disposed');
  return nat.copyGradients(batch.x, batch.y, batch.rows, toNative(options.estimator), k0, k1, losses);
}

/**
 * One copy-parallel ULR step (the same batch on every rank; the K copies split over the ranks): losses all-reduced,
 * then the gradient shares all-reduced, then the same update everywhere. Lets K grow with the number of ranks.
 */
export function copyParallelStep(
  model: Model,
  batch: Dataset,
  options: { comm: Communicator; estimator: UlrEstimator; optimizer?: Optimizer },
): void {
  checkOptions('copyParallelStep', options, ['comm', 'estimator', 'optimizer']);
  const comm = checkComm(options.comm),
    { estimator } = options;
  const losses = copyParallelLosses(model, batch, { rank: comm.rank, size: comm.size, estimator });
  collective('allreduceSum', () => comm.allreduceSum(losses));
  const g = copyParallelGradients(model, batch, losses, { rank: comm.rank, size: comm.size, estimator });
  collective('allreduceSum', () => comm.allreduceSum(g));
  model.applyGradients(g, { rows: batch.rows, ...(options.optimizer ? { optimizer: options.optimizer } : {}) });
}

/** An MPI communicator on MPI_COMM_WORLD (the `oneforward_mpi` addon). */
export type MpiCommunicator = Communicator & {
  /** The MPI library's version string. */
  library: string;
  /** Every rank's `values` concatenated in rank order (each rank passes the same length). */
  allgather(values: Float32Array): Float32Array;
  /**
   * Overwrites `values` on every rank with rank `root`'s. `root` (a rank, an integer in [0, size)) defaults to `0`.
   * @throws ConfigError (`ERR_CONFIG`) for a `root` that is not such a rank.
   */
  broadcast(values: Float32Array, root?: number): void;
  /** Returns once every rank has called it. */
  barrier(): void;
  /** Ends the whole job, every rank, with `code` (for an error on one rank). */
  abort(code?: number): never;
  /** Shuts MPI down (idempotent). Any later call on a communicator, or `mpi()`, throws `ERR_DISPOSED`. */
  finalize(): void;
};

type MpiBinding = {
  init(): { rank: number; size: number; library: string };
  allreduceSum(v: Float32Array): void;
  allgather(v: Float32Array): Float32Array;
  broadcast(v: Float32Array, root: number): void;
  barrier(): void;
  abort(code: number): never;
  finalize(): void;
};

let mpiBinding: MpiBinding | undefined;
const mpiFile = path.join(__dirname, '..', '..', 'build', 'Release', 'oneforward_mpi.node');

// The MPI addon throws plain errors with a `code` (ERR_BACKEND; ERR_DISPOSED after finalize()): rethrown as the
// library's classes, so `instanceof OneForwardError` holds as for the main addon.
function typedMpi<T>(call: () => T): T {
  try {
    return call();
  } catch (err) {
    if (err instanceof OneForwardError) throw err;
    // A code the library does not know (or none) is still a backend failure: never an untyped error.
    const code = (err as { code?: unknown })?.code;
    const cls =
      typeof code === 'string' && Object.hasOwn(errorClasses, code) ? errorClasses[code as ErrorCode] : BackendError;
    throw new cls(err instanceof Error ? err.message : String(err), { cause: err });
  }
}

/** Whether the MPI addon was built (an MPI was found at install time). */
export function mpiAvailable(): boolean {
  return fs.existsSync(mpiFile);
}

/**
 * Initializes MPI (once) and returns the MPI_COMM_WORLD communicator. Under `mpirun -np N node script.js`
 * every rank gets its rank and N; run alone it is rank 0 of 1. Throws ERR_BACKEND when the MPI addon was not
 * built (install an MPI and cmake, e.g. Debian's openmpi-bin, libopenmpi-dev and cmake, then `npx oneforward rebuild`).
 */
export function mpi(): MpiCommunicator {
  if (!mpiBinding) {
    if (!mpiAvailable())
      throw new BackendError(
        `MPI support was not built (${mpiFile} is missing): install an MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) and cmake, then run npx oneforward rebuild`,
      );
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mpiBinding = require(mpiFile) as MpiBinding;
  }
  const b = mpiBinding;
  const { rank, size, library } = typedMpi(() => b.init());
  return {
    rank,
    size,
    library,
    allreduceSum: (v) => typedMpi(() => b.allreduceSum(v)),
    allgather: (v) => typedMpi(() => b.allgather(v)),
    broadcast: (v, root = 0) => {
      // The addon would read NaN or 1.5 as rank 0: a bad root is an argument error, not a broadcast from 0.
      if (!is.integer(root) || root < 0 || root >= size) throw invalidArg('root', `integer in [0, ${size})`, root);
      return typedMpi(() => b.broadcast(v, root));
    },
    barrier: () => typedMpi(() => b.barrier()),
    abort: (code = 1) => typedMpi(() => b.abort(code)),
    finalize: () => typedMpi(() => b.finalize()),
  };
}

/** Options of {@link fitDistributed}. */
export type DistributedFitOptions = {
  /** The ranks to train on; `abort` and `barrier` are used where present (an {@link MpiCommunicator} has them). */
  comm: Communicator;
  /** The gradient estimator. Defaults to `ulr()`. */
  estimator?: Estimator;
  /** The optimizer. Defaults to `adam()`. */
  optimizer?: Optimizer;
  /** Passes over the training set. Defaults to `1`. */
  epochs?: number;
  /** Rows per step, over all ranks together. Defaults to `32`. */
  batchSize?: number;
  /** `'data'` (shards of every batch), `'copies'` (ULR: the copies split), `'seeds'` (SPSA/ES: seed replay). Defaults to `'seeds'` for `spsa()` and `es()`, else `'data'`. */
  mode?: DistributedMode;
  /** Evaluated on rank 0 after every epoch. */
  validation?: Dataset;
  /** Rank 0 saves a checkpoint here after every epoch; fit resolves on every rank once the last one is written. */
  checkpoint?: string;
  /** Called on rank 0 after every epoch. */
  onEpochEnd?: (e: EpochLog) => void;
  /** Called on rank 0 after every step, with the whole batch's loss (see `FitOptions.onBatchEnd`). */
  onBatchEnd?: (b: BatchLog) => void;
};

/**
 * Training on every rank of `comm` (the same script under `mpirun`): `model.fit(train, { ..., distributed:
 * { communicator: comm, mode } })`, with rank 0 alone validating, reporting and writing the checkpoints (any rank
 * can load one to resume). The batches are those of fit without the option, in its order. An error on one rank
 * aborts every rank with that rank's message (communicators with `abort`, such as MPI's), and rejects elsewhere.
 * @throws ConfigError (`ERR_CONFIG`) for a missing or malformed `options`/`comm`, model or data set (checked before
 * any step), and fit's errors; BackendError (`ERR_BACKEND`) when the communicator fails (what it threw is the
 * `cause`); CheckpointError (`ERR_CHECKPOINT`) for `checkpoint`.
 */
export async function fitDistributed(model: Model, train: Dataset, options: DistributedFitOptions): Promise<History> {
  checkModel(model);
  checkDataset('train', train);
  const o = checkOptions('distributed.fit', options, [
    'comm',
    'estimator',
    'optimizer',
    'epochs',
    'batchSize',
    'mode',
    'validation',
    'checkpoint',
    'onEpochEnd',
    'onBatchEnd',
  ]) as DistributedFitOptions;
  const comm = checkComm(o.comm);
  const file = o.checkpoint;
  if (file !== undefined && (!is.string(file) || file === '')) throw invalidArg('checkpoint', 'a file path', file);
  if (o.onEpochEnd !== undefined && !is.fn(o.onEpochEnd)) throw invalidArg('onEpochEnd', 'function', o.onEpochEnd);
  const rank0 = comm.rank === 0;
  // save() takes its snapshot before it returns, while training waits for the epoch callback; fit awaits the write.
  const onEpochEnd =
    rank0 && (file || o.onEpochEnd)
      ? (e: EpochLog) => {
          const saved = file ? model.save(file) : undefined;
          o.onEpochEnd?.(e);
          return saved;
        }
      : undefined;
  try {
    const history = await model.fit(train, {
      ...(o.estimator ? { estimator: o.estimator } : {}),
      ...(o.optimizer ? { optimizer: o.optimizer } : {}),
      ...(o.epochs !== undefined ? { epochs: o.epochs } : {}),
      ...(o.batchSize !== undefined ? { batchSize: o.batchSize } : {}),
      ...(rank0 && o.validation ? { validation: o.validation } : {}),
      ...(onEpochEnd ? { onEpochEnd } : {}),
      ...(rank0 && o.onBatchEnd ? { onBatchEnd: o.onBatchEnd } : {}),
      distributed: { communicator: comm, ...(o.mode !== undefined ? { mode: o.mode } : {}) },
    });
    if (comm.barrier) collective('barrier', () => comm.barrier!()); // the others return once rank 0's last checkpoint is written
    return history;
  } catch (err) {
    // The rank where it failed ends the job (the others, stopped at the same step, reject with an AbortError)
    if (comm.abort && !(err instanceof AbortError)) {
      process.stderr.write(`rank ${comm.rank}: ${(err as Error)?.stack ?? String(err)}\n`);
      comm.abort(1);
    }
    throw err;
  }
}
