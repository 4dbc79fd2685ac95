// The GPU bench's oneforward side (bench/gpu/run.sh runs it beside bench/reference/torch_ulr.py, one case per child
// process), printing one JSON line per case:
//   node gpu.js export DIR                    digits as raw files for the PyTorch side (x_train.f32, y_train.i32, ...)
//   node gpu.js digits '{"estimator":"ulr","copies":512}'
//        MLP 784-256-10, Adam (lr 1e-3 unless given), batch 64, 5 epochs on CUDA: ms/step (median epoch), test accuracy per epoch,
//        time to 93% test accuracy (training seconds up to the first epoch that reaches it; null if none does)
//   node gpu.js throughput '{"estimator":"ulr","copies":512,"rows":65536}'
//        MLP 784-4096-4096-10 on B = rows / K samples of random data, TF32 allowed: TFLOP/s of the nominal work
//        (cost.ts) over `steps` timed steps inside one fit (parameters stay on the GPU), after 3 warm-up steps.
//        "storeNoise": false makes ULR regenerate its noise into the weighted scores instead of keeping it.
// backend: 'cuda' unless the config says otherwise ('sim' lets the script be tried on any machine).
import * as fs from 'fs';
import * as path from 'path';
import * as of from '../../lib/index';
import { stepMacs } from './cost';

type Config = {
  estimator: 'bp' | 'ulr';
  model?: 'mlp' | 'cnn';
  copies?: number;
  sigma?: number;
  lr?: number;
  rows?: number;
  steps?: number;
  epochs?: number;
  seed?: number;
  backend?: 'cuda' | 'sim';
  widths?: number[];
  storeNoise?: boolean;
};

function exportDigits(dir: string) {
  const { train, test } = of.datasets.digits();
  fs.mkdirSync(dir, { recursive: true });
  const write = (name: string, a: Float32Array | Int32Array) =>
    fs.writeFileSync(path.join(dir, name), Buffer.from(a.buffer, a.byteOffset, a.byteLength));
  write('x_train.f32', train.x);
  write('y_train.i32', train.y as Int32Array);
  write('x_test.f32', test.x);
  write('y_test.i32', test.y as Int32Array);
  fs.writeFileSync(path.join(dir, 'meta.json'), JSON.stringify({ train: train.rows, test: test.rows, inputs: 784 }));
  return { exported: dir, train: train.rows, test: test.rows };
}

function mlp(widths: number[]): of.Layer[] {
  const layers: of.Layer[] = [];
  for (let l = 0; l + 1 < widths.length; l++) {
    layers.push(of.dense(widths[l]!, widths[l + 1]!));
    if (l + 2 < widths.length) layers.push(of.relu());
  }
  return layers;
}

const estimatorOf = (c: Config) =>
  c.estimator === 'bp'
    ? of.bp()
    : of.ulr({ copies: c.copies ?? 32, sigma: c.sigma ?? 0.1, storeNoise: c.storeNoise ?? true });

// The small CNN of the architectures bench (bench/cases/architectures.ts): conv 8 3x3, pool, conv 16 3x3, pool, dense.
const cnn = (): of.Layer[] => [
  of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' }),
  of.relu(),
  of.maxPool2d(),
  of.conv2d({ filters: 16, kernel: 3, padding: 'same' }),
  of.relu(),
  of.maxPool2d(),
  of.flatten(),
  of.dense(784, 10),
];

async function digits(c: Config) {
  const { train, test } = of.datasets.digits();
  const B = 64;
  const estimator = estimatorOf(c);
  const layers = () => (c.model === 'cnn' ? cnn() : mlp([784, 256, 10]));
  const warm = of.sequential(layers(), { seed: 99, backend: c.backend ?? 'cuda' });
  await warm.fit(
    of.data.take(
      train,
      Array.from({ length: 20 * B }, (_, i) => i),
    ),
    { estimator, epochs: 1, batchSize: B },
  );
  warm.dispose();
  const model = of.sequential(layers(), { seed: c.seed ?? 1, backend: c.backend ?? 'cuda' });
  const h = await model.fit(train, {
    estimator,
    optimizer: of.adam({ lr: c.lr ?? 1e-3 }),
    epochs: c.epochs ?? 5,
    batchSize: B,
    validation: test,
  });
  const secs = h.epochs.map((e) => e.seconds);
  const median = [...secs].sort((a, b) => a - b)[Math.floor(secs.length / 2)]!;
  let elapsed = 0;
  let t93: number | null = null;
  for (const e of h.epochs) {
    elapsed += e.seconds;
    if (t93 === null && e.valAccuracy! >= 0.93) t93 = elapsed;
  }
  return {
    library: 'oneforward',
    model: c.model ?? 'mlp',
    estimator: c.estimator,
    copies: c.estimator === 'ulr' ? (c.copies ?? 32) : null,
    lr: c.lr ?? 1e-3,
    sigma: c.estimator === 'ulr' ? (c.sigma ?? 0.1) : null,
    batch: B,
    epochs: h.epochs.map((e) => ({ epoch: e.epoch, seconds: e.seconds, loss: e.loss, valAccuracy: e.valAccuracy })),
    median_epoch_s: median,
    median_step_ms: (1000 * median) / h.epochs[0]!.steps,
    test_accuracy: h.epochs[h.epochs.length - 1]!.valAccuracy,
    time_to_93_s: t93,
    backend: model.backendInfo(),
  };
}

async function throughput(c: Config) {
  const widths = c.widths ?? [784, 4096, 4096, 10];
  const K = c.estimator === 'ulr' ? (c.copies ?? 512) : 1;
  const B = Math.floor((c.rows ?? 65536) / K);
  const steps = c.steps ?? 20;
  const x = new Float32Array(B * (steps + 3) * widths[0]!);
  const y = new Int32Array(B * (steps + 3));
  let state = 12345; // an LCG: random inputs in [-0.5, 0.5) and labels, cheap to make at this size
  const next = () => (state = (Math.imul(state, 1664525) + 1013904223) >>> 0);
  for (let i = 0; i < x.length; i++) x[i] = next() / 2 ** 32 - 0.5;
  for (let i = 0; i < y.length; i++) y[i] = next() % widths[widths.length - 1]!;
  const data = (n: number): of.Dataset => ({
    x: x.subarray(0, n * B * widths[0]!),
    y: y.subarray(0, n * B),
    rows: n * B,
    shape: [widths[0]!],
  });
  const model = of.sequential(mlp(widths), { seed: 1, backend: c.backend ?? 'cuda', allowTf32: true });
  const estimator = estimatorOf({ ...c, copies: K });
  const optimizer = of.adam({ lr: 1e-4 });
  await model.fit(data(3), { estimator, optimizer, epochs: 1, batchSize: B, shuffle: false }); // warm-up
  const h = await model.fit(data(steps), { estimator, optimizer, epochs: 1, batchSize: B, shuffle: false });
  const secs = h.epochs[0]!.seconds / steps;
  const flops = 2 * stepMacs(widths, B, c.estimator, K);
  return {
    library: 'oneforward',
    estimator: c.estimator,
    copies: c.estimator === 'ulr' ? K : null,
    storeNoise: c.estimator === 'ulr' ? (c.storeNoise ?? true) : null,
    rows: B * K,
    batch: B,
    widths,
    step_ms: 1000 * secs,
    tflops: flops / secs / 1e12,
    backend: model.backendInfo(),
  };
}

async function main() {
  const [mode, arg] = process.argv.slice(2);
  let out: object;
  if (mode === 'export') out = exportDigits(arg!);
  else if (mode === 'digits') out = await digits(JSON.parse(arg!) as Config);
  else if (mode === 'throughput') out = await throughput(JSON.parse(arg!) as Config);
  else throw new Error(`unknown mode ${mode}: export | digits | throughput`);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
