// The hardening suites: fuzz, stress and adversarial (test/51, 80, 82, 84 at large counts).
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { runJsonCase } from './common';
import type { Result as AdversarialResult } from './cases/adversarial';

// Suite "fuzz": the hardening test with 10,000 fuzz iterations instead of CI's 2,000.
export function fuzz(results: string) {
  const iterations = 10000;
  const r = spawnSync(process.execPath, ['--expose-gc', path.join(__dirname, '..', 'test', '80-hardening.test.js')], {
    encoding: 'utf8',
    env: { ...process.env, ONEFORWARD_FUZZ: String(iterations), TAP_TIMEOUT: '0' },
  });
  const line = /ok \d+ - (\d+) calls succeeded, (\d+) failed with typed errors \(([^)]*)\)/.exec(r.stdout);
  const report = {
    suite: 'fuzz',
    date: new Date().toISOString(),
    iterations,
    exitCode: r.status,
    succeeded: line ? Number(line[1]) : null,
    typedErrors: line ? Number(line[2]) : null,
    codes: line?.[3] ?? null,
    untyped: (r.stdout.match(/untyped error/g) ?? []).length,
  };
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'fuzz.json'), JSON.stringify(report, null, 2) + '\n');
  process.stdout.write(
    `# fuzz: ${iterations} iterations, exit ${r.status}: ${report.succeeded} succeeded, ${report.typedErrors} typed errors (${report.codes}), ${report.untyped} untyped\n`,
  );
}

// Suite "stress": test/82's random interleavings at full size (bench/cases/stress.ts). Every count but ok must be 0.
export function stress(results: string) {
  const r = runJsonCase<{
    scenarios: number;
    inWorkers: number;
    parallel: number;
    timeoutMs: number;
    seconds: number;
    crashes: number;
    hangs: number;
    unsettled: number;
    untyped: number;
    failed: number;
    ok: number;
    notOk: unknown[];
  }>('stress');
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(path.join(results, 'stress.json'), JSON.stringify({ suite: 'stress', date, ...r }, null, 2) + '\n');
  const md =
    `# stress (${date.slice(0, 10)})\n\n${r.scenarios} seeded random interleavings (seeds 1000-${999 + r.scenarios}; ${r.inWorkers} in a worker that is terminated at a random moment) ` +
    `of fit with JS losses and throwing callbacks, predictAsync, evaluateAsync, gradients, trainStep, abort, dispose and buffer transfer/resize, ` +
    `each in a child process, ${r.parallel} at a time, ${r.timeoutMs / 1000} s limit; ${r.seconds.toFixed(0)} s in all.\n\n` +
    `| scenarios | crashes (exit by signal) | hangs (time limit) | unsettled promises | untyped errors | other failures | ok |\n|---|---|---|---|---|---|---|\n` +
    `| ${r.scenarios} | ${r.crashes} | ${r.hangs} | ${r.unsettled} | ${r.untyped} | ${r.failed} | ${r.ok} |\n`;
  fs.writeFileSync(path.join(results, 'stress.md'), md);
  process.stdout.write(md);
}

// Suite "adversarial": test/51 (hostile arguments), 80 (fuzz) and 84 (corrupted files) at large counts over
// several seeds (bench/cases/adversarial.ts). Every count but calls must be 0.
export function adversarial(results: string) {
  const r = runJsonCase<{ runs: AdversarialResult[] }>('adversarial');
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'adversarial.json'),
    JSON.stringify({ suite: 'adversarial', date, ...r }, null, 2) + '\n',
  );
  const total = (k: 'calls' | 'untyped' | 'hangs' | 'wrong' | 'notOk') => r.runs.reduce((a, x) => a + x[k], 0);
  const crashes = r.runs.filter((x) => x.signal !== null && !x.timedOut).length;
  const md =
    `# adversarial (${date.slice(0, 10)})\n\nEach row is one test file in its own process (2 at a time): test/80's fuzz of configs and inputs, ` +
    `test/51's calls of every exported function and Model method with hostile arguments (its 15 fixed values plus seeded random ones), ` +
    `test/81's hostile and corrupted files (bytes flipped, cut short, repeated). A wrong result is a corrupted file that loads as something else.\n\n` +
    `| test | settings | calls | typed errors | crash | hangs | untyped errors | wrong results | failed assertions | s |\n|---|---|---|---|---|---|---|---|---|---|\n` +
    r.runs
      .map(
        (x) =>
          `| ${x.test} | ${Object.entries(x.env)
            .map(([k, v]) => `${k}=${v}`)
            .join(
              ' ',
            )} | ${x.calls} | ${x.typed || '—'} | ${x.signal !== null && !x.timedOut ? x.signal : 'no'} | ${x.hangs} | ${x.untyped} | ${x.wrong} | ${x.notOk} | ${x.seconds.toFixed(0)} |`,
      )
      .join('\n') +
    `\n\nIn all: ${total('calls')} calls, ${crashes} crashes, ${total('hangs')} hangs, ${total('untyped')} untyped errors, ${total('wrong')} wrong results, ${total('notOk')} failed assertions.\n`;
  fs.writeFileSync(path.join(results, 'adversarial.md'), md);
  process.stdout.write(md);
}
