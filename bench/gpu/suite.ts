// Suite "gpu" (issue 8): oneforward's CUDA backend beside a plain PyTorch implementation of the same training
// (bench/reference/torch_ulr.py), case by case, in one run on one GPU. Writes gpu-digits.json, gpu-throughput.json
// and gpu.md to the results folder. Targets (ratios of this run):
//   ULR K=512 step >= 4x faster than the PyTorch ULR step (digits MLP, batch 64);
//   large-batch ULR TFLOP/s >= 90% of PyTorch BP TFLOP/s (MLP 784-4096-4096-10, 65,536 rows, TF32 on);
//   time to 93% test accuracy with ULR (its best case) <= PyTorch BP's (its best case).
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../../lib/index';

type Digits = {
  library: string;
  estimator: string;
  copies: number | null;
  median_step_ms: number;
  median_epoch_s: number;
  test_accuracy: number;
  time_to_93_s: number | null;
};
type Through = {
  library: string;
  estimator: string;
  copies: number | null;
  storeNoise?: boolean | null;
  rows: number;
  step_ms: number;
  tflops: number;
};
type Skipped = { skipped: string };

const root = path.resolve(__dirname, '..', '..', '..');
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').pop()!);

// One case of our side in a child process; a failed case (out of memory, a CUDA error) is recorded, not fatal.
function ours(mode: string, config: object): unknown {
  try {
    return lastJson(
      execFileSync(process.execPath, [path.join(__dirname, '..', 'cases', 'gpu.js'), mode, JSON.stringify(config)], {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'inherit'],
        maxBuffer: 64 << 20,
      }),
    );
  } catch (err) {
    return {
      skipped: `oneforward case failed: ${String((err as Error).message)
        .split('\n')
        .slice(0, 3)
        .join(' | ')}`,
    };
  }
}

function torch(mode: string, args: string[]): unknown {
  const r = spawnSync('python3', [path.join(root, 'bench', 'reference', 'torch_ulr.py'), mode, ...args], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
  });
  if (r.error || r.status !== 0)
    return {
      skipped: `PyTorch reference failed: ${r.error?.message ?? r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
    };
  return lastJson(r.stdout);
}

const ok = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !('skipped' in x);
const fmt = (v: number | null | undefined, d = 2) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '—');

export function gpuSuite(results: string): void {
  const info = of.backend.info();
  // ONEFORWARD_GPU_DRYRUN=1: the whole suite on the host simulation at toy sizes, to try the script without a GPU
  const dry = process.env.ONEFORWARD_GPU_DRYRUN === '1';
  const cpuTorch = dry ? ['--device', 'cpu'] : []; // the dry run's PyTorch side (where python3 has torch) on the CPU
  if (info.cudaDevices === 0 && !dry) {
    process.stdout.write(`# gpu: skipped (${info.reason})\n`);
    return;
  }
  const data = fs.mkdtempSync(path.join(os.tmpdir(), 'of-gpu-'));
  execFileSync(process.execPath, [path.join(__dirname, '..', 'cases', 'gpu.js'), 'export', data]);
  const date = new Date().toISOString();

  // digits: BP and ULR K = 32 / 128 / 512, ours then PyTorch's, per case
  // The issue's cases (Adam 1e-3, ULR sigma 0.1), then one more learning rate for each side's time to 93%: on the CPU
  // engine (2026-11-30, seeds 1 and 2), ULR K=512 with sigma 0.3 and Adam 3e-3 passed 93% in epoch 3 or 4, where
  // Adam 1e-3 stayed at 92.6% after 5 epochs; BP gets the same learning rate, so each side has the same menu.
  const cases: { estimator: 'bp' | 'ulr'; copies?: number; sigma?: number; lr?: number }[] = [
    { estimator: 'bp' },
    { estimator: 'ulr', copies: 32 },
    { estimator: 'ulr', copies: 128 },
    { estimator: 'ulr', copies: 512 },
    { estimator: 'bp', lr: 3e-3 },
    { estimator: 'ulr', copies: 512, sigma: 0.3, lr: 3e-3 },
  ];
  const epochs = dry ? 1 : 5;
  // every finished case is written at once, so a run cut short by its time limit still brings back what it measured
  fs.mkdirSync(results, { recursive: true });
  const partial: unknown[] = [];
  const keep = <T>(x: T): T => {
    partial.push(x);
    fs.writeFileSync(path.join(results, 'gpu-partial.json'), JSON.stringify({ date, cases: partial }, null, 2) + '\n');
    return x;
  };
  const digits = cases.map((c) =>
    keep({
      ...c,
      oneforward: ours('digits', dry ? { ...c, copies: c.copies && 4, epochs, backend: 'sim' } : c) as Digits,
      pytorch: torch('digits', [
        '--data',
        data,
        '--estimator',
        c.estimator,
        '--copies',
        String(dry ? 4 : (c.copies ?? 1)),
        '--sigma',
        String(c.sigma ?? 0.1),
        '--lr',
        String(c.lr ?? 1e-3),
        '--epochs',
        String(epochs),
        '--tf32',
        c.estimator === 'ulr' ? '1' : '0',
        ...cpuTorch,
      ]) as Digits | Skipped,
    }),
  );
  // throughput: MLP 784-4096-4096-10, 65,536 rows, TF32 on both sides
  const [rows, widths] = dry ? [512, [784, 64, 64, 10]] : [65536, [784, 4096, 4096, 10]];
  // the small CNN on the device, our side only (the PyTorch reference is an MLP): BP and ULR K=32
  const convs = (['bp', 'ulr'] as const).map((estimator) =>
    keep({
      estimator,
      model: 'cnn',
      copies: estimator === 'ulr' ? (dry ? 4 : 32) : undefined,
      oneforward: ours('digits', {
        estimator,
        model: 'cnn',
        copies: dry ? 4 : 32,
        epochs,
        ...(dry ? { backend: 'sim' } : {}),
      }) as Digits,
    }),
  );
  // ULR twice on our side: keeping its noise (the default) and regenerating it into the scores (storeNoise false,
  // the same bits: test/55); the PyTorch ULR keeps it. The target takes our faster ULR row.
  const tp = [
    { estimator: 'ulr' as const, copies: dry ? 32 : 512, steps: dry ? 3 : 20 },
    { estimator: 'bp' as const, steps: dry ? 3 : 5 },
  ].map((c) =>
    keep({
      ...c,
      oneforward: ours('throughput', { ...c, rows, widths, ...(dry ? { backend: 'sim' } : {}) }) as Through,
      pytorch: torch('throughput', [
        '--estimator',
        c.estimator,
        '--copies',
        String(c.copies ?? 1),
        '--rows',
        String(rows),
        '--widths',
        widths.join(','),
        '--steps',
        String(c.steps),
        '--tf32',
        '1',
        ...cpuTorch,
      ]) as Through | Skipped,
    }),
  );
  const regen = keep({
    estimator: 'ulr' as const,
    copies: dry ? 32 : 512,
    storeNoise: false,
    steps: dry ? 3 : 20,
    oneforward: ours('throughput', {
      estimator: 'ulr',
      copies: dry ? 32 : 512,
      storeNoise: false,
      steps: dry ? 3 : 20,
      rows,
      widths,
      ...(dry ? { backend: 'sim' } : {}),
    }) as Through,
  });

  const device = [...digits, ...convs, ...tp]
    .map((r) => r.oneforward as unknown as { backend?: { device: string; blas: string } })
    .find((o) => ok(o) && o.backend)?.backend ?? { device: 'unknown (every case of ours failed)', blas: '—' };
  const d512 = digits[3]!,
    tpTorchBp = tp[1]!.pytorch;
  const ulrRows = [tp[0]!.oneforward, regen.oneforward].filter(ok);
  const tpUlr = ulrRows.length ? ulrRows.reduce((a, b) => (b.tflops > a.tflops ? b : a)) : null;
  const best93 = Math.min(
    ...digits
      .filter((d) => d.estimator === 'ulr' && ok(d.oneforward))
      .map((d) => d.oneforward.time_to_93_s ?? Infinity),
  );
  const torch93 = Math.min(
    ...digits
      .filter((d) => d.estimator === 'bp' && ok(d.pytorch))
      .map((d) => (d.pytorch as Digits).time_to_93_s ?? Infinity),
  );
  const targets = [
    {
      target: 'ULR K=512 step >= 4x faster than the PyTorch ULR step',
      value:
        ok(d512.pytorch) && ok(d512.oneforward)
          ? (d512.pytorch as Digits).median_step_ms / d512.oneforward.median_step_ms
          : null,
      need: 4,
    },
    {
      target: 'large-batch ULR TFLOP/s >= 90% of PyTorch BP TFLOP/s',
      value: ok(tpTorchBp) && tpUlr ? tpUlr.tflops / (tpTorchBp as Through).tflops : null,
      need: 0.9,
    },
    {
      target: 'time to 93%, best ULR case <= best PyTorch BP case (ratio PyTorch / ours)',
      value: Number.isFinite(torch93) && Number.isFinite(best93) ? torch93 / best93 : null,
      need: 1,
    },
  ].map((t) => ({ ...t, met: t.value !== null && t.value >= t.need }));

  fs.rmSync(path.join(results, 'gpu-partial.json'));
  fs.writeFileSync(
    path.join(results, 'gpu-digits.json'),
    JSON.stringify({ suite: 'gpu-digits', date, device, digits, convs }, null, 2) + '\n',
  );
  fs.writeFileSync(
    path.join(results, 'gpu-throughput.json'),
    JSON.stringify({ suite: 'gpu-throughput', date, device, throughput: tp, regenerated: regen, targets }, null, 2) +
      '\n',
  );
  const side = (o: Digits, p: Digits | Skipped) =>
    `${fmt(o.median_step_ms, 3)} | ${ok(p) ? fmt((p as Digits).median_step_ms, 3) : 'skipped'} | ${fmt(100 * o.test_accuracy)}% | ${ok(p) ? fmt(100 * (p as Digits).test_accuracy) + '%' : '—'} | ${fmt(o.time_to_93_s)} | ${ok(p) ? fmt((p as Digits).time_to_93_s) : '—'}`;
  const md =
    `# gpu (${date.slice(0, 10)}, ${device.device}, ${device.blas})\n\n` +
    `Digits MLP 784-256-10, Adam (lr 1e-3 unless named), batch 64, 5 epochs; ms/step of the median epoch; time to 93% test accuracy in training seconds (— : not reached).\n\n` +
    `| case | oneforward ms/step | PyTorch ms/step | oneforward accuracy | PyTorch accuracy | oneforward s to 93% | PyTorch s to 93% |\n|---|---|---|---|---|---|---|\n` +
    digits
      .map(
        (d) =>
          `| ${d.estimator}${d.copies ? ` K=${d.copies}` : ''}${d.sigma ? `, σ=${d.sigma}` : ''}${d.lr ? `, lr ${d.lr}` : ''} | ${side(d.oneforward, d.pytorch)} |`,
      )
      .join('\n') +
    `\n\nThe small CNN (conv 8, pool, conv 16, pool, dense; batch 64, 5 epochs), oneforward only:\n\n| case | ms/step | accuracy | s to 93% |\n|---|---|---|---|\n` +
    convs
      .map(
        (r) =>
          `| ${r.estimator}${r.copies ? ` K=${r.copies}` : ''} | ${fmt(r.oneforward.median_step_ms, 3)} | ${fmt(100 * r.oneforward.test_accuracy)}% | ${fmt(r.oneforward.time_to_93_s)} |`,
      )
      .join('\n') +
    `\n\nMLP ${widths.join('-')}, ${rows} rows per step (ULR: ${rows / tp[0]!.copies!} samples x ${tp[0]!.copies} copies), TF32 on.\n\n| case | oneforward ms/step | oneforward TFLOP/s | PyTorch ms/step | PyTorch TFLOP/s |\n|---|---|---|---|---|\n` +
    tp
      .map(
        (r) =>
          `| ${r.estimator}${r.copies ? ` K=${r.copies}` : ''} | ${fmt(r.oneforward.step_ms)} | ${fmt(r.oneforward.tflops, 1)} | ${ok(r.pytorch) ? fmt((r.pytorch as Through).step_ms) : 'skipped'} | ${ok(r.pytorch) ? fmt((r.pytorch as Through).tflops, 1) : '—'} |`,
      )
      .join('\n') +
    `\n| ulr K=${regen.copies}, storeNoise false | ${fmt(regen.oneforward.step_ms)} | ${fmt(regen.oneforward.tflops, 1)} | — | — |` +
    `\n\n| target | measured | needed | met |\n|---|---|---|---|\n` +
    targets.map((t) => `| ${t.target} | ${fmt(t.value)} | ${t.need} | ${t.met ? 'yes' : 'no'} |`).join('\n') +
    '\n';
  fs.writeFileSync(path.join(results, 'gpu.md'), md);
  process.stdout.write(md);
}
