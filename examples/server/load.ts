/**
 * A load run against the example server, shared by its test and its bench: two training jobs train while a
 * steady stream of predict requests hits a model that finished training; measures predict latency (client
 * side) and the event-loop delay of the server process (perf_hooks.monitorEventLoopDelay). Loopback only.
 */
import { monitorEventLoopDelay } from 'perf_hooks';
import type { AddressInfo } from 'net';
import { buildServer } from './server';
import * as of from 'oneforward';

export type LoadResult = {
  predictRequests: number;
  predictP50Ms: number;
  predictP99Ms: number;
  eventLoopP50Ms: number;
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  trainingJobs: number;
  seconds: number;
  allPredictionsOk: boolean;
};

/** The q-quantile of xs (nearest rank, from below); NaN for none. Shared with soak.ts. */
export const quantile = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
};

export async function runLoad(options: {
  seconds: number;
  jobLayers?: number[];
  copies?: number;
}): Promise<LoadResult> {
  const app = buildServer({ maxJobs: 3 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const post = (url: string, body: unknown) =>
    fetch(base + url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const waitDone = async (id: string) => {
    for (;;) {
      const j = (await (await fetch(`${base}/jobs/${id}`)).json()) as { state: string };
      if (j.state !== 'running') return j;
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  try {
    const a = (await (await post('/jobs', { layers: [784, 32, 10], estimator: 'bp', epochs: 1 })).json()) as {
      id: string;
    };
    await waitDone(a.id);
    const layers = options.jobLayers ?? [784, 256, 10];
    const jobs = [];
    for (let i = 0; i < 2; i++) {
      jobs.push(
        (
          (await (
            await post('/jobs', { layers, estimator: 'ulr', copies: options.copies ?? 32, epochs: 100, seed: i })
          ).json()) as { id: string }
        ).id,
      );
    }
    const { test } = of.datasets.digits();
    const rows = Array.from({ length: 8 }, (_, r) => Array.from(test.x.subarray(r * 784, (r + 1) * 784)));
    const h = monitorEventLoopDelay({ resolution: 1 });
    h.enable();
    const latencies: number[] = [];
    let allOk = true;
    const t0 = performance.now();
    while (performance.now() - t0 < options.seconds * 1000) {
      const s = performance.now();
      const res = await post(`/models/${a.id}/predict`, { inputs: rows });
      const body = (await res.json()) as { classes?: number[] };
      latencies.push(performance.now() - s);
      allOk &&= res.status === 200 && Array.isArray(body.classes) && body.classes.length === rows.length;
      await new Promise((r) => setTimeout(r, 5));
    }
    h.disable();
    const seconds = (performance.now() - t0) / 1000;
    for (const id of jobs) await fetch(`${base}/jobs/${id}`, { method: 'DELETE' });
    for (const id of jobs) await waitDone(id);
    return {
      predictRequests: latencies.length,
      predictP50Ms: quantile(latencies, 0.5),
      predictP99Ms: quantile(latencies, 0.99),
      eventLoopP50Ms: h.percentile(50) / 1e6,
      eventLoopP99Ms: h.percentile(99) / 1e6,
      eventLoopMaxMs: h.max / 1e6,
      trainingJobs: jobs.length,
      seconds,
      allPredictionsOk: allOk,
    };
  } finally {
    await app.close();
  }
}
