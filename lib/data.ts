/**
 * Data sets over typed arrays: the `Dataset` type and its check, and seeded shuffling, row selection and batching
 * with the engine's Philox generator. Training itself batches natively; these are for user code. Shipped data sets
 * are in datasets.ts, file loaders in loaders.ts, data sets from plain arrays in from_arrays.ts.
 */
import { ShapeError } from './errors';
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
  const k0 = seed % 2 ** 32,
    k1 = Math.floor(seed / 2 ** 32);
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
  if (!Array.isArray(rows) && !(ArrayBuffer.isView(rows) && !(rows instanceof DataView)))
    throw invalidArg('rows', 'an array or typed array of row indices', rows);
  const outCols = d.y.length / d.rows;
  const x = new Float32Array(rows.length * cols);
  const y = d.y instanceof Int32Array ? new Int32Array(rows.length * outCols) : new Float32Array(rows.length * outCols);
  for (let i = 0; i < rows.length; i++) {
    const r = rows[i]!;
    if (!Number.isInteger(r) || r < 0 || r >= d.rows)
      throw new ShapeError(`row index ${typeof r === 'number' ? r : typeof r} at ${i} out of range [0, ${d.rows})`);
    x.set(d.x.subarray(r * cols, (r + 1) * cols), i * cols);
    y.set(d.y.subarray(r * outCols, (r + 1) * outCols), i * outCols);
  }
  return { x, y, rows: rows.length, shape: d.shape ? [...d.shape] : [cols] };
}

/** Iterates mini-batches (the last may be smaller), optionally in a seeded shuffled order. */
export function* batches(
  d: Dataset,
  batchSize: number,
  options?: { shuffle?: boolean; seed?: number },
): Generator<Dataset> {
  checkDataset('dataset', d);
  if (!is.positiveInteger(batchSize)) throw invalidArg('batchSize', 'positive integer', batchSize);
  const o = optionsObject('batches', options, ['shuffle', 'seed']);
  const order = o.shuffle
    ? permutation(d.rows, (o.seed as number | undefined) ?? 0)
    : Int32Array.from({ length: d.rows }, (_, i) => i);
  for (let i = 0; i < d.rows; i += batchSize) yield take(d, order.subarray(i, Math.min(d.rows, i + batchSize)));
}

/** @internal Rows [start, end) of a checked data set, as views on its arrays (no copy). */
export function sliceRows(d: Dataset, start: number, end: number): Dataset {
  const cols = d.x.length / d.rows,
    yCols = d.y.length / d.rows;
  return {
    x: d.x.subarray(start * cols, end * cols),
    y: d.y.subarray(start * yCols, end * yCols),
    rows: end - start,
    shape: d.shape ? [...d.shape] : [cols],
  };
}
