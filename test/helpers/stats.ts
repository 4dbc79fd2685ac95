// Test helper: small float64 statistics for checking stochastic estimators —
// mean / unbiased variance / standard error, per-coordinate z-scores of repeated
// estimates, and a one-sample Kolmogorov-Smirnov test against the standard normal.

import { erfc } from './reference';

export function mean(xs: ArrayLike<number>): number {
  if (xs.length === 0) return NaN;
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
}

/** Unbiased sample variance (divides by n-1); NaN for fewer than 2 values. Two-pass. */
export function variance(xs: ArrayLike<number>): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const m = mean(xs);
  let s = 0;
  for (let i = 0; i < n; i++) {
    const d = xs[i]! - m;
    s += d * d;
  }
  return s / (n - 1);
}

/** Standard error of the mean: sqrt(variance / n). */
export function stderr(xs: ArrayLike<number>): number {
  return Math.sqrt(variance(xs) / xs.length);
}

/**
 * Per-coordinate z-score of N estimates of a vector against a reference:
 * z_j = (mean_j - ref_j) / (sd_j / sqrt(N)), sd_j the unbiased sample sd over the N estimates.
 * If sd_j = 0: z_j = 0 when mean_j == ref_j, else +-Infinity (sign of mean_j - ref_j).
 */
export function zScores(estimates: Float64Array[], ref: ArrayLike<number>): Float64Array {
  const N = estimates.length;
  if (N < 2) throw new Error(`zScores: need at least 2 estimates, got ${N}`);
  const dim = ref.length;
  for (const e of estimates) {
    if (e.length !== dim) throw new Error(`zScores: estimate length ${e.length} != ref length ${dim}`);
  }
  const z = new Float64Array(dim);
  const col = new Float64Array(N);
  for (let j = 0; j < dim; j++) {
    for (let k = 0; k < N; k++) col[k] = estimates[k]![j]!;
    const m = mean(col);
    const sd = Math.sqrt(variance(col));
    const diff = m - ref[j]!;
    if (sd === 0) z[j] = diff === 0 ? 0 : diff > 0 ? Infinity : -Infinity;
    else z[j] = diff / (sd / Math.sqrt(N));
  }
  return z;
}

/** max_i |xs[i]| (0 for an empty array; NaN if any element is NaN). */
export function maxAbs(xs: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < xs.length; i++) {
    const a = Math.abs(xs[i]!);
    if (Number.isNaN(a)) return NaN;
    if (a > m) m = a;
  }
  return m;
}

/** Standard normal CDF, Phi(x) = erfc(-x / sqrt 2) / 2 (accurate in both tails). */
export function normalCdf(x: number): number {
  return 0.5 * erfc(-x / Math.SQRT2);
}

/**
 * Kolmogorov survival function Q(lambda) = P(K > lambda)
 *   = 2 sum_{j>=1} (-1)^(j-1) exp(-2 j^2 lambda^2)                      (used for lambda >= 1.18)
 *   = 1 - sqrt(2 pi)/lambda sum_{j>=1} exp(-(2j-1)^2 pi^2 / (8 lambda^2)) (used for lambda < 1.18,
 * where the first series converges slowly). Both are summed until terms are negligible.
 */
export function kolmogorovQ(lambda: number): number {
  if (!(lambda > 0)) return 1;
  if (lambda < 1.18) {
    let s = 0;
    for (let j = 1; j < 100; j++) {
      const term = Math.exp((-((2 * j - 1) ** 2) * Math.PI * Math.PI) / (8 * lambda * lambda));
      s += term;
      if (term < 1e-17 * s || term === 0) break;
    }
    return 1 - (Math.sqrt(2 * Math.PI) / lambda) * s;
  }
  let s = 0;
  for (let j = 1; j < 100; j++) {
    const term = Math.exp(-2 * j * j * lambda * lambda);
    s += (j % 2 === 1 ? 1 : -1) * term;
    if (term < 1e-17 * Math.abs(s) || term === 0) break;
  }
  return Math.min(1, Math.max(0, 2 * s));
}

/**
 * One-sample Kolmogorov-Smirnov test against N(0,1).
 * d = sup_x |F_n(x) - Phi(x)| computed exactly from the sorted sample;
 * p = Q((sqrt(n) + 0.12 + 0.11/sqrt(n)) * d), the asymptotic Kolmogorov p-value with
 * Stephens' small-n correction (as in Numerical Recipes' ksone).
 */
export function ksNormal(samples: ArrayLike<number>): { d: number; p: number } {
  const n = samples.length;
  if (n === 0) throw new Error('ksNormal: empty sample');
  const xs = Array.from(samples).sort((a, b) => a - b);
  let d = 0;
  for (let i = 0; i < n; i++) {
    const F = normalCdf(xs[i]!);
    d = Math.max(d, (i + 1) / n - F, F - i / n);
  }
  const sn = Math.sqrt(n);
  return { d, p: kolmogorovQ((sn + 0.12 + 0.11 / sn) * d) };
}
