// Native optimizer updates against the formulas written out in JS (PyTorch's definitions), one and two
// steps on a tiny linear model whose BP gradient is known exactly.
import t from 'tap';
import * as of from '../lib/index';
import { backprop, fromParams } from './helpers/reference';
import { assertClose } from './helpers/close';
import { randn } from './helpers/native';

type State = { p: Float64Array; m: Float64Array; v: Float64Array; t: number };

function jsStep(s: State, g: Float64Array, o: of.Optimizer) {
  s.t++;
  let scale = 1;
  if (o.clipNorm && o.clipNorm > 0) {
    const norm = Math.sqrt(g.reduce((a, x) => a + x * x, 0));
    if (norm > o.clipNorm) scale = o.clipNorm / (norm + 1e-12);
  }
  const wd = o.weightDecay ?? 0;
  for (let i = 0; i < s.p.length; i++) {
    let gi = g[i]! * scale;
    if (o.kind === 'sgd') {
      gi += wd * s.p[i]!;
      if (o.momentum) {
        s.m[i] = o.momentum * s.m[i]! + gi;
        gi = o.nesterov ? gi + o.momentum * s.m[i]! : s.m[i]!;
      }
      s.p[i]! -= o.lr * gi;
    } else {
      if (o.kind === 'adamw') s.p[i]! -= o.lr * wd * s.p[i]!;
      else gi += wd * s.p[i]!;
      s.m[i] = o.beta1! * s.m[i]! + (1 - o.beta1!) * gi;
      s.v[i] = o.beta2! * s.v[i]! + (1 - o.beta2!) * gi * gi;
      const mh = s.m[i]! / (1 - o.beta1! ** s.t),
        vh = s.v[i]! / (1 - o.beta2! ** s.t);
      s.p[i]! -= (o.lr * mh) / (Math.sqrt(vh) + o.eps!);
    }
  }
}

const configs: [string, of.Optimizer][] = [
  ['sgd', of.sgd({ lr: 0.1 })],
  ['sgd momentum', of.sgd({ lr: 0.1, momentum: 0.9 })],
  ['sgd nesterov + wd', of.sgd({ lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 0.01 })],
  ['adam', of.adam({ lr: 0.01 })],
  ['adam + L2', of.adam({ lr: 0.01, weightDecay: 0.1 })],
  ['adamw', of.adamw({ lr: 0.01, weightDecay: 0.1 })],
  ['adam + clip', of.adam({ lr: 0.01, clipNorm: 0.05 })],
  ['sgd + clip', of.sgd({ lr: 0.5, clipNorm: 0.05 })],
];

t.test('optimizer steps match the formulas', async (t) => {
  for (const [name, opt] of configs) {
    const m = of.sequential([of.dense(3, 2)], { seed: 4, loss: 'mse' });
    const x = randn(5 * 3, 1),
      y = randn(5 * 2, 2);
    const flat = () => Float64Array.from(m.parameters().flatMap((p) => Array.from(p.data)));
    const s: State = { p: flat(), m: new Float64Array(8), v: new Float64Array(8), t: 0 };
    for (let step = 0; step < 3; step++) {
      const ref = fromParams([{ kind: 'dense', I: 3, O: 2 }], [s.p.subarray(0, 6), s.p.subarray(6)], 'mse');
      const g = backprop(ref, x, 5, y);
      jsStep(s, Float64Array.from([...g[0]!, ...g[1]!]), opt);
      m.trainStep({ x, y }, { estimator: of.bp(), optimizer: opt });
    }
    assertClose(t, flat(), s.p, { atol: 1e-6, rtol: 1e-5, label: `${name}: parameters after 3 steps` });
    m.dispose();
  }
});
