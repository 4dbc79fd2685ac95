/**
 * Optimizers. These are option objects; the updates run natively on the parameter slab inside each
 * training step (PyTorch's formulas; see native/kernels/cpu/optimizer.cpp).
 */
import type { NativeOptimizer } from './native';
import { type Schedule, checkSchedule } from './schedules';
import { invalidArg, is, optionsObject } from './validate';

/**
 * Options every optimizer takes.
 * @inline
 */
type Common = {
  /** Learning rate. Defaults to `0.01` (SGD) or `0.001` (Adam, AdamW). */
  lr?: number;
  /** Weight decay: L2 for SGD and Adam, decoupled for AdamW. Defaults to `0` (AdamW: `0.01`). */
  weightDecay?: number;
  /** Clip the global gradient L2 norm to this value before the update; `0` = off. Defaults to `0`. */
  clipNorm?: number;
  /**
   * How the learning rate changes with the update count, e.g. `of.schedules.cosine({ steps: 1000, warmup: 100 })`;
   * `lr` is its peak. Defaults to a constant `lr`.
   */
  schedule?: Schedule;
};

/** Options of {@link sgd}. */
export type SgdOptions = Common & {
  /** Momentum μ in [0, 1). Defaults to `0`. */
  momentum?: number;
  /** Nesterov momentum. Defaults to `false`. */
  nesterov?: boolean;
};

/** Options of {@link adam} and {@link adamw}. */
export type AdamOptions = Common & {
  /** First-moment decay. Defaults to `0.9`. */
  beta1?: number;
  /** Second-moment decay. Defaults to `0.999`. */
  beta2?: number;
  /** Denominator epsilon. Defaults to `1e-8`. */
  eps?: number;
};

/**
 * A configured optimizer.
 * @useDeclaredType
 */
export type Optimizer = NativeOptimizer;

function common(name: string, o: Record<string, unknown>, lr: number, wd: number) {
  const out = { lr: o.lr ?? lr, weightDecay: o.weightDecay ?? wd, clipNorm: o.clipNorm ?? 0 };
  if (!is.positive(out.lr)) throw invalidArg(`${name} lr`, 'positive number', out.lr);
  if (!is.number(out.weightDecay) || out.weightDecay < 0)
    throw invalidArg('weightDecay', 'number >= 0', out.weightDecay);
  if (!is.number(out.clipNorm) || out.clipNorm < 0) throw invalidArg('clipNorm', 'number >= 0', out.clipNorm);
  const schedule = o.schedule === undefined ? {} : { schedule: checkSchedule(o.schedule, out.lr) };
  return { ...out, ...schedule } as { lr: number; weightDecay: number; clipNorm: number; schedule?: Schedule };
}

function unit(name: string, v: unknown, def: number): number {
  const x = v ?? def;
  if (!is.number(x) || x < 0 || x >= 1) throw invalidArg(name, 'number in [0, 1)', x);
  return x;
}

/** Stochastic gradient descent with optional (Nesterov) momentum. */
export function sgd(options?: SgdOptions): Optimizer {
  const o = optionsObject('sgd', options, ['lr', 'weightDecay', 'clipNorm', 'schedule', 'momentum', 'nesterov']);
  const nesterov = o.nesterov ?? false;
  if (!is.bool(nesterov)) throw invalidArg('nesterov', 'boolean', nesterov);
  return { kind: 'sgd', ...common('sgd', o, 0.01, 0), momentum: unit('momentum', o.momentum, 0), nesterov };
}

function adamLike(kind: 'adam' | 'adamw', options: AdamOptions | undefined, wd: number): Optimizer {
  const o = optionsObject(kind, options, ['lr', 'weightDecay', 'clipNorm', 'schedule', 'beta1', 'beta2', 'eps']);
  const eps = o.eps ?? 1e-8;
  if (!is.positive(eps)) throw invalidArg('eps', 'positive number', eps);
  return {
    kind,
    ...common(kind, o, 1e-3, wd),
    beta1: unit('beta1', o.beta1, 0.9),
    beta2: unit('beta2', o.beta2, 0.999),
    eps,
  };
}

/** Adam (Kingma & Ba), with L2 weight decay if `weightDecay` > 0. */
export function adam(options?: AdamOptions): Optimizer {
  return adamLike('adam', options, 0);
}

/** AdamW (Loshchilov & Hutter): Adam with decoupled weight decay (default `0.01`). */
export function adamw(options?: AdamOptions): Optimizer {
  return adamLike('adamw', options, 0.01);
}
