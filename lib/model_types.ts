/** The model's option, parameter and report types, and its losses (model.ts re-exports them). */
import type { BackendName } from './backend';
import type { NativeModelBackend } from './native';

/**
 * Losses. `crossEntropy`: softmax cross-entropy on integer labels. `mse`: mean squared error per row.
 * `zeroOne`: 1 when the arg-max is not the label, else 0 — no derivative anywhere: only `ulr()` trains on it.
 */
export const LOSSES = ['crossEntropy', 'mse', 'zeroOne'] as const;
/** One of {@link LOSSES}. */
export type LossName = (typeof LOSSES)[number];

/** Options of {@link sequential}. */
export type SequentialOptions = {
  /** Seed of the weight init, the shuffling and (by default) the ULR noise. Integer in [0, 2^53]. Defaults to `0`. */
  seed?: number;
  /** Training loss. Defaults to `'crossEntropy'`. */
  loss?: LossName;
  /**
   * Backend: `'auto'`, `'cpu'` or `'cuda'`. Defaults to `ONEFORWARD_BACKEND` or `'auto'` (CUDA when compiled in and a
   * GPU answers). On CUDA, models of every layer kind train there with `bp()`, `spsa()`, `es()` and `ulr()` (a JS
   * loss too; the ULR options the device does not run yet for a kind go to the CPU); `predict()` and `evaluate()` run
   * on the CPU from the host copy of the parameters, and {@link Model.backendInfo} says where the last steps ran and
   * why. `'sim'` runs the CUDA backend's kernels in a host
   * simulation (for tests: slow, but every machine has it).
   */
  backend?: BackendName | 'sim';
  /**
   * TF32 tensor cores for the GEMMs on CUDA: `true` for every estimator, `false` never. Defaults to ULR only (its
   * estimate is noisy far above TF32's rounding; BP keeps full float32, as PyTorch does by default).
   */
  allowTf32?: boolean;
};

/**
 * Where a model runs: {@link Model.backendInfo}.
 * @useDeclaredType
 */
export type ModelBackend = NativeModelBackend;

/** A named parameter tensor; `data` is a writable view on native memory. */
export type Parameter = {
  /** The tensor's name: layer kind and index, then `weight` or `bias` (e.g. `dense0.weight`). */
  name: string;
  /** Its dimensions, outermost first (a dense weight: [units, inputs]). */
  shape: number[];
  /** Its values, row-major. */
  data: Float32Array;
};

/** One dense layer's line of {@link Model.gradientCheck}. */
export type GradientCheck = {
  /** The layer's name, as in its parameters' names (e.g. `dense0`). */
  layer: string;
  /** Cosine similarity of the mean estimate to the BP gradient (when BP exists). */
  cosine?: number;
  /** Mean cosine of single estimates to BP (when BP exists). */
  meanTrialCosine?: number;
  /** |mean − BP| / |BP| (when BP exists). */
  relativeError?: number;
  /** Total variance of one estimate (sum over the layer's parameters). */
  variance: number;
  /** |mean|² / variance: above 1, one estimate is mostly signal. */
  snr: number;
  /** What to change: nothing, more copies (one estimate is mostly noise), or a smaller σ (the smoothing bias shows). */
  suggestion: 'ok' | 'more copies' | 'smaller sigma';
};

/**
 * What {@link Model.memoryEstimate} returns: bytes in total and by what holds them.
 */
export type MemoryEstimate = {
  /** Every part below together, in bytes. */
  bytes: number;
  /** The parameter slab, in bytes. */
  parameters: number;
  /** The gradient slab, in bytes. */
  gradients: number;
  /** Optimizer state (two slabs of the parameters' size), in bytes. */
  optimizer: number;
  /** What the forward keeps for the step: activations, pre-activations and stored noise (every thread's block), in bytes. */
  activations: number;
  /** LR estimators: the per-block partial gradients, summed in block order, in bytes (0 for BP). */
  partials: number;
  /** The rest: the gathered batch, the clean first layer and its reduction, losses, conv patches, recurrent state, in bytes. */
  workspace: number;
};

/** What {@link Model.evaluate} returns. */
export type Evaluation = {
  /** Mean loss over the rows (per-position models: each row's loss is the mean over its labeled positions). */
  loss: number;
  /** Fraction of rows (per-position models: of labeled positions) whose arg-max is the label, in [0, 1]. */
  accuracy: number;
  /**
   * exp(loss), with `crossEntropy` loss only: the perplexity. With every position labeled (as `of.data.tokens`
   * gives), the loss is the mean per-token cross-entropy in nats and this is the per-token perplexity.
   */
  perplexity?: number;
};

/** @internal An evaluation with its perplexity, where the loss is cross-entropy. */
export function withPerplexity(loss: LossName, e: { loss: number; accuracy: number }): Evaluation {
  return loss === 'crossEntropy' ? { ...e, perplexity: Math.exp(e.loss) } : e;
}
