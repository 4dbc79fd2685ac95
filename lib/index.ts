/**
 * oneforward: train neural networks without backpropagation (the unified likelihood-ratio method), with an
 * exact-backprop baseline in the same native engine. Public exports only.
 */
export { sequential, Model, LOSSES } from './model';
export { load } from './checkpoint';
export { readSafetensors, writeSafetensors } from './safetensors';
export type { Tensor } from './safetensors';
export type { SequentialOptions, ModelBackend, FitOptions, History, EpochLog, Progress, BatchLog, Parameter, LossName, LossFunction, GradientCheck } from './model';
export { dense, activation, relu, leakyRelu, tanh, sigmoid, gelu, identity, step, sign, quantize, ACTIVATIONS, conv2d, maxPool2d, avgPool2d, globalAvgPool, flatten, rnn, gru, lstm, lif, repeat, timeMean, graphConv, residual, concat, dropout, layerNorm, batchNorm, groupNorm } from './layers';
export type {
  Layer, DenseLayer, ActivationLayer, ActivationName, DenseOptions, QuantizedWeights, Conv2dLayer, Conv2dOptions, Pool2dLayer, Pool2dOptions,
  GlobalAvgPoolLayer, FlattenLayer, ImageShape, Padding, SequenceShape, RecurrentLayer, RecurrentOptions, RepeatLayer, TimeMeanLayer, Graph, GraphConvLayer, ResidualLayer, ConcatLayer, DropoutLayer, LayerNormLayer, BatchNormLayer, GroupNormLayer,
} from './layers';
export { bp, ulr, spsa, es, BASELINES, DENSITIES, SCORES, INJECTIONS } from './estimators';
export type { Estimator, BpEstimator, SpsaEstimator, EsEstimator, UlrEstimator, UlrOptions, BaselineName, DensityName, ScoreName, InjectionName, SigmaSchedule } from './estimators';
export { sgd, adam, adamw } from './optimizers';
export type { Optimizer, SgdOptions, AdamOptions } from './optimizers';
export { SCHEDULES } from './schedules';
export type { Schedule, ScheduleKind, WarmupOptions, StepScheduleOptions, ExponentialScheduleOptions, CosineScheduleOptions } from './schedules';
export {
  OneForwardError, ShapeError, ConfigError, DataError, BackendError, CheckpointError, AbortError, NumericError,
  OutOfMemoryError, DisposedError, BusyError, ERROR_CODES,
} from './errors';
export type { ErrorCode } from './errors';
export type { Dataset, CsvOptions, GraphTask, FromArraysOptions, LabelKind } from './data';
export { LABEL_KINDS } from './data';
export { MONITORS } from './callbacks';
export type { EarlyStoppingOptions, Monitor } from './callbacks';
import * as dataModule from './data';
import * as backendModule from './backend';
import * as reportModule from './report';
import * as robustnessModule from './robustness';
import * as distributedModule from './distributed';
import * as schedulesModule from './schedules';

/** Shipped data sets. */
export const datasets = { digits: dataModule.digits, adding: dataModule.adding, karate: dataModule.karate, sbm: dataModule.sbm };
/** Loaders and batching helpers. */
export const data = {
  loadIdx: dataModule.loadIdx,
  loadCsv: dataModule.loadCsv,
  permutation: dataModule.permutation,
  batches: dataModule.batches,
  take: dataModule.take,
  fromArrays: dataModule.fromArrays,
};
/** Learning-rate schedules for an optimizer's `schedule` option, e.g. `of.adam({ lr: 1e-3, schedule: of.schedules.cosine({ steps: 1000, warmup: 100 }) })`.
 * @namespace
 */
export const schedules = {
  constant: schedulesModule.constant,
  step: schedulesModule.step,
  exponential: schedulesModule.exponential,
  cosine: schedulesModule.cosine,
};
/** Backend information and thread control. */
export const backend = { info: backendModule.info, setThreads: backendModule.setThreads };
export type { BackendInfo, BackendName } from './backend';
/** Self-contained HTML reports (loss/accuracy curves, gradient variance vs K). */
export const report = { render: reportModule.renderReport, write: reportModule.writeReport };
export type { ReportData, ReportRun } from './report';
/** Accuracy under white-box attacks (FGSM, PGD) and corruptions (Gaussian, salt-and-pepper). */
export const robustness = { evaluate: robustnessModule.evaluate };
/** Data-parallel training over a communicator (an MPI binding, or an in-process one). */
export const distributed = {
  shard: distributedModule.shard, dataParallelGradients: distributedModule.dataParallelGradients, dataParallelStep: distributedModule.dataParallelStep,
  copySlice: distributedModule.copySlice, copyParallelLosses: distributedModule.copyParallelLosses,
  copyParallelGradients: distributedModule.copyParallelGradients, copyParallelStep: distributedModule.copyParallelStep,
  seedReplayLosses: distributedModule.seedReplayLosses, seedReplayUpdate: distributedModule.seedReplayUpdate, seedReplayStep: distributedModule.seedReplayStep,
  fit: distributedModule.fitDistributed,
  mpi: distributedModule.mpi, mpiAvailable: distributedModule.mpiAvailable,
};
export type { Communicator, MpiCommunicator, DistributedFitOptions } from './distributed';
export type { Attack, RobustnessResult } from './robustness';

// A default export too, so `import of from 'oneforward'` works under every module setting (CommonJS reads
// `exports.default`); it is this module's own exports object.
import * as self from './index';
/** The whole API as one object: `import of from 'oneforward'` is the same as `import * as of from 'oneforward'`. */
const oneforward = self;
export default oneforward;
