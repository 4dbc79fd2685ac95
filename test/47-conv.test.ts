// Spatial layers (conv2d, max/avg pooling, global average pooling, flatten) on channels-last images. The clean
// forward is checked against plain float64 loops (helpers/spatial.ts) on odd shapes (strides, 'same' and
// explicit padding, dilation, non-square kernels); BP against float64 central differences of that reference
// (atol 1e-4, rtol 2e-3: float32 engine); ULR's mean estimate against BP (cosine >= 0.98 over 1,000 steps at
// K = 64, sigma = 0.05, smooth units); thread counts give the same bits; checkpoints round-trip; bad layer lists
// are typed errors; a small CNN learns digits well above chance with both estimators.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFileSync } from 'child_process';
import * as of from '../lib/index';
import { assertClose, concat, cosine } from './helpers/close';
import { randn } from './helpers/native';
import { checkThreads } from './helpers/checks';
import { configA, configB, configC, configD, finiteDifferences, forwardRow } from './helpers/spatial';

const rowsOf = (m: of.Model) => ({
  rows: 3,
  x: randn(3 * m.inputs, 5, 0.8),
  y: Int32Array.from([0, 2, 1]),
  shape: [m.inputs],
});
const tensors = (m: of.Model) => m.parameters().map((p) => Float64Array.from(p.data));

t.test('clean forward = float64 loops, odd shapes', async (t) => {
  for (const [name, layers] of [
    ['A', configA()],
    ['B', configB()],
    ['C', configC()],
    ['D', configD()],
  ] as const) {
    const m = of.sequential(layers, { seed: 4 });
    const d = rowsOf(m);
    const { x, rows } = d;
    const got = m.predict(d);
    const want = concat(
      Array.from({ length: rows }, (_, r) =>
        forwardRow(layers, tensors(m), x.subarray(r * m.inputs, (r + 1) * m.inputs)),
      ),
    );
    assertClose(t, got, want, { atol: 1e-5, rtol: 1e-4, label: `config ${name}: predictions` });
    m.dispose();
  }
});

t.test('BP = float64 central differences, every tensor', async (t) => {
  for (const [name, layers] of [
    ['A', configA()],
    ['B', configB()],
    ['C', configC()],
    ['D', configD()],
  ] as const) {
    const m = of.sequential(layers, { seed: 4 });
    const d = rowsOf(m);
    const { x, y, rows } = d;
    const got = m.gradients({ x, y, rows }, { estimator: of.bp() });
    const want = finiteDifferences(layers, tensors(m), x, y, rows);
    m.parameters().forEach((p, i) =>
      assertClose(t, got[i]!, want[i]!, { atol: 1e-4, rtol: 2e-3, label: `config ${name}: ${p.name}` }),
    );
    m.dispose();
  }
});

t.test('the mean ULR estimate converges to the gradient (cosine >= 0.98, 1,000 steps, K = 64)', async (t) => {
  const m = of.sequential(configC(), { seed: 4 });
  const d = rowsOf(m);
  const { x, y, rows } = d;
  const want = concat(m.gradients({ x, y, rows }, { estimator: of.bp() }));
  const mean = new Float64Array(want.length);
  const N = 1000;
  for (let s = 0; s < N; s++) {
    const g = concat(m.gradients({ x, y, rows }, { estimator: of.ulr({ copies: 64, sigma: 0.05 }), step: s }));
    for (let i = 0; i < g.length; i++) mean[i]! += g[i]! / N;
  }
  const c = cosine(mean, want);
  t.ok(c >= 0.98, `cosine ${c.toFixed(4)}`);
  m.dispose();
});

t.test(
  'a frozen conv stem: no gradient, no update, and ULR on the rest converges to BP (cosine >= 0.98)',
  async (t) => {
    const m = of.sequential(configC(), { seed: 4 });
    m.freeze(1);
    t.equal(m.frozen, 1, 'one layer with parameters frozen');
    const d = rowsOf(m);
    const w0 = m
      .parameters()
      .slice(0, 2)
      .map((p) => Float32Array.from(p.data));
    const exact = m.gradients(d, { estimator: of.bp() });
    t.ok(exact[0]!.every((v) => v === 0) && exact[1]!.every((v) => v === 0), 'bp: zero gradient for the stem');
    const want = concat(exact.slice(2));
    const mean = new Float64Array(want.length);
    for (let s = 0; s < 1000; s++) {
      const g = m.gradients(d, { estimator: of.ulr({ copies: 64, sigma: 0.05 }), step: s });
      if (s === 0)
        t.ok(
          g[0]!.every((v) => v === 0),
          'ulr: zero gradient for the stem',
        );
      const flat = concat(g.slice(2));
      for (let i = 0; i < flat.length; i++) mean[i]! += flat[i]! / 1000;
    }
    const c = cosine(mean, want);
    t.ok(c >= 0.98, `ulr, trainable layers: cosine ${c.toFixed(4)}`);
    m.trainStep(d, { estimator: of.ulr({ copies: 8 }) });
    m.trainStep(d, { estimator: of.bp(), optimizer: of.adamw({ lr: 0.1, weightDecay: 0.5 }) });
    t.ok(
      m
        .parameters()
        .slice(0, 2)
        .every((p, i) => p.data.every((v, j) => v === w0[i]![j])),
      'the stem never moves (not even by weight decay)',
    );
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-frozen-'));
    await m.save(path.join(dir, 'f.ofckpt'));
    const back = await of.load(path.join(dir, 'f.ofckpt'));
    t.equal(back.frozen, 1, 'the checkpoint keeps the frozen count');
    (back.dispose(), m.dispose());
    fs.rmSync(dir, { recursive: true, force: true });
    const g = of.sequential([of.gru({ units: 3, inputShape: [4, 2] }), of.dense(3, 2)], { seed: 2 });
    g.freeze(1);
    const gx = randn(3 * 8, 5),
      gy = Int32Array.from([0, 1, 1]);
    const [gw, gu, gb, dw] = g.gradients({ x: gx, y: gy }, { estimator: of.ulr({ copies: 8 }) });
    t.ok(
      [gw, gu, gb].every((p) => p!.every((v) => v === 0)) && dw!.some((v) => v !== 0),
      'a frozen gru stem: no gradient, the head trains',
    );
    g.dispose();
  },
);

t.test('1 or 2 threads: the same bits (BP and ULR)', async (t) => {
  for (const layers of [configA(), configD()]) {
    const m = of.sequential(layers, { seed: 4 });
    checkThreads(t, m, 40, 3);
    m.dispose();
  }
});

// A conv with few channels runs the direct kernels (kernels/cpu/conv_direct.cpp) with AVX-512 or AVX2;
// ONEFORWARD_SIMD=scalar takes im2row + GEMM. All are float32 sums of the same products (the dense head's GEMM sums
// in another order with AVX-512), so they agree to rounding.
t.test('direct convolution (AVX-512, AVX2) = im2row + GEMM', async (t) => {
  const script = `
    const of = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'))});
    const { randn } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'native.js'))});
    const { configA, configD, configE } = require(${JSON.stringify(path.resolve(__dirname, 'helpers', 'spatial.js'))});
    const out = [configA(), configD(), configE()].map((layers) => {
      const m = of.sequential(layers, { seed: 4 });
      const x = randn(6 * m.inputs, 5, 0.8), y = Int32Array.from([0, 2, 1, 1, 0, 2]);
      const r = [m.predict({ x, y, rows: 6 }), ...m.gradients({ x, y }, { estimator: of.bp() }),
        ...m.gradients({ x, y }, { estimator: of.ulr({ copies: 8 }), step: 2 })].map((a) => Array.from(a));
      m.dispose();
      return r;
    });
    console.log(of.backend.info().simd + ' ' + JSON.stringify(out));`;
  const runs = ['', 'avx2', 'scalar'].map((cap) => {
    const line = execFileSync(process.execPath, ['-e', script], {
      env: { ...process.env, ONEFORWARD_SIMD: cap },
      encoding: 'utf8',
    }).trim();
    const at = line.indexOf(' ');
    return { simd: line.slice(0, at), out: JSON.parse(line.slice(at + 1)) as number[][][] };
  });
  t.equal(runs[2]!.simd, 'scalar', 'the capped run takes im2row + GEMM');
  for (const run of runs.slice(0, 2))
    run.out.forEach((arrays, c) =>
      arrays.forEach((a, i) =>
        assertClose(t, Float64Array.from(a), Float64Array.from(runs[2]!.out[c]![i]!), {
          atol: 1e-5,
          rtol: 1e-4,
          label: `${run.simd} vs scalar: config ${'ADE'[c]}, array ${i} (predictions, BP tensors, ULR tensors)`,
        }),
      ),
    );
  // config E (conv and pool kernels only) keeps the same bits with AVX-512 and AVX2 in the CPU engine: each output the
  // same fma chain (the device simulation runs its conv as im2row + the host GEMM, whose sums differ between ISAs)
  const probe = of.sequential([of.dense(1, 2)]);
  const cpuEngine = probe.backend === 'cpu';
  probe.dispose();
  if (cpuEngine)
    t.same(runs[0]!.out[2], runs[1]!.out[2], `${runs[0]!.simd} and ${runs[1]!.simd} give the same bits (config E)`);
});

t.test('checkpoints of spatial models round-trip', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-conv-'));
  const m = of.sequential(configB(), { seed: 7 });
  const d = rowsOf(m);
  const { x, y, rows } = d;
  m.trainStep({ x, y, rows }, { estimator: of.bp() });
  const file = path.join(dir, 'b.ofckpt');
  await m.save(file);
  const back = await of.load(file);
  t.same(back.layers, m.layers, 'layers');
  t.same(
    back.parameters().map((p) => p.name),
    m.parameters().map((p) => p.name),
    'tensor names',
  );
  t.same(Array.from(back.predict(d)), Array.from(m.predict(d)), 'predictions');
  (m.dispose(), back.dispose());
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('bad spatial layer lists are typed errors', async (t) => {
  const conv = (o: Partial<of.Conv2dOptions> = {}) => of.conv2d({ filters: 2, kernel: 3, ...o });
  t.throws(
    () => of.sequential([conv(), of.flatten(), of.dense(2, 2)]),
    { code: 'ERR_CONFIG', message: /inputShape/ },
    'no input shape',
  );
  t.throws(
    () => of.sequential([conv({ inputShape: [5, 5, 1] }), of.dense(18, 2)]),
    { code: 'ERR_CONFIG', message: /flatten/ },
    'dense on an image',
  );
  t.throws(
    () => of.sequential([conv({ inputShape: [5, 5, 1] })]),
    { code: 'ERR_CONFIG', message: /flatten/ },
    'ends with an image',
  );
  t.throws(
    () => of.sequential([conv({ inputShape: [2, 5, 1] }), of.flatten(), of.dense(2, 2)]),
    { code: 'ERR_SHAPE', message: /window/ },
    'window larger than the input',
  );
  t.throws(
    () =>
      of.sequential([conv({ inputShape: [5, 5, 1] }), conv({ inputShape: [4, 4, 2] }), of.flatten(), of.dense(2, 2)]),
    { code: 'ERR_SHAPE' },
    'inputShape disagrees',
  );
  t.throws(
    () => of.sequential([of.dense(4, 4), conv()]),
    { code: 'ERR_CONFIG', message: /image input/ },
    'conv on a flat input',
  );
  t.throws(() => of.conv2d({ filters: 0, kernel: 3 }), { code: 'ERR_CONFIG' }, 'zero filters');
  t.throws(() => of.conv2d({ filters: 2, kernel: [3] as unknown as number }), { code: 'ERR_CONFIG' }, 'bad kernel');
  t.throws(() => of.maxPool2d({ padding: 'full' as 'same' }), { code: 'ERR_CONFIG' }, 'bad padding');
  const m = of.sequential([conv({ inputShape: [5, 5, 1] }), of.step(), of.flatten(), of.dense(18, 2)], { seed: 1 });
  const x = randn(2 * 25, 1),
    y = Int32Array.from([0, 1]);
  t.throws(
    () => m.gradients({ x, y }, { estimator: of.bp() }),
    { code: 'ERR_CONFIG', message: /step/ },
    'bp refuses step',
  );
  t.ok(
    m.gradients({ x, y }, { estimator: of.ulr({ copies: 4 }) })[0]!.some((v) => v !== 0),
    'ulr trains through step',
  );
  for (const est of [of.ulr({ injection: 'layerwise' }), of.ulr({ learnSigma: {} }), of.ulr({ baseline: 'clean' })]) {
    const g = m.gradients({ x, y }, { estimator: est });
    t.ok(
      g.every((p) => p.every(Number.isFinite)) && g[0]!.some((v) => v !== 0),
      `through step too: ${JSON.stringify(est).slice(0, 60)}`,
    );
  }
  t.throws(
    () => m.gradients({ x: randn(2 * 24, 1), y, rows: 2 }, { estimator: of.bp() }),
    { code: 'ERR_SHAPE' },
    'wrong row size',
  );
  m.dispose();
});

t.test('a small CNN learns digits (2,000 rows, 1 epoch): BP >= 70%, ULR K=32 >= 35% (chance 10%)', async (t) => {
  const { train, test } = of.datasets.digits();
  const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 1).subarray(0, 2000)));
  const evalSet = of.data.take(
    test,
    Array.from({ length: 1000 }, (_, i) => i * 2),
  );
  const net = () =>
    of.sequential(
      [
        of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' }),
        of.relu(),
        of.maxPool2d(),
        of.conv2d({ filters: 16, kernel: 3, padding: 'same' }),
        of.relu(),
        of.maxPool2d(),
        of.flatten(),
        of.dense(784, 10),
      ],
      { seed: 1 },
    );
  for (const [name, estimator, bar] of [
    ['bp', of.bp(), 0.7],
    ['ulr K=32', of.ulr({ copies: 32 }), 0.35],
  ] as const) {
    const m = net();
    await m.fit(sub, { estimator, optimizer: of.adam({ lr: 1e-3 }), epochs: 1, batchSize: 32 });
    const acc = m.evaluate(evalSet).accuracy;
    t.ok(acc >= bar, `${name}: ${(acc * 100).toFixed(2)}% >= ${bar * 100}%`);
    m.dispose();
  }
});
