// Bench case "architectures" (issue 4): models beyond the dense MLP on digits, 5 epochs, Adam 1e-3, batch 64,
// seed 1, side by side: BP, plain ULR (noise on every layer with parameters) and local module training
// (ulr({ modules }): noise at module boundaries, BP inside). Prints one JSON line with test accuracy, seconds per
// epoch and ms per step of each run; a model BP cannot train records BP's error instead.
import * as of from '../../lib/index';

type Run = { model: string; estimator: string; accuracy?: number; secondsPerEpoch?: number; stepMs?: number; refused?: string; epochs?: of.EpochLog[] };

const smallCnn = () => of.sequential([
  of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' }), of.relu(), of.maxPool2d(),
  of.conv2d({ filters: 16, kernel: 3, padding: 'same' }), of.relu(), of.maxPool2d(), of.flatten(), of.dense(784, 10),
], { seed: 1 });
const stepMlp = () => of.sequential([of.dense(784, 256), of.step(), of.dense(256, 10)], { seed: 1 });
const gruRows = () => of.sequential([of.gru({ units: 64, inputShape: [28, 28] }), of.dense(64, 10)], { seed: 1 });
const spiking = () => of.sequential([of.repeat(8, { inputs: 784 }), of.lif({ units: 256 }), of.timeMean(), of.dense(256, 10)], { seed: 1 });

const MODELS: { name: string; build: () => of.Model; estimators: [string, of.Estimator][] }[] = [
  {
    name: 'small CNN (conv 8, pool, conv 16, pool, dense)', build: smallCnn,
    estimators: [
      ['bp', of.bp()],
      ['ulr K=32', of.ulr({ copies: 32 })],
      ['ulr K=32, modules [0,2][2,3]', of.ulr({ copies: 32, modules: [[0, 2], [2, 3]] })],
      ['ulr K=32, modules [0,3] (noise on the logits)', of.ulr({ copies: 32, modules: [[0, 3]] })],
    ],
  },
  {
    name: 'GRU 64 over the 28 rows of each digit', build: gruRows,
    estimators: [['bp', of.bp()], ['ulr K=32', of.ulr({ copies: 32 })]],
  },
  {
    name: 'spiking MLP (784 -> 256 LIF, T = 8, spike rates -> dense)', build: spiking,
    estimators: [['bp (surrogate gradient)', of.bp()], ['ulr K=32', of.ulr({ copies: 32 })]],
  },
  {
    name: 'MLP 784-256-10 with step activations', build: stepMlp,
    estimators: [['bp', of.bp()], ['ulr K=32', of.ulr({ copies: 32 })], ['ulr K=32, sigma 0.5', of.ulr({ copies: 32, sigma: 0.5 })]],
  },
];

async function main() {
  const { train, test } = of.datasets.digits();
  const only = process.argv[2];
  const steps = Math.ceil(train.rows / 64);
  const runs: Run[] = [];
  for (const spec of MODELS) {
    if (only && !spec.name.startsWith(only)) continue;
    for (const [name, estimator] of spec.estimators) {
      process.stderr.write(`architectures: ${spec.name}, ${name}\n`);
      const m = spec.build();
      try {
        const h = await m.fit(train, { estimator, optimizer: of.adam({ lr: 1e-3 }), epochs: 5, batchSize: 64 });
        const secs = h.epochs.map((e) => e.seconds).sort((a, b) => a - b)[2]!;
        runs.push({ model: spec.name, estimator: name, accuracy: m.evaluate(test).accuracy, secondsPerEpoch: secs, stepMs: (1000 * secs) / steps, epochs: h.epochs });
      } catch (err) {
        const e = err as of.OneForwardError;
        runs.push({ model: spec.name, estimator: name, refused: `${e.code}: ${e.message}` });
      }
      m.dispose();
    }
  }
  process.stdout.write(JSON.stringify({ steps, runs }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
