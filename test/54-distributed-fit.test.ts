// model.fit's `distributed` option with an in-process communicator standing in for MPI: every rank runs fit's own
// loop. One rank trains bit for bit as fit without the option; R ranks take the batches in the single-process order,
// so they end where one process ends up to the order of the float sums. Cancels, errors, refusals and checkpoints
// stop or fail every rank alike. (test/52: the data-parallel, copy-parallel and seed-replay building blocks.)
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';
import { inProcess } from './helpers/communicators';

const { train } = of.datasets.digits();
const batches = [0, 1, 2, 3, 4].map((s) =>
  of.data.take(train, Array.from(of.data.permutation(train.rows, 40 + s).subarray(0, 24))),
);
const maxAbs = (a: ArrayLike<number>, b: ArrayLike<number>) =>
  Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

// model.fit's `distributed` option: every rank runs fit's own loop (in-process ranks train concurrently, each on
// its own native thread). One rank trains bit for bit as fit without the option; R ranks take the batches in the
// single-process order, so they end where one process ends up to the order of the float sums.
const fitData = of.data.take(
  train,
  Array.from({ length: 200 }, (_, i) => i * 7),
);
const fitNet = () => of.sequential([of.dense(784, 32), of.relu(), of.dropout(0.1), of.dense(32, 10)], { seed: 5 });
const params = (m: of.Model) => Float32Array.from(m.parameters().flatMap((p) => Array.from(p.data)));
const bitsEqual = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
const fitOpts = (estimator: of.Estimator): of.FitOptions => ({
  estimator,
  epochs: 2,
  batchSize: 32,
  optimizer: of.adam({ lr: 1e-3 }),
});
// Trains `size` replicas of fitNet() with `options` (plus the option) on in-process ranks; settles every rank.
async function fitRanks(
  size: number,
  options: of.FitOptions,
  mode?: of.DistributedMode,
  perRank?: (rank: number, model: of.Model) => of.FitOptions,
) {
  const models = Array.from({ length: size }, fitNet);
  const comms = inProcess(size);
  const results = await Promise.allSettled(
    models.map((m, r) =>
      m.fit(fitData, {
        ...options,
        ...perRank?.(r, m),
        distributed: { communicator: comms[r]!, ...(mode ? { mode } : {}) },
      }),
    ),
  );
  return { models, comms, results };
}

t.test('model.fit with one rank = model.fit, bit for bit after 2 epochs (bp, ulr, spsa)', async (t) => {
  for (const [name, estimator] of [
    ['bp', of.bp()],
    ['ulr K=8', of.ulr({ copies: 8 })],
    ['spsa', of.spsa({ perturbations: 6 })],
  ] as const) {
    const single = fitNet();
    const want = await single.fit(fitData, fitOpts(estimator));
    const one = fitNet();
    let calls = 0;
    const got = await one.fit(fitData, {
      ...fitOpts(estimator),
      distributed: { communicator: { rank: 0, size: 1, allreduceSum: () => void calls++ } },
    });
    t.ok(bitsEqual(params(one), params(single)), `${name}: the parameters are equal as Float32Arrays`);
    // on a device one rank trains as fit without the option (native/model/train.cpp): no all-reduce at all
    t.equal(
      calls,
      one.backend === 'cpu' ? 1 + 2 * 7 : 0,
      `${name}: the communicator ran the handshake and one all-reduce per step (14 steps) on the CPU`,
    );
    t.ok(
      got.history.loss.every((l, i) => Math.abs(l - want.history.loss[i]!) <= 1e-12 * want.history.loss[i]!),
      `${name}: the epoch losses agree (rel 1e-12: they travel as two floats)`,
    );
    t.equal(one.step, single.step, `${name}: step counters agree`);
    (single.dispose(), one.dispose());
  }
});

t.test('R ranks of model.fit = one process (the single-process batch order)', async (t) => {
  // data: max abs parameter diff <= 1e-5 after 14 Adam steps (measured <= 3e-7: only the order of float sums
  // differs); seeds: bit for bit; copies: <= 1e-5
  for (const [name, estimator, mode] of [
    ['bp', of.bp(), 'data'],
    ['ulr K=8', of.ulr({ copies: 8 }), 'data'],
    ['spsa', of.spsa({ perturbations: 6 }), 'seeds'],
    ['ulr K=8 copies', of.ulr({ copies: 8 }), 'copies'],
  ] as const) {
    const single = fitNet();
    const want = await single.fit(fitData, fitOpts(estimator));
    for (const size of [2, 3]) {
      if (mode === 'copies' && size === 3) continue;
      const { models, results } = await fitRanks(size, fitOpts(estimator), mode);
      t.ok(
        results.every((r) => r.status === 'fulfilled'),
        `${name}, ${size} ranks: every rank resolves`,
      );
      const got = models.map(params);
      const d = maxAbs(got[0]!, params(single));
      if (mode === 'seeds') t.ok(d === 0, `${name}, ${size} ranks: equal to one process bit for bit`);
      else t.ok(d <= 1e-5, `${name}, ${size} ranks: max abs parameter diff ${d.toExponential(2)} <= 1e-5`);
      t.ok(
        got.every((g) => bitsEqual(g, got[0]!)),
        `${name}, ${size} ranks: replicas bit-identical`,
      );
      const h = (results[1] as PromiseFulfilledResult<of.History>).value;
      const dl = maxAbs(h.history.loss, want.history.loss);
      t.ok(
        dl <= 1e-5,
        `${name}, ${size} ranks: every rank reports the whole batches' epoch losses (diff ${dl.toExponential(2)})`,
      );
      models.forEach((m) => m.dispose());
    }
    single.dispose();
  }
});

t.test(
  "fit's options work distributed: validation, onBatchEnd, lr schedule, early stopping, checkpoints and resume",
  async (t) => {
    const validation = of.data.take(
      train,
      Array.from({ length: 100 }, (_, i) => 3000 + i * 11),
    );
    const schedule = of.schedules.cosine({ steps: 28, warmup: 3 });
    const options = (batches: of.BatchLog[]): of.FitOptions => ({
      ...fitOpts(of.ulr({ copies: 8 })),
      epochs: 4,
      optimizer: of.adam({ lr: 2e-3, schedule }),
      validation,
      onBatchEnd: (b) => void batches.push(b),
      earlyStopping: { monitor: 'valLoss', patience: 0, minDelta: 0.3 },
    });
    const single = fitNet(),
      singleBatches: of.BatchLog[] = [];
    const want = await single.fit(fitData, options(singleBatches));
    t.ok(
      want.stoppedEpoch !== undefined && want.stoppedEpoch < 4,
      `one process stops early, after epoch ${want.stoppedEpoch}`,
    );
    const batches: of.BatchLog[][] = [[], []];
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-dfit-'));
    const file = path.join(dir, 'epoch1.ofm');
    const { models, results } = await fitRanks(2, options([]), undefined, (r, m) => ({
      ...options(batches[r]!),
      onEpochEnd: (e) => (r === 0 && e.epoch === 1 ? m.save(file) : undefined),
    }));
    const hs = results.map((r) => (r as PromiseFulfilledResult<of.History>).value);
    t.ok(
      hs.every((h) => h.stoppedEpoch === want.stoppedEpoch),
      `every rank stops after epoch ${want.stoppedEpoch}, as one process`,
    );
    t.same(
      batches[0]!.map((b) => [b.epoch, b.batch, b.lr]),
      singleBatches.map((b) => [b.epoch, b.batch, b.lr]),
      "onBatchEnd: one call per step, in order, at one process's scheduled rates",
    );
    t.same(batches[1], batches[0], 'and the same numbers on every rank');
    const dl = maxAbs(
      batches[0]!.map((b) => b.loss),
      singleBatches.map((b) => b.loss),
    );
    t.ok(dl <= 1e-5, `each call has the whole batch's loss (max diff to one process ${dl.toExponential(2)})`);
    t.same(hs[1]!.history.valLoss, hs[0]!.history.valLoss, 'every rank validates, with the same result');
    const dv = maxAbs(hs[0]!.history.valLoss, want.history.valLoss);
    t.ok(dv <= 1e-5, `validation as one process (max diff ${dv.toExponential(2)})`);
    // resume from the checkpoint rank 0 wrote in onEpochEnd: every rank loads it and ends where the run above ended
    const loaded = [await of.load(file), await of.load(file)];
    t.equal(loaded[0]!.epochsRun, 1, 'the checkpoint holds epoch 1');
    const comms = inProcess(2);
    await Promise.all(
      loaded.map((m, r) =>
        m.fit(fitData, {
          ...options([]),
          epochs: 2,
          earlyStopping: undefined,
          resume: true,
          distributed: { communicator: comms[r]! },
        }),
      ),
    );
    t.ok(
      loaded.every((m) => bitsEqual(params(m), params(models[0]!))),
      'resumed ranks end bit for bit where the uninterrupted run ended (epoch 2)',
    );
    [single, ...models, ...loaded].forEach((m) => m.dispose());
    fs.rmSync(dir, { recursive: true, force: true });
  },
);

t.test('a cancel or an error on one rank stops every rank at the same step', async (t) => {
  const ac = new AbortController();
  const cancelled = await fitRanks(2, fitOpts(of.bp()), undefined, (r) =>
    r === 0
      ? {
          signal: ac.signal,
          onBatchEnd: (b) => {
            if (b.batch === 3) ac.abort();
          },
        }
      : {},
  );
  t.match(
    cancelled.results[0],
    { status: 'rejected', reason: { name: 'AbortError', message: /cancelled/ } },
    'the cancelled rank rejects with an AbortError',
  );
  t.match(
    cancelled.results[1],
    { status: 'rejected', reason: { name: 'AbortError', message: /another rank/ } },
    'the other rank too, saying why',
  );
  const [a, b] = cancelled.models;
  t.ok(
    a!.step >= 3 && a!.step === b!.step && bitsEqual(params(a!), params(b!)),
    `both stopped after step ${a!.step}, with the same parameters`,
  );
  t.ok((await a!.fit(fitData, { epochs: 1 })).epochs.length === 1, 'and the model trains again');

  const boom = new Error('boom');
  const failed = await fitRanks(2, fitOpts(of.ulr({ copies: 8 })), undefined, (r) =>
    r === 1
      ? {
          onBatchEnd: (b) => {
            if (b.batch === 2) throw boom;
          },
        }
      : {},
  );
  t.match(
    failed.results[1],
    { status: 'rejected', reason: boom },
    'the failing rank rejects with what its callback threw, as is',
  );
  t.match(
    failed.results[0],
    { status: 'rejected', reason: { name: 'AbortError', message: /another rank/ } },
    'the other rank with an AbortError',
  );
  t.equal(failed.models[0]!.step, failed.models[1]!.step, 'at the same step');
  [...cancelled.models, ...failed.models].forEach((m) => m.dispose());
});

t.test('ranks that would diverge or wait forever fail at the start, on every rank', async (t) => {
  const fewer = await fitRanks(2, fitOpts(of.bp()), undefined, (r) => (r === 1 ? { validationSplit: 0.01 } : {}));
  for (const r of fewer.results)
    t.match(
      r,
      { status: 'rejected', reason: { code: 'ERR_CONFIG', message: /training rows/ } },
      'a different data set size: ERR_CONFIG',
    );
  const models = [
    fitNet(),
    of.sequential([of.dense(784, 32), of.relu(), of.dropout(0.1), of.dense(32, 10)], { seed: 6 }),
  ];
  const comms = inProcess(2);
  const seeds = await Promise.allSettled(
    models.map((m, r) => m.fit(fitData, { ...fitOpts(of.bp()), distributed: { communicator: comms[r]! } })),
  );
  for (const r of seeds)
    t.match(r, { status: 'rejected', reason: { code: 'ERR_CONFIG', message: /seed/ } }, 'another seed: ERR_CONFIG');
  const same = inProcess(2);
  const twice = await Promise.allSettled(
    models.map((m, r) =>
      m.fit(fitData, {
        ...fitOpts(of.bp()),
        distributed: { communicator: { ...same[r]!, rank: 0, allreduceSum: (v) => same[r]!.allreduceSum(v) } },
      }),
    ),
  );
  for (const r of twice)
    t.match(
      r,
      { status: 'rejected', reason: { code: 'ERR_CONFIG', message: /rank/ } },
      'two ranks calling themselves rank 0: ERR_CONFIG',
    );
  t.ok(
    [...fewer.models, ...models].every((m) => m.step === 0),
    'no step was taken',
  );
  [...fewer.models, ...models].forEach((m) => m.dispose());
});

t.test(
  'what does not train distributed is a typed error naming it; a failing communicator is ERR_BACKEND',
  async (t) => {
    const m = fitNet();
    const one = { rank: 0, size: 1, allreduceSum: () => undefined };
    const fit = (options: of.FitOptions, model = m) => model.fit(fitData, { epochs: 1, ...options });
    const config = (message: RegExp) => ({ name: 'ConfigError', code: 'ERR_CONFIG', message });
    for (const [what, options, message] of [
      [
        "mode 'copies' with bp()",
        { estimator: of.bp(), distributed: { communicator: one, mode: 'copies' } },
        /needs ulr/,
      ],
      [
        "mode 'data' with spsa()",
        { estimator: of.spsa(), distributed: { communicator: one, mode: 'data' } },
        /mode 'seeds'/,
      ],
      ["mode 'seeds' with ulr()", { distributed: { communicator: one, mode: 'seeds' } }, /needs spsa\(\) or es\(\)/],
      [
        'layer-wise ULR',
        { estimator: of.ulr({ injection: 'layerwise' }), distributed: { communicator: one } },
        /injection 'all'/,
      ],
      ['learnSigma', { estimator: of.ulr({ learnSigma: {} }), distributed: { communicator: one } }, /learnSigma/],
      [
        "the 'running' baseline",
        { estimator: of.ulr({ baseline: 'running' }), distributed: { communicator: one } },
        /running/,
      ],
      [
        "a loss function with mode 'copies'",
        {
          loss: (o: Float32Array, _: unknown, rows: number) => new Float32Array(rows),
          distributed: { communicator: one, mode: 'copies' },
        },
        /loss function/,
      ],
      [
        "maxGradNorm with mode 'seeds'",
        { estimator: of.spsa(), maxGradNorm: 1, distributed: { communicator: one } },
        /maxGradNorm/,
      ],
      [
        '3 ranks of 4 copies',
        {
          estimator: of.ulr({ copies: 4 }),
          distributed: { communicator: { ...one, rank: 0, size: 3 }, mode: 'copies' },
        },
        /at least 2 copies/,
      ],
      ['an unknown mode', { distributed: { communicator: one, mode: 'pipeline' } }, /distributed.mode/],
      ['no communicator', { distributed: {} }, /distributed.communicator/],
      ['a communicator without allreduceSum', { distributed: { communicator: { rank: 0, size: 1 } } }, /allreduceSum/],
      ['a rank outside the size', { distributed: { communicator: { ...one, rank: 1 } } }, /rank/],
      ['a misspelled option', { distributed: { communicator: one, mdoe: 'data' } }, /Unknown option 'mdoe'/],
    ] as [string, of.FitOptions, RegExp][]) {
      await t.rejects(fit(options), config(message), what);
    }
    const bn = () => of.sequential([of.dense(784, 16), of.batchNorm(), of.relu(), of.dense(16, 10)], { seed: 1 });
    const bns = [bn(), bn()],
      comms = inProcess(2);
    const bnResults = await Promise.allSettled(
      bns.map((b, r) => fit({ estimator: of.bp(), distributed: { communicator: comms[r]! } }, b)),
    );
    for (const r of bnResults) t.match(r, { status: 'rejected', reason: config(/batchNorm/) }, 'batchNorm on 2 ranks');
    await fit({ estimator: of.bp(), distributed: { communicator: one } }, bns[0]);
    t.pass('batchNorm on one rank trains');
    // two ranks, each failing in its first all-reduce (the handshake)
    const pair = [fitNet(), fitNet()];
    for (const value of ['a string', new TypeError('plain')]) {
      for (const [how, allreduceSum] of [
        [
          'throws',
          () => {
            throw value;
          },
        ],
        ['rejects with', () => Promise.reject(value)],
      ] as const) {
        const results = await Promise.allSettled(
          pair.map((p, rank) => fit({ distributed: { communicator: { rank, size: 2, allreduceSum } } }, p)),
        );
        for (const r of results)
          t.match(
            r,
            {
              status: 'rejected',
              reason: { name: 'BackendError', code: 'ERR_BACKEND', message: /allreduceSum failed/, cause: value },
            },
            `a communicator that ${how} ${String(value)}`,
          );
      }
    }
    t.ok(
      [m, ...pair].every((x) => x.step === 0),
      'no step was taken',
    );
    t.throws(
      () =>
        of.distributed.dataParallelStep(m, batches[0]!, {
          comm: { ...one, allreduceSum: () => Promise.resolve() },
          estimator: of.bp(),
        }),
      config(/synchronous/),
      'the single steps refuse an asynchronous all-reduce',
    );
    [m, ...pair, ...bns].forEach((x) => x.dispose());
  },
);

t.test(
  'of.distributed.fit is model.fit with the option; rank 0 validates, reports and writes the checkpoints',
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-dfit-'));
    const file = path.join(dir, 'ckpt.ofm');
    const validation = of.data.take(
      train,
      Array.from({ length: 100 }, (_, i) => 3000 + i * 11),
    );
    const viaFit = await fitRanks(2, fitOpts(of.ulr({ copies: 8 })));
    const models = [fitNet(), fitNet()],
      comms = inProcess(2),
      seen: number[][] = [[], []];
    const hs = await Promise.all(
      models.map((m, r) =>
        of.distributed.fit(m, fitData, {
          comm: comms[r]!,
          estimator: of.ulr({ copies: 8 }),
          epochs: 2,
          batchSize: 32,
          optimizer: of.adam({ lr: 1e-3 }),
          validation,
          checkpoint: file,
          onEpochEnd: (e) => void seen[r]!.push(e.epoch),
          onBatchEnd: (b) => void seen[r]!.push(b.batch),
        }),
      ),
    );
    t.ok(
      models.every((m) => bitsEqual(params(m), params(viaFit.models[0]!))),
      'the same parameters as model.fit with the option, bit for bit',
    );
    t.same(seen, [[1, 2, 3, 4, 5, 6, 7, 1, 1, 2, 3, 4, 5, 6, 7, 2], []], 'onBatchEnd and onEpochEnd on rank 0 only');
    t.ok(
      hs[0]!.epochs.every((e) => e.valLoss !== undefined) && hs[1]!.epochs.every((e) => e.valLoss === undefined),
      'validation on rank 0 only',
    );
    const back = await of.load(file);
    t.ok(
      bitsEqual(params(back), params(models[1]!)) && back.epochsRun === 2,
      "the checkpoint holds the last epoch's parameters",
    );
    [...models, ...viaFit.models, back].forEach((m) => m.dispose());
    fs.rmSync(dir, { recursive: true, force: true });
  },
);
