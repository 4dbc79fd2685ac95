/**
 * Data sets over typed arrays: the shipped digits task (10,000 real MNIST digits, data/digits.gz), loaders
 * for IDX files (MNIST / Fashion-MNIST format) and CSV, and seeded shuffling/batching with the engine's
 * Philox generator. Training itself batches natively; these are for user code.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { constants as bufferConstants } from 'buffer';
import { ConfigError, DataError, OutOfMemoryError, ShapeError } from './errors';
import { MAX_FILE, readRegularFileSync } from './files';
import { native } from './native';
import { invalidArg, is, optionsObject } from './validate';

/** A data set: `rows` samples of `shape` features each (row-major in `x`) and their targets. */
export type Dataset = {
  /** Features, rows × prod(shape), row-major. */
  x: Float32Array;
  /** Class labels (Int32Array, one per row) or regression targets (Float32Array, rows × outputs). */
  y: Int32Array | Float32Array;
  /** Number of samples. */
  rows: number;
  /** Shape of one sample, e.g. `[784]` or `[28, 28]`. */
  shape: number[];
};

/** @internal Checks that a value is a well-formed Dataset; returns the per-row feature count. */
export function checkDataset(name: string, d: unknown): number {
  if (!is.plainObject(d)) throw invalidArg(name, 'a dataset { x, y, rows, shape }', d);
  const { x, y, rows, shape } = d as Record<string, unknown>;
  if (!is.float32Array(x)) throw invalidArg(`${name}.x`, 'Float32Array', x);
  if (!is.int32Array(y) && !is.float32Array(y)) throw invalidArg(`${name}.y`, 'Int32Array or Float32Array', y);
  if (!is.positiveInteger(rows)) throw invalidArg(`${name}.rows`, 'positive integer', rows);
  let cols = x.length / (rows as number);
  if (shape !== undefined) {
    if (!Array.isArray(shape) || !shape.every((s) => is.positiveInteger(s))) {
      throw invalidArg(`${name}.shape`, 'array of positive integers', shape);
    }
    cols = (shape as number[]).reduce((a, b) => a * b, 1);
  }
  if (!Number.isInteger(cols) || cols * (rows as number) !== x.length) {
    throw new ShapeError(`${name}.x has ${x.length} values, which is not rows (${rows as number}) × features`);
  }
  return cols;
}

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
function graphTask(graph: GraphTask['graph'], features: Float32Array, F: number, labels: Int32Array, classes: number, labeled: number, seed: number): GraphTask {
  const N = graph.nodes;
  const order = Array.from(permutation(N, seed));
  const train = new Int32Array(N).fill(-1), test = Int32Array.from(labels);
  for (let c = 0; c < classes; c++) {
    let taken = 0;
    for (const i of order) if (labels[i] === c && taken < labeled) (train[i] = c), (test[i] = -1), taken++;
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
  const labeled = (o.labeledPerClass as number | undefined) ?? 1, seed = (o.seed as number | undefined) ?? 1;
  if (!is.positiveInteger(labeled) || labeled > 16) throw invalidArg('labeledPerClass', 'integer in [1, 16]', labeled);
  if (!is.integer(seed) || seed < 0) throw invalidArg('seed', 'integer >= 0', seed);
  const raw = JSON.parse(fs.readFileSync(path.join(__dirname, '..', '..', 'data', 'karate.json'), 'utf8')) as { nodes: number; edges: [number, number][]; club: number[] };
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
export function sbm(options?: { nodes?: number; communities?: number; pIn?: number; pOut?: number; features?: number; signal?: number; labeledPerClass?: number; seed?: number }): GraphTask {
  const o = optionsObject('sbm', options, ['nodes', 'communities', 'pIn', 'pOut', 'features', 'signal', 'labeledPerClass', 'seed']);
  const N = (o.nodes as number | undefined) ?? 200, K = (o.communities as number | undefined) ?? 4;
  const pIn = (o.pIn as number | undefined) ?? 0.1, pOut = (o.pOut as number | undefined) ?? 0.01;
  const F = (o.features as number | undefined) ?? 16, signal = (o.signal as number | undefined) ?? 1;
  const labeled = (o.labeledPerClass as number | undefined) ?? 5, seed = (o.seed as number | undefined) ?? 1;
  if (!is.positiveInteger(N) || N > SBM_LIMITS.nodes) throw invalidArg('nodes', `integer in [1, ${SBM_LIMITS.nodes}]`, N);
  if (!is.positiveInteger(K) || K < 2 || K > N) throw invalidArg('communities', 'integer in [2, nodes]', K);
  for (const [k, v] of [['pIn', pIn], ['pOut', pOut]] as const) if (!(is.number(v) && v >= 0 && v <= 1)) throw invalidArg(k, 'probability', v);
  // features is bounded also because Math.hypot below takes them as arguments
  if (!is.positiveInteger(F) || F > SBM_LIMITS.features) throw invalidArg('features', `integer in [1, ${SBM_LIMITS.features}]`, F);
  if (!is.number(signal) || signal < 0) throw invalidArg('signal', 'number >= 0', signal);
  if (!is.positiveInteger(labeled)) throw invalidArg('labeledPerClass', 'positive integer', labeled);
  if (!is.integer(seed) || seed < 0) throw invalidArg('seed', 'integer >= 0', seed);
  if (N * F > SBM_LIMITS.values) throw new ConfigError(`sbm: nodes × features = ${N * F} exceeds the maximum of ${SBM_LIMITS.values} feature values`);
  // Expected edges: community c holds the nodes i with floor(i K / N) = c.
  let pairsIn = 0;
  for (let c = 0; c < K; c++) {
    const size = Math.ceil(((c + 1) * N) / K) - Math.ceil((c * N) / K);
    pairsIn += (size * (size - 1)) / 2;
  }
  const expectedEdges = pIn * pairsIn + pOut * ((N * (N - 1)) / 2 - pairsIn);
  if (expectedEdges > SBM_LIMITS.edges) {
    throw new ConfigError(`sbm: about ${Math.round(expectedEdges)} expected edges exceeds the maximum of ${SBM_LIMITS.edges}: lower nodes, pIn or pOut`);
  }
  let state = (seed * 2654435761 + 7) >>> 0 || 1;
  const u = () => ((state ^= state << 13), (state ^= state >>> 17), (state ^= state << 5), (state >>> 0) / 2 ** 32);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
  const labels = Int32Array.from({ length: N }, (_, i) => Math.floor((i * K) / N));
  const edges: [number, number][] = [];
  for (let i = 0; i < N; i++) for (let j = i + 1; j < N; j++) if (u() < (labels[i] === labels[j] ? pIn : pOut)) edges.push([i, j]);
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
  const rows = (o.rows as number | undefined) ?? 1000, steps = (o.steps as number | undefined) ?? 20, seed = (o.seed as number | undefined) ?? 1;
  if (!is.positiveInteger(rows) || rows > 1 << 22) throw invalidArg('rows', 'positive integer', rows);
  if (!is.integer(steps) || steps < 2 || steps > 1 << 16) throw invalidArg('steps', 'integer >= 2', steps);
  if (!is.integer(seed) || seed < 0) throw invalidArg('seed', 'integer >= 0', seed);
  let state = (seed * 2654435761 + 1) >>> 0 || 1;
  const u = () => ((state ^= state << 13), (state ^= state >>> 17), (state ^= state << 5), (state >>> 0) / 2 ** 32);
  const x = new Float32Array(rows * steps * 2), y = new Float32Array(rows);
  const half = Math.floor(steps / 2);
  for (let r = 0; r < rows; r++) {
    const a = Math.floor(u() * half), b = half + Math.floor(u() * (steps - half));
    let sum = 0;
    for (let t = 0; t < steps; t++) {
      const v = Math.fround(u());
      x[(r * steps + t) * 2] = v;
      if (t === a || t === b) x[(r * steps + t) * 2 + 1] = 1, (sum += v);
    }
    y[r] = sum;
  }
  return { x, y, rows, shape: [steps, 2] };
}

/**
 * Reads an IDX pair (the MNIST / Fashion-MNIST format: big-endian magic, dims, then data). Images of
 * unsigned bytes are scaled to [0, 1]; every feature must be finite as a float32; labels become an Int32Array
 * and must be integers in the int32 range. Only regular files are read, at most 4 GiB each (a device, FIFO or
 * directory is refused before a byte is read); the magic and dims are checked against the file's size before
 * its data is read.
 * @throws DataError (`ERR_DATA`) for a file that cannot be read (the system error is its `cause`), is not a
 * regular file, is malformed or holds a non-finite feature; ShapeError (`ERR_SHAPE`) when the files disagree on
 * the number of rows; OutOfMemoryError (`ERR_OOM`) when the features do not fit in memory; ConfigError
 * (`ERR_CONFIG`) for a path that is not a string.
 */
export function loadIdx(imagesPath: string, labelsPath: string): Dataset {
  if (!is.string(imagesPath) || imagesPath === '') throw invalidArg('imagesPath', 'a file path', imagesPath);
  if (!is.string(labelsPath) || labelsPath === '') throw invalidArg('labelsPath', 'a file path', labelsPath);
  const images = readIdx(imagesPath);
  const labels = readIdx(labelsPath);
  if (labels.dims.length !== 1) throw new DataError(`${labelsPath}: labels must be a 1-d IDX file`);
  const rows = images.dims[0] ?? 0;
  if (rows !== labels.dims[0]) throw new ShapeError(`IDX files disagree: ${rows} images but ${labels.dims[0]} labels`);
  const scale = images.type === 0x08 ? 1 / 255 : 1;
  let x: Float32Array;
  try {
    x = new Float32Array(images.count);
  } catch (err) {
    throw new OutOfMemoryError(`${imagesPath}: cannot allocate ${images.count} float32 features`, { cause: err });
  }
  for (let i = 0; i < x.length; i++) {
    const v = images.value(i);
    x[i] = v * scale;
    // Float images (types 0x0d, 0x0e) may hold NaN, Infinity or a double beyond float32: refused like loadCsv's.
    if (!Number.isFinite(x[i]!)) throw new DataError(`${imagesPath}: feature ${v} at index ${i} is not a finite float32`);
  }
  const y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const v = labels.value(i);
    // Float labels (types 0x0d, 0x0e) would otherwise be truncated or wrap around int32.
    if (!Number.isInteger(v) || v < -(2 ** 31) || v > 2 ** 31 - 1) throw new DataError(`${labelsPath}: label ${v} at index ${i} is not an integer class index`);
    y[i] = v;
  }
  return { x, y, rows, shape: images.dims.slice(1) };
}

const fileError = (file: string) => (why: string, cause?: unknown) => new DataError(`${file}: ${why}`, { cause });

const IDX_SIZES: Record<number, number> = { 0x08: 1, 0x09: 1, 0x0b: 2, 0x0c: 4, 0x0d: 4, 0x0e: 8 };

// The magic, type and dims of an IDX file, checked against the file's size (before the data is read).
function idxHeader(file: string, head: Buffer, fileSize: number): { type: number; size: number; dims: number[]; off: number; count: number } {
  if (fileSize < 4 || head[0] !== 0 || head[1] !== 0) throw new DataError(`${file}: not an IDX file (bad magic)`);
  const type = head[2]!;
  const ndim = head[3]!;
  const size = IDX_SIZES[type];
  if (!size || ndim === 0) throw new DataError(`${file}: unsupported IDX type 0x${type.toString(16)} or no dimensions`);
  if (head.length < 4 + 4 * ndim) throw new DataError(`${file}: truncated header`);
  const dims: number[] = [];
  for (let i = 0; i < ndim; i++) dims.push(head.readUInt32BE(4 + 4 * i));
  const count = dims.reduce((a, b) => a * b, 1);
  const off = 4 + 4 * ndim;
  if (fileSize !== off + count * size) {
    throw new DataError(`${file}: expected ${off + count * size} bytes for dims [${dims.join(', ')}], found ${fileSize}`);
  }
  return { type, size, dims, off, count };
}

// The file's header and its i-th value (read from the file's bytes, no intermediate copy).
function readIdx(file: string): { type: number; dims: number[]; count: number; value: (i: number) => number } {
  // At most 255 dims: the whole header is within the first 4 + 4 * 255 bytes.
  const check = (head: Buffer, fileSize: number) => void idxHeader(file, head, fileSize);
  const buf = readRegularFileSync(file, MAX_FILE, fileError(file), { bytes: 4 + 4 * 255, check });
  const { type, size, dims, off, count } = idxHeader(file, buf, buf.length);
  const value = (i: number) => {
    const p = off + i * size;
    return type === 0x08 ? buf[p]! : type === 0x09 ? buf.readInt8(p) : type === 0x0b ? buf.readInt16BE(p)
      : type === 0x0c ? buf.readInt32BE(p) : type === 0x0d ? buf.readFloatBE(p) : buf.readDoubleBE(p);
  };
  return { type, dims, count, value };
}

// A CSV cell as a decimal number (optional sign, digits with an optional point, optional exponent; spaces around
// it allowed), else undefined. Number() alone would also take '' and ' ' (as 0), 0x10, 0b11, 0o7 and Infinity.
const DECIMAL = /^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$/;
function parseCell(cell: string): number | undefined {
  const t = cell.trim();
  return DECIMAL.test(t) ? Number(t) : undefined;
}

// At most 40 characters of a cell for a message, control characters escaped (a lone \r would garble a terminal).
function printable(cell: string): string {
  return cell.slice(0, 40).replace(/[\x00-\x1f\x7f-\x9f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
}

/** Options of {@link loadCsv}. */
export type CsvOptions = {
  /** Column holding the class label (index, negative counts from the end). Defaults to `0`. */
  labelColumn?: number;
  /** Whether the first line is a header. Defaults to auto-detect: a header is a first line none of whose cells is a number. */
  header?: boolean;
  /** Divide features by this value (e.g. 255 for pixel CSVs). Defaults to `1`. */
  scale?: number;
};

/**
 * Reads a numeric CSV with one integer class label column (the MNIST-in-CSV layout by default). Only a regular
 * file of at most 512 MiB (the longest string V8 holds) is read. Lines end in \r\n, \n or \r. Every cell must be a
 * finite decimal number, optionally with an exponent (`-1.5e3`; not `0x10`, `0b11`, `Infinity`; an empty cell is
 * an error, not 0) and every label an integer in [0, 2^31). Unless `header` says otherwise, the first line is a
 * header only when none of its cells is a number: a first data line with one bad cell is an error, not dropped.
 * @throws DataError (`ERR_DATA`) for a file that cannot be read (the system error is its `cause`), is not a
 * regular file, has no data rows, or holds a bad cell (the message names its line and column); ConfigError
 * (`ERR_CONFIG`) for a path that is not a string or a bad option.
 */
export function loadCsv(file: string, options?: CsvOptions): Dataset {
  if (!is.string(file) || file === '') throw invalidArg('file', 'a file path', file);
  const o = optionsObject('loadCsv', options, ['labelColumn', 'header', 'scale']);
  const scale = (o.scale as number | undefined) ?? 1;
  if (!is.positive(scale)) throw invalidArg('scale', 'positive number', scale);
  if (o.header !== undefined && !is.bool(o.header)) throw invalidArg('header', 'boolean', o.header);
  const text = readRegularFileSync(file, bufferConstants.MAX_STRING_LENGTH, fileError(file)).toString('utf8');
  // [line number from 1, text] of the non-blank lines; \r\n, \n and a lone \r all end a line.
  const lines = text.split(/\r\n|\n|\r/).map((l, i) => [i + 1, l] as const).filter(([, l]) => l.trim().length > 0);
  if (lines.length === 0) throw new DataError(`${file}: empty CSV`);
  const first = lines[0]![1].split(',');
  // Only a line without a single number is a header: a data line with one corrupt cell is an error, not dropped.
  const auto = o.header === undefined;
  const header = (o.header as boolean | undefined) ?? !first.some((c) => parseCell(c) !== undefined);
  const body = header ? lines.slice(1) : lines;
  if (body.length === 0) {
    throw new DataError(`${file}: no data rows${auto ? ` (the only line was taken as a header: none of its cells is a number; pass header: false to read it as data)` : ''}`);
  }
  const cols = first.length;
  const lc = (o.labelColumn as number | undefined) ?? 0;
  if (!is.integer(lc) || lc >= cols || lc < -cols) throw invalidArg('labelColumn', `integer in [-${cols}, ${cols})`, lc);
  const labelCol = lc < 0 ? cols + lc : lc;
  const x = new Float32Array(body.length * (cols - 1));
  const y = new Int32Array(body.length);
  body.forEach(([line, text], r) => {
    const cells = text.split(',');
    if (cells.length !== cols) throw new DataError(`${file}: line ${line} has ${cells.length} columns, expected ${cols}`);
    let k = 0;
    for (let c = 0; c < cols; c++) {
      const cell = cells[c]!;
      const v = parseCell(cell);
      if (v === undefined || !Number.isFinite(v)) {
        const hint = auto && r === 0 && !header ? ' (the first line was read as data because some of its cells are numbers; pass header: true if it is a header)' : '';
        throw new DataError(`${file}: line ${line}, column ${c + 1} is ${cell.trim() === '' ? 'empty' : `not a number ('${printable(cell)}')`}${hint}`);
      }
      if (c === labelCol) {
        if (!Number.isInteger(v) || v < 0 || v > 2 ** 31 - 1) throw new DataError(`${file}: label '${printable(cell.trim())}' on line ${line} is not a class index (an integer in [0, 2^31))`);
        y[r] = v;
      } else {
        const f = Math.fround(v / scale);
        if (!Number.isFinite(f)) throw new DataError(`${file}: line ${line}, column ${c + 1} (${printable(cell.trim())}) overflows float32`);
        x[r * (cols - 1) + k++] = f;
      }
    }
  });
  return { x, y, rows: body.length, shape: [cols - 1] };
}

/** The largest `n` of `permutation`: 2^24 (a 64 MiB Int32Array; shuffling costs about 3 µs per element). */
export const MAX_PERMUTATION = 2 ** 24;

/**
 * A seeded permutation of 0..n-1 (Fisher–Yates with the engine's Philox generator).
 * @throws ConfigError (`ERR_CONFIG`) for `n` outside [0, 2^24] or a bad seed.
 */
export function permutation(n: number, seed: number): Int32Array {
  if (!is.integer(n) || n < 0 || n > MAX_PERMUTATION) throw invalidArg('n', `integer in [0, 2^24]`, n);
  if (!is.integer(seed) || seed < 0 || seed > 2 ** 53) throw invalidArg('seed', 'integer in [0, 2^53]', seed);
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  const b = native();
  const k0 = seed % 2 ** 32, k1 = Math.floor(seed / 2 ** 32);
  for (let i = n - 1; i > 0; i--) {
    const r = b.philox(i, 0, 0x4, 0, k0, k1);
    const j = Math.floor((r[0]! / 2 ** 32) * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/**
 * Selects rows of a data set (copies).
 * @throws ConfigError (`ERR_CONFIG`) for a malformed data set or `rows` that is not an array or typed array;
 * ShapeError (`ERR_SHAPE`) for a row index out of range.
 */
export function take(d: Dataset, rows: ArrayLike<number>): Dataset {
  const cols = checkDataset('dataset', d);
  if (!Array.isArray(rows) && !(ArrayBuffer.isView(rows) && !(rows instanceof DataView))) throw invalidArg('rows', 'an array or typed array of row indices', rows);
  const outCols = d.y.length / d.rows;
  const x = new Float32Array(rows.length * cols);
  const y = d.y instanceof Int32Array ? new Int32Array(rows.length * outCols) : new Float32Array(rows.length * outCols);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (!Number.isInteger(r) || r < 0 || r >= d.rows) throw new ShapeError(`row index ${typeof r === 'number' ? r : typeof r} at ${i} out of range [0, ${d.rows})`);
    x.set(d.x.subarray(r * cols, (r + 1) * cols), i * cols);
    y.set(d.y.subarray(r * outCols, (r + 1) * outCols), i * outCols);
  }
  return { x, y, rows: rows.length, shape: d.shape ? [...d.shape] : [cols] };
}

/** Iterates mini-batches (the last may be smaller), optionally in a seeded shuffled order. */
export function* batches(d: Dataset, batchSize: number, options?: { shuffle?: boolean; seed?: number }): Generator<Dataset> {
  checkDataset('dataset', d);
  if (!is.positiveInteger(batchSize)) throw invalidArg('batchSize', 'positive integer', batchSize);
  const o = optionsObject('batches', options, ['shuffle', 'seed']);
  const order = o.shuffle ? permutation(d.rows, (o.seed as number | undefined) ?? 0) : Int32Array.from({ length: d.rows }, (_, i) => i);
  for (let i = 0; i < d.rows; i += batchSize) yield take(d, order.subarray(i, Math.min(d.rows, i + batchSize)));
}

/** How {@link fromArrays} reads `y`. */
export const LABEL_KINDS = ['index', 'oneHot', 'values'] as const;
/** One of {@link LABEL_KINDS}. */
export type LabelKind = (typeof LABEL_KINDS)[number];

/** Options of {@link fromArrays}. */
export type FromArraysOptions = {
  /**
   * The shape of one row, e.g. `[28, 28, 1]`: required when `x` is flat (a `number[]` or a typed array), which
   * it splits into rows of prod(shape) values; with nested rows it must hold as many values as a row. Defaults
   * to the nesting of the rows: `[features]` for rows of features, `[28, 28, 1]` for rows nested [28][28][1].
   */
  shape?: number[];
  /**
   * How to read `y`: `'index'` (one class index per row, an integer >= 0), `'oneHot'` (rows with a single 1,
   * stored as their class index) or `'values'` (float targets for `mse`, rows × outputs). Defaults to `'index'`
   * for a `number[]` or an integer typed array, to `'oneHot'` for `number[][]` whose every row is one-hot, and
   * to `'values'` for other `number[][]` and for float typed arrays.
   */
  labels?: LabelKind;
};

type Numbers = ArrayLike<number>;
const isNumbers = (v: unknown): v is Numbers =>
  Array.isArray(v) || (ArrayBuffer.isView(v) && !(v instanceof DataView) && !(v instanceof BigInt64Array) && !(v instanceof BigUint64Array));
const isFloatArray = (v: unknown): boolean => v instanceof Float32Array || v instanceof Float64Array;

// Where value i of a flat array sits, for messages: "[12]", or "[3][4]" (row, column) when the rows are known,
// or "[3][0][4][0]" (row, then the index within a row of the given shape).
function at(i: number, rowShape?: number[]): string {
  if (!rowShape) return `[${i}]`;
  const idx: number[] = [];
  for (let d = rowShape.length - 1; d >= 0; d--) {
    idx.unshift(i % rowShape[d]!);
    i = Math.floor(i / rowShape[d]!);
  }
  return `[${[i, ...idx].join('][')}]`;
}

// Rows of numbers (number[][] or typed rows) -> one flat Float32Array; ragged rows are a ShapeError.
function flattenRows(name: string, rows: unknown[]): { values: Float32Array; cols: number } {
  for (let i = 0; i < rows.length; i++) {  // an index loop: forEach would skip the holes of a sparse array
    if (!isNumbers(rows[i])) throw invalidArg(`${name}[${i}]`, 'an array of numbers', rows[i]);
  }
  const cols = (rows[0] as Numbers).length;
  const values = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => {
    const row = r as Numbers;
    if (row.length !== cols) throw new ShapeError(`${name}[${i}] has ${row.length} values but ${name}[0] has ${cols}: every row needs the same length`);
    for (let j = 0; j < cols; j++) {
      const v = row[j];
      if (typeof v !== 'number') throw new DataError(`${name}[${i}][${j}] is not a number (${typeof v})`);
      values[i * cols + j] = v;
    }
  });
  return { values, cols };
}

// Rows nested to any depth (number[][], number[][][][] as tfjs arraySync() gives images, arrays of typed arrays)
// -> one flat Float32Array and the shape of one row, read off the first element at each depth. Ragged or mixed
// nesting is a ShapeError naming the first path that differs.
const MAX_NESTING = 32;  // deeper is no tensor rank in use, and stops a self-containing array from looping
function flattenNested(name: string, rows: unknown[]): { values: Float32Array; rowShape: number[] } {
  const dims = [rows.length];
  for (let v = rows[0]; isNumbers(v); v = (v as unknown[])[0]) {
    if (dims.length > MAX_NESTING) throw new ShapeError(`${name} is nested deeper than ${MAX_NESTING} levels`);
    dims.push(v.length);
    if (!Array.isArray(v) || v.length === 0) break;  // a typed array or an empty array holds the values
  }
  const rowShape = dims.slice(1);
  const values = new Float32Array(rows.length * rowShape.reduce((a, b) => a * b, 1));
  const idx = new Array<number>(dims.length).fill(0);  // the path being read, for messages (no allocation per value)
  const where = (depth: number) => `${name}${idx.slice(0, depth).map((i) => `[${i}]`).join('')}`;
  const first = (depth: number) => `${name}${'[0]'.repeat(depth)}`;
  const leaves = dims.length - 1;
  let k = 0;
  const walk = (v: unknown, depth: number): void => {
    if (!isNumbers(v)) {
      if (depth === 1) throw invalidArg(where(depth), 'an array of numbers', v);
      throw new ShapeError(`${where(depth)} is ${typeof v === 'number' ? 'a number' : `not an array (${typeof v})`} but ${first(depth)} is an array: every row needs the same nesting`);
    }
    if (v.length !== dims[depth]) throw new ShapeError(`${where(depth)} has ${v.length} values but ${first(depth)} has ${dims[depth]}: every row needs the same shape`);
    // Index loops: forEach would skip the holes of a sparse array.
    if (depth < leaves) {
      for (let i = 0; i < v.length; i++) idx[depth] = i, walk(v[i], depth + 1);
      return;
    }
    for (let i = 0; i < v.length; i++) {
      const e = v[i];
      if (typeof e === 'number') {
        values[k++] = e;
        continue;
      }
      idx[depth] = i;
      if (isNumbers(e)) throw new ShapeError(`${where(depth + 1)} is an array but ${first(depth + 1)} is a number: every row needs the same nesting`);
      throw new DataError(`${where(depth + 1)} is not a number (${typeof e})`);
    }
  };
  for (let i = 0; i < rows.length; i++) {  // every row is an array before any value is read
    if (!isNumbers(rows[i])) throw invalidArg(`${name}[${i}]`, 'an array of numbers', rows[i]);
  }
  walk(rows, 0);
  return { values, rowShape };
}

// Finite values (checked on the float32 copy: a double that overflows float32 is caught too).
function checkFinite(name: string, values: Float32Array, rowShape?: number[]): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new DataError(`${name}${at(i, rowShape)} is ${values[i]}: every value must be finite`);
  }
}

// The class of each one-hot row (a single 1, 0 elsewhere), or the first row that is not one-hot (bad >= 0).
function oneHotIndex(values: Float32Array, rows: number, cols: number): { index: Int32Array; bad: number } {
  const index = new Int32Array(rows);
  for (let r = 0; r < rows; r++) {
    let hot = -1;
    for (let j = 0; j < cols; j++) {
      const v = values[r * cols + j]!;
      if (v === 1 && hot === -1) hot = j;
      else if (v !== 0) return { index, bad: r };
    }
    if (hot < 0) return { index, bad: r };
    index[r] = hot;
  }
  return { index, bad: -1 };
}

/**
 * A data set from plain arrays, checked. `x`: rows of features (`number[][]`, or an array of typed arrays), rows
 * nested deeper (`number[][][][]`, e.g. images from a tfjs `arraySync()`: the nesting gives the row shape, e.g.
 * [28][28][1] -> `shape` [28, 28, 1]), or every value flat (`number[]` or a typed array) with `options.shape`.
 * `y`: class indices (`number[]`, an integer typed array), one-hot rows (`number[][]`, stored as class indices,
 * the form `crossEntropy` models train on), or float targets (`options.labels: 'values'`; the default for a
 * float typed array: class indices held as floats, like a tfjs `labels.dataSync()`, need `{ labels: 'index' }`).
 * A `Float32Array` `x` is used as is (not copied). Throws a `ShapeError` for ragged rows (naming the first path
 * that differs) or a row count that `y` does not match, and a `DataError` for non-finite values or labels that
 * are not class indices.
 * @example
 * const xor = of.data.fromArrays([[0, 0], [0, 1], [1, 0], [1, 1]], [0, 1, 1, 0]);
 * const oneHot = of.data.fromArrays([[0, 0], [0, 1]], [[1, 0], [0, 1]]);  // y -> Int32Array [0, 1]
 */
export function fromArrays(x: number[][] | number[][][] | number[][][][] | number[] | ArrayLike<number>[] | ArrayLike<number>[][] | ArrayLike<number>, y: number[] | number[][] | ArrayLike<number>, options?: FromArraysOptions): Dataset {
  const o = optionsObject('fromArrays', options, ['shape', 'labels']);
  if (o.shape !== undefined && !(Array.isArray(o.shape) && o.shape.length > 0 && o.shape.every((s) => is.positiveInteger(s)))) {
    throw invalidArg('shape', 'non-empty array of positive integers', o.shape);
  }
  if (o.labels !== undefined && !(LABEL_KINDS as readonly unknown[]).includes(o.labels)) throw invalidArg('labels', LABEL_KINDS.map((k) => `'${k}'`).join(' | '), o.labels);
  const shape = o.shape as number[] | undefined;
  if (!isNumbers(x) || x.length === 0) throw invalidArg('x', 'a non-empty array of rows, or a flat array or typed array with options.shape', x);

  // x -> rows × cols float32 values
  let xs: Float32Array;
  let rows: number;
  let cols: number;
  let rowShape: number[] | undefined;  // of nested rows: [features], or e.g. [28, 28, 1] for images
  const nested = Array.isArray(x) && typeof x[0] !== 'number';
  if (nested) {
    ({ values: xs, rowShape } = flattenNested('x', x as unknown[]));
    rows = x.length;
    cols = rowShape.reduce((a, b) => a * b, 1);
    if (cols === 0) throw new ShapeError('x[0] is empty: a row needs at least one feature');
    if (shape && shape.reduce((a, b) => a * b, 1) !== cols) throw new ShapeError(`options.shape [${shape.join(', ')}] holds ${shape.reduce((a, b) => a * b, 1)} values but the rows of x have ${cols}`);
  } else {
    if (!shape) throw new ShapeError(`x is flat (${x.length} values): give options.shape, the shape of one row (e.g. [${x.length}] for a single row), or pass rows of features`);
    cols = shape.reduce((a, b) => a * b, 1);
    if (x.length % cols !== 0) throw new ShapeError(`x has ${x.length} values, which is not a whole number of rows of shape [${shape.join(', ')}] (${cols} values)`);
    rows = x.length / cols;
    if (x instanceof Float32Array) xs = x;
    else {
      for (let i = 0; i < x.length; i++) if (typeof (x as Numbers)[i] !== 'number') throw new DataError(`x[${i}] is not a number (${typeof (x as Numbers)[i]})`);
      xs = Float32Array.from(x as Numbers);
    }
  }
  checkFinite('x', xs, rowShape);

  // y -> Int32Array of class indices or Float32Array of targets, one row per row of x
  if (!isNumbers(y)) throw invalidArg('y', 'an array of labels or targets, or a typed array', y);
  const yNested = Array.isArray(y) && y.length > 0 && typeof y[0] !== 'number';
  const kind = o.labels as FromArraysOptions['labels'];
  // A flat y may hold several values per row where rows of values are possible ('values', 'oneHot').
  const flatRows = !yNested && y.length !== rows && y.length % rows === 0 && y.length > 0 && (kind === 'values' || kind === 'oneHot' || (kind === undefined && isFloatArray(y)));
  if (y.length !== rows && !flatRows) throw new ShapeError(`y has ${y.length} ${yNested ? 'rows' : 'values'} but x has ${rows} rows`);
  const { values: ys, cols: yCols } = yNested ? flattenRows('y', y as unknown[]) : { values: Float32Array.from(y as Numbers), cols: y.length / rows };
  checkFinite('y', ys, yNested ? [yCols] : undefined);
  const hot = yCols > 1 ? oneHotIndex(ys, rows, yCols) : undefined;
  const resolved = kind ?? (yNested ? (hot && hot.bad < 0 ? 'oneHot' : 'values') : isFloatArray(y) ? 'values' : 'index');
  let labels: Int32Array | Float32Array;
  if (resolved === 'values') {
    labels = ys;
  } else if (resolved === 'oneHot') {
    if (!hot || hot.bad >= 0) {
      const r = hot ? hot.bad : 0;
      const row = Array.from(ys.subarray(r * yCols, (r + 1) * yCols));
      throw new DataError(`y[${r}] is not one-hot ([${row.slice(0, 8).join(', ')}${row.length > 8 ? ', …' : ''}]): a row needs a single 1 and 0 elsewhere, over at least 2 classes`);
    }
    labels = hot.index;
  } else {
    if (yCols !== 1) throw new ShapeError(`y has ${yCols} values per row but class indices are one per row (labels: 'oneHot' or 'values' read rows)`);
    labels = new Int32Array(rows);
    for (let i = 0; i < rows; i++) {
      // The given value, not its float32 copy: 1.0000001 is no class index.
      const v = yNested ? (y as unknown as Numbers[])[i]![0]! : (y as Numbers)[i]!;
      if (!Number.isInteger(v) || v < 0 || v > 2 ** 31 - 1) {
        throw new DataError(`y[${i}] = ${v} is not a class index (an integer >= 0); for regression targets pass { labels: 'values' }`);
      }
      labels[i] = v;
    }
  }
  return { x: xs, y: labels, rows, shape: shape ? [...shape] : rowShape ?? [cols] };
}

/** @internal Rows [start, end) of a checked data set, as views on its arrays (no copy). */
export function sliceRows(d: Dataset, start: number, end: number): Dataset {
  const cols = d.x.length / d.rows, yCols = d.y.length / d.rows;
  return { x: d.x.subarray(start * cols, end * cols), y: d.y.subarray(start * yCols, end * yCols), rows: end - start, shape: d.shape ? [...d.shape] : [cols] };
}
