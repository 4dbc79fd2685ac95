// `npm run bench [-- suites...] [--update | --out DIR] [--report file.html]` (also `oneforward bench`): runs each
// case in its own child process (better-sqlite3's habit), side by side in one run, and writes <suite>.json plus a
// markdown table <suite>.md. The suites are listed in lib/cli.ts (benchSuites), one function each here.
// Results go to bench/results/ and bench/paper/, the numbers the docs quote, only with --update; otherwise to
// --out DIR or a new temporary folder, printed at the start and the end.
import { execFileSync, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { benchSuites, BenchSuiteName } from '../lib/cli';
import { writeReport } from '../lib/report';
import { gpuSuite } from './gpu/suite';
import { speedSuite } from './speed';
import { attackName, robustnessSuite } from './robustness';
import { transformerSuite } from './transformer';

const argv = process.argv.slice(2);
const option = (flag: string): string | undefined => {
  const at = argv.indexOf(flag);
  if (at < 0) return undefined;
  const value = argv[at + 1];
  if (value === undefined || value.startsWith('--')) fail(`${flag} needs a value`);
  argv.splice(at, 2);
  return value;
};
function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(1);
}
// `--report file.html`: also write an HTML report of the cpu-digits and estimators runs (curves per epoch).
const reportFile = option('--report');
// `--out DIR`: the results folder (the GPU machine returns only its output folder).
const outDir = option('--out');
const update = argv.includes('--update');
if (update) argv.splice(argv.indexOf('--update'), 1);
if (update && outDir) fail('--update writes to bench/results/; leave out --out');
const unknown = argv.find((a) => a.startsWith('-'));
if (unknown) fail(`unknown option '${unknown}' (have: --update, --out DIR, --report FILE)`);
const wanted = argv.length ? argv : benchSuites.filter((x) => x.byDefault).map((x) => x.name);
const bad = wanted.find((n) => !benchSuites.some((x) => x.name === n));
if (bad) fail(`unknown suite '${bad}' (have: ${benchSuites.map((x) => x.name).join(', ')})`);

const root = path.resolve(__dirname, '..', '..');
const results = update
  ? path.join(root, 'bench', 'results')
  : outDir
    ? path.resolve(outDir)
    : fs.mkdtempSync(path.join(os.tmpdir(), 'oneforward-bench-'));
const paperDir = update ? path.join(root, 'bench', 'paper') : path.join(results, 'paper');
process.stderr.write(`bench: results go to ${results}\n`);

type Row = Record<string, unknown> & {
  case: string;
  median_epoch_s: number;
  median_step_ms: number;
  test_accuracy: number;
};

function runCase(config: object): Row {
  const out = execFileSync(process.execPath, [path.join(__dirname, 'cases', 'digits.js'), JSON.stringify(config)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(out.trim().split('\n').pop()!) as Row;
}

function runNumpy(epochs: number): Row | { skipped: string } {
  const script = path.join(root, 'bench', 'reference', 'numpy_mlp.py');
  const digits = path.join(root, 'data', 'digits.gz');
  // The machine may pin OpenBLAS to its AVX2 kernels (OPENBLAS_CORETYPE); give numpy its best here.
  const env = { ...process.env };
  delete env.OPENBLAS_CORETYPE;
  delete env.OPENBLAS_L2_SIZE;
  const r = spawnSync('python3', [script, '--epochs', String(epochs), '--digits', digits], { encoding: 'utf8', env });
  if (r.error || r.status !== 0)
    return { skipped: `numpy reference unavailable: ${r.error?.message ?? r.stderr.trim().split('\n').pop()}` };
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  // ms/step as for our rows: epoch time over steps (the script's own per-step median is kept as numpy_step_ms).
  const steps = Math.ceil(j.train_rows / j.batch);
  return {
    ...j,
    case: 'numpy bp',
    numpy_step_ms: j.median_step_ms,
    median_step_ms: (1000 * j.median_epoch_s) / steps,
  } as Row;
}

function table(rows: Row[]): string {
  const lines = [
    '| case | ms/step | s/epoch (median of 3 × 5) | samples/s | nominal GFLOP/s | test accuracy, 5 epochs |',
    '|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    const g = typeof r.nominal_gflops === 'number' ? r.nominal_gflops.toFixed(1) : '—';
    const sps =
      typeof r.samples_per_s === 'number'
        ? Math.round(r.samples_per_s).toString()
        : typeof r.train_rows === 'number'
          ? Math.round((r.train_rows as number) / r.median_epoch_s).toString()
          : '—';
    lines.push(
      `| ${r.case} | ${r.median_step_ms.toFixed(3)} | ${r.median_epoch_s.toFixed(3)} | ${sps} | ${g} | ${(100 * r.test_accuracy).toFixed(2)}% |`,
    );
  }
  return lines.join('\n');
}

function cpuDigits() {
  const epochs = 5;
  const configs = [
    { name: 'oneforward bp', estimator: 'bp', epochs, seed: 1 },
    { name: 'oneforward ulr K=8', estimator: 'ulr', copies: 8, epochs, seed: 1 },
    { name: 'oneforward ulr K=32', estimator: 'ulr', copies: 32, epochs, seed: 1 },
    { name: 'oneforward ulr K=32, antithetic pairs', estimator: 'ulr', copies: 32, antithetic: true, epochs, seed: 1 },
    { name: 'oneforward ulr K=32, layer-wise', estimator: 'ulr', copies: 32, injection: 'layerwise', epochs, seed: 1 },
    { name: 'oneforward ulr K=128', estimator: 'ulr', copies: 128, epochs, seed: 1 },
  ];
  // Rounds interleave the cases (numpy included), so a noisy stretch of a shared machine hits them all
  // alike; each case's timing is the median of all its epochs over all rounds.
  const rounds = 3;
  const runs: Row[][] = configs.map(() => []);
  const numpyRuns: Row[] = [];
  let numpySkipped: string | undefined;
  for (let round = 0; round < rounds; round++) {
    configs.forEach((c, i) => {
      process.stderr.write(`bench: round ${round + 1}/${rounds}: ${c.name}\n`);
      runs[i]!.push(runCase(c));
    });
    const n = runNumpy(epochs);
    if ('skipped' in n) numpySkipped = n.skipped as string;
    else numpyRuns.push(n);
  }
  const merge = (rs: Row[]): Row => {
    const secs = rs.flatMap((r) => r.epoch_seconds as number[]).sort((a, b) => a - b);
    const median = secs[Math.floor(secs.length / 2)]!;
    const first = rs[0]!;
    const scale = median / first.median_epoch_s;
    const out: Row = {
      ...first,
      rounds: rs.length,
      epoch_seconds: secs,
      median_epoch_s: median,
      median_step_ms: first.median_step_ms * scale,
    };
    if (typeof first.samples_per_s === 'number') out.samples_per_s = first.samples_per_s / scale;
    if (typeof first.nominal_gflops === 'number') out.nominal_gflops = first.nominal_gflops / scale;
    const accs = new Set(rs.map((r) => r.test_accuracy));
    if (accs.size !== 1) out.test_accuracy_runs = [...accs];
    return out;
  };
  const rows: Row[] = runs.map(merge);
  const numpy: Row | { skipped: string } = numpyRuns.length ? merge(numpyRuns) : { skipped: numpySkipped ?? 'not run' };
  const bp = rows.find((r) => r.case === 'oneforward bp')!;
  const ulr32 = rows.find((r) => r.case === 'oneforward ulr K=32')!;
  const ratios: Record<string, number> = { ulr32_step_over_bp_step: ulr32.median_step_ms / bp.median_step_ms };
  if ('case' in numpy) {
    rows.push(numpy);
    ratios.bp_epoch_over_numpy_epoch = bp.median_epoch_s / numpy.median_epoch_s;
  }
  const info = of.backend.info();
  const report = {
    suite: 'cpu-digits',
    date: new Date().toISOString(),
    machine: { threads: info.threads, simd: info.simd, cpus: require('os').cpus()[0]?.model ?? 'unknown' },
    task: 'digits (7,996 train / 2,004 test), MLP 784-256-10 ReLU, Adam 1e-3, batch 64, 5 epochs, seed 1; ULR sigma 0.1, independent copies unless noted, leave-one-out baseline, shared prefix',
    rows,
    ratios,
    targets: { bp_epoch_over_numpy_epoch: 0.7, ulr32_step_over_bp_step: 1.5 },
    ...('skipped' in numpy ? { skipped: numpy.skipped } : {}),
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'cpu-digits.json'), JSON.stringify(report, null, 2) + '\n');
  const md =
    `# cpu-digits (${report.date.slice(0, 10)}, ${info.threads} threads, ${info.simd})\n\n${report.task}.\n\n${table(rows)}\n\n` +
    `Ratios (same run): ULR K=32 step / BP step = ${ratios.ulr32_step_over_bp_step!.toFixed(2)} (target <= 1.5)` +
    (ratios.bp_epoch_over_numpy_epoch !== undefined
      ? `; our BP epoch / numpy BP epoch = ${ratios.bp_epoch_over_numpy_epoch.toFixed(2)} (target <= 0.7)`
      : `; numpy row skipped: ${(numpy as { skipped: string }).skipped}`) +
    '.\n';
  fs.writeFileSync(path.join(results, 'cpu-digits.md'), md);
  process.stdout.write(md);
  if (reportFile) {
    writeReport(
      {
        title: 'oneforward bench: cpu-digits',
        subtitle: report.task,
        runs: runs.map((rs, i) => ({ name: configs[i]!.name, epochs: rs[0]!.history as of.EpochLog[] })),
      },
      reportFile,
    );
    process.stderr.write(`bench: report written to ${reportFile}\n`);
  }
}

// Suite "server": the Fastify example under load (examples/server/load.ts): predictions served from a trained
// model while two ULR jobs train. Targets: event-loop delay p99 < 20 ms, predict p99 < 50 ms. Then its soak
// (examples/server/soak.ts, in a child process with --expose-gc): 200 create/cancel cycles, resident memory growth
// < 5%, cancel p99 < 250 ms, also for a large job the memory budget accepts.
async function server() {
  const { runLoad } = await import('../examples/server/load');
  const r = await runLoad({ seconds: 10 });
  const soakOut = execFileSync(
    process.execPath,
    [
      '--expose-gc',
      path.join(__dirname, '..', 'examples', 'server', 'soak.js'),
      JSON.stringify({ cycles: 200, largeCycles: 20 }),
    ],
    {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const soak = JSON.parse(soakOut.trim().split('\n').pop()!) as import('../examples/server/soak').SoakResult;
  const info = of.backend.info();
  const report = {
    suite: 'server',
    date: new Date().toISOString(),
    machine: { threads: info.threads, simd: info.simd },
    result: r,
    soak,
    targets: { eventLoopP99Ms: 20, predictP99Ms: 50, soakRssGrowth: 0.05, cancelP99Ms: 250 },
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'server.json'), JSON.stringify(report, null, 2) + '\n');
  const md =
    `# server (${report.date.slice(0, 10)}, ${info.threads} threads)\n\n` +
    `Fastify example on 127.0.0.1: ${r.predictRequests} predict requests (8 rows each) over ${r.seconds.toFixed(1)} s while ${r.trainingJobs} ULR jobs (784-256-10, K=32) train.\n\n` +
    `| metric | p50 | p99 | max | target |\n|---|---|---|---|---|\n` +
    `| event-loop delay (ms) | ${r.eventLoopP50Ms.toFixed(1)} | ${r.eventLoopP99Ms.toFixed(1)} | ${r.eventLoopMaxMs.toFixed(1)} | p99 < 20 |\n` +
    `| predict latency (ms) | ${r.predictP50Ms.toFixed(1)} | ${r.predictP99Ms.toFixed(1)} | — | p99 < 50 |\n\n` +
    `Soak: ${soak.cycles} create/cancel cycles (784-256-10, K=32) in ${soak.seconds.toFixed(0)} s, then ${soak.largeCancels} cancels of a large job (784-2048-2048-10, K=32, batch 256: ${soak.largeMemoryMB.toFixed(0)} MiB estimated), every job freed (${soak.jobsLeft} left).\n\n` +
    `| metric | value | target |\n|---|---|---|\n` +
    `| resident memory, first 10 → last 10 cycles (median, after GC) | ${soak.rssWarmMB.toFixed(1)} → ${soak.rssEndMB.toFixed(1)} MiB (${(100 * soak.rssGrowth).toFixed(1)}%) | < 5% |\n` +
    `| cancel latency p50 / p99 (ms) | ${soak.cancelP50Ms.toFixed(0)} / ${soak.cancelP99Ms.toFixed(0)} | p99 < 250 |\n` +
    `| large-job cancel latency p50 / p99 / max (ms) | ${soak.largeCancelP50Ms.toFixed(0)} / ${soak.largeCancelP99Ms.toFixed(0)} / ${soak.largeCancelMaxMs.toFixed(0)} | p99 < 250 |\n`;
  fs.writeFileSync(path.join(results, 'server.md'), md);
  process.stdout.write(md);
}

// Suite "fuzz": the hardening test with 10,000 fuzz iterations instead of CI's 2,000.
function fuzz() {
  const iterations = 10000;
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, '..', 'test', '80-hardening.test.js')], {
    encoding: 'utf8',
    env: { ...process.env, ONEFORWARD_FUZZ: String(iterations), TAP_TIMEOUT: '0' },
  });
  const line = /ok \d+ - (\d+) calls succeeded, (\d+) failed with typed errors \(([^)]*)\)/.exec(r.stdout);
  const report = {
    suite: 'fuzz',
    date: new Date().toISOString(),
    iterations,
    exitCode: r.status,
    succeeded: line ? Number(line[1]) : null,
    typedErrors: line ? Number(line[2]) : null,
    codes: line?.[3] ?? null,
    untyped: (r.stdout.match(/untyped error/g) ?? []).length,
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'fuzz.json'), JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(
    `# fuzz: ${iterations} iterations, exit ${r.status}: ${report.succeeded} succeeded, ${report.typedErrors} typed errors (${report.codes}), ${report.untyped} untyped\n`,
  );
}

// Suite "stress": test/82's random interleavings at full size (bench/cases/stress.ts). Every count but ok must be 0.
function stress() {
  const r = runJsonCase<{
    scenarios: number;
    inWorkers: number;
    parallel: number;
    timeoutMs: number;
    seconds: number;
    crashes: number;
    hangs: number;
    unsettled: number;
    untyped: number;
    failed: number;
    ok: number;
    notOk: unknown[];
  }>('stress');
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'stress.json'), JSON.stringify({ suite: 'stress', date, ...r }, null, 2) + '\n');
  const md =
    `# stress (${date.slice(0, 10)})\n\n${r.scenarios} seeded random interleavings (seeds 1000-${999 + r.scenarios}; ${r.inWorkers} in a worker that is terminated at a random moment) ` +
    `of fit with JS losses and throwing callbacks, predictAsync, evaluateAsync, gradients, trainStep, abort, dispose and buffer transfer/resize, ` +
    `each in a child process, ${r.parallel} at a time, ${r.timeoutMs / 1000} s limit; ${r.seconds.toFixed(0)} s in all.\n\n` +
    `| scenarios | crashes (exit by signal) | hangs (time limit) | unsettled promises | untyped errors | other failures | ok |\n|---|---|---|---|---|---|---|\n` +
    `| ${r.scenarios} | ${r.crashes} | ${r.hangs} | ${r.unsettled} | ${r.untyped} | ${r.failed} | ${r.ok} |\n`;
  fs.writeFileSync(path.join(results, 'stress.md'), md);
  process.stdout.write(md);
}

// Suite "adversarial": test/51 (hostile arguments), 80 (fuzz) and 84 (corrupted files) at large counts over
// several seeds (bench/cases/adversarial.ts). Every count but calls must be 0.
function adversarial() {
  type Run = {
    test: string;
    env: Record<string, string>;
    exit: number | null;
    signal: string | null;
    timedOut: boolean;
    seconds: number;
    calls: number;
    typed: number;
    loaded: number;
    untyped: number;
    hangs: number;
    wrong: number;
    notOk: number;
  };
  const r = runJsonCase<{ runs: Run[] }>('adversarial');
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'adversarial.json'),
    JSON.stringify({ suite: 'adversarial', date, ...r }, null, 2) + '\n',
  );
  const total = (k: 'calls' | 'untyped' | 'hangs' | 'wrong' | 'notOk') => r.runs.reduce((a, x) => a + x[k], 0);
  const crashes = r.runs.filter((x) => x.signal !== null && !x.timedOut).length;
  const md =
    `# adversarial (${date.slice(0, 10)})\n\nEach row is one test file in its own process (2 at a time): test/80's fuzz of configs and inputs, ` +
    `test/51's calls of every exported function and Model method with hostile arguments (its 15 fixed values plus seeded random ones), ` +
    `test/81's hostile and corrupted files (bytes flipped, cut short, repeated). A wrong result is a corrupted file that loads as something else.\n\n` +
    `| test | settings | calls | typed errors | crash | hangs | untyped errors | wrong results | failed assertions | s |\n|---|---|---|---|---|---|---|---|---|---|\n` +
    r.runs
      .map(
        (x) =>
          `| ${x.test} | ${Object.entries(x.env)
            .map(([k, v]) => `${k}=${v}`)
            .join(
              ' ',
            )} | ${x.calls} | ${x.typed || '—'} | ${x.signal !== null && !x.timedOut ? x.signal : 'no'} | ${x.hangs} | ${x.untyped} | ${x.wrong} | ${x.notOk} | ${x.seconds.toFixed(0)} |`,
      )
      .join('\n') +
    `\n\nIn all: ${total('calls')} calls, ${crashes} crashes, ${total('hangs')} hangs, ${total('untyped')} untyped errors, ${total('wrong')} wrong results, ${total('notOk')} failed assertions.\n`;
  fs.writeFileSync(path.join(results, 'adversarial.md'), md);
  process.stdout.write(md);
}

// Suite "estimators": gradient quality per ULR option and K, and accuracy/time of BP, ULR, SPSA and ES.
function estimators() {
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

// Runs bench/cases/<name>.js in its own process and parses the JSON line it prints last.
function runJsonCase<T>(name: string): T {
  process.stderr.write(`bench: case ${name}\n`);
  const out = execFileSync(process.execPath, [path.join(__dirname, 'cases', `${name}.js`)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

type Finetune = {
  pretrained: { lowAccuracy: number; highAccuracy: number };
  runs: { name: string; highAccuracy: number; lowAccuracy: number; secondsPerEpoch: number }[];
};

function finetuneTable(r: Finetune): string {
  return (
    `MLP 784-256-10 pretrained with BP on digits 0-4 (3 epochs): ${pct(r.pretrained.lowAccuracy)} on 0-4, ${pct(r.pretrained.highAccuracy)} on 5-9. ` +
    `Then 3 epochs on digits 5-9 (Adam 1e-3, batch 64); head only = first layer frozen.\n\n` +
    `| fine-tuning | accuracy on 5-9 | left on 0-4 | s/epoch |\n|---|---|---|---|\n` +
    r.runs
      .map((x) => `| ${x.name} | ${pct(x.highAccuracy)} | ${pct(x.lowAccuracy)} | ${x.secondsPerEpoch.toFixed(3)} |`)
      .join('\n') +
    '\n'
  );
}

// Suite "finetune": pretrain with BP on digits 0-4, fine-tune on 5-9 with BP or ULR, full or head only.
function finetune(): Finetune {
  const r = runJsonCase<Finetune>('finetune');
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'finetune.json'),
    JSON.stringify({ suite: 'finetune', date, ...r }, null, 2) + '\n',
  );
  const md = `# finetune (${date.slice(0, 10)})\n\n${finetuneTable(r)}`;
  fs.writeFileSync(path.join(results, 'finetune.md'), md);
  process.stdout.write(md);
  return r;
}

type Arch = {
  runs: {
    model: string;
    estimator: string;
    accuracy?: number;
    secondsPerEpoch?: number;
    stepMs?: number;
    refused?: string;
    epochs?: of.EpochLog[];
  }[];
};

function archTable(r: Arch): string {
  const bpOf = (model: string) =>
    r.runs.find((x) => x.model === model && x.estimator.startsWith('bp') && x.stepMs !== undefined);
  return (
    `| model | estimator | test accuracy | s/epoch | ms/step | × BP step |\n|---|---|---|---|---|---|\n` +
    r.runs
      .map((x) => {
        if (x.refused) return `| ${x.model} | ${x.estimator} | refused: ${x.refused.split(';')[0]} | — | — | — |`;
        const bp = bpOf(x.model);
        return `| ${x.model} | ${x.estimator} | ${pct(x.accuracy!)} | ${x.secondsPerEpoch!.toFixed(2)} | ${x.stepMs!.toFixed(2)} | ${bp ? (x.stepMs! / bp.stepMs!).toFixed(2) : '—'} |`;
      })
      .join('\n') +
    '\n'
  );
}

// Suite "architectures": models beyond the MLP (issue 4), BP vs ULR vs local module training.
function architectures(): Arch {
  const r = runJsonCase<Arch>('architectures');
  const date = new Date().toISOString();
  const info = of.backend.info();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'architectures.json'),
    JSON.stringify(
      { suite: 'architectures', date, machine: { threads: info.threads, simd: info.simd }, ...r },
      null,
      2,
    ) + '\n',
  );
  const md =
    `# architectures (${date.slice(0, 10)}, ${info.threads} threads, ${info.simd})\n\n` +
    `Digits models: 7,996 train / 2,004 test, 5 epochs, Adam 1e-3, batch 64, seed 1. Graph models: 200 full-graph steps, Adam 0.01, accuracy on the unlabeled nodes. ` +
    `ULR sigma 0.1, leave-one-out baseline; ms/step = median epoch / steps per epoch.\n\n` +
    archTable(r) +
    `\nTargets (issue 4): small CNN BP >= 97.5%, ULR >= 95%; GRU over rows BP >= 95%, ULR >= 90%; spiking MLP ULR >= 90%; ` +
    `MLP with step activations: BP refuses, ULR >= 90%; residual CNN BP >= 97.5%, ULR >= 95%.\n`;
  fs.writeFileSync(path.join(results, 'architectures.md'), md);
  process.stdout.write(md);
  return r;
}

type ArchOptions = {
  copies: number;
  sigma: number;
  runs: (Arch['runs'][number] & { load: [number, number] })[];
  sigmaRanges: { model: string; layers: [number, number][] }[];
};

// Suite "arch-options": ULR's options at K = 32 on the small CNN, residual CNN and GRU of "architectures" (its
// models and settings). The machine may be shared: `uptime` before and after, and each run's load, go in the md.
function archOptions() {
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

type Flow = {
  model: string;
  steps: number;
  stepTiming: { concurrent: number; sequential: number; pipelined: number };
  rows: {
    name: string;
    accuracy: number[];
    meanAccuracy: number;
    secondsPerEpoch: number;
    stepMs: number;
    cosine: number[];
    epochs: of.EpochLog[];
  }[];
};
type AttackRow = { attack: { kind: string; eps?: number; std?: number; p?: number }; accuracy: number };
type Robust = { rows: { pair: string; model: string; valAccuracy: number; results: AttackRow[] }[] };

// Suite "paper": the paper's headline claims (computation-flow rearrangement, fine-tuning, robustness) tested
// on this task; writes REPORT.md, results.json and report.html into bench/paper/ (--update) or <results>/paper/.
// The verdicts are rules on the measured numbers, stated next to each.
function paper() {
  const flow = runJsonCase<Flow>('flow');
  const arch = architectures();
  const ft = finetune();
  const robust = runJsonCase<Robust>('robustness');
  const info = of.backend.info();
  const date = new Date().toISOString();
  const dir = paperDir;
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, 'results.json'),
    JSON.stringify(
      {
        suite: 'paper',
        date,
        machine: { threads: info.threads, simd: info.simd },
        flow,
        architectures: arch,
        finetune: ft,
        robustness: robust,
      },
      null,
      2,
    ) + '\n',
  );

  const row = (prefix: string) => flow.rows.find((r) => r.name.startsWith(prefix))!;
  const bp = row('bp'),
    plain = row('ulr K=32'),
    conc = row('modules [0,2][2,3]'),
    pipe = row('modules [0,2][2,3], pipelined'),
    one = row('modules [0,3]');
  const st = flow.stepTiming;
  const modulesRows = flow.rows.filter((r) => r.name.startsWith('modules'));
  const bestModules = modulesRows.reduce((a, b) => (b.meanAccuracy > a.meanAccuracy ? b : a));
  const pts = (a: number, b: number) => `${100 * (a - b) >= 0 ? '+' : ''}${(100 * (a - b)).toFixed(2)}`;
  const ftRun = (name: string) => ft.runs.find((r) => r.name === name)!;
  const ftBp = ftRun('bp, full'),
    ftUlr = ftRun('ulr K=32, full'),
    ftBpHead = ftRun('bp, head only'),
    ftUlrHead = ftRun('ulr K=32, head only');
  const acc = (r: Robust['rows'][number], kind: string, v?: number) =>
    r.results.find((x) => x.attack.kind === kind && (v === undefined || x.attack.eps === v))!.accuracy;
  const pairs = [...new Set(robust.rows.filter((r) => r.pair !== 'reference').map((r) => r.pair))].map((p) => {
    const [u, b] = robust.rows.filter((r) => r.pair === p) as [Robust['rows'][number], Robust['rows'][number]];
    return {
      name: p,
      ulr: u,
      bp: b,
      gap: acc(u, 'fgsm', 0.1) - acc(b, 'fgsm', 0.1),
      cleanGap: acc(u, 'clean') - acc(b, 'clean'),
    };
  });
  const bestPair = pairs.reduce((a, b) => (b.gap > a.gap ? b : a));
  const met = pairs.filter((p) => p.gap >= 0.1 && Math.abs(p.cleanGap) <= 0.02);

  const claims: [string, string, string, string][] = [
    [
      'One forward pass (noise in every layer, no backward) trains the network',
      'digits MLP 784-256-128-10, 5 epochs, 2 seeds: plain ULR K=32 vs BP',
      `${pct(plain.meanAccuracy)} vs ${pct(bp.meanAccuracy)} (${pts(plain.meanAccuracy, bp.meanAccuracy)} points); step ${plain.stepMs.toFixed(2)} vs ${bp.stepMs.toFixed(2)} ms`,
      Math.abs(plain.meanAccuracy - bp.meanAccuracy) <= 0.02
        ? 'holds (within 2 points)'
        : 'partly: it trains, but not to BP accuracy in 5 epochs (rule: within 2 points)',
    ],
    [
      'Modules can be trained locally (LR estimate at each boundary, BP inside) and still optimize the global loss',
      'the same model cut into modules, `ulr({ modules })`',
      `best split ${bestModules.name}: ${pct(bestModules.meanAccuracy)} (${pts(bestModules.meanAccuracy, plain.meanAccuracy)} points over plain ULR, ${pts(bestModules.meanAccuracy, bp.meanAccuracy)} vs BP); [0,2][2,3]: ${pct(conc.meanAccuracy)}`,
      bestModules.meanAccuracy >= plain.meanAccuracy
        ? 'holds (rule: the best split is at least as accurate as plain ULR)'
        : 'does not hold',
    ],
    [
      'Rearranged flow is cheaper: fewer noisy layers, reductions without a backward recursion',
      'step time of each arrangement, same run',
      `[0,2][2,3]: ${conc.stepMs.toFixed(2)} ms (${(plain.stepMs / conc.stepMs).toFixed(2)}× faster than plain ULR); [0,3]: ${one.stepMs.toFixed(2)} ms = ${(one.stepMs / bp.stepMs).toFixed(2)}× BP`,
      conc.stepMs < plain.stepMs ? 'holds' : 'does not hold',
    ],
    [
      'Reductions run concurrently / pipelined across modules',
      'concurrent vs sequential block sums; first module pipelined (one step stale); trainStep timings interleaved in 7 rounds',
      `ms/step: sequential ${st.sequential.toFixed(3)}, concurrent ${st.concurrent.toFixed(3)}, pipelined ${st.pipelined.toFixed(3)}; pipelined accuracy ${pct(pipe.meanAccuracy)} (not pipelined ${pct(conc.meanAccuracy)})`,
      st.sequential / Math.min(st.concurrent, st.pipelined) >= 1.1
        ? 'holds (rule: ≥ 10% faster than sequential)'
        : 'runs and trains, but no speed-up ≥ 10% on this 2-core machine (the blocks already use both cores)',
    ],
    [
      'Pretrained models can be fine-tuned forward-only; head-only costs little more than inference',
      'pretrain BP on digits 0-4, fine-tune on 5-9',
      `full: ULR ${pct(ftUlr.highAccuracy)} vs BP ${pct(ftBp.highAccuracy)}; head only: ULR ${pct(ftUlrHead.highAccuracy)} at ${ftUlrHead.secondsPerEpoch.toFixed(3)} s/epoch vs BP ${pct(ftBpHead.highAccuracy)} at ${ftBpHead.secondsPerEpoch.toFixed(3)}`,
      Math.abs(ftUlrHead.highAccuracy - ftBpHead.highAccuracy) <= 0.02 && ftUlr.highAccuracy >= ftBp.highAccuracy - 0.03
        ? 'holds (rule: head-only within 2 points of BP, full within 3)'
        : 'partly',
    ],
    [
      'ULR-trained models are more robust than BP-trained ones',
      'models of equal validation accuracy (BP stopped when it reaches the ULR model), FGSM ε = 0.1 on test',
      pairs
        .map(
          (p) => `${p.name}: ${pct(acc(p.ulr, 'fgsm', 0.1))} vs BP ${pct(acc(p.bp, 'fgsm', 0.1))} (${pts(p.gap, 0)})`,
        )
        .join('; '),
      met.length
        ? `holds for ${met.map((p) => p.name).join(', ')} (target: +10 points, clean within 2)`
        : `target (+10 points at equal clean accuracy) not met; best gap ${pts(bestPair.gap, 0)} points (${bestPair.name})`,
    ],
  ];

  const archRun = (prefix: string, est: string) =>
    arch.runs.find((x) => x.model.startsWith(prefix) && x.estimator === est);
  const cnnBp = archRun('small CNN', 'bp'),
    cnnUlr = archRun('small CNN', 'ulr K=32'),
    cnnMod = archRun('small CNN', 'ulr K=32, modules [0,3] (noise on the logits)');
  const stepUlr = archRun('MLP 784-256-10 with step', 'ulr K=32'),
    stepBp = archRun('MLP 784-256-10 with step', 'bp');
  if (
    cnnBp?.accuracy !== undefined &&
    cnnUlr?.accuracy !== undefined &&
    cnnMod?.accuracy !== undefined &&
    stepUlr?.accuracy !== undefined
  ) {
    claims.splice(1, 0, [
      'The same estimator trains other architectures, including units BP cannot differentiate',
      'small CNN and an MLP with step activations, 5 epochs (architectures bench)',
      `CNN: ULR ${pct(cnnUlr.accuracy)}, modules [0,3] ${pct(cnnMod.accuracy)}, BP ${pct(cnnBp.accuracy)}; step MLP: ULR ${pct(stepUlr.accuracy)}, BP ${stepBp?.refused ? 'refuses' : 'trains'}`,
      cnnUlr.accuracy >= cnnBp.accuracy - 0.025
        ? 'holds (rule: ULR within 2.5 points of BP)'
        : `partly: plain ULR trains the CNN ${pts(cnnUlr.accuracy, cnnBp.accuracy)} points from BP; with modules ${pts(cnnMod.accuracy, cnnBp.accuracy)}`,
    ]);
  }
  const attacks = robust.rows[0]!.results.map((r) => attackName(r.attack));
  const md =
    `# oneforward: the paper's claims on this machine (${date.slice(0, 10)})\n\n` +
    `Jiang et al., "One Forward is Enough for Neural Network Training via Likelihood Ratio Method" (ICLR 2024). ` +
    `Rerun with \`npm run bench -- paper --update\` (about 2 minutes on ${info.threads} threads, ${info.simd}); this page, results.json and report.html are written by it. ` +
    `Task: the digits data set (7,996 train / 2,004 test).\n\n` +
    `| claim | experiment | measured | verdict here |\n|---|---|---|---|\n` +
    claims.map((c) => `| ${c.join(' | ')} |`).join('\n') +
    `\n\n## Computation-flow rearrangement\n\n${flow.model}, 5 epochs, Adam 1e-3, batch 64, K = 32, σ = 0.1; accuracy on test for seeds 1 and 2; step time = median epoch / ${flow.steps} steps; ` +
    `gradient cosine to BP on one batch of 64 (mean over 6 noise draws), layers 1 / 2 / 3.\n\n` +
    `| arrangement | test accuracy (seeds 1, 2) | ms/step | × BP step | cosine to BP |\n|---|---|---|---|---|\n` +
    flow.rows
      .map(
        (r) =>
          `| ${r.name} | ${r.accuracy.map(pct).join(', ')} | ${r.stepMs.toFixed(2)} | ${(r.stepMs / bp.stepMs).toFixed(2)} | ${r.cosine.map((c) => c.toFixed(3)).join(' / ')} |`,
      )
      .join('\n') +
    `\n\nModules get noise only at their boundaries, so fewer noisy dimensions share one loss and each estimate is less noisy ` +
    `(cosine column); BP inside a module is exact given its boundary estimate. One module holding the whole network ` +
    `(noise on the logits only) is BP driven by an LR estimate of the output gradient. Pipelined: the first module's ` +
    `gradient lands one step late.\n\nThe same arrangements on a small CNN and on an MLP with step activations (the architectures bench, same run):\n\n${archTable(arch)}` +
    `\n## Fine-tuning\n\n${finetuneTable(ft)}` +
    `\n## Robustness\n\nMLP 784-256-10 on 6,996 training rows, 1,000 random rows for validation. Each ULR model trains 5 epochs; ` +
    `its BP twin trains on the same rows until its validation accuracy reaches the ULR model's (checked every 10 steps). ` +
    `White-box FGSM/PGD use input gradients by backprop through the same engine; PGD: 10 steps of ε/4.\n\n` +
    `| model | val accuracy | ${attacks.join(' | ')} |\n|---|---|${attacks.map(() => '---').join('|')}|\n` +
    robust.rows
      .map(
        (r) =>
          `| ${r.model} | ${pct(r.valAccuracy)} | ${r.results.map((x) => (100 * x.accuracy).toFixed(1)).join(' | ')} |`,
      )
      .join('\n') +
    `\n\nAnchor: the LR method's predecessor reported MNIST FGSM ε = 0.13 accuracy of 28.4% (BP) vs 46–54% (LR).\n`;
  fs.writeFileSync(path.join(dir, 'REPORT.md'), md);
  writeReport(
    {
      title: 'oneforward: computation-flow rearrangement',
      subtitle: `digits, ${flow.model}, Adam 1e-3, batch 64, 5 epochs, seed 1`,
      runs: flow.rows.map((r) => ({ name: r.name, epochs: r.epochs })),
    },
    path.join(dir, 'report.html'),
  );
  process.stdout.write(md);
}

// Suite "distributed" (issue 7): the distributed case under mpirun with 1 and 2 ranks (1 thread each), measured
// compute and all-reduce time per step, and a model of step time for N ranks on 10 and 100 Gb/s networks.
function distributedSuite() {
  if (!of.distributed.mpiAvailable()) {
    process.stdout.write(
      '# distributed: skipped (the MPI addon was not built: install an MPI and npm install again)\n',
    );
    return;
  }
  const run = (n: number) => {
    const r = spawnSync(
      'mpirun',
      [
        '--allow-run-as-root',
        '--oversubscribe',
        '--mca',
        'btl',
        'self,vader,tcp',
        '-x',
        'ONEFORWARD_THREADS',
        '-np',
        String(n),
        process.execPath,
        path.join(__dirname, 'cases', 'distributed.js'),
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, ONEFORWARD_THREADS: '1', OMPI_MCA_btl_vader_single_copy_mechanism: 'none' },
        maxBuffer: 16 << 20,
      },
    );
    if (r.status !== 0) throw new Error(`mpirun -np ${n} failed: ${r.stderr.slice(-400)}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      ranks: number;
      library: string;
      rows: { mode: string; estimator: string; computeMs: number; allreduceMs: number; bytesPerStep: number }[];
    };
  };
  const one = run(1),
    two = run(2);
  // ring all-reduce: each rank sends and receives 2 (N - 1) / N of the buffer, in 2 (N - 1) messages
  const nets = [
    { name: '10 Gb/s Ethernet', bytesPerMs: 1.25e6, latencyMs: 0.02 },
    { name: '100 Gb/s InfiniBand', bytesPerMs: 12.5e6, latencyMs: 0.002 },
  ];
  const Ns = [1, 2, 4, 8, 16, 32, 64];
  const model = one.rows.map((r) => ({
    estimator: r.estimator,
    mode: r.mode,
    bytesPerStep: r.bytesPerStep,
    nets: nets.map((net) => ({
      net: net.name,
      stepMs: Ns.map(
        (n) =>
          r.computeMs / n +
          (n > 1 ? (((2 * (n - 1)) / n) * r.bytesPerStep) / net.bytesPerMs + 2 * (n - 1) * net.latencyMs : 0),
      ),
    })),
  }));
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'distributed.json'),
    JSON.stringify({ suite: 'distributed', date, library: one.library, one, two, model, Ns }, null, 2) + '\n',
  );
  const md =
    `# distributed (${date.slice(0, 10)}, ${one.library})\n\nDigits MLP 784-256-10, batch 64 per step, 1 thread per rank, median of 40 steps.\n\n` +
    `| mode | estimator | bytes per step | 1 rank: compute ms | 2 ranks: compute ms | 2 ranks: all-reduce ms |\n|---|---|---|---|---|---|\n` +
    one.rows
      .map(
        (r, i) =>
          `| ${r.mode} | ${r.estimator} | ${r.bytesPerStep} | ${r.computeMs.toFixed(2)} | ${two.rows[i]!.computeMs.toFixed(2)} | ${two.rows[i]!.allreduceMs.toFixed(3)} |`,
      )
      .join('\n') +
    `\n\nModel: step(N) = compute(1 rank) / N + ring all-reduce (2 (N-1)/N x bytes / bandwidth + 2 (N-1) x latency). Modeled ms per step:\n\n` +
    `| estimator | network | ${Ns.map((n) => `N=${n}`).join(' | ')} |\n|---|---|${Ns.map(() => '---').join('|')}|\n` +
    model
      .flatMap((r) =>
        r.nets.map((n) => `| ${r.estimator} | ${n.net} | ${n.stepMs.map((v) => v.toFixed(2)).join(' | ')} |`),
      )
      .join('\n') +
    '\n';
  fs.writeFileSync(path.join(results, 'distributed.md'), md);
  process.stdout.write(md);
}

const suites: Record<BenchSuiteName, () => unknown> = {
  'cpu-digits': cpuDigits,
  server,
  fuzz,
  stress,
  adversarial,
  estimators,
  finetune,
  architectures,
  'arch-options': archOptions,
  paper,
  distributed: distributedSuite,
  gpu: () => gpuSuite(results),
  speed: () => speedSuite(results),
  robustness: () => robustnessSuite(results),
  transformer: () => transformerSuite(results),
};
(async () => {
  // The CPU suites measure the CPU engine even where a GPU would answer ('auto'); the gpu suite asks for CUDA itself.
  if (!wanted.includes('gpu')) process.env.ONEFORWARD_BACKEND ??= 'cpu';
  for (const name of wanted) await suites[name as BenchSuiteName]();
  process.stderr.write(`bench: results in ${results}\n`);
})();
