/**
 * Example: oneforward inside a Fastify server. Training jobs run on native threads while the event loop keeps
 * serving requests, including predictions from models that finished training.
 *
 *   POST   /jobs                  start a training job (JSON body, validated by schema)   -> 202 { id }
 *   GET    /jobs/:id              state, last progress, history, error
 *   GET    /jobs/:id/events       progress as server-sent events until the job ends
 *   DELETE /jobs/:id              cancel a running job
 *   POST   /models/:id/predict    { inputs: number[][] } -> { outputs, classes } (off the event loop)
 *
 * Run: `node dist/examples/server/server.js` (PORT, HOST, MAX_JOBS from the environment). It imports the package by
 * name, so it can be copied into an app as it is (README.md here says how).
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
};

type JobState = 'running' | 'done' | 'failed' | 'cancelled';
type Job = {
  id: string;
  state: JobState;
  model: of.Model;
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
  layers: number[]; activation?: of.ActivationName; estimator: 'ulr' | 'bp'; copies: number; sigma: number; lr: number;
  epochs: number; batchSize: number; seed: number; dataset: 'digits';
};

/** Builds the server (not listening yet). */
export function buildServer(options: ServerOptions = {}): FastifyInstance {
  const maxJobs = options.maxJobs ?? 2;
  const maxRows = options.maxRows ?? 1024;
  const maxWidth = options.maxWidth ?? 4096;
  // Reject unknown fields instead of silently dropping them (Fastify's default).
  const app = Fastify({ bodyLimit: 16 << 20, ajv: { customOptions: { removeAdditional: false } } });
  const jobs = new Map<string, Job>();
  let next = 1;
  const running = () => [...jobs.values()].filter((j) => j.state === 'running').length;
  const view = (j: Job) => ({ id: j.id, state: j.state, progress: j.progress, history: j.history?.epochs, error: j.error });

  app.post<{ Body: JobBody }>('/jobs', { schema: { body: jobBody } }, async (req, reply) => {
    const b = req.body;
    if (b.layers.some((w) => w > maxWidth)) return reply.code(413).send({ error: `layer widths are limited to ${maxWidth}` });
    if (b.layers[0] !== 784 || b.layers[b.layers.length - 1] !== 10) return reply.code(400).send({ error: 'digits needs 784 inputs and 10 outputs' });
    if (running() >= maxJobs) return reply.code(429).send({ error: `at most ${maxJobs} training jobs at once` });
    const layers: of.Layer[] = [];
    for (let i = 0; i + 1 < b.layers.length; i++) {
      layers.push(of.dense(b.layers[i]!, b.layers[i + 1]!));
      if (i + 2 < b.layers.length) layers.push(of.activation(b.activation ?? 'relu'));
    }
    const job: Job = {
      id: String(next++), state: 'running', model: of.sequential(layers, { seed: b.seed }), abort: new AbortController(), events: new EventEmitter(),
    };
    jobs.set(job.id, job);
    const { train, test } = of.datasets.digits();
    job.model
      .fit(train, {
        estimator: b.estimator === 'bp' ? of.bp() : of.ulr({ copies: b.copies, sigma: b.sigma }),
        optimizer: of.adam({ lr: b.lr }), epochs: b.epochs, batchSize: b.batchSize, validation: test, signal: job.abort.signal,
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
      })
      .finally(() => job.events.emit('end'));
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

  app.delete<{ Params: { id: string } }>('/jobs/:id', async (req, reply) => {
    const job = jobs.get(req.params.id);
    if (!job) return reply.code(404).send({ error: 'no such job' });
    if (job.state === 'running') job.abort.abort();
    return reply.code(202).send({ id: job.id });
  });

  const predictBody = {
    type: 'object', additionalProperties: false, required: ['inputs'],
    properties: { inputs: { type: 'array', minItems: 1, maxItems: maxRows, items: { type: 'array', items: { type: 'number' } } } },
  } as const;
  app.post<{ Params: { id: string }; Body: { inputs: number[][] } }>('/models/:id/predict', { schema: { body: predictBody } }, async (req, reply) => {
    const job = jobs.get(req.params.id);
    if (!job) return reply.code(404).send({ error: 'no such model' });
    if (job.state === 'running') return reply.code(409).send({ error: 'the model is still training' });
    if (job.state !== 'done') return reply.code(410).send({ error: `the job ${job.state}` });
    const { inputs } = req.body;
    const cols = job.model.inputs;
    if (inputs.some((row) => row.length !== cols)) return reply.code(400).send({ error: `each input row needs ${cols} numbers` });
    const x = new Float32Array(inputs.length * cols);
    inputs.forEach((row, i) => x.set(row, i * cols));
    try {
      const out = await job.model.predictAsync(x, inputs.length);
      const C = job.model.outputs;
      const outputs = Array.from({ length: inputs.length }, (_, r) => Array.from(out.subarray(r * C, (r + 1) * C)));
      const classes = outputs.map((o) => o.indexOf(Math.max(...o)));
      return { outputs, classes };
    } catch (e) {
      const err = e as of.OneForwardError;
      return reply.code(err.code === 'ERR_BUSY' ? 409 : 400).send({ error: err.message, code: err.code });
    }
  });

  app.addHook('onClose', async () => {
    for (const j of jobs.values()) if (j.state === 'running') j.abort.abort();
    await Promise.all([...jobs.values()].filter((j) => j.state === 'running').map((j) => new Promise((r) => j.events.once('end', r))));
  });
  return app;
}

if (require.main === module) {
  const app = buildServer({ maxJobs: Number(process.env.MAX_JOBS ?? 2) });
  app.listen({ port: Number(process.env.PORT ?? 3000), host: process.env.HOST ?? '127.0.0.1' }).then((addr) => {
    process.stdout.write(`oneforward example server on ${addr}\n`);
  });
}
