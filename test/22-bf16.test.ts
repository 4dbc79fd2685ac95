// bfloat16 products for ULR's noisy copies (ulr({ precision: 'bf16' }), native/kernels/cpu/bf16.h). The GEMM against
// float64: within float32 summation error of the product of the rounded operands, and within the bound bf16's 8-bit
// significand gives against the float32 operands; rounding to nearest even (ties, overflow, NaN, denormals); the
// instruction (AVX-512 BF16) and the emulation give the same bits, in the kernel and in whole ULR steps. The
// estimate: the mean of many bf16 estimates agrees with BP on a small dense and a small conv model (cosine, fixed
// seeds), a one-step bf16 estimate agrees with float32's to rounding level, and the clean prefix, the reductions and
// a model whose only product is its shared prefix are untouched. Bad values are ERR_CONFIG; the device refuses it.
// bf16 runs on the CPU engine only: every model here is a CPU one whatever ONEFORWARD_BACKEND says, but the one that
// checks the device's refusal.
import t from 'tap';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as of from '../lib/index';
import { nat, randn } from './helpers/native';
import { concat, cosine } from './helpers/close';
import { bf16, COMMON_SHAPES, bf16StepPeaks, NN, NT, TN, type Variant } from './helpers/bf16';

const instruction = of.backend.info().bf16 !== 'emulated';
const U32 = 2 ** -24, // float32 unit roundoff
  UB = 2 ** -8; // bfloat16's: an 8-bit significand, round to nearest

// The kernels' paths: packed (wide), narrow dot (N <= 12), the emulated outer product (M <= 12, K = 1), odd K.
const SHAPES: [number, number, number, Variant][] = [
  ...COMMON_SHAPES,
  [2048, 13, 100, NT],
  [7, 300, 1, NT],
  [5, 7, 3, NN],
];

function product(M: number, N: number, K: number, v: Variant, alpha: number, beta: number, way: 'instr' | 'emul') {
  const A = randn(M * K, M + K),
    B = randn(K * N, N + 7),
    C = randn(M * N, 3);
  const C0 = Float32Array.from(C);
  nat.gemmBf16(C, A, B, M, N, K, v.ta, v.tb, alpha, beta, null, way === 'instr');
  return { A, B, C, C0 };
}

t.test('bf16 GEMM against float64: the rounded operands exactly, the float32 ones within 2^-7 relative', async (t) => {
  for (const [M, N, K, v] of SHAPES)
    for (const [alpha, beta] of [
      [1, 0],
      [0.75, 1.5],
    ] as const) {
      const { C, C0, A, B } = product(M, N, K, v, alpha, beta, 'instr');
      const [At, Bt] = [bf16(A), bf16(B)];
      const ia = (i: number, p: number) => (v.ta ? p * M + i : i * K + p),
        ib = (p: number, j: number) => (v.tb ? j * K + p : p * N + j);
      const f32 = Float32Array.from(C0);
      nat.gemm(f32, A, B, M, N, K, v.ta, v.tb, alpha, beta, null, false);
      // Per element, with S = sum |a b| and S~ = sum |a~ b~| over the reduction (a~ = bf16(a)):
      //   float32 sums of exact bf16 products:  |C - (alpha sum a~ b~ + beta C0)| <= gamma (|alpha| S~ + |beta C0|)
      //   rounding each operand by <= 2^-8:     |a~ b~ - a b| <= (2^-7 + 2^-16) |a b|
      // gamma = (K + 3) u / (1 - (K + 3) u) with u = 2^-24 covers the K sums and the alpha / beta steps.
      const gamma = ((K + 3) * U32) / (1 - (K + 3) * U32);
      let tightBad = 0,
        bf16Bad = 0,
        f32Misses = 0,
        worst = 0;
      for (let i = 0; i < M; i++)
        for (let j = 0; j < N; j++) {
          let rounded = 0,
            exact = 0,
            S = 0,
            St = 0;
          for (let p = 0; p < K; p++) {
            const e = A[ia(i, p)]! * B[ib(p, j)]!,
              r = At[ia(i, p)]! * Bt[ib(p, j)]!;
            rounded += r;
            exact += e;
            S += Math.abs(e);
            St += Math.abs(r);
          }
          const c0 = beta * C0[i * N + j]!,
            got = C[i * N + j]!;
          const tight = gamma * (Math.abs(alpha) * St + Math.abs(c0));
          if (Math.abs(got - (alpha * rounded + c0)) > tight) tightBad++;
          if (Math.abs(f32[i * N + j]! - (alpha * rounded + c0)) > tight) f32Misses++;
          const bound = Math.abs(alpha) * (2 ** -7 + 2 ** -16) * S + tight;
          if (Math.abs(got - (alpha * exact + c0)) > bound) bf16Bad++;
          if (S > 0) worst = Math.max(worst, Math.abs(got - (alpha * exact + c0)) / (Math.abs(alpha) * S));
        }
      const what = `${M}x${N}x${K} ${v.ta ? 'T' : 'N'}${v.tb ? 'T' : 'N'} alpha ${alpha} beta ${beta}`;
      t.equal(tightBad, 0, `${what}: = float64 of the rounded operands within float32 summation error`);
      t.equal(
        bf16Bad,
        0,
        `${what}: within bf16's bound of float64 (worst |error| / sum |a b| = ${worst.toExponential(2)})`,
      );
      // the check sees rounding: the float32 GEMM misses the rounded product (every shape with K > 1 has inexact operands)
      if (K > 1) t.ok(f32Misses > (M * N) / 2, `${what}: the float32 GEMM misses it in ${f32Misses} of ${M * N}`);
    }
});

t.test('rounding: nearest, ties to even, overflow to infinity, NaN kept, denormals to zero', async (t) => {
  const bits = (u: number) => new Float32Array(new Uint32Array([u]).buffer)[0]!;
  const special = [
    bits(0x3f808000), // tie, even below: down
    bits(0x3f818000), // tie, odd below: up
    bits(0x3f808001), // just above a tie: up
    bits(0x7f7fffff), // the largest float: rounds past the largest bfloat16
    bits(0x7f7f0000), // the largest bfloat16: kept
    bits(0x00400000), // a denormal: zero
    bits(0x80400000), // a negative denormal: zero
    bits(0x7fc00001), // NaN
    Infinity,
    -Infinity,
    -1.00390625,
    1e-38,
  ];
  const values = Float32Array.from([...special, ...randn(52, 9, 100)]);
  const M = values.length;
  for (const way of ['instr', 'emul'] as const) {
    // C (M, 1) = A (M, 1) x [1]: the narrow dot; C (M, M) = A (M, 1) x ones (1, M): the packed path
    const dot = new Float32Array(M),
      packed = new Float32Array(M * M);
    nat.gemmBf16(dot, values, new Float32Array([1]), M, 1, 1, false, false, 1, 0, null, way === 'instr');
    nat.gemmBf16(packed, values, new Float32Array(M).fill(1), M, M, 1, false, false, 1, 0, null, way === 'instr');
    const want = Array.from(bf16(values), (x) => x + 0); // + 0: the sum of a -0 product is +0
    t.same(Array.from(dot), want, `${way}: narrow product`);
    t.same(
      Array.from(packed),
      want.flatMap((w) => Array(M).fill(w)),
      `${way}: packed product`,
    );
  }
});

t.test(
  'the instruction gives the emulation bits, every path',
  { skip: !instruction && 'no AVX-512 BF16 here' },
  async (t) => {
    for (const [M, N, K, v] of SHAPES) {
      const ins = product(M, N, K, v, 0.75, 1.5, 'instr').C,
        emu = product(M, N, K, v, 0.75, 1.5, 'emul').C;
      t.ok(Buffer.from(ins.buffer).equals(Buffer.from(emu.buffer)), `${M}x${N}x${K}: identical bits`);
    }
  },
);

// Small models whose copies run every bf16 path: dense products packed (16 -> 16) and narrow (16 -> 3); a conv with an
// even channel count (instruction pairs) and one with an odd count (configC's second conv has 3).
const denseModel = () =>
  of.sequential([of.dense(6, 16), of.tanh(), of.dense(16, 16), of.tanh(), of.dense(16, 3)], {
    seed: 5,
    backend: 'cpu',
  });
const convLayers = () => [
  of.conv2d({ inputShape: [6, 6, 2], filters: 4, kernel: 3, padding: 'same' }),
  of.tanh(),
  of.avgPool2d({ size: 2 }),
  of.conv2d({ filters: 4, kernel: 2 }),
  of.tanh(),
  of.flatten(),
  of.dense(16, 3),
];
const convModel = () => of.sequential(convLayers(), { seed: 4, backend: 'cpu' });
const batchOf = (m: of.Model) => ({ x: randn(3 * m.inputs, 5, 0.8), y: Int32Array.from([0, 2, 1]), rows: 3 });

t.test('the mean bf16 estimate converges to BP: dense (cosine >= 0.99) and conv (>= 0.98), K = 64', async (t) => {
  for (const [name, build, steps, min] of [
    ['dense 6-16-16-3', denseModel, 600, 0.99],
    ['conv 6x6x2', convModel, 1000, 0.98],
  ] as const) {
    const m = build(),
      d = batchOf(m);
    const want = concat(m.gradients(d, { estimator: of.bp() }));
    const mean = new Float64Array(want.length);
    const est = of.ulr({ copies: 64, sigma: 0.05, precision: 'bf16' });
    for (let s = 0; s < steps; s++) {
      const g = concat(m.gradients(d, { estimator: est, step: s }));
      for (let i = 0; i < g.length; i++) mean[i]! += g[i]! / steps;
    }
    t.ok(cosine(mean, want) >= min, `${name}, ${steps} steps: cosine ${cosine(mean, want).toFixed(4)}`);
    m.dispose();
  }
});

// Every layer kind whose forward multiplies (as test/98's rows): the copies' products of each take bfloat16.
const graph: of.Graph = {
  nodes: 4,
  edges: [
    [0, 1],
    [1, 2],
    [2, 3],
    [3, 0],
  ],
};
const KINDS: [string, () => of.Layer[], number?][] = [
  ['dense', () => [of.dense(6, 16), of.tanh(), of.dense(16, 16), of.tanh(), of.dense(16, 3)]],
  ['conv', () => convLayers()],
  [
    'residual',
    () => [of.dense(6, 8), of.tanh(), of.residual([of.dense(8, 8), of.tanh(), of.dense(8, 8)]), of.dense(8, 3)],
  ],
  ['adapter', () => [of.dense(6, 8, { adapter: { rank: 2 } }), of.tanh(), of.dense(8, 3, { adapter: { rank: 2 } })]],
  ['layerNorm', () => [of.dense(6, 8), of.layerNorm(), of.tanh(), of.dense(8, 3)]],
  ['gru', () => [of.gru({ units: 4, inputShape: [3, 2] }), of.dense(4, 8), of.tanh(), of.dense(8, 3)]],
  [
    'attention',
    () => [
      of.embedding({ vocab: 5, dim: 4, steps: 3 }),
      of.positionalEmbedding(),
      of.multiHeadAttention({ heads: 2, causal: true }),
      of.tanh(),
      of.dense(4, 3),
    ],
    5,
  ],
  [
    'graphConv',
    () => [of.graphConv({ graph, units: 4, inputShape: [4, 3] }), of.tanh(), of.graphConv({ graph, units: 3 })],
  ],
];

t.test(
  'bf16 moves one estimate only at rounding level; the clean prefix and the reductions keep float32',
  async (t) => {
    for (const [name, layers, tokens] of KINDS) {
      const m = of.sequential(layers(), { seed: 4, backend: 'cpu' });
      const d = { ...batchOf(m), y: Int32Array.from({ length: 3 * m.groups }, (_, i) => i % 3) };
      if (tokens) d.x = Float32Array.from(d.x, (_, i) => (i * 7 + 3) % tokens);
      const f32 = concat(m.gradients(d, { estimator: of.ulr({ copies: 64 }), step: 2 }));
      const b16 = concat(m.gradients(d, { estimator: of.ulr({ copies: 64, precision: 'bf16' }), step: 2 }));
      t.ok(
        b16.every(Number.isFinite) && cosine(f32, b16) > 0.999,
        `${name}: cosine to the float32 estimate with the same noise ${cosine(f32, b16).toFixed(6)}`,
      );
      t.notSame(Array.from(f32), Array.from(b16), `${name}: but not the same (the copies' products are rounded)`);
      m.dispose();
    }
    // one dense layer: its only product is the shared clean prefix, so nothing is rounded
    const m = of.sequential([of.dense(6, 3)], { seed: 2, backend: 'cpu' }),
      d = batchOf(m);
    const f32 = concat(m.gradients(d, { estimator: of.ulr({ copies: 32 }), step: 1 }));
    const b16 = concat(m.gradients(d, { estimator: of.ulr({ copies: 32, precision: 'bf16' }), step: 1 }));
    t.same(Array.from(b16), Array.from(f32), 'a model whose only product is the shared prefix: the same bits');
    m.dispose();
  },
);

t.test(
  'ULR steps: instruction, emulation and the default (but AMX) give the same bits',
  { skip: !instruction && 'no AVX-512 BF16 here' },
  async (t) => {
    const script = `
    const of = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'))});
    const { cnn } = require(${JSON.stringify(path.resolve(__dirname, '..', 'bench', 'cases', 'architectures.js'))});
    const { configC } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'spatial.js'))});
    const { randn } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'native.js'))});
    const h = require('crypto').createHash('sha256');
    const models = [
      of.sequential([of.dense(6, 16), of.tanh(), of.dense(16, 16), of.tanh(), of.dense(16, 3)], { seed: 5 }),
      of.sequential(configC(), { seed: 4 }),
      of.sequential([
        of.conv2d({ inputShape: [6, 6, 2], filters: 4, kernel: 3, padding: 'same' }), of.tanh(), of.avgPool2d({ size: 2 }),
        of.conv2d({ filters: 4, kernel: 2 }), of.tanh(), of.flatten(), of.dense(16, 3),
      ], { seed: 4 }),
      cnn(),
    ];
    for (const m of models) {
      const x = randn(64 * m.inputs, 3), y = Int32Array.from({ length: 64 }, (_, i) => i % 3);
      for (const g of m.gradients({ x, y }, { estimator: of.ulr({ copies: 16, precision: 'bf16' }), step: 1 }))
        h.update(Buffer.from(g.buffer, g.byteOffset, g.byteLength));
    }
    console.log(of.backend.info().bf16 + '|' + h.digest('hex'));`;
    const runs = ['instruction', 'emulated', ''].map((way) =>
      execFileSync(process.execPath, ['-e', script], {
        env: { ...process.env, ONEFORWARD_BF16: way, ONEFORWARD_BACKEND: 'cpu' },
        encoding: 'utf8',
      })
        .trim()
        .split('|'),
    );
    t.equal(runs[0]![0], 'avx512bf16', 'ONEFORWARD_BF16=instruction runs the instruction everywhere');
    t.equal(runs[1]![0], 'emulated', 'ONEFORWARD_BF16=emulated emulates');
    // the default takes the AMX tiles where they are usable, which have their own bits (test/23)
    const same = runs[2]![0] === 'amx' ? runs.slice(0, 2) : runs;
    t.equal(new Set(same.map((r) => r[1])).size, 1, `identical gradients (${same.map((r) => r[0]).join(', ')})`);
  },
);

t.test('precision: bad values, modules and the device are ERR_CONFIG; the option survives copies', async (t) => {
  for (const bad of ['fp16', 'BF16', 16, true])
    t.throws(() => of.ulr({ precision: bad as never }), { code: 'ERR_CONFIG' });
  t.throws(() => of.ulr({ precision: 'bf16', modules: [[0, 1]] }), { code: 'ERR_CONFIG' });
  const m = denseModel(),
    d = batchOf(m);
  // past the JS checks, to the native parser and validation
  const raw = (o: object) => ({ ...of.ulr({ copies: 8 }), ...o }) as of.Estimator;
  t.throws(() => m.gradients(d, { estimator: raw({ precision: 'half' }) }), { code: 'ERR_CONFIG' });
  t.throws(() => m.gradients(d, { estimator: raw({ precision: 'bf16', modules: [[0, 3]], inner: 'bp' }) }), {
    code: 'ERR_CONFIG',
    message: /modules/,
  });
  // an estimator object survives JSON and structured cloning (workers) with its precision
  const est = of.ulr({ copies: 8, precision: 'bf16' });
  const want = concat(m.gradients(d, { estimator: est, step: 3 }));
  for (const copy of [JSON.parse(JSON.stringify(est)), structuredClone(est)])
    t.same(Array.from(concat(m.gradients(d, { estimator: copy, step: 3 }))), Array.from(want), 'a copy: the same bits');
  const h = await m.fit({ ...d, shape: [6] }, { estimator: est, epochs: 1, batchSize: 3 });
  t.ok(Number.isFinite(h.epochs[0]!.loss), 'fit trains with it');
  m.dispose();
  const dev = of.sequential([of.dense(6, 16), of.relu(), of.dense(16, 3)], { seed: 1, backend: 'sim' });
  t.throws(() => dev.gradients(d, { estimator: est }), { code: 'ERR_CONFIG', message: /allowTf32/ });
  dev.dispose();
});

t.test("memoryEstimate bounds a bf16 step's measured peak", async (t) => {
  const models = [['dense', denseModel] as const, ['conv', convModel] as const];
  for (const r of bf16StepPeaks(models, 64, 32, 3))
    t.ok(r.peak <= r.estimate, `${r.name}, ${r.threads} thread(s): peak ${r.peak} B <= estimate ${r.estimate} B`);
});
