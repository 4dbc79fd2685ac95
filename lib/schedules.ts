/**
 * Learning-rate schedules for `sgd`, `adam` and `adamw` (`schedule` option). A schedule is plain data; the
 * engine computes update t's rate from it (native/kernels/schedule.h), where t counts the optimizer's updates
 * from 1 — the count Adam's bias correction uses. That count lives in the optimizer state, carries over between
 * fit calls with the same optimizer kind, and is saved in checkpoints, so a resumed run continues its schedule.
 */
import { invalidArg, is, optionsObject } from './validate';

/** The schedule kinds. */
export const SCHEDULES = ['constant', 'step', 'exponential', 'cosine'] as const;
/** One of {@link SCHEDULES}. */
export type ScheduleKind = (typeof SCHEDULES)[number];

/** Options every schedule takes. */
export type WarmupOptions = {
  /**
   * Updates of linear warm-up before the schedule starts: update t ≤ `warmup` uses lr·t/`warmup`, so the rate
   * climbs from lr/`warmup` to lr; the schedule's own first update is update `warmup` + 1. Defaults to `0`.
   */
  warmup?: number;
};

/** Options of {@link step}. */
export type StepScheduleOptions = WarmupOptions & {
  /** Updates between two decays: the rate is lr·gamma^⌊s / every⌋ at the schedule's update s (from 0). */
  every: number;
  /** Decay factor in (0, 1]. Defaults to `0.1`. */
  gamma?: number;
};

/** Options of {@link exponential}. */
export type ExponentialScheduleOptions = WarmupOptions & {
  /** Decay factor per update in (0, 1]: the rate is lr·gamma^s at the schedule's update s (from 0). */
  gamma: number;
};

/** Options of {@link cosine}. */
export type CosineScheduleOptions = WarmupOptions & {
  /** Updates over which the rate falls from lr to `minLr` (after the warm-up); it stays at `minLr` afterwards. */
  steps: number;
  /** The final learning rate, absolute, in [0, lr]. Defaults to `0`. */
  minLr?: number;
};

/** A configured schedule: what the factories return, and an optimizer's `schedule` option. */
export type Schedule =
  | {
      /** A constant rate. */
      kind: 'constant';
      /** Updates of linear warm-up (see {@link WarmupOptions.warmup}). */
      warmup: number;
    }
  | {
      /** Step decay (see {@link step}). */
      kind: 'step';
      /** Updates of linear warm-up (see {@link WarmupOptions.warmup}). */
      warmup: number;
      /** Updates between two decays. */
      every: number;
      /** Decay factor in (0, 1]. */
      gamma: number;
    }
  | {
      /** Exponential decay (see {@link exponential}). */
      kind: 'exponential';
      /** Updates of linear warm-up (see {@link WarmupOptions.warmup}). */
      warmup: number;
      /** Decay factor per update in (0, 1]. */
      gamma: number;
    }
  | {
      /** Cosine decay (see {@link cosine}). */
      kind: 'cosine';
      /** Updates of linear warm-up (see {@link WarmupOptions.warmup}). */
      warmup: number;
      /** Updates over which the rate falls from lr to `minLr`. */
      steps: number;
      /** The final learning rate, absolute. */
      minLr: number;
    };

function warmupOf(o: Record<string, unknown>): number {
  const w = o.warmup ?? 0;
  if (!is.integer(w) || (w as number) < 0) throw invalidArg('warmup', 'integer >= 0', w);
  return w as number;
}

function gammaOf(v: unknown): number {
  if (!is.positive(v) || v > 1) throw invalidArg('gamma', 'number in (0, 1]', v);
  return v;
}

/** A constant rate (after an optional warm-up). */
export function constant(options?: WarmupOptions): Schedule {
  const o = optionsObject('schedules.constant', options, ['warmup']);
  return { kind: 'constant', warmup: warmupOf(o) };
}

/** Step decay: the rate is multiplied by `gamma` every `every` updates (PyTorch's StepLR, per update). */
export function step(options: StepScheduleOptions): Schedule {
  if (options === undefined) throw invalidArg('schedules.step options', 'an object with every', options);
  const o = optionsObject('schedules.step', options, ['every', 'gamma', 'warmup']);
  if (!is.positiveInteger(o.every)) throw invalidArg('every', 'positive integer', o.every);
  return { kind: 'step', warmup: warmupOf(o), every: o.every, gamma: gammaOf(o.gamma ?? 0.1) };
}

/** Exponential decay: the rate is multiplied by `gamma` after every update (PyTorch's ExponentialLR, per update). */
export function exponential(options: ExponentialScheduleOptions): Schedule {
  if (options === undefined) throw invalidArg('schedules.exponential options', 'an object with gamma', options);
  const o = optionsObject('schedules.exponential', options, ['gamma', 'warmup']);
  return { kind: 'exponential', warmup: warmupOf(o), gamma: gammaOf(o.gamma) };
}

/**
 * Cosine decay from lr to `minLr` over `steps` updates, then constant at `minLr` (PyTorch's CosineAnnealingLR
 * without restarts): minLr + (lr − minLr)·(1 + cos(π·min(s, steps)/steps))/2 at the schedule's update s (from 0).
 */
export function cosine(options: CosineScheduleOptions): Schedule {
  if (options === undefined) throw invalidArg('schedules.cosine options', 'an object with steps', options);
  const o = optionsObject('schedules.cosine', options, ['steps', 'minLr', 'warmup']);
  if (!is.positiveInteger(o.steps)) throw invalidArg('steps', 'positive integer', o.steps);
  const minLr = o.minLr ?? 0;
  if (!is.number(minLr) || minLr < 0) throw invalidArg('minLr', 'number >= 0', minLr);
  return { kind: 'cosine', warmup: warmupOf(o), steps: o.steps, minLr };
}

/** @internal The optimizers' check of a `schedule` option against their lr (a cosine floor above lr would climb). */
export function checkSchedule(s: unknown, lr: number): Schedule {
  if (!is.plainObject(s) || !SCHEDULES.includes(s.kind as ScheduleKind)) {
    throw invalidArg('schedule', 'a schedule from of.schedules (constant, step, exponential, cosine)', s);
  }
  const { kind, ...rest } = s as Record<string, unknown>; // a hand-written object gets the factories' checks
  const sched =
    kind === 'constant'
      ? constant(rest)
      : kind === 'step'
        ? step(rest as StepScheduleOptions)
        : kind === 'exponential'
          ? exponential(rest as ExponentialScheduleOptions)
          : cosine(rest as CosineScheduleOptions);
  if (sched.kind === 'cosine' && sched.minLr > lr)
    throw invalidArg('schedule minLr', `number <= lr (${lr})`, sched.minLr);
  return sched;
}
