// Bench case "transformer", run in its own child process by bench/transformer.ts: the character-level GPT of the
// docs (embedding 64, learned positions, 2 pre-LN blocks of 4 heads, layerNorm, dense head; context 64, the
// corpus's character vocabulary) on Moby-Dick. Prints one JSON line. Modes:
//   speed:    wall and CPU time of BP steps (trainStep, Adam 1e-3, batch 32, 2 threads) after a warm-up;
//   curve:    one estimator's training run: validation loss against steps and training seconds, then samples;
//   finetune: BP pretraining on the corpus's first 80%, then adaptation to its last 20% by each variant.
import * as of from '../../lib/index';

export const B = 32,
  T = 64,
  D = 64,
  HEADS = 4,
  THREADS = 2,
  K = 8,
  SPSA_PERTURBATIONS = 4,
  RANK = 4,
  LR = 3e-3,
  FINETUNE_LR = 1e-3;

// Layers with parameters, in model order: embedding 0, positions 1, per block layerNorm, qkv, out, layerNorm,
// dense, dense (2-7, 8-13), layerNorm 14, head 15. A residual block must lie inside one module, and a gptBlock is
// residual blocks end to end, so the boundaries outside them are the block stack's input (the positions, 1), its
// normalized output (14) and the logits (15): noise before and after the blocks, BP inside.
const HEAD = 15;
export const MODULES: [number, number][] = [
  [0, 2],
  [2, HEAD],
  [HEAD, HEAD + 1],
];

export type CurveEstimator = 'bp' | 'ulr' | 'ulr-layerwise' | 'ulr-modules' | 'spsa';
export const CURVES: Record<CurveEstimator, { label: string; estimator: () => of.Estimator }> = {
  bp: { label: 'bp', estimator: () => of.bp() },
  ulr: { label: `ulr K=${K}, all at once`, estimator: () => of.ulr({ copies: K, sigma: 0.1 }) },
  'ulr-layerwise': {
    label: `ulr K=${K}, layer-wise`,
    estimator: () => of.ulr({ copies: K, sigma: 0.1, injection: 'layerwise' }),
  },
  'ulr-modules': {
    label: `ulr K=${K}, modules ${JSON.stringify(MODULES)}`,
    estimator: () => of.ulr({ copies: K, sigma: 0.1, modules: MODULES }),
  },
  spsa: {
    label: `spsa, ${SPSA_PERTURBATIONS} perturbations`,
    estimator: () => of.spsa({ perturbations: SPSA_PERTURBATIONS }),
  },
};

export const PROMPT = 'Call me Ishmael. ';
export const SAMPLE_TOKENS = 160;
const EVAL_ROWS = 128;

// trainLoss: the mean of trainStep's losses since the last point (ULR: of its noisy copies).
export type Point = { step: number; seconds: number; valLoss: number; trainLoss: number | null };
export type Samples = { greedy: string; t08: string };
export type StepTimes = { stepMs: number[]; cpuMs: number[] };

const text = of.datasets.corpus('moby-dick');
const vocab = of.text.charVocab(text);

export function layers(): of.Layer[] {
  return [
    of.embedding({ vocab: vocab.size, dim: D, steps: T }),
    of.positionalEmbedding(),
    ...of.gptBlock({ dim: D, heads: HEADS }),
    ...of.gptBlock({ dim: D, heads: HEADS }),
    of.layerNorm(),
    of.dense(D, vocab.size),
  ];
}

const build = () => of.sequential(layers(), { seed: 1 });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Batch i of a token data set, cycling (windows in order: the data sets cut the stream without overlap).
function batch(d: of.Dataset, i: number) {
  const n = Math.floor(d.rows / B),
    r0 = (i % n) * B;
  return { x: d.x.subarray(r0 * T, (r0 + B) * T), y: (d.y as Int32Array).subarray(r0 * T, (r0 + B) * T), rows: B };
}
function head(d: of.Dataset, rows: number): of.Dataset {
  rows = Math.min(rows, d.rows);
  return { x: d.x.subarray(0, rows * T), y: (d.y as Int32Array).subarray(0, rows * T), rows, shape: d.shape };
}

// Trains `steps` steps, evaluating the first EVAL_ROWS validation windows every `every` steps (and at 0); the
// seconds count only the training steps.
function train(
  model: of.Model,
  estimator: of.Estimator,
  data: of.Dataset,
  val: of.Dataset,
  steps: number,
  every: number,
  lr = LR,
) {
  const optimizer = of.adam({ lr });
  const points: Point[] = [],
    stepMs: number[] = [];
  let seconds = 0,
    losses: number[] = [];
  const evaluate = (step: number) => {
    const trainLoss = losses.length ? losses.reduce((a, l) => a + l, 0) / losses.length : null;
    points.push({ step, seconds, valLoss: model.evaluate(val).loss, trainLoss });
    losses = [];
  };
  evaluate(0);
  for (let i = 0; i < steps; i++) {
    const t0 = performance.now();
    losses.push(model.trainStep(batch(data, i), { estimator, optimizer }));
    const ms = performance.now() - t0;
    stepMs.push(ms);
    seconds += ms / 1000;
    if ((i + 1) % every === 0 || i + 1 === steps) evaluate(i + 1);
  }
  return { points, stepMs: median(stepMs) };
}

async function samples(model: of.Model): Promise<Samples> {
  const prompt = vocab.encode(PROMPT);
  const run = async (temperature: number) =>
    vocab.decode(await model.generate(prompt, { maxTokens: SAMPLE_TOKENS, temperature, seed: 1 }));
  return { greedy: await run(0), t08: await run(0.8) };
}

function memoryBytes(model: of.Model, estimator: of.Estimator): number | null {
  try {
    return model.memoryEstimate({ estimator, batchSize: B }).bytes;
  } catch {
    return null;
  }
}

function speed(warmup: number, steps: number): StepTimes {
  const { train: data } = of.data.tokens(vocab.encode(text), { context: T });
  const model = build();
  const estimator = of.bp(),
    optimizer = of.adam({ lr: 1e-3 });
  const out: StepTimes = { stepMs: [], cpuMs: [] };
  for (let i = 0; i < warmup + steps; i++) {
    const t0 = performance.now(),
      cpu0 = process.cpuUsage();
    model.trainStep(batch(data, i), { estimator, optimizer });
    const cpu = process.cpuUsage(cpu0);
    if (i >= warmup) {
      out.stepMs.push(performance.now() - t0);
      out.cpuMs.push((cpu.user + cpu.system) / 1000);
    }
  }
  model.dispose();
  return out;
}

async function curve(name: CurveEstimator, steps: number, every: number) {
  const { train: data, validation } = of.data.tokens(vocab.encode(text), { context: T, split: 0.1 });
  const model = build();
  const estimator = CURVES[name].estimator();
  const run = train(model, estimator, data, head(validation!, EVAL_ROWS), steps, every);
  const out = { ...run, memoryBytes: memoryBytes(model, estimator), samples: await samples(model) };
  model.dispose();
  return out;
}

// A copy of `base` with low-rank adapters on its dense layers, everything else frozen, or why not: `of.withAdapters`
// missing from this build, or refusing this model (a ConfigError). withAdapters adapts the dense layers outside
// residual blocks, here the head (layer 15 with parameters); freezing the 15 below leaves only its adapter to train.
type WithAdapters = (model: of.Model, options: { rank: number }) => of.Model;
function adapted(base: of.Model): of.Model | string {
  const withAdapters = (of as unknown as { withAdapters?: WithAdapters }).withAdapters;
  if (typeof withAdapters !== 'function') return 'this build has no of.withAdapters';
  try {
    const m = withAdapters(base, { rank: RANK });
    m.freeze(HEAD);
    return m;
  } catch (err) {
    if (err instanceof of.OneForwardError && err.code === 'ERR_CONFIG') return err.message;
    throw err;
  }
}

export const FINETUNE_VARIANTS = [
  { name: 'bp, full', adapters: false, estimator: () => of.bp() },
  { name: 'bp, adapters', adapters: true, estimator: () => of.bp() },
  { name: `ulr K=${K}, adapters`, adapters: true, estimator: () => of.ulr({ copies: K, sigma: 0.1 }) },
  {
    name: `spsa (MeZO-style), ${SPSA_PERTURBATIONS} perturbations, adapters`,
    adapters: true,
    estimator: () => of.spsa({ perturbations: SPSA_PERTURBATIONS }),
  },
  { name: `ulr K=${K}, full`, adapters: false, estimator: () => of.ulr({ copies: K, sigma: 0.1 }) },
  {
    name: `spsa, ${SPSA_PERTURBATIONS} perturbations, full`,
    adapters: false,
    estimator: () => of.spsa({ perturbations: SPSA_PERTURBATIONS }),
  },
];

// Pretrain on the first 80% of the corpus (BP), adapt to the last 20% (its first three quarters train, its last
// quarter validates), each variant from a copy of the pretrained weights; the full model at a smaller learning rate,
// adapters (fresh, B = 0) at the pretraining one, as LoRA usually runs.
async function finetune(pretrainSteps: number, steps: number, every: number) {
  const ids = vocab.encode(text);
  const cut = Math.floor(0.8 * ids.length);
  const { train: pre } = of.data.tokens(ids.subarray(0, cut), { context: T });
  const { train: adapt, validation } = of.data.tokens(ids.subarray(cut), { context: T, split: 0.25 });
  const val = head(validation!, EVAL_ROWS);
  const base = build();
  const t0 = performance.now();
  train(base, of.bp(), pre, val, pretrainSteps, pretrainSteps);
  const pretrainSeconds = (performance.now() - t0) / 1000;
  const rows = [];
  let unavailable: string | null = null;
  for (const v of FINETUNE_VARIANTS) {
    let model: of.Model;
    if (v.adapters) {
      const m = adapted(base);
      if (typeof m === 'string') {
        unavailable = m;
        rows.push({ variant: v.name, available: false });
        continue;
      }
      model = m;
    } else {
      model = build();
      const source = base.parameters();
      model.parameters().forEach((p, i) => p.data.set(source[i]!.data));
    }
    const estimator = v.estimator();
    // an adapted model trains its adapters' A and B only
    const trainable = model
      .parameters()
      .filter((p) => !v.adapters || /\.lora_[ab]$/.test(p.name))
      .reduce((s, p) => s + p.data.length, 0);
    const run = train(model, estimator, adapt, val, steps, every, v.adapters ? LR : FINETUNE_LR);
    rows.push({
      variant: v.name,
      available: true,
      parameters: trainable,
      frozen: model.frozen,
      ...run,
      memoryBytes: memoryBytes(model, estimator),
      samples: await samples(model),
    });
    model.dispose();
  }
  const pretrained = { valLoss: base.evaluate(val).loss, seconds: pretrainSeconds, samples: await samples(base) };
  base.dispose();
  return { pretrained, rows, adapters: unavailable ?? 'available' };
}

async function main() {
  const c = JSON.parse(process.argv[2]!) as {
    mode: 'speed' | 'curve' | 'finetune';
    estimator?: CurveEstimator;
    warmup?: number;
    steps: number;
    every?: number;
    pretrainSteps?: number;
  };
  of.backend.setThreads(THREADS);
  const out =
    c.mode === 'speed'
      ? speed(c.warmup ?? 3, c.steps)
      : c.mode === 'curve'
        ? await curve(c.estimator!, c.steps, c.every!)
        : await finetune(c.pretrainSteps!, c.steps, c.every!);
  process.stdout.write(JSON.stringify(out) + '\n');
}

if (require.main === module) void main();
