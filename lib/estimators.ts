/**
 * Gradient estimators: `bp()` (exact backpropagation, the baseline) and `ulr()` (the unified likelihood-ratio
 * method of Jiang et al., ICLR 2024: K noisy copies of every sample in one forward pass, no backward pass).
 */
import { ConfigError } from './errors';
import type { NativeEstimator } from './native';
import { invalidArg, is, optionsObject } from './validate';

/**
 * Baselines (control variates) for ULR. `loo`: leave-one-out mean of the other copies of the same sample;
 * `clean`: the noise-free loss of the same sample (one extra clean forward per sample); `running`: a running
 * average (EMA, factor 0.9) of earlier training steps' mean loss; `mean`: mean of all K copies (biased by a
 * factor (K-1)/K); `none`.
 */
export const BASELINES = ['loo', 'clean', 'running', 'mean', 'none'] as const;
/** One of {@link BASELINES}. */
export type BaselineName = (typeof BASELINES)[number];

/** Where noise goes: every layer at once, or one layer per group of copies. */
export const INJECTIONS = ['all', 'layerwise'] as const;
/** One of {@link INJECTIONS}. */
export type InjectionName = (typeof INJECTIONS)[number];

/** Noise densities, each in its standard form (location 0, scale 1), scaled by sigma. */
export const DENSITIES = ['normal', 'laplace', 'logistic'] as const;
/** One of {@link DENSITIES}. */
export type DensityName = (typeof DENSITIES)[number];

/** Scores: the density's exact score, or the sign-compressed sign(ε)/E|ε| (approximated LR, arXiv 2403.12320). */
export const SCORES = ['exact', 'sign'] as const;
/** One of {@link SCORES}. */
export type ScoreName = (typeof SCORES)[number];

/**
 * Arithmetic of the noisy copies' products: `float32`, or `bf16` (bfloat16 operands, float32 sums; see
 * {@link UlrOptions.precision}).
 */
export const PRECISIONS = ['float32', 'bf16'] as const;
/** One of {@link PRECISIONS}. */
export type PrecisionName = (typeof PRECISIONS)[number];

/** Exact backpropagation. */
export type BpEstimator = {
  /** The estimator kind. */
  kind: 'bp';
  /** Noise injection: Gaussian noise σ on every pre-activation of a layer with parameters (absent: none). */
  sigma?: number;
};

/** Options of {@link ulr}. */
export type UlrOptions = {
  /**
   * Noisy copies K of every sample (variance ∝ 1/K); even when `antithetic`. With `injection: 'layerwise'`,
   * also an array: copies per layer with parameters. Defaults to `32`.
   */
  copies?: number | number[] | 'auto';
  /**
   * With `copies: 'auto'` (layer-wise only): the cost budget, as copies per layer; each step the copies are
   * reallocated across layers (K_l ∝ √(V_l / c_l), V_l a running per-copy variance, c_l the cost of one copy)
   * at the cost of `budget` copies for every layer. Defaults to `32`.
   */
  budget?: number;
  /**
   * `'all'`: noise in every layer with parameters at once, one group of copies (one forward). `'layerwise'`: one
   * group of copies per layer with parameters, only that layer perturbed, the rest clean (shared clean prefix);
   * less noise from the other layers in each layer's estimate. Defaults to `'all'`.
   */
  injection?: InjectionName;
  /**
   * With `injection: 'layerwise'`: sizes of consecutive groups of layers with parameters perturbed together (e.g.
   * `[2, 1]`: layers 0-1 in one group, layer 2 alone). A group uses the copies of its first layer.
   * Defaults to one layer per group.
   */
  blocks?: number[];
  /**
   * Noise scale σ on each pre-activation: one number, or one entry per layer with parameters — a number, or an
   * array with one σ per channel of that layer: a dense layer's outputs, a conv's or a norm's channels (shared by
   * the positions), a recurrent layer's hidden units (or one per gate and unit). Defaults to `0.1`.
   */
  sigma?: number | (number | number[])[];
  /**
   * Copies in pairs (ε, −ε), a randomized central difference. Defaults to `false`: with the leave-one-out
   * baseline, K independent copies measured about half the variance of K/2 pairs (test/40-lr) and higher
   * digits accuracy (bench/results/cpu-digits.md); pairs help when there is no baseline or strong curvature.
   */
  antithetic?: boolean;
  /**
   * Baseline subtracted from each copy's loss: `'loo'` (leave-one-out mean of the sample's other copies;
   * unbiased), `'mean'` (mean of all K copies; slightly biased by 1/K), `'none'`. Defaults to `'loo'`.
   */
  baseline?: BaselineName;
  /**
   * Noise density: `'normal'` (score ε), `'laplace'` (score sign(ε)) or `'logistic'` (score tanh(ε/2)).
   * Defaults to `'normal'`.
   */
  noise?: DensityName;
  /**
   * `'exact'`: the density's score. `'sign'`: sign(ε)/E|ε| — one bit per noise value, the approximated-LR
   * variant; unbiased for quadratic losses, first-order otherwise. Defaults to `'exact'`.
   */
  score?: ScoreName;
  /** Compute the first layer's clean GEMM once per sample instead of once per copy. Defaults to `true`. */
  sharedPrefix?: boolean;
  /**
   * Keep each block's noise from its forward pass for its gradient pass (`true`) or regenerate it from the
   * counter-based RNG (`false`). Results are bit-identical; nothing of size B·K × width is stored either way
   * (the engine works in blocks of ~256 rows). Defaults to `true`.
   */
  storeNoise?: boolean;
  /**
   * Arithmetic of the noisy copies' products: the GEMMs and convolutions of every layer the copies run through after
   * the first noisy pre-activation (the B·K rows, most of a step's work). `'bf16'` rounds both operands of each of
   * those products to bfloat16 (8 significant bits: a relative error of at most 2^-8 per operand, far below the
   * estimate's own noise) and sums in float32. It runs on AMX tiles where the CPU and the OS allow them (bits of
   * their own, the same for any thread count; 14% off the small CNN's step on the machine measured), else AVX-512 BF16's
   * `vdpbf16ps` where that is faster than float32 FMAs, else an exact emulation (rounded operands, float32 kernels)
   * with the instruction's bits. The clean forward (the shared prefix), the gradient reductions and `bp()` keep
   * float32. CPU only, and not with `modules`; on CUDA the analogue is `sequential({ allowTf32 })`
   * (docs/performance.md). Defaults to `'float32'`.
   */
  precision?: PrecisionName;
  /**
   * Quasi-Monte Carlo noise: the copies of a sample take randomized Sobol points (a random digital shift per
   * sample and neuron keeps every point exactly normal), so each neuron's K values are stratified. Normal
   * noise only; needs `baseline: 'clean'`, `'running'` or `'none'` (the copies are not independent, so a
   * leave-one-out baseline would bias the estimate). Defaults to `false`.
   */
  qmc?: boolean;
  /** Noise seed; defaults to the model's seed. Integer in [0, 2^53]. */
  seed?: number;
  /**
   * σ over the epochs of `fit` (epoch e from 0 of E): `constant`; `step`: × gamma every `every` epochs;
   * `exponential`: × gamma^e; `cosine`: from 1 down to `min`. Defaults to constant.
   */
  sigmaSchedule?: SigmaSchedule;
  /**
   * Learn log σ per layer by its own likelihood-ratio gradient E[(ℓ − b) Σ_j (ε_j s(ε_j) − 1)] (the score of
   * the noise scale), one SGD step of `lr` per training step, starting from `sigma`. The learned values live in
   * the model (`model.sigma`, kept by checkpoints). Not with a `sigmaSchedule` (both set σ).
   */
  learnSigma?: {
    /** Learning rate of the SGD step on log σ, per training step. Defaults to `0.01`. */
    lr?: number;
  };
  /**
   * Local module training (the paper's computation-flow rearrangement): consecutive `[start, end)` ranges of
   * layers with parameters covering the model, e.g. `[[0, 2], [2, 3]]`, any layer kind. Noise goes only on each
   * module's last pre-activation; each module receives the LR estimate of the loss gradient there,
   * `(ℓ − b)·s(ε)/σ`, and runs BP inside itself (`inner: 'bp'`). No backward pass crosses a module boundary, so the
   * modules reduce independently. A one-layer module is a plain ULR layer; the first module runs once per sample.
   * A boundary may not fall inside a residual or concat block (its skip path would cross it).
   * Works with baselines `'loo'`, `'mean'`, `'running'`, `'none'`; not with `'layerwise'`, `qmc`, `learnSigma`.
   */
  modules?: [number, number][];
  /** What runs inside a module: `'bp'` (backpropagation from the module's boundary estimate). */
  inner?: 'bp';
  /**
   * The layers' block sums after the forward blocks run as concurrent tasks on the thread pool (`true`) or in a
   * loop; the reductions from the copy sums (with `modules`, the first module's backward) then use every thread for
   * their GEMMs. Bit-identical either way. (Running that backward as one more task beside the sums put its GEMMs on
   * one thread: measured 15% slower per step on 2 cores.) Defaults to `true`.
   */
  concurrent?: boolean;
  /**
   * With `modules`, in training (`fit`, `trainStep`): the first module's backward for step t runs during
   * step t+1's forward, and its update lands one step late (its gradient is one step stale; the other
   * modules' are not). The first step trains only the later modules; the last step's first-module gradient
   * is dropped at the end of `fit`, and a resumed `fit` is not bit-identical to an uninterrupted one.
   * Defaults to `false`.
   */
  pipeline?: boolean;
};

/** A σ schedule for {@link UlrOptions.sigmaSchedule}. */
export type SigmaSchedule = {
  /** The schedule's shape. */
  kind: 'constant' | 'step' | 'exponential' | 'cosine';
  /** `step`: epochs between two decays. Defaults to `1`. */
  every?: number;
  /** `step` and `exponential`: the decay factor, in (0, 1]. Defaults to `0.5`. */
  gamma?: number;
  /** `cosine`: the final σ as a fraction of the initial one, in [0, 1]. Defaults to `0`. */
  min?: number;
};

/** A configured ULR estimator. */
export type UlrEstimator = {
  /** The estimator kind. */
  kind: 'ulr';
} & Required<
  Omit<
    UlrOptions,
    | 'seed'
    | 'copies'
    | 'sigmaSchedule'
    | 'learnSigma'
    | 'budget'
    | 'blocks'
    | 'modules'
    | 'inner'
    | 'concurrent'
    | 'pipeline'
  >
> & {
    /** See {@link UlrOptions.blocks}. */
    blocks?: number[];
    /** See {@link UlrOptions.modules}. */
    modules?: [number, number][];
    /** See {@link UlrOptions.inner}. */
    inner?: 'bp';
    /** See {@link UlrOptions.concurrent}. */
    concurrent?: boolean;
    /** See {@link UlrOptions.pipeline}. */
    pipeline?: boolean;
    /** See {@link UlrOptions.copies}. */
    copies: number | number[] | 'auto';
    /** See {@link UlrOptions.budget}. */
    budget?: number;
    /** See {@link UlrOptions.seed}; absent: the model's seed. */
    seed?: number;
    /** See {@link UlrOptions.sigmaSchedule}. */
    sigmaSchedule?: SigmaSchedule;
    /** See {@link UlrOptions.learnSigma}; `lr` resolved to its default. */
    learnSigma?: {
      /** Learning rate of the SGD step on log σ. */
      lr: number;
    };
  };

/** SPSA in weight space (MeZO-style, seed replay). */
export type SpsaEstimator = {
  /** The estimator kind. */
  kind: 'spsa';
  /** Random directions per step. */
  perturbations: number;
  /** Perturbation size ε along each direction. */
  epsilon: number;
};
/** OpenAI-style evolution strategies in weight space. */
export type EsEstimator = {
  /** The estimator kind. */
  kind: 'es';
  /** Weight perturbations per step. */
  population: number;
  /** Scale σ of the weight perturbations. */
  sigma: number;
  /** Whether perturbations come in pairs (z, −z). */
  antithetic: boolean;
  /** Whether losses are replaced by centered ranks before weighting. */
  rankShaping: boolean;
};

/** Any estimator. */
export type Estimator = BpEstimator | UlrEstimator | SpsaEstimator | EsEstimator;

/**
 * SPSA (simultaneous perturbation; MeZO, Malladi et al. 2023): each of `perturbations` random directions z of
 * the whole parameter vector gives (L(θ + εz) − L(θ − εz)) / 2ε · z; the directions are regenerated from their
 * seed, never stored. For comparison with ULR: it perturbs weights, not neurons.
 */
export function spsa(options?: { perturbations?: number; epsilon?: number }): SpsaEstimator {
  const o = optionsObject('spsa', options, ['perturbations', 'epsilon']);
  const perturbations = o.perturbations ?? 16,
    epsilon = o.epsilon ?? 1e-3;
  if (!is.positiveInteger(perturbations)) throw invalidArg('perturbations', 'positive integer', perturbations);
  if (!is.positive(epsilon)) throw invalidArg('epsilon', 'positive number', epsilon);
  return { kind: 'spsa', perturbations: perturbations as number, epsilon: epsilon as number };
}

/**
 * Evolution strategies (Salimans et al. 2017): g = Σ F_i z_i / (N σ) over a population of weight
 * perturbations σ z_i, with antithetic pairs and centered-rank fitness shaping by default.
 */
export function es(options?: {
  population?: number;
  sigma?: number;
  antithetic?: boolean;
  rankShaping?: boolean;
}): EsEstimator {
  const o = optionsObject('es', options, ['population', 'sigma', 'antithetic', 'rankShaping']);
  const population = o.population ?? 32,
    sigma = o.sigma ?? 0.01;
  if (!is.positiveInteger(population)) throw invalidArg('population', 'positive integer', population);
  if (!is.positive(sigma)) throw invalidArg('sigma', 'positive number', sigma);
  for (const k of ['antithetic', 'rankShaping'] as const)
    if (o[k] !== undefined && !is.bool(o[k])) throw invalidArg(k, 'boolean', o[k]);
  return {
    kind: 'es',
    population: population as number,
    sigma: sigma as number,
    antithetic: (o.antithetic as boolean | undefined) ?? true,
    rankShaping: (o.rankShaping as boolean | undefined) ?? true,
  };
}

/**
 * Exact backpropagation (the baseline ULR is measured against). Refuses `step`/`sign` activations.
 * With `sigma`, noise-injection training: every pre-activation of a layer with parameters gets Gaussian noise σ·ε in
 * the training forward (ε from the same stream as ULR's noise, one copy per sample), and BP gives the exact gradient
 * of that noisy loss. It is the control for ULR's noise: the same noise without the likelihood ratio. Not for
 * recurrent layers; runs on the CPU.
 * @example
 * const control = of.bp({ sigma: 0.3 });
 */
export function bp(options?: { sigma?: number }): BpEstimator {
  const o = optionsObject('bp', options, ['sigma']);
  if (o.sigma === undefined || o.sigma === 0) return { kind: 'bp' };
  if (!is.number(o.sigma) || !(o.sigma > 0)) throw invalidArg('sigma', 'non-negative finite number', o.sigma);
  return { kind: 'bp', sigma: o.sigma };
}

/**
 * The ULR estimator: every dense pre-activation gets noise σ·ε; each sample runs as `copies` noisy copies in
 * one forward pass; each weight's gradient is estimated from the copies' losses times their noise.
 * @example
 * const est = of.ulr({ copies: 32, sigma: 0.1 });
 */
export function ulr(options?: UlrOptions): UlrEstimator {
  const o = optionsObject('ulr', options, [
    'copies',
    'injection',
    'sigma',
    'antithetic',
    'baseline',
    'noise',
    'score',
    'sharedPrefix',
    'storeNoise',
    'seed',
    'sigmaSchedule',
    'learnSigma',
    'qmc',
    'budget',
    'blocks',
    'modules',
    'inner',
    'concurrent',
    'pipeline',
    'precision',
  ]);
  const copies = o.copies ?? 32;
  const sigma = o.sigma ?? 0.1;
  const antithetic = o.antithetic ?? false;
  const baseline = o.baseline ?? 'loo';
  const injection = o.injection ?? 'all';
  if (!(INJECTIONS as readonly unknown[]).includes(injection))
    throw invalidArg('injection', INJECTIONS.join(' | '), injection);
  if (copies === 'auto' && injection !== 'layerwise')
    throw new ConfigError("copies: 'auto' needs injection: 'layerwise'");
  const budget = o.budget;
  if (budget !== undefined && (copies !== 'auto' || !is.integer(budget) || (budget as number) < 2)) {
    throw invalidArg('budget', "integer >= 2 (with copies: 'auto')", budget);
  }
  const list = copies === 'auto' ? [(budget as number | undefined) ?? 32] : Array.isArray(copies) ? copies : [copies];
  if (Array.isArray(copies) && injection !== 'layerwise')
    throw new ConfigError("copies per layer need injection: 'layerwise'");
  if (list.length === 0 || !list.every((k) => is.integer(k) && (k as number) >= 2))
    throw invalidArg('copies', 'integer >= 2 (or an array of them)', copies);
  if (!is.bool(antithetic)) throw invalidArg('antithetic', 'boolean', antithetic);
  const odd = list.find((k) => (k as number) % 2 !== 0);
  if (antithetic && odd !== undefined)
    throw new ConfigError(`Expected even copies with antithetic pairs but received ${odd as number}`);
  const sigmas = Array.isArray(sigma) ? sigma : [sigma];
  const okSigma = (s: unknown) =>
    is.positive(s) || (Array.isArray(s) && s.length > 0 && s.every((v) => is.positive(v)));
  if (sigmas.length === 0 || !sigmas.every(okSigma) || (!Array.isArray(sigma) && !is.positive(sigma))) {
    throw invalidArg(
      'sigma',
      'positive number, or per layer a positive number or an array of them (per channel)',
      sigma,
    );
  }
  if (!(BASELINES as readonly unknown[]).includes(baseline))
    throw invalidArg('baseline', BASELINES.join(' | '), baseline);
  const noise = o.noise ?? 'normal';
  const score = o.score ?? 'exact';
  if (!(DENSITIES as readonly unknown[]).includes(noise)) throw invalidArg('noise', DENSITIES.join(' | '), noise);
  if (!(SCORES as readonly unknown[]).includes(score)) throw invalidArg('score', SCORES.join(' | '), score);
  if (o.qmc === true && !['clean', 'running', 'none'].includes(baseline as string)) {
    throw new ConfigError("qmc needs baseline 'clean', 'running' or 'none' (its copies are not independent)");
  }
  if (o.qmc === true && noise !== 'normal') throw new ConfigError('qmc works with normal noise');
  for (const key of ['sharedPrefix', 'storeNoise', 'qmc'] as const) {
    if (o[key] !== undefined && !is.bool(o[key])) throw invalidArg(key, 'boolean', o[key]);
  }
  const precision = o.precision ?? 'float32';
  if (!(PRECISIONS as readonly unknown[]).includes(precision))
    throw invalidArg('precision', PRECISIONS.join(' | '), precision);
  if (precision !== 'float32' && o.modules !== undefined)
    throw new ConfigError("precision 'bf16' is not available with modules yet");
  if (o.seed !== undefined && (!is.integer(o.seed) || (o.seed as number) < 0 || (o.seed as number) > 2 ** 53)) {
    throw invalidArg('seed', 'integer in [0, 2^53]', o.seed);
  }
  const est: UlrEstimator = {
    kind: 'ulr',
    copies: Array.isArray(copies) ? [...(copies as number[])] : (copies as number | 'auto'),
    injection: injection as InjectionName,
    sigma: Array.isArray(sigma)
      ? (sigma as (number | number[])[]).map((s) => (Array.isArray(s) ? [...s] : s))
      : (sigma as number),
    antithetic,
    baseline: baseline as BaselineName,
    noise: noise as DensityName,
    score: score as ScoreName,
    qmc: (o.qmc as boolean | undefined) ?? false,
    sharedPrefix: (o.sharedPrefix as boolean | undefined) ?? true,
    storeNoise: (o.storeNoise as boolean | undefined) ?? true,
    precision: precision as PrecisionName,
  };
  if (o.seed !== undefined) est.seed = o.seed as number;
  if (budget !== undefined) est.budget = budget as number;
  if (o.blocks !== undefined) {
    if (!Array.isArray(o.blocks) || o.blocks.length === 0 || !o.blocks.every((n) => is.positiveInteger(n)))
      throw invalidArg('blocks', 'array of positive integers', o.blocks);
    if (injection !== 'layerwise') throw new ConfigError("blocks need injection: 'layerwise'");
    est.blocks = [...(o.blocks as number[])];
  }
  if (o.modules !== undefined) {
    const mods = o.modules as unknown;
    const pair = (r: unknown) =>
      Array.isArray(r) &&
      r.length === 2 &&
      is.integer(r[0]) &&
      is.integer(r[1]) &&
      (r[0] as number) >= 0 &&
      (r[1] as number) > (r[0] as number);
    if (
      !Array.isArray(mods) ||
      mods.length === 0 ||
      !mods.every(pair) ||
      !mods.every((r: number[], i) => r[0] === (i === 0 ? 0 : (mods[i - 1] as number[])[1]))
    ) {
      throw invalidArg(
        'modules',
        'consecutive [start, end) ranges of layers with parameters from 0, e.g. [[0, 2], [2, 3]]',
        mods,
      );
    }
    if (injection !== 'all' || o.qmc === true || o.learnSigma !== undefined)
      throw new ConfigError("modules cannot be combined with injection 'layerwise', qmc or learnSigma");
    if (baseline === 'clean') throw new ConfigError("modules support baselines 'loo', 'mean', 'running' and 'none'");
    if (o.inner !== undefined && o.inner !== 'bp') throw invalidArg('inner', "'bp'", o.inner);
    est.modules = (mods as number[][]).map((r) => [r[0], r[1]] as [number, number]);
    est.inner = 'bp';
  } else {
    if (o.inner !== undefined) throw new ConfigError('inner needs modules');
    if (o.pipeline === true) throw new ConfigError('pipeline needs modules');
  }
  for (const key of ['concurrent', 'pipeline'] as const) {
    if (o[key] !== undefined && !is.bool(o[key])) throw invalidArg(key, 'boolean', o[key]);
    if (o[key] !== undefined) est[key] = o[key] as boolean;
  }
  if (o.learnSigma !== undefined) {
    const ls = optionsObject('learnSigma', o.learnSigma, ['lr']);
    const lr = ls.lr ?? 0.01;
    if (!is.positive(lr)) throw invalidArg('learnSigma.lr', 'positive number', lr);
    if (o.sigmaSchedule !== undefined)
      throw new ConfigError('learnSigma cannot be combined with a sigmaSchedule (both set sigma)');
    est.learnSigma = { lr: lr as number };
  }
  if (o.sigmaSchedule !== undefined) {
    const sc = optionsObject('sigmaSchedule', o.sigmaSchedule, ['kind', 'every', 'gamma', 'min']) as SigmaSchedule;
    if (!['constant', 'step', 'exponential', 'cosine'].includes(sc.kind))
      throw invalidArg('sigmaSchedule.kind', 'constant | step | exponential | cosine', sc.kind);
    if (sc.every !== undefined && !is.positiveInteger(sc.every))
      throw invalidArg('sigmaSchedule.every', 'positive integer', sc.every);
    if (sc.gamma !== undefined && !(is.positive(sc.gamma) && sc.gamma <= 1))
      throw invalidArg('sigmaSchedule.gamma', 'number in (0, 1]', sc.gamma);
    if (sc.min !== undefined && !(is.number(sc.min) && sc.min >= 0 && sc.min <= 1))
      throw invalidArg('sigmaSchedule.min', 'number in [0, 1]', sc.min);
    est.sigmaSchedule = { ...sc };
  }
  return est;
}

/** @internal */
export function toNative(e: Estimator): NativeEstimator {
  if (!is.plainObject(e) || !['bp', 'ulr', 'spsa', 'es'].includes(e.kind)) {
    throw invalidArg('estimator', 'of.bp(), of.ulr({...}), of.spsa({...}) or of.es({...})', e);
  }
  if (e.kind === 'spsa') return { kind: 'spsa', population: e.perturbations, sigma: e.epsilon };
  return { ...e } as NativeEstimator;
}
