// Suite "estimators": gradient quality per ULR option and K, and accuracy/time of BP, ULR, SPSA and ES.
import * as fs from 'fs';
import * as path from 'path';
import * as of from '../lib/index';
import { runJsonCase } from './common';
import { writeReport } from '../lib/report';

export function estimators(results: string, reportFile?: string) {
  const r = runJsonCase<{
    quality: { option: string; copies: number; cosine: number[]; variance: number }[];
    training: {
      name: string;
      epochs: of.EpochLog[];
      accuracy: number;
      secondsPerEpoch: number;
      accuracyAtBpBudget: number | null;
      curve: { seconds: number; accuracy: number }[];
    }[];
    bpBudgetSeconds: number;
  }>('estimators');
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'estimators.json'),
    JSON.stringify({ suite: 'estimators', date, ...r }, null, 2) + '\n',
  );
  const ks = [...new Set(r.quality.map((q) => q.copies))];
  const opts = [...new Set(r.quality.map((q) => q.option))];
  const cell = (o: string, k: number) => {
    const q = r.quality.find((x) => x.option === o && x.copies === k)!;
    return q.cosine.map((c) => c.toFixed(3)).join(' / ');
  };
  const bp = r.training.find((x) => x.name === 'bp')!;
  const md =
    `# estimators (${date.slice(0, 10)})\n\nGradient quality on one digits batch (MLP 784-256-10, seed-1 init, 6 trials): mean per-trial cosine to BP, layer 1 / layer 2.\n\n` +
    `| option | ${ks.map((k) => `K=${k}`).join(' | ')} |\n|---|${ks.map(() => '---').join('|')}|\n` +
    opts.map((o) => `| ${o} | ${ks.map((k) => cell(o, k)).join(' | ')} |`).join('\n') +
    `\n\nTraining, 5 epochs (Adam 1e-3, batch 64, seed 1); the BP budget is ${r.bpBudgetSeconds.toFixed(2)} s of training.\n\n` +
    `| estimator | test accuracy | vs BP (points) | s/epoch | accuracy within the BP budget |\n|---|---|---|---|---|\n` +
    r.training
      .map(
        (x) =>
          `| ${x.name} | ${(100 * x.accuracy).toFixed(2)}% | ${(100 * (x.accuracy - bp.accuracy)).toFixed(2)} | ${x.secondsPerEpoch.toFixed(3)} | ${x.accuracyAtBpBudget === null ? '— (no epoch done)' : (100 * x.accuracyAtBpBudget).toFixed(2) + '%'} |`,
      )
      .join('\n') +
    '\n';
  fs.writeFileSync(path.join(results, 'estimators.md'), md);
  process.stdout.write(md);
  if (reportFile) {
    writeReport(
      {
        title: 'oneforward bench: estimators',
        subtitle: 'digits, MLP 784-256-10, Adam 1e-3, batch 64, 5 epochs, seed 1',
        runs: r.training.map((x) => ({ name: x.name, epochs: x.epochs })),
        timeCurves: r.training.map((x) => ({ name: x.name, points: x.curve })),
        charts: [0, 1].map((layer) => ({
          title: `Gradient cosine to BP vs K, layer ${layer + 1} (one batch, 6 trials)`,
          xLabel: 'copies K',
          yLabel: 'mean per-trial cosine',
          logX: true,
          series: opts.map((o) => ({
            name: o,
            points: r.quality.filter((q) => q.option === o).map((q) => ({ x: q.copies, y: q.cosine[layer]! })),
          })),
        })),
      },
      reportFile,
    );
  }
}
