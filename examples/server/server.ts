/**
 * Example: oneforward inside a Fastify server. Training jobs run on native threads while the event loop keeps
 * serving requests, including predictions from models that finished training.
 *
 *   POST   /jobs                  start a training job (JSON body, validated by schema)   -> 202 { id }
 *   GET    /jobs/:id              state, last progress, history, error
 *   GET    /jobs/:id/events       progress as server-sent events until the job ends
 *   DELETE /jobs/:id              cancel a running job (202); free a finished one (204: gone at once; predictions
 *                                 already running on it finish, and its model is freed when the last one ends)
 *   POST   /models/:id/predict    { inputs: number[][] } -> { outputs, classes } (off the event loop)
 *
 * What it does not let a client do: allocate more than `memoryBudget` for one job (model.memoryEstimate decides
 * before anything is allocated), send bodies beyond a bound, or keep memory after a job ends. A cancelled or failed
 * job frees its model at once; a finished one keeps it for predictions until `retainMs` after its end (or a DELETE);
 * then the job is dropped (404), and its model freed once the predictions already running on it have ended. SIGTERM / SIGINT cancel the running jobs, close the server and exit 0.
 *
 * Run: `node dist/examples/server/server.js` (PORT, HOST, MAX_JOBS, MEMORY_BUDGET in bytes from the environment). It
 * imports the package by name, so it can be copied into an app as it is (README.md here says how).
 */
import Fastify, { type FastifyInstance } from 'fastify';
import { EventEmitter } from 'events';
import * as of from 'oneforward';

export type ServerOptions = {
  /** Training jobs allowed to run at once; more get 429. Defaults to `2`. */
  maxJobs?: number;
  /** Largest predict request, in rows. Defaults to `1024`. */
  maxRows?: number;
  /** Largest layer width. Defaults to `4096`. */
  maxWidth?: number;
  /** Most memory one training job may hold (its `model.memoryEstimate`), in bytes; larger jobs get 413. Defaults to `2 ** 30` (1 GiB). */
  memoryBudget?: number;
  /** How long a finished job (and a trained model) stays after it ends, in milliseconds. Defaults to `600000` (10 minutes). */
  retainMs?: number;
  /** Largest request body, in bytes (a job's body is limited to 16 KiB whatever this says). Defaults to `16 * 2 ** 20`. */
  bodyLimit?: number;
};

type JobState = 'running' | 'done' | 'failed' | 'cancelled';
type Job = {
  id: string;
  state: JobState;
  /** Disposed (undefined) once the job no longer needs it: at once when it fails or is cancelled. */
  model?: of.Model;
  /** Predictions running on the model: it is disposed only when none is left (dispose would throw ERR_BUSY). */
  predicting: number;
  /** Dropped: no longer listed, its model freed as soon as `predicting` is 0. */
  dropped?: boolean;
  memoryBytes: number;
  expiry?: NodeJS.Timeout;
  progress?: of.Progress;
  history?: of.History;
  error?: { code: string; message: string };
  abort: AbortController;
  events: EventEmitter;
};

const jobBody = {
  type: 'object',
  additionalProperties: false,
  required: ['layers'],
  properties: {
    layers: { type: 'array', minItems: 2, maxItems: 8, items: { type: 'integer', minimum: 1 } },
    activation: { type: 'string', enum: ['relu', 'leakyRelu', 'tanh', 'sigmoid', 'gelu', 'step', 'sign'] },
    estimator: { type: 'string', enum: ['ulr', 'bp'], default: 'ulr' },
    copies: { type: 'integer', minimum: 2, maximum: 512, default: 32 },
    sigma: { type: 'number', exclusiveMinimum: 0, maximum: 10, default: 0.1 },
    lr: { type: 'number', exclusiveMinimum: 0, maximum: 1, default: 0.001 },
    epochs: { type: 'integer', minimum: 1, maximum: 100, default: 1 },
    batchSize: { type: 'integer', minimum: 1, maximum: 4096, default: 64 },
    seed: { type: 'integer', minimum: 0, maximum: 2 ** 31, default: 1 },
    dataset: { type: 'string', enum: ['digits'], default: 'digits' },
  },
} as const;

type JobBody = {
  layers: number[];
  activation?: of.ActivationName;
  estimator: 'ulr' | 'bp';
  copies: number;
  sigma: number;
  lr: number;
  epochs: number;
  batchSize: number;
  seed: number;
  dataset: 'digits';
};

/** Builds the server (not listening yet). */
export function buildServer(options: ServerOptions = {}): FastifyInstance {
  const maxJobs = options.maxJobs ?? 2;
  const maxRows = options.maxRows ?? 1024;
  const maxWidth = options.maxWidth ?? 4096;
  const memoryBudget = options.memoryBudget ?? 2 ** 30;
  const retainMs = options.retainMs ?? 600_000;
  if (!(memoryBudget > 0))
    throw new RangeError(`Expected positive number for memoryBudget but received ${String(memoryBudget)}`);
  if (!(retainMs >= 0)) throw new RangeError(`Expected number >= 0 for retainMs but received ${String(retainMs)}`);
  // Reject unknown fields instead of silently dropping them (Fastify's default).
  const app = Fastify({
    bodyLimit: options.bodyLimit ?? 16 * 2 ** 20,
    ajv: { customOptions: { removeAdditional: false } },
  });
  const jobs = new Map<string, Job>();
  let next = 1;
  const running = () => [...jobs.values()].filter((j) => j.state === 'running').length;
  const view = (j: Job) => ({
    id: j.id,
    state: j.state,
    memoryBytes: j.memoryBytes,
    progress: j.progress,
    history: j.history?.epochs,
    error: j.error,
  });
  // Frees a dropped job's model once no prediction runs on it. Called from timers: it never throws.
  const release = (j: Job) => {
    if (!j.dropped || j.predicting > 0) return;
    try {
      j.model?.dispose();
    } catch (e) {
      app.log.error({ err: e, job: j.id }, 'disposing a dropped model failed');
    }
    j.model = undefined;
  };
  // Drops a job that has ended: its record now (later lookups get 404), its model once its predictions end.
  const drop = (j: Job) => {
    clearTimeout(j.expiry);
    j.dropped = true;
    jobs.delete(j.id);
    release(j);
  };

  app.post<{ Body: JobBody }>('/jobs', { schema: { body: jobBody }, bodyLimit: 16 * 2 ** 10 }, async (req, reply) => {
    const b = req.body;
    if (b.layers.some((w) => w > maxWidth))
      return reply.code(413).send({ error: `layer widths are limited to ${maxWidth}` });
    if (b.layers[0] !== 784 || b.layers[b.layers.length - 1] !== 10)
      return reply.code(400).send({ error: 'digits needs 784 inputs and 10 outputs' });
    if (running() >= maxJobs) return reply.code(429).send({ error: `at most ${maxJobs} training jobs at once` });
    const layers: of.Layer[] = [];
    for (let i = 0; i + 1 < b.layers.length; i++) {
      layers.push(of.dense(b.layers[i]!, b.layers[i + 1]!));
      if (i + 2 < b.layers.length) layers.push(of.activation(b.activation ?? 'relu'));
    }
    // The model's parameters are allocated here (4 bytes each, a few MB at most under the width limit); the step's
    // memory only once it trains, so the estimate is checked before fit.
    const model = of.sequential(layers, { seed: b.seed });
    const estimator = b.estimator === 'bp' ? of.bp() : of.ulr({ copies: b.copies, sigma: b.sigma });
    const { bytes } = model.memoryEstimate({ estimator, batchSize: b.batchSize });
    if (bytes > memoryBudget) {
      model.dispose();
      return reply.code(413).send({
        error: `this job needs about ${(bytes / 2 ** 20).toFixed(0)} MiB, over the server's budget of ${(memoryBudget / 2 ** 20).toFixed(0)} MiB per job; use fewer copies, a smaller batch or narrower layers`,
        code: 'ERR_MEMORY_BUDGET',
        estimateBytes: bytes,
        budgetBytes: memoryBudget,
      });
    }
    const job: Job = {
      id: String(next++),
      state: 'running',
      model,
      memoryBytes: bytes,
      predicting: 0,
      abort: new AbortController(),
      events: new EventEmitter(),
    };
    jobs.set(job.id, job);
    const { train, test } = of.datasets.digits();
    model
      .fit(train, {
        estimator,
        optimizer: of.adam({ lr: b.lr }),
        epochs: b.epochs,
        batchSize: b.batchSize,
        validation: test,
        signal: job.abort.signal,
        onProgress: (p) => {
          job.progress = p;
          job.events.emit('progress', p);
        },
      })
      .then((h) => {
        job.history = h;
        job.state = 'done';
      })
      .catch((e: of.OneForwardError) => {
        job.state = e.code === 'ABORT_ERR' ? 'cancelled' : 'failed';
        job.error = { code: e.code, message: e.message };
        job.model?.dispose(); // nothing can use it any more
        job.model = undefined;
      })
      .finally(() => {
        job.events.emit('end');
        job.expiry = setTimeout(() => drop(job), retainMs).unref();
      });
    return reply.code(202).send({ id: job.id });
  });

  app.get<{ Params: { id: string } }>('/jobs/:id', async (req, reply) => {
    const job = jobs.get(req.params.id);
    return job ? view(job) : reply.code(404).send({ error: 'no such job' });
  });

  app.get<{ Params: { id: string } }>('/jobs/:id/events', (req, reply) => {
    const job = jobs.get(req.params.id);
    if (!job) return void reply.code(404).send({ error: 'no such job' });
    reply.hijack();
    const res = reply.raw;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    const send = (event: string, data: unknown) => res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    const onProgress = (p: of.Progress) => send('progress', p);
    const onEnd = () => {
      send('end', view(job));
      res.end();
    };
    if (job.state !== 'running') return onEnd();
    job.events.on('progress', onProgress);
    job.events.once('end', onEnd);
    req.raw.on('close', () => {
      job.events.off('progress', onProgress);
      job.events.off('end', onEnd);
    });
  });

  // Running: cancel (202; the job ends as 'cancelled' within a fraction of a second and frees its model). Ended:
  // drop it now (204), without waiting for its retention period to pass; predictions already running on its model
  // still answer, and the model is freed when the last of them ends.
  app.delete<{ Params: { id: string } }>('/jobs/:id', async (req, reply) => {
    const job = jobs.get(req.params.id);
    if (!job) return reply.code(404).send({ error: 'no such job' });
    if (job.state !== 'running') {
      drop(job);
      return reply.code(204).send();
    }
    job.abort.abort();
    return reply.code(202).send({ id: job.id });
  });

  const predictBody = {
    type: 'object',
    additionalProperties: false,
    required: ['inputs'],
    properties: {
      inputs: { type: 'array', minItems: 1, maxItems: maxRows, items: { type: 'array', items: { type: 'number' } } },
    },
  } as const;
  app.post<{ Params: { id: string }; Body: { inputs: number[][] } }>(
    '/models/:id/predict',
    { schema: { body: predictBody } },
    async (req, reply) => {
      const job = jobs.get(req.params.id);
      if (!job) return reply.code(404).send({ error: 'no such model' });
      if (job.state === 'running') return reply.code(409).send({ error: 'the model is still training' });
      if (job.state !== 'done' || !job.model) return reply.code(410).send({ error: `the job ${job.state}` });
      const model = job.model;
      const { inputs } = req.body;
      const cols = model.inputs;
      if (inputs.some((row) => row.length !== cols))
        return reply.code(400).send({ error: `each input row needs ${cols} numbers` });
      const x = new Float32Array(inputs.length * cols);
      inputs.forEach((row, i) => x.set(row, i * cols));
      job.predicting++;
      try {
        const out = await model.predictAsync(x, inputs.length);
        const C = model.outputs;
        const outputs = Array.from({ length: inputs.length }, (_, r) => Array.from(out.subarray(r * C, (r + 1) * C)));
        const classes = outputs.map((o) => o.indexOf(Math.max(...o)));
        return { outputs, classes };
      } catch (e) {
        const err = e as of.OneForwardError;
        return reply.code(err.code === 'ERR_BUSY' ? 409 : 400).send({ error: err.message, code: err.code });
      } finally {
        job.predicting--;
        release(job); // a DELETE or the retention timer may have dropped the job meanwhile
      }
    },
  );

  // Shutdown: cancel the running jobs, wait until their training threads have stopped, free every model.
  app.addHook('onClose', async () => {
    const live = [...jobs.values()].filter((j) => j.state === 'running');
    for (const j of live) j.abort.abort();
    await Promise.all(live.map((j) => new Promise((r) => j.events.once('end', r))));
    for (const j of [...jobs.values()]) drop(j);
  });
  return app;
}

/** Closes `app` on SIGTERM or SIGINT (jobs cancelled, models freed), then exits 0; 1 if closing fails. */
export function exitOnSignals(app: FastifyInstance): void {
  const shutdown = (signal: NodeJS.Signals) => {
    process.stdout.write(`${signal}: shutting down\n`);
    app.close().then(
      () => process.exit(0),
      (e: Error) => {
        process.stderr.write(`shutdown failed: ${e.message}\n`);
        process.exit(1);
      },
    );
  };
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

if (require.main === module) {
  const env = process.env;
  const app = buildServer({
    maxJobs: Number(env.MAX_JOBS ?? 2),
    ...(env.MEMORY_BUDGET ? { memoryBudget: Number(env.MEMORY_BUDGET) } : {}),
  });
  exitOnSignals(app);
  app.listen({ port: Number(env.PORT ?? 3000), host: env.HOST ?? '127.0.0.1' }).then((addr) => {
    process.stdout.write(`oneforward example server on ${addr}\n`);
  });
}
