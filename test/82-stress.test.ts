// Concurrency stress: seeded random interleavings of fit (with JS losses and throwing callbacks), predictAsync,
// evaluateAsync, gradients whose JS loss calls back into the model, abort, dispose, buffer transfer and resize, and
// worker.terminate(), each scenario in a child process with a timeout. Nothing may crash (exit by signal or a
// non-zero code), hang, or leave a promise unsettled, and every failure must be typed (a OneForwardError) or be
// the very value a callback threw. ONEFORWARD_STRESS sets the number of scenarios (default 12, about 20-30 s).
import t from 'tap';
import * as path from 'path';
import { spawnSync } from 'child_process';

const SCENARIOS = Number(process.env.ONEFORWARD_STRESS ?? 12);
const lib = JSON.stringify(path.resolve(__dirname, '..', 'lib', 'index.js'));

// One scenario, run by `node -e` (or in a worker): 14 operations at seeded random times within ~150 ms.
const scenario = `
const of = require(${lib});
const { workerData, isMainThread, parentPort } = require('worker_threads');
const seed = isMainThread ? Number(process.argv[1]) : workerData.seed;
let s = seed >>> 0;
const r = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32);
const pick = (xs) => xs[Math.floor(r() * xs.length)];
const SENTINELS = ['stop', 42, null, undefined];
const untyped = [];
let unhandled = 0;
process.on('unhandledRejection', () => unhandled++);
const check = (e, what) => {
  if (e instanceof of.OneForwardError && of.ERROR_CODES.includes(e.code)) return;
  if (SENTINELS.includes(e)) return;
  untyped.push(what + ': ' + String(e && e.stack || e).slice(0, 300));
};
const data = (rows, resizable) => {
  const ab = resizable ? new ArrayBuffer(rows * 32, { maxByteLength: rows * 32 }) : new ArrayBuffer(rows * 32);
  const x = new Float32Array(ab);
  for (let i = 0; i < x.length; i++) x[i] = Math.sin(i * 0.37 + seed);
  return { x, y: Int32Array.from({ length: rows }, (_, i) => (i * 7) % 3), rows, shape: [8] };
};
const models = [1, 2].map((k) => of.sequential([of.dense(8, 16), of.relu(), of.dense(16, 3)], { seed: seed + k }));
const sets = [data(3000, false), data(3000, true), data(200, true), data(20000, false)];
const controllers = [];
const tracked = [];
const track = (p, what) => tracked.push(p.catch((e) => check(e, what)));
const sync = (f, what) => { try { f(); } catch (e) { check(e, what); } };
const est = () => of.ulr({ copies: pick([2, 4]) });
const nested = (m, d) => pick([
  () => sync(() => m.dispose(), 'nested dispose'),
  () => sync(() => m.predict(d.x), 'nested predict'),
  () => { try { structuredClone(d.x.buffer, { transfer: [d.x.buffer] }); } catch {} },
  () => { try { d.x.buffer.resize(0); } catch {} },
  () => {},
]);
const loss = (m, d, maybeThrow) => (o, tg, rows) => {
  if (r() < 0.3) nested(m, d)();
  if (maybeThrow && r() < 0.1) throw pick(SENTINELS);
  return new Float32Array(rows).fill(1);
};
const op = () => {
  const m = pick(models), d = pick(sets);
  const kind = pick(['fit', 'fit', 'fitLoss', 'predictAsync', 'evaluateAsync', 'gradients', 'abort', 'dispose', 'transfer', 'resize', 'trainStep', 'predict']);
  switch (kind) {
    case 'fit': case 'fitLoss': {
      const ac = new AbortController();
      controllers.push(ac);
      const thrower = r() < 0.2 ? pick(SENTINELS) : 'none';
      const opts = { estimator: est(), epochs: 1 + Math.floor(r() * 3), batchSize: 32, signal: ac.signal,
        onProgress: () => { if (thrower !== 'none' && r() < 0.5) throw thrower; },
        onEpochEnd: r() < 0.3 ? async () => { if (r() < 0.5) throw 'stop'; } : undefined };
      if (kind === 'fitLoss') opts.loss = loss(m, d, true);
      try { track(m.fit(d, opts), kind); } catch (e) { check(e, kind); }
      break;
    }
    case 'predictAsync': try { track(m.predictAsync(d.x), kind); } catch (e) { check(e, kind); } break;
    case 'evaluateAsync': try { track(m.evaluateAsync(d), kind); } catch (e) { check(e, kind); } break;
    case 'gradients': case 'trainStep': {
      let b;  // a small batch; none when the buffer was taken away (subarray of a detached buffer throws)
      try { b = d.rows > 1000 ? { x: d.x.subarray(0, 512), y: d.y.subarray(0, 64) } : d; } catch { break; }
      if (kind === 'gradients') sync(() => m.gradients(b, { estimator: est(), loss: loss(m, d, true) }), kind);
      else sync(() => m.trainStep(b, { estimator: est() }), kind);
      break;
    }
    case 'predict': sync(() => m.predict(d.x), kind); break;
    case 'abort': if (controllers.length) pick(controllers).abort(); break;
    case 'dispose': sync(() => m.dispose(), kind); break;
    case 'transfer': try { structuredClone(d.x.buffer, { transfer: [d.x.buffer] }); } catch {} break;
    case 'resize': try { d.x.buffer.resize(Math.floor(r() * d.x.buffer.byteLength / 32) * 32); } catch {} break;
  }
};
const timers = Array.from({ length: 14 }, () => new Promise((res) => setTimeout(() => { op(); res(); }, Math.floor(r() * 150))));
(async () => {
  await Promise.all(timers);
  await Promise.all(tracked);
  controllers.forEach((c) => c.abort());
  const result = { started: tracked.length, untyped, unhandled };
  if (isMainThread) process.stdout.write(JSON.stringify(result) + '\\n');
  else parentPort.postMessage(result);
})();
`;

// Worker mode: the scenario runs in a worker that the main thread terminates at a random moment; the main thread
// must survive and its own model keep working.
const inWorker = `
const { Worker } = require('worker_threads');
const of = require(${lib});
const seed = Number(process.argv[1]);
const w = new Worker(${JSON.stringify(scenario)}, { eval: true, workerData: { seed } });
w.on('error', () => {});
let finished = false;
w.on('message', () => { finished = true; });
setTimeout(async () => {
  await w.terminate();
  const m = of.sequential([of.dense(8, 4), of.relu(), of.dense(4, 3)], { seed: 1 });
  const ok = m.predict(new Float32Array(8)).length === 3;
  process.stdout.write(JSON.stringify({ terminated: true, finished, mainOk: ok }) + '\\n');
}, 20 + (seed * 37) % 300);
`;

t.test(`${SCENARIOS} seeded random interleavings: no crash, no hang, every promise settles, every error typed`, { timeout: 300000 }, async (t) => {
  const t0 = Date.now();
  for (let i = 0; i < SCENARIOS; i++) {
    const seed = 1000 + i;
    const worker = i % 3 === 2;
    const r = spawnSync(process.execPath, ['-e', worker ? inWorker : scenario, String(seed)], {
      encoding: 'utf8', timeout: 20000, env: { ...process.env, ONEFORWARD_BACKEND: 'cpu' },
    });
    const what = `seed ${seed}${worker ? ' (in a worker, terminated)' : ''}`;
    let res: Record<string, unknown> = {};
    try {
      res = JSON.parse(r.stdout.trim().split('\n').pop() ?? '') as Record<string, unknown>;
    } catch {
      res = {};
    }
    const ok = r.signal === null && r.status === 0 &&
      (worker ? res.terminated === true && res.mainOk === true : (res.untyped as string[] | undefined)?.length === 0 && res.unhandled === 0);
    t.ok(ok, `${what}: exit ${r.status}, signal ${r.signal ?? 'none'}, ${JSON.stringify(res)}${ok ? '' : `; stderr: ${r.stderr.slice(-800)}`}`);
  }
  t.ok(Date.now() - t0 < 120000, `${SCENARIOS} scenarios in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
});
