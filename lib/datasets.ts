/**
 * The shipped data sets (nothing is downloaded): 10,000 real MNIST digits (data/digits.gz), Zachary's karate club
 * (data/karate.json), a seeded stochastic block model and the adding problem. Each returns checked `Dataset`s.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { ConfigError, DataError } from './errors';
import { type Dataset, permutation } from './data';
import { invalidArg, is, optionsObject } from './validate';

let digitsCache: { train: Dataset; test: Dataset } | undefined;

/**
 * The digits task: 10,000 real 28×28 MNIST digits shipped in data/digits.gz (see data/README.md), pixels in [0, 1],
 * split deterministically per class: the first 80% of each class train, the rest test (7,996 / 2,004).
 * Samples are grouped by class; `fit` shuffles every epoch. Read once, then cached.
 */
export function digits(): {
  /** 7,996 training digits. */
  train: Dataset;
  /** 2,004 test digits. */
  test: Dataset;
} {
  if (digitsCache) return digitsCache;
  // rows labels (uint8, grouped by class), then rows × 784 pixel levels k (uint8) standing for round(k / 255, 3),
  // the values of the JSON copy this file was made from (scripts/make-digits.js)
  const file = path.join(__dirname, '..', '..', 'data', 'digits.gz');
  let raw: Buffer;
  try {
    raw = zlib.gunzipSync(fs.readFileSync(file));
  } catch (err) {
    throw new DataError(`cannot read the digits data ${file}: ${(err as Error).message}`);
  }
  const rows = raw.length / 785;
  const level = Float32Array.from({ length: 256 }, (_, k) => Math.round((k * 1000) / 255) / 1000);
  const split = { train: [] as number[], test: [] as number[] };
  for (let start = 0, end = 0; start < rows; start = end) {
    while (end < rows && raw[end] === raw[start]) end++;
    const nTrain = Math.floor((end - start) * 0.8);
    for (let r = start; r < end; r++) (r - start < nTrain ? split.train : split.test).push(r);
  }
  const build = (idx: number[]): Dataset => {
    const x = new Float32Array(idx.length * 784);
    idx.forEach((r, i) => {
      for (let j = 0, src = rows + r * 784; j < 784; j++) x[i * 784 + j] = level[raw[src + j]!]!;
    });
    return { x, y: Int32Array.from(idx, (r) => raw[r]!), rows: idx.length, shape: [784] };
  };
  digitsCache = { train: build(split.train), test: build(split.test) };
  return digitsCache;
}

/** A node-classification task on one graph: the graph, node features and labels split into train and test. */
export type GraphTask = {
  /** The graph, for `of.graphConv({ graph })`. */
  graph: {
    /** Number of nodes. */
    nodes: number;
    /** Undirected edges as [i, j] pairs of node indices. */
    edges: [number, number][];
  };
  /** One sample (the whole graph): x = node features (nodes × features), y = labels of the training nodes, -1 elsewhere. */
  train: Dataset;
  /** The same graph with the labels of the other nodes (training nodes -1). */
  test: Dataset;
  /** Every node's class. */
  labels: Int32Array;
  /** Number of classes. */
  classes: number;
};

// One labeled node per class and `labeled - 1` more, picked by a seeded permutation; features as given.
function graphTask(
  graph: GraphTask['graph'],
  features: Float32Array,
  F: number,
  labels: Int32Array,
  classes: number,
  labeled: number,
  seed: number,
): GraphTask {
  const N = graph.nodes;
  const order = Array.from(permutation(N, seed));
  const train = new Int32Array(N).fill(-1),
    test = Int32Array.from(labels);
  for (let c = 0; c < classes; c++) {
    let taken = 0;
    for (const i of order) if (labels[i] === c && taken < labeled) ((train[i] = c), (test[i] = -1), taken++);
  }
  const ds = (y: Int32Array): Dataset => ({ x: features, y, rows: 1, shape: [N, F] });
  return { graph, train: ds(train), test: ds(test), labels, classes };
}

/**
 * Zachary's karate club (34 members, 78 friendships; the club split into "Mr. Hi" (0) and "Officer" (1)),
 * shipped as data/karate.json. Features: one-hot node ids (34 × 34). `labeledPerClass` members of each club
 * are labeled for training (seeded), the others are the test set.
 */
export function karate(options?: { labeledPerClass?: number; seed?: number }): GraphTask {
  const o = optionsObject('karate', options, ['labeledPerClass', 'seed']);
  const labeled = (o.labeledPerClass as number | undefined) ?? 1,
    seed = (o.seed as number | undefined) ?? 1;
  if (!is.positiveInteger(labeled) || labeled > 16) throw invalidArg('labeledPerClass', 'integer in [1, 16]', labeled);
  if (!is.integer(seed) || seed < 0) throw invalidArg('seed', 'integer >= 0', seed);
  const raw = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'data', 'karate.json'), 'utf8')) as {
    nodes: number;
    edges: [number, number][];
    club: number[];
  };
  const N = raw.nodes;
  const x = new Float32Array(N * N);
  for (let i = 0; i < N; i++) x[i * N + i] = 1;
  return graphTask({ nodes: N, edges: raw.edges }, x, N, Int32Array.from(raw.club), 2, labeled, seed);
}

/** The bounds of `sbm`: nodes, features per node, expected edges, feature values (nodes × features). */
export const SBM_LIMITS = { nodes: 16384, features: 65536, edges: 1 << 22, values: 1 << 26 } as const;

/**
 * A seeded stochastic block model: `communities` groups of `nodes / communities` nodes; an edge joins two nodes
 * of one community with probability `pIn`, of different ones with `pOut`. Features: a community mean (a random
 * unit vector times `signal`) plus standard normal noise, `features` per node — a graph convolution denoises
 * them by averaging neighbours.
 *
 * Sizes are bounded so that a call cannot exhaust the heap: at most 16,384 nodes (the
 * edge draw is O(nodes²)), 65,536 features, 2^22 expected edges (each edge is a small JS array) and 2^26 feature
 * values (nodes × features).
 * @throws ConfigError (`ERR_CONFIG`) for an option out of range or a graph above those limits.
 */
export function sbm(options?: {
  nodes?: number;
  communities?: number;
  pIn?: number;
  pOut?: number;
  features?: number;
  signal?: number;
  labeledPerClass?: number;
  seed?: number;
}): GraphTask {
  const o = optionsObject('sbm', options, [
    'nodes',
    'communities',
    'pIn',
    'pOut',
    'features',
    'signal',
    'labeledPerClass',
    'seed',
  ]);
  const N = (o.nodes as number | undefined) ?? 200,
    K = (o.communities as number | undefined) ?? 4;
  const pIn = (o.pIn as number | undefined) ?? 0.1,
    pOut = (o.pOut as number | undefined) ?? 0.01;
  const F = (o.features as number | undefined) ?? 16,
    signal = (o.signal as number | undefined) ?? 1;
  const labeled = (o.labeledPerClass as number | undefined) ?? 5,
    seed = (o.seed as number | undefined) ?? 1;
  if (!is.positiveInteger(N) || N > SBM_LIMITS.nodes)
    throw invalidArg('nodes', `integer in [1, ${SBM_LIMITS.nodes}]`, N);
  if (!is.positiveInteger(K) || K < 2 || K > N) throw invalidArg('communities', 'integer in [2, nodes]', K);
  for (const [k, v] of [
    ['pIn', pIn],
    ['pOut', pOut],
  ] as const)
    if (!(is.number(v) && v >= 0 && v <= 1)) throw invalidArg(k, 'probability', v);
  // features is bounded also because Math.hypot below takes them as arguments
  if (!is.positiveInteger(F) || F > SBM_LIMITS.features)
    throw invalidArg('features', `integer in [1, ${SBM_LIMITS.features}]`, F);
  if (!is.number(signal) || signal < 0) throw invalidArg('signal', 'number >= 0', signal);
  if (!is.positiveInteger(labeled)) throw invalidArg('labeledPerClass', 'positive integer', labeled);
  if (!is.integer(seed) || seed < 0) throw invalidArg('seed', 'integer >= 0', seed);
  if (N * F > SBM_LIMITS.values)
    throw new ConfigError(
      `sbm: nodes × features = ${N * F} exceeds the maximum of ${SBM_LIMITS.values} feature values`,
    );
  // Expected edges: community c holds the nodes i with floor(i K / N) = c.
  let pairsIn = 0;
  for (let c = 0; c < K; c++) {
    const size = Math.ceil(((c + 1) * N) / K) - Math.ceil((c * N) / K);
    pairsIn += (size * (size - 1)) / 2;
  }
  const expectedEdges = pIn * pairsIn + pOut * ((N * (N - 1)) / 2 - pairsIn);
  if (expectedEdges > SBM_LIMITS.edges) {
    throw new ConfigError(
      `sbm: about ${Math.round(expectedEdges)} expected edges exceeds the maximum of ${SBM_LIMITS.edges}: lower nodes, pIn or pOut`,
    );
  }
  let state = (seed * 2654435761 + 7) >>> 0 || 1;
  const u = () => ((state ^= state << 13), (state ^= state >>> 17), (state ^= state << 5), (state >>> 0) / 2 ** 32);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  const labels = Int32Array.from({ length: N }, (_, i) => Math.floor((i * K) / N));
  const edges: [number, number][] = [];
  for (let i = 0; i < N; i++)
    for (let j = i + 1; j < N; j++) if (u() < (labels[i] === labels[j] ? pIn : pOut)) edges.push([i, j]);
  const means = Array.from({ length: K }, () => {
    const v = Array.from({ length: F }, gauss);
    const n = Math.hypot(...v) || 1;
    return v.map((z) => (z / n) * signal);
  });
  const x = new Float32Array(N * F);
  for (let i = 0; i < N; i++) for (let f = 0; f < F; f++) x[i * F + f] = means[labels[i]!]![f]! + gauss();
  return graphTask({ nodes: N, edges }, x, F, labels, K, labeled, seed);
}

/**
 * The adding problem (Hochreiter & Schmidhuber 1997), a synthetic sequence task: each row is `steps` steps of
 * two features, a value uniform in [0, 1) and a marker that is 1 at exactly two steps (one in each half); the
 * target is the sum of the two marked values (MSE; predicting 1 always gives MSE ≈ 0.167). Seeded and
 * deterministic. Shape [steps, 2].
 */
export function adding(options?: { rows?: number; steps?: number; seed?: number }): Dataset {
  const o = optionsObject('adding', options, ['rows', 'steps', 'seed']);
  const rows = (o.rows as number | undefined) ?? 1000,
    steps = (o.steps as number | undefined) ?? 20,
    seed = (o.seed as number | undefined) ?? 1;
  if (!is.positiveInteger(rows) || rows > 1 << 22) throw invalidArg('rows', 'positive integer', rows);
  if (!is.integer(steps) || steps < 2 || steps > 1 << 16) throw invalidArg('steps', 'integer >= 2', steps);
  if (!is.integer(seed) || seed < 0) throw invalidArg('seed', 'integer >= 0', seed);
  let state = (seed * 2654435761 + 1) >>> 0 || 1;
  const u = () => ((state ^= state << 13), (state ^= state >>> 17), (state ^= state << 5), (state >>> 0) / 2 ** 32);
  const x = new Float32Array(rows * steps * 2),
    y = new Float32Array(rows);
  const half = Math.floor(steps / 2);
  for (let r = 0; r < rows; r++) {
    const a = Math.floor(u() * half),
      b = half + Math.floor(u() * (steps - half));
    let sum = 0;
    for (let t = 0; t < steps; t++) {
      const v = Math.fround(u());
      x[(r * steps + t) * 2] = v;
      if (t === a || t === b) ((x[(r * steps + t) * 2 + 1] = 1), (sum += v));
    }
    y[r] = sum;
  }
  return { x, y, rows, shape: [steps, 2] };
}
