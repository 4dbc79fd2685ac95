// The float32 functions of core/fastmath.h (ours, branch-free, so the CPU's loops vectorize): tanh and sigmoid through
// the engine's activation pass, erf and exp directly, against float64 (Math.tanh, 1 / (1 + Math.exp(-x)), helpers/erf,
// Math.exp) over a dense sweep of all floats: at most 3 ulp (measured: tanh 1.4, sigmoid 2.3, erf 1.4, exp 1.0).
// Saturated, NaN-propagating and sign-keeping at the edges; and every device's kernel (the simulation, CUDA where a
// GPU answers) gives the CPU's bits for tanh, sigmoid and gelu.
import t from 'tap';
import { erf } from './helpers/erf';
import { nat } from './helpers/native';
import { devices, bitsEqual } from './helpers/device';

const bits = new Uint32Array(1);
const asFloat = new Float32Array(bits.buffer);

// Every 2053rd bit pattern (both signs, every binade, subnormals and the infinities' neighbours), [-30, 30] on a 2^-12
// grid, and the neighbourhoods of the branch points |x| = 0.625 (tanh), 1 and 4 (erf).
function sweep(): Float32Array {
  const xs: number[] = [];
  for (let u = 0; u < 2 ** 32; u += 2053) {
    bits[0] = u;
    if (!Number.isNaN(asFloat[0])) xs.push(asFloat[0]!);
  }
  for (let x = -30; x <= 30; x += 2 ** -12) xs.push(x);
  for (const b of [0.625, 1, 4])
    for (let i = -4096; i <= 4096; i++) xs.push(b + i * b * 2 ** -24, -b - i * b * 2 ** -24);
  return Float32Array.from(xs);
}

// The float32 ulp at y's magnitude (the subnormals' 2^-149 below 2^-126).
function ulp(y: number): number {
  const a = Math.abs(y);
  if (a < 2 ** -126) return 2 ** -149;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  else if (2 ** (e + 1) <= a) e++;
  return 2 ** (e - 23);
}

const all = sweep();
const cases: [string, (x: number) => number, Float32Array][] = [
  ['tanh', Math.tanh, all],
  ['sigmoid', (x) => 1 / (1 + Math.exp(-x)), all],
  ['erf', (x) => erf(x), all],
  ['exp', Math.exp, all.filter((x) => x <= 0)],
];

for (const [name, ref, xs] of cases) {
  t.test(`${name}: within 3 ulp of float64 over ${xs.length} values`, async (t) => {
    const y = nat.activation(xs, name);
    let worst = 0,
      at = 0;
    for (let i = 0; i < xs.length; i++) {
      const want = ref(xs[i]!);
      const err = Math.abs(y[i]! - want) / ulp(want);
      if (!(err <= worst)) ((worst = err), (at = xs[i]!));
    }
    t.ok(worst <= 3, `max error ${worst.toFixed(2)} ulp (at x = ${at})`);
  });
}

t.test('edges: saturation, NaN, infinities, signed zero', async (t) => {
  const x = Float32Array.from([NaN, Infinity, -Infinity, 0, -0, 9.1, -9.1, 20, -20, 88, -88, 104, -104, 3e38, -3e38]);
  const [th, sg, ef] = ['tanh', 'sigmoid', 'erf'].map((f) => nat.activation(x, f));
  t.ok(Number.isNaN(th![0]) && Number.isNaN(sg![0]) && Number.isNaN(ef![0]), 'NaN in, NaN out');
  const ones = [1, -1, 0, -0, 1, -1, 1, -1, 1, -1, 1, -1, 1, -1];
  t.same(Array.from(th!.subarray(1)), ones, 'tanh saturates to +-1');
  t.same(Array.from(ef!.subarray(1)), ones, 'erf saturates to +-1');
  t.ok(Object.is(th![4], -0) && Object.is(ef![4], -0), 'tanh(-0) = erf(-0) = -0');
  t.same(Array.from(sg!.subarray(1, 5)), [1, 0, 0.5, 0.5], 'sigmoid(+-inf) = 1, 0; sigmoid(0) = 1/2');
  t.equal(sg![7], 1, 'sigmoid(20) rounds to 1');
  t.ok(sg![10]! > 0 && Math.abs(sg![10]! - Math.exp(-88)) <= 3 * ulp(Math.exp(-88)), 'sigmoid(-88) keeps e^-88');
  t.equal(sg![12], 0, 'sigmoid(-104) underflows to 0');
  t.equal(sg![14], 0, 'sigmoid(-3e38) = 0');
  t.same(Array.from(nat.activation(Float32Array.from([-Infinity, -104, -0, NaN]), 'exp')), [0, 0, 1, NaN], 'exp edges');
});

for (const d of devices)
  t.test(`${d.name}: the device's activations have the CPU's bits`, async (t) => {
    for (const name of ['tanh', 'sigmoid', 'gelu'])
      t.ok(bitsEqual(nat.activation(all, name, d.name), nat.activation(all, name)), `${name}, ${all.length} values`);
  });
