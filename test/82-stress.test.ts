// Concurrency stress: seeded random interleavings of fit (with JS losses and throwing callbacks), predictAsync,
// evaluateAsync, gradients whose JS loss calls back into the model, abort, dispose, buffer transfer and resize, and
// worker.terminate(), each scenario in a child process with a timeout. Nothing may crash (exit by signal or a
// non-zero code), hang, or leave a promise unsettled, and every failure must be typed (a OneForwardError) or be
// the very value a callback threw. ONEFORWARD_STRESS sets the number of scenarios (default 12, about 20-30 s);
// `npm run bench -- stress` runs 1,000. The scenarios live in helpers/stress.ts.
import t from 'tap';
import { runStress } from './helpers/stress';

const SCENARIOS = Number(process.env.ONEFORWARD_STRESS ?? 12);

t.test(
  `${SCENARIOS} seeded random interleavings: no crash, no hang, every promise settles, every error typed`,
  { timeout: 300000 },
  async (t) => {
    const t0 = Date.now();
    for (const o of await runStress(SCENARIOS, 1, 20000)) {
      t.equal(o.kind, 'ok', `seed ${o.seed}${o.worker ? ' (in a worker, terminated)' : ''}: ${o.detail}`);
    }
    t.ok(Date.now() - t0 < 120000, `${SCENARIOS} scenarios in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  },
);
