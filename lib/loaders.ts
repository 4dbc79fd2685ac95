/**
 * Data sets read from files: IDX image and label pairs (the MNIST / Fashion-MNIST format) and numeric CSV with a
 * class label column. Only regular files are read, bounded in size, and their headers are checked before the data.
 */
import { constants as bufferConstants } from 'buffer';
import { DataError, OutOfMemoryError, ShapeError } from './errors';
import type { Dataset } from './data';
import { MAX_FILE, readRegularFileSync } from './files';
import { invalidArg, is, optionsObject } from './validate';

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
    if (!Number.isFinite(x[i]!))
      throw new DataError(`${imagesPath}: feature ${v} at index ${i} is not a finite float32`);
  }
  const y = new Int32Array(rows);
  for (let i = 0; i < rows; i++) {
    const v = labels.value(i);
    // Float labels (types 0x0d, 0x0e) would otherwise be truncated or wrap around int32.
    if (!Number.isInteger(v) || v < -(2 ** 31) || v > 2 ** 31 - 1)
      throw new DataError(`${labelsPath}: label ${v} at index ${i} is not an integer class index`);
    y[i] = v;
  }
  return { x, y, rows, shape: images.dims.slice(1) };
}

const fileError = (file: string) => (why: string, cause?: unknown) => new DataError(`${file}: ${why}`, { cause });

const IDX_SIZES: Record<number, number> = { 0x08: 1, 0x09: 1, 0x0b: 2, 0x0c: 4, 0x0d: 4, 0x0e: 8 };

// The magic, type and dims of an IDX file, checked against the file's size (before the data is read).
function idxHeader(
  file: string,
  head: Buffer,
  fileSize: number,
): { type: number; size: number; dims: number[]; off: number; count: number } {
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
    throw new DataError(
      `${file}: expected ${off + count * size} bytes for dims [${dims.join(', ')}], found ${fileSize}`,
    );
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
    return type === 0x08
      ? buf[p]!
      : type === 0x09
        ? buf.readInt8(p)
        : type === 0x0b
          ? buf.readInt16BE(p)
          : type === 0x0c
            ? buf.readInt32BE(p)
            : type === 0x0d
              ? buf.readFloatBE(p)
              : buf.readDoubleBE(p);
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
  return cell
    .slice(0, 40)
    .replace(/[\x00-\x1f\x7f-\x9f]/g, (ch) => `\\x${ch.charCodeAt(0).toString(16).padStart(2, '0')}`);
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
  const lines = text
    .split(/\r\n|\n|\r/)
    .map((l, i) => [i + 1, l] as const)
    .filter(([, l]) => l.trim().length > 0);
  if (lines.length === 0) throw new DataError(`${file}: empty CSV`);
  const first = lines[0]![1].split(',');
  // Only a line without a single number is a header: a data line with one corrupt cell is an error, not dropped.
  const auto = o.header === undefined;
  const header = (o.header as boolean | undefined) ?? !first.some((c) => parseCell(c) !== undefined);
  const body = header ? lines.slice(1) : lines;
  if (body.length === 0) {
    throw new DataError(
      `${file}: no data rows${auto ? ` (the only line was taken as a header: none of its cells is a number; pass header: false to read it as data)` : ''}`,
    );
  }
  const cols = first.length;
  const lc = (o.labelColumn as number | undefined) ?? 0;
  if (!is.integer(lc) || lc >= cols || lc < -cols)
    throw invalidArg('labelColumn', `integer in [-${cols}, ${cols})`, lc);
  const labelCol = lc < 0 ? cols + lc : lc;
  const x = new Float32Array(body.length * (cols - 1));
  const y = new Int32Array(body.length);
  body.forEach(([line, text], r) => {
    const cells = text.split(',');
    if (cells.length !== cols)
      throw new DataError(`${file}: line ${line} has ${cells.length} columns, expected ${cols}`);
    let k = 0;
    for (let c = 0; c < cols; c++) {
      const cell = cells[c]!;
      const v = parseCell(cell);
      if (v === undefined || !Number.isFinite(v)) {
        const hint =
          auto && r === 0 && !header
            ? ' (the first line was read as data because some of its cells are numbers; pass header: true if it is a header)'
            : '';
        throw new DataError(
          `${file}: line ${line}, column ${c + 1} is ${cell.trim() === '' ? 'empty' : `not a number ('${printable(cell)}')`}${hint}`,
        );
      }
      if (c === labelCol) {
        if (!Number.isInteger(v) || v < 0 || v > 2 ** 31 - 1)
          throw new DataError(
            `${file}: label '${printable(cell.trim())}' on line ${line} is not a class index (an integer in [0, 2^31))`,
          );
        y[r] = v;
      } else {
        const f = Math.fround(v / scale);
        if (!Number.isFinite(f))
          throw new DataError(`${file}: line ${line}, column ${c + 1} (${printable(cell.trim())}) overflows float32`);
        x[r * (cols - 1) + k++] = f;
      }
    }
  });
  return { x, y, rows: body.length, shape: [cols - 1] };
}
