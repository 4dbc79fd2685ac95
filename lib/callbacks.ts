/**
 * Early stopping for Model.fit, Keras' EarlyStopping rules: watch one epoch metric, stop after `patience`
 * epochs without an improvement larger than `minDelta`. This file decides; fit stops the native loop (cancel)
 * and restores the best parameters. No training code here.
 */
import { ConfigError } from './errors';
import type { EpochLog } from './native';
import { invalidArg, is, optionsObject } from './validate';

/** The epoch metrics early stopping can watch. */
export const MONITORS = ['valLoss', 'loss', 'valAccuracy', 'accuracy'] as const;
/** One of {@link MONITORS}. */
export type Monitor = (typeof MONITORS)[number];

/** Options of fit's `earlyStopping` (Keras' EarlyStopping). */
export type EarlyStoppingOptions = {
  /**
   * The epoch metric to watch; losses must fall, accuracies rise. Defaults to `'valLoss'` when fit has
   * validation data (`validation` or `validationSplit`), else `'loss'`.
   */
  monitor?: Monitor;
  /**
   * Epochs in a row without improvement after which training stops (as in Keras, `0` and `1` both stop at the
   * first epoch without improvement; the first epoch of a fit never stops it). Defaults to `0`.
   */
  patience?: number;
  /** The least change of the metric that counts as an improvement (its units; >= 0). Defaults to `0`. */
  minDelta?: number;
  /**
   * When training ends (stopped early or not), put back the parameters of the epoch with the best metric.
   * batchNorm running statistics are not parameters: they stay those of the last epoch. Defaults to `false`.
   */
  restoreBest?: boolean;
};

/** @internal The state of one fit's early stopping: feed it each epoch's log in order. */
export class EarlyStopping {
  readonly monitor: Monitor;
  readonly patience: number;
  readonly minDelta: number;
  readonly restoreBest: boolean;
  /** The best value so far and its epoch (EpochLog.epoch). */
  best: number;
  bestEpoch: number | undefined;
  /** The epoch after which training stopped, if it did. */
  stoppedEpoch: number | undefined;
  private wait = 0;
  private seen = 0;
  private readonly sign: 1 | -1; // +1: lower is better (losses); -1: higher is better (accuracies)

  constructor(options: unknown, hasValidation: boolean, loss: string) {
    const o = optionsObject('earlyStopping', options, ['monitor', 'patience', 'minDelta', 'restoreBest']);
    const monitor = o.monitor ?? (hasValidation ? 'valLoss' : 'loss');
    if (!(MONITORS as readonly unknown[]).includes(monitor))
      throw invalidArg('earlyStopping.monitor', MONITORS.map((m) => `'${m}'`).join(' | '), monitor);
    this.monitor = monitor as Monitor;
    if (this.monitor.startsWith('val') && !hasValidation) {
      throw new ConfigError(
        `earlyStopping monitors ${this.monitor} but fit has no validation data: give validation or validationSplit, or monitor 'loss'`,
      );
    }
    if (this.monitor.endsWith('ccuracy') && loss === 'mse')
      throw new ConfigError(`earlyStopping cannot monitor ${this.monitor}: an mse model reports no accuracy`);
    this.patience = (o.patience as number | undefined) ?? 0;
    if (!is.integer(this.patience) || this.patience < 0)
      throw invalidArg('earlyStopping.patience', 'integer >= 0', o.patience);
    this.minDelta = (o.minDelta as number | undefined) ?? 0;
    if (!is.number(this.minDelta) || this.minDelta < 0)
      throw invalidArg('earlyStopping.minDelta', 'finite number >= 0', o.minDelta);
    if (o.restoreBest !== undefined && !is.bool(o.restoreBest))
      throw invalidArg('earlyStopping.restoreBest', 'boolean', o.restoreBest);
    this.restoreBest = (o.restoreBest as boolean | undefined) ?? false;
    this.sign = this.monitor.endsWith('oss') ? 1 : -1;
    this.best = this.sign * Infinity;
  }

  /** Records one epoch: whether it is the new best (snapshot the parameters then) and whether to stop after it. */
  update(e: EpochLog): { improved: boolean; stop: boolean } {
    const value = e[this.monitor] ?? NaN;
    const first = this.seen++ === 0;
    this.wait++;
    // Keras' rule: an improvement beats the best by more than minDelta (NaN never improves).
    if (this.sign * (value + this.sign * this.minDelta) < this.sign * this.best) {
      this.best = value;
      this.bestEpoch = e.epoch;
      this.wait = 0;
      return { improved: true, stop: false };
    }
    const stop = this.wait >= this.patience && !first;
    if (stop) this.stoppedEpoch = e.epoch;
    return { improved: false, stop };
  }
}
