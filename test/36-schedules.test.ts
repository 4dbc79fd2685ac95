// Learning-rate schedules and fit's onBatchEnd. The engine's lr(t) (reported per batch) against the closed forms
// written out here; fit with a schedule against trainStep at each step's rate (bit-identical: the same float
// update); of.distributed steps, resume and checkpoints continue the schedule; onBatchEnd's calls, order, its
// bounded queue and errors; the device host simulation uses the same lr(t) and gives the CPU's bits.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';

// lr(t) of update t (from 1) for base lr, as lib/schedules.ts documents it; the engine rounds it to float32 once.
function lrAt(s: of.Schedule, lr: number, t: number): number {
  if (t <= s.warmup) return (lr * t) / s.warmup;
  const k = t - s.warmup - 1;
  switch (s.kind) {
    case 'constant':
      return lr;
    case 'step':
      return lr * s.gamma ** Math.floor(k / s.every);
    case 'exponential':
      return lr * s.gamma ** k;
    case 'cosine':
      return s.minLr + (lr - s.minLr) * 0.5 * (1 + Math.cos((Math.PI * Math.min(k, s.steps)) / s.steps));
  }
}

// A tiny linear regression: 3 inputs, 2 outputs, `rows` rows.
function tiny(rows: number) {
  const x = Float32Array.from({ length: rows * 3 }, (_, i) => Math.sin(0.7 * i + 0.3));
  const y = Float32Array.from({ length: rows * 2 }, (_, i) => Math.cos(1.3 * i));
  return { x, y, rows, shape: [3] } as of.Dataset;
}
const linear = (backend: 'cpu' | 'sim' = 'cpu') => of.sequential([of.dense(3, 2)], { seed: 5, loss: 'mse', backend });
const flat = (m: of.Model) => Float32Array.from(m.parameters().flatMap((p) => Array.from(p.data)));
const bitsEqual = (a: Float32Array, b: Float32Array) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
const dist = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0));

t.test('bad schedules and options are typed errors', async (t) => {
  const config = { code: 'ERR_CONFIG' };
  t.throws(() => of.schedules.step({ every: 0 }), {
    ...config,
    message: /Expected positive integer for every but received 0/,
  });
  t.throws(() => of.schedules.step({ evry: 3 } as unknown as of.StepScheduleOptions), {
    ...config,
    message: /Unknown option 'evry'/,
  });
  t.throws(() => (of.schedules.step as (o?: unknown) => of.Schedule)(), { ...config, message: /an object with every/ });
  t.throws(() => of.schedules.step({ every: 2, gamma: 1.5 }), { ...config, message: /number in \(0, 1\] for gamma/ });
  t.throws(() => of.schedules.exponential({ gamma: 0 }), { ...config, message: /gamma/ });
  t.throws(() => of.schedules.cosine({ steps: 1.5 }), { ...config, message: /positive integer for steps/ });
  t.throws(() => of.schedules.cosine({ steps: 10, minLr: -1 }), { ...config, message: /number >= 0 for minLr/ });
  t.throws(() => of.schedules.constant({ warmup: -1 }), { ...config, message: /integer >= 0 for warmup/ });
  t.throws(() => of.schedules.constant({ warmup: 2.5 }), { ...config, message: /integer >= 0 for warmup/ });
  t.throws(() => of.sgd({ lr: 0.01, schedule: of.schedules.cosine({ steps: 10, minLr: 0.1 }) }), {
    ...config,
    message: /number <= lr \(0.01\) for schedule minLr/,
  });
  t.throws(() => of.adam({ schedule: { kind: 'linear' } as unknown as of.Schedule }), {
    ...config,
    message: /a schedule from of.schedules/,
  });
  t.throws(() => of.adamw({ schedule: { kind: 'step', every: 2, gama: 0.5 } as unknown as of.Schedule }), {
    ...config,
    message: /Unknown option 'gama'/,
  });
  t.throws(() => of.sgd({ shedule: of.schedules.constant() } as unknown as of.SgdOptions), {
    ...config,
    message: /Unknown option 'shedule'/,
  });
  const m = linear();
  await t.rejects(m.fit(tiny(4), { onBatchEnd: 3 as unknown as () => void }), {
    ...config,
    message: /Expected function for onBatchEnd/,
  });
  // the native entry points re-check what lib/ validated, for direct calls
  const d = tiny(2);
  const raw = (m as unknown as { nat: { trainStep: (...a: unknown[]) => unknown } }).nat;
  for (const [schedule, msg] of [
    [{ kind: 'nope' }, /unknown schedule 'nope'/],
    [{ kind: 'step', every: 0 }, /every/],
    [{ kind: 'cosine', steps: 4, minLr: 1 }, /minLr/],
    [{ kind: 'exponential', gamma: 2 }, /gamma/],
    [7, /schedule/],
  ] as [unknown, RegExp][]) {
    t.throws(
      () => raw.trainStep(d.x, d.y, 2, { kind: 'bp' }, { kind: 'sgd', lr: 0.1, schedule }),
      { ...config, message: msg },
      `native: ${JSON.stringify(schedule)}`,
    );
  }
});

// lr of every batch, from onBatchEnd, for `steps` updates with batch size 1
async function lrs(optimizer: of.Optimizer, steps: number, backend: 'cpu' | 'sim' = 'cpu') {
  const m = linear(backend);
  const out: number[] = [];
  const h = await m.fit(tiny(steps), {
    estimator: of.bp(),
    optimizer,
    epochs: 1,
    batchSize: 1,
    shuffle: false,
    onBatchEnd: (b) => out.push(b.lr),
  });
  return { lr: out, model: m, history: h };
}

t.test('lr(t) of every schedule matches its closed form', async (t) => {
  const cases: [string, of.Schedule, 'exact' | 'ulp'][] = [
    ['constant', of.schedules.constant(), 'exact'],
    ['constant + warmup', of.schedules.constant({ warmup: 4 }), 'exact'],
    ['step', of.schedules.step({ every: 3, gamma: 0.5 }), 'exact'],
    ['step + warmup', of.schedules.step({ every: 2, gamma: 0.25, warmup: 3 }), 'exact'],
    ['exponential', of.schedules.exponential({ gamma: 0.9 }), 'ulp'],
    ['cosine', of.schedules.cosine({ steps: 10, minLr: 0.01 }), 'ulp'],
    ['cosine + warmup', of.schedules.cosine({ steps: 8, warmup: 5 }), 'ulp'],
  ];
  for (const [name, schedule, how] of cases) {
    for (const make of [of.sgd, of.adam, of.adamw]) {
      const opt = make({ lr: 0.1, schedule });
      const { lr, history } = await lrs(opt, 20);
      const want = lr.map((_, i) => Math.fround(lrAt(schedule, Math.fround(0.1), i + 1)));
      // float32 rounding of float64 values whose libm digits may differ in the last place: within 1 float ulp
      const ok = lr.every((v, i) =>
        how === 'exact' ? v === want[i] : Math.abs(v - want[i]!) <= 2 ** -23 * Math.abs(want[i]!),
      );
      t.ok(
        ok,
        `${name} (${opt.kind}): ${how === 'exact' ? 'exactly' : 'within 1 ulp'}; got ${lr
          .slice(0, 6)
          .map((v) => v.toPrecision(6))
          .join(' ')} …`,
      );
      t.equal(history.epochs[0]!.lr, lr[lr.length - 1], "EpochLog.lr is the last update's");
      t.same(history.history.lr, [lr[lr.length - 1]], 'and History.history.lr its column');
    }
  }
  // exact values at chosen t
  const f = Math.fround;
  const warm = (await lrs(of.sgd({ lr: 0.1, schedule: of.schedules.cosine({ steps: 4, minLr: 0.02, warmup: 2 }) }), 10))
    .lr;
  t.same(warm.slice(0, 3), [f(f(0.1) / 2), f(0.1), f(0.1)], 'warm-up: lr/2, lr; then the cosine starts at lr');
  t.equal(warm[4], f(f(0.02) + (f(0.1) - f(0.02)) * 0.5), 'half way down the cosine: the mid value');
  t.same(warm.slice(6), [f(0.02), f(0.02), f(0.02), f(0.02)], 'after `steps`: minLr, for good');
  const step = (await lrs(of.adam({ lr: 0.1, schedule: of.schedules.step({ every: 2, gamma: 0.5 }) }), 7)).lr;
  t.same(step, [0.1, 0.1, 0.05, 0.05, 0.025, 0.025, 0.0125].map(f), 'step: halved every 2 updates');
});

t.test("fit with a schedule makes the updates of trainStep at each step's rate", async (t) => {
  const data = tiny(12);
  for (const [name, make] of [
    ['sgd', of.sgd],
    ['sgd momentum', (o: of.SgdOptions) => of.sgd({ ...o, momentum: 0.9 })],
    ['adam', of.adam],
    ['adamw', of.adamw],
  ] as const) {
    const schedule = of.schedules.step({ every: 2, gamma: 0.5, warmup: 1 });
    const fitted = linear();
    const seen: number[] = [];
    await fitted.fit(data, {
      estimator: of.bp(),
      optimizer: make({ lr: 0.05, schedule }),
      epochs: 2,
      batchSize: 4,
      shuffle: false,
      onBatchEnd: (b) => seen.push(b.lr),
    });
    const manual = linear(),
      stepped = linear();
    for (let e = 0; e < 2; e++) {
      for (let b = 0; b < 3; b++) {
        const batch = {
          x: data.x.subarray(b * 12, (b + 1) * 12),
          y: (data.y as Float32Array).subarray(b * 8, (b + 1) * 8),
        };
        const tt = e * 3 + b + 1;
        manual.trainStep(batch, {
          estimator: of.bp(),
          optimizer: make({ lr: Math.fround(lrAt(schedule, Math.fround(0.05), tt)) }),
        });
        stepped.trainStep(batch, { estimator: of.bp(), optimizer: make({ lr: 0.05, schedule }) });
      }
    }
    t.same(
      seen,
      [1, 2, 3, 4, 5, 6].map((tt) => Math.fround(lrAt(schedule, Math.fround(0.05), tt))),
      `${name}: the rates`,
    );
    t.ok(bitsEqual(flat(fitted), flat(manual)), `${name}: fit == trainStep at the scheduled lr, bit for bit`);
    t.ok(bitsEqual(flat(fitted), flat(stepped)), `${name}: trainStep follows the schedule too`);
  }
  // the reference SGD update on a case small enough to write out: one parameter block, three steps
  const m = linear();
  const p0 = flat(m);
  await m.fit(tiny(1), {
    estimator: of.bp(),
    optimizer: of.sgd({ lr: 1, schedule: of.schedules.exponential({ gamma: 0.5 }) }),
    epochs: 3,
    batchSize: 1,
  });
  const fresh = linear();
  for (const lr of [1, 0.5, 0.25]) fresh.trainStep(tiny(1), { estimator: of.bp(), optimizer: of.sgd({ lr }) });
  t.ok(bitsEqual(flat(m), flat(fresh)), 'exponential: lr 1, 0.5, 0.25');
  t.notOk(bitsEqual(flat(m), p0), 'and the parameters moved');
});

t.test('of.distributed steps follow the schedule', async (t) => {
  // one rank: the all-reduce is the identity, so a data-parallel step is gradients() then applyGradients()
  const comm: of.Communicator = { rank: 0, size: 1, allreduceSum: () => {} };
  const data = tiny(6);
  const optimizer = of.sgd({ lr: 0.2, schedule: of.schedules.step({ every: 1, gamma: 0.5 }) });
  const dp = linear(),
    single = linear(),
    flatLr = linear();
  for (let s = 0; s < 4; s++) {
    of.distributed.dataParallelStep(dp, data, { comm, estimator: of.bp(), optimizer });
    single.trainStep(data, { estimator: of.bp(), optimizer });
    flatLr.trainStep(data, { estimator: of.bp(), optimizer: of.sgd({ lr: 0.2 }) });
  }
  const d = dist(flat(dp), flat(single)),
    off = dist(flat(dp), flat(flatLr));
  t.ok(d <= 1e-6, `dataParallelStep == trainStep with the schedule (distance ${d.toExponential(2)})`);
  t.ok(off > 1e-3, `and not the constant rate (distance ${off.toExponential(2)})`);
});

t.test('resume and checkpoints continue the schedule', async (t) => {
  const data = tiny(10);
  const opt = of.adam({ lr: 0.05, schedule: of.schedules.cosine({ steps: 9, minLr: 0.005, warmup: 3 }) });
  const fit = (m: of.Model, epochs: number, resume: boolean, out: number[]) =>
    m.fit(data, {
      estimator: of.bp(),
      optimizer: opt,
      epochs,
      batchSize: 3,
      resume,
      onBatchEnd: (b) => out.push(b.lr),
    });
  const whole = linear(),
    wholeLr: number[] = [];
  await fit(whole, 4, false, wholeLr);
  t.equal(wholeLr.length, 16, '4 batches per epoch, 4 epochs');

  const first = linear(),
    parts: number[] = [];
  await fit(first, 1, false, parts);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-sched-'));
  const file = path.join(dir, 'm.ofm');
  await first.save(file);
  const loaded = await of.load(file);
  await fit(loaded, 4, true, parts);
  t.same(parts, wholeLr, 'the rates continue from the checkpoint');
  t.ok(bitsEqual(flat(loaded), flat(whole)), 'and the parameters are those of the uninterrupted run');

  const again = linear(),
    againLr: number[] = [];
  await fit(again, 2, false, againLr);
  await fit(again, 4, true, againLr);
  t.same(againLr, wholeLr, 'fit({ resume: true }) on the same model continues too');
  fs.rmSync(dir, { recursive: true, force: true });
});

t.test('onBatchEnd: every batch once, in order, with its loss', async (t) => {
  const data = tiny(10);
  for (const estimator of [of.bp(), of.ulr({ copies: 4, sigma: 0.05 })]) {
    const m = linear();
    const calls: of.BatchLog[] = [];
    const progress: of.Progress[] = [];
    const h = await m.fit(data, {
      estimator,
      epochs: 3,
      batchSize: 3,
      onBatchEnd: (b) => calls.push(b),
      onProgress: (p) => progress.push(p),
    });
    t.equal(calls.length, 3 * 4, `${estimator.kind}: batches × epochs calls`);
    t.same(
      calls.map((b) => [b.epoch, b.batch, b.batches]),
      [1, 2, 3].flatMap((e) => [1, 2, 3, 4].map((b) => [e, b, 4])),
      'indices increase: epoch, then batch',
    );
    t.ok(
      calls.every((b) => Number.isFinite(b.loss) && b.loss > 0 && b.accuracy >= 0 && b.accuracy <= 1),
      'finite losses',
    );
    for (let e = 0; e < 3; e++) {
      // the epoch loss is the row-weighted mean of its batches' losses
      const mean = calls.slice(4 * e, 4 * e + 4).reduce((s, b, i) => s + b.loss * (i < 3 ? 3 : 1), 0) / 10;
      t.ok(
        Math.abs(mean - h.epochs[e]!.loss) <= 1e-12 * h.epochs[e]!.loss,
        `epoch ${e + 1}: loss ${h.epochs[e]!.loss} is the batches' mean ${mean}`,
      );
    }
    const ends = progress.filter((p) => p.step === p.steps);
    t.ok(ends.length === 3 && ends.every((p) => p.lr === Math.fround(0.001)), 'Progress carries the lr too');
  }
});

t.test('a slow onBatchEnd loses no call: training waits when 1024 are queued', async (t) => {
  // 3000 tiny steps take microseconds each; a callback that spins 20 µs falls behind, so the queue fills
  const m = linear();
  const raw = (m as unknown as { nat: { state(): { step: number } } }).nat;
  const seen: number[] = [];
  let lag = 0; // steps trained beyond the batch being reported: the queue's bound plus the step that waits to post
  await m.fit(tiny(3000), {
    estimator: of.bp(),
    optimizer: of.sgd({ lr: 1e-4 }),
    batchSize: 1,
    shuffle: false,
    onBatchEnd: (b) => {
      seen.push(b.batch);
      lag = Math.max(lag, raw.state().step - b.batch);
      const end = process.hrtime.bigint() + 20_000n;
      while (process.hrtime.bigint() < end);
    },
  });
  t.equal(seen.length, 3000, 'every batch');
  t.ok(
    seen.every((b, i) => b === i + 1),
    'in order',
  );
  t.ok(lag <= 1025, `training ran at most 1025 steps ahead of the callbacks (${lag})`);
});

t.test('a throwing onBatchEnd rejects fit with the thrown value', async (t) => {
  const m = linear();
  const boom = new RangeError('stop here');
  let calls = 0;
  const err = await m
    .fit(tiny(20), {
      estimator: of.bp(),
      epochs: 5,
      batchSize: 2,
      onBatchEnd: (b) => {
        calls++;
        if (b.epoch === 1 && b.batch === 3) throw boom;
      },
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  t.equal(err, boom, 'the same object');
  t.equal(calls, 3, 'no call after the throw');
  const step = (m as unknown as { nat: { state(): { step: number } } }).nat.state().step;
  t.ok(step < 50, `training stopped early (step ${step} of 50)`);
  const thrown = await m
    .fit(tiny(4), {
      estimator: of.bp(),
      onBatchEnd: () => {
        throw 'a string';
      },
    })
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  t.equal(thrown, 'a string', 'a thrown non-Error value as is');
  await m.fit(tiny(4), { estimator: of.bp(), onBatchEnd: () => {} });
  t.pass('the model trains again afterwards');
});

// The device engines: the host simulation (every machine) gives the CPU's bits; CUDA (where a GPU answers) the
// same rates and parameters within 2e-2 of the update's size (its GEMMs round differently; test/55's bound).
const engines: ('sim' | 'cuda')[] = of.backend.info().devices.cuda > 0 ? ['sim', 'cuda'] : ['sim'];

t.test('the device engines use the same lr(t) as the CPU', async (t) => {
  if (!engines.includes('cuda')) t.comment('no CUDA device answers: the host simulation only');
  const data = tiny(9);
  for (const optimizer of [
    of.sgd({ lr: 0.1, momentum: 0.5, schedule: of.schedules.step({ every: 2, gamma: 0.5, warmup: 2 }) }),
    of.adam({ lr: 0.05, schedule: of.schedules.cosine({ steps: 5, minLr: 0.01, warmup: 1 }) }),
    of.adamw({ lr: 0.05, schedule: of.schedules.exponential({ gamma: 0.8 }) }),
  ]) {
    const runs = [];
    for (const backend of ['cpu', ...engines] as const) {
      for (const withBatch of [true, false]) {
        // with onBatchEnd every step waits; without, fit's steps are queued
        const m = of.sequential([of.dense(3, 2)], { seed: 5, loss: 'mse', backend, allowTf32: false });
        const start = flat(m);
        const lr: number[] = [];
        const h = await m.fit(data, {
          estimator: of.bp(),
          optimizer,
          epochs: 3,
          batchSize: 2,
          shuffle: false,
          ...(withBatch ? { onBatchEnd: (b: of.BatchLog) => lr.push(b.lr) } : {}),
        });
        if (backend !== 'cpu') t.equal(m.backendInfo().placement, backend, `ran on ${backend}`);
        runs.push({
          backend,
          name: `${backend}${withBatch ? ' + onBatchEnd' : ''}`,
          lr,
          epochLr: h.history.lr,
          params: flat(m),
          start,
        });
      }
    }
    const cpu = runs[0]!;
    t.equal(cpu.lr.length, 15, '5 batches × 3 epochs');
    for (const r of runs.slice(1)) {
      if (r.lr.length) t.same(r.lr, cpu.lr, `${optimizer.kind} ${optimizer.schedule!.kind}, ${r.name}: the same rates`);
      t.same(r.epochLr, cpu.epochLr, `${r.name}: the same epoch rates`);
      if (r.backend !== 'cuda') t.ok(bitsEqual(r.params, cpu.params), `${r.name}: the CPU's parameters, bit for bit`);
      else
        t.ok(
          dist(r.params, cpu.params) <= 2e-2 * dist(cpu.params, cpu.start),
          `${r.name}: the CPU's parameters within 2e-2 of the update`,
        );
    }
  }
});
