// Checks shared by the layer tests: one model against the float64 reference (forward, BP vs central
// differences, the mean ULR estimate vs BP), and bit-identical gradients for 1 and 2 threads.
import * as of from '../../lib/index';
import { assertClose, concat, cosine, type TapLike } from './close';
import { randn } from './native';
import { finiteDifferences, forwardRow } from './spatial';

/**
 * forward = float64 loops (atol 1e-5, rtol 1e-4); BP = float64 central differences (atol 1e-4, rtol 2e-3); the
 * mean of 1,000 ULR estimates (K = 64, sigma = 0.05) has cosine >= 0.98 with BP. Three rows, seeded.
 */
export function checkAgainstReference(
  t: TapLike,
  name: string,
  layers: of.Layer[],
  options: { seed?: number; prepare?: (m: of.Model) => void } = {},
): void {
  const m = of.sequential(layers, { seed: options.seed ?? 4 });
  options.prepare?.(m);
  const d = { x: randn(3 * m.inputs, 8, 0.8), y: Int32Array.from([0, 2, 1]), rows: 3, shape: [m.inputs] };
  const params = m.parameters().map((p) => Float64Array.from(p.data));
  const want = concat([0, 1, 2].map((r) => forwardRow(layers, params, d.x.subarray(r * m.inputs, (r + 1) * m.inputs))));
  assertClose(t, m.predict(d), want, { atol: 1e-5, rtol: 1e-4, label: `${name}: forward` });
  const got = m.gradients(d, { estimator: of.bp() });
  const fd = finiteDifferences(layers, params, d.x, d.y, d.rows);
  m.parameters().forEach((p, i) =>
    assertClose(t, got[i]!, fd[i]!, { atol: 1e-4, rtol: 2e-3, label: `${name}: ${p.name}` }),
  );
  const exact = concat(got);
  const mean = new Float64Array(exact.length);
  for (let s = 0; s < 1000; s++) {
    const g = concat(m.gradients(d, { estimator: of.ulr({ copies: 64, sigma: 0.05 }), step: s }));
    for (let i = 0; i < g.length; i++) mean[i]! += g[i]! / 1000;
  }
  const c = cosine(mean, exact);
  t.ok(c >= 0.98, `${name}: ULR cosine ${c.toFixed(4)}`);
  m.dispose();
}

/** BP and ULR gradients of `m` on `rows` seeded rows: the same bits with 1 and 2 threads. */
export function checkThreads(t: TapLike, m: of.Model, rows: number, classes: number): void {
  const x = randn(rows * m.inputs, 6),
    y = Int32Array.from({ length: rows * m.groups }, (_, i) => i % classes);
  const before = of.backend.info().threads;
  const run = () =>
    [of.bp(), of.ulr({ copies: 16 })].map((e) => concat(m.gradients({ x, y }, { estimator: e, step: 3 })));
  try {
    of.backend.setThreads(1);
    const one = run();
    of.backend.setThreads(2);
    const two = run();
    t.ok(
      one.every((g, i) => g.every((v, j) => Object.is(v, two[i]![j]))),
      'bit-identical for 1 and 2 threads',
    );
  } finally {
    of.backend.setThreads(before);
  }
}
