// Units and losses without a derivative: quantized activations (2^bits levels in [0, 1]) and the 0-1 loss. The
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
    const x = randn(4 * 5, 7, 1.5), y = Int32Array.from([0, 1, 2, 0]);
    const want = concat(Array.from({ length: 4 }, (_, r) => forwardRow(layers, m.parameters().map((p) => Float64Array.from(p.data)), x.subarray(r * 5, (r + 1) * 5))));
    assertClose(t, m.predict({ x, y, rows: 4, shape: [5] }), want, { atol: 1e-5, rtol: 1e-4, label: `${bits} bits` });
    t.same(layers[1], { type: 'activation', activation: 'quantize', levels: 2 ** bits }, 'layer spec');
    m.dispose();
  }
  t.throws(() => of.quantize({ bits: 0 }), { code: 'ERR_CONFIG' }, 'bits out of range');
});

t.test('the 0-1 loss and quantized units: BP refuses, ULR trains', async (t) => {
  const { train, test } = of.datasets.digits();
  const sub = of.data.take(train, Array.from(of.data.permutation(train.rows, 2).subarray(0, 2000)));
  const m = of.sequential([of.dense(784, 128), of.quantize({ bits: 1 }), of.dense(128, 10)], { seed: 1, loss: 'zeroOne' });
  const b = of.data.take(sub, [0, 1, 2, 3]);
  t.throws(() => m.gradients(b, { estimator: of.bp() }), { code: 'ERR_CONFIG', message: /0-1 loss/ }, 'bp refuses the 0-1 loss');
  t.throws(() => of.robustness.evaluate(m, b, { attacks: [{ kind: 'fgsm', eps: 0.1 }] }), { code: 'ERR_CONFIG' }, 'no input gradients');
  const q = of.sequential([of.dense(784, 16), of.quantize(), of.dense(16, 10)], { seed: 1 });
  t.throws(() => q.gradients(b, { estimator: of.bp() }), { code: 'ERR_CONFIG', message: /quantize/ }, 'bp refuses quantize');
  t.ok(q.gradientCheck(b, { estimator: of.ulr({ copies: 8 }), trials: 2 }).every((g) => g.cosine === undefined), 'gradientCheck has no exact reference');
  q.dispose();
  const before = m.evaluate(test);
  t.ok(Math.abs(before.loss - (1 - before.accuracy)) < 1e-9, 'the 0-1 loss is the error rate');
  await m.fit(sub, { estimator: of.ulr({ copies: 32, sigma: 0.3 }), optimizer: of.adam({ lr: 1e-3 }), epochs: 1, batchSize: 32 });
  const after = m.evaluate(test).accuracy;
  t.ok(after >= 0.4, `1-bit activations, 0-1 loss, ULR: ${(after * 100).toFixed(2)}% >= 40% (chance 10%)`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-q-'));
  await m.save(path.join(dir, 'q.ofckpt'));
  const back = await of.load(path.join(dir, 'q.ofckpt'));
  t.equal(back.loss, 'zeroOne', 'loss kept');
  t.same(back.layers, m.layers, 'levels kept');
  m.dispose(), back.dispose();
  fs.rmSync(dir, { recursive: true, force: true });
});
