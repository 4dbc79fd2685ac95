// What keeps a server up: model.memoryEstimate against the resident memory a real step takes (child processes),
// a cancel that stops a step inside its blocks without half-applying it, and the example server's soak (jobs
// created and cancelled over and over: resident memory flat, every job freed, cancels fast) and SIGTERM.
// `npm run bench -- server` runs the same soak with 200 cycles.
import t from 'tap';
import { spawn, spawnSync } from 'child_process';
import * as path from 'path';
import * as of from '../lib/index';

const root = path.resolve(__dirname, '..', '..');
const lib = path.join(root, 'dist', 'lib', 'index.js');
const exampleDir = path.join(root, 'dist', 'examples', 'server');

t.test('memoryEstimate: argument errors', async (t) => {
  const m = of.sequential([of.dense(4, 3), of.relu(), of.dense(3, 2)], { seed: 1 });
  t.throws(() => m.memoryEstimate({ batchSize: 0 }), {
    code: 'ERR_CONFIG',
    message: /Expected integer in \[1, 2\^30\] for batchSize but received 0 of type number/,
  });
  t.throws(() => m.memoryEstimate({ batchSize: 1.5 }), { code: 'ERR_CONFIG' });
  t.throws(() => m.memoryEstimate({ estimator: { kind: 'nope' } as unknown as of.Estimator }), {
    code: 'ERR_CONFIG',
    message: /estimator/,
  });
  t.throws(() => m.memoryEstimate({ estimator: of.ulr({ copies: 3, antithetic: true }) }), {
    code: 'ERR_CONFIG',
    message: /even/,
  });
  t.throws(() => m.memoryEstimate({ bogus: 1 } as unknown as { batchSize: number }), {
    code: 'ERR_CONFIG',
    message: /bogus/,
  });
  const e = m.memoryEstimate({ estimator: of.ulr({ copies: 8 }), batchSize: 16 });
  t.equal(
    e.bytes,
    e.parameters + e.gradients + e.optimizer + e.activations + e.partials + e.workspace,
    'the parts add up',
  );
  t.equal(e.parameters, 4 * m.parameterCount, 'four bytes a parameter');
  t.equal(e.optimizer, 2 * e.parameters, 'two slabs of optimizer state');
  t.ok(
    m.memoryEstimate({ estimator: of.ulr({ copies: 64 }), batchSize: 16 }).bytes > e.bytes,
    'more copies, more memory',
  );
  m.dispose();
  t.throws(() => m.memoryEstimate({ batchSize: 4 }), { code: 'ERR_DISPOSED' });
});

// One fit step in a fresh process: resident memory after it minus before the model, against the estimate.
const probe = `
const of = require(${JSON.stringify(lib)});
const c = JSON.parse(process.argv[1]);
const B = c.batch;
const x = new Float32Array(B * 784).map((_, i) => (i % 7) / 7), y = new Int32Array(B).map((_, i) => i % 10);
gc(); gc();
const r0 = process.memoryUsage().rss;
const m = c.conv
  ? of.sequential([of.conv2d({ inputShape: [28, 28, 1], filters: c.conv, kernel: 3, padding: 'same' }), of.relu(), of.maxPool2d({ size: 2 }), of.flatten(), of.dense(14 * 14 * c.conv, 10)], { seed: 1 })
  : of.sequential(c.layers.flatMap((w, i) => i + 1 < c.layers.length ? [of.dense(w, c.layers[i + 1]), ...(i + 2 < c.layers.length ? [of.relu()] : [])] : []), { seed: 1 });
const estimator = c.K ? of.ulr({ copies: c.K }) : of.bp();
const { bytes } = m.memoryEstimate({ estimator, batchSize: B });
m.fit({ x, y, rows: B, shape: c.conv ? [28, 28, 1] : [784] }, { estimator, epochs: 1, batchSize: B, shuffle: false }).then(() => {
  console.log(JSON.stringify({ bytes, measured: process.memoryUsage().rss - r0 }));
});`;

t.test('memoryEstimate: within 0.25x-2x of the resident memory a first step takes', async (t) => {
  const configs = [
    { name: 'bp 784-1024-1024-10, batch 256', layers: [784, 1024, 1024, 10], batch: 256 },
    { name: 'ulr K=8 784-1024-1024-10, batch 256', layers: [784, 1024, 1024, 10], batch: 256, K: 8 },
    { name: 'ulr K=64 784-1024-1024-10, batch 256', layers: [784, 1024, 1024, 10], batch: 256, K: 64 },
    { name: 'ulr K=16 conv 16 filters, batch 256', conv: 16, batch: 256, K: 16 },
    { name: 'bp conv 32 filters, batch 512', conv: 32, batch: 512 },
  ];
  for (const c of configs) {
    const r = spawnSync(process.execPath, ['--expose-gc', '-e', probe, JSON.stringify(c)], {
      encoding: 'utf8',
      env: { ...process.env, ONEFORWARD_BACKEND: 'cpu' },
    });
    t.equal(r.status, 0, r.stderr);
    const { bytes, measured } = JSON.parse(r.stdout.trim()) as { bytes: number; measured: number };
    const ratio = measured / bytes;
    // Resident memory is a coarse reading (pages the allocator keeps or returns); test/92 checks the estimate
    // against the allocator's own peak. Here: the order of magnitude, and never twice the estimate.
    t.ok(
      ratio > 0.25 && ratio < 2,
      `${c.name}: estimate ${(bytes / 2 ** 20).toFixed(1)} MiB, measured ${(measured / 2 ** 20).toFixed(1)} MiB (x${ratio.toFixed(2)}) within 0.25x-2x`,
    );
  }
});

t.test('a cancel inside a step drops that step whole', async (t) => {
  // Big steps (a few hundred ms here), cancelled mid-step; the parameters must be those of the steps that
  // completed, bit for bit: a model trained for exactly that many steps on the same batches.
  const { train } = of.datasets.digits();
  const layers = () => [of.dense(784, 1024), of.relu(), of.dense(1024, 1024), of.relu(), of.dense(1024, 10)];
  const fitOptions = { estimator: of.ulr({ copies: 32 }), batchSize: 256, shuffle: false };
  const a = of.sequential(layers(), { seed: 3 });
  const ac = new AbortController();
  const started = performance.now();
  const running = a.fit(train, { ...fitOptions, epochs: 1, signal: ac.signal });
  await new Promise((r) => setTimeout(r, 900));
  const t0 = performance.now();
  ac.abort();
  await t.rejects(running, { code: 'ABORT_ERR' });
  const latency = performance.now() - t0;
  const steps = a.step;
  t.ok(steps >= 1, `${steps} steps completed before the cancel`);
  // Relative to this run's own step time, so a loaded machine slows both sides alike (the 250 ms target is
  // measured by the server bench). Between steps only, the wait averaged half a step.
  const stepMs = (t0 - started) / (steps + 0.5);
  t.ok(
    latency < Math.max(250, stepMs / 4),
    `cancel took ${latency.toFixed(0)} ms (< max(250 ms, a quarter of a ${stepMs.toFixed(0)} ms step))`,
  );
  const b = of.sequential(layers(), { seed: 3 });
  await b.fit(
    { ...train, x: train.x.subarray(0, steps * 256 * 784), y: train.y.subarray(0, steps * 256), rows: steps * 256 },
    { ...fitOptions, epochs: 1 },
  );
  const pa = a.parameters(),
    pb = b.parameters();
  t.ok(
    pa.every(
      (p, i) =>
        Buffer.compare(
          Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength),
          Buffer.from(pb[i]!.data.buffer, pb[i]!.data.byteOffset, pb[i]!.data.byteLength),
        ) === 0,
    ),
    'parameters bit-identical to the completed steps',
  );
  a.dispose();
  b.dispose();
});

t.test('server soak: 40 create/cancel cycles', async (t) => {
  const r = spawnSync(
    process.execPath,
    ['--expose-gc', path.join(exampleDir, 'soak.js'), JSON.stringify({ cycles: 40, warmup: 10, largeCycles: 4 })],
    { encoding: 'utf8', env: { ...process.env, ONEFORWARD_BACKEND: 'cpu' } },
  );
  t.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout.trim()) as import('../examples/server/soak').SoakResult;
  t.comment(JSON.stringify(s));
  t.ok(s.gc, 'measured after GC');
  // The targets (RSS growth < 5% over 200 cycles, cancel p99 < 250 ms) are the server bench's; this short run on a
  // shared machine checks for a leak (one kept job is tens of MiB) and for cancels that wait out whole steps.
  t.ok(
    s.rssGrowth < 0.15,
    `resident memory ${s.rssWarmMB.toFixed(1)} -> ${s.rssEndMB.toFixed(1)} MiB (${(100 * s.rssGrowth).toFixed(1)}% < 15%)`,
  );
  t.equal(s.jobsLeft, 0, 'every job freed');
  t.ok(s.largeMemoryMB > 256, `the large job holds ${s.largeMemoryMB.toFixed(0)} MiB`);
  t.ok(s.largeCancelP99Ms < 1000, `large-job cancel p99 ${s.largeCancelP99Ms.toFixed(0)} ms < 1000 ms`);
  t.ok(s.cancelP99Ms < 1000, `cancel p99 ${s.cancelP99Ms.toFixed(0)} ms < 1000 ms`);
});

t.test('server: SIGTERM cancels the jobs, closes and exits 0', async (t) => {
  const child = spawn(process.execPath, [path.join(exampleDir, 'server.js')], {
    env: { ...process.env, PORT: '0', ONEFORWARD_BACKEND: 'cpu' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  for (let i = 0; i < 200 && !/on (http:\S+)/.test(out); i++) await new Promise((r) => setTimeout(r, 25));
  const base = /on (http:\S+)/.exec(out)?.[1];
  t.ok(base, 'listening');
  const res = await fetch(`${base}/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ layers: [784, 1024, 1024, 10], copies: 32, batchSize: 256, epochs: 100 }),
  });
  t.equal(res.status, 202);
  await new Promise((r) => setTimeout(r, 500));
  const t0 = performance.now();
  child.kill('SIGTERM');
  const code = await Promise.race([exited, new Promise<string>((r) => setTimeout(() => r('timeout'), 10_000))]);
  if (code === 'timeout') child.kill('SIGKILL');
  t.equal(code, 0, `exit code 0 after ${(performance.now() - t0).toFixed(0)} ms`);
  t.match(out, /SIGTERM: shutting down/);
});

t.test('server: a DELETE or the retention timer while predictions run on the model', async (t) => {
  // The server in a child: a drop that threw from the retention timer would end the process.
  const script = `const { buildServer, exitOnSignals } = require(${JSON.stringify(path.join(exampleDir, 'server.js'))});
    const app = buildServer({ retainMs: 1500 });
    exitOnSignals(app);
    app.listen({ port: 0, host: '127.0.0.1' }).then((a) => console.log('on ' + a));`;
  const child = spawn(process.execPath, ['-e', script], {
    env: { ...process.env, ONEFORWARD_BACKEND: 'cpu' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '',
    err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  t.teardown(() => void child.kill('SIGKILL'));
  for (let i = 0; i < 400 && !/on (http:\S+)/.test(out); i++) await new Promise((r) => setTimeout(r, 25));
  const base = /on (http:\S+)/.exec(out)?.[1];
  t.ok(base, 'listening');
  const json = { 'content-type': 'application/json' };
  // A model whose prediction of 1,024 rows takes longer than parsing their JSON, so most of the time some
  // prediction is running on it.
  const trained = async () => {
    const res = await fetch(`${base}/jobs`, {
      method: 'POST',
      headers: json,
      body: JSON.stringify({ layers: [784, 2048, 1024, 10], estimator: 'bp', epochs: 1, batchSize: 512 }),
    });
    const { id } = (await res.json()) as { id: string };
    for (let state = 'running'; state === 'running'; await new Promise((r) => setTimeout(r, 20))) {
      state = ((await (await fetch(`${base}/jobs/${id}`)).json()) as { state: string }).state;
    }
    return id;
  };
  const body = JSON.stringify({
    inputs: Array.from({ length: 1024 }, (_, r) => Array.from({ length: 784 }, (_, i) => ((r + i) % 13) / 13)),
  });
  // Four request loops keep predictions in flight until the job is gone (404). `late` counts the predictions
  // answered 200 after the DELETE was answered: they were running on the model when it was dropped.
  const hammer = async (id: string, whileRunning?: () => Promise<number>) => {
    const statuses = new Set<number>();
    let gone = false,
      late = 0,
      deleted: number | undefined;
    const loop = async () => {
      while (!gone) {
        // Each response is read to its end (an unread 200 would keep its connection busy and the server's close
        // waiting); 0: the connection failed (the server is gone).
        const s = await fetch(`${base}/models/${id}/predict`, { method: 'POST', headers: json, body }).then(
          async (r) => (await r.arrayBuffer(), r.status),
          () => 0,
        );
        statuses.add(s);
        if (s === 200 && gone) late++;
        if (s === 404 || s === 0) gone = true;
      }
    };
    const loops = [loop(), loop(), loop(), loop()];
    if (whileRunning) {
      await new Promise((r) => setTimeout(r, 300));
      deleted = await whileRunning();
      gone = true;
    }
    await Promise.all(loops);
    return { statuses: [...statuses].sort(), late, deleted };
  };
  const a = await hammer(await trained(), undefined);
  t.same(a.statuses, [200, 404], 'retention expiry: predictions answered, then 404');
  // Four loops keep the model busy nearly all the time, so the timer fires during a prediction: the server up
  // at the end is the check (a throwing drop ended the process).
  await new Promise((r) => setTimeout(r, 100));
  if (child.exitCode !== null) return void t.fail(`the server exited after the retention timer: ${err.slice(-300)}`);
  // On a loaded machine a DELETE can land between predictions: up to 3 tries, until one catches predictions running.
  for (let attempt = 1; attempt <= 3; attempt++) {
    const id = await trained();
    const b = await hammer(id, async () => (await fetch(`${base}/jobs/${id}`, { method: 'DELETE' })).status);
    t.equal(b.deleted, 204, 'a DELETE during predictions answers 204');
    t.ok(
      b.statuses.every((s) => s === 200 || s === 404),
      `DELETE: the running predictions answered, later ones 404 (${b.statuses.join(', ')})`,
    );
    t.equal((await fetch(`${base}/jobs/${id}`)).status, 404, 'the job is gone');
    t.equal(child.exitCode, null, `the server is still up ${err.slice(-300)}`);
    if (b.late >= 1 || attempt === 3) {
      t.ok(b.late >= 1, `${b.late} predictions running at the DELETE still answered 200 (try ${attempt})`);
      break;
    }
  }
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'and exits 0 on SIGTERM');
});
