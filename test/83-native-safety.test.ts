// Native safety: calls that used to take the whole process down. Each case runs in a child process with a timeout
// and must end with exit code 0 (no signal, no abort, no hang) and the expected result: buffers transferred or
// shrunk while fit / predictAsync read them, dispose() and other mutators from inside a running call (ERR_BUSY),
// parameter views after dispose, worker.terminate() / process.exit() while native work runs, callbacks that throw
// values that are not Errors or return rejecting promises, and MPI after finalize().
import t from 'tap';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as of from '../lib/index';

const lib = JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'));

// Shared by every child: the library, a small model and a deterministic data set (large enough, 1.3 MB of x, that
// a freed buffer is unmapped and a read after free faults).
const prelude = `
const of = require(${lib});
const mk = (seed = 1) => of.sequential([of.dense(8, 16), of.relu(), of.dense(16, 3)], { seed });
const data = (rows, resizable = false) => {
  const ab = resizable ? new ArrayBuffer(rows * 32, { maxByteLength: rows * 32 }) : new ArrayBuffer(rows * 32);
  const x = new Float32Array(ab);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37);
  return { x, y: Int32Array.from({ length: rows }, (_, i) => (i * 7) % 3), rows, shape: [8] };
};
const flat = (m) => m.parameters().flatMap((p) => Array.from(p.data));
const same = (a, b) => a.length === b.length && a.every((v, i) => Object.is(v, b[i]));
const settle = (p) => p.then((v) => ({ ok: v }), (e) => ({ err: e }));
const code = (e) => (e && typeof e === 'object' ? e.code : typeof e);
const out = (v) => process.stdout.write(JSON.stringify(v) + '\\n');
`;

type Child = {
  status: number | null;
  signal: NodeJS.Signals | null;
  result: Record<string, unknown>;
  stderr: string;
  ms: number;
};

// Runs `body` (an async function body, after the prelude) in a fresh node; its last stdout line is its result.
function child(body: string, timeout = 30000, flags: string[] = []): Child {
  const t0 = Date.now();
  const r = spawnSync(
    process.execPath,
    [
      ...flags,
      '-e',
      `${prelude}\n(async () => {\n${body}\n})().catch((e) => { console.error(e); process.exitCode = 3; });`,
    ],
    {
      encoding: 'utf8',
      timeout,
      env: { ...process.env, ONEFORWARD_BACKEND: 'cpu' },
    },
  );
  const last = r.stdout.trim().split('\n').pop() ?? '';
  let result: Record<string, unknown> = {};
  try {
    result = JSON.parse(last) as Record<string, unknown>;
  } catch {
    result = { unparsed: last };
  }
  return { status: r.status, signal: r.signal, result, stderr: r.stderr, ms: Date.now() - t0 };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function clean(t: { equal(...args: any[]): boolean }, c: Child, what: string): void {
  t.equal(c.signal, null, `${what}: no signal (${c.signal ?? 'none'})`);
  t.equal(c.status, 0, `${what}: exit code 0${c.status ? `; stderr: ${c.stderr.slice(-600)}` : ''}`);
}

t.test('fit reads its own copy: transferring or shrinking the arrays mid-run changes nothing', async (t) => {
  const c = child(
    `
    const run = async (attack) => {
      const m = mk(), d = data(40000, attack === 'resize'), v = data(5000, attack === 'resize');
      let done = false;
      const h = await m.fit(d, { estimator: of.ulr({ copies: 4 }), epochs: 2, batchSize: 64, validation: v, onProgress: () => {
        if (done || !attack) return;
        done = true;
        if (attack === 'transfer') for (const a of [d.x, d.y, v.x, v.y]) structuredClone(a.buffer, { transfer: [a.buffer] });
        else { d.x.buffer.resize(0); v.x.buffer.resize(0); }
        for (let i = 0; i < 64; i++) new ArrayBuffer(1 << 20).byteLength;  // reuse the freed memory
      } });
      return { params: flat(m), valLoss: h.epochs[1].valLoss, hit: done, len: d.x.length };
    };
    const base = await run(null), tr = await run('transfer'), rs = await run('resize');
    out({ transfer: same(base.params, tr.params) && base.valLoss === tr.valLoss, resize: same(base.params, rs.params) && base.valLoss === rs.valLoss,
          hit: tr.hit && rs.hit, lens: [tr.len, rs.len] });
  `,
    60000,
  );
  clean(t, c, 'fit with a transferred / resized buffer');
  t.same(
    c.result,
    { transfer: true, resize: true, hit: true, lens: [0, 0] },
    'the arrays were emptied mid-run, and the run equals an undisturbed one bit for bit',
  );
});

t.test('predictAsync / evaluateAsync read their own copy', async (t) => {
  const c = child(`
    const m = mk(), d = data(200000), d2 = data(200000, true);
    const want = m.predict(data(200000).x), wantEval = m.evaluate(data(200000));
    const p = m.predictAsync(d.x);
    structuredClone(d.x.buffer, { transfer: [d.x.buffer] });
    const e = m.evaluateAsync(d2);
    d2.x.buffer.resize(0);
    for (let i = 0; i < 64; i++) new ArrayBuffer(1 << 20).byteLength;
    const got = await p, ev = await e;
    out({ predict: same(Array.from(got), Array.from(want)), evaluate: ev.loss === wantEval.loss && ev.accuracy === wantEval.accuracy, len: d.x.length });
  `);
  clean(t, c, 'predictAsync with a transferred buffer');
  t.same(c.result, { predict: true, evaluate: true, len: 0 }, 'results equal predict / evaluate on intact data');
});

t.test(
  'a direct native call whose argument getter detaches the data fails typed, without reading freed memory',
  async (t) => {
    const c = child(`
    const m = mk(), d = data(40000);
    const est = { kind: 'ulr', sigma: 0.1, get copies() { structuredClone(d.x.buffer, { transfer: [d.x.buffer] }); return 4; } };
    let r;
    try { m._native.gradients(d.x, d.y, d.rows, est); r = 'returned'; } catch (e) { r = e instanceof of.OneForwardError ? e.code : String(e); }
    out({ r });
  `);
    clean(t, c, 'getter detaching x');
    t.match(c.result, { r: /^ERR_(SHAPE|DATA|CONFIG)$/ }, 'a typed error');
  },
);

t.test('no mutator runs while the model is inside a call: ERR_BUSY', async (t) => {
  const c = child(`
    const r = {};
    const m = mk(), d = data(64);
    const est = of.ulr({ copies: 4 });
    // dispose() from a JS loss during a synchronous gradients(): caught by the loss, then thrown out of gradients
    const caught = [];
    m.gradients(d, { estimator: est, loss: (o, tg, rows) => {
      for (const f of [() => m.dispose(), () => m.predict(d.x), () => m.freeze(1), () => m.trainStep(d, { estimator: est }), () => m.gradients(d)])
        try { f(); caught.push('ran'); } catch (e) { caught.push(e.code + ':' + (e instanceof of.BusyError)); }
      return new Float32Array(rows).fill(1);
    } });
    r.inLoss = caught;
    let thrown;
    try { m.gradients(d, { estimator: est, loss: () => { m.dispose(); } }); } catch (e) { thrown = e.code; }
    r.uncaught = thrown;
    r.aliveAfter = m.predict(d.x).length;
    // loadWeights and mutators during fit; loadWeights, trainStep, freeze, dispose while predictAsync reads
    const tensors = new Map(m.parameters().map((p) => [p.name, { shape: p.shape, data: p.data.slice().fill(0.5) }]));
    const before = flat(m);
    const f = m.fit(data(20000), { estimator: est, epochs: 3 });
    r.loadDuringFit = await settle(m.loadWeights(tensors)).then((s) => code(s.err));
    await f;
    const trained = flat(m);
    const p = m.predictAsync(data(100000).x);
    r.duringPredict = [];
    for (const g of [() => m.trainStep(d, { estimator: est }), () => m.freeze(1), () => m.dispose(), () => m.applyGradients(new Float32Array(m.parameterCount), { rows: 1 })])
      try { g(); r.duringPredict.push('ran'); } catch (e) { r.duringPredict.push(e.code); }
    r.loadDuringPredict = await settle(m.loadWeights(tensors)).then((s) => code(s.err));
    await p;
    r.untouched = same(flat(m), trained) && !same(before, trained);
    r.loadAfter = (await m.loadWeights(tensors)).length;
    r.loaded = flat(m).every((v) => v === 0.5);
    m.dispose();
    out(r);
  `);
  clean(t, c, 'mutators inside calls');
  t.same(
    c.result.inLoss,
    ['ERR_BUSY:true', 'ERR_BUSY:true', 'ERR_BUSY:true', 'ERR_BUSY:true', 'ERR_BUSY:true'],
    'dispose, predict, freeze, trainStep, gradients from a JS loss: BusyError',
  );
  t.equal(c.result.uncaught, 'ERR_BUSY', 'an uncaught BusyError from the loss is what gradients throws');
  t.equal(c.result.aliveAfter, 192, 'the model still works after the refused dispose');
  t.equal(c.result.loadDuringFit, 'ERR_BUSY', 'loadWeights during fit: ERR_BUSY');
  t.same(
    c.result.duringPredict,
    ['ERR_BUSY', 'ERR_BUSY', 'ERR_BUSY', 'ERR_BUSY'],
    'trainStep, freeze, dispose, applyGradients while predictAsync reads: ERR_BUSY',
  );
  t.equal(c.result.loadDuringPredict, 'ERR_BUSY', 'loadWeights while predictAsync reads: ERR_BUSY');
  t.equal(c.result.untouched, true, 'the refused calls changed nothing');
  t.equal(c.result.loadAfter, 4, 'loadWeights works once the model is idle');
  t.equal(c.result.loaded, true, 'and it loaded the values');
});

t.test('parameter views stay valid after dispose (they keep the memory alive)', async (t) => {
  const c = child(
    `
    const m = mk();
    let views = m.parameters();
    const keep = views[0].data;
    m.dispose();
    keep.fill(3);
    views = null;
    for (let i = 0; i < 5; i++) { global.gc(); await new Promise((r) => setImmediate(r)); }
    for (let i = 0; i < 64; i++) new Float32Array(1 << 18).fill(i);
    keep[5] = 7;
    out({ sum: keep.reduce((s, v) => s + v, 0), len: keep.length, disposed: (() => { try { m.predict(new Float32Array(8)); } catch (e) { return e.code; } })() });
  `,
    30000,
    ['--expose-gc'],
  );
  clean(t, c, 'views after dispose');
  t.same(
    c.result,
    { sum: 3 * 127 + 7, len: 128, disposed: 'ERR_DISPOSED' },
    'writes and reads after dispose and GC hit live memory',
  );
});

t.test(
  'worker.terminate() / process.exit() in a worker while native work runs: only the worker ends, quickly',
  async (t) => {
    const c = child(
      `
    const { Worker } = require('worker_threads');
    const cases = {
      fit: "m.fit(data(100000), { estimator: of.ulr({ copies: 8 }), epochs: 50 }); post();",
      fitJsLoss: "m.fit(data(100000), { estimator: of.ulr({ copies: 8 }), epochs: 50, loss: (o, tg, r) => new Float32Array(r).fill(1) }); post();",
      fitBusyJs: "m.fit(data(100000), { estimator: of.ulr({ copies: 8 }), epochs: 50, onProgress: () => { const t = Date.now(); while (Date.now() - t < 20); } }); post();",
      // predictions chained back to back, so one is running whenever terminate() comes, however fast the machine
      predictAsync: "const x = data(200000).x; const loop = () => m.predictAsync(x).then(loop); loop(); loop(); post();",
      exitInFit: "m.fit(data(100000), { estimator: of.ulr({ copies: 8 }), epochs: 50 }); setTimeout(() => process.exit(5), 100);",
      exitInLoss: "m.fit(data(100000), { estimator: of.ulr({ copies: 8 }), epochs: 50, loss: (o, tg, r) => process.exit(6) });",
    };
    const r = {};
    for (const [name, code] of Object.entries(cases)) {
      const w = new Worker(${JSON.stringify(prelude)} + "const m = mk(); const post = () => setTimeout(() => require('worker_threads').parentPort.postMessage('go'), 100);" + code, { eval: true });
      const t0 = Date.now();
      const exit = new Promise((res) => w.once('exit', res));
      if (!name.startsWith('exit')) {
        await new Promise((res) => w.once('message', res));
        const t1 = Date.now();
        await w.terminate();
        r[name] = { ms: Date.now() - t1, code: await exit };
      } else {
        r[name] = { ms: Date.now() - t0, code: await exit };
      }
    }
    out(r);
  `,
      60000,
    );
    clean(t, c, 'terminate during native work');
    const r = c.result as Record<string, { ms: number; code: number }>;
    for (const k of ['fit', 'fitJsLoss', 'fitBusyJs', 'predictAsync']) {
      t.equal(r[k]?.code, 1, `${k}: the worker ended by terminate() (exit code 1)`);
      t.ok(r[k]!.ms < 3000, `${k}: terminate() returned in ${r[k]!.ms} ms (< 3 s; training had 50 epochs to go)`);
    }
    t.equal(r.exitInFit?.code, 5, 'process.exit(5) in a worker during fit: the worker exits 5');
    t.equal(r.exitInLoss?.code, 6, 'process.exit(6) from a JS loss in a worker: the worker exits 6');
  },
);

t.test('process.exit() on the main thread during fit exits with that code', async (t) => {
  const c = child(`
    const m = mk();
    m.fit(data(100000), { estimator: of.ulr({ copies: 8 }), epochs: 50 });
    setTimeout(() => process.exit(0), 200);
  `);
  clean(t, c, 'process.exit during fit');
});

t.test('whatever a callback throws rejects the call with that value', async (t) => {
  const c = child(
    `
    const r = {};
    const d = data(5000);
    const est = of.ulr({ copies: 4 });
    // A frozen Error and a Proxy whose set trap throws: decorating them (their stack) must not replace them.
    const frozen = Object.freeze(new Error('frozen'));
    const proxy = new Proxy(new Error('proxied'), { set() { throw new Error('set trap'); } });
    const values = [['string', 'boom'], ['number', 42], ['null', null], ['undefined', undefined], ['error', new RangeError('x')], ['frozen', frozen], ['proxy', proxy]];
    const stacks = new Map(values.filter(([, v]) => v instanceof Error).map(([, v]) => [v, v.stack]));
    for (const [name, v] of values) {
      const m = mk();
      const t0 = Date.now();
      const loss = await Promise.race([settle(m.fit(d, { estimator: est, epochs: 1, loss: () => { throw v; } })), new Promise((res) => setTimeout(() => res('hang'), 10000))]);
      let g;
      try { m.gradients(d, { estimator: est, loss: () => { throw v; } }); g = 'returned'; } catch (e) { g = e; }
      const m2 = mk();
      const p = await settle(m2.fit(d, { estimator: est, epochs: 20, onProgress: () => { throw v; } }));
      const m3 = mk();
      const e = await settle(m3.fit(data(200), { estimator: est, epochs: 20, onEpochEnd: () => { throw v; } }));
      r[name] = { fitLoss: loss !== 'hang' && 'err' in loss && Object.is(loss.err, v), gradients: Object.is(g, v),
                  onProgress: 'err' in p && Object.is(p.err, v), stoppedEarly: m2.epochsRun < 20,
                  onEpochEnd: 'err' in e && Object.is(e.err, v) && m3.epochsRun === 1 };
      if (stacks.has(v)) r[name].stackKept = v.stack === stacks.get(v);
    }
    out(r);
  `,
    60000,
  );
  clean(t, c, 'throwing callbacks');
  for (const name of ['string', 'number', 'null', 'undefined', 'error', 'frozen', 'proxy']) {
    const error = ['error', 'frozen', 'proxy'].includes(name) ? { stackKept: true } : {};
    t.same(
      c.result[name],
      { fitLoss: true, gradients: true, onProgress: true, stoppedEarly: true, onEpochEnd: true, ...error },
      `a thrown ${name}: fit (JS loss, onProgress, onEpochEnd) rejects with it as is, gradients throws it, training stops`,
    );
  }
});

t.test('async callbacks: awaited before fit settles; a rejection rejects fit (no unhandled rejection)', async (t) => {
  const c = child(`
    const r = {};
    let unhandled = 0;
    process.on('unhandledRejection', () => unhandled++);
    const d = data(200);
    const boom = new Error('async boom');
    const m = mk();
    const res = await settle(m.fit(d, { epochs: 20, onEpochEnd: async () => { await new Promise((s) => setTimeout(s, 5)); throw boom; } }));
    r.rejected = res.err === boom;
    r.stopped = m.epochsRun < 20;
    let late = false;
    const m2 = mk();
    await m2.fit(d, { epochs: 2, onEpochEnd: async (e) => { await new Promise((s) => setTimeout(s, 50)); if (e.epoch === 2) late = true; } });
    r.awaited = late;
    const m3 = mk();
    const p = await settle(m3.fit(d, { epochs: 50, onProgress: () => Promise.reject('nope') }));
    r.progressRejected = p.err === 'nope';
    await new Promise((s) => setTimeout(s, 50));
    r.unhandled = unhandled;
    out(r);
  `);
  clean(t, c, 'async callbacks');
  t.same(
    c.result,
    { rejected: true, stopped: true, awaited: true, progressRejected: true, unhandled: 0 },
    'a rejecting onEpochEnd rejects fit with its error and stops training; a slow one is awaited; a rejecting onProgress rejects fit',
  );
});

t.test(
  'an async loss is refused (ERR_DATA), its rejection handled; an abort does not wait for a pending callback',
  async (t) => {
    const c = child(`
    const r = {};
    let unhandled = 0;
    process.on('unhandledRejection', () => unhandled++);
    const d = data(64);
    const est = of.ulr({ copies: 4 });
    const m = mk();
    const f = await settle(m.fit(d, { estimator: est, epochs: 1, loss: async () => { throw new Error('reward service down'); } }));
    r.fit = f.err instanceof of.DataError && f.err.code + ' ' + f.err.message;
    let g;
    try { m.gradients(d, { estimator: est, loss: () => Promise.reject(new Error('x')) }); g = 'returned'; } catch (e) { g = e instanceof of.DataError && e.code + ' ' + e.message; }
    r.gradients = g;
    // A thenable whose then() throws: still no unhandled rejection, still refused.
    const thenable = await settle(m.fit(d, { estimator: est, epochs: 1, loss: () => ({ then() { throw new Error('then'); } }) }));
    r.thenable = thenable.err instanceof of.DataError;
    // A callback promise that never settles: an abort rejects fit at once.
    const ac = new AbortController();
    const t0 = Date.now();
    const p = settle(m.fit(d, { estimator: est, epochs: 3, signal: ac.signal, onEpochEnd: () => new Promise(() => {}) }));
    setTimeout(() => ac.abort(), 200);
    const a = await Promise.race([p, new Promise((res) => setTimeout(() => res('hang'), 5000).unref())]);
    r.abort = a !== 'hang' && a.err instanceof of.AbortError;
    r.abortMs = Date.now() - t0;
    // A later rejection of a callback's promise left behind by the abort is handled too.
    const ac2 = new AbortController();
    let reject;
    const p2 = settle(m.fit(d, { estimator: est, epochs: 1, signal: ac2.signal, onEpochEnd: () => new Promise((_, rej) => (reject = rej)) }));
    await new Promise((res) => setTimeout(res, 200));
    ac2.abort();
    r.abort2 = (await p2).err instanceof of.AbortError;
    reject(new Error('late'));
    await new Promise((res) => setTimeout(res, 50));
    r.usable = m.predict(d.x, 64).length === 192;
    r.unhandled = unhandled;
    out(r);
  `);
    clean(t, c, 'async loss, abort');
    const msg =
      /^ERR_DATA the loss function must return \d+ finite per-row losses .*: got a promise; the loss must be synchronous/;
    t.match(
      c.result,
      { fit: msg, gradients: msg, thenable: true, abort: true, abort2: true, usable: true, unhandled: 0 },
      'an async loss rejects fit (throws from gradients) with a DataError; an aborted fit does not wait for a never-settling callback',
    );
    t.ok(
      (c.result.abortMs as number) < 3000,
      `the aborted fit settled ${String(c.result.abortMs)} ms after it started (abort at 200 ms)`,
    );
  },
);

t.test(
  'MPI broadcast: a root that is not a rank is an argument error',
  { skip: of.distributed.mpiAvailable() ? false : 'the MPI addon was not built (no MPI found at install time)' },
  async (t) => {
    const c = child(`
    const comm = of.distributed.mpi();
    const r = {};
    for (const root of [NaN, -1, 1.5, 1, '0'])
      try { comm.broadcast(new Float32Array(2), root); r[String(root)] = 'ran'; } catch (e) { r[String(root)] = e instanceof of.ConfigError ? e.code + ' ' + e.message : String(e); }
    const v = new Float32Array([1, 2]);
    comm.broadcast(v, 0);
    comm.broadcast(v);
    r.ok = Array.from(v);
    comm.finalize();
    out(r);
  `);
    clean(t, c, 'MPI broadcast root');
    for (const root of ['NaN', '-1', '1.5', '1', '0']) {
      t.match(
        c.result[root],
        /^ERR_CONFIG Expected integer in \[0, 1\) for root but received/,
        `root ${root} on a communicator of size 1`,
      );
    }
    t.same(c.result.ok, [1, 2], 'root 0 (given or by default) broadcasts');
  },
);

t.test(
  'MPI after finalize(): a typed error, not an abort',
  { skip: of.distributed.mpiAvailable() ? false : 'the MPI addon was not built (no MPI found at install time)' },
  async (t) => {
    const c = child(`
    const comm = of.distributed.mpi();
    comm.finalize();
    comm.finalize();
    const r = {};
    for (const [k, f] of [['allreduceSum', () => comm.allreduceSum(new Float32Array(4))], ['barrier', () => comm.barrier()], ['mpi', () => of.distributed.mpi()]])
      try { f(); r[k] = 'ran'; } catch (e) { r[k] = e instanceof of.OneForwardError ? e.code : String(e); }
    out(r);
  `);
    clean(t, c, 'MPI after finalize');
    t.same(c.result, { allreduceSum: 'ERR_DISPOSED', barrier: 'ERR_DISPOSED', mpi: 'ERR_DISPOSED' });
  },
);
