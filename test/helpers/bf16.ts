// Test oracle for the bfloat16 products (native/kernels/cpu/bf16.h): the rounding, and the float64 product of the
// rounded operands with the float32 summation bound a kernel's result must keep to; layouts; a step's memory peak.
import * as of from '../../lib/index';
import { nat, randn } from './native';

/** The nearest bfloat16 (ties to even) of each value, as VCVTNEPS2BF16 rounds: denormals to zero, NaN stays NaN. */
export function bf16(x: Float32Array): Float32Array {
  const f = Float32Array.from(x),
    u = new Uint32Array(f.buffer);
  for (let i = 0; i < u.length; i++) {
    const v = u[i]!;
    if ((v & 0x7f800000) === 0) u[i] = v & 0x80000000;
    else if ((v & 0x7fffffff) > 0x7f800000) u[i] = (v | 0x400000) & 0xffff0000;
    else u[i] = (v + 0x7fff + ((v >>> 16) & 1)) & 0xffff0000;
  }
  return f;
}

/** How a row-major operand is read: transposed or not (gemm's ta / tb). */
export type Variant = { ta: boolean; tb: boolean };
/** C = A B^T (B given as N x K, a forward's weights), A B, and A^T B (A given as K x M). */
export const NT: Variant = { ta: false, tb: true },
  NN: Variant = { ta: false, tb: false },
  TN: Variant = { ta: true, tb: false };
/** Products every bf16 way must run: packed and wide, the logits' narrow shape, odd K, NN and a strided A (TN). */
export const COMMON_SHAPES: [number, number, number, Variant][] = [
  [64, 256, 784, NT],
  [2048, 10, 256, NT],
  [300, 40, 73, NT],
  [33, 70, 257, NN],
  [256, 17, 64, TN],
];

/**
 * One ULR step with bf16 copies (batch B, `copies` copies, labels i mod `classes`) of each model with 1 and 2 threads:
 * the peak of native memory it took and what model.memoryEstimate said (which must bound it).
 */
export function bf16StepPeaks(
  models: (readonly [string, () => of.Model])[],
  B: number,
  copies: number,
  classes: number,
) {
  const out: { name: string; threads: number; peak: number; estimate: number }[] = [];
  const threads0 = of.backend.info().threads;
  for (const threads of [1, 2]) {
    of.backend.setThreads(threads);
    for (const [name, build] of models) {
      const before = nat.allocStats(true).live;
      const m = build();
      const x = randn(B * m.inputs, 1),
        y = Int32Array.from({ length: B }, (_, i) => i % classes);
      const est = of.ulr({ copies, precision: 'bf16' });
      const estimate = m.memoryEstimate({ estimator: est, batchSize: B }).bytes;
      nat.allocStats(true);
      m.trainStep({ x, y, rows: B }, { estimator: est });
      out.push({ name, threads, peak: nat.allocStats().peak - before, estimate });
      m.dispose();
    }
  }
  of.backend.setThreads(threads0);
  return out;
}

/**
 * C (M, N) = alpha op(A) op(B) + beta C0 against float64 of the rounded operands a~ = bf16(a): per element,
 * |C - (alpha sum a~ b~ + beta C0)| <= gamma (|alpha| sum |a~ b~| + |beta C0|) with gamma = (K + 3) u / (1 - (K + 3) u),
 * u = 2^-24: float32 sums of exact products (a bfloat16 product is exact in float32), at most K roundings of the
 * reduction and three of alpha, beta and the add. Returns how many elements break it and the worst
 * |error| / ((K + 3) u (|alpha| S~ + |beta C0|)) (1 is the bound).
 */
export function roundedProductErrors(
  C: Float32Array,
  C0: Float32Array,
  A: Float32Array,
  B: Float32Array,
  M: number,
  N: number,
  K: number,
  v: Variant,
  alpha: number,
  beta: number,
): { bad: number; worst: number } {
  const [At, Bt] = [bf16(A), bf16(B)];
  const u = 2 ** -24,
    gamma = ((K + 3) * u) / (1 - (K + 3) * u);
  let bad = 0,
    worst = 0;
  for (let i = 0; i < M; i++)
    for (let j = 0; j < N; j++) {
      let sum = 0,
        St = 0;
      for (let p = 0; p < K; p++) {
        const r = At[v.ta ? p * M + i : i * K + p]! * Bt[v.tb ? j * K + p : p * N + j]!;
        sum += r;
        St += Math.abs(r);
      }
      const c0 = beta === 0 ? 0 : beta * C0[i * N + j]!;
      const scale = Math.abs(alpha) * St + Math.abs(c0),
        err = Math.abs(C[i * N + j]! - (alpha * sum + c0));
      if (!(err <= gamma * scale)) bad++;
      if (scale > 0) worst = Math.max(worst, err / ((K + 3) * u * scale));
    }
  return { bad, worst };
}
