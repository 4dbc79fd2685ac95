// Black-box JS losses (ULR only): the same gradients as the built-in loss when the JS function computes it,
// training on a non-differentiable 0-1 loss, a free event loop, and typed errors for bad loss functions.
import t from 'tap';
import * as of from '../lib/index';
import { assertClose, concat } from './helpers/close';
import { mlp, randn } from './helpers/native';
import { maxAbs } from './helpers/stats';

const { train, test } = of.datasets.digits();

// Softmax cross-entropy per row, in float64 JS.
const nll: of.LossFunction = (out, t, rows) => {
  const C = out.length / rows;
  const l = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let c = 0; c < C; c++) mx = Math.max(mx, out[r * C + c]!);
    let s = 0;
    for (let c = 0; c < C; c++) s += Math.exp(out[r * C + c]! - mx);
    l[r] = Math.log(s) + mx - out[r * C + t[r]!]!;
  }
  return l;
};

// 1 when the arg-max is wrong, else 0: no derivative anywhere.
const zeroOne: of.LossFunction = (out, t, rows) => {
  const C = out.length / rows;
  return Array.from({ length: rows }, (_, r) => {
    let a = 0;
    for (let c = 1; c < C; c++) if (out[r * C + c]! > out[r * C + a]!) a = c;
    return a === t[r] ? 0 : 1;
  });
};

t.test('a JS loss equal to the built-in one gives the same ULR gradients', async (t) => {
  const { model } = mlp([6, 9, 4], 'tanh', { seed: 3 });
  const x = randn(5 * 6, 9),
    y = Int32Array.from([0, 3, 1, 2, 3]);
  let calls = 0;
  let seenRows = 0;
  const counting: of.LossFunction = (out, tg, rows) => {
    calls++;
    seenRows = rows;
    t.equal(tg.length, rows, 'one target per row');
    return nll(out, tg, rows);
  };
  for (const est of [of.ulr({ copies: 8 }), of.ulr({ copies: 6, antithetic: true, sharedPrefix: false })]) {
    const builtin = concat(model.gradients({ x, y }, { estimator: est, step: 2 }));
    const js = concat(model.gradients({ x, y }, { estimator: est, step: 2, loss: counting }));
    assertClose(t, js, builtin, {
      atol: 1e-4 * maxAbs(builtin),
      rtol: 1e-3,
      label: `JS cross-entropy vs built-in (K=${est.copies})`,
    });
  }
  t.equal(calls, 2, 'one call per estimate');
  t.equal(seenRows, 5 * 6, 'B x K rows per call');
  // Layer-wise: one call per layer group, each with that group's rows.
  const rowsSeen: number[] = [];
  const lwEst = of.ulr({ copies: [8, 4], injection: 'layerwise' });
  const lw = concat(model.gradients({ x, y }, { estimator: lwEst, step: 5 }));
  const lwJs = concat(
    model.gradients(
      { x, y },
      { estimator: lwEst, step: 5, loss: (o, tg, rows) => (rowsSeen.push(rows), nll(o, tg, rows)) },
    ),
  );
  assertClose(t, lwJs, lw, { atol: 1e-4 * maxAbs(lw), rtol: 1e-3, label: 'layer-wise: JS cross-entropy vs built-in' });
  t.same(rowsSeen, [5 * 8, 5 * 4], 'one call per group');
  t.throws(() => model.gradients({ x, y }, { estimator: of.bp(), loss: nll }), {
    code: 'ERR_CONFIG',
    message: /bp\(\) cannot use a custom loss/,
  });
  model.dispose();
});

t.test('ULR trains digits on a non-differentiable 0-1 loss; the event loop stays free', async (t) => {
  const model = of.sequential([of.dense(784, 64), of.relu(), of.dense(64, 10)], { seed: 3 });
  let ticks = 0;
  const timer = setInterval(() => ticks++, 5);
  const h = await model.fit(train, {
    estimator: of.ulr({ copies: 32, sigma: 1 }),
    optimizer: of.adam({ lr: 2e-3 }),
    epochs: 2,
    batchSize: 64,
    validation: test,
    loss: zeroOne,
  });
  clearInterval(timer);
  const acc = h.epochs[1]!.valAccuracy!;
  t.ok(acc > 0.7, `test accuracy ${(100 * acc).toFixed(1)}% after 2 epochs on the 0-1 loss (chance: 10%)`);
  t.ok(ticks >= 10, `event loop ticked ${ticks} times`);
  t.ok(
    h.epochs[1]!.loss < h.epochs[0]!.loss,
    `mean 0-1 loss fell ${h.epochs[0]!.loss.toFixed(3)} -> ${h.epochs[1]!.loss.toFixed(3)}`,
  );
  model.dispose();
});

t.test('bad loss functions give typed errors', async (t) => {
  const model = of.sequential([of.dense(784, 16), of.relu(), of.dense(16, 10)], { seed: 1 });
  const small = of.data.take(
    train,
    Array.from({ length: 64 }, (_, i) => i * 100),
  );
  const fit = (loss: unknown, estimator: of.Estimator = of.ulr({ copies: 4 })) =>
    model.fit(small, { estimator, epochs: 1, batchSize: 32, loss: loss as of.LossFunction });
  await t.rejects(
    fit(() => new Float32Array(3)),
    { name: 'DataError', code: 'ERR_DATA', message: /must return 128 finite per-row losses.*got length 3/ },
  );
  await t.rejects(
    fit((_o: Float32Array, _t: unknown, rows: number) => new Float32Array(rows).fill(NaN)),
    { code: 'ERR_DATA', message: /not finite/ },
  );
  await t.rejects(
    fit(() => undefined),
    { code: 'ERR_DATA', message: /got undefined/ },
  );
  await t.rejects(
    fit((_o: Float32Array, _t: unknown, rows: number) => Array(rows).fill('x')),
    { code: 'ERR_DATA', message: /not a number/ },
  );
  const boom = new Error('simulator crashed');
  await t.rejects(
    fit(() => {
      throw boom;
    }),
    boom,
    'a throwing loss rejects fit with its error',
  );
  await t.rejects(fit(nll, of.bp()), { code: 'ERR_CONFIG', message: /bp\(\) cannot use a custom loss/ });
  await t.rejects(fit('nll'), { code: 'ERR_CONFIG', message: /Expected function for loss/ });
  const h = await fit(nll);
  t.equal(h.epochs.length, 1, 'the model is usable after the failures');
  model.dispose();
});
