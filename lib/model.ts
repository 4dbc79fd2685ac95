/**
 * Model: a sequential stack of layers backed by one native model (parameter slab, optimizer state,
 * workspaces). Training runs natively on a dedicated thread; this class validates, converts and forwards.
 */
import { resolveBackend } from './backend';
import { CheckpointError, ConfigError, DisposedError, ShapeError, withCallerStack } from './errors';
import { type Dataset, checkDataset } from './data';
import { summarize } from './summary';
import { type Estimator, bp, toNative, ulr } from './estimators';
import type { ImageShape, Layer, SequenceShape } from './layers/index';
import { kindOf } from './layers/kind';
import { nativeLayers, topology } from './layers/topology';
import {
  native,
  type NativeModel,
  type NativeModelSpec,
  type Progress,
  type EpochLog,
  type BatchLog,
  type LossFunction,
} from './native';
import { type Optimizer, adam } from './optimizers';
import { checkFinite, invalidArg, is, optionsObject } from './validate';
import { save as saveCheckpoint } from './checkpoint';
import { syncLoss } from './callback_guard';
import { type FitOptions, type History, fitModel } from './fit';
import { readSafetensors, type Tensor } from './safetensors';
import {
  LOSSES,
  type LossName,
  type SequentialOptions,
  type ModelBackend,
  type Parameter,
  type GradientCheck,
  type MemoryEstimate,
  type Evaluation,
  withPerplexity,
} from './model_types';
import { type GenerateOptions, generate } from './generate';

export { LOSSES };
export type { LossName, SequentialOptions, ModelBackend, Parameter, GradientCheck, MemoryEstimate, Evaluation };
export type { GenerateOptions };

export type { Progress, EpochLog, BatchLog, LossFunction, FitOptions, History };

/** A trainable network. Create one with {@link sequential}. */
export class Model {
  /** The layers, as given. */
  readonly layers: readonly Layer[];
  /** Input features per sample. */
  readonly inputs: number;
  /** [H, W, C] of the input images (channels-last rows), or [steps, features] of input sequences. */
  readonly inputShape?: ImageShape | SequenceShape;
  /** Outputs per sample (logits for cross-entropy). */
  readonly outputs: number;
  /**
   * Labels per sample: 1, or the positions (sequence steps, graph nodes) when the last layer's output is
   * classified per position (`outputs / groups` classes each; label -1 = unlabeled position).
   */
  readonly groups: number;
  /** The training loss. */
  readonly loss: LossName;
  /** The seed of the weight init, the shuffling and (by default) the ULR noise. */
  readonly seed: number;
  /** The backend this model runs on (`'sim'`: the host simulation of a device, for tests). */
  readonly backend: 'cpu' | 'cuda' | 'sim';
  /** @internal */
  _native: NativeModel | undefined;
  /** @internal The frozen count, kept in TS so that {@link summary} is right after dispose too. */
  private _frozen: number;

  /** @internal Use {@link sequential}. */
  constructor(
    layers: Layer[],
    options: Required<Omit<SequentialOptions, 'backend' | 'allowTf32'>> & {
      backend: 'cpu' | 'cuda' | 'sim';
      allowTf32?: boolean;
    },
  ) {
    this.layers = layers;
    this.loss = options.loss;
    this.seed = options.seed;
    this.backend = options.backend;
    const topo = topology(layers);
    this.inputs = topo.inputs;
    this.outputs = topo.outputs;
    this.groups = topo.groups;
    if (topo.inputShape) this.inputShape = topo.inputShape;
    const spec: NativeModelSpec = {
      inputs: this.inputs,
      layers: nativeLayers(layers),
      loss: this.loss,
      seed: this.seed,
    };
    if (topo.inputShape) spec.inputShape = topo.inputShape;
    this._native = new (native().NativeModel)(spec);
    this._frozen = this._native.state().frozen ?? 0; // dense layers with trainable: false
    if (this.backend !== 'cpu') this._native.setBackend(this.backend, options.allowTf32);
  }

  /** The model's backend and device, and where its last fit, step or gradient estimate ran (`placement`). */
  backendInfo(): ModelBackend {
    return this.nat.backend();
  }

  /** @internal */
  private get nat(): NativeModel {
    if (!this._native) throw new DisposedError('this model has been disposed');
    return this._native;
  }

  /** Optimizer steps taken so far (the noise counter of the next step). */
  get step(): number {
    return this.nat.state().step ?? 0;
  }

  /** Number of trainable parameters. */
  get parameterCount(): number {
    return this.nat.state().parameterCount ?? 0;
  }

  /** The parameter tensors in order (dense0.weight (units, inputs), dense0.bias, ...), as writable views. */
  parameters(): Parameter[] {
    return this.nat.parameters();
  }

  /**
   * Trains the model. Runs on a native thread; the event loop stays free. fit copies the training and validation
   * sets into native memory when it starts (rows × (inputs + labels or targets) × 4 bytes, the size of the arrays
   * given, freed when fit settles), so the caller may reuse, transfer or resize their buffers at once. With the
   * `distributed` option it trains on every rank of a communicator.
   * @example
   * const model = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 1 });
   * const { train, test } = of.datasets.digits();
   * const history = await model.fit(train, { estimator: of.ulr({ copies: 8 }), epochs: 1, batchSize: 64, validation: test });
   */
  fit(train: Dataset, options?: FitOptions): Promise<History> {
    return fitModel(this, train, options, new Error().stack);
  }

  /**
   * The class of each row: the arg-max of {@link predict}'s outputs (the first on ties), rows × groups values
   * (one per position for per-position classifiers).
   */
  predictClass(x: Float32Array | Dataset, rows?: number): Int32Array {
    const out = this.predict(x, rows);
    const classes = this.outputs / this.groups;
    const cls = new Int32Array(out.length / classes);
    for (let i = 0; i < cls.length; i++) {
      let best = 0;
      for (let j = 1; j < classes; j++) if (out[i * classes + j]! > out[i * classes + best]!) best = j;
      cls[i] = best;
    }
    return cls;
  }

  /**
   * A Keras-like table: one row per layer (index, kind and options, output shape, parameters, trainable or
   * frozen; a block's inner layers indented under it), then the total, trainable and frozen parameter counts
   * with their float32 bytes.
   */
  summary(): string {
    const state = this._native ? `${this.backend} backend` : 'disposed';
    return summarize(this.layers, this._frozen, `Model: ${this.loss} loss, seed ${this.seed}, ${state}`);
  }

  /** The {@link summary}. */
  toString(): string {
    return this.summary();
  }

  /** What `console.log(model)` and `util.inspect` show: the {@link summary}. */
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.summary();
  }

  /** Mean loss, accuracy (cross-entropy; 0 for mse) and perplexity (cross-entropy) of a clean forward pass. */
  evaluate(data: Dataset): Evaluation {
    this.checkData('data', data);
    return withPerplexity(this.loss, this.nat.evaluate(data.x, data.y, data.rows));
  }

  /**
   * Clean forward pass: rows × outputs (logits for cross-entropy models).
   * @throws DataError (`ERR_DATA`) for a non-finite input (named by index, row and column), ShapeError (`ERR_SHAPE`)
   * for a length that is not whole rows, ConfigError (`ERR_CONFIG`) for a malformed argument, `ERR_DISPOSED`, `ERR_BUSY`.
   */
  predict(x: Float32Array | Dataset, rows?: number): Float32Array {
    const [xs, r] = this.checkInputs(x, rows);
    return this.nat.predict(xs, r);
  }

  /**
   * Like {@link predict}, off the event loop (libuv pool), on a native copy of `x` taken at the call (the caller may
   * reuse or transfer it at once). Several may run at once; until they finish, fit, dispose and every call that
   * changes the model throw `ERR_BUSY`.
   * @throws the errors of {@link predict}, as a rejection (its `DataError` for non-finite inputs included).
   */
  async predictAsync(x: Float32Array | Dataset, rows?: number): Promise<Float32Array> {
    const stack = new Error().stack;
    const [xs, r] = this.checkInputs(x, rows);
    try {
      return await this.nat.predictAsync(xs, r);
    } catch (err) {
      throw withCallerStack(err, stack);
    }
  }

  /** Like {@link evaluate}, off the event loop (libuv pool), on a native copy of the data set taken at the call. */
  async evaluateAsync(data: Dataset): Promise<Evaluation> {
    const stack = new Error().stack;
    this.checkData('data', data);
    try {
      return withPerplexity(this.loss, await this.nat.evaluateAsync(data.x, data.y, data.rows));
    } catch (err) {
      throw withCallerStack(err, stack);
    }
  }

  /**
   * The next `maxTokens` token ids after `prompt`, one async prediction each (see {@link GenerateOptions}), for a
   * model that reads T ids (or T one-hot rows) and gives (T, vocab) logits per position. The window is the last T
   * ids; a shorter one is right-padded and read at its last id, right for causal models only (recurrent layers are).
   * @throws (as a rejection) ConfigError (`ERR_CONFIG`) for another kind of model or a bad option; DataError
   * (`ERR_DATA`) for an empty prompt or an id outside [0, vocab); the errors of {@link predictAsync}.
   */
  async generate(prompt: ArrayLike<number>, options: GenerateOptions): Promise<Int32Array> {
    return generate(this, prompt, options, new Error().stack);
  }

  /**
   * Gradient of the mean loss of one batch, per parameter (in {@link parameters} order), without updating.
   * With ULR this is one stochastic estimate; `step` picks the noise (defaults to the model's step counter).
   * @throws ConfigError (`ERR_CONFIG`) for a batch that is not `{ x: Float32Array, y, rows? }` or a bad option;
   * ShapeError (`ERR_SHAPE`) for sizes that do not fit the model; DataError (`ERR_DATA`) for non-finite values,
   * labels out of range or a `loss` that returns a promise (it must be synchronous); whatever `loss` throws, as is;
   * `ERR_DISPOSED`, `ERR_BUSY`.
   */
  gradients(
    batch: { x: Float32Array; y: Int32Array | Float32Array; rows?: number },
    options?: { estimator?: Estimator; step?: number; loss?: LossFunction; sampleOffset?: number },
  ): Float32Array[] {
    const o = optionsObject('gradients', options, ['estimator', 'step', 'loss', 'sampleOffset']);
    if (
      o.sampleOffset !== undefined &&
      (!is.integer(o.sampleOffset) || (o.sampleOffset as number) < 0 || (o.sampleOffset as number) >= 2 ** 30)
    ) {
      throw invalidArg('sampleOffset', 'integer in [0, 2^30)', o.sampleOffset);
    }
    if (o.loss !== undefined && typeof o.loss !== 'function') throw invalidArg('loss', 'function', o.loss);
    const rows = this.checkBatch(batch);
    if (o.step !== undefined && (!is.integer(o.step) || (o.step as number) < 0 || (o.step as number) >= 2 ** 32)) {
      throw invalidArg('step', 'integer in [0, 2^32)', o.step);
    }
    const est = toNative((o.estimator as Estimator | undefined) ?? ulr());
    if (o.sampleOffset !== undefined) est.sampleOffset = o.sampleOffset as number;
    const loss = o.loss === undefined ? undefined : syncLoss(o.loss as LossFunction);
    const { grads } = this.nat.gradients(batch.x, batch.y, rows, est, o.step as number | undefined, loss);
    const out: Float32Array[] = [];
    let off = 0;
    for (const p of this.nat.parameters()) {
      out.push(grads.slice(off, off + p.data.length));
      off += p.data.length;
    }
    return out;
  }

  /**
   * Diagnoses an estimator on one batch: `trials` independent estimates per dense layer (weights and bias
   * together), compared with exact backprop where the model is differentiable. Per layer: cosine of the mean
   * estimate to BP, mean per-trial cosine, relative error of the mean, total variance of one estimate, SNR
   * (|mean|² / variance) and a suggestion: `'more copies'` when one estimate is mostly noise, `'smaller sigma'`
   * when the mean misses BP by more than its noise explains (smoothing bias), else `'ok'`.
   * @throws ConfigError (`ERR_CONFIG`) for a batch that is not `{ x: Float32Array, y, rows? }` or a bad option;
   * ShapeError (`ERR_SHAPE`) for sizes that do not fit the model; DataError (`ERR_DATA`) for non-finite values or
   * labels out of range; `ERR_DISPOSED`, `ERR_BUSY`.
   */
  gradientCheck(
    batch: { x: Float32Array; y: Int32Array | Float32Array; rows?: number },
    options?: { estimator?: Estimator; trials?: number },
  ): GradientCheck[] {
    const o = optionsObject('gradientCheck', options, ['estimator', 'trials']);
    const trials = (o.trials as number | undefined) ?? 20;
    if (!is.integer(trials) || trials < 2) throw invalidArg('trials', 'integer >= 2', trials);
    const estimator = (o.estimator as Estimator | undefined) ?? ulr();
    const differentiable =
      this.loss !== 'zeroOne' &&
      this.layers.every((l) => l.type !== 'activation' || !['step', 'sign', 'quantize'].includes(l.activation));
    const exact = differentiable ? this.gradients(batch, { estimator: bp() }) : undefined;
    const runs = Array.from({ length: trials }, (_, step) => this.gradients(batch, { estimator, step }));
    const params = this.parameters();
    // Group tensors by dense layer: "dense3.weight" and "dense3.bias" -> layer 3.
    const groups = new Map<string, number[]>();
    params.forEach((p, i) => {
      const key = p.name.split('.')[0]!;
      groups.set(key, [...(groups.get(key) ?? []), i]);
    });
    const flat = (gs: Float32Array[], idx: number[]) => Float64Array.from(idx.flatMap((i) => Array.from(gs[i]!)));
    const dot = (a: Float64Array, b: Float64Array) => a.reduce((s, v, i) => s + v * b[i]!, 0);
    const norm = (a: Float64Array) => Math.sqrt(dot(a, a));
    const cos = (a: Float64Array, b: Float64Array) => dot(a, b) / (norm(a) * norm(b) || 1);
    return [...groups].map(([name, idx]) => {
      const est = runs.map((r) => flat(r, idx));
      const mean = est[0]!.map((_, i) => est.reduce((s, e) => s + e[i]!, 0) / trials);
      const variance = est.reduce((s, e) => s + e.reduce((a, v, i) => a + (v - mean[i]!) ** 2, 0), 0) / (trials - 1);
      const snr = dot(mean, mean) / (variance || Number.MIN_VALUE);
      const out: GradientCheck = { layer: name, variance, snr, suggestion: snr < 1 ? 'more copies' : 'ok' };
      if (exact) {
        const b = flat(exact, idx);
        const relativeError = norm(mean.map((v, i) => v - b[i]!)) / (norm(b) || 1);
        const noiseOfMean = Math.sqrt(variance / trials) / (norm(b) || 1);
        out.cosine = cos(mean, b);
        out.meanTrialCosine = est.reduce((s, e) => s + cos(e, b), 0) / trials;
        out.relativeError = relativeError;
        out.suggestion =
          relativeError > 3 * noiseOfMean + 0.05 ? 'smaller sigma' : out.meanTrialCosine < 0.5 ? 'more copies' : 'ok';
      }
      return out;
    });
  }

  /**
   * The update half of a step: `optimizer` applied to `grads` (one flat Float32Array of `parameterCount` values, or
   * one array per parameter tensor as {@link gradients} returns), for a batch of `rows` rows. Data-parallel
   * training applies the all-reduced estimate with it (see `of.distributed`). Increments {@link step}.
   */
  applyGradients(grads: Float32Array | Float32Array[], options: { optimizer?: Optimizer; rows: number }): void {
    const o = optionsObject('applyGradients', options, ['optimizer', 'rows']);
    if (!is.positiveInteger(o.rows)) throw invalidArg('rows', 'positive integer', o.rows);
    const flat = Array.isArray(grads) ? Float32Array.from(grads.flatMap((g) => Array.from(g))) : grads;
    if (!(flat instanceof Float32Array)) throw invalidArg('grads', 'Float32Array or an array of them', grads);
    this.nat.applyGradients(flat, (o.optimizer as Optimizer | undefined) ?? adam(), o.rows as number);
  }

  /**
   * One optimizer step on one batch (what fit does per batch); returns the batch loss.
   * @throws ConfigError (`ERR_CONFIG`) for a batch that is not `{ x: Float32Array, y, rows? }` or a bad option;
   * ShapeError (`ERR_SHAPE`) for sizes that do not fit the model; DataError (`ERR_DATA`) for non-finite values or
   * labels out of range; `ERR_DISPOSED`, `ERR_BUSY`. `ERR_NUMERIC` for a non-finite loss.
   */
  trainStep(
    batch: { x: Float32Array; y: Int32Array | Float32Array; rows?: number },
    options?: { estimator?: Estimator; optimizer?: Optimizer },
  ): number {
    const o = optionsObject('trainStep', options, ['estimator', 'optimizer']);
    const rows = this.checkBatch(batch);
    const est = toNative((o.estimator as Estimator | undefined) ?? ulr());
    return this.nat.trainStep(batch.x, batch.y, rows, est, (o.optimizer as Optimizer | undefined) ?? adam()).loss;
  }

  /**
   * An upper bound, in bytes, of the peak of native memory one training step of `batchSize` rows with `estimator`
   * holds on the CPU: every buffer of the native allocator live at once during the step, computed from the sizes
   * the step allocates. Counted: the model's parameter, gradient and optimizer slabs; the estimator's buffers
   * (which grow to the largest step and stay until {@link dispose}); every pool thread's scratch (a block's noisy
   * copies, GEMM packing), times the thread count ({@link backend.setThreads}); fit's gathered batch. With
   * `copies: 'auto'` the bound holds for any allocation the copies can move to (up to `budget` × the cost of all
   * layers over one layer's, at most 4,096). Not counted: the JS heap, the data set and fit's shuffle order (8
   * bytes a row), a JS loss function's buffers, groupNorm's per-call temporaries, and the buffers another
   * estimator used on this model earlier. Meant for admission control: refuse a job before it allocates.
   * test/92-memory-estimate.test.ts checks it against the measured peak: never below it, and at most 4× it plus
   * 1 MiB per thread (the whole GEMM tile packing a thread may take); 1.05×–2.2× for 784-256-10 and small conv
   * models at batch 64.
   * @throws ConfigError (`ERR_CONFIG`) for a bad estimator, an estimator this model cannot use, or a batch size
   * that is not a positive integer up to 2^30; `ERR_DISPOSED`, `ERR_BUSY` while the model trains.
   * @example
   * const { bytes } = model.memoryEstimate({ estimator: of.ulr({ copies: 32 }), batchSize: 64 });
   * if (bytes > 1 << 30) throw new Error('too large for this server');
   */
  memoryEstimate(options: { estimator?: Estimator; batchSize?: number }): MemoryEstimate {
    const o = optionsObject('memoryEstimate', options, ['estimator', 'batchSize']);
    const batchSize = o.batchSize ?? 32;
    if (!is.positiveInteger(batchSize) || batchSize > 2 ** 30)
      throw invalidArg('batchSize', 'integer in [1, 2^30]', batchSize);
    return this.nat.memoryEstimate(toNative((o.estimator as Estimator | undefined) ?? ulr()), batchSize);
  }

  /** The learned ULR σ per layer with parameters (`learnSigma`), or `undefined` before any. */
  get sigma(): number[] | undefined {
    return this.nat.state().logSigma?.map(Math.exp);
  }

  /**
   * Freezes the first `count` layers with parameters (0 unfreezes all): they get no gradient and no update, and
   * ULR runs them clean once per sample (its noise starts after them), so fine-tuning a head costs little more
   * than inference over the rest.
   */
  freeze(count: number): void {
    // a kind that makes several layers with parameters counts each (multiHeadAttention: its two projections)
    const withParams = topology(this.layers)
      .perLayer.filter((p) => p.tensors > 0 && !kindOf(p.layer.type)!.inner)
      .flatMap((p) => Array<Layer>(kindOf(p.layer.type)!.parameterLayers ?? 1).fill(p.layer));
    if (!is.integer(count) || count < 0 || count >= withParams.length)
      throw invalidArg('count', `integer in [0, ${withParams.length - 1}]`, count);
    this.nat.setFrozen(count);
    this._frozen = count;
    // kinds that carry a trainable flag keep it in the layers (it goes into checkpoints)
    const kinds = withParams.map((l) => kindOf(l.type)!);
    if (kinds.every((k) => k.setTrainable)) withParams.forEach((l, i) => kinds[i]!.setTrainable!(l, i >= count));
  }

  /** Number of leading layers with parameters that are frozen. */
  get frozen(): number {
    return this.nat.state().frozen ?? 0;
  }

  /** Epochs completed so far (the shuffle counter of the next epoch). */
  get epochsRun(): number {
    return this.nat.state().epochs ?? 0;
  }

  /**
   * Saves parameters, optimizer state and training counters to one file (JSON header + float32 tensors),
   * atomically: a temp file, fsync, then rename. Load it with `of.load(path)`.
   * @throws NumericError (`ERR_NUMERIC`) when a parameter or the optimizer state holds NaN or ±Infinity (load
   * would refuse the file: nothing is written and an existing file is left intact); CheckpointError
   * (`ERR_CHECKPOINT`) for a path that is not a string or a file that cannot be written.
   */
  async save(file: string): Promise<void> {
    const stack = new Error().stack;
    try {
      await saveCheckpoint(this, file);
    } catch (err) {
      throw withCallerStack(err, stack);
    }
  }

  /**
   * Copies weights into this model: from a safetensors file (or tensors already read) with an optional name
   * mapping `{ 'fc1.weight': 'dense0.weight', ... }` (file name -> parameter name; unmapped names must match).
   * Every parameter must be found with the right shape and as many finite values, else `ERR_CHECKPOINT` and nothing
   * is changed (everything is checked before the first value is written). `ERR_BUSY` (nothing changed) while fit or
   * an async prediction runs on this model.
   * @throws ConfigError (`ERR_CONFIG`) for a source that is neither a path nor a Map, or a bad `map`;
   * CheckpointError (`ERR_CHECKPOINT`) for an unreadable file or missing, misshapen or non-finite tensors.
   * @returns the names of the parameters loaded.
   */
  async loadWeights(
    source: string | Map<string, Tensor>,
    options?: { map?: Record<string, string> },
  ): Promise<string[]> {
    const o = optionsObject('loadWeights', options, ['map']);
    if (o.map !== undefined && (!is.plainObject(o.map) || !Object.values(o.map).every(is.string)))
      throw invalidArg('map', 'an object of parameter names', o.map);
    const map = (o.map as Record<string, string> | undefined) ?? {};
    if (!is.string(source) && !is.map(source))
      throw invalidArg('source', 'a safetensors path or a Map of tensors', source);
    const tensors = is.string(source) ? await readSafetensors(source) : (source as Map<unknown, unknown>);
    const byParam = new Map<string, unknown>();
    for (const [name, t] of tensors) {
      if (!is.string(name)) throw invalidArg('source', 'a Map keyed by tensor names', name);
      byParam.set(Object.hasOwn(map, name) ? map[name]! : name, t);
    }
    const params = this.parameters();
    const missing = params.filter((p) => !byParam.has(p.name)).map((p) => p.name);
    if (missing.length)
      throw new CheckpointError(`weights missing for ${missing.join(', ')} (have ${[...byParam.keys()].join(', ')})`);
    for (const p of params) {
      const t = byParam.get(p.name) as Partial<Tensor> | null;
      if (typeof t !== 'object' || t === null || !Array.isArray(t.shape) || !is.float32Array(t.data)) {
        throw new CheckpointError(`${p.name}: expected a tensor { shape: number[], data: Float32Array }`);
      }
      if (t.shape.join('x') !== p.shape.join('x'))
        throw new CheckpointError(
          `${p.name}: expected shape [${p.shape.join(', ')}], the file has [${t.shape.join(', ')}]`,
        );
      if (t.data.length !== p.data.length)
        throw new CheckpointError(
          `${p.name}: shape [${p.shape.join(', ')}] holds ${p.data.length} values, the tensor has ${t.data.length}`,
        );
      const bad = t.data.findIndex((v) => !Number.isFinite(v));
      if (bad >= 0) throw new CheckpointError(`${p.name}: non-finite value ${t.data[bad]} at index ${bad}`);
    }
    this.nat.checkIdle(); // ERR_BUSY during fit or async predictions: they would overwrite or read half-loaded weights
    for (const p of params) p.data.set((byParam.get(p.name) as Tensor).data);
    return params.map((p) => p.name);
  }

  /**
   * Frees native memory. Parameter views already handed out stay valid (they keep the parameter memory alive
   * until they are garbage-collected). Idempotent. `ERR_BUSY` while fit, an async prediction or another call
   * (e.g. the one running a JS loss) uses the model.
   */
  dispose(): void {
    this._native?.dispose();
    this._native = undefined;
  }

  /**
   * `using model = of.sequential(...)` disposes at scope end. Keyed by `Symbol.dispose` itself (Node defines it
   * since 20.4; @types/node declares it for TypeScript), so the declaration files keep the method and `using`
   * type-checks.
   */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal A `{ x, y, rows? }` batch (rows defaults to what x holds), checked; returns its row count. */
  private checkBatch(batch: unknown): number {
    if (!is.plainObject(batch)) throw invalidArg('batch', 'an object { x, y, rows? }', batch);
    if (!is.float32Array(batch.x)) throw invalidArg('batch.x', 'Float32Array', batch.x);
    const rows = batch.rows ?? batch.x.length / this.inputs;
    this.checkData('batch', { x: batch.x, y: batch.y, rows, shape: [this.inputs] } as Dataset);
    return rows as number;
  }

  /**
   * @internal Inputs of predict: a Float32Array of whole rows (or a data set), every value finite — fit and
   * evaluate refuse NaN and ±Infinity natively, and predict must not turn them into plausible outputs.
   */
  private checkInputs(x: unknown, rows: unknown): [Float32Array, number] {
    if (!is.float32Array(x)) {
      this.checkData('data', x as Dataset);
      const d = x as Dataset;
      checkFinite('data.x', d.x, this.inputs);
      return [d.x, d.rows];
    }
    const r = rows ?? x.length / this.inputs;
    if (!is.integer(r) || r < 0 || r * this.inputs !== x.length) {
      throw new ShapeError(`x has ${x.length} values, which is not a whole number of rows of ${this.inputs} inputs`);
    }
    checkFinite('x', x, this.inputs);
    return [x, r];
  }

  /** @internal A data set that fits this model (its features, and labels or targets), or a typed error. */
  checkData(name: string, d: Dataset): void {
    const cols = checkDataset(name, d);
    if (cols !== this.inputs)
      throw new ShapeError(`${name} has ${cols} features per row, the model expects ${this.inputs}`);
    const labels = this.loss !== 'mse';
    const want = labels ? d.rows * this.groups : d.rows * this.outputs;
    if (labels && !is.int32Array(d.y)) {
      const err = invalidArg(`${name}.y`, `Int32Array of class labels (${this.loss} loss)`, d.y);
      if (d.y.length === d.rows * this.outputs)
        err.message += "; for one-hot rows, of.data.fromArrays(x, y, { labels: 'oneHot' }) gives class labels";
      else if (d.y.length === want && ArrayBuffer.isView(d.y)) {
        // class indices held as floats (tfjs dataSync())
        err.message +=
          "; for class indices held as floats, use of.data.fromArrays(x, y, { labels: 'index' }) or Int32Array.from(y)";
      }
      throw err;
    }
    if (this.loss === 'mse' && !is.float32Array(d.y))
      throw invalidArg(`${name}.y`, 'Float32Array of targets (mse loss)', d.y);
    if (d.y.length !== want) throw new ShapeError(`${name}.y has ${d.y.length} values, expected ${want}`);
  }
}

/**
 * Builds a sequential model. Dense layers must chain (each one's `inputs` equals the previous `units`);
 * each dense layer may be followed by one activation.
 * @example
 * const model = of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed: 1 });
 */
export function sequential(layers: Layer[], options?: SequentialOptions): Model {
  const o = optionsObject('sequential', options, ['seed', 'loss', 'backend', 'allowTf32']);
  if (o.allowTf32 !== undefined && typeof o.allowTf32 !== 'boolean')
    throw invalidArg('allowTf32', 'boolean', o.allowTf32);
  if (!Array.isArray(layers) || layers.length === 0) throw invalidArg('layers', 'non-empty array of layers', layers);
  const seed = o.seed ?? 0;
  if (!is.integer(seed) || (seed as number) < 0 || (seed as number) > 2 ** 53)
    throw invalidArg('seed', 'integer in [0, 2^53]', seed);
  const loss = o.loss ?? 'crossEntropy';
  if (!(LOSSES as readonly unknown[]).includes(loss)) throw invalidArg('loss', LOSSES.join(' | '), loss);
  layers.forEach((l, i) => {
    if (!is.plainObject(l) || typeof l.type !== 'string')
      throw invalidArg(`layers[${i}]`, 'a layer (of.dense(), of.conv2d(), of.relu(), ...)', l);
  });
  const topo = topology(layers);
  const width = topo.groups > 1 ? topo.outputs / topo.groups : topo.outputs;
  if (topo.groups > 1 && loss === 'mse') {
    throw new ConfigError(
      'the last layer gives a sequence or node set: classify each position (crossEntropy or zeroOne, one label per position, -1 = none), or add of.timeMean(), of.flatten() or returnSequences: false and a dense layer',
    );
  }
  if (loss !== 'mse' && (width ?? 0) < 2) throw new ConfigError(`${loss as string} needs at least 2 outputs`);
  return new Model([...layers], {
    seed: seed as number,
    loss: loss as LossName,
    backend: resolveBackend(o.backend as string | undefined),
    allowTf32: o.allowTf32 as boolean | undefined,
  });
}
