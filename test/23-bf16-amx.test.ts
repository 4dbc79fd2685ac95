// The bfloat16 GEMM on AMX tiles (native/kernels/cpu/gemm_amx.cpp), the default way of ulr({ precision: 'bf16' })
// where the CPU has the tiles and the OS grants them. TDPBF16PS does not replay a float32 FMA chain, so its bits are
// its own: the kernel is checked against float64 of the rounded operands within float32 summation error (every
// tile path, alpha / beta, a NaN-filled C with beta = 0, special values), for the same bits with 1 and 2 threads,
// and whole ULR steps for the same bits with 1 and 2 threads and closeness to the emulation (child processes, as the
// way is picked once a process by ONEFORWARD_BF16; on the CPU engine, the only one with the option).
import t from 'tap';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as of from '../lib/index';
import { nat, randn } from './helpers/native';
import { bf16, COMMON_SHAPES, roundedProductErrors, NN, NT, TN, type Variant } from './helpers/bf16';

const skip = of.backend.info().bf16 !== 'amx' && 'no usable AMX tiles here (the CPU or the OS)';
// The tile paths: 2 x 2 tiles (32 x 32 of C), 4 x 1 (N <= 16), a lone last column tile, K past KC = 256 with a short
// last slice, odd K, B as rows (NN) or as columns (NT), a strided A (TN), shapes smaller than one tile.
const SHAPES: [number, number, number, Variant][] = [
  ...COMMON_SHAPES,
  [130, 48, 600, NN],
  [200, 16, 40, NT],
  [32, 300, 100, NT],
  [7, 300, 1, NT],
  [5, 7, 3, NN],
];

function product(M: number, N: number, K: number, v: Variant, alpha: number, beta: number, C0?: Float32Array) {
  const A = randn(M * K, M + K),
    B = randn(K * N, N + 7);
  C0 ??= randn(M * N, 3);
  const C = Float32Array.from(C0);
  nat.gemmBf16(C, A, B, M, N, K, v.ta, v.tb, alpha, beta, null, 'amx');
  return { A, B, C, C0 };
}

t.test('AMX GEMM = float64 of the rounded operands within float32 summation error', { skip }, async (t) => {
  // The bound (helpers/bf16.ts): (K + 3) 2^-24 (|alpha| sum |a~ b~| + |beta C0|). The tiles' sums keep to it with a
  // wide margin: the worst ratio measured over these shapes is 0.42 (K = 1, where alpha and beta's roundings count),
  // below 0.04 for K >= 40.
  for (const [M, N, K, v] of SHAPES)
    for (const [alpha, beta] of [
      [1, 0],
      [0.75, 1.5],
      [-2, 1],
    ] as const) {
      const { A, B, C, C0 } = product(M, N, K, v, alpha, beta);
      const { bad, worst } = roundedProductErrors(C, C0, A, B, M, N, K, v, alpha, beta);
      const what = `${M}x${N}x${K} ${v.ta ? 'T' : 'N'}${v.tb ? 'T' : 'N'} alpha ${alpha} beta ${beta}`;
      t.equal(bad, 0, `${what}: within the bound (worst |error| / bound = ${worst.toFixed(4)})`);
    }
});

t.test('beta = 0 never reads C: a NaN-filled C comes out finite and right', { skip }, async (t) => {
  for (const [M, N, K, v] of [SHAPES[1]!, SHAPES[2]!, SHAPES[5]!]) {
    const { A, B, C, C0 } = product(M, N, K, v, 1.25, 0, new Float32Array(M * N).fill(NaN));
    t.ok(C.every(Number.isFinite), `${M}x${N}x${K}: finite`);
    t.equal(roundedProductErrors(C, C0, A, B, M, N, K, v, 1.25, 0).bad, 0, `${M}x${N}x${K}: within the bound`);
  }
});

t.test('special values: rounded to nearest even, infinities and NaN kept, denormals to zero', { skip }, async (t) => {
  const bits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0]!;
  const special = [bits(0x3f808000), bits(0x3f818000), bits(0x3f808001), bits(0x7f7fffff), bits(0x7f7f0000)];
  const values = Float32Array.from([...special, bits(0x00400000), bits(0x7fc00001), Infinity, -Infinity, 1e-38]);
  const M = values.length;
  // C (M, 1) = A (M, 1) x [1] and C (M, 40) = A (M, 1) x ones (1, 40): the 4 x 1 and the 2 x 2 kernels
  for (const N of [1, 40]) {
    const C = new Float32Array(M * N);
    nat.gemmBf16(C, values, new Float32Array(N).fill(1), M, N, 1, false, false, 1, 0, null, 'amx');
    const want = Array.from(bf16(values), (x) => x + 0).flatMap((w) => Array(N).fill(w));
    t.same(Array.from(C), want, `N = ${N}: each value rounded`);
  }
});

t.test('AMX GEMM: the same bits with 1 and 2 threads', { skip }, async (t) => {
  const threads0 = of.backend.info().threads;
  for (const [M, N, K, v] of [...SHAPES, [2048, 256, 300, NT] as [number, number, number, Variant]]) {
    const bits = [1, 2].map((threads) => {
      of.backend.setThreads(threads);
      return Buffer.from(product(M, N, K, v, 0.75, 1.5).C.buffer);
    });
    t.ok(bits[0]!.equals(bits[1]!), `${M}x${N}x${K}: identical`);
  }
  of.backend.setThreads(threads0);
});

t.test('ULR steps on AMX: the same bits with 1 and 2 threads, the emulation within rounding', { skip }, async (t) => {
  const script = `
    const of = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'))});
    const { cnn } = require(${JSON.stringify(path.resolve(__dirname, '..', 'bench', 'cases', 'architectures.js'))});
    const { configC } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'spatial.js'))});
    const { randn } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'native.js'))});
    const models = [
      of.sequential([of.dense(40, 64), of.tanh(), of.dense(64, 48), of.tanh(), of.dense(48, 10)], { seed: 5 }),
      of.sequential(configC(), { seed: 4 }),
      cnn(),
    ];
    const out = [];
    for (const threads of [1, 2]) {
      of.backend.setThreads(threads);
      out.push(models.map((m) => {
        const x = randn(64 * m.inputs, 3), y = Int32Array.from({ length: 64 }, (_, i) => i % 3);
        const gs = m.gradients({ x, y }, { estimator: of.ulr({ copies: 16, precision: 'bf16' }), step: 1 });
        return gs.map((g) => Buffer.from(g.buffer, g.byteOffset, g.byteLength).toString('base64'));
      }));
    }
    console.log(JSON.stringify({ way: of.backend.info().bf16, out }));`;
  const run = (way: string) => {
    const r = JSON.parse(
      execFileSync(process.execPath, ['-e', script], {
        env: { ...process.env, ONEFORWARD_BF16: way, ONEFORWARD_BACKEND: 'cpu' },
        encoding: 'utf8',
      }),
    ) as { way: string; out: string[][][] };
    const floats = (s: string) => new Float32Array(new Uint8Array(Buffer.from(s, 'base64')).buffer);
    return { way: r.way, one: r.out[0]!, two: r.out[1]!, grads: r.out[0]!.map((m) => m.map(floats)) };
  };
  const amx = run('amx'),
    emu = run('emulated');
  t.equal(amx.way, 'amx', 'ONEFORWARD_BF16=amx takes the tiles');
  t.same(amx.two, amx.one, '2 threads give the bits of 1');
  // The same noise and the same rounded operands: only the sums' order differs, so each model's gradient moves by
  // float32 rounding carried through the copies' losses (measured: at most 5e-5 relative).
  for (let m = 0; m < amx.grads.length; m++) {
    let diff = 0,
      norm = 0;
    amx.grads[m]!.forEach((g, i) =>
      g.forEach((x, j) => {
        const e = emu.grads[m]![i]![j]!;
        diff += (x - e) ** 2;
        norm += e ** 2;
      }),
    );
    const rel = Math.sqrt(diff / norm);
    t.ok(rel < 1e-3, `model ${m}: ||amx - emulated|| / ||emulated|| = ${rel.toExponential(2)} < 1e-3`);
  }
});
