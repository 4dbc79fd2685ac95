// Hardening: a seeded fuzz over configs and inputs (random shapes, NaN/Inf, wrong types, extreme
// hyper-parameters; half of the models on the host simulation of a device) where every failure must be a typed
// OneForwardError and nothing crashes; repeated
// start/cancel cycles must not grow memory; a process killed mid-save must leave the old checkpoint loadable.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawn } from 'child_process';
import * as of from '../lib/index';

// ONEFORWARD_FUZZ iterations from seed ONEFORWARD_FUZZ_SEED (`npm run bench -- fuzz` and `adversarial` run more).
const FUZZ = Number(process.env.ONEFORWARD_FUZZ ?? 2000);
const FUZZ_SEED = Number(process.env.ONEFORWARD_FUZZ_SEED ?? 2026);

function rng(seed: number) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

t.test(
  `fuzz: ${FUZZ} random configs and inputs (seed ${FUZZ_SEED}), every failure typed`,
  { timeout: 900000 },
  async (t) => {
    const r = rng(FUZZ_SEED);
    const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
    const weird = [
      NaN,
      Infinity,
      -Infinity,
      -1,
      0,
      1e30,
      -1e-30,
      0.5,
      3,
      1 << 20,
      '4',
      null,
      undefined,
      {},
      [2],
    ] as const;
    const num = (good: () => number) => (r() < 0.8 ? good() : pick(weird));
    let ok = 0,
      typed = 0;
    const codes = new Map<string, number>();
    for (let i = 0; i < FUZZ; i++) {
      try {
        const inputs = num(() => 1 + Math.floor(r() * 6)) as number;
        const hidden = num(() => 1 + Math.floor(r() * 7)) as number;
        const classes = num(() => 2 + Math.floor(r() * 3)) as number;
        const act = r() < 0.9 ? pick(of.ACTIVATIONS) : pick(['swish', '', 7]);
        const loss = r() < 0.8 ? 'crossEntropy' : pick(['mse', 'hinge', 3]);
        // every other case on the host simulation of a device: the device trainer meets the same inputs
        const model = of.sequential(
          [of.dense(inputs, hidden), of.activation(act as of.ActivationName), of.dense(hidden, classes)],
          {
            seed: num(() => Math.floor(r() * 1000)) as number,
            loss: loss as of.LossName,
            backend: i % 2 ? 'sim' : 'cpu',
          },
        );
        try {
          const rows = r() < 0.9 ? 1 + Math.floor(r() * 5) : pick([0, -1, 2.5]);
          const xl = r() < 0.9 ? rows * inputs : Math.floor(r() * 20);
          const x = new Float32Array(Math.max(0, xl)).map(() => (r() < 0.03 ? pick([NaN, Infinity]) : r() * 4 - 2));
          const y =
            model.loss === 'crossEntropy'
              ? Int32Array.from({ length: Math.max(0, rows) }, () =>
                  r() < 0.95 ? Math.floor(r() * classes) : pick([-1, classes, 99]),
                )
              : new Float32Array(Math.max(0, rows * classes)).map(() => r());
          // ULR sometimes with layer-wise injection (copies 'auto', blocks), local modules (pipelined), QMC noise or bf16:
          // the device's paths for them meet the same inputs (invalid combinations are ERR_CONFIG)
          const flow = r();
          const extra =
            flow < 0.12
              ? {
                  injection: 'layerwise',
                  ...(r() < 0.3 ? { copies: 'auto' } : {}),
                  ...(r() < 0.3 ? { blocks: [2] } : {}),
                }
              : flow < 0.24
                ? {
                    modules: pick([
                      [
                        [0, 1],
                        [1, 2],
                      ],
                      [[0, 2]],
                    ]),
                    pipeline: r() < 0.5,
                  }
                : flow < 0.3
                  ? { qmc: true }
                  : flow < 0.36
                    ? { precision: 'bf16' } // the CPU's bfloat16 copies (the device refuses them)
                    : {};
          const est =
            r() < 0.3
              ? of.bp()
              : of.ulr({
                  copies: num(() => 2 * (1 + Math.floor(r() * 4))) as number,
                  sigma: num(() => 0.01 + r()) as number,
                  antithetic: r() < 0.5,
                  baseline: pick(of.BASELINES),
                  sharedPrefix: r() < 0.7,
                  storeNoise: r() < 0.7,
                  ...extra,
                } as of.UlrOptions);
          const opt = pick([of.sgd, of.adam, of.adamw])({
            lr: num(() => 1e-3 + r() * 0.1) as number,
            clipNorm: r() < 0.2 ? r() : 0,
          });
          const data = { x, y, rows: rows as number, shape: [inputs] };
          switch (Math.floor(r() * 5)) {
            case 0:
              model.gradients({ x, y, rows: rows as number }, { estimator: est, step: Math.floor(r() * 100) });
              break;
            case 1:
              model.trainStep({ x, y, rows: rows as number }, { estimator: est, optimizer: opt });
              break;
            case 2:
              model.predict(x, rows as number);
              break;
            case 3:
              model.evaluate(data);
              break;
            default:
              await model.fit(data, {
                estimator: est,
                optimizer: opt,
                epochs: 2,
                batchSize: num(() => 1 + Math.floor(r() * 4)) as number,
              });
          }
          ok++;
        } finally {
          model.dispose();
        }
      } catch (err) {
        if (!(err instanceof of.OneForwardError) || !of.ERROR_CODES.includes(err.code)) {
          t.fail(`iteration ${i}: untyped error ${String((err as Error)?.stack ?? err)}`);
          return;
        }
        typed++;
        codes.set(err.code, (codes.get(err.code) ?? 0) + 1);
      }
    }
    t.equal(
      ok + typed,
      FUZZ,
      `${ok} calls succeeded, ${typed} failed with typed errors (${[...codes].map(([c, n]) => `${c} ${n}`).join(', ')})`,
    );
    t.ok(ok > FUZZ / 10 && typed > FUZZ / 10, 'the fuzz exercises both paths');
  },
);

// Under AddressSanitizer (npm run test:asan) freed memory waits in its quarantine, so RSS says nothing there.
const asan = /libasan/.test(process.env.LD_PRELOAD ?? '');
t.test(
  '500 start/cancel cycles: no memory growth',
  { skip: asan && 'RSS under AddressSanitizer includes its quarantine of freed memory' },
  async (t) => {
    const { train } = of.datasets.digits();
    const small = of.data.take(
      train,
      Array.from({ length: 256 }, (_, i) => i * 31),
    );
    const model = of.sequential([of.dense(784, 32), of.relu(), of.dense(32, 10)], { seed: 1 });
    const cycle = async () => {
      const ac = new AbortController();
      const p = model.fit(small, { estimator: of.ulr({ copies: 8 }), epochs: 1000, batchSize: 32, signal: ac.signal });
      setImmediate(() => ac.abort());
      await p.catch((e) => {
        if (!(e instanceof of.AbortError)) throw e;
      });
    };
    for (let i = 0; i < 50; i++) await cycle();
    global.gc?.();
    const before = process.memoryUsage().rss;
    for (let i = 0; i < 500; i++) await cycle();
    global.gc?.();
    const after = process.memoryUsage().rss;
    const growth = (after - before) / before;
    t.ok(
      growth < 0.05,
      `RSS ${(before / 2 ** 20).toFixed(1)} -> ${(after / 2 ** 20).toFixed(1)} MiB over 500 cycles (${(100 * growth).toFixed(2)}%)`,
    );
    model.dispose();
  },
);

t.test('a process killed (SIGKILL) while saving leaves the previous checkpoint loadable', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-kill-'));
  const file = path.join(dir, 'model.ofm');
  const script = `
    const of = require(${JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'))});
    const m = of.sequential([of.dense(784, 1024), of.relu(), of.dense(1024, 10)], { seed: 1 });
    (async () => {
      await m.save(process.argv[1]);
      process.stdout.write('saved\\n');
      for (let i = 0; ; i++) { m.parameters()[1].data[0] = i; await m.save(process.argv[1]); }
    })();`;
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, ['-e', script, file], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
    await new Promise((r) => setTimeout(r, 50 + 70 * round));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    const m = await of.load(file);
    t.equal(
      m.parameterCount,
      784 * 1024 + 1024 + 1024 * 10 + 10,
      `round ${round}: the checkpoint loads after SIGKILL mid-save loop`,
    );
    m.dispose();
  }
  fs.rmSync(dir, { recursive: true, force: true });
});
