// Bench case "architectures" (issue 4): models beyond the dense MLP, side by side: BP, plain ULR (noise on every
// layer with parameters) and, where it applies, local module training (ulr({ modules })) or a frozen stem.
// Digits models: 5 epochs, Adam 1e-3, batch 64, seed 1. Graph models: 200 full-graph steps, Adam 0.01. Prints one
// JSON line with test accuracy, seconds per epoch and ms per step of each run; a model BP cannot train records
// BP's error instead. The models and the training run are exported for bench/cases/arch-options.ts.
import * as of from '../../lib/index';

export type Run = {
  model: string;
  estimator: string;
  accuracy?: number;
  secondsPerEpoch?: number;
  stepMs?: number;
  refused?: string;
  epochs?: of.EpochLog[];
};
export type Spec = {
  name: string;
  build: () => of.Model;
  estimators: [string, of.Estimator, number?][];
  data?: () => { train: of.Dataset; test: of.Dataset };
  epochs?: number;
  lr?: number;
  batch?: number;
};

// The pair most models are trained with: BP, and ULR with 32 copies.
const bpAndUlr32 = (bpLabel = 'bp'): Spec['estimators'] => [
  [bpLabel, of.bp()],
  ['ulr K=32', of.ulr({ copies: 32 })],
];

export const cnn = () =>
  of.sequential(
    [
      of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' }),
      of.relu(),
      of.maxPool2d(),
      of.conv2d({ filters: 16, kernel: 3, padding: 'same' }),
      of.relu(),
      of.maxPool2d(),
      of.flatten(),
      of.dense(784, 10),
    ],
    { seed: 1 },
  );
export const residualCnn = () =>
  of.sequential(
    [
      of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' }),
      of.relu(),
      of.maxPool2d(),
      of.residual([
        of.conv2d({ filters: 8, kernel: 3, padding: 'same' }),
        of.relu(),
        of.conv2d({ filters: 8, kernel: 3, padding: 'same' }),
      ]),
      of.relu(),
      of.maxPool2d(),
      of.residual([
        of.conv2d({ filters: 8, kernel: 3, padding: 'same' }),
        of.relu(),
        of.conv2d({ filters: 8, kernel: 3, padding: 'same' }),
      ]),
      of.relu(),
      of.flatten(),
      of.dense(392, 10),
    ],
    { seed: 1 },
  );
const frozenStem = () => {
  const m = cnn();
  m.freeze(1);
  return m;
};
const stepMlp = () => of.sequential([of.dense(784, 256), of.step(), of.dense(256, 10)], { seed: 1 });
const binaryMlp = () =>
  of.sequential([of.dense(784, 256, { weights: 'binary' }), of.relu(), of.dense(256, 10, { weights: 'binary' })], {
    seed: 1,
  });
const bnCnn = () =>
  of.sequential(
    [
      of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' }),
      of.batchNorm(),
      of.relu(),
      of.maxPool2d(),
      of.conv2d({ filters: 16, kernel: 3, padding: 'same' }),
      of.batchNorm(),
      of.relu(),
      of.maxPool2d(),
      of.flatten(),
      of.dense(784, 10),
    ],
    { seed: 1 },
  );
export const gruRows = () =>
  of.sequential([of.gru({ units: 64, inputShape: [28, 28] }), of.dense(64, 10)], { seed: 1 });
const spiking = () =>
  of.sequential([of.repeat(8, { inputs: 784 }), of.lif({ units: 256 }), of.timeMean(), of.dense(256, 10)], { seed: 1 });
const gcn = (task: of.GraphTask) => () =>
  of.sequential(
    [
      of.graphConv({ graph: task.graph, units: 16, inputShape: [task.graph.nodes, task.train.shape[1]!] }),
      of.relu(),
      of.graphConv({ graph: task.graph, units: task.classes }),
    ],
    { seed: 1 },
  );
const karate = of.datasets.karate(),
  sbm = of.datasets.sbm();

export const MODELS: Spec[] = [
  {
    name: 'small CNN (conv 8, pool, conv 16, pool, dense)',
    build: cnn,
    estimators: [
      ...bpAndUlr32(),
      [
        'ulr K=32, modules [0,2][2,3]',
        of.ulr({
          copies: 32,
          modules: [
            [0, 2],
            [2, 3],
          ],
        }),
      ],
      ['ulr K=32, modules [0,3] (noise on the logits)', of.ulr({ copies: 32, modules: [[0, 3]] })],
    ],
  },
  {
    name: 'small CNN, first conv frozen at its initialization (clean prefix)',
    build: frozenStem,
    estimators: bpAndUlr32(),
  },
  {
    name: 'residual CNN (conv 8, 2 residual blocks of 2 convs, dense)',
    build: residualCnn,
    estimators: bpAndUlr32(),
  },
  {
    name: 'GRU 64 over the 28 rows of each digit',
    build: gruRows,
    estimators: bpAndUlr32(),
  },
  {
    name: 'spiking MLP (784 -> 256 LIF, T = 8, spike rates -> dense)',
    build: spiking,
    estimators: bpAndUlr32('bp (surrogate gradient)'),
  },
  {
    name: 'small CNN with batchNorm after each conv',
    build: bnCnn,
    estimators: bpAndUlr32(),
  },
  {
    name: 'MLP 784-256-10 with binary weights (both layers)',
    build: binaryMlp,
    estimators: bpAndUlr32(),
  },
  {
    name: 'MLP 784-256-10 with step activations',
    build: stepMlp,
    estimators: [...bpAndUlr32(), ['ulr K=32, sigma 0.5', of.ulr({ copies: 32, sigma: 0.5 })]],
  },
  {
    name: 'GCN (2 graph convolutions) on the karate club, 1 labeled member per club',
    build: gcn(karate),
    data: () => karate,
    epochs: 200,
    lr: 0.01,
    batch: 1,
    estimators: [
      ['bp', of.bp()],
      ['ulr K=64', of.ulr({ copies: 64 })],
    ],
  },
  {
    name: 'GCN on a 4-community SBM (200 nodes, 5 labeled per community)',
    build: gcn(sbm),
    data: () => sbm,
    epochs: 200,
    lr: 0.01,
    batch: 1,
    estimators: [
      ['bp', of.bp()],
      ['ulr K=64', of.ulr({ copies: 64 })],
    ],
  },
];

/** Trains a fresh model of `spec` with `estimator` and measures it; a refusal records the error instead. */
export async function measure(
  spec: Spec,
  name: string,
  estimator: of.Estimator,
  data: { train: of.Dataset; test: of.Dataset },
): Promise<Run> {
  const { train, test } = spec.data ? spec.data() : data;
  const epochs = spec.epochs ?? 5,
    batch = spec.batch ?? 64;
  const steps = Math.ceil(train.rows / batch);
  process.stderr.write(`architectures: ${spec.name}, ${name}\n`);
  const m = spec.build();
  try {
    const h = await m.fit(train, { estimator, optimizer: of.adam({ lr: spec.lr ?? 1e-3 }), epochs, batchSize: batch });
    const secs = h.epochs.map((e) => e.seconds).sort((a, b) => a - b)[Math.floor(epochs / 2)]!;
    return {
      model: spec.name,
      estimator: name,
      accuracy: m.evaluate(test).accuracy,
      secondsPerEpoch: secs,
      stepMs: (1000 * secs) / steps,
      epochs: epochs <= 10 ? h.epochs : undefined,
    };
  } catch (err) {
    const e = err as of.OneForwardError;
    return { model: spec.name, estimator: name, refused: `${e.code}: ${e.message}` };
  } finally {
    m.dispose();
  }
}

async function main() {
  const digits = of.datasets.digits();
  const only = process.argv[2];
  const runs: Run[] = [];
  for (const spec of MODELS) {
    if (only && !spec.name.startsWith(only)) continue;
    for (const [name, estimator] of spec.estimators) runs.push(await measure(spec, name, estimator, digits));
  }
  process.stdout.write(JSON.stringify({ runs }) + '\n');
}

if (require.main === module) {
  main().catch((err) => {
    process.stderr.write(String(err?.stack ?? err) + '\n');
    process.exit(1);
  });
}
