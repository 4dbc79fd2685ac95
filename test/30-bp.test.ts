// Backprop in the engine against the float64 reference (same formulas, plain TS) and against float64
// central finite differences, for every differentiable activation and both losses. Inputs keep the
// pre-activations away from ReLU kinks so the finite differences are valid.
import t from 'tap';
import * as of from '../lib/index';
import { backprop, finiteDifferences, forward, fromParams, noisyForward } from './helpers/reference';
import { assertClose, concat } from './helpers/close';
import { mlp, randn } from './helpers/native';

const ROWS = 6;
const differentiable = ['identity', 'relu', 'leakyRelu', 'tanh', 'sigmoid', 'gelu'] as const;

function problem(widths: number[], act: of.ActivationName, loss: 'crossEntropy' | 'mse', seed: number) {
  const { model, spec } = mlp(widths, act, { seed, loss });
  const x = randn(ROWS * widths[0]!, seed + 100);
  const C = widths[widths.length - 1]!;
  const y =
    loss === 'crossEntropy'
      ? Int32Array.from({ length: ROWS }, (_, i) => (i * 7 + seed) % C)
      : randn(ROWS * C, seed + 200);
  const ref = fromParams(
    spec,
    model.parameters().map((p) => p.data),
    loss,
  );
  return { model, ref, x, y };
}

// Smallest |pre-activation| of the clean forward: kinks of relu/leakyRelu must be farther than the FD step.
function minAbsPre(ref: ReturnType<typeof fromParams>, x: Float32Array) {
  const { pre } = noisyForward(
    ref,
    x,
    ROWS,
    ref.layers.filter((l) => l.kind === 'dense').map(() => 0),
    () => 0,
  );
  return Math.min(...pre.map((p) => Math.min(...Array.from(p, Math.abs))));
}

t.test('bp gradients match the float64 reference and finite differences', async (t) => {
  for (const act of differentiable) {
    for (const loss of ['crossEntropy', 'mse'] as const) {
      let seed = 1;
      let p = problem([5, 4, 6, 3], act, loss, seed);
      while (minAbsPre(p.ref, p.x) < 1e-3) (p.model.dispose(), (p = problem([5, 4, 6, 3], act, loss, ++seed)));
      const got = concat(p.model.gradients({ x: p.x, y: p.y }, { estimator: of.bp() }));
      const want = concat(backprop(p.ref, p.x, ROWS, p.y));
      const fd = concat(finiteDifferences(p.ref, p.x, ROWS, p.y, 1e-5));
      assertClose(t, got, want, { atol: 1e-6, rtol: 1e-4, label: `${act}/${loss} native vs float64 BP` });
      assertClose(t, got, fd, { atol: 1e-5, rtol: 1e-3, label: `${act}/${loss} native vs finite differences` });
      assertClose(t, p.model.predict(p.x), forward(p.ref, p.x, ROWS), {
        atol: 1e-6,
        rtol: 1e-5,
        label: `${act}/${loss} forward`,
      });
      p.model.dispose();
    }
  }
});

t.test('bp refuses step and sign with a clear ConfigError', async (t) => {
  for (const act of ['step', 'sign'] as const) {
    const { model } = mlp([3, 4, 2], act);
    const x = randn(6, 1);
    const y = Int32Array.from([0, 1]);
    t.throws(() => model.gradients({ x, y }, { estimator: of.bp() }), {
      name: 'ConfigError',
      code: 'ERR_CONFIG',
      message: new RegExp(`'${act}'.*ulr`),
    });
    await t.rejects(model.fit({ x, y, rows: 2, shape: [3] }, { estimator: of.bp(), epochs: 1 }), {
      code: 'ERR_CONFIG',
    });
    const g = model.gradients({ x, y }, { estimator: of.ulr({ copies: 4 }) });
    t.ok(
      g.every((a) => a.every(Number.isFinite)),
      `ulr estimates a ${act} network`,
    );
    model.dispose();
  }
});
