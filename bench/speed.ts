// Suite "speed" (docs/performance.md): ms per training step of the MLP, small CNN, GRU and residual CNN with BP
// and ULR K=32 (the MLP and CNN also with bfloat16 copies; bench/cases/speed.ts), beside PyTorch on the same threads
// (bench/reference/speed.py, which has no bfloat16 rows), the achieved GFLOP/s by the cost model (bench/cases/cost.ts),
// and the noise generator's normals per second against numpy's and torch's. Rounds interleave our cases and PyTorch's, so a busy stretch of a shared machine hits both alike;
// each number is the median of all its timed steps over all rounds. Writes speed.json and speed.md.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { SpeedEstimator } from './cases/cost';
import { B, K, NoiseRates, SPEED_MODELS, SpeedRow, StepTimes, THREADS } from './cases/speed';

const ROUNDS = 3;
const WARMUP = 3;
const STEPS = 8;

// The performance issue's targets: a case's step over our BP step of the same model, or over PyTorch's step of
// the same case (the steps being the same, a step ratio is the epoch ratio).
const TARGETS: { model: string; estimator: SpeedEstimator; over: 'bp' | 'torch'; max: number }[] = [
  { model: 'cnn', estimator: 'bp', over: 'torch', max: 1.0 },
  { model: 'cnn', estimator: 'ulr', over: 'bp', max: 6 },
  { model: 'mlp', estimator: 'ulr', over: 'bp', max: 1.5 },
  { model: 'gru', estimator: 'ulr', over: 'bp', max: 6 },
  { model: 'rescnn', estimator: 'ulr', over: 'bp', max: 6 },
  // the same ULR targets with the copies' products in bfloat16 (ulr({ precision: 'bf16' }))
  { model: 'cnn', estimator: 'ulr-bf16', over: 'bp', max: 6 },
  { model: 'mlp', estimator: 'ulr-bf16', over: 'bp', max: 1.5 },
  { model: 'gru', estimator: 'ulr-bf16', over: 'bp', max: 6 },
  { model: 'rescnn', estimator: 'ulr-bf16', over: 'bp', max: 6 },
];

type TorchRun = { library: string; rows: ({ estimator: SpeedEstimator } & StepTimes)[] };
type TorchNoise = { numpyPerS: number; torchPerS: number };

const root = path.resolve(__dirname, '..', '..');
const lastJson = (s: string) => JSON.parse(s.trim().split('\n').pop()!);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const uptime = () => execFileSync('uptime', { encoding: 'utf8' }).trim();
const fmt = (v: number | null | undefined, d = 1) => (typeof v === 'number' && Number.isFinite(v) ? v.toFixed(d) : '—');
const mega = (n: number) => (n / 1e6).toFixed(2);

function ours<T>(config: object): T {
  const script = path.join(__dirname, 'cases', 'speed.js');
  return lastJson(
    execFileSync(process.execPath, [script, JSON.stringify(config)], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    }),
  );
}

// The first python3 that imports torch (Debian's python3-torch lives under /usr/bin/python3, which another python3
// on PATH may shadow), or null.
function torchPython(): string | null {
  return ['python3', '/usr/bin/python3'].find((p) => spawnSync(p, ['-c', 'import torch']).status === 0) ?? null;
}

// GNU OpenMP's threads spin while they wait; on an oversubscribed machine that made torch's 2-thread steps 10-30×
// slower, so the reference waits passively (its best here), and OpenBLAS picks its own kernels (as for numpy).
function torch<T>(python: string, args: string[], threads: number): T {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    OMP_WAIT_POLICY: 'PASSIVE',
    OMP_NUM_THREADS: `${threads}`,
    OPENBLAS_NUM_THREADS: `${threads}`,
  };
  delete env.OPENBLAS_CORETYPE;
  const script = path.join(root, 'bench', 'reference', 'speed.py');
  const flags = [
    '--threads',
    `${threads}`,
    '--digits',
    path.join(root, 'data', 'digits.gz'),
    '--warmup',
    `${WARMUP}`,
    '--steps',
    `${STEPS}`,
  ];
  const r = spawnSync(python, [script, ...args, ...flags], { encoding: 'utf8', env, maxBuffer: 16 << 20 });
  if (r.error || r.status !== 0)
    throw new Error(
      `PyTorch reference failed: ${r.error?.message ?? r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
    );
  return lastJson(r.stdout) as T;
}

const concat = (ts: StepTimes[]): StepTimes => ({
  stepMs: ts.flatMap((t) => t.stepMs),
  cpuMs: ts.flatMap((t) => t.cpuMs),
});

// Every case of every model, ROUNDS times, ours then PyTorch's; the noise rates once a round.
function measure(python: string | null) {
  const models = Object.keys(SPEED_MODELS);
  const runs: Record<string, { rows: SpeedRow[] }[]> = {};
  const torchRuns: Record<string, TorchRun[]> = {};
  const noise: NoiseRates[] = [];
  const torchNoise: TorchNoise[] = [];
  const loads: number[] = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const m of models) {
      process.stderr.write(`bench: speed round ${round}/${ROUNDS}: ${m}\n`);
      loads.push(os.loadavg()[0]!);
      (runs[m] ??= []).push(ours({ model: m, warmup: WARMUP, steps: STEPS }));
      if (python) (torchRuns[m] ??= []).push(torch(python, [m], THREADS));
    }
    noise.push(ours({ model: 'noise' }));
    if (python) torchNoise.push(torch(python, ['noise'], 1));
  }
  // PyTorch's steps of a case, where the reference runs it (it has no bf16 copies)
  const theirs = (m: string, e: SpeedEstimator) => {
    const rows = python ? torchRuns[m]!.map((x) => x.rows.find((t) => t.estimator === e)) : [];
    return rows.length && rows.every((r) => r) ? concat(rows as StepTimes[]) : null;
  };
  const cases = models.flatMap((m) =>
    runs[m]![0]!.rows.map((r, i) => ({
      modelKey: m,
      model: SPEED_MODELS[m]!.name,
      estimator: r.estimator,
      label: r.label,
      flops: r.flops,
      normals: r.normals,
      ours: concat(runs[m]!.map((x) => x.rows[i]!)),
      torch: theirs(m, r.estimator),
    })),
  );
  const rates = {
    oursKernelPerS: median(noise.map((n) => n.kernelPerS)),
    oursUlrStepPerS: median(noise.map((n) => n.ulrStepPerS)),
    numpyPerS: python ? median(torchNoise.map((n) => n.numpyPerS)) : null,
    torchPerS: python ? median(torchNoise.map((n) => n.torchPerS)) : null,
  };
  return { cases, rates, loads, torchLibrary: python ? torchRuns[models[0]!]![0]!.library : null };
}

type Measured = ReturnType<typeof measure>;

// Medians, GFLOP/s, the noise's share and the ratios of each case.
function summarize({ cases, rates }: Measured) {
  return cases.map((c) => {
    const bp = cases.find((x) => x.modelKey === c.modelKey && x.estimator === 'bp')!;
    const ms = median(c.ours.stepMs);
    const cpuMs = median(c.ours.cpuMs);
    const torchMs = c.torch ? median(c.torch.stepMs) : null;
    const torchCpuMs = c.torch ? median(c.torch.cpuMs) : null;
    // the normals' CPU time at the generator's one-core rate, a share of the step's CPU time
    const noiseCpuMs = (1000 * c.normals) / rates.oursKernelPerS;
    return {
      modelKey: c.modelKey,
      model: c.model,
      estimator: c.estimator,
      label: c.label,
      gflopPerStep: c.flops / 1e9,
      normalsPerStep: c.normals,
      ms,
      cpuMs,
      gflops: c.flops / ms / 1e6,
      noiseCpuMs,
      noiseShare: noiseCpuMs / cpuMs,
      overBp: ms / median(bp.ours.stepMs),
      cpuOverBp: cpuMs / median(bp.ours.cpuMs),
      torchMs,
      torchCpuMs,
      torchGflops: torchMs ? c.flops / torchMs / 1e6 : null,
      overTorch: torchMs ? ms / torchMs : null,
      cpuOverTorch: torchCpuMs ? cpuMs / torchCpuMs : null,
    };
  });
}

type Summary = ReturnType<typeof summarize>[number];

function targetRatios(rows: Summary[]) {
  return TARGETS.map((t) => {
    const s = rows.find((r) => r.modelKey === t.model && r.estimator === t.estimator)!;
    const [wall, cpu] = t.over === 'bp' ? [s.overBp, s.cpuOverBp] : [s.overTorch, s.cpuOverTorch];
    return {
      name: `${s.model}, ${s.label} / ${t.over === 'bp' ? 'our BP' : "PyTorch's"}`,
      wall,
      cpu,
      max: t.max,
      met: wall === null ? null : wall <= t.max,
    };
  });
}

function markdown(
  date: string,
  simd: string,
  m: Measured,
  rows: Summary[],
  ratios: ReturnType<typeof targetRatios>,
  when: { before: string; after: string },
): string {
  const { rates, loads, torchLibrary } = m;
  const row = (s: Summary) =>
    `| ${s.model} | ${s.label} | ${s.gflopPerStep.toFixed(3)} | ${mega(s.normalsPerStep)} | ${fmt(s.ms)} | ${fmt(s.cpuMs)} | ${fmt(s.gflops)} | ` +
    `${s.normalsPerStep ? `${(100 * s.noiseShare).toFixed(0)}%` : '—'} | ${s.overBp.toFixed(2)} | ${fmt(s.torchMs)} | ${fmt(s.torchCpuMs)} | ${fmt(s.torchGflops)} | ${fmt(s.overTorch, 2)} |`;
  const rate = (v: number | null) => (v === null ? '— (no PyTorch)' : `${mega(v)} M/s`);
  return (
    `# speed (${date.slice(0, 10)}, ${THREADS} threads, ${simd}${torchLibrary ? `, ${torchLibrary}` : ', no PyTorch'})\n\n` +
    `Digits, batch ${B}, Adam 1e-3, ULR σ = 0.1, leave-one-out baseline, ${THREADS} threads on both sides (PyTorch: torch.set_num_threads, OMP_WAIT_POLICY=PASSIVE). ` +
    `ms/step: median wall time of ${ROUNDS} rounds × ${STEPS} timed steps (after ${WARMUP} warm-up steps); CPU ms: the process's CPU time in those steps, all threads. ` +
    `GFLOP/s: the cost model's FLOPs (docs/performance.md) over the wall time. Noise: the normals' CPU time at the generator's one-core rate, as a share of the step's CPU time.\n\n` +
    `The machine is shared and was busy: \`uptime\` before: ${when.before}; after: ${when.after}; 1-minute load when each model started: ` +
    `${loads.map((l) => l.toFixed(1)).join(', ')} (${os.cpus().length} cores). Wall times are then several times an idle machine's; compare within this run.\n\n` +
    `| model | estimator | GFLOP/step | M normals/step | ms/step | CPU ms | GFLOP/s | noise | × BP | PyTorch ms/step | PyTorch CPU ms | PyTorch GFLOP/s | ours / PyTorch |\n` +
    `|---|---|---|---|---|---|---|---|---|---|---|---|---|\n` +
    rows.map(row).join('\n') +
    `\n\nNormals per CPU second on one core (float32): our generator (Philox4x32-10, Box-Muller) ${mega(rates.oursKernelPerS)} M/s alone, ` +
    `${mega(rates.oursUlrStepPerS)} M/s inside ULR K=${K} steps of dense(1 → 4096) with mse (noise, add, loss, copy sum); ` +
    `numpy standard_normal ${rate(rates.numpyPerS)}; torch normal_ ${rate(rates.torchPerS)}.\n\n` +
    `Targets (ratios of this run; wall time, then CPU time):\n\n` +
    ratios
      .map(
        (r) =>
          `- ${r.name}: ${fmt(r.wall, 2)} (CPU ${fmt(r.cpu, 2)}); target ≤ ${r.max}: ${r.met === null ? '—' : r.met ? 'met' : 'not met'}`,
      )
      .join('\n') +
    '\n'
  );
}

export function speedSuite(results: string): void {
  const python = torchPython();
  const before = uptime();
  const m = measure(python);
  const when = { before, after: uptime() };
  const rows = summarize(m);
  const ratios = targetRatios(rows);
  const info = of.backend.info();
  const date = new Date().toISOString();
  const report = {
    suite: 'speed',
    date,
    machine: { threads: THREADS, simd: info.simd, cpus: os.cpus().length, cpu: os.cpus()[0]?.model ?? 'unknown' },
    uptime: when,
    loadAtEachModel: m.loads,
    torch: m.torchLibrary ?? 'not importable (python3 -c "import torch" fails)',
    settings: {
      batch: B,
      copies: K,
      sigma: 0.1,
      optimizer: 'adam 1e-3',
      threads: THREADS,
      rounds: ROUNDS,
      warmup: WARMUP,
      stepsPerRound: STEPS,
    },
    noise: m.rates,
    rows,
    targets: ratios,
    steps: m.cases,
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'speed.json'), JSON.stringify(report, null, 2) + '\n');
  const md = markdown(date, info.simd, m, rows, ratios, when);
  fs.writeFileSync(path.join(results, 'speed.md'), md);
  process.stdout.write(md);
}
