/**
 * Robustness evaluation: accuracy under white-box attacks (FGSM, PGD; input gradients by backprop through the
 * same engine) and under random corruption (Gaussian noise, salt-and-pepper), at given strengths. Inputs are
 * kept in [0, 1] (pixel data). Compares models however they were trained, e.g. BP vs ULR.
 */
import type { Dataset } from './data';
import { ConfigError } from './errors';
import type { Model } from './model';
import { invalidArg, is } from './validate';

/** One attack or corruption. `eps`: L∞ radius; `std`: noise standard deviation; `p`: pixel fraction. */
export type Attack =
  | {
      /** Fast gradient sign method: one step of size `eps`. */
      kind: 'fgsm';
      /** L∞ radius, in input units (pixels in [0, 1]). */
      eps: number;
    }
  | {
      /** Projected gradient descent: `steps` signed-gradient steps, projected onto the eps-ball. */
      kind: 'pgd';
      /** L∞ radius, in input units (pixels in [0, 1]). */
      eps: number;
      /** Number of steps. Defaults to `10`. */
      steps?: number;
      /** Step size, in input units. Defaults to `eps / 4`. */
      alpha?: number;
    }
  | {
      /** Additive Gaussian noise, clipped to [0, 1]. */
      kind: 'gaussian';
      /** Noise standard deviation, in input units. */
      std: number;
    }
  | {
      /** Salt-and-pepper noise: a fraction of the inputs set to 0 or 1. */
      kind: 'saltPepper';
      /** Fraction of the inputs replaced, in [0, 1]. */
      p: number;
    };

/** Accuracy of one model under each attack (and clean). */
export type RobustnessResult = {
  /** The attack, or `{ kind: 'clean' }` for the unperturbed data. */
  attack:
    | Attack
    | {
        /** No attack. */
        kind: 'clean';
      };
  /** Accuracy under it, in [0, 1]. */
  accuracy: number;
}[];

// Small seeded generator for the corruptions (deterministic reports).
function rng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => ((s ^= s << 13), (s ^= s >>> 17), (s ^= s << 5), (s >>> 0) / 2 ** 32);
}

function inputGradient(model: Model, x: Float32Array, y: Int32Array | Float32Array, rows: number): Float32Array {
  const nat = model._native;
  if (!nat) throw new ConfigError('the model has been disposed');
  return nat.inputGradients(x, y, rows).grads;
}

function accuracy(model: Model, x: Float32Array, d: Dataset): number {
  return model.evaluate({ ...d, x }).accuracy;
}

/**
 * Accuracy of `model` on `data` clean and under each attack. FGSM: x + eps·sign(∇x loss); PGD: `steps` (10)
 * steps of size `alpha` (eps/4) projected onto the eps-ball. Corruptions use a fixed seed.
 */
export function evaluate(model: Model, data: Dataset, options: { attacks: Attack[]; seed?: number; batchSize?: number }): RobustnessResult {
  if (!is.plainObject(options) || !Array.isArray(options.attacks)) throw invalidArg('options.attacks', 'an array of attacks', options?.attacks);
  const cols = data.x.length / data.rows;
  const batch = options.batchSize ?? 512;
  const clip = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
  const out: RobustnessResult = [{ attack: { kind: 'clean' }, accuracy: accuracy(model, data.x, data) }];
  for (const a of options.attacks) {
    const x = Float32Array.from(data.x);
    if (a.kind === 'fgsm' || a.kind === 'pgd') {
      if (!is.number(a.eps) || a.eps < 0) throw invalidArg('eps', 'number >= 0', a.eps);
      const steps = a.kind === 'pgd' ? a.steps ?? 10 : 1;
      const alpha = a.kind === 'pgd' ? a.alpha ?? a.eps / 4 : a.eps;
      for (let r0 = 0; r0 < data.rows; r0 += batch) {
        const n = Math.min(batch, data.rows - r0);
        const lo = r0 * cols, hi = (r0 + n) * cols;
        const y = data.y.subarray(r0 * (data.y.length / data.rows), (r0 + n) * (data.y.length / data.rows));
        for (let s = 0; s < steps; s++) {
          const g = inputGradient(model, x.subarray(lo, hi), y as Int32Array | Float32Array, n);
          for (let i = 0; i < g.length; i++) {
            const orig = data.x[lo + i]!;
            const step = x[lo + i]! + alpha * Math.sign(g[i]!);
            x[lo + i] = clip(Math.min(orig + a.eps, Math.max(orig - a.eps, step)));
          }
        }
      }
    } else if (a.kind === 'gaussian' || a.kind === 'saltPepper') {
      const u = rng(options.seed ?? 1);
      if (a.kind === 'gaussian') {
        if (!is.number(a.std) || a.std < 0) throw invalidArg('std', 'number >= 0', a.std);
        for (let i = 0; i < x.length; i++) x[i] = clip(x[i]! + a.std * Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()));
      } else {
        if (!is.number(a.p) || a.p < 0 || a.p > 1) throw invalidArg('p', 'number in [0, 1]', a.p);
        for (let i = 0; i < x.length; i++) if (u() < a.p) x[i] = u() < 0.5 ? 0 : 1;
      }
    } else {
      throw invalidArg('attack.kind', 'fgsm | pgd | gaussian | saltPepper', (a as { kind: unknown }).kind);
    }
    out.push({ attack: a, accuracy: accuracy(model, x, data) });
  }
  return out;
}
