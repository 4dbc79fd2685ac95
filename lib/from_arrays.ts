/**
 * A checked data set from plain arrays: rows nested to any depth or flat with a row shape, and labels as class
 * indices, one-hot rows or float targets. Every value is copied into float32 and checked finite.
 */
import { DataError, ShapeError } from './errors';
import type { Dataset } from './data';
import { invalidArg, is, optionsObject } from './validate';

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
  Array.isArray(v) ||
  (ArrayBuffer.isView(v) &&
    !(v instanceof DataView) &&
    !(v instanceof BigInt64Array) &&
    !(v instanceof BigUint64Array));
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
  for (let i = 0; i < rows.length; i++) {
    // an index loop: forEach would skip the holes of a sparse array
    if (!isNumbers(rows[i])) throw invalidArg(`${name}[${i}]`, 'an array of numbers', rows[i]);
  }
  const cols = (rows[0] as Numbers).length;
  const values = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => {
    const row = r as Numbers;
    if (row.length !== cols)
      throw new ShapeError(
        `${name}[${i}] has ${row.length} values but ${name}[0] has ${cols}: every row needs the same length`,
      );
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
const MAX_NESTING = 32; // deeper is no tensor rank in use, and stops a self-containing array from looping
function flattenNested(name: string, rows: unknown[]): { values: Float32Array; rowShape: number[] } {
  const dims = [rows.length];
  for (let v = rows[0]; isNumbers(v); v = (v as unknown[])[0]) {
    if (dims.length > MAX_NESTING) throw new ShapeError(`${name} is nested deeper than ${MAX_NESTING} levels`);
    dims.push(v.length);
    if (!Array.isArray(v) || v.length === 0) break; // a typed array or an empty array holds the values
  }
  const rowShape = dims.slice(1);
  const values = new Float32Array(rows.length * rowShape.reduce((a, b) => a * b, 1));
  const idx = new Array<number>(dims.length).fill(0); // the path being read, for messages (no allocation per value)
  const where = (depth: number) =>
    `${name}${idx
      .slice(0, depth)
      .map((i) => `[${i}]`)
      .join('')}`;
  const first = (depth: number) => `${name}${'[0]'.repeat(depth)}`;
  const leaves = dims.length - 1;
  let k = 0;
  const walk = (v: unknown, depth: number): void => {
    if (!isNumbers(v)) {
      if (depth === 1) throw invalidArg(where(depth), 'an array of numbers', v);
      throw new ShapeError(
        `${where(depth)} is ${typeof v === 'number' ? 'a number' : `not an array (${typeof v})`} but ${first(depth)} is an array: every row needs the same nesting`,
      );
    }
    if (v.length !== dims[depth])
      throw new ShapeError(
        `${where(depth)} has ${v.length} values but ${first(depth)} has ${dims[depth]}: every row needs the same shape`,
      );
    // Index loops: forEach would skip the holes of a sparse array.
    if (depth < leaves) {
      for (let i = 0; i < v.length; i++) ((idx[depth] = i), walk(v[i], depth + 1));
      return;
    }
    for (let i = 0; i < v.length; i++) {
      const e = v[i];
      if (typeof e === 'number') {
        values[k++] = e;
        continue;
      }
      idx[depth] = i;
      if (isNumbers(e))
        throw new ShapeError(
          `${where(depth + 1)} is an array but ${first(depth + 1)} is a number: every row needs the same nesting`,
        );
      throw new DataError(`${where(depth + 1)} is not a number (${typeof e})`);
    }
  };
  for (let i = 0; i < rows.length; i++) {
    // every row is an array before any value is read
    if (!isNumbers(rows[i])) throw invalidArg(`${name}[${i}]`, 'an array of numbers', rows[i]);
  }
  walk(rows, 0);
  return { values, rowShape };
}

// Finite values (checked on the float32 copy: a double that overflows float32 is caught too).
function checkFinite(name: string, values: Float32Array, rowShape?: number[]): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i]))
      throw new DataError(`${name}${at(i, rowShape)} is ${values[i]}: every value must be finite`);
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
export function fromArrays(
  x:
    | number[][]
    | number[][][]
    | number[][][][]
    | number[]
    | ArrayLike<number>[]
    | ArrayLike<number>[][]
    | ArrayLike<number>,
  y: number[] | number[][] | ArrayLike<number>,
  options?: FromArraysOptions,
): Dataset {
  const o = optionsObject('fromArrays', options, ['shape', 'labels']);
  if (
    o.shape !== undefined &&
    !(Array.isArray(o.shape) && o.shape.length > 0 && o.shape.every((s) => is.positiveInteger(s)))
  ) {
    throw invalidArg('shape', 'non-empty array of positive integers', o.shape);
  }
  if (o.labels !== undefined && !(LABEL_KINDS as readonly unknown[]).includes(o.labels))
    throw invalidArg('labels', LABEL_KINDS.map((k) => `'${k}'`).join(' | '), o.labels);
  const shape = o.shape as number[] | undefined;
  if (!isNumbers(x) || x.length === 0)
    throw invalidArg('x', 'a non-empty array of rows, or a flat array or typed array with options.shape', x);

  // x -> rows × cols float32 values
  let xs: Float32Array;
  let rows: number;
  let cols: number;
  let rowShape: number[] | undefined; // of nested rows: [features], or e.g. [28, 28, 1] for images
  const nested = Array.isArray(x) && typeof x[0] !== 'number';
  if (nested) {
    ({ values: xs, rowShape } = flattenNested('x', x as unknown[]));
    rows = x.length;
    cols = rowShape.reduce((a, b) => a * b, 1);
    if (cols === 0) throw new ShapeError('x[0] is empty: a row needs at least one feature');
    if (shape && shape.reduce((a, b) => a * b, 1) !== cols)
      throw new ShapeError(
        `options.shape [${shape.join(', ')}] holds ${shape.reduce((a, b) => a * b, 1)} values but the rows of x have ${cols}`,
      );
  } else {
    if (!shape)
      throw new ShapeError(
        `x is flat (${x.length} values): give options.shape, the shape of one row (e.g. [${x.length}] for a single row), or pass rows of features`,
      );
    cols = shape.reduce((a, b) => a * b, 1);
    if (x.length % cols !== 0)
      throw new ShapeError(
        `x has ${x.length} values, which is not a whole number of rows of shape [${shape.join(', ')}] (${cols} values)`,
      );
    rows = x.length / cols;
    if (x instanceof Float32Array) xs = x;
    else {
      for (let i = 0; i < x.length; i++)
        if (typeof (x as Numbers)[i] !== 'number')
          throw new DataError(`x[${i}] is not a number (${typeof (x as Numbers)[i]})`);
      xs = Float32Array.from(x as Numbers);
    }
  }
  checkFinite('x', xs, rowShape);

  // y -> Int32Array of class indices or Float32Array of targets, one row per row of x
  if (!isNumbers(y)) throw invalidArg('y', 'an array of labels or targets, or a typed array', y);
  const yNested = Array.isArray(y) && y.length > 0 && typeof y[0] !== 'number';
  const kind = o.labels as FromArraysOptions['labels'];
  // A flat y may hold several values per row where rows of values are possible ('values', 'oneHot').
  const flatRows =
    !yNested &&
    y.length !== rows &&
    y.length % rows === 0 &&
    y.length > 0 &&
    (kind === 'values' || kind === 'oneHot' || (kind === undefined && isFloatArray(y)));
  if (y.length !== rows && !flatRows)
    throw new ShapeError(`y has ${y.length} ${yNested ? 'rows' : 'values'} but x has ${rows} rows`);
  const { values: ys, cols: yCols } = yNested
    ? flattenRows('y', y as unknown[])
    : { values: Float32Array.from(y as Numbers), cols: y.length / rows };
  checkFinite('y', ys, yNested ? [yCols] : undefined);
  const hot = yCols > 1 ? oneHotIndex(ys, rows, yCols) : undefined;
  const resolved =
    kind ?? (yNested ? (hot && hot.bad < 0 ? 'oneHot' : 'values') : isFloatArray(y) ? 'values' : 'index');
  let labels: Int32Array | Float32Array;
  if (resolved === 'values') {
    labels = ys;
  } else if (resolved === 'oneHot') {
    if (!hot || hot.bad >= 0) {
      const r = hot ? hot.bad : 0;
      const row = Array.from(ys.subarray(r * yCols, (r + 1) * yCols));
      throw new DataError(
        `y[${r}] is not one-hot ([${row.slice(0, 8).join(', ')}${row.length > 8 ? ', …' : ''}]): a row needs a single 1 and 0 elsewhere, over at least 2 classes`,
      );
    }
    labels = hot.index;
  } else {
    if (yCols !== 1)
      throw new ShapeError(
        `y has ${yCols} values per row but class indices are one per row (labels: 'oneHot' or 'values' read rows)`,
      );
    labels = new Int32Array(rows);
    for (let i = 0; i < rows; i++) {
      // The given value, not its float32 copy: 1.0000001 is no class index.
      const v = yNested ? (y as unknown as Numbers[])[i]![0]! : (y as Numbers)[i]!;
      if (!Number.isInteger(v) || v < 0 || v > 2 ** 31 - 1) {
        throw new DataError(
          `y[${i}] = ${v} is not a class index (an integer >= 0); for regression targets pass { labels: 'values' }`,
        );
      }
      labels[i] = v;
    }
  }
  return { x: xs, y: labels, rows, shape: shape ? [...shape] : (rowShape ?? [cols]) };
}
