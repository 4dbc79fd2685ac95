// Bench case "stress": test/82's seeded random interleavings (fit, predictAsync, JS losses, abort, dispose, buffer
// detach/resize, worker.terminate) at full size, each in a child process, 2 at a time. Not a timing: it counts the
// outcomes (test/helpers/stress.ts). Arguments: [count = 1000] [parallel = 2] [timeoutMs = 60000]. Prints
// progress on stderr and one JSON line.
import { runStress, StressOutcome } from '../../test/helpers/stress';

const [count = 1000, parallel = 2, timeoutMs = 60000] = process.argv.slice(2).map(Number);

(async () => {
  const t0 = Date.now();
  const bad: StressOutcome[] = [];
  const outcomes = await runStress(count, parallel, timeoutMs, (o, i) => {
    if (o.kind !== 'ok') {
      bad.push(o);
      process.stderr.write(`stress: seed ${o.seed}: ${o.kind}: ${o.detail}\n`);
    }
    if ((i + 1) % 50 === 0) process.stderr.write(`stress: ${i + 1}/${count}, ${bad.length} not ok\n`);
  });
  const n = (k: StressOutcome['kind']) => outcomes.filter((o) => o.kind === k).length;
  process.stdout.write(
    JSON.stringify({
      scenarios: outcomes.length,
      inWorkers: outcomes.filter((o) => o.worker).length,
      parallel,
      timeoutMs,
      seconds: (Date.now() - t0) / 1000,
      crashes: n('crash'),
      hangs: n('hang'),
      unsettled: n('unsettled'),
      untyped: n('untyped'),
      failed: n('failed'),
      ok: n('ok'),
      notOk: bad.map((o) => ({ seed: o.seed, worker: o.worker, kind: o.kind, detail: o.detail })),
    }) + '\n',
  );
})();
