// Bench case "speed", run in its own child process by bench/run.ts: times single training steps (model.trainStep,
// Adam 1e-3, batch 64 of the digits, 2 threads) of one model with each of its estimators, after a warm-up, and
// prints one JSON line with every timed step and the step's FLOPs and normals by the cost model (./cost.ts).
// `noise` instead measures the noise generator on 1 thread: the kernel alone, and ULR on a model where noise is
// nearly all the work.
import * as of from '../../lib/index';
import { native } from '../../lib/native';
import { cnn, gruRows, residualCnn } from './architectures';
import { convFlops, denseFlops, gruFlops, NoisyLayer, SpeedEstimator, stepCost } from './cost';

export const B = 64,
  K = 32,
  THREADS = 2;

type SpeedModel = { name: string; build: () => of.Model; layers: NoisyLayer[]; estimators: SpeedEstimator[] };

// The models of the architectures suite, with their layers for the cost model.
export const SPEED_MODELS: Record<string, SpeedModel> = {
  mlp: {
    name: 'MLP 784-256-10',
    build: () => of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed: 1 }),
    layers: [denseFlops(784, 256), denseFlops(256, 10)],
    estimators: ['bp', 'ulr', 'ulr-bf16', 'ulr-layerwise'],
  },
  cnn: {
    name: 'small CNN (conv 8, pool, conv 16, pool, dense)',
    build: cnn,
    layers: [convFlops(28, 28, 1, 8, 3), convFlops(14, 14, 8, 16, 3), denseFlops(784, 10)],
    estimators: ['bp', 'ulr', 'ulr-bf16'],
  },
  gru: {
    name: 'GRU 64 over the 28 rows, dense 64→10',
    build: gruRows,
    layers: [gruFlops(28, 28, 64), denseFlops(64, 10)],
    estimators: ['bp', 'ulr', 'ulr-bf16'],
  },
  rescnn: {
    name: 'residual CNN (conv 8, 2 residual blocks of 2 convs, dense)',
    build: residualCnn,
    layers: [
      convFlops(28, 28, 1, 8, 3),
      convFlops(14, 14, 8, 8, 3),
      convFlops(14, 14, 8, 8, 3),
      convFlops(7, 7, 8, 8, 3),
      convFlops(7, 7, 8, 8, 3),
      denseFlops(392, 10),
    ],
    estimators: ['bp', 'ulr', 'ulr-bf16'],
  },
};

const LABELS: Record<SpeedEstimator, string> = {
  bp: 'bp',
  ulr: `ulr K=${K}`,
  'ulr-bf16': `ulr K=${K}, bf16 copies`,
  'ulr-layerwise': `ulr K=${K}, layer-wise`,
};
export const estimatorLabel = (e: SpeedEstimator) => LABELS[e];
const estimatorOf = (e: SpeedEstimator) =>
  e === 'bp'
    ? of.bp()
    : of.ulr({
        copies: K,
        sigma: 0.1,
        injection: e === 'ulr-layerwise' ? 'layerwise' : 'all',
        precision: e === 'ulr-bf16' ? 'bf16' : 'float32',
      });

// stepMs: wall time of each timed call; cpuMs: the process's CPU time in it (all threads, spinning included).
export type StepTimes = { stepMs: number[]; cpuMs: number[] };
export type SpeedRow = StepTimes & { estimator: SpeedEstimator; label: string; flops: number; normals: number };
// Normals per CPU second on one thread (the CPU time counts only what ran, whatever else the machine runs).
export type NoiseRates = { kernelPerS: number; ulrStepPerS: number; ulrWidth: number };

function timeCalls(warmup: number, calls: number, f: (i: number) => void): StepTimes {
  const times: StepTimes = { stepMs: [], cpuMs: [] };
  for (let i = 0; i < warmup + calls; i++) {
    const t0 = performance.now(),
      cpu0 = process.cpuUsage();
    f(i);
    const cpu = process.cpuUsage(cpu0);
    if (i >= warmup) {
      times.stepMs.push(performance.now() - t0);
      times.cpuMs.push((cpu.user + cpu.system) / 1000);
    }
  }
  return times;
}

function timeSteps(spec: SpeedModel, e: SpeedEstimator, train: of.Dataset, warmup: number, steps: number): StepTimes {
  const model = spec.build();
  const estimator = estimatorOf(e),
    optimizer = of.adam({ lr: 1e-3 });
  const features = train.x.length / train.rows,
    batches = Math.floor(train.rows / B);
  const rows = (i: number) => [(i % batches) * B, ((i % batches) + 1) * B] as const;
  const times = timeCalls(warmup, steps, (i) => {
    const [r0, r1] = rows(i);
    model.trainStep(
      { x: train.x.subarray(r0 * features, r1 * features), y: (train.y as Int32Array).subarray(r0, r1) },
      { estimator, optimizer },
    );
  });
  model.dispose();
  return times;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// (1) The generator kernel filling 256 × 1024 values again and again into one array (the internal binding's test
// entry; a fresh array per call would time its allocation and page faults too). (2) ULR K=32 steps of dense(1 → 4096) with mse loss through the public API: per noise value one normal,
// an add, the loss term and the copy sum; the rest of the step is negligible.
function noiseRates(): NoiseRates {
  of.backend.setThreads(1);
  const nat = native();
  const rows = 256,
    cols = 1024;
  const into = new Float32Array(rows * cols),
    fills = 8; // a timed call fills the same array 8 times: ~10 ms, far above the CPU clock's resolution
  const kernel = timeCalls(3, 20, (i) => {
    for (let f = 0; f < fills; f++) nat.noise(rows, cols, 1, i * fills + f, 0, 0, false, false, 0, into);
  });
  const width = 4096;
  const model = of.sequential([of.dense(1, width)], { seed: 1, loss: 'mse' });
  const x = new Float32Array(B).fill(1),
    y = new Float32Array(B * width);
  const estimator = of.ulr({ copies: K }),
    optimizer = of.adam({ lr: 1e-3 });
  const step = timeCalls(3, 10, () => model.trainStep({ x, y }, { estimator, optimizer }));
  model.dispose();
  return {
    kernelPerS: (fills * rows * cols) / (median(kernel.cpuMs) / 1000),
    ulrStepPerS: (B * K * width) / (median(step.cpuMs) / 1000),
    ulrWidth: width,
  };
}

function main() {
  const c = JSON.parse(process.argv[2]!) as { model: string; warmup: number; steps: number };
  if (c.model === 'noise') {
    process.stdout.write(JSON.stringify(noiseRates()) + '\n');
    return;
  }
  of.backend.setThreads(THREADS);
  const spec = SPEED_MODELS[c.model]!;
  const { train } = of.datasets.digits();
  const rows: SpeedRow[] = spec.estimators.map((e) => ({
    estimator: e,
    label: estimatorLabel(e),
    ...stepCost(spec.layers, B, e, K),
    ...timeSteps(spec, e, train, c.warmup, c.steps),
  }));
  process.stdout.write(JSON.stringify({ rows }) + '\n');
}

if (require.main === module) main();
