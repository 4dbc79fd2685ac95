// Concurrency stress scenarios shared by test/82-stress (a dozen, in CI) and `npm run bench -- stress` (1,000):
// seeded random interleavings of fit (with JS losses and throwing callbacks), predictAsync, evaluateAsync,
// gradients whose JS loss calls back into the model, abort, dispose, buffer transfer and resize, and
// worker.terminate(), each scenario in a child process with a timeout. Each run is sorted into exactly one
// outcome; only 'ok' passes.
import * as path from 'path';
import { spawn } from 'child_process';

const lib = JSON.stringify(path.resolve(__dirname, '..', '..', 'lib', 'index.js'));

// One scenario, run by `node -e` (or in a worker): 14 operations at seeded random times within ~150 ms. It prints
// one JSON line: the promises it started, the untyped errors, the unhandled rejections and, where the event loop
// ran dry or the watchdog (argv[2] ms) fired first, how many promises never settled.
const scenario = `
const of = require(${lib});
const { workerData, isMainThread, parentPort } = require('worker_threads');
const seed = isMainThread ? Number(process.argv[1]) : workerData.seed;
const watchdogMs = isMainThread ? Number(process.argv[2]) : 0;
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
let pending = 0;
const track = (p, what) => { pending++; tracked.push(p.catch((e) => check(e, what)).finally(() => pending--)); };
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
let done = false;
const report = (extra) => {
  done = true;
  const result = { started: tracked.length, untyped, unhandled, ...extra };
  if (isMainThread) process.stdout.write(JSON.stringify(result) + '\\n');
  else parentPort.postMessage(result);
};
if (isMainThread) {
  // A promise that never settles: the loop runs dry (exit) or native work keeps it alive (the watchdog).
  process.on('exit', () => { if (!done) report({ unsettled: pending }); });
  setTimeout(() => { report({ unsettled: pending, watchdog: true }); process.exit(3); }, watchdogMs).unref();
}
const timers = Array.from({ length: 14 }, () => new Promise((res) => setTimeout(() => { op(); res(); }, Math.floor(r() * 150))));
(async () => {
  await Promise.all(timers);
  await Promise.all(tracked);
  controllers.forEach((c) => c.abort());
  report({ unsettled: 0 });
})();
`;

// Worker mode: the scenario runs in a worker that the main thread terminates at a random moment; the main thread
// must survive and its own model keep working. The worker's result counts where it finished first.
const inWorker = `
const { Worker } = require('worker_threads');
const of = require(${lib});
const seed = Number(process.argv[1]);
const w = new Worker(${JSON.stringify(scenario)}, { eval: true, workerData: { seed } });
w.on('error', () => {});
let result = null;
w.on('message', (m) => { result = m; });
setTimeout(async () => {
  await w.terminate();
  const m = of.sequential([of.dense(8, 4), of.relu(), of.dense(4, 3)], { seed: 1 });
  const ok = m.predict(new Float32Array(8)).length === 3;
  process.stdout.write(JSON.stringify({ terminated: true, finished: result !== null, mainOk: ok, untyped: result ? result.untyped : [], unhandled: result ? result.unhandled : 0, unsettled: 0 }) + '\\n');
}, 20 + (seed * 37) % 300);
`;

/** How one scenario ended, checked in this order: a signal, a timeout, a non-zero exit ('failed'), a promise that
 * never settled, an untyped error, an unhandled rejection or a main thread that stopped working ('failed'). */
export type StressKind = 'crash' | 'hang' | 'unsettled' | 'untyped' | 'failed' | 'ok';

/** One scenario's outcome. */
export interface StressOutcome {
  seed: number;
  /** The scenario ran in a worker that the main thread terminated. */
  worker: boolean;
  kind: StressKind;
  /** Promises that never settled (0 unless kind is 'unsettled' or 'hang'). */
  unsettled: number;
  /** Errors that were neither a OneForwardError with a known code nor the value a callback threw. */
  untyped: string[];
  /** A one-line account: exit code, signal, the child's JSON line, and stderr's tail when not ok. */
  detail: string;
}

/** Seeds 1000, 1001, ... run in order; every third runs in a worker that is terminated (as in test/82). */
export const stressSeed = (i: number) => ({ seed: 1000 + i, worker: i % 3 === 2 });

/**
 * Runs one scenario in a child process (ONEFORWARD_BACKEND=cpu plus the caller's environment). A child still running
 * after `timeoutMs` is killed and counts as a hang; its own watchdog fires 5 s earlier so that it can say what is
 * still pending.
 */
export function runStressScenario(seed: number, worker: boolean, timeoutMs: number): Promise<StressOutcome> {
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['-e', worker ? inWorker : scenario, String(seed), String(Math.max(1000, timeoutMs - 5000))],
      {
        env: { ...process.env, ONEFORWARD_BACKEND: 'cpu' },
        stdio: ['ignore', 'pipe', 'pipe'],
      },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    child.stderr.on('data', (b: Buffer) => (stderr = (stderr + b.toString()).slice(-4000)));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      let res: {
        untyped?: string[];
        unhandled?: number;
        unsettled?: number;
        watchdog?: boolean;
        terminated?: boolean;
        mainOk?: boolean;
      } = {};
      try {
        res = JSON.parse(stdout.trim().split('\n').pop() ?? '');
      } catch {
        res = {};
      }
      const untyped = res.untyped ?? [];
      const unsettled = res.unsettled ?? 0;
      const kind: StressKind =
        signal !== null && !timedOut
          ? 'crash'
          : timedOut || res.watchdog
            ? 'hang'
            : code !== 0
              ? 'failed'
              : unsettled > 0
                ? 'unsettled'
                : untyped.length > 0
                  ? 'untyped'
                  : res.unhandled !== 0 || (worker && !(res.terminated && res.mainOk))
                    ? 'failed'
                    : 'ok';
      const detail =
        `exit ${code}, signal ${signal ?? 'none'}${timedOut ? ` (killed after ${timeoutMs} ms)` : ''}, ${JSON.stringify(res)}` +
        (kind === 'ok' ? '' : `; stderr: ${stderr.slice(-800)}`);
      resolve({ seed, worker, kind, unsettled, untyped, detail });
    });
  });
}

/** Runs scenarios 0 .. count-1 (see stressSeed), `parallel` child processes at a time, in seed order. */
export async function runStress(
  count: number,
  parallel: number,
  timeoutMs: number,
  onOutcome?: (o: StressOutcome, i: number) => void,
): Promise<StressOutcome[]> {
  const out: StressOutcome[] = new Array(count);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.max(1, parallel) }, async () => {
      while (next < count) {
        const i = next++;
        const { seed, worker } = stressSeed(i);
        out[i] = await runStressScenario(seed, worker, timeoutMs);
        onOutcome?.(out[i]!, i);
      }
    }),
  );
  return out;
}
