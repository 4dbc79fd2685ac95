// The bfloat16 direct convolution forward (native/kernels/cpu/conv_amx.cpp, bf16.h) on AMX tiles, where the CPU has
// them: against float64 of the rounded operands within float32 summation error, over channel counts, widths, kernel
// sizes, strides, padding and dilation; the same bits for 1 and 2 threads; whole ULR steps of the small CNN with
// ONEFORWARD_BF16=amx give the same bits for 1 and 2 threads and stay within rounding level of the emulation, and
// memoryEstimate bounds their peak; a non-finite input reaches only the outputs whose windows hold it. The emulation
// and the instruction agree bit for bit on the same shapes. (test/23 is the AMX GEMM's.)
import t from 'tap';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as of from '../lib/index';
import { resolveBackend } from '../lib/backend';
import { nat, randn } from './helpers/native';
import { bf16, bf16StepPeaks } from './helpers/bf16';
import { cnn, residualCnn } from '../bench/cases/architectures';

const amx = of.backend.info().bf16 === 'amx';
const instruction = of.backend.info().bf16 !== 'emulated';
const U32 = 2 ** -24; // float32 unit roundoff

// [H, W, C, Co, kh, kw, stride, padding, dilation]: the output is floor((H + 2p - d (k - 1) - 1) / s) + 1 a side.
type Shape = [number, number, number, number, number, number, number, number, number];
const SHAPES: Shape[] = [
  [14, 14, 8, 16, 3, 3, 1, 1, 1], // the small CNN's second conv: one chunk of 24 values a kernel row
  [13, 13, 3, 24, 3, 3, 1, 1, 1], // Wo 13, odd runs (9 values, read one past), 16 + 8 channels
  [17, 17, 16, 40, 3, 3, 1, 1, 1], // Wo 17 (a block of 16 and one of 1), runs of 48 (two chunks), two passes
  [33, 33, 1, 8, 5, 5, 2, 2, 1], // C 1, stride 2, Wo 17
  [10, 33, 32, 16, 1, 1, 1, 0, 1], // 1x1, Wo 33, one full chunk of 32
  [12, 12, 5, 8, 3, 3, 1, 0, 2], // dilation 2: a run a tap, odd (5 values)
  [11, 11, 3, 16, 3, 3, 2, 2, 2], // stride and dilation 2
  [9, 9, 32, 24, 5, 5, 2, 2, 1], // runs of 160 values: five chunks of 32
  [8, 13, 2, 8, 1, 3, 1, 0, 1], // a 1x3 kernel, Ho 8, Wo 11
];

// The sizes, and the binding's geometry list [H, W, C, Ho, Wo, Co, kh, kw, sh, sw, ph, pw, dh, dw].
function geomOf([H, W, C, Co, kh, kw, s, p, d]: Shape) {
  const Ho = Math.floor((H + 2 * p - d * (kh - 1) - 1) / s) + 1,
    Wo = Math.floor((W + 2 * p - d * (kw - 1) - 1) / s) + 1;
  return { H, W, C, Ho, Wo, Co, kh, kw, s, p, d, list: [H, W, C, Ho, Wo, Co, kh, kw, s, s, p, p, d, d] };
}

function run(shape: Shape, n: number, way: 'emulated' | 'instruction' | 'amx', seed = 1) {
  const g = geomOf(shape),
    { H, W, C, Ho, Wo, Co, kh, kw } = g;
  const x = randn(n * H * W * C, seed),
    w = randn(Co * kh * kw * C, seed + 1, 0.3);
  const y = new Float32Array(n * Ho * Wo * Co).fill(NaN);
  const ok = nat.convForward(y, x, w, n, g.list, way);
  return { g, x, w, y, ok };
}

t.test(
  'AMX conv against float64 of the rounded operands: within float32 summation error',
  { skip: !amx && 'no AMX here' },
  async (t) => {
    let worstAll = 0;
    for (const shape of SHAPES) {
      const n = 2,
        { g, x, w, y, ok } = run(shape, n, 'amx');
      const { H, W, C, Ho, Wo, Co, kh, kw, s, p, d } = g,
        what = g.list.join(' ');
      t.ok(ok, `${what}: the direct convolution runs it`);
      const xr = bf16(x),
        wr = bf16(w),
        K = kh * kw * C;
      // Per element, with S~ = sum |x~ w~| over its K products (exact in float32): a float32 sum of them in any
      // order is within (K - 1) u S~ of the exact sum. The tiles' sums stay far inside (measured: the worst
      // |error| / (u S~) is 1.3 for K from 6 to 800), so the tolerance is min(K - 1, 8) u S~.
      let bad = 0,
        worst = 0;
      for (let i = 0; i < n; i++)
        for (let yo = 0; yo < Ho; yo++)
          for (let xo = 0; xo < Wo; xo++)
            for (let o = 0; o < Co; o++) {
              let exact = 0,
                St = 0;
              for (let ky = 0; ky < kh; ky++)
                for (let kx = 0; kx < kw; kx++) {
                  const iy = yo * s + ky * d - p,
                    ix = xo * s + kx * d - p;
                  if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                  for (let c = 0; c < C; c++) {
                    const p = xr[((i * H + iy) * W + ix) * C + c]! * wr[o * K + (ky * kw + kx) * C + c]!;
                    exact += p;
                    St += Math.abs(p);
                  }
                }
              const err = Math.abs(y[((i * Ho + yo) * Wo + xo) * Co + o]! - exact);
              if (!(err <= Math.min(K - 1, 8) * U32 * St)) bad++;
              if (St > 0) worst = Math.max(worst, err / (U32 * St));
            }
      worstAll = Math.max(worstAll, worst);
      t.equal(bad, 0, `${what} (K = ${K}): every element (worst |error| / (u S~) = ${worst.toFixed(2)})`);
    }
    t.ok(worstAll > 0, `the check sees the float32 sums (worst ${worstAll.toFixed(2)} u S~)`);
  },
);

t.test('AMX conv: the same bits for 1 and 2 threads', { skip: !amx && 'no AMX here' }, async (t) => {
  const threads0 = of.backend.info().threads;
  for (const shape of [SHAPES[0]!, SHAPES[2]!, SHAPES[6]!]) {
    const outs = [1, 2].map((threads) => {
      of.backend.setThreads(threads);
      return run(shape, 21, 'amx', 7).y; // 21 images: tasks of 5 images for one thread, 2 for two
    });
    t.ok(Buffer.from(outs[0]!.buffer).equals(Buffer.from(outs[1]!.buffer)), geomOf(shape).list.join(' '));
  }
  of.backend.setThreads(threads0);
});

t.test(
  'AMX conv: an infinite or NaN input reaches only the outputs whose windows hold it',
  { skip: !amx && 'no AMX here' },
  async (t) => {
    // shapes whose runs would be odd (C 3, 5 and 25): the padded image gets an extra zero channel
    for (const shape of [SHAPES[1]!, SHAPES[5]!, SHAPES[6]!, [9, 9, 25, 8, 3, 3, 1, 1, 1] as Shape]) {
      for (const bad of [Infinity, NaN]) {
        const g = geomOf(shape),
          { H, W, C, Ho, Wo, Co, kh, kw } = g;
        const x = randn(H * W * C, 3),
          w = randn(Co * kh * kw * C, 4, 0.3);
        x[(4 * W + 4) * C] = bad; // pixel (4, 4), channel 0: the value after the runs that end at (4, 3)
        const outs = (['amx', 'emulated'] as const).map((way) => {
          const y = new Float32Array(Ho * Wo * Co);
          nat.convForward(y, x, w, 1, g.list, way);
          return y;
        });
        const differ = outs[0]!.filter((v, i) => Number.isFinite(v) !== Number.isFinite(outs[1]![i]!)).length;
        const reached = outs[1]!.filter((v) => !Number.isFinite(v)).length;
        t.ok(
          differ === 0 && reached > 0,
          `${g.list.join(' ')}, ${bad}: ${reached} outputs not finite, as the emulation's`,
        );
      }
    }
  },
);

t.test('the instruction and the emulation give the same conv bits', { skip: !instruction && 'none' }, async (t) => {
  for (const shape of SHAPES) {
    const ins = run(shape, 2, 'instruction'),
      emu = run(shape, 2, 'emulated');
    t.ok(ins.ok && emu.ok && Buffer.from(ins.y.buffer).equals(Buffer.from(emu.y.buffer)), geomOf(shape).list.join(' '));
  }
});

t.test('convForward: bad geometry, lengths and ways are typed errors', async (t) => {
  const y = new Float32Array(4),
    x = new Float32Array(4),
    w = new Float32Array(1),
    geom = [2, 2, 1, 2, 2, 1, 1, 1, 1, 1, 0, 0, 1, 1];
  t.throws(() => nat.convForward(y, x, w, 1, [2, 2, 1, 2, 2], 'emulated'), { code: 'ERR_CONFIG' });
  t.throws(() => nat.convForward(y, x, w, 1, [2, 2, 1, 2, 2, 1, 1, 1, 0, 1, 0, 0, 1, 1], 'emulated'), {
    code: 'ERR_CONFIG',
  });
  t.throws(() => nat.convForward(y, x, w, 2, geom, 'emulated'), { code: 'ERR_SHAPE' });
  // Ho, Wo that the kernel does not give (the kernels size the padded image by them)
  const y6 = new Float32Array(6);
  t.throws(() => nat.convForward(y6, x, w, 1, [2, 2, 1, 3, 2, 1, 1, 1, 1, 1, 0, 0, 1, 1], 'emulated'), {
    code: 'ERR_SHAPE',
  });
  // kh kw C = 260 x 4096 x 4033 past an int (2^32 + 16384): the kernels would read W, of 16384 values, at its taps
  const big = [1, 1, 4033, 2, 2, 1, 260, 4096, 1, 1, 130, 2048, 1, 1];
  for (const way of ['float32', 'emulated'] as const)
    t.throws(() => nat.convForward(new Float32Array(4), new Float32Array(4033), new Float32Array(16384), 1, big, way), {
      code: 'ERR_SHAPE',
    });
  t.throws(() => nat.convForward(y, x, w, 1, geom, 'fp8' as never), { code: 'ERR_CONFIG' });
  if (!amx) t.throws(() => nat.convForward(y, x, w, 1, geom, 'amx'), { code: 'ERR_CONFIG' }, 'amx: not usable here');
  // one pixel, one channel, a 1x1 kernel: y = 1.5 x 2 where the direct convolution runs (not with ONEFORWARD_SIMD=scalar)
  const one = new Float32Array(1),
    g1 = [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1],
    ran = nat.convForward(one, Float32Array.of(1.5), Float32Array.of(2), 1, g1, amx ? 'amx' : 'emulated');
  t.same([ran, one[0]], ran ? [true, 3] : [false, 0], `a 1x1 conv of one pixel: ${ran ? 'ran' : 'fell back'}`);
});

// A whole ULR step (bf16 copies) of the small CNN and the residual CNN: hashes of the gradients and the gradients.
const stepScript = (threads: number) => `
  const of = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'))});
  const { cnn, residualCnn } = require(${JSON.stringify(path.resolve(__dirname, '..', 'bench', 'cases', 'architectures.js'))});
  const { randn } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'native.js'))});
  of.backend.setThreads(${threads});
  const out = [];
  for (const m of [cnn(), residualCnn()]) {
    const x = randn(64 * m.inputs, 3), y = Int32Array.from({ length: 64 }, (_, i) => i % 10);
    for (const g of m.gradients({ x, y }, { estimator: of.ulr({ copies: 32, precision: 'bf16' }), step: 1 }))
      out.push(...g);
  }
  console.log(JSON.stringify({ bf16: of.backend.info().bf16, g: out }));`;

t.test(
  'ULR steps on AMX: the same bits for 1 and 2 threads, within rounding level of the emulation',
  { skip: !amx && 'no AMX here' },
  async (t) => {
    const step = (way: string, threads: number) =>
      JSON.parse(
        execFileSync(process.execPath, ['-e', stepScript(threads)], {
          env: { ...process.env, ONEFORWARD_BF16: way, ONEFORWARD_BACKEND: 'cpu' },
          encoding: 'utf8',
          maxBuffer: 1 << 26,
        }),
      ) as { bf16: string; g: number[] };
    const [one, two, emu] = [step('amx', 1), step('amx', 2), step('emulated', 1)];
    t.equal(one.bf16, 'amx', 'ONEFORWARD_BF16=amx takes the tiles');
    t.equal(emu.bf16, 'emulated');
    t.same(one.g, two.g, '1 and 2 threads: the same bits');
    // the tiles sum the same rounded products in another order: float32-level differences in each copy's forward,
    // that the nonlinearities pass on (measured: a relative difference of 3.6e-5; bf16's own rounding is 2^-8)
    let d2 = 0,
      n2 = 0;
    for (let i = 0; i < emu.g.length; i++) ((d2 += (one.g[i]! - emu.g[i]!) ** 2), (n2 += emu.g[i]! ** 2));
    const rel = Math.sqrt(d2 / n2);
    t.ok(rel > 0 && rel < 2 ** -10, `|amx - emulated| / |emulated| = ${rel.toExponential(2)} (< 2^-10)`);
  },
);

// precision 'bf16' runs on the CPU engine only (ONEFORWARD_BACKEND=sim makes models device ones)
const cpuModels = resolveBackend() === 'cpu';

t.test(
  "memoryEstimate bounds a bf16 step's measured peak on AMX (its packed weights and images)",
  { skip: !cpuModels && 'models run on a device here' },
  async (t) => {
    const models = [['small CNN', cnn] as const, ['residual CNN', residualCnn] as const];
    for (const r of bf16StepPeaks(models, 16, 8, 10))
      t.ok(r.peak <= r.estimate, `${r.name}, ${r.threads} thread(s): peak ${r.peak} B <= estimate ${r.estimate} B`);
  },
);
