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
 * The communicator is an interface: `mpi()` gives MPI_COMM_WORLD under `mpirun` (the optional oneforward_mpi addon);
 * tests also use an in-process one.
 */
import * as fs from 'fs';
import * as path from 'path';
import { type Dataset, checkDataset, permutation, take } from './data';
import { type EsEstimator, type Estimator, type SpsaEstimator, type UlrEstimator, toNative, ulr } from './estimators';
import { Model } from './model';
import { type Optimizer, adam } from './optimizers';
import { BackendError, ConfigError, DisposedError, type ErrorCode, OneForwardError, errorClasses } from './errors';
import { checkKeys, invalidArg, is } from './validate';

/** What data-parallel training needs from a communicator: this rank, the number of ranks, an in-place sum. */
export type Communicator = {
  /** This process's rank, in [0, size). */
  rank: number;
  /** The number of ranks. */
  size: number;
  /** Replaces `values` on every rank by their elementwise sum over all ranks. */
  allreduceSum(values: Float32Array): void;
};

// Every entry point checks its arguments first: a malformed call is ERR_CONFIG, never a TypeError from inside.
function checkModel(model: unknown): Model {
  if (!(model instanceof Model)) throw invalidArg('model', 'a Model', model);
  if (!model._native) throw new DisposedError('this model has been disposed');
  return model;
}

function checkOptions(what: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw invalidArg(`${what} options`, 'an object', options);
  checkKeys(what, options, allowed);
  return options as Record<string, unknown>;
}

function checkRanks(rank: unknown, size: unknown): void {
  if (!is.positiveInteger(size)) throw invalidArg('size', 'positive integer', size);
  if (!is.integer(rank) || rank < 0 || rank >= size) throw invalidArg('rank', `integer in [0, ${size - 1}]`, rank);
}

function checkComm(comm: unknown): Communicator & { abort?(code?: number): never; barrier?(): void } {
  if (typeof comm !== 'object' || comm === null) throw invalidArg('comm', 'a communicator { rank, size, allreduceSum }', comm);
  const c = comm as Record<string, unknown>;
  checkRanks(c.rank, c.size);
  if (!is.fn(c.allreduceSum)) throw invalidArg('comm.allreduceSum', 'function', c.allreduceSum);
  for (const k of ['abort', 'barrier']) if (c[k] !== undefined && !is.fn(c[k])) throw invalidArg(`comm.${k}`, 'function', c[k]);
  return comm as Communicator;
}

// A user communicator that throws (anything) fails as a BackendError keeping the original as `cause`;
// oneforward's own errors (the MPI communicator's included) pass through.
function collective<T>(what: string, f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (err instanceof OneForwardError) throw err;
    throw new BackendError(`the communicator's ${what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

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
  const lo = Math.floor((rank * batch.rows) / size), hi = Math.floor(((rank + 1) * batch.rows) / size);
  return { batch: take(batch, Array.from({ length: hi - lo }, (_, i) => lo + i)), sampleOffset: lo };
}

/**
 * This rank's share of the gradient of the batch's mean loss: its shard's estimate times (shard rows / batch rows),
 * flat (`parameterCount` values). The sum over ranks is the whole batch's estimate. Zeros for an empty shard.
 */
export function dataParallelGradients(model: Model, batch: Dataset, options: { rank: number; size: number; estimator?: Estimator }): Float32Array {
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
export function dataParallelStep(model: Model, batch: Dataset, options: { comm: Communicator; estimator?: Estimator; optimizer?: Optimizer }): void {
  checkOptions('dataParallelStep', options, ['comm', 'estimator', 'optimizer']);
  const comm = checkComm(options.comm);
  const g = dataParallelGradients(model, batch, { rank: comm.rank, size: comm.size, ...(options.estimator ? { estimator: options.estimator } : {}) });
  collective('allreduceSum', () => comm.allreduceSum(g));
  model.applyGradients(g, { rows: batch.rows, ...(options.optimizer ? { optimizer: options.optimizer } : {}) });
}

/**
 * Seed replay (SPSA and ES): this rank's share of a step's perturbation losses, `2 · population` values (the losses
 * at θ + εz_p, then at θ − εz_p) with this rank's directions filled in and zeros elsewhere. Summed over ranks
 * (an all-reduce of 8·P bytes), they are all the losses, and {@link seedReplayUpdate} turns them into the same
 * update on every rank: no gradient is ever sent.
 */
export function seedReplayLosses(model: Model, batch: Dataset, options: { rank: number; size: number; estimator: SpsaEstimator | EsEstimator }): Float32Array {
  checkModel(model);
  checkDataset('batch', batch);
  const { rank, size, estimator } = checkOptions('seedReplayLosses', options, ['rank', 'size', 'estimator']) as typeof options;
  checkRanks(rank, size);
  const est = toNative(estimator);
  if (est.kind !== 'spsa' && est.kind !== 'es') throw invalidArg('estimator', 'of.spsa() or of.es()', estimator);
  const P = est.population!;
  const nat = model._native;
  if (!nat) throw new DisposedError('this model has been disposed');
  return nat.perturbationLosses(batch.x, batch.y, batch.rows, est, Math.floor((rank * P) / size), Math.floor(((rank + 1) * P) / size));
}

/** Seed replay: the update from all of a step's perturbation losses (the sum of every rank's {@link seedReplayLosses}). */
export function seedReplayUpdate(model: Model, losses: Float32Array, options: { estimator: SpsaEstimator | EsEstimator; optimizer?: Optimizer; rows: number }): void {
  checkModel(model);
  if (!is.float32Array(losses)) throw invalidArg('losses', 'Float32Array', losses);
  checkOptions('seedReplayUpdate', options, ['estimator', 'optimizer', 'rows']);
  if (!is.positiveInteger(options.rows)) throw invalidArg('rows', 'positive integer', options.rows);
  const nat = model._native;
  if (!nat) throw new DisposedError('this model has been disposed');
  nat.applyPerturbationUpdate(losses, toNative(options.estimator), options.optimizer ?? adam(), options.rows);
}

/** One seed-replay step (SPSA or ES) on `batch` (the same batch on every rank): disjoint directions, losses all-reduced, the same update everywhere. */
export function seedReplayStep(model: Model, batch: Dataset, options: { comm: Communicator; estimator: SpsaEstimator | EsEstimator; optimizer?: Optimizer }): void {
  checkOptions('seedReplayStep', options, ['comm', 'estimator', 'optimizer']);
  const comm = checkComm(options.comm);
  const losses = seedReplayLosses(model, batch, { rank: comm.rank, size: comm.size, estimator: options.estimator });
  collective('allreduceSum', () => comm.allreduceSum(losses));
  seedReplayUpdate(model, losses, { estimator: options.estimator, rows: batch.rows, ...(options.optimizer ? { optimizer: options.optimizer } : {}) });
}

/**
 * Copy-parallel ULR: the copies [k0, k1) of `rank` out of K = estimator.copies (whole antithetic pairs), at least 2
 * per rank.
 */
export function copySlice(estimator: UlrEstimator, rank: number, size: number): [number, number] {
  if (!is.plainObject(estimator) || estimator.kind !== 'ulr') throw invalidArg('estimator', 'of.ulr()', estimator);
  checkRanks(rank, size);
  if (typeof estimator.copies !== 'number') throw invalidArg('estimator.copies', 'one number of copies', estimator.copies);
  const K = estimator.copies, unit = estimator.antithetic ? 2 : 1, units = K / unit;
  if (units < size || K / size < 2) throw new ConfigError(`copy-parallel ULR needs at least 2 copies (whole pairs) per rank: ${K} copies over ${size} ranks`);
  return [unit * Math.floor((rank * units) / size), unit * Math.floor(((rank + 1) * units) / size)];
}

/**
 * Copy-parallel ULR, phase 1: the losses of this rank's copies of every sample (batch rows × K, zeros elsewhere;
 * a forward only). Summed over ranks (an all-reduce of 4·B·K bytes) they are every copy's loss.
 */
export function copyParallelLosses(model: Model, batch: Dataset, options: { rank: number; size: number; estimator: UlrEstimator }): Float32Array {
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
export function copyParallelGradients(model: Model, batch: Dataset, losses: Float32Array, options: { rank: number; size: number; estimator: UlrEstimator }): Float32Array {
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
export function copyParallelStep(model: Model, batch: Dataset, options: { comm: Communicator; estimator: UlrEstimator; optimizer?: Optimizer }): void {
  checkOptions('copyParallelStep', options, ['comm', 'estimator', 'optimizer']);
  const comm = checkComm(options.comm), { estimator } = options;
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
    const cls = typeof code === 'string' && Object.hasOwn(errorClasses, code) ? errorClasses[code as ErrorCode] : BackendError;
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
    if (!mpiAvailable()) throw new BackendError(`MPI support was not built (${mpiFile} is missing): install an MPI (Debian: apt-get install openmpi-bin libopenmpi-dev) and cmake, then run npx oneforward rebuild`);
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    mpiBinding = require(mpiFile) as MpiBinding;
  }
  const b = mpiBinding;
  const { rank, size, library } = typedMpi(() => b.init());
  return {
    rank, size, library,
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
  comm: Communicator & {
    /** Ends every rank with `code`, so that an error on one rank does not leave the others waiting. */
    abort?(code?: number): never;
    /** Returns once every rank has called it. */
    barrier?(): void;
  };
  /** The gradient estimator. Defaults to `ulr()`. */
  estimator?: Estimator;
  /** The optimizer. Defaults to `adam()`. */
  optimizer?: Optimizer;
  /** Passes over the training set. Defaults to `1`. */
  epochs?: number;
  /** Rows per step, over all ranks together. Defaults to `32`. */
  batchSize?: number;
  /** `'data'` (default; shards of every batch), `'copies'` (ULR: the copies split), `'seeds'` (SPSA/ES: seed replay). */
  mode?: 'data' | 'copies' | 'seeds';
  /** Evaluated on rank 0 after every epoch. */
  validation?: Dataset;
  /** Rank 0 saves a checkpoint here after every epoch; the other ranks wait for it. */
  checkpoint?: string;
  /** Called on rank 0 after every epoch. */
  onEpochEnd?: (e: { epoch: number; seconds: number; valLoss?: number; valAccuracy?: number }) => void;
};

/**
 * Training on every rank of `comm` (the same script under `mpirun`): every rank shuffles the same way (seeded by the
 * model's seed and the epoch), takes the same batches, and runs the chosen mode's step; rank 0 alone evaluates,
 * reports and writes checkpoints (any rank can load one to resume). An error on one rank aborts every rank with
 * that rank's message (MPI communicators), instead of leaving the others waiting in a collective.
 * @throws ConfigError (`ERR_CONFIG`) for a missing or malformed `options`/`comm`, model or data set (checked before
 * any step); the errors of {@link Model.gradients} for data that do not fit the model; BackendError (`ERR_BACKEND`)
 * when the communicator fails (what it threw is the `cause`); CheckpointError (`ERR_CHECKPOINT`) for `checkpoint`.
 */
export async function fitDistributed(
  model: Model,
  train: Dataset,
  options: DistributedFitOptions,
): Promise<{
  /** One entry per epoch, on every rank (the validation numbers on rank 0 only). */
  epochs: {
    /** The epoch number, from 1. */
    epoch: number;
    /** Wall-clock time of the epoch's steps, in seconds. */
    seconds: number;
    /** Mean loss on `validation`, when given. */
    valLoss?: number;
    /** Accuracy on `validation`, when given, in [0, 1]. */
    valAccuracy?: number;
  }[];
}> {
  checkModel(model);
  checkDataset('train', train);
  checkOptions('distributed.fit', options, ['comm', 'estimator', 'optimizer', 'epochs', 'batchSize', 'mode', 'validation', 'checkpoint', 'onEpochEnd']);
  const comm = checkComm(options.comm);
  if (options.validation !== undefined) checkDataset('validation', options.validation);
  if (options.checkpoint !== undefined && (!is.string(options.checkpoint) || options.checkpoint === '')) throw invalidArg('checkpoint', 'a file path', options.checkpoint);
  if (options.onEpochEnd !== undefined && !is.fn(options.onEpochEnd)) throw invalidArg('onEpochEnd', 'function', options.onEpochEnd);
  const estimator = options.estimator ?? ulr();
  toNative(estimator);  // checks it
  const mode = options.mode ?? (estimator.kind === 'spsa' || estimator.kind === 'es' ? 'seeds' : 'data');
  const epochs = options.epochs ?? 1, batchSize = options.batchSize ?? 32;
  if (!is.integer(epochs) || epochs < 0) throw invalidArg('epochs', 'integer >= 0', epochs);
  if (!is.positiveInteger(batchSize)) throw invalidArg('batchSize', 'positive integer', batchSize);
  if (!['data', 'copies', 'seeds'].includes(mode)) throw invalidArg('mode', "'data' | 'copies' | 'seeds'", mode);
  if (mode === 'copies' && estimator.kind !== 'ulr') throw new ConfigError("mode 'copies' needs ulr()");
  if (mode === 'seeds' && estimator.kind !== 'spsa' && estimator.kind !== 'es') throw new ConfigError("mode 'seeds' needs spsa() or es()");
  const out: { epoch: number; seconds: number; valLoss?: number; valAccuracy?: number }[] = [];
  const fail = (err: unknown): never => {
    process.stderr.write(`rank ${comm.rank}: ${(err as Error)?.stack ?? String(err)}\n`);
    if (comm.abort) comm.abort(1);
    throw err;
  };
  for (let epoch = 0; epoch < epochs; epoch++) {
    const t0 = Date.now();
    try {
      const order = permutation(train.rows, model.seed * 7919 + epoch);
      for (let r0 = 0; r0 < train.rows; r0 += batchSize) {
        const batch = take(train, Array.from(order.subarray(r0, Math.min(train.rows, r0 + batchSize))));
        const step = { comm, ...(options.optimizer ? { optimizer: options.optimizer } : {}) };
        if (mode === 'seeds') seedReplayStep(model, batch, { ...step, estimator: estimator as SpsaEstimator | EsEstimator });
        else if (mode === 'copies') copyParallelStep(model, batch, { ...step, estimator: estimator as UlrEstimator });
        else dataParallelStep(model, batch, { ...step, estimator });
      }
    } catch (err) {
      fail(err);
    }
    const e: { epoch: number; seconds: number; valLoss?: number; valAccuracy?: number } = { epoch: epoch + 1, seconds: (Date.now() - t0) / 1000 };
    if (comm.rank === 0) {
      try {
        if (options.validation) {
          const v = model.evaluate(options.validation);
          e.valLoss = v.loss, e.valAccuracy = v.accuracy;
        }
        if (options.checkpoint) await model.save(options.checkpoint);
        options.onEpochEnd?.(e);
      } catch (err) {
        fail(err);
      }
    }
    if (comm.barrier) collective('barrier', () => comm.barrier!());  // the others wait for rank 0's checkpoint
    out.push(e);
  }
  return { epochs: out };
}
