/**
 * Robustness evaluation: accuracy under white-box attacks (FGSM, PGD; input gradients by backprop through the
 * same engine) and under random corruption (Gaussian noise, salt-and-pepper), at given strengths. Inputs are
 * kept in [0, 1] (pixel data). Compares models however they were trained, e.g. BP vs ULR.
 */
import { type Dataset, checkDataset } from './data';
import { DisposedError } from './errors';
import { Model } from './model';
import { checkKeys, invalidArg, is } from './validate';

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
  if (!nat) throw new DisposedError('this model has been disposed');
  return nat.inputGradients(x, y, rows).grads;
}

function accuracy(model: Model, x: Float32Array, d: Dataset): number {
  return model.evaluate({ ...d, x }).accuracy;
}

/** The most PGD steps one attack may ask for. */
const MAX_PGD_STEPS = 10000;

// Every attack is checked before any work, so a bad one late in the list fails fast.
function checkAttack(a: unknown, i: number): Attack {
  const name = `attacks[${i}]`;
  if (!is.plainObject(a)) throw invalidArg(name, 'an attack { kind, ... }', a);
  const keys = { fgsm: ['eps'], pgd: ['eps', 'steps', 'alpha'], gaussian: ['std'], saltPepper: ['p'] } as Record<
    string,
    string[]
  >;
  if (typeof a.kind !== 'string' || !Object.hasOwn(keys, a.kind))
    throw invalidArg(`${name}.kind`, "'fgsm' | 'pgd' | 'gaussian' | 'saltPepper'", a.kind);
  checkKeys(`attack ${a.kind}`, a, ['kind', ...keys[a.kind]!]);
  if (a.kind === 'fgsm' || a.kind === 'pgd') {
    if (!is.number(a.eps) || a.eps < 0) throw invalidArg(`${name}.eps`, 'number >= 0', a.eps);
  }
  if (a.kind === 'pgd') {
    if (a.steps !== undefined && (!is.positiveInteger(a.steps) || a.steps > MAX_PGD_STEPS))
      throw invalidArg(`${name}.steps`, `integer in [1, ${MAX_PGD_STEPS}]`, a.steps);
    if (a.alpha !== undefined && !is.positive(a.alpha)) throw invalidArg(`${name}.alpha`, 'positive number', a.alpha);
  }
  if (a.kind === 'gaussian' && (!is.number(a.std) || a.std < 0)) throw invalidArg(`${name}.std`, 'number >= 0', a.std);
  if (a.kind === 'saltPepper' && (!is.number(a.p) || a.p < 0 || a.p > 1))
    throw invalidArg(`${name}.p`, 'number in [0, 1]', a.p);
  return a as Attack;
}

/**
 * Accuracy of `model` on `data` clean and under each attack. FGSM: x + eps·sign(∇x loss); PGD: `steps` (10, at
 * most 10,000) steps of size `alpha` (eps/4) projected onto the eps-ball. Corruptions use a fixed seed.
 * @param options.attacks the attacks, each checked before any runs.
 * @param options.seed seed of the corruptions' noise, an integer >= 0. Defaults to `1`.
 * @param options.batchSize rows per input-gradient batch. Defaults to `512`.
 * @throws ConfigError (`ERR_CONFIG`) for a bad option or attack; the errors of {@link Model.evaluate} for bad data
 * (`ERR_SHAPE`, `ERR_DATA`); `ERR_DISPOSED`, `ERR_BUSY`.
 */
export function evaluate(
  model: Model,
  data: Dataset,
  options: { attacks: Attack[]; seed?: number; batchSize?: number },
): RobustnessResult {
  if (!(model instanceof Model)) throw invalidArg('model', 'a Model', model);
  if (!is.plainObject(options)) throw invalidArg('options', 'an object { attacks }', options);
  checkKeys('robustness.evaluate', options, ['attacks', 'seed', 'batchSize']);
  if (!Array.isArray(options.attacks)) throw invalidArg('options.attacks', 'an array of attacks', options.attacks);
  const attacks = options.attacks.map(checkAttack);
  if (options.seed !== undefined && (!is.integer(options.seed) || options.seed < 0))
    throw invalidArg('seed', 'integer >= 0', options.seed);
  const batch = options.batchSize ?? 512;
  if (!is.positiveInteger(batch)) throw invalidArg('batchSize', 'positive integer', batch);
  const clip = (v: number) => (v < 0 ? 0 : v > 1 ? 1 : v);
  checkDataset('data', data);
  const out: RobustnessResult = [{ attack: { kind: 'clean' }, accuracy: accuracy(model, data.x, data) }]; // checks the rest
  const cols = data.x.length / data.rows;
  for (const a of attacks) {
    const x = Float32Array.from(data.x);
    if (a.kind === 'fgsm' || a.kind === 'pgd') {
      const steps = a.kind === 'pgd' ? (a.steps ?? 10) : 1;
      const alpha = a.kind === 'pgd' ? (a.alpha ?? a.eps / 4) : a.eps;
      for (let r0 = 0; r0 < data.rows; r0 += batch) {
        const n = Math.min(batch, data.rows - r0);
        const lo = r0 * cols,
          hi = (r0 + n) * cols;
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
        for (let i = 0; i < x.length; i++)
          x[i] = clip(x[i]! + a.std * Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u()));
      } else {
        for (let i = 0; i < x.length; i++) if (u() < a.p) x[i] = u() < 0.5 ? 0 : 1;
      }
    }
    out.push({ attack: a, accuracy: accuracy(model, x, data) });
  }
  return out;
}
