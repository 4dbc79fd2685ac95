// Bench case "adversarial": the hostile-argument, fuzz and corrupted-file tests (test/51, 80, 81) at sizes CI
// cannot afford, over several seeds, each run in its own process (2 at a time) so that a crash or a hang is seen
// from outside. Counts crashes (exit by signal), hangs (killed at the time limit, or a call with no answer),
// untyped errors and wrong results (a corrupted file that loads as something else). Prints one JSON line.
import * as path from 'path';
import { spawn } from 'child_process';

type Run = { test: string; env: Record<string, string> };
const testFile = (name: string) => path.join(__dirname, '..', '..', 'test', `${name}.test.js`);
// Two lanes side by side: the fuzz runs one after another (each may try buffers of many GiB, which the engine
// refuses once the system lacks the memory; two at once could both pass that check), the others in the second.
const lanes: Run[][] = [
  [2026, 7].map((seed) => ({
    test: '80-hardening',
    env: { ONEFORWARD_FUZZ: '3000', ONEFORWARD_FUZZ_SEED: String(seed) },
  })),
  [
    ...[51, 1, 2].map((seed) => ({
      test: '51-hostile',
      env: { ONEFORWARD_HOSTILE: '300', ONEFORWARD_HOSTILE_SEED: String(seed) },
    })),
    ...[81, 1, 2].map((seed) => ({
      test: '84-loaders',
      env: { ONEFORWARD_FILES_FUZZ: '3000', ONEFORWARD_FILES_SEED: String(seed) },
    })),
  ],
];
const LIMIT_MS = 20 * 60 * 1000;

export type Result = Run & {
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
  failures: string[];
};

function runOne(run: Run): Promise<Result> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ['--expose-gc', testFile(run.test)], {
      env: { ...process.env, ...run.env, ONEFORWARD_BACKEND: 'cpu', TAP_TIMEOUT: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (out += b.toString()));
    let timedOut = false;
    const timer = setTimeout(() => ((timedOut = true), child.kill('SIGKILL')), LIMIT_MS);
    child.on('close', (exit, signal) => {
      clearTimeout(timer);
      const sum = (re: RegExp) => [...out.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
      // test/51 lists each failing call in its diff as `+  "label: what"`; a hung call says "no answer within".
      const listed = [...out.matchAll(/^\s+\+ {2}"(.*)$/gm)].map((m) => m[1]!);
      const hangs = listed.filter((l) => /no answer within/.test(l)).length;
      const r: Result = {
        ...run,
        exit,
        signal,
        timedOut,
        seconds: (Date.now() - t0) / 1000,
        calls:
          sum(/(\d+) calls[:,]/g) +
          sum(/(\d+) calls succeeded/g) +
          sum(/, (\d+) failed with typed errors/g) +
          sum(/(\d+) corrupted files refused/g) +
          sum(/(\d+) loaded anyway/g),
        typed: sum(/, (\d+) failed with typed errors/g) + sum(/(\d+) corrupted files refused/g),
        loaded: sum(/(\d+) loaded anyway/g),
        untyped:
          (run.test === '51-hostile' ? listed.length - hangs : 0) +
          (out.match(/untyped error/g) ?? []).length +
          sum(/, (\d+) with untyped ones/g),
        hangs: hangs + (timedOut ? 1 : 0),
        wrong: sum(/(\d+) of them wrong/g),
        notOk: (out.match(/^\s*not ok /gm) ?? []).length,
        failures: out
          .split('\n')
          .filter((l) => /^\s*not ok /.test(l))
          .slice(0, 20),
      };
      process.stderr.write(
        `adversarial: ${run.test} ${JSON.stringify(run.env)}: exit ${exit}, signal ${signal ?? 'none'}, ${r.calls} calls, ${r.untyped} untyped, ${r.hangs} hangs, ${r.wrong} wrong, ${r.notOk} not ok, ${r.seconds.toFixed(0)} s\n`,
      );
      resolve(r);
    });
  });
}

(async () => {
  const results = await Promise.all(
    lanes.map(async (lane) => {
      const out: Result[] = [];
      for (const run of lane) out.push(await runOne(run));
      return out;
    }),
  );
  process.stdout.write(JSON.stringify({ runs: results.flat() }) + '\n');
})();
