// Units and losses without a derivative: quantized activations (2^bits levels in [0, 1]), binary and ternary
// weights (per output row; the forward checked against float64 loops), and the 0-1 loss. The
// forward is checked against float64 loops; BP, input gradients and gradientCheck's exact comparison refuse
// them with ERR_CONFIG; ULR trains a 1-bit network on the 0-1 loss alone (digits, 2,000 rows, 1 epoch, >= 40%;
// chance 10%); checkpoints keep the levels and the loss.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { assertClose, concat } from './helpers/close';
import { randn } from './helpers/native';
import { forwardRow } from './helpers/spatial';

t.test('quantize: forward = float64 loops at 1, 2 and 3 bits', async (t) => {
  for (const bits of [1, 2, 3]) {
    const layers: of.Layer[] = [of.dense(5, 6), of.quantize({ bits }), of.dense(6, 3)];
    const m = of.sequential(layers, { seed: bits });
    const x = randn(4 * 5, 7, 1.5),
      y = Int32Array.from([0, 1, 2, 0]);
    const want = concat(
      Array.from({ length: 4 }, (_, r) =>
        forwardRow(
          layers,
          m.parameters().map((p) => Float64Array.from(p.data)),
          x.subarray(r * 5, (r + 1) * 5),
        ),
      ),
    );
    assertClose(t, m.predict({ x, y, rows: 4, shape: [5] }), want, { atol: 1e-5, rtol: 1e-4, label: `${bits} bits` });
    t.same(layers[1], { type: 'activation', activation: 'quantize', levels: 2 ** bits }, 'layer spec');
    m.dispose();
  }
  t.throws(() => of.quantize({ bits: 0 }), { code: 'ERR_CONFIG' }, 'bits out of range');
});

t.test('the 0-1 loss and quantized units: BP refuses, ULR trains', async (t) => {
  const { train, test } = of.datasets.digits();
  const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 2).subarray(0, 2000)));
  const m = of.sequential([of.dense(784, 128), of.quantize({ bits: 1 }), of.dense(128, 10)], {
    seed: 1,
    loss: 'zeroOne',
  });
  const b = of.data.take(sub, [0, 1, 2, 3]);
  t.throws(
    () => m.gradients(b, { estimator: of.bp() }),
    { code: 'ERR_CONFIG', message: /0-1 loss/ },
    'bp refuses the 0-1 loss',
  );
  t.throws(
    () => of.robustness.evaluate(m, b, { attacks: [{ kind: 'fgsm', eps: 0.1 }] }),
    { code: 'ERR_CONFIG' },
    'no input gradients',
  );
  const q = of.sequential([of.dense(784, 16), of.quantize(), of.dense(16, 10)], { seed: 1 });
  t.throws(
    () => q.gradients(b, { estimator: of.bp() }),
    { code: 'ERR_CONFIG', message: /quantize/ },
    'bp refuses quantize',
  );
  t.ok(
    q.gradientCheck(b, { estimator: of.ulr({ copies: 8 }), trials: 2 }).every((g) => g.cosine === undefined),
    'gradientCheck has no exact reference',
  );
  q.dispose();
  const before = m.evaluate(test);
  t.ok(Math.abs(before.loss - (1 - before.accuracy)) < 1e-9, 'the 0-1 loss is the error rate');
  await m.fit(sub, {
    estimator: of.ulr({ copies: 32, sigma: 0.3 }),
    optimizer: of.adam({ lr: 1e-3 }),
    epochs: 1,
    batchSize: 32,
  });
  const after = m.evaluate(test).accuracy;
  t.ok(after >= 0.4, `1-bit activations, 0-1 loss, ULR: ${(after * 100).toFixed(2)}% >= 40% (chance 10%)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-q-'));
  await m.save(path.join(dir, 'q.ofckpt'));
  const back = await of.load(path.join(dir, 'q.ofckpt'));
  t.equal(back.loss, 'zeroOne', 'loss kept');
  t.same(back.layers, m.layers, 'levels kept');
  (m.dispose(), back.dispose());
  fs.rmSync(dir, { recursive: true, force: true });
});

// Binary / ternary weights per output row, in float64.
function quantizeRows(w: ArrayLike<number>, rows: number, kind: 'binary' | 'ternary'): Float64Array {
  const cols = w.length / rows;
  const out = new Float64Array(w.length);
  for (let o = 0; o < rows; o++) {
    const row = Array.from({ length: cols }, (_, i) => w[o * cols + i]!);
    const mean = row.reduce((a, v) => a + Math.abs(v), 0) / cols;
    if (kind === 'binary') {
      row.forEach((v, i) => (out[o * cols + i] = v >= 0 ? mean : -mean));
      continue;
    }
    const kept = row.filter((v) => Math.abs(v) > 0.7 * mean);
    const a = kept.length ? kept.reduce((s, v) => s + Math.abs(v), 0) / kept.length : 0;
    row.forEach((v, i) => (out[o * cols + i] = Math.abs(v) > 0.7 * mean ? Math.sign(v) * a : 0));
  }
  return out;
}

t.test(
  'binary and ternary weights: forward = float64 loops with quantized rows; BP refuses; ULR trains the real weights',
  async (t) => {
    for (const kind of ['binary', 'ternary'] as const) {
      const m = of.sequential([of.dense(6, 8, { weights: kind }), of.tanh(), of.dense(8, 3, { weights: kind })], {
        seed: 1,
      });
      const ps = m.parameters();
      const q = [
        quantizeRows(ps[0]!.data, 8, kind),
        Float64Array.from(ps[1]!.data),
        quantizeRows(ps[2]!.data, 3, kind),
        Float64Array.from(ps[3]!.data),
      ];
      const x = randn(4 * 6, 3),
        y = Int32Array.from([0, 1, 2, 0]);
      const want = concat(Array.from({ length: 4 }, (_, r) => forwardRow(m.layers, q, x.subarray(r * 6, (r + 1) * 6))));
      assertClose(t, m.predict({ x, y, rows: 4, shape: [6] }), want, {
        atol: 1e-5,
        rtol: 1e-4,
        label: `${kind}: forward`,
      });
      t.throws(
        () => m.gradients({ x, y }, { estimator: of.bp() }),
        { code: 'ERR_CONFIG', message: /binary or ternary/ },
        `${kind}: bp refuses`,
      );
      const w0 = Float32Array.from(ps[0]!.data);
      m.trainStep({ x, y }, { estimator: of.ulr({ copies: 8 }) });
      t.ok(
        ps[0]!.data.some((v, i) => v !== w0[i]),
        `${kind}: ULR moves the real weights`,
      );
      m.dispose();
    }
    const conv = of.sequential(
      [of.conv2d({ inputShape: [4, 4, 1], filters: 3, kernel: 3, weights: 'ternary' }), of.flatten(), of.dense(12, 2)],
      { seed: 2 },
    );
    const cx = randn(2 * 16, 5),
      cy = Int32Array.from([0, 1]);
    const cq = conv
      .parameters()
      .map((p, i) => (i === 0 ? quantizeRows(p.data, 3, 'ternary') : Float64Array.from(p.data)));
    const cwant = concat([0, 1].map((r) => forwardRow(conv.layers, cq, cx.subarray(r * 16, (r + 1) * 16))));
    assertClose(t, conv.predict({ x: cx, y: cy, rows: 2, shape: [16] }), cwant, {
      atol: 1e-5,
      rtol: 1e-4,
      label: 'ternary conv: forward',
    });
    t.throws(() => of.dense(4, 4, { weights: 'int4' as 'binary' }), { code: 'ERR_CONFIG' }, 'unknown weight kind');
    conv.dispose();
    const { train, test } = of.datasets.digits();
    const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 3).subarray(0, 2000)));
    for (const kind of ['binary', 'ternary'] as const) {
      const m = of.sequential([of.dense(784, 128, { weights: kind }), of.relu(), of.dense(128, 10)], { seed: 1 });
      await m.fit(sub, {
        estimator: of.ulr({ copies: 16 }),
        optimizer: of.adam({ lr: 1e-3 }),
        epochs: 1,
        batchSize: 32,
      });
      const acc = m.evaluate(test).accuracy;
      t.ok(acc >= 0.5, `${kind} first layer, ULR, 2,000 rows, 1 epoch: ${(acc * 100).toFixed(2)}% >= 50%`);
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-bin-'));
      await m.save(path.join(dir, 'b.ofckpt'));
      const back = await of.load(path.join(dir, 'b.ofckpt'));
      t.equal(back.evaluate(test).accuracy, acc, `${kind}: the checkpoint keeps the weight kind`);
      (back.dispose(), m.dispose());
      fs.rmSync(dir, { recursive: true, force: true });
    }
  },
);
