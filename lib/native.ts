/**
 * Loads the native addon once and types its whole surface (node-llama-cpp's AddonTypes). Nothing else
 * in lib/ touches `require` of the .node file. `ONEFORWARD_NATIVE` may point at a specific .node build; else the
 * first of the cmake build, the node-gyp build and the prebuilt binary that loads (scripts/install.js makes one).
 */
import * as path from 'path';
import type { Schedule } from './schedules';
import * as fs from 'fs';
import { BackendError, type ErrorCode, errorClasses } from './errors';

/**
 * @internal One layer of the native spec: its `type` and the options that type reads (each kind's file in
 * layers/ writes it; the native reader checks every option and answers a typed error).
 */
export type NativeLayer = { type: string; [option: string]: unknown };

/** @internal */
export type NativeModelSpec = {
  inputs: number;
  inputShape?: [number, number, number] | [number, number];
  layers: NativeLayer[];
  loss: string;
  seed: number;
};

/** @internal One layer of a spec as the native model lays it out: its output shape and its parameter tensors. */
export type NativeLayerInfo = { output: number[]; tensors: { name: string; shape: number[] }[] };

/** @internal */
export type NativeEstimator = {
  kind: 'bp' | 'ulr' | 'spsa' | 'es';
  population?: number;
  rankShaping?: boolean;
  copies?: number | number[] | 'auto';
  budget?: number;
  blocks?: number[];
  injection?: string;
  sigmaSchedule?: { kind: string; every?: number; gamma?: number; min?: number };
  learnSigma?: { lr: number };
  qmc?: boolean;
  sigma?: number | (number | number[])[];
  antithetic?: boolean;
  baseline?: string;
  noise?: string;
  score?: string;
  sharedPrefix?: boolean;
  storeNoise?: boolean;
  precision?: string;
  seed?: number;
  modules?: [number, number][];
  sampleOffset?: number;
  concurrent?: boolean;
  pipeline?: boolean;
  exactBoundary?: boolean;
};

/**
 * An optimizer's settings as the engine takes them (what `sgd()`, `adam()` and `adamw()` return).
 * @inline
 */
export type NativeOptimizer = {
  /** The update rule. */
  kind: 'sgd' | 'adam' | 'adamw';
  /** Learning rate. */
  lr: number;
  /** SGD momentum μ, in [0, 1). */
  momentum?: number;
  /** Whether SGD momentum is Nesterov's. */
  nesterov?: boolean;
  /** Adam's first-moment decay. */
  beta1?: number;
  /** Adam's second-moment decay. */
  beta2?: number;
  /** Adam's denominator epsilon. */
  eps?: number;
  /** Weight decay: L2 for SGD and Adam, decoupled for AdamW. */
  weightDecay?: number;
  /** The global gradient L2 norm is clipped to this before the update; `0`: off. */
  clipNorm?: number;
  /** The learning-rate schedule; absent: a constant `lr`. */
  schedule?: Schedule;
};

/** Per-epoch results of `Model.fit` (the native engine reports them as is). */
export type EpochLog = {
  /** The epoch number, from 1. */
  epoch: number;
  /** Mean training loss over the epoch (for ULR: over the noisy copies). */
  loss: number;
  /** Training accuracy over the epoch, of rows or (per-position models) labeled positions (ULR: of the noisy copies). */
  accuracy: number;
  /** Clean loss on `validation`, if given. */
  valLoss?: number;
  /** Clean accuracy on `validation`, if given. */
  valAccuracy?: number;
  /** exp(loss), with `crossEntropy` loss (for ULR: of the noisy copies' mean loss). Set by fit. */
  perplexity?: number;
  /** exp(valLoss), with `crossEntropy` loss and `validation`: the per-token perplexity of token data. Set by fit. */
  valPerplexity?: number;
  /** Seconds of training in this epoch (validation excluded). */
  seconds: number;
  /** Optimizer steps in this epoch. */
  steps: number;
  /** The learning rate of the epoch's last update (the optimizer's `schedule` at that step); fit always sets it. */
  lr?: number;
};

/** Progress reported during `Model.fit`, at most ~10 times a second and at each epoch end. */
export type Progress = {
  /** The current epoch, from 1. */
  epoch: number;
  /** Epochs in this fit. */
  epochs: number;
  /** Step within the epoch. */
  step: number;
  /** Steps in the epoch. */
  steps: number;
  /** Running mean loss of the epoch so far. */
  loss: number;
  /** Running training accuracy of the epoch so far. */
  accuracy: number;
  /** Training throughput of the epoch so far, in samples (not noisy copies) per second. */
  samplesPerSecond: number;
  /** Seconds since fit started. */
  elapsed: number;
  /** Estimated seconds until fit ends (from this run's pace; validation excluded). */
  eta: number;
  /** The learning rate of the last update. */
  lr: number;
};

/** What `onBatchEnd` receives after every optimizer step of `Model.fit`. */
export type BatchLog = {
  /** The epoch number, from 1. */
  epoch: number;
  /** The batch within the epoch, from 1. */
  batch: number;
  /** Batches per epoch. */
  batches: number;
  /** Mean loss of this batch (for ULR: over its noisy copies). */
  loss: number;
  /** Accuracy on this batch (for ULR: of its noisy copies). */
  accuracy: number;
  /** The learning rate this step's update used. */
  lr: number;
};

/** @internal */
export type Targets = Int32Array | Float32Array;

/**
 * A per-row loss computed in JS (a reward, a non-differentiable metric, a simulator). It receives a copy of
 * one step's outputs (rows × outputs; with ULR every noisy copy is a row), the targets of each row (labels,
 * or rows × outputs values) and the row count, and returns one finite loss per row. Only `ulr()` can use it.
 */
export type LossFunction = (
  outputs: Float32Array,
  targets: Int32Array | Float32Array,
  rows: number,
) => Float32Array | Float64Array | number[];

/** @internal Training state besides the parameters (what a checkpoint stores). */
export type NativeTrainState = {
  step: number;
  epochsRun: number;
  epochStep: number;
  /** -1: no optimizer state yet; else 0 sgd, 1 adam, 2 adamw. */
  optKind: number;
  optT: number;
  /** Running-average baseline (null before its first step). */
  runningLoss: number | null;
  /** Running per-copy variance per layer for layer-wise auto copies (null until used). */
  layerVar: number[] | null;
  /** Learned log sigma per dense layer (null unless learnSigma was used). */
  logSigma: number[] | null;
  /** batchNorm running statistics, layer by layer: means then variances (null without batchNorm). */
  bnRunning?: number[] | null;
  m: Float32Array | null;
  v: Float32Array | null;
};

/**
 * @internal fit's `distributed` option as the engine takes it: `allreduce` gets a step's values and calls
 * `done(undefined, values)` once they hold the sum over the ranks, or `done(error)`.
 */
export type NativeDistributed = {
  rank: number;
  size: number;
  mode: 'data' | 'copies' | 'seeds';
  allreduce: (values: Float32Array, done: (error?: unknown, values?: Float32Array) => void) => void;
};

/** C = alpha op(A) op(B) + beta C of the test hooks' GEMMs: M x N from M x K and K x N, row-major. */
type GemmOperands = [
  C: Float32Array,
  A: Float32Array,
  B: Float32Array,
  M: number,
  N: number,
  K: number,
  transA: boolean,
  transB: boolean,
  alpha: number,
  beta: number,
];

/** @internal */
export interface NativeModel {
  parameters(): { name: string; shape: number[]; data: Float32Array }[];
  predict(x: Float32Array, rows: number): Float32Array;
  predictAsync(x: Float32Array, rows: number): Promise<Float32Array>;
  evaluateAsync(x: Float32Array, y: Targets, rows: number): Promise<{ loss: number; accuracy: number }>;
  evaluate(x: Float32Array, y: Targets, rows: number): { loss: number; accuracy: number };
  gradients(
    x: Float32Array,
    y: Targets,
    rows: number,
    estimator: NativeEstimator,
    step?: number,
    loss?: LossFunction,
  ): {
    grads: Float32Array;
    loss: number;
  };
  trainStep(
    x: Float32Array,
    y: Targets,
    rows: number,
    estimator: NativeEstimator,
    optimizer: NativeOptimizer,
  ): {
    loss: number;
  };
  applyGradients(grads: Float32Array, optimizer: NativeOptimizer, rows: number): void;
  copyLosses(
    x: Float32Array,
    y: Targets,
    rows: number,
    estimator: NativeEstimator,
    k0: number,
    k1: number,
  ): Float32Array;
  copyGradients(
    x: Float32Array,
    y: Targets,
    rows: number,
    estimator: NativeEstimator,
    k0: number,
    k1: number,
    losses: Float32Array,
  ): Float32Array;
  perturbationLosses(
    x: Float32Array,
    y: Targets,
    rows: number,
    estimator: NativeEstimator,
    p0: number,
    p1: number,
  ): Float32Array;
  applyPerturbationUpdate(
    losses: Float32Array,
    estimator: NativeEstimator,
    optimizer: NativeOptimizer,
    rows: number,
  ): void;
  fit(
    x: Float32Array,
    y: Targets,
    rows: number,
    valX: Float32Array | null,
    valY: Targets | null,
    valRows: number,
    config: {
      epochs: number;
      batchSize: number;
      shuffle: boolean;
      resume: boolean;
      estimator: NativeEstimator;
      optimizer: NativeOptimizer;
      loss?: LossFunction;
      onDiverged?: (d: { reason: string; epoch: number; step: number }) => void;
      onBatchEnd?: (b: BatchLog) => void;
      maxGradNorm?: number;
      distributed?: NativeDistributed;
    },
    onProgress: ((p: Progress) => void) | null,
    onEpoch: ((e: EpochLog) => void) | null,
  ): Promise<EpochLog[]>;
  cancel(): void;
  dispose(): void;
  /** Throws ERR_BUSY unless the model could change now (no fit, async prediction or other call on it). */
  checkIdle(): void;
  memoryEstimate(
    estimator: NativeEstimator,
    batchSize: number,
  ): {
    bytes: number;
    parameters: number;
    gradients: number;
    optimizer: number;
    activations: number;
    partials: number;
    workspace: number;
  };
  exportState(): NativeTrainState;
  setFrozen(count: number): void;
  inputGradients(x: Float32Array, y: Targets, rows: number): { grads: Float32Array; loss: number };
  importState(state: NativeTrainState): void;
  setBackend(name: 'cpu' | 'cuda' | 'sim', tf32: boolean | undefined): void;
  backend(): NativeModelBackend;
  state(): {
    disposed: boolean;
    step?: number;
    epochs?: number;
    epochStep?: number;
    frozen?: number;
    logSigma?: number[];
    busy?: boolean;
    parameterCount?: number;
    inputs?: number;
    outputs?: number;
  };
}

/**
 * A model's backend, as the engine reports it.
 * @inline
 */
export type NativeModelBackend = {
  /** `cpu`, `cuda`, or `sim` (the host simulation of a device, for tests). */
  name: string;
  /** The device, in words (GPU name, compute capability, memory). */
  device: string;
  /** The GEMM library: `cublas …` or `oneforward` (our own kernels). */
  blas: string;
  /** Whether TF32 tensor cores may run the GEMMs of a ULR step. */
  tf32: boolean;
  /** Where the last fit, step or gradient estimate ran: `cuda`, `sim`, or `cpu (why not the device)`. */
  placement: string;
};

/**
 * What the native engine reports about its backends.
 * @inline
 */
export type NativeBackendInfo = {
  /** Backends compiled into this build, e.g. `['cpu']`. */
  compiled: string[];
  /** What `auto` resolves to right now. */
  active: string;
  /** One line saying why `active` was chosen. */
  reason: string;
  /** Threads in the native pool (`ONEFORWARD_THREADS` or the core count). */
  threads: number;
  /** SIMD level of the CPU GEMM micro-kernel: `avx512`, `avx2` or `scalar`. */
  simd: string;
  /**
   * How `ulr({ precision: 'bf16' })` multiplies: `amx` (the AMX tiles: GEMMs and direct convolutions, with bits of
   * their own), `avx512bf16` (the instruction), `avx512bf16 (narrow products)` (the instruction where the output has
   * at most 12 columns, the emulation elsewhere: where the instruction is slower than float32 FMAs) or `emulated`
   * (rounded operands, then the float32 kernels). All but `amx` give the same bits.
   */
  bf16: string;
  /** The GEMM implementation (`oneforward`: our own packed kernels). */
  blas: string;
  /** CUDA devices this process can use (0 without the CUDA backend, a driver or a GPU). */
  cudaDevices: number;
};

/** @internal The whole N-API surface of the addon. */
export type NativeBinding = {
  NativeModel: new (spec: NativeModelSpec) => NativeModel;
  /**
   * Each layer of `spec.layers` as a model built from `spec` lays it out (its loss and seed aside; no parameters
   * allocated). A layer that does not fit comes back as `error`, after the layers before it.
   */
  describeLayers(spec: NativeModelSpec): { layers: NativeLayerInfo[]; error?: { code: ErrorCode; message: string } };
  backendInfo(): NativeBackendInfo;
  setThreads(n: number): number;
  /** Test hook: bytes held by native buffers now (`live`) and at most since the last reset (`peak`); `reset` first frees every thread's scratch, then starts `peak` from `live`. */
  allocStats(reset?: boolean): { live: number; peak: number };
  setErrorClasses(classes: object): void;
  gemm(...args: [...GemmOperands, kscale: Float32Array | null, naive: boolean]): void;
  /** Test hook: the bfloat16 GEMM (native/kernels/cpu/bf16.h) the given way: 'instruction' where the CPU has it (else emulated), 'amx' where the tiles are usable (else ERR_CONFIG); `true` / `false` mean 'instruction' / 'emulated'. */
  gemmBf16(
    ...args: [...GemmOperands, kscale: Float32Array | null, way: boolean | 'emulated' | 'instruction' | 'amx']
  ): void;
  /**
   * Test hook: the direct convolution forward (native/kernels/cpu/conv.h) of `n` channels-last images,
   * geom = [H, W, C, Ho, Wo, Co, kh, kw, sh, sw, ph, pw, dh, dw], in float32 or with bfloat16 operands
   * (native/kernels/cpu/bf16.h) by `way` as `gemmBf16`'s. False: the shape takes im2row + GEMM (y not written).
   */
  convForward(
    y: Float32Array,
    x: Float32Array,
    W: Float32Array,
    n: number,
    geom: number[],
    way: 'float32' | 'emulated' | 'instruction' | 'amx',
  ): boolean;
  noise(
    rows: number,
    cols: number,
    seed: number,
    step: number,
    layer: number,
    row0: number,
    antithetic: boolean,
    naive?: boolean,
    density?: number,
    into?: Float32Array,
  ): Float32Array;
  /** QMC normals (copies Sobol points per sample from dimension dim), or the value-by-value oracle when naive. */
  qmcNoise(
    rows: number,
    cols: number,
    seed: number,
    step: number,
    layer: number,
    row0: number,
    antithetic: boolean,
    copies: number,
    dim: number,
    naive?: boolean,
  ): Float32Array;
  philox(c0: number, c1: number, c2: number, c3: number, k0: number, k1: number): Uint32Array;
  /** act(x) by the CPU engine, or by a device's bias_act kernel: kernel tests. */
  activation(x: Float32Array, name: string, device?: 'sim' | 'cuda'): Float32Array;
  deviceNoise(
    device: 'sim' | 'cuda',
    rows: number,
    cols: number,
    seed: number,
    step: number,
    layer: number,
    row0: number,
    antithetic: boolean,
    density: number,
  ): Float32Array;
  deviceGemm(...args: [device: 'sim' | 'cuda' | 'tiled', ...GemmOperands, tf32: boolean]): void;
};

/** Where the loaded addon came from: `ONEFORWARD_NATIVE`, a source build (cmake or node-gyp), or the prebuilt. */
export type NativeBinaryKind = 'custom' | 'cmake' | 'node-gyp' | 'prebuilt';

const root = path.resolve(__dirname, '..', '..');
const candidates: [NativeBinaryKind, string | undefined][] = [
  ['custom', process.env.ONEFORWARD_NATIVE || undefined],
  ['cmake', path.join(root, 'build', 'Release', 'oneforward.node')],
  ['node-gyp', path.join(root, 'build-gyp', 'build', 'Release', 'oneforward.node')],
  ['prebuilt', path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'oneforward.node')],
];

let loaded: { kind: NativeBinaryKind; path: string } | undefined;

function load(): NativeBinding {
  const errors: string[] = [];
  for (const [kind, file] of candidates) {
    if (file === undefined) continue;
    if (!fs.existsSync(file)) {
      errors.push(`${file}: not found`);
      continue;
    }
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const binding = require(file) as NativeBinding;
      binding.setErrorClasses(errorClasses);
      loaded = { kind, path: file };
      return binding;
    } catch (err) {
      errors.push(`${file}: ${(err as Error).message}`);
    }
  }
  throw new BackendError(
    `Could not load the oneforward native module.\n  Tried:\n    ${errors.join('\n    ')}\n` +
      `  Possible solutions:\n    - Build it from source: npx oneforward rebuild (npm run rebuild in a source checkout;\n` +
      `      needs a C++17 compiler, make and python3, e.g. apt-get install cmake g++ make python3)\n` +
      `    - Or point ONEFORWARD_NATIVE at a built oneforward.node`,
  );
}

let cached: NativeBinding | undefined;
/** @internal The loaded binding (loaded on first use). */
export function native(): NativeBinding {
  return (cached ??= load());
}

/** @internal Which addon file was loaded, and from where (loads it if needed). */
export function nativeBinary(): { kind: NativeBinaryKind; path: string } {
  native();
  return loaded!;
}
