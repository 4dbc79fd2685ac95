// One bench case, run in its own child process by bench/run.ts: trains the digits MLP (784-256-10, Adam 1e-3,
// batch 64) for 5 epochs with one estimator and prints one JSON line: per-epoch seconds, the median epoch,
// ms/step, samples/s, nominal GFLOP/s and the test accuracy.
import * as of from '../../lib/index';
import { stepMacs } from './cost';

type Config = {
  name: string;
  estimator: 'bp' | 'ulr';
  copies?: number;
  epochs: number;
  seed: number;
  antithetic?: boolean;
  injection?: of.InjectionName;
};

function macsPerStep(widths: number[], B: number, c: Config): number {
  return stepMacs(widths, B, c.estimator, c.copies ?? 1, c.injection ?? 'all');
}

async function main() {
  const c = JSON.parse(process.argv[2]!) as Config;
  const { train, test } = of.datasets.digits();
  const widths = [784, 256, 10];
  const B = 64;
  const model = of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed: c.seed });
  const estimator =
    c.estimator === 'bp'
      ? of.bp()
      : of.ulr({ copies: c.copies!, sigma: 0.1, antithetic: c.antithetic ?? false, injection: c.injection ?? 'all' });
  // Warm-up: a few steps on a throwaway model, so thread pool and page faults are out of the timings.
  const warm = of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed: 99 });
  for (let i = 0; i < 20; i++)
    warm.trainStep(
      { x: train.x.subarray(i * B * 784, (i + 1) * B * 784), y: train.y.subarray(i * B, (i + 1) * B) },
      { estimator },
    );
  warm.dispose();
  const h = await model.fit(train, {
    estimator,
    optimizer: of.adam({ lr: 1e-3 }),
    epochs: c.epochs,
    batchSize: B,
    validation: test,
  });
  const secs = h.epochs.map((e) => e.seconds);
  const median = [...secs].sort((a, b) => a - b)[Math.floor(secs.length / 2)]!;
  const steps = h.epochs[0]!.steps;
  const out = {
    case: c.name,
    estimator: c.estimator,
    copies: c.copies ?? null,
    antithetic: c.estimator === 'ulr' ? (c.antithetic ?? false) : null,
    epochs: c.epochs,
    batch: B,
    epoch_seconds: secs,
    median_epoch_s: median,
    median_step_ms: (1000 * median) / steps,
    samples_per_s: train.rows / median,
    nominal_gflops: (2 * macsPerStep(widths, B, c) * steps) / median / 1e9,
    test_accuracy: h.epochs[h.epochs.length - 1]!.valAccuracy,
    history: h.epochs,
    threads: of.backend.info().threads,
    simd: of.backend.info().simd,
  };
  process.stdout.write(JSON.stringify(out) + '\n');
  model.dispose();
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
