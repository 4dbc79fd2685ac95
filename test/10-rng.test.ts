// Philox4x32-10 known answers (Random123 kat_vectors), normality of the noise, antithetic pairs, and
// that noise is a pure function of (seed, step, layer, row, neuron): independent of thread count and order.
import { execFileSync } from 'child_process';
import * as path from 'path';
import t from 'tap';
import * as of from '../lib/index';
import { nat } from './helpers/native';
import { ksNormal, mean, variance } from './helpers/stats';

const hex = (a: Uint32Array) => Array.from(a, (v) => v.toString(16).padStart(8, '0'));

t.test('Philox4x32-10 matches the Random123 known-answer vectors', async (t) => {
  t.same(hex(nat.philox(0, 0, 0, 0, 0, 0)), ['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
  const f = 0xffffffff;
  t.same(hex(nat.philox(f, f, f, f, f, f)), ['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
  t.same(hex(nat.philox(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)), [
    'd16cfe09',
    '94fdcceb',
    '5001e420',
    '24126ea1',
  ]);
});

t.test('noise is standard normal (KS test at fixed seeds, alpha = 0.001)', async (t) => {
  for (const seed of [1, 7, 123456789]) {
    const z = nat.noise(64, 257, seed, 3, 1, 0, false);
    const { d, p } = ksNormal(z);
    t.ok(p > 0.001, `seed ${seed}: KS d=${d.toFixed(5)} p=${p.toFixed(4)}`);
    t.ok(Math.abs(mean(z)) < 5 / Math.sqrt(z.length), `seed ${seed}: mean ${mean(z).toFixed(5)}`);
    t.ok(Math.abs(variance(z) - 1) < 0.03, `seed ${seed}: variance ${variance(z).toFixed(4)}`);
  }
});

t.test('antithetic rows are exact negations of their even partner', async (t) => {
  const cols = 37;
  const z = nat.noise(10, cols, 5, 0, 0, 0, true);
  let ok = true;
  for (let r = 1; r < 10; r += 2) for (let j = 0; j < cols; j++) ok &&= z[r * cols + j] === -z[(r - 1) * cols + j]!;
  t.ok(ok, 'row 2i+1 = -row 2i');
  const plain = nat.noise(10, cols, 5, 0, 0, 0, false);
  t.same(Array.from(z.subarray(0, cols)), Array.from(plain.subarray(0, cols)), 'even rows are the plain noise');
});

t.test('noise is a pure function of its counters', async (t) => {
  const cols = 33;
  const all = nat.noise(20, cols, 9, 4, 2, 0, true);
  const part = nat.noise(9, cols, 9, 4, 2, 11, true); // rows 11..19, starting on an odd (antithetic) row
  t.same(Array.from(part), Array.from(all.subarray(11 * cols)), 'an offset range equals the slice of the full range');
  t.not(nat.noise(1, cols, 9, 5, 2, 0, false)[0], all[0], 'another step gives other noise');
  t.not(nat.noise(1, cols, 9, 4, 3, 0, false)[0], all[0], 'another layer gives other noise');
  t.not(nat.noise(1, cols, 10, 4, 2, 0, false)[0], all[0], 'another seed gives other noise');
});

// Every SIMD clone (ONEFORWARD_SIMD caps the ISA, as for the GEMM; each cap in a child process) against the scalar
// noise_at(), for each density, on rows whose length is no multiple of the 64-value block: the row kernel takes
// blocks in groups of 4, 2 and 1, then a partial block. Seeds past 2^32 give the key's high word.
t.test('every SIMD clone of the generator equals the scalar noise_at() bit for bit, for every density', async (t) => {
  const script = `
    const { native } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'native.js'))});
    const b = native(), bad = [];
    for (const density of [0, 1, 2])
      for (const [rows, cols] of [[1, 1], [3, 7], [4, 64], [5, 65], [2, 257], [3, 453], [2, 1000]])
        for (const seed of [12345, 2 ** 40 + 7]) {
          const fast = b.noise(rows, cols, seed, 6, 2, 3, true, false, density);
          const slow = b.noise(rows, cols, seed, 6, 2, 3, true, true, density);
          if (!Buffer.from(fast.buffer).equals(Buffer.from(slow.buffer))) bad.push(density + ': ' + rows + ' x ' + cols);
        }
    console.log(b.backendInfo().simd + ' ' + JSON.stringify(bad));`;
  for (const cap of ['', 'avx2', 'scalar']) {
    const line = execFileSync(process.execPath, ['-e', script], {
      env: { ...process.env, ONEFORWARD_SIMD: cap },
      encoding: 'utf8',
    }).trim();
    const at = line.indexOf(' ');
    t.same(JSON.parse(line.slice(at + 1)), [], `${line.slice(0, at)} clone (cap '${cap}'): no mismatch`);
  }
});

// The QMC normals' row kernels (one per ISA cap, each in a child process) against qmc_row_naive(), value by value:
// widths no multiple of 4, 16 or 64 (a partial last block), Sobol point indices 0, 1 and large (copies up to 1000,
// row0 placing rows mid-sample), units' first Sobol dimensions up to the last ones, seeds past 2^32, antithetic on
// and off. Rows of 1000 values cross inverse_normal's tails (p < 0.02425 or p > 1 - 0.02425) many times.
t.test('every SIMD clone of the QMC generator equals the value-by-value definition bit for bit', async (t) => {
  const script = `
    const { native } = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'native.js'))});
    const b = native(), bad = [];
    let runs = 0;
    for (const [rows, cols] of [[1, 1], [3, 7], [4, 64], [5, 65], [2, 257], [3, 453], [2, 1000]])
      for (const seed of [12345, 2 ** 40 + 7])
        for (const [copies, row0] of [[1, 0], [8, 3], [32, 61], [1000, 1999], [5, 123456]])
          for (const antithetic of [false, true])
            for (const [layer, dim] of [[0, 0], [3, 1500], [7, 65536 - 1000]]) {
              const fast = b.qmcNoise(rows, cols, seed, 6, layer, row0, antithetic, copies, dim, false);
              const slow = b.qmcNoise(rows, cols, seed, 6, layer, row0, antithetic, copies, dim, true);
              runs++;
              if (!Buffer.from(fast.buffer).equals(Buffer.from(slow.buffer)))
                bad.push([rows, cols, seed, copies, row0, antithetic, layer, dim].join(','));
            }
    console.log(b.backendInfo().simd + ' ' + runs + ' ' + JSON.stringify(bad));`;
  for (const cap of ['', 'avx2', 'scalar']) {
    const [isa, runs, bad] = execFileSync(process.execPath, ['-e', script], {
      env: { ...process.env, ONEFORWARD_SIMD: cap },
      encoding: 'utf8',
    })
      .trim()
      .split(' ') as [string, string, string];
    t.equal(Number(runs), 420, `${isa}: every case ran`);
    t.same(JSON.parse(bad), [], `${isa} clone (cap '${cap}'): no mismatch`);
  }
  const z = nat.qmcNoise(64, 300, 3, 1, 0, 0, false, 64, 0);
  t.ok(ksNormal(z).p > 0.001, 'QMC values are standard normal (KS, alpha = 0.001)');
  t.throws(() => nat.qmcNoise(1, 10, 3, 1, 0, 0, false, 4, 65530), { code: 'ERR_SHAPE' }, 'dimensions past the table');
});

t.test('noise bits do not depend on the thread count', async (t) => {
  of.backend.setThreads(1);
  const one = nat.noise(300, 129, 3, 1, 0, 0, true);
  of.backend.setThreads(2);
  const two = nat.noise(300, 129, 3, 1, 0, 0, true);
  of.backend.setThreads(0);
  t.ok(Buffer.from(one.buffer).equals(Buffer.from(two.buffer)), '1 thread and 2 threads give identical bits');
});
