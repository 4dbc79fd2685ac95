// The Fastify example: schema validation and limits, job lifecycle (progress, SSE, cancel), predictions
// served while two other jobs train, with the event-loop delay and predict latency measured (loopback only).
import t from 'tap';
import type { AddressInfo } from 'net';
import { buildServer } from '../examples/server/server';
import { runLoad } from '../examples/server/load';

t.test('routes, validation, limits, SSE, cancel', async (t) => {
  const app = buildServer({ maxJobs: 1 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const post = (url: string, body: unknown) =>
    fetch(base + url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  t.equal((await post('/jobs', { layers: [784, 10], bogus: 1 })).status, 400, 'unknown fields rejected by the schema');
  t.equal((await post('/jobs', { layers: [784, 32, 10], epochs: 1000 })).status, 400, 'epochs out of range');
  t.equal((await post('/jobs', { layers: [784, 100000, 10] })).status, 413, 'width limit');
  t.equal((await post('/jobs', { layers: [5, 10] })).status, 400, 'digits shape');
  // A job whose step would hold more than the memory budget is refused before anything is allocated.
  const huge = await post('/jobs', { layers: [784, 4096, 4096, 4096, 10], copies: 512, batchSize: 4096 });
  t.equal(huge.status, 413, 'memory budget');
  const hugeBody = (await huge.json()) as { code: string; estimateBytes: number; budgetBytes: number; error: string };
  t.equal(hugeBody.code, 'ERR_MEMORY_BUDGET');
  t.equal(hugeBody.budgetBytes, 2 ** 30);
  t.ok(hugeBody.estimateBytes > 2 ** 30, `estimate ${(hugeBody.estimateBytes / 2 ** 30).toFixed(1)} GiB`);
  t.match(hugeBody.error, /MiB, over the server's budget of 1024 MiB/);
  const big = await fetch(base + '/jobs', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ layers: [784, 10], pad: 'x'.repeat(20000) }),
  });
  t.equal(big.status, 413, 'a job body over 16 KiB');
  const res = await post('/jobs', { layers: [784, 32, 10], estimator: 'ulr', copies: 8, epochs: 2 });
  t.equal(res.status, 202);
  const { id } = (await res.json()) as { id: string };
  t.equal((await post('/jobs', { layers: [784, 10] })).status, 429, 'job limit');
  t.equal((await post(`/models/${id}/predict`, { inputs: [[1]] })).status, 409, 'no predictions while training');
  // Server-sent events until the job ends.
  const sse = await (await fetch(`${base}/jobs/${id}/events`)).text();
  t.match(sse, /event: progress\ndata: \{"epoch":/, 'progress events');
  t.match(sse, /event: end\ndata: \{"id":"\d+","state":"done"/, 'end event');
  const job = (await (await fetch(`${base}/jobs/${id}`)).json()) as {
    state: string;
    history: { valAccuracy: number }[];
  };
  t.equal(job.state, 'done');
  t.equal(job.history.length, 2);
  t.equal((await post(`/models/${id}/predict`, { inputs: [[1, 2]] })).status, 400, 'wrong row width');
  t.equal((await post(`/models/999/predict`, { inputs: [[1]] })).status, 404);
  const long = (await (await post('/jobs', { layers: [784, 64, 10], epochs: 100 })).json()) as { id: string };
  t.equal((await fetch(`${base}/jobs/${long.id}`, { method: 'DELETE' })).status, 202);
  for (let i = 0; i < 200; i++) {
    const s = (await (await fetch(`${base}/jobs/${long.id}`)).json()) as { state: string; error?: { code: string } };
    if (s.state !== 'running') {
      t.equal(s.state, 'cancelled');
      t.equal(s.error?.code, 'ABORT_ERR');
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  t.equal((await post(`/models/${long.id}/predict`, { inputs: [[1]] })).status, 410, 'a cancelled job has no model');
  // DELETE on an ended job frees it at once.
  t.equal((await fetch(`${base}/jobs/${id}`, { method: 'DELETE' })).status, 204);
  t.equal((await fetch(`${base}/jobs/${id}`)).status, 404, 'gone');
});

t.test('ended jobs are dropped after the retention period', async (t) => {
  t.throws(() => buildServer({ memoryBudget: 0 }), RangeError);
  const app = buildServer({ retainMs: 50 });
  await app.listen({ port: 0, host: '127.0.0.1' });
  t.teardown(() => app.close());
  const base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
  const res = await fetch(base + '/jobs', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ layers: [784, 10], estimator: 'bp', epochs: 1 }),
  });
  const { id } = (await res.json()) as { id: string };
  let state = 'running';
  while (state === 'running') {
    state = ((await (await fetch(`${base}/jobs/${id}`)).json()) as { state: string }).state;
    await new Promise((r) => setTimeout(r, 10));
  }
  t.equal(state, 'done');
  await new Promise((r) => setTimeout(r, 150));
  t.equal((await fetch(`${base}/jobs/${id}`)).status, 404, 'dropped after retainMs');
});

t.test('predictions while two jobs train: latency and event-loop delay', async (t) => {
  const r = await runLoad({ seconds: 2 });
  t.ok(r.allPredictionsOk, `${r.predictRequests} predictions answered while ${r.trainingJobs} jobs trained`);
  t.comment(
    `predict p50 ${r.predictP50Ms.toFixed(1)} ms, p99 ${r.predictP99Ms.toFixed(1)} ms; event loop p50 ${r.eventLoopP50Ms.toFixed(1)} ms, p99 ${r.eventLoopP99Ms.toFixed(1)} ms, max ${r.eventLoopMaxMs.toFixed(1)} ms`,
  );
  // The targets (p99 < 20 ms / < 50 ms) are checked by `npm run bench -- server`; here only a bound that
  // catches a blocked event loop on a loaded 2-core CI machine.
  t.ok(r.eventLoopP99Ms < 250, `event-loop p99 ${r.eventLoopP99Ms.toFixed(1)} ms < 250 ms`);
  t.ok(r.predictRequests >= 20, 'a steady stream of requests');
});
