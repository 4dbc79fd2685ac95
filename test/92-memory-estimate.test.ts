// memoryEstimate against the measured truth: a seeded sweep over small models (every layer kind) x estimators and
// their options x batch sizes x 1 and 2 threads runs one trainStep each on a fresh model, with every thread's
// scratch freed first, and reads the peak of bytes held by native buffers (the allocation counter of
// native/core/buffer.h). The estimate must bound that peak and stay within a stated factor of it. The sweep runs
// on the CPU engine (a device counts its own buffers).
import t from 'tap';
import * as of from '../lib/index';
import { native } from '../lib/native';

const SEED = Number(process.env.ONEFORWARD_MEMORY_SEED ?? 92);
const CASES = Number(process.env.ONEFORWARD_MEMORY_CASES ?? 160);
// estimate <= FACTOR x peak + SLACK x threads: the estimate counts a whole GEMM tile's packing space per thread (up
// to 640 KiB with AVX-512), which the small products of these models mostly do not fill
const FACTOR = 4;
const SLACK = 1 << 20;

function rng(seed: number) {
  let s = seed >>> 0;
  return () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
}

type Case = { name: string; layers: () => of.Layer[]; inputs: number; classes: number };

function models(r: () => number): Case[] {
  const n = (lo: number, hi: number) => lo + Math.floor(r() * (hi - lo + 1));
  const I = n(2, 12),
    H = n(2, 40),
    C = n(2, 6),
    F = n(1, 4),
    U = n(2, 6);
  const img: [number, number, number] = [n(4, 8), n(4, 8), n(1, 2)];
  const seq: [number, number] = [n(2, 5), n(1, 4)];
  const pooled = Math.floor(img[0] / 2) * Math.floor(img[1] / 2) * F;
  return [
    { name: `mlp ${I}-${H}-${C}`, inputs: I, classes: C, layers: () => [of.dense(I, H), of.relu(), of.dense(H, C)] },
    {
      name: `mlp3 ${I}-${H}-${H}-${C}`,
      inputs: I,
      classes: C,
      layers: () => [of.dense(I, H), of.tanh(), of.dense(H, H), of.relu(), of.dense(H, C)],
    },
    {
      name: `residual ${I}-${H}-${C}`,
      inputs: I,
      classes: C,
      layers: () => [of.dense(I, H), of.relu(), of.residual([of.dense(H, H), of.relu()]), of.dense(H, C)],
    },
    {
      name: `adapter ${I}-${H}-${C}`,
      inputs: I,
      classes: C,
      layers: () => [
        of.dense(I, H, { adapter: { rank: Math.min(2, I, H) } }),
        of.relu(),
        of.dense(H, C, { adapter: { rank: 1 } }),
      ],
    },
    {
      name: `layerNorm ${I}-${H}-${C}`,
      inputs: I,
      classes: C,
      layers: () => [of.dense(I, H), of.layerNorm(), of.relu(), of.dense(H, C)],
    },
    {
      name: `batchNorm ${I}-${H}-${C}`,
      inputs: I,
      classes: C,
      layers: () => [of.dense(I, H), of.batchNorm(), of.relu(), of.dense(H, C)],
    },
    {
      name: `dropout ${I}-${H}-${C}`,
      inputs: I,
      classes: C,
      layers: () => [of.dense(I, H), of.relu(), of.dropout(0.3), of.dense(H, C)],
    },
    {
      name: `conv ${img} x${F}`,
      inputs: img[0] * img[1] * img[2],
      classes: C,
      layers: () => [
        of.conv2d({ inputShape: img, filters: F, kernel: 3, padding: 'same' }),
        of.relu(),
        of.maxPool2d(),
        of.flatten(),
        of.dense(pooled, C),
      ],
    },
    {
      name: `gru ${seq} x${U}`,
      inputs: seq[0] * seq[1],
      classes: C,
      layers: () => [of.gru({ units: U, inputShape: seq }), of.dense(U, C)],
    },
    {
      name: `lstm ${seq} x${U}`,
      inputs: seq[0] * seq[1],
      classes: C,
      layers: () => [of.lstm({ units: U, inputShape: seq }), of.dense(U, C)],
    },
  ];
}

function estimator(r: () => number, layers: number): { name: string; est: of.Estimator } {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const base = {
    copies: pick([2, 4, 8, 32, 96]),
    antithetic: r() < 0.3,
    baseline: pick(of.BASELINES),
    sharedPrefix: r() < 0.7,
    storeNoise: r() < 0.7,
  };
  const k = r();
  const ulr = (o: object) => ({ name: `ulr ${JSON.stringify(o)}`, est: of.ulr(o as of.UlrOptions) });
  if (k < 0.12) return { name: 'bp', est: of.bp() };
  if (k < 0.2) return { name: 'spsa', est: of.spsa({ perturbations: pick([1, 4, 16]) }) };
  if (k < 0.27) return { name: 'es', est: of.es({ population: pick([2, 8]) }) };
  if (k < 0.5) return ulr(base);
  if (k < 0.75) {
    const extra =
      r() < 0.4 ? { copies: 'auto' } : r() < 0.5 && layers >= 2 ? { blocks: [2, ...Array(layers - 2).fill(1)] } : {};
    return ulr({ ...base, injection: 'layerwise', ...extra });
  }
  const modules =
    layers >= 2
      ? pick([
          [
            [0, 1],
            [1, layers],
          ],
          [[0, layers]],
        ])
      : [[0, 1]];
  return ulr({ ...base, modules, concurrent: r() < 0.5, pipeline: r() < 0.3 });
}

t.test(
  `estimate >= measured peak and <= ${FACTOR}x peak + 1 MiB per thread: ${CASES} seeded configs (seed ${SEED})`,
  async (t) => {
    const r = rng(SEED);
    const nat = native();
    const threads0 = of.backend.info().threads;
    let ran = 0,
      refused = 0,
      worst = Infinity,
      loosest = 0;
    try {
      for (let i = 0; i < CASES; i++) {
        const threads = i % 2 ? 2 : 1;
        of.backend.setThreads(threads);
        const cases = models(r);
        const c = cases[Math.floor(r() * cases.length)]!;
        const B = [1, 3, 17, 64, 300][Math.floor(r() * 5)]!;
        const before = nat.allocStats(true).live; // every thread's scratch freed: nothing left from earlier configs
        const model = of.sequential(c.layers(), { seed: i, backend: 'cpu' });
        const layers = model.parameters().filter((p) => p.name.endsWith('.weight')).length;
        const x = Float32Array.from({ length: B * c.inputs }, () => r() * 2 - 1);
        const y = Int32Array.from({ length: B }, () => Math.floor(r() * c.classes));
        try {
          let estimate: number, name: string, est: of.Estimator;
          try {
            ({ name, est } = estimator(r, layers)); // option combinations an estimator refuses count as refused
            estimate = model.memoryEstimate({ estimator: est, batchSize: B }).bytes;
          } catch (err) {
            if (err instanceof of.OneForwardError && err.code === 'ERR_CONFIG') {
              refused++;
              continue;
            }
            throw err;
          }
          const what = `#${i} ${c.name}, ${name}, batch ${B}, ${threads} thread(s)`;
          // copies 'auto' allocates from the variances of earlier steps: later steps count too
          const steps = name.includes('"auto"') ? 4 : 1;
          nat.allocStats(true);
          for (let s = 0; s < steps; s++) model.trainStep({ x, y, rows: B }, { estimator: est });
          const peak = nat.allocStats().peak - before; // the model's slabs and everything the steps allocated
          const ratio = estimate / peak;
          worst = Math.min(worst, ratio);
          if (!name.includes('"auto"')) loosest = Math.max(loosest, ratio);
          if (!(peak <= estimate)) t.fail(`${what}: measured peak ${peak} B > estimate ${estimate} B`);
          // copies 'auto' is bounded over every allocation the variances could ask for (up to copies x the cost of all
          // layers over one layer's): a few steps reach far less, so only the upper side is checked for it
          if (!name.includes('"auto"') && !(estimate <= FACTOR * peak + SLACK * threads)) {
            t.fail(`${what}: estimate ${estimate} B > ${FACTOR} x peak ${peak} B + ${threads} MiB`);
          }
          ran++;
        } finally {
          model.dispose();
        }
      }
    } finally {
      of.backend.setThreads(threads0);
    }
    t.ok(
      ran > CASES / 2,
      `${ran} configs ran, ${refused} refused (ERR_CONFIG); estimate / peak from ${worst.toFixed(2)} to ${loosest.toFixed(2)}`,
    );
  },
);

t.test(
  'over many steps, whichever threads ran the blocks keep their scratch: the estimate still bounds the peak',
  async (t) => {
    // A thread's block scratch outlives its step, and the pool hands each task to whichever thread is free: once a step
    // has two tasks (two blocks, or one block and a pipelined first module's backward), later steps may land them on
    // other threads, which then hold a block's scratch too. The bound holds for every such assignment.
    const nat = native();
    const threads0 = of.backend.info().threads;
    const conv = () => [
      of.conv2d({ inputShape: [8, 8, 2], filters: 6, kernel: 3, padding: 'same' }),
      of.tanh(),
      of.maxPool2d(),
      of.conv2d({ filters: 4, kernel: 2 }),
      of.relu(),
      of.flatten(),
      of.dense(36, 5),
      of.tanh(),
      of.dense(5, 3),
    ];
    const modules: [number, number][] = [
      [0, 1],
      [1, 4],
    ];
    try {
      for (const [threads, B, est, name] of [
        [2, 3, of.ulr({ copies: 64, modules, pipeline: true }), 'pipelined modules, one block'],
        [4, 3, of.ulr({ copies: 64, modules, pipeline: true }), 'pipelined modules, one block'],
        [4, 8, of.ulr({ copies: 64, modules }), 'modules, two blocks'],
        [4, 8, of.ulr({ copies: 64 }), 'plain ULR, two blocks'],
      ] as const) {
        of.backend.setThreads(threads);
        const before = nat.allocStats(true).live;
        const model = of.sequential(conv(), { seed: 3, backend: 'cpu' });
        const x = Float32Array.from({ length: B * model.inputs }, (_, i) => Math.sin(i * 0.7));
        const y = Int32Array.from({ length: B }, (_, i) => i % 3);
        const estimate = model.memoryEstimate({ estimator: est, batchSize: B }).bytes;
        for (let s = 0; s < 12; s++) model.trainStep({ x, y, rows: B }, { estimator: est });
        const peak = nat.allocStats().peak - before;
        t.ok(
          peak <= estimate,
          `${name}, batch ${B}, ${threads} threads, 12 steps: peak ${peak} B <= estimate ${estimate} B`,
        );
        model.dispose();
      }
    } finally {
      of.backend.setThreads(threads0);
    }
  },
);

t.test(
  "the hardening fuzz's model: layer-wise copies 'auto' on a 2^20-wide layer counts each thread's 16 GiB block",
  async (t) => {
    // a 2^20-unit hidden layer: copies 'auto' may give the cheap output layer 4,096 copies, a block of 4,096 rows whose
    // two activation buffers per thread are 16 GiB each; the estimate is read, the step is never run
    const model = of.sequential([of.dense(4, 1 << 20), of.relu(), of.dense(1 << 20, 3)], { seed: 7 });
    const threads0 = of.backend.info().threads;
    try {
      of.backend.setThreads(2);
      const est = of.ulr({ injection: 'layerwise', copies: 'auto', budget: 8 });
      const bytes = model.memoryEstimate({ estimator: est, batchSize: 4 }).bytes;
      t.ok(
        bytes >= 2 * 2 * 16 * 2 ** 30,
        `estimate ${(bytes / 2 ** 30).toFixed(1)} GiB >= 2 threads x 2 buffers x 16 GiB`,
      );
    } finally {
      of.backend.setThreads(threads0);
      model.dispose();
    }
  },
);
