// Bench case "flow" (issue 6): computation-flow rearrangements side by side on digits, MLP 784-256-128-10,
// 5 epochs, Adam 1e-3, batch 64, seeds 1 and 2: BP, plain ULR (noise in every layer), and local module
// training (ulr({ modules }): noise only at module boundaries, BP inside) with concurrent or sequential
// reductions and with the first module pipelined. Also the gradient quality of each arrangement on one batch
// (mean cosine to BP over 6 noise draws), and interleaved step timings of the reduction arrangements. Prints one
// JSON line.
import * as of from '../../lib/index';

const ARRANGEMENTS: [string, of.Estimator][] = [
  ['bp', of.bp()],
  ['ulr K=32, noise in every layer', of.ulr({ copies: 32 })],
  [
    'modules [0,1][1,2][2,3] (= plain ulr)',
    of.ulr({
      copies: 32,
      modules: [
        [0, 1],
        [1, 2],
        [2, 3],
      ],
    }),
  ],
  [
    'modules [0,1][1,3]',
    of.ulr({
      copies: 32,
      modules: [
        [0, 1],
        [1, 3],
      ],
    }),
  ],
  [
    'modules [0,2][2,3]',
    of.ulr({
      copies: 32,
      modules: [
        [0, 2],
        [2, 3],
      ],
    }),
  ],
  [
    'modules [0,2][2,3], sequential reductions',
    of.ulr({
      copies: 32,
      modules: [
        [0, 2],
        [2, 3],
      ],
      concurrent: false,
    }),
  ],
  [
    'modules [0,2][2,3], pipelined',
    of.ulr({
      copies: 32,
      modules: [
        [0, 2],
        [2, 3],
      ],
      pipeline: true,
    }),
  ],
  ['modules [0,3] (noise on the logits only)', of.ulr({ copies: 32, modules: [[0, 3]] })],
];

const net = (seed: number) =>
  of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 128), of.relu(), of.dense(128, 10)], { seed });
const median = (a: number[]) => [...a].sort((p, q) => p - q)[Math.floor(a.length / 2)]!;

function cosines(est: of.Estimator, bpGrads: Float32Array[], m: of.Model, batch: of.Dataset): number[] {
  const out: number[] = [];
  for (let layer = 0; layer < 3; layer++) {
    let sum = 0;
    for (let trial = 0; trial < 6; trial++) {
      const g = m.gradients(batch, { estimator: est, step: trial })[2 * layer]!,
        b = bpGrads[2 * layer]!;
      let dot = 0,
        na = 0,
        nb = 0;
      for (let i = 0; i < g.length; i++) ((dot += g[i]! * b[i]!), (na += g[i]! * g[i]!), (nb += b[i]! * b[i]!));
      sum += dot / Math.sqrt(na * nb) / 6;
    }
    out.push(sum);
  }
  return out;
}

async function main() {
  const { train, test } = of.datasets.digits();
  const batch = of.data.take(train, Array.from(of.data.permutation(train.rows, 3).subarray(0, 64)));
  const probe = net(1);
  const bpGrads = probe.gradients(batch, { estimator: of.bp() });
  const steps = Math.ceil(train.rows / 64);
  const rows: Record<string, unknown>[] = [];
  for (const [name, estimator] of ARRANGEMENTS) {
    const accuracy: number[] = [],
      epochSeconds: number[] = [];
    let epochs: of.EpochLog[] = [];
    for (const seed of [1, 2]) {
      const m = net(seed);
      const h = await m.fit(train, {
        estimator,
        optimizer: of.adam({ lr: 1e-3 }),
        epochs: 5,
        batchSize: 64,
        validation: test,
      });
      accuracy.push(m.evaluate(test).accuracy);
      epochSeconds.push(...h.epochs.map((e) => e.seconds));
      if (seed === 1) epochs = h.epochs;
      m.dispose();
    }
    const s = median(epochSeconds);
    rows.push({
      name,
      accuracy,
      meanAccuracy: accuracy.reduce((a, b) => a + b, 0) / accuracy.length,
      secondsPerEpoch: s,
      stepMs: (1000 * s) / steps,
      cosine: name === 'bp' ? [1, 1, 1] : cosines(estimator, bpGrads, probe, batch),
      epochs,
    });
  }
  probe.dispose();
  // Concurrent vs sequential reductions vs pipelining: trainStep on one batch, the three interleaved in 7 rounds
  // of 100 steps (a noisy stretch of the machine hits all three alike); median ms per step of each.
  const timed: Record<string, number[]> = { concurrent: [], sequential: [], pipelined: [] };
  const ests: Record<string, of.Estimator> = {
    concurrent: of.ulr({
      copies: 32,
      modules: [
        [0, 2],
        [2, 3],
      ],
    }),
    sequential: of.ulr({
      copies: 32,
      modules: [
        [0, 2],
        [2, 3],
      ],
      concurrent: false,
    }),
    pipelined: of.ulr({
      copies: 32,
      modules: [
        [0, 2],
        [2, 3],
      ],
      pipeline: true,
    }),
  };
  const m = net(1);
  for (let round = 0; round < 7; round++) {
    for (const name of Object.keys(timed)) {
      for (let i = 0; i < 10; i++) m.trainStep(batch, { estimator: ests[name]! });
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < 100; i++) m.trainStep(batch, { estimator: ests[name]! });
      timed[name]!.push(Number(process.hrtime.bigint() - t0) / 1e6 / 100);
    }
  }
  m.dispose();
  const stepTiming = Object.fromEntries(Object.entries(timed).map(([k, v]) => [k, median(v)]));
  process.stdout.write(JSON.stringify({ model: '784-256-128-10', steps, rows, stepTiming }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
