// Suite "distributed" (issue 7): the distributed case under mpirun with 1 and 2 ranks (1 thread each), measured
// compute and all-reduce time per step, and a model of step time for N ranks on 10 and 100 Gb/s networks.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import * as of from '../lib/index';

export function distributedSuite(results: string) {
  if (!of.distributed.mpiAvailable()) {
    process.stdout.write(
      '# distributed: skipped (the MPI addon was not built: install an MPI and npm install again)\n',
    );
    return;
  }
  const run = (n: number) => {
    const r = spawnSync(
      'mpirun',
      [
        '--allow-run-as-root',
        '--oversubscribe',
        '--mca',
        'btl',
        'self,vader,tcp',
        '-x',
        'ONEFORWARD_THREADS',
        '-np',
        String(n),
        process.execPath,
        path.join(__dirname, 'cases', 'distributed.js'),
      ],
      {
        encoding: 'utf8',
        env: { ...process.env, ONEFORWARD_THREADS: '1', OMPI_MCA_btl_vader_single_copy_mechanism: 'none' },
        maxBuffer: 16 << 20,
      },
    );
    if (r.status !== 0) throw new Error(`mpirun -np ${n} failed: ${r.stderr.slice(-400)}`);
    return JSON.parse(r.stdout.trim().split('\n').pop()!) as {
      ranks: number;
      library: string;
      rows: { mode: string; estimator: string; computeMs: number; allreduceMs: number; bytesPerStep: number }[];
    };
  };
  const one = run(1),
    two = run(2);
  // ring all-reduce: each rank sends and receives 2 (N - 1) / N of the buffer, in 2 (N - 1) messages
  const nets = [
    { name: '10 Gb/s Ethernet', bytesPerMs: 1.25e6, latencyMs: 0.02 },
    { name: '100 Gb/s InfiniBand', bytesPerMs: 12.5e6, latencyMs: 0.002 },
  ];
  const Ns = [1, 2, 4, 8, 16, 32, 64];
  const model = one.rows.map((r) => ({
    estimator: r.estimator,
    mode: r.mode,
    bytesPerStep: r.bytesPerStep,
    nets: nets.map((net) => ({
      net: net.name,
      stepMs: Ns.map(
        (n) =>
          r.computeMs / n +
          (n > 1 ? (((2 * (n - 1)) / n) * r.bytesPerStep) / net.bytesPerMs + 2 * (n - 1) * net.latencyMs : 0),
      ),
    })),
  }));
  const date = new Date().toISOString();
  fs.mkdirSync(results, { recursive: true });
  fs.writeFileSync(
    path.join(results, 'distributed.json'),
    JSON.stringify({ suite: 'distributed', date, library: one.library, one, two, model, Ns }, null, 2) + '\n',
  );
  const md =
    `# distributed (${date.slice(0, 10)}, ${one.library})\n\nDigits MLP 784-256-10, batch 64 per step, 1 thread per rank, median of 40 steps.\n\n` +
    `| mode | estimator | bytes per step | 1 rank: compute ms | 2 ranks: compute ms | 2 ranks: all-reduce ms |\n|---|---|---|---|---|---|\n` +
    one.rows
      .map(
        (r, i) =>
          `| ${r.mode} | ${r.estimator} | ${r.bytesPerStep} | ${r.computeMs.toFixed(2)} | ${two.rows[i]!.computeMs.toFixed(2)} | ${two.rows[i]!.allreduceMs.toFixed(3)} |`,
      )
      .join('\n') +
    `\n\nModel: step(N) = compute(1 rank) / N + ring all-reduce (2 (N-1)/N x bytes / bandwidth + 2 (N-1) x latency). Modeled ms per step:\n\n` +
    `| estimator | network | ${Ns.map((n) => `N=${n}`).join(' | ')} |\n|---|---|${Ns.map(() => '---').join('|')}|\n` +
    model
      .flatMap((r) =>
        r.nets.map((n) => `| ${r.estimator} | ${n.net} | ${n.stepMs.map((v) => v.toFixed(2)).join(' | ')} |`),
      )
      .join('\n') +
    '\n';
  fs.writeFileSync(path.join(results, 'distributed.md'), md);
  process.stdout.write(md);
}
