/**
 * The `oneforward` command line (commander + cli-progress): `train`, `eval`, `report`, `bench`, `rebuild` and `info`. Progress goes to stderr,
 * results to stdout. Ctrl-C cancels training cleanly (exit code 130).
 */
import { Argument, Command, InvalidArgumentError } from 'commander';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as cliProgress from 'cli-progress';
import * as of from './index';
import { writeReport } from './report';

function int(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n)) throw new InvalidArgumentError(`${name} must be an integer`);
    return n;
  };
}
function num(name: string) {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isFinite(n)) throw new InvalidArgumentError(`${name} must be a number`);
    return n;
  };
}

type TrainOpts = {
  dataset: string;
  idx?: string;
  csv?: string;
  layers?: string;
  activation: string;
  estimator: string;
  copies: number;
  sigma: number;
  antithetic: boolean;
  injection: string;
  noise: string;
  baseline: string;
  precision: string;
  optimizer: string;
  lr?: number;
  epochs: number;
  batch: number;
  seed: number;
  threads?: number;
  backend?: string;
  progress: boolean;
  json: boolean;
  save?: string;
  report?: string;
  resume?: string;
};

type DataOpts = { dataset: string; idx?: string; csv?: string };

// A file that parses but holds no rows or no features (a header-only CSV, a label-only column) is named as such
// here, before anything derives layer widths from it.
function checked(file: string, d: of.Dataset): of.Dataset {
  if (d.rows === 0) throw new of.DataError(`${file}: no data rows`);
  if (d.x.length === 0) throw new of.DataError(`${file}: no feature columns (only a label)`);
  return d;
}

function loadData(o: DataOpts): { train: of.Dataset; test?: of.Dataset } {
  if (o.idx) {
    const [images, labels, testImages, testLabels] = o.idx.split(',');
    if (!images || !labels) throw new of.ConfigError('--idx expects images,labels[,testImages,testLabels]');
    const train = checked(images, of.data.loadIdx(images, labels));
    return testImages && testLabels
      ? { train, test: checked(testImages, of.data.loadIdx(testImages, testLabels)) }
      : { train };
  }
  if (o.csv) {
    const [train, test] = o.csv.split(',');
    return {
      train: checked(train!, of.data.loadCsv(train!)),
      ...(test ? { test: checked(test, of.data.loadCsv(test)) } : {}),
    };
  }
  if (o.dataset !== 'digits') throw new of.ConfigError(`unknown dataset '${o.dataset}' (use digits, --idx or --csv)`);
  return of.datasets.digits();
}

/** Fails now, not after training, when `file` cannot be written: its folder must exist and be writable. */
function checkWritable(flag: string, file: string): void {
  // What is at p, or undefined when nothing is; any other failure (a file where a folder should be, a loop of
  // links, a folder that may not be searched) is a ConfigError naming the option, not a raw system error.
  const statOf = (p: string) => {
    try {
      return fs.statSync(p, { throwIfNoEntry: false });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
      throw new of.ConfigError(`${flag} '${file}' cannot be checked: ${(err as Error).message}`, { cause: err });
    }
  };
  const dir = path.dirname(path.resolve(file));
  const dirStat = statOf(dir);
  if (!dirStat) throw new of.ConfigError(`${flag} '${file}': the folder ${dir} does not exist`);
  if (!dirStat.isDirectory()) throw new of.ConfigError(`${flag} '${file}': ${dir} is not a folder`);
  const stat = statOf(file);
  if (stat?.isDirectory()) throw new of.ConfigError(`${flag} '${file}' is a directory; give a file name`);
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    if (stat) fs.accessSync(file, fs.constants.W_OK);
  } catch {
    throw new of.ConfigError(`${flag} '${file}' is not writable`);
  }
}

const clock = (s: number) => {
  const t = Math.max(0, Math.round(s));
  const mm = String(Math.floor(t / 60) % 60).padStart(2, '0'),
    ss = String(t % 60).padStart(2, '0');
  return t >= 3600 ? `${Math.floor(t / 3600)}:${mm}:${ss}` : `${mm}:${ss}`;
};

async function train(o: TrainOpts): Promise<number> {
  for (const [flag, file] of [
    ['--save', o.save],
    ['--report', o.report],
  ] as const)
    if (file !== undefined) checkWritable(flag, file);
  if (o.resume && o.layers)
    throw new of.ConfigError("--resume continues the checkpoint's own layers; leave out --layers");
  if (o.threads !== undefined) of.backend.setThreads(o.threads);
  const estimator =
    o.estimator === 'bp'
      ? of.bp()
      : o.estimator === 'spsa'
        ? of.spsa()
        : o.estimator === 'es'
          ? of.es()
          : o.estimator === 'ulr'
            ? of.ulr({
                copies: o.copies,
                sigma: o.sigma,
                antithetic: o.antithetic,
                injection: o.injection as of.InjectionName,
                noise: o.noise as of.DensityName,
                baseline: o.baseline as of.BaselineName,
                precision: o.precision as of.PrecisionName,
              })
            : undefined;
  if (!estimator) throw new of.ConfigError(`unknown estimator '${o.estimator}' (ulr, bp, spsa or es)`);
  const opts = o.lr !== undefined ? { lr: o.lr } : {};
  const optimizer =
    o.optimizer === 'sgd'
      ? of.sgd(opts)
      : o.optimizer === 'adamw'
        ? of.adamw(opts)
        : o.optimizer === 'adam'
          ? of.adam(opts)
          : undefined;
  if (!optimizer) throw new of.ConfigError(`unknown optimizer '${o.optimizer}' (sgd, adam, adamw)`);
  const { train: data, test } = loadData(o);
  const features = data.shape.reduce((a, b) => a * b, 1);
  let classes = 0;
  for (const y of data.y) classes = Math.max(classes, y + 1);
  let model: of.Model;
  let shape: string;
  if (o.resume) {
    // of.load builds the model on the backend ONEFORWARD_BACKEND names
    if (o.backend) process.env.ONEFORWARD_BACKEND = o.backend;
    model = await of.load(o.resume);
    const problem =
      model.inputs !== features
        ? new of.ShapeError(`--resume ${o.resume} takes ${model.inputs} features per row, but the data has ${features}`)
        : o.epochs <= model.epochsRun
          ? new of.ConfigError(
              `--resume ${o.resume} has trained ${model.epochsRun} epochs already; --epochs is the total to reach (e.g. --epochs ${model.epochsRun + 5})`,
            )
          : undefined;
    if (problem) throw (model.dispose(), problem);
    shape = `${o.resume} (epoch ${model.epochsRun}, step ${model.step})`;
  } else {
    if (!o.layers && classes < 2)
      throw new of.DataError(
        `every label in the training data is ${classes - 1}; classification needs at least 2 classes`,
      );
    const spec = o.layers ?? `${features}-256-${classes}`;
    const widths = spec.split('-').map(Number);
    if (widths.length < 2 || !widths.every((w) => Number.isInteger(w) && w > 0))
      throw new of.ConfigError(`--layers '${spec}' is not like 784-256-10`);
    if (widths[0] !== features)
      throw new of.ShapeError(
        `--layers '${spec}' starts at ${widths[0]} inputs, but the data has ${features} features per row`,
      );
    const layers = of.mlp(widths, o.activation as of.ActivationName);
    model = of.sequential(layers, { seed: o.seed, ...(o.backend ? { backend: o.backend as of.BackendName } : {}) });
    shape = widths.join('-');
  }
  const controller = new AbortController();
  const onSigint = () => controller.abort();
  process.once('SIGINT', onSigint);
  const bar =
    o.progress && process.stderr.isTTY
      ? new cliProgress.SingleBar(
          {
            format: 'epoch {epoch}/{epochs} [{bar}] {value}/{total} | loss {loss} | {rate} samples/s | ETA {remaining}',
            stream: process.stderr,
          },
          cliProgress.Presets.shades_classic,
        )
      : undefined;
  let current = 0;
  const info = of.backend.info();
  const where =
    model.backend === 'cpu'
      ? `cpu (${info.threads} threads, ${info.simd})`
      : `${model.backend} (${model.backendInfo().device}, ${model.backendInfo().blas})`;
  process.stderr.write(
    `oneforward: ${o.estimator}${o.estimator === 'ulr' ? ` K=${o.copies} sigma=${o.sigma}` : ''}, ${shape}, ${where}\n`,
  );
  try {
    const history = await model.fit(data, {
      estimator,
      optimizer,
      epochs: o.epochs,
      batchSize: o.batch,
      signal: controller.signal,
      resume: o.resume !== undefined,
      ...(test ? { validation: test } : {}),
      onProgress: (p) => {
        if (!bar) return;
        const fields = {
          epoch: p.epoch,
          epochs: p.epochs,
          loss: p.loss.toFixed(4),
          rate: Math.round(p.samplesPerSecond),
          remaining: clock(p.eta),
        };
        if (p.epoch !== current) {
          if (current) bar.stop();
          bar.start(p.steps, p.step, fields);
          current = p.epoch;
        } else bar.update(p.step, fields);
      },
      onEpochEnd: (e) => {
        if (bar) (bar.stop(), (current = 0));
        const val = e.valAccuracy !== undefined ? `, test accuracy ${(100 * e.valAccuracy).toFixed(2)}%` : '';
        process.stderr.write(`epoch ${e.epoch}: loss ${e.loss.toFixed(4)}${val} (${e.seconds.toFixed(2)} s)\n`);
      },
    });
    if (model.backend !== 'cpu' && model.backendInfo().placement !== model.backend)
      process.stderr.write(`oneforward: trained on ${model.backendInfo().placement}\n`);
    if (o.save) (await model.save(o.save), process.stderr.write(`oneforward: saved ${o.save}\n`));
    if (o.report) {
      writeReport(
        {
          title: `oneforward train: ${o.estimator}`,
          subtitle: `${shape}, ${o.optimizer}, batch ${o.batch}, seed ${o.seed}`,
          runs: [{ name: o.estimator === 'ulr' ? `ulr K=${o.copies}` : 'bp', epochs: history.epochs }],
        },
        o.report,
      );
      process.stderr.write(`oneforward: report written to ${o.report}\n`);
    }
    const last = history.epochs[history.epochs.length - 1];
    if (o.json) process.stdout.write(JSON.stringify(history) + '\n');
    else if (test && last?.valAccuracy !== undefined)
      process.stdout.write(`test accuracy: ${(100 * last.valAccuracy).toFixed(2)}%\n`);
    return 0;
  } catch (err) {
    bar?.stop();
    if (err instanceof of.AbortError) {
      // The model keeps its last completed step; with --save it is kept on disk and `train --resume` continues it.
      if (o.save) (await model.save(o.save), process.stderr.write(`oneforward: interrupted; saved ${o.save}\n`));
      else process.stderr.write('oneforward: interrupted\n');
      return 130;
    }
    throw err;
  } finally {
    process.off('SIGINT', onSigint);
    model.dispose();
  }
}

async function report(o: { out: string; epochs: number; copies: number }): Promise<number> {
  checkWritable('--out', o.out);
  const { train, test } = of.datasets.digits();
  const runs: { name: string; epochs: of.EpochLog[] }[] = [];
  for (const [name, estimator] of [
    ['bp', of.bp()],
    [`ulr K=${o.copies}`, of.ulr({ copies: o.copies })],
  ] as const) {
    process.stderr.write(`oneforward: training ${name} (${o.epochs} epochs)\n`);
    const m = of.sequential(of.mlp([784, 256, 10]), { seed: 1 });
    runs.push({
      name,
      epochs: (
        await m.fit(train, {
          estimator,
          optimizer: of.adam({ lr: 1e-3 }),
          epochs: o.epochs,
          batchSize: 64,
          validation: test,
        })
      ).epochs,
    });
    m.dispose();
  }
  // Gradient variance vs K on one fixed batch: 20 estimates per K, total variance over all parameters.
  process.stderr.write('oneforward: measuring gradient variance vs copies\n');
  const m = of.sequential(of.mlp([784, 256, 10]), { seed: 1 });
  const batch = { x: train.x.subarray(0, 64 * 784), y: train.y.subarray(0, 64) };
  const variance = [4, 8, 16, 32, 64].map((copies) => {
    const est = Array.from({ length: 20 }, (_, step) => m.gradients(batch, { estimator: of.ulr({ copies }), step }));
    let total = 0;
    est[0]!.forEach((g, p) => {
      for (let i = 0; i < g.length; i++) {
        let mean = 0;
        for (const e of est) mean += e[p]![i]! / est.length;
        for (const e of est) total += (e[p]![i]! - mean) ** 2 / (est.length - 1);
      }
    });
    return { copies, variance: total };
  });
  m.dispose();
  writeReport(
    {
      title: 'oneforward: ULR vs BP on digits',
      subtitle: `MLP 784-256-10, Adam 1e-3, batch 64, seed 1, ${o.epochs} epochs; variance from 20 estimates per K on one batch of 64`,
      runs,
      variance,
    },
    o.out,
  );
  process.stdout.write(`report written to ${o.out}\n`);
  return 0;
}

/**
 * The suites of `oneforward bench` and `npm run bench` (bench/run.ts implements one per name): what each
 * measures, and whether a run that names no suite includes it.
 */
export const benchSuites = [
  {
    name: 'cpu-digits',
    byDefault: true,
    about: 'digits MLP: BP and ULR K = 8-128 on this engine, numpy BP as the outside reference',
  },
  {
    name: 'server',
    byDefault: true,
    about: 'the Fastify example: predict latency and event-loop delay while ULR jobs train',
  },
  { name: 'fuzz', byDefault: true, about: 'the hardening test with 10,000 fuzz iterations' },
  {
    name: 'stress',
    byDefault: false,
    about: '1,000 random interleavings of fit, async calls, JS losses, abort, dispose and worker terminate',
  },
  {
    name: 'adversarial',
    byDefault: false,
    about: 'hostile arguments, the fuzz and corrupted files at large counts over several seeds',
  },
  {
    name: 'estimators',
    byDefault: true,
    about: 'gradient quality per ULR option and K; BP, ULR, SPSA and ES training',
  },
  {
    name: 'paper',
    byDefault: true,
    about: "the paper's claims: flow arrangements, architectures, fine-tuning, robustness",
  },
  {
    name: 'finetune',
    byDefault: false,
    about: 'pretrain with BP on digits 0-4, fine-tune on 5-9 (also part of paper)',
  },
  {
    name: 'architectures',
    byDefault: false,
    about: 'CNN, recurrent, spiking, step-activation, residual and graph models (also part of paper)',
  },
  {
    name: 'arch-options',
    byDefault: false,
    about: 'ULR options (layer-wise, QMC, per-channel sigma, auto copies) on the CNN, residual CNN and recurrent net',
  },
  {
    name: 'distributed',
    byDefault: false,
    about: 'compute and all-reduce per step under mpirun with 1 and 2 ranks (needs MPI)',
  },
  { name: 'gpu', byDefault: false, about: 'the CUDA backend against a PyTorch reference (needs an NVIDIA GPU)' },
  {
    name: 'speed',
    byDefault: false,
    about:
      'ms per step and GFLOP/s of BP and ULR K=32 (MLP, CNN, recurrent net, residual CNN) against PyTorch; normals/s',
  },
  {
    name: 'robustness',
    byDefault: false,
    about:
      'attacks on ULR models vs BP twins of equal accuracy and BP trained with the same noise (also part of paper)',
  },
  {
    name: 'transformer',
    byDefault: false,
    about: 'character-level GPT: BP step vs PyTorch, BP/ULR/SPSA training curves, fine-tuning with adapters, samples',
  },
] as const;

/** A name from {@link benchSuites}. */
export type BenchSuiteName = (typeof benchSuites)[number]['name'];

/** Runs the CLI with `argv` (as process.argv). Resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const { version } = JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', '..', 'package.json'), 'utf8')) as {
    version: string;
  };
  const program = new Command('oneforward')
    .description('Train neural networks with forward passes only (ULR) or backprop')
    .version(version, '-V, --version');
  let code = 0;
  program
    .command('train')
    .description('train an MLP and report test accuracy')
    .option('--dataset <name>', 'shipped data set', 'digits')
    .option('--idx <files>', 'IDX files: images,labels[,testImages,testLabels]')
    .option('--csv <files>', 'CSV files (label in column 0): train[,test]')
    .option('--layers <widths>', 'layer widths, e.g. 784-256-10 (default: features-256-classes)')
    .option('--activation <name>', 'hidden activation', 'relu')
    .option('--estimator <name>', 'ulr, bp, spsa or es', 'ulr')
    .option('--copies <K>', 'ULR copies per sample', int('copies'), 32)
    .option('--sigma <s>', 'ULR noise scale', num('sigma'), 0.1)
    .option('--antithetic', 'ULR copies in antithetic pairs', false)
    .option('--injection <mode>', 'ULR noise injection: all or layerwise', 'all')
    .option('--noise <density>', 'ULR noise density: normal, laplace or logistic', 'normal')
    .option('--baseline <kind>', 'ULR baseline: loo, clean, running, mean or none', 'loo')
    .option('--precision <p>', "ULR copies' products: float32 or bf16", 'float32')
    .option('--optimizer <name>', 'sgd, adam or adamw', 'adam')
    .option('--lr <rate>', 'learning rate', num('lr'))
    .option('--epochs <n>', 'epochs (with --resume: the total to reach, counting those done)', int('epochs'), 5)
    .option('--batch <n>', 'batch size', int('batch'), 64)
    .option('--seed <n>', 'seed', int('seed'), 1)
    .option('--threads <n>', 'native threads', int('threads'))
    .option('--backend <name>', 'auto, cpu or cuda (default: $ONEFORWARD_BACKEND, else auto)')
    .option('--no-progress', 'no progress bar')
    .option('--json', 'print the history as JSON', false)
    .option('--save <file>', 'save the trained model (also on Ctrl-C)')
    .option('--report <file>', 'write an HTML report of the run')
    .option(
      '--resume <checkpoint>',
      'continue the training saved in this checkpoint (train --save), bit-identical to an uninterrupted run with the same options',
    )
    .action(async (o: TrainOpts) => {
      code = await train(o);
    });
  program
    .command('eval')
    .description('evaluate a saved model on a data set')
    .requiredOption('--model <file>', 'checkpoint written by train --save or model.save()')
    .option('--dataset <name>', 'shipped data set (its test split)', 'digits')
    .option('--idx <files>', 'IDX files: images,labels')
    .option('--csv <file>', 'CSV file (label in column 0)')
    .action(async (o: { model: string; dataset: string; idx?: string; csv?: string }) => {
      const model = await of.load(o.model);
      const sets = loadData(o);
      const data = o.idx || o.csv ? sets.train : sets.test!;
      const r = model.evaluate(data);
      process.stdout.write(
        `loss ${r.loss.toFixed(4)}, accuracy ${(100 * r.accuracy).toFixed(2)}% on ${data.rows} rows\n`,
      );
      model.dispose();
    });
  program
    .command('report')
    .description('train BP and ULR side by side on digits, measure ULR gradient variance vs K, write an HTML report')
    .option('--out <file>', 'output HTML file', 'oneforward-report.html')
    .option('--epochs <n>', 'epochs per run', int('epochs'), 3)
    .option('--copies <K>', 'ULR copies', int('copies'), 32)
    .action(async (o: { out: string; epochs: number; copies: number }) => {
      code = await report(o);
    });
  const suiteList = benchSuites.map((x) => `  ${x.byDefault ? '*' : ' '} ${x.name.padEnd(15)}${x.about}`).join('\n');
  program
    .command('bench')
    .description('run the benchmark suites from a source checkout, each case in its own process')
    .addArgument(
      new Argument('[suites...]', 'suites to run (default: those marked *)').choices(benchSuites.map((x) => x.name)),
    )
    .option(
      '--out <dir>',
      'write the results (JSON and markdown) into this folder (default: a new temporary folder, printed)',
    )
    .option('--update', 'write the results into bench/results/ and bench/paper/, replacing the numbers the docs quote')
    .option('--report <file>', 'also write an HTML report of the cpu-digits and estimators runs')
    .addHelpText('after', `\nSuites (* = run when none is named):\n${suiteList}\n`)
    .action(async (suites: string[], o: { out?: string; update?: boolean; report?: string }) => {
      const runner = path.resolve(__dirname, '..', 'bench', 'run.js');
      if (!fs.existsSync(runner))
        throw new of.ConfigError('bench needs a source checkout of oneforward (npm run build there first)');
      if (o.update && o.out) throw new of.ConfigError('--update writes to bench/results/; leave out --out');
      const args = [
        ...suites,
        ...(o.update ? ['--update'] : []),
        ...(o.out ? ['--out', o.out] : []),
        ...(o.report ? ['--report', o.report] : []),
      ];
      const r = spawnSync(process.execPath, [runner, ...args], { stdio: 'inherit' });
      code = r.status ?? 1;
    });
  program
    .command('rebuild')
    .description('build the native addon from source again, looking for CUDA (nvcc) and MPI anew')
    .action(() => {
      const r = spawnSync(
        process.execPath,
        [path.resolve(__dirname, '..', '..', 'scripts', 'install.js'), '--rebuild'],
        { stdio: 'inherit' },
      );
      code = r.status ?? 1;
    });
  program
    .command('info')
    .description('backend, threads, SIMD level')
    .action(() => {
      process.stdout.write(JSON.stringify(of.backend.info(), null, 2) + '\n');
    });
  try {
    await program.parseAsync(argv);
  } catch (err) {
    const e = err as Error & { code?: string };
    process.stderr.write(`oneforward: ${e.code ? `[${e.code}] ` : ''}${e.message}\n`);
    return 1;
  }
  return code;
}
