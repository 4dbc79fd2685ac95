// Suite "arch-options": ULR's options at K = 32 on the small CNN, residual CNN and GRU of "architectures" (its
// models and settings). The machine may be shared: `uptime` before and after, and each run's load, go in the md.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as of from '../lib/index';
import { type Arch, pct, runJsonCase } from './common';

type ArchOptions = {
  copies: number;
  sigma: number;
  runs: (Arch['runs'][number] & { load: [number, number] })[];
  sigmaRanges: { model: string; layers: [number, number][] }[];
};

export function archOptions(results: string) {
  const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
  const before = uptime();
  const r = runJsonCase<ArchOptions>('arch-options');
  const after = uptime();
  const date = new Date().toISOString();
  const info = of.backend.info();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'arch-options.json'),
    JSON.stringify(
      {
        suite: 'arch-options',
        date,
        machine: { threads: info.threads, simd: info.simd },
        uptime: { before, after },
        ...r,
      },
      null,
      2,
    ) + '\n',
  );
  const plainOf = (model: string) => r.runs.find((x) => x.model === model && x.stepMs !== undefined);
  const rows = r.runs.map((x) => {
    const load = `${x.load[0].toFixed(1)} → ${x.load[1].toFixed(1)}`;
    if (x.refused) return `| ${x.model} | ${x.estimator} | refused: ${x.refused} | — | — | — | ${load} |`;
    const plain = plainOf(x.model);
    return `| ${x.model} | ${x.estimator} | ${pct(x.accuracy!)} | ${x.secondsPerEpoch!.toFixed(2)} | ${x.stepMs!.toFixed(2)} | ${plain ? (x.stepMs! / plain.stepMs!).toFixed(2) : '—'} | ${load} |`;
  });
  const range = (v: [number, number]) => `${v[0].toFixed(3)}–${v[1].toFixed(3)}`;
  const md =
    `# arch-options (${date.slice(0, 10)}, ${info.threads} threads, ${info.simd})\n\n` +
    `ULR options at K = ${r.copies} on three models of the architectures suite (the same models and settings: digits 7,996 train / 2,004 test, ` +
    `5 epochs, Adam 1e-3, batch 64, seed 1, σ = ${r.sigma}, leave-one-out baseline unless noted); ms/step = median epoch / steps per epoch. ` +
    `Their BP rows are in architectures.md.\n\n` +
    `Per-channel σ: σ_c = ${r.sigma} · s_c / mean(s), s_c the standard deviation of channel c's clean pre-activation on the first training batch ` +
    `(64 rows; over rows and positions for a conv, rows and steps for the GRU, one σ per gate and hidden unit there), at the seed-1 initial weights, ` +
    `then fixed; each layer's mean σ stays ${r.sigma} (a channel under 0.05 × the layer's mean spread counts as 0.05 × it). Range of σ_c per layer with parameters: ` +
    r.sigmaRanges.map((m) => `${m.model.split(' (')[0]}: ${m.layers.map(range).join(', ')}`).join('; ') +
    '.\n\n' +
    `The machine is shared: \`uptime\` before the suite: ${before}; after: ${after}. The last column is the 1-minute load average ` +
    `before and after each run (${info.threads} engine threads): times taken under a higher load are slower, compare them with care.\n\n` +
    `| model | option | test accuracy | s/epoch | ms/step | × plain ULR step | load before → after |\n|---|---|---|---|---|---|---|\n` +
    rows.join('\n') +
    '\n';
  fs.writeFileSync(path.join(results, 'arch-options.md'), md);
  process.stdout.write(md);
}
