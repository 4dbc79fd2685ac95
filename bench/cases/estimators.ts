// Bench case "estimators", run in its own process by bench/run.ts: (1) gradient quality on one digits batch
// (MLP 784-256-10 at its seed-1 init): mean per-trial cosine to BP per layer and total variance, for each
// ULR option across K; (2) test accuracy after 5 epochs and seconds per epoch for BP, ULR configurations,
// SPSA and ES, plus accuracy at the wall-clock budget of 5 BP epochs. Prints one JSON line.
import * as of from '../../lib/index';

async function main() {
  const { train, test } = of.datasets.digits();
  const net = (seed = 1) => of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed });
  const batch = { x: train.x.subarray(0, 64 * 784), y: train.y.subarray(0, 64) };
  const options: [string, of.UlrOptions][] = [
    ['all, normal', {}],
    ['all, antithetic', { antithetic: true }],
    ['all, clean baseline', { baseline: 'clean' }],
    ['all, logistic', { noise: 'logistic' }],
    ['all, laplace', { noise: 'laplace' }],
    ['all, sign score', { score: 'sign' }],
    ['layerwise', { injection: 'layerwise' }],
  ];
  const quality: Record<string, unknown>[] = [];
  const probe = net();
  for (const [name, o] of options) {
    for (const copies of [8, 32, 128, 512]) {
      const r = probe.gradientCheck(batch, { estimator: of.ulr({ copies, ...o }), trials: 6 });
      quality.push({
        option: name,
        copies,
        cosine: r.map((l) => l.meanTrialCosine),
        variance: r.reduce((a, l) => a + l.variance, 0),
      });
    }
  }
  probe.dispose();

  const runs: [string, of.Estimator][] = [
    ['bp', of.bp()],
    ['ulr K=32 (default)', of.ulr({ copies: 32 })],
    ['ulr K=32 layerwise', of.ulr({ copies: 32, injection: 'layerwise' })],
    ['ulr K=128 layerwise', of.ulr({ copies: 128, injection: 'layerwise' })],
    ['ulr K=512 layerwise', of.ulr({ copies: 512, injection: 'layerwise' })],
    ['spsa P=16', of.spsa({ perturbations: 16 })],
    ['es N=32', of.es({ population: 32 })],
  ];
  const training: Record<string, unknown>[] = [];
  let budget = 0;
  for (const [name, estimator] of runs) {
    const m = net();
    const t0 = performance.now();
    const curve: { seconds: number; accuracy: number }[] = [];
    const h = await m.fit(train, {
      estimator,
      optimizer: of.adam({ lr: 1e-3 }),
      epochs: 5,
      batchSize: 64,
      validation: test,
      onEpochEnd: (e) => curve.push({ seconds: (performance.now() - t0) / 1000, accuracy: e.valAccuracy! }),
    });
    const secs = h.epochs.reduce((a, e) => a + e.seconds, 0);
    if (name === 'bp') budget = secs;
    const within = curve.filter((c) => c.seconds <= budget * 1.05 + 0.05);
    training.push({
      name,
      epochs: h.epochs,
      accuracy: h.epochs[4]!.valAccuracy,
      secondsPerEpoch: secs / 5,
      accuracyAtBpBudget: within.length ? within[within.length - 1]!.accuracy : null,
      curve,
    });
    m.dispose();
  }
  process.stdout.write(JSON.stringify({ quality, training, bpBudgetSeconds: budget }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
