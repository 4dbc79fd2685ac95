// Suite "transformer": the character-level GPT of the docs (2 pre-LN blocks, 4 heads, width 64, context 64, the
// Moby-Dick character vocabulary; bench/cases/transformer.ts) on this engine. (1) BP step time against PyTorch CPU
// on the same model, batch, optimizer and threads (bench/reference/transformer.py), in interleaved rounds, medians;
// (2) validation loss against steps and training seconds for BP, ULR all at once, layer-wise and by modules, and
// SPSA, on the same step budget; (3) fine-tuning a BP-pretrained model to the corpus's last fifth: full, with
// low-rank adapters where the engine has them, by BP, ULR and SPSA; (4) text sampled from every model. Writes
// transformer.json, transformer.md and transformer.html (the curves).
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { writeReport } from '../lib/report';
import type { CurveEstimator, Point, Samples, StepTimes } from './cases/transformer';
import {
  B,
  CURVES,
  D,
  FINETUNE_LR,
  HEADS,
  K,
  LR,
  PROMPT,
  RANK,
  SPSA_PERTURBATIONS,
  T,
  THREADS,
} from './cases/transformer';

const ROUNDS = 5,
  WARMUP = 3,
  STEPS = 10;
// Sized for ~10 minutes on 2 busy cores: a layer-wise ULR step (16 layers with parameters, K copies each) takes
// ~35 BP steps, and sets the curves' step budget.
const CURVE_STEPS = 100,
  EVERY = 10;
const PRETRAIN_STEPS = 300,
  FINETUNE_STEPS = 60,
  FINETUNE_EVERY = 15;
// The issue's target for the BP step against PyTorch's.
const TARGET = 1.0;

type Curve = { points: Point[]; stepMs: number; memoryBytes: number | null; samples: Samples };
type FinetuneRow = { variant: string; available: boolean } & Partial<Curve & { parameters: number; frozen: number }>;
type Finetune = {
  pretrained: { valLoss: number; seconds: number; samples: Samples };
  rows: FinetuneRow[];
  adapters: string; // 'available' or why not
};

const root = path.resolve(__dirname, '..', '..');
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').pop()!);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
const mib = (b: number | null | undefined) => (typeof b === 'number' ? (b / 2 ** 20).toFixed(1) : '—');

function ours<T>(config: object): T {
  process.stderr.write(`bench: transformer ${JSON.stringify(config)}\n`);
  return lastJson(
    execFileSync(process.execPath, [path.join(__dirname, 'cases', 'transformer.js'), JSON.stringify(config)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
      maxBuffer: 16 << 20,
    }),
  );
}

// As the speed suite: the first python3 that imports torch; passive OpenMP waits, OpenBLAS's own kernels.
function torchPython(): string | null {
  return ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import torch']).status === 0) ?? null;
}
function torch(python: string, tokens: string, vocab: number): StepTimes & { library: string } {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OMP_WAIT_POLICY: 'PASSIVE',
    OMP_NUM_THREADS: `${THREADS}`,
    OPENBLAS_NUM_THREADS: `${THREADS}`,
  };
  delete env.OPENBLAS_CORETYPE;
  const flags = { tokens, vocab, context: T, dim: D, heads: HEADS, layers: 2, batch: B, warmup: WARMUP, steps: STEPS };
  const args = Object.entries(flags).flatMap(([k, v]) => [`--${k}`, `${v}`]);
  const script = path.join(root, 'bench', 'reference', 'transformer.py');
  const r = spawnSync(python, [script, ...args, '--threads', `${THREADS}`], { encoding: 'utf8', env });
  if (r.error || r.status !== 0)
    throw new Error(
      `PyTorch reference failed: ${r.error?.message ?? r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
    );
  return lastJson(r.stdout);
}

// (1) ours and PyTorch's BP steps, ROUNDS interleaved rounds; medians over every timed step.
function speed(python: string | null) {
  const text = of.datasets.corpus('moby-dick');
  const vocab = of.text.charVocab(text);
  const tokens = path.join(os.tmpdir(), `oneforward-transformer-${process.pid}.i32`);
  fs.writeFileSync(tokens, Buffer.from(vocab.encode(text).buffer));
  const oursRuns: StepTimes[] = [],
    torchRuns: StepTimes[] = [];
  let library: string | null = null;
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      oursRuns.push(ours({ mode: 'speed', warmup: WARMUP, steps: STEPS }));
      if (python) {
        const r = torch(python, tokens, vocab.size);
        library = r.library;
        torchRuns.push(r);
      }
    }
  } finally {
    fs.rmSync(tokens, { force: true });
  }
  const all = (rs: StepTimes[], k: keyof StepTimes) => rs.flatMap((r) => r[k]);
  const oursMs = median(all(oursRuns, 'stepMs')),
    oursCpuMs = median(all(oursRuns, 'cpuMs'));
  const torchMs = python ? median(all(torchRuns, 'stepMs')) : null,
    torchCpuMs = python ? median(all(torchRuns, 'cpuMs')) : null;
  return {
    vocab: vocab.size,
    library,
    oursMs,
    oursCpuMs,
    torchMs,
    torchCpuMs,
    ratio: torchMs ? oursMs / torchMs : null,
    cpuRatio: torchCpuMs ? oursCpuMs / torchCpuMs : null,
    steps: { ours: oursRuns, torch: torchRuns },
  };
}

const f2 = (v: number | null | undefined, d = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '—');
const sample = (name: string, s: Samples) =>
  `**${name}**, greedy:\n\n\`\`\`text\n${s.greedy}\n\`\`\`\n\ntemperature 0.8 (seed 1):\n\n\`\`\`text\n${s.t08}\n\`\`\`\n`;

function markdown(
  date: string,
  when: { before: string; after: string },
  s: ReturnType<typeof speed>,
  curves: Record<string, Curve>,
  ft: Finetune,
): string {
  const names = Object.keys(curves) as CurveEstimator[];
  const last = (c: Curve) => c.points[c.points.length - 1]!;
  const curveTable =
    `| estimator | ms/step (median) | training s, ${CURVE_STEPS} steps | val. loss at step 0 | val. loss at ${CURVE_STEPS} | perplexity at ${CURVE_STEPS} | step memory estimate (MiB) |\n|---|---|---|---|---|---|---|\n` +
    names
      .map((n) => {
        const c = curves[n]!;
        return `| ${CURVES[n].label} | ${f2(c.stepMs, 1)} | ${f2(last(c).seconds, 1)} | ${f2(c.points[0]!.valLoss, 3)} | ${f2(last(c).valLoss, 3)} | ${f2(Math.exp(last(c).valLoss), 2)} | ${mib(c.memoryBytes)} |`;
      })
      .join('\n');
  const steps = curves[names[0]!]!.points.map((p) => p.step);
  const pointsTable =
    `| step | ${names.map((n) => CURVES[n].label).join(' | ')} |\n|---|${names.map(() => '---').join('|')}|\n` +
    steps
      .map(
        (st, i) =>
          `| ${st} | ${names.map((n) => `${f2(curves[n]!.points[i]!.valLoss, 3)} (${f2(curves[n]!.points[i]!.seconds, 1)} s)`).join(' | ')} |`,
      )
      .join('\n');
  const ftTable =
    `| variant | trainable parameters | ms/step (median) | val. loss after ${FINETUNE_STEPS} steps | perplexity | step memory estimate (MiB) |\n|---|---|---|---|---|---|\n` +
    ft.rows
      .map((r) =>
        r.available
          ? `| ${r.variant} | ${r.parameters} | ${f2(r.stepMs, 1)} | ${f2(r.points![r.points!.length - 1]!.valLoss, 3)} | ${f2(Math.exp(r.points![r.points!.length - 1]!.valLoss), 2)} | ${mib(r.memoryBytes)} |`
          : `| ${r.variant} | not available | — | — | — | — |`,
      )
      .join('\n');
  const ftPoints = ft.rows.filter((r) => r.available);
  const ftCurve =
    `| step | ${ftPoints.map((r) => r.variant).join(' | ')} |\n|---|${ftPoints.map(() => '---').join('|')}|\n` +
    ftPoints[0]!
      .points!.map((p, i) => `| ${p.step} | ${ftPoints.map((r) => f2(r.points![i]!.valLoss, 3)).join(' | ')} |`)
      .join('\n');
  return (
    `# transformer (${date.slice(0, 10)}, ${THREADS} threads, ${of.backend.info().simd}${s.library ? `, ${s.library}` : ', no PyTorch'})\n\n` +
    `Character-level GPT on Moby-Dick (\`of.datasets.corpus('moby-dick')\`, chapters 1–30, ${s.vocab} characters): ` +
    `embedding ${D} + learned positions, 2 pre-LN \`gptBlock\`s (${HEADS} heads, causal attention, dense ${4 * D} gelu), ` +
    `layerNorm, dense head per position; context ${T}, batch ${B} windows, ${THREADS} threads. ` +
    `The machine is shared: \`uptime\` before: ${when.before}; after: ${when.after} (${os.cpus().length} cores). ` +
    `Wall times rise with the load; compare within this run.\n\n` +
    `## BP step against PyTorch\n\n` +
    `Same shapes, batch, Adam 1e-3 and ${THREADS} threads (PyTorch: torch.set_num_threads, OMP_WAIT_POLICY=PASSIVE; its own init). ` +
    `${ROUNDS} interleaved rounds of ${STEPS} timed steps after ${WARMUP} warm-up steps; medians over all timed steps.\n\n` +
    `| | ms/step | CPU ms/step |\n|---|---|---|\n` +
    `| oneforward BP | ${f2(s.oursMs, 1)} | ${f2(s.oursCpuMs, 1)} |\n` +
    `| PyTorch BP | ${f2(s.torchMs, 1)} | ${f2(s.torchCpuMs, 1)} |\n\n` +
    `Ours / PyTorch: ${f2(s.ratio)} wall (CPU ${f2(s.cpuRatio)}); target ≤ ${TARGET.toFixed(1)}: ${s.ratio === null ? '— (no PyTorch)' : s.ratio <= TARGET ? 'met' : 'not met'}.\n\n` +
    `## Training curves\n\n` +
    `From the same init (seed 1), ${CURVE_STEPS} steps each (batches in order over the first 90% of the corpus), ` +
    `Adam ${LR}; ULR σ = 0.1, leave-one-out baseline; validation loss (mean cross-entropy per character, nats) on the first 128 windows ` +
    `of the last 10%, every ${EVERY} steps; seconds count the training steps only. Modules: noise on the positions' output ` +
    `(the blocks' input), on the final layerNorm and on the logits, BP inside (a residual block must lie inside one module, ` +
    `so no boundary falls between the two blocks). The plot: transformer.html.\n\n` +
    curveTable +
    `\n\nValidation loss (training seconds so far):\n\n` +
    pointsTable +
    `\n\n## Fine-tuning\n\n` +
    `BP pretraining, ${PRETRAIN_STEPS} steps on the corpus's first 80% (${f2(ft.pretrained.seconds, 0)} s; validation loss on the new part ` +
    `${f2(ft.pretrained.valLoss, 3)}), then ${FINETUNE_STEPS} steps on the last 20% (its first three quarters; validation: the first 128 windows of its last quarter), ` +
    `Adam ${FINETUNE_LR} for the full model, ${LR} for adapters (as in pretraining), each variant from the pretrained weights. Adapters: \`of.withAdapters(model, { rank: ${RANK} })\`, which adapts the dense layers outside residual blocks (here the head), with the 15 layers with parameters below the head frozen ` +
    `(${ft.adapters === 'available' ? 'available' : `not available here, rows marked so: ${ft.adapters}`}). ` +
    `Memory: \`model.memoryEstimate\` of one step of batch ${B} (— where it has no estimate for the estimator).\n\n` +
    ftTable +
    `\n\nValidation loss during fine-tuning:\n\n` +
    ftCurve +
    `\n\n## Samples\n\nPrompt ${JSON.stringify(PROMPT)}, 160 characters; greedy and temperature 0.8 (seed 1).\n\n` +
    names.map((n) => sample(`${CURVES[n].label}, ${CURVE_STEPS} steps`, curves[n]!.samples)).join('\n') +
    '\n' +
    sample(`pretrained (BP, ${PRETRAIN_STEPS} steps)`, ft.pretrained.samples) +
    '\n' +
    ftPoints.map((r) => sample(`fine-tuned: ${r.variant}`, r.samples!)).join('\n')
  );
}

export function transformerSuite(results: string): void {
  const python = torchPython();
  const before = uptime();
  const s = speed(python);
  const curves: Record<string, Curve> = {};
  for (const name of Object.keys(CURVES) as CurveEstimator[])
    curves[name] = ours({ mode: 'curve', estimator: name, steps: CURVE_STEPS, every: EVERY });
  const ft = ours<Finetune>({
    mode: 'finetune',
    pretrainSteps: PRETRAIN_STEPS,
    steps: FINETUNE_STEPS,
    every: FINETUNE_EVERY,
  });
  const when = { before, after: uptime() };
  const date = new Date().toISOString();
  const report = {
    suite: 'transformer',
    date,
    machine: {
      threads: THREADS,
      simd: of.backend.info().simd,
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model ?? 'unknown',
    },
    uptime: when,
    torch: s.library ?? 'not importable (python3 -c "import torch" fails)',
    settings: {
      context: T,
      dim: D,
      heads: HEADS,
      blocks: 2,
      batch: B,
      lr: LR,
      finetuneLr: FINETUNE_LR,
      copies: K,
      spsaPerturbations: SPSA_PERTURBATIONS,
      rank: RANK,
      curveSteps: CURVE_STEPS,
      pretrainSteps: PRETRAIN_STEPS,
      finetuneSteps: FINETUNE_STEPS,
      speed: { rounds: ROUNDS, warmup: WARMUP, steps: STEPS },
    },
    speed: s,
    curves,
    finetune: ft,
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'transformer.json'), JSON.stringify(report, null, 2) + '\n');
  const md = markdown(date, when, s, curves, ft);
  fs.writeFileSync(path.join(results, 'transformer.md'), md);
  const series = (x: 'step' | 'seconds') =>
    Object.entries(curves).map(([n, c]) => ({
      name: CURVES[n as CurveEstimator].label,
      points: c.points.map((p) => ({ x: p[x], y: p.valLoss })),
    }));
  writeReport(
    {
      title: 'oneforward bench: transformer',
      subtitle: `character-level GPT (2 blocks, 4 heads, width ${D}, context ${T}) on Moby-Dick, batch ${B}, ${THREADS} threads; an epoch here is ${EVERY} steps`,
      // an "epoch" of the report: the EVERY steps between two points, with their mean training loss
      runs: Object.entries(curves).map(([n, c]) => ({
        name: CURVES[n as CurveEstimator].label,
        epochs: c.points.slice(1).map((p, i) => ({
          epoch: i + 1,
          loss: p.trainLoss!,
          valLoss: p.valLoss,
          seconds: p.seconds - c.points[i]!.seconds,
        })) as of.EpochLog[],
      })),
      charts: [
        {
          title: 'validation loss against steps',
          xLabel: 'step',
          yLabel: 'validation loss (nats/char)',
          series: series('step'),
        },
        {
          title: 'validation loss against training seconds',
          xLabel: 'seconds',
          yLabel: 'validation loss (nats/char)',
          series: series('seconds'),
        },
      ],
    },
    path.join(results, 'transformer.html'),
  );
  process.stdout.write(md);
}
