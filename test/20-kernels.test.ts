// GEMM (our packed SIMD kernel) against mathjs on small matrices and against the naive twin on odd sizes,
// in every variant the estimators use (NN, NT, TN, the row-scaled TN of the LR gradient), with alpha/beta;
// and bit-identity across SIMD levels (AVX-512 / AVX2 / scalar) and thread counts.
import t from 'tap';
import * as path from 'path';
import { execFileSync } from 'child_process';
import { multiply, transpose, matrix, type Matrix } from 'mathjs';
import * as of from '../lib/index';
import { nat, randn } from './helpers/native';
import { assertClose } from './helpers/close';

type Variant = { ta: boolean; tb: boolean; scaled: boolean };
const variants: Variant[] = [
  { ta: false, tb: false, scaled: false },
  { ta: false, tb: true, scaled: false },
  { ta: true, tb: false, scaled: false },
  { ta: true, tb: false, scaled: true },
];
const name = (v: Variant) => `${v.ta ? 'T' : 'N'}${v.tb ? 'T' : 'N'}${v.scaled ? '+kscale' : ''}`;

function run(v: Variant, M: number, N: number, K: number, alpha: number, beta: number, naive: boolean, seed = 1) {
  const A = randn(M * K, seed),
    B = randn(K * N, seed + 1),
    C = randn(M * N, seed + 2);
  const s = v.scaled ? randn(K, seed + 3) : null;
  nat.gemm(C, A, B, M, N, K, v.ta, v.tb, alpha, beta, s, naive);
  return { A, B, C0: randn(M * N, seed + 2), s, C };
}

const toM = (a: Float32Array, r: number, c: number) =>
  matrix(Array.from({ length: r }, (_, i) => Array.from(a.subarray(i * c, (i + 1) * c))));

t.test('gemm matches mathjs on small matrices', async (t) => {
  for (const v of variants) {
    const [M, N, K] = [5, 7, 3];
    const { A, B, C0, s, C } = run(v, M, N, K, 0.5, 2, false);
    let a: Matrix = v.ta ? transpose(toM(A, K, M)) : toM(A, M, K);
    if (s)
      a = multiply(
        a,
        matrix(Array.from({ length: K }, (_, i) => Array.from({ length: K }, (_, j) => (i === j ? s[i]! : 0)))),
      ) as Matrix;
    const b: Matrix = v.tb ? transpose(toM(B, N, K)) : toM(B, K, N);
    const want = (multiply(multiply(a, b), 0.5) as Matrix).toArray() as number[][];
    const exp = want.flat().map((x, i) => x + 2 * C0[i]!);
    assertClose(t, C, exp, { atol: 1e-5, rtol: 1e-5, label: `${name(v)} vs mathjs` });
  }
});

t.test('gemm matches its naive twin on odd sizes 1, 7, 33, 257', async (t) => {
  for (const v of variants) {
    for (const [M, N, K] of [
      [1, 1, 1],
      [7, 7, 7],
      [33, 7, 257],
      [257, 33, 7],
      [7, 257, 33],
      [64, 10, 300],
      [33, 257, 257],
    ] as const) {
      for (const [alpha, beta] of [
        [1, 0],
        [0.75, 1.5],
      ] as const) {
        const fast = run(v, M, N, K, alpha, beta, false, M + N + K);
        const slow = run(v, M, N, K, alpha, beta, true, M + N + K);
        assertClose(t, fast.C, slow.C, {
          atol: 1e-4,
          rtol: 1e-4,
          label: `${name(v)} ${M}x${N}x${K} a=${alpha} b=${beta}`,
        });
      }
    }
  }
});

t.test('beta = 0 ignores NaN already in C', async (t) => {
  const C = new Float32Array(6).fill(NaN);
  nat.gemm(
    C,
    new Float32Array([1, 2]),
    Float32Array.from({ length: 12 }, (_, i) => i),
    1,
    6,
    2,
    false,
    true,
    1,
    0,
    null,
    false,
  );
  t.same(Array.from(C), [2, 8, 14, 20, 26, 32], 'values are right');
  t.notOk(C.some(Number.isNaN), 'no NaN leaks through beta = 0');
});

// The packed path rounds identically at every SIMD level. (The AVX-512-only narrow kernels, N or M <= 12,
// sum in another order; they are covered by the naive-twin comparisons above.)
t.test('gemm bits are identical across thread counts and SIMD levels', async (t) => {
  const sizes = [
    [64, 256, 784],
    [2048, 10, 256],
    [256, 784, 64],
  ] as const;
  of.backend.setThreads(1);
  const one = sizes.map(([M, N, K]) => run(variants[3]!, M, N, K, 1, 0, false, 5).C);
  of.backend.setThreads(2);
  const two = sizes.map(([M, N, K]) => run(variants[3]!, M, N, K, 1, 0, false, 5).C);
  of.backend.setThreads(0);
  one.forEach((c, i) =>
    t.ok(Buffer.from(c.buffer).equals(Buffer.from(two[i]!.buffer)), `TN+kscale ${sizes[i]!.join('x')}: 1 vs 2 threads`),
  );
  // Full checksums of the outputs under each SIMD cap, computed in child processes.
  const script = `
    const { native } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'native.js'))});
    const { randn } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'native.js'))});
    const crypto = require('crypto');
    const b = native(); const h = crypto.createHash('sha256');
    for (const [M, N, K, ta, tb, sc] of [[64,256,784,0,1,0],[2048,40,256,0,1,0],[256,784,64,1,0,1],[33,70,257,0,0,0],
        [300,70,40,0,0,1],[45,70,300,1,0,1]]) {
      const A = randn(M*K, 1), B = randn(K*N, 2), C = new Float32Array(M*N);
      b.gemm(C, A, B, M, N, K, !!ta, !!tb, 1, 0, sc ? randn(K, 3) : null, false);
      h.update(Buffer.from(C.buffer));
    }
    console.log(b.backendInfo().simd + ' ' + h.digest('hex'));`;
  const sums = ['', 'avx2', 'scalar'].map((cap) =>
    execFileSync(process.execPath, ['-e', script], { env: { ...process.env, ONEFORWARD_SIMD: cap }, encoding: 'utf8' })
      .trim()
      .split(' '),
  );
  t.equal(new Set(sums.map((s) => s[0])).size, 3, `three kernels ran: ${sums.map((s) => s[0]).join(', ')}`);
  t.equal(new Set(sums.map((s) => s[1])).size, 1, 'all SIMD levels give identical bits');
});
