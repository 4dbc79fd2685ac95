/**
 * A soak run against the example server, shared by test/91-server-soak.test.ts and `npm run bench -- server`:
 * training jobs created and cancelled over and over, measuring the process's resident memory after a warm-up and
 * at the end (after GC when run with --expose-gc), and how long a cancel takes to end a job (DELETE sent to the job
 * seen as 'cancelled'), for ordinary jobs and for a large one the memory budget still accepts. Loopback only.
 * Run as a script it prints the result as one JSON line: `node --expose-gc soak.js '{"cycles":200}'`.
 */
import type { AddressInfo } from 'net';
import { quantile } from './load';
import { buildServer } from './server';

export type SoakOptions = {
  /** Create/cancel cycles measured after the warm-up. Defaults to `200`. */
  cycles?: number;
  /** Cycles run before the first memory reading. Defaults to `10`. */
  warmup?: number;
  /** The cycled jobs' layer widths. Defaults to `[784, 256, 10]`. */
  layers?: number[];
  /** The cycled jobs' ULR copies. Defaults to `32`. */
  copies?: number;
  /** Cancels of the large job (each one a new job). Defaults to `10`. */
  largeCycles?: number;
  /** The large job: the widest the default budget accepts at its copies and batch. Defaults to `[784, 2048, 2048, 10]`. */
  largeLayers?: number[];
};

export type SoakResult = {
  cycles: number;
  rssWarmMB: number;
  rssEndMB: number;
  /** (rssEnd - rssWarm) / rssWarm, each the median of ten readings: the first ten cycles after the warm-up, the last ten. */
  rssGrowth: number;
  /** V8's heap (heapTotal) at the same two points, in MiB: how much of the growth is JavaScript's. */
  heapWarmMB: number;
  heapEndMB: number;
  gc: boolean;
  cancelP50Ms: number;
  cancelP99Ms: number;
  largeMemoryMB: number;
  largeCancels: number;
  largeCancelP50Ms: number;
  largeCancelP99Ms: number;
  largeCancelMaxMs: number;
  /** Jobs still in the server's table at the end (every one was freed: 0). */
  jobsLeft: number;
  seconds: number;
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function runSoak(options: SoakOptions = {}): Promise<SoakResult> {
  const cycles = options.cycles ?? 200,
    warmup = options.warmup ?? 10,
    largeCycles = options.largeCycles ?? 10;
  const app = buildServer({ maxJobs: 1 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const gc = (globalThis as { gc?: () => void }).gc;
  const rss = () => {
    gc?.();
    gc?.();
    return process.memoryUsage().rss;
  };
  // One job: created, trained for `after` ms, cancelled; returns the cancel's latency and the job's estimate.
  const cycle = async (body: object, after: number) => {
    const res = await fetch(`${base}/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    if (res.status !== 202) throw new Error(`POST /jobs answered ${res.status}: ${await res.text()}`);
    const { id } = (await res.json()) as { id: string };
    await sleep(after);
    const t0 = performance.now();
    await fetch(`${base}/jobs/${id}`, { method: 'DELETE' });
    for (;;) {
      const j = (await (await fetch(`${base}/jobs/${id}`)).json()) as { state: string; memoryBytes: number };
      if (j.state !== 'running') {
        const ms = performance.now() - t0;
        if (j.state !== 'cancelled' && j.state !== 'done') throw new Error(`job ${id} ended ${j.state}`);
        await fetch(`${base}/jobs/${id}`, { method: 'DELETE' }); // free it now rather than after the retention period
        return { ms, bytes: j.memoryBytes };
      }
      await sleep(2);
    }
  };
  const t0 = performance.now();
  try {
    const small = {
      layers: options.layers ?? [784, 256, 10],
      estimator: 'ulr',
      copies: options.copies ?? 32,
      epochs: 100,
      batchSize: 64,
    };
    const latencies: number[] = [];
    // Resident memory after every cycle (after GC); a leak shows as the median of the last ten readings above the
    // median of the first ten after the warm-up (medians: one reading can catch the allocator mid-reuse).
    const rssAfter: number[] = [],
      heapAfter: number[] = [];
    for (let i = 0; i < warmup + cycles; i++) {
      const { ms } = await cycle({ ...small, seed: i }, 10 + (i % 5) * 20);
      if (i < warmup) continue;
      latencies.push(ms);
      rssAfter.push(rss());
      heapAfter.push(process.memoryUsage().heapTotal);
    }
    const n = Math.min(10, rssAfter.length);
    const rssWarm = quantile(rssAfter.slice(0, n), 0.5),
      rssEnd = quantile(rssAfter.slice(-n), 0.5);
    const heapWarm = quantile(heapAfter.slice(0, n), 0.5),
      heapEnd = quantile(heapAfter.slice(-n), 0.5);
    const large = {
      layers: options.largeLayers ?? [784, 2048, 2048, 10],
      estimator: 'ulr',
      copies: 32,
      epochs: 100,
      batchSize: 256,
    };
    const largeMs: number[] = [];
    let largeBytes = 0;
    for (let i = 0; i < largeCycles; i++) {
      // cancel in the middle of a step: the first one (allocation included) takes a few hundred ms here
      const { ms, bytes } = await cycle({ ...large, seed: i }, 400 + (i % 4) * 150);
      largeMs.push(ms);
      largeBytes = bytes;
    }
    let jobsLeft = 0;
    for (let id = 1; id <= warmup + cycles + largeCycles; id++)
      if ((await fetch(`${base}/jobs/${id}`)).status !== 404) jobsLeft++;
    return {
      cycles,
      rssWarmMB: rssWarm / 2 ** 20,
      rssEndMB: rssEnd / 2 ** 20,
      rssGrowth: (rssEnd - rssWarm) / rssWarm,
      heapWarmMB: heapWarm / 2 ** 20,
      heapEndMB: heapEnd / 2 ** 20,
      gc: gc !== undefined,
      cancelP50Ms: quantile(latencies, 0.5),
      cancelP99Ms: quantile(latencies, 0.99),
      largeMemoryMB: largeBytes / 2 ** 20,
      largeCancels: largeMs.length,
      largeCancelP50Ms: quantile(largeMs, 0.5),
      largeCancelP99Ms: quantile(largeMs, 0.99),
      largeCancelMaxMs: Math.max(...largeMs),
      jobsLeft,
      seconds: (performance.now() - t0) / 1000,
    };
  } finally {
    await app.close();
  }
}

if (require.main === module) {
  runSoak(JSON.parse(process.argv[2] ?? '{}') as SoakOptions).then(
    (r) => process.stdout.write(JSON.stringify(r) + '\n'),
    (e: Error) => {
      process.stderr.write(`${e.stack ?? e.message}\n`);
      process.exit(1);
    },
  );
}
