// What the suites share: a bench case run in a child process (bench/cases/<name>.js, its last stdout line is JSON),
// and percentages.
import { execFileSync } from 'child_process';
import * as path from 'path';
import type { Run } from './cases/architectures';

export function runJsonCase<T>(name: string): T {
  process.stderr.write(`bench: case ${name}\n`);
  const out = execFileSync(process.execPath, [path.join(__dirname, 'cases', `${name}.js`)], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as T;
}

export const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

// The architectures suite's results (bench/cases/architectures.ts).
export type Arch = { runs: Run[] };
