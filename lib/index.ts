/**
 * oneforward: train neural networks without backpropagation (the unified likelihood-ratio method), with an
 * exact-backprop baseline in the same native engine. Public exports only.
 */
export { sequential, Model, LOSSES } from './model';
export { load } from './checkpoint';
export { withAdapters } from './adapters';
export type { WithAdaptersOptions } from './adapters';
export { readSafetensors, writeSafetensors } from './safetensors';
export type { Tensor } from './safetensors';
export type {
  SequentialOptions,
  ModelBackend,
  EpochLog,
  Progress,
  BatchLog,
  Parameter,
  LossName,
  LossFunction,
  GradientCheck,
  MemoryEstimate,
  Evaluation,
  GenerateOptions,
} from './model';
export type { FitOptions, History, DistributedOptions, DistributedMode } from './fit';
export { DISTRIBUTED_MODES } from './fit';
export * from './layers/index';
export { bp, ulr, spsa, es, BASELINES, DENSITIES, SCORES, INJECTIONS, PRECISIONS } from './estimators';
export type {
  Estimator,
  BpEstimator,
  SpsaEstimator,
  EsEstimator,
  UlrEstimator,
  UlrOptions,
  BaselineName,
  DensityName,
  ScoreName,
  InjectionName,
  PrecisionName,
  SigmaSchedule,
} from './estimators';
export { sgd, adam, adamw } from './optimizers';
export type { Optimizer, SgdOptions, AdamOptions } from './optimizers';
export { SCHEDULES } from './schedules';
export type {
  Schedule,
  ScheduleKind,
  WarmupOptions,
  StepScheduleOptions,
  ExponentialScheduleOptions,
  CosineScheduleOptions,
} from './schedules';
export {
  OneForwardError,
  ShapeError,
  ConfigError,
  DataError,
  BackendError,
  CheckpointError,
  AbortError,
  NumericError,
  OutOfMemoryError,
  DisposedError,
  BusyError,
  ERROR_CODES,
} from './errors';
export type { ErrorCode } from './errors';
export type { Dataset } from './data';
export type { CsvOptions } from './loaders';
export type { GraphTask } from './datasets';
export type { FromArraysOptions, LabelKind } from './from_arrays';
export { LABEL_KINDS } from './from_arrays';
export { CharVocab, CORPORA } from './text';
export type { CharVocabJSON, CorpusName, TokenData, TokenOptions, TokenSplit } from './text';
export { MONITORS } from './callbacks';
export type { EarlyStoppingOptions, Monitor } from './callbacks';
import * as dataModule from './data';
import * as datasetsModule from './datasets';
import * as loadersModule from './loaders';
import * as fromArraysModule from './from_arrays';
import * as textModule from './text';
import * as backendModule from './backend';
import * as reportModule from './report';
import * as robustnessModule from './robustness';
import * as distributedModule from './distributed';
import * as schedulesModule from './schedules';

/**
 * Shipped data sets (nothing is downloaded).
 * @namespace
 */
export const datasets = {
  /** 10,000 MNIST digits, 28×28, split into train and test. */
  digits: datasetsModule.digits,
  /** The adding problem, a synthetic sequence task. */
  adding: datasetsModule.adding,
  /** Zachary's karate club, a node-classification graph. */
  karate: datasetsModule.karate,
  /** A seeded stochastic block model, a node-classification graph. */
  sbm: datasetsModule.sbm,
  /** A shipped public-domain text for language models: `corpus('moby-dick')`. */
  corpus: textModule.corpus,
};
/**
 * Loaders and batching helpers.
 * @namespace
 */
export const data = {
  /** Reads an IDX image and label pair (MNIST's format). */
  loadIdx: loadersModule.loadIdx,
  /** Reads a numeric CSV with a class label column. */
  loadCsv: loadersModule.loadCsv,
  /** A seeded permutation of 0..n-1. */
  permutation: dataModule.permutation,
  /** Iterates mini-batches of a data set. */
  batches: dataModule.batches,
  /** Selects rows of a data set. */
  take: dataModule.take,
  /** A checked data set from plain arrays (rows of features; class indices, one-hot rows or targets). */
  fromArrays: fromArraysModule.fromArrays,
  /** Next-token windows of a token stream (labels at every position), split into train and validation parts. */
  tokens: textModule.tokens,
};
/**
 * Text for language models: a character vocabulary (`of.data.tokens` makes data sets of its ids,
 * `model.generate` samples new ids).
 * @namespace
 */
export const text = {
  /** The character vocabulary of a text (sorted code points): `encode`, `decode`, `toJSON`. */
  charVocab: textModule.charVocab,
  /** A vocabulary read back from its JSON (`CharVocab.fromJSON`). */
  vocabFromJSON: textModule.CharVocab.fromJSON,
};
/** Learning-rate schedules for an optimizer's `schedule` option, e.g. `of.adam({ lr: 1e-3, schedule: of.schedules.cosine({ steps: 1000, warmup: 100 }) })`.
 * @namespace
 */
export const schedules = {
  /** A constant rate, after an optional warm-up. */
  constant: schedulesModule.constant,
  /** The rate times `gamma` every `every` updates. */
  step: schedulesModule.step,
  /** The rate times `gamma` after every update. */
  exponential: schedulesModule.exponential,
  /** Cosine decay from lr to `minLr` over `steps` updates. */
  cosine: schedulesModule.cosine,
};
/**
 * Backend information and thread control.
 * @namespace
 */
export const backend = {
  /** The compiled backends, the active one and why, threads and SIMD level. */
  info: backendModule.info,
  /** Sets the native thread pool size. */
  setThreads: backendModule.setThreads,
};
export type { BackendInfo, BackendName } from './backend';
/**
 * Self-contained HTML reports (loss/accuracy curves, gradient variance vs K).
 * @namespace
 */
export const report = {
  /** Renders a report as one HTML string. */
  render: reportModule.renderReport,
  /** Writes a report to an HTML file. */
  write: reportModule.writeReport,
};
export type { ReportData, ReportRun } from './report';
/**
 * Accuracy under white-box attacks (FGSM, PGD) and corruptions (Gaussian, salt-and-pepper).
 * @namespace
 */
export const robustness = {
  /** A model's accuracy, clean and under each attack. */
  evaluate: robustnessModule.evaluate,
};
/**
 * Data-parallel training over a communicator (an MPI binding, or an in-process one).
 * @namespace
 */
export const distributed = {
  /** The rows of a batch that one rank takes. */
  shard: distributedModule.shard,
  /** This rank's share of a batch's gradient estimate. */
  dataParallelGradients: distributedModule.dataParallelGradients,
  /** One data-parallel step: shard, estimate, all-reduce, update. */
  dataParallelStep: distributedModule.dataParallelStep,
  /** The ULR copies one rank runs. */
  copySlice: distributedModule.copySlice,
  /** Copy-parallel ULR, phase 1: the losses of this rank's copies. */
  copyParallelLosses: distributedModule.copyParallelLosses,
  /** Copy-parallel ULR, phase 2: this rank's share of the estimate from every copy's loss. */
  copyParallelGradients: distributedModule.copyParallelGradients,
  /** One copy-parallel ULR step: the K copies split over the ranks. */
  copyParallelStep: distributedModule.copyParallelStep,
  /** Seed replay (SPSA, ES): this rank's share of a step's perturbation losses. */
  seedReplayLosses: distributedModule.seedReplayLosses,
  /** Seed replay: the update from all of a step's perturbation losses. */
  seedReplayUpdate: distributedModule.seedReplayUpdate,
  /** One seed-replay step: only losses are exchanged. */
  seedReplayStep: distributedModule.seedReplayStep,
  /** Trains on every rank of a communicator: `model.fit` with its `distributed` option (the same script under mpirun). */
  fit: distributedModule.fitDistributed,
  /** The MPI_COMM_WORLD communicator (needs the optional MPI addon). */
  mpi: distributedModule.mpi,
  /** Whether the MPI addon was built. */
  mpiAvailable: distributedModule.mpiAvailable,
};
export type { MpiCommunicator, DistributedFitOptions } from './distributed';
export type { Communicator } from './communicator';
export type { Attack, RobustnessResult } from './robustness';

// A default export too, so `import of from 'oneforward'` works under every module setting (CommonJS reads
// `exports.default`); it is this module's own exports object.
import * as self from './index';
/** The whole API as one object: `import of from 'oneforward'` is the same as `import * as of from 'oneforward'`. */
const oneforward = self;
export default oneforward;
