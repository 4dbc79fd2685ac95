/**
 * Reading and writing safetensors files (the common interchange format: an 8-byte little-endian header
 * length, a JSON header of { name: { dtype, shape, data_offsets } } plus optional __metadata__, then the raw
 * little-endian tensor bytes). F32, F16, BF16 and F64 tensors are read as Float32Array; the header is checked
 * against the file size before any tensor is copied. `model.loadWeights` maps names onto a model.
 */
import { promises as fsp } from 'fs';
import { CheckpointError, OneForwardError } from './errors';
import { MAX_FILE, parseHeader, readRegularFile } from './files';
import { invalidArg, is } from './validate';

/** One tensor of a safetensors file, converted to float32. */
export type Tensor = {
  /** The dtype stored in the file: `F32`, `F16`, `BF16` or `F64`. */
  dtype: string;
  /** The tensor's dimensions, outermost first. */
  shape: number[];
  /** The values, row-major, converted to float32. */
  data: Float32Array;
};

const SIZES: Record<string, number> = { F32: 4, F16: 2, BF16: 2, F64: 8 };
const MAX_HEADER = 100 << 20; // the reference implementation's limit
const MAX_DEPTH = 64;

function f16(h: number): number {
  const s = h & 0x8000 ? -1 : 1,
    e = (h >> 10) & 0x1f,
    m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/**
 * Reads every tensor of a safetensors file. The header is bounded (100 MiB, nesting 64 levels) and checked
 * against the file before any tensor is copied: offsets must tile the data exactly (in order, no overlap, no
 * hole, as the format requires) and start at a multiple of the element size.
 * @throws CheckpointError (`ERR_CHECKPOINT`) for a path that is not a readable regular file or a malformed file.
 */
export async function readSafetensors(file: string): Promise<Map<string, Tensor>> {
  if (typeof file !== 'string' || file.length === 0) throw invalidArg('file', 'a file path', file);
  const fail = (why: string, cause?: unknown) => new CheckpointError(`${file}: ${why}`, { cause });
  // The header length is checked before the rest of the file is read.
  const checkHead = (head: Buffer, size: number) => {
    if (size < 8) throw fail('too short for a safetensors header');
    const len = Number(head.readBigUInt64LE(0));
    if (len < 2 || len > MAX_HEADER || 8 + len > size) throw fail(`bad header length ${len}`);
  };
  const buf = await readRegularFile(file, MAX_FILE, fail, { bytes: 8, check: checkHead });
  const n = Number(buf.readBigUInt64LE(0));
  const header = parseHeader(buf.subarray(8, 8 + n).toString('utf8'), MAX_DEPTH, fail);
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw fail('header is not an object');
  const data = buf.subarray(8 + n);
  const entries: {
    name: string;
    dtype: string;
    size: number;
    shape: number[];
    count: number;
    begin: number;
    end: number;
  }[] = [];
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const dtype = String(t?.dtype);
    const size = SIZES[dtype];
    if (!size) throw fail(`tensor ${name}: unsupported dtype ${dtype} (F32, F16, BF16, F64)`);
    if (
      !Array.isArray(t.shape) ||
      t.shape.length > 32 ||
      !t.shape.every((d) => Number.isInteger(d) && d >= 0 && d <= 2 ** 31)
    )
      throw fail(`tensor ${name}: bad shape`);
    const count = (t.shape as number[]).reduce((a, b) => a * b, 1);
    const off = t.data_offsets as unknown;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isSafeInteger(o) && o >= 0))
      throw fail(`tensor ${name}: bad data_offsets`);
    const [begin, end] = off as [number, number];
    if (end < begin || end > data.length || end - begin !== count * size) {
      throw fail(
        `tensor ${name}: data_offsets [${begin}, ${end}] do not fit ${count} x ${size} bytes in ${data.length}`,
      );
    }
    if (begin % size !== 0)
      throw fail(`tensor ${name}: data_offsets [${begin}, ${end}] are not aligned to its ${size}-byte elements`);
    entries.push({ name, dtype, size, shape: [...(t.shape as number[])], count, begin, end });
  }
  // The tensors must tile the data: sorted by offset, each starts where the previous ended.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let at = 0;
  for (const e of sorted) {
    if (e.begin !== at)
      throw fail(
        `tensor ${e.name}: data_offsets [${e.begin}, ${e.end}] ${e.begin < at ? 'overlap another tensor' : `leave a hole after byte ${at}`}`,
      );
    at = e.end;
  }
  if (at !== data.length) throw fail(`the tensors cover ${at} of ${data.length} data bytes`);
  const out = new Map<string, Tensor>();
  for (const { name, dtype, size, shape, count, begin } of entries) {
    const f = new Float32Array(count);
    for (let i = 0; i < count; i++) {
      const p = begin + i * size;
      f[i] =
        dtype === 'F32'
          ? data.readFloatLE(p)
          : dtype === 'F64'
            ? data.readDoubleLE(p)
            : dtype === 'F16'
              ? f16(data.readUInt16LE(p))
              : new Float32Array(new Uint32Array([data.readUInt16LE(p) << 16]).buffer)[0]!;
    }
    out.set(name, { dtype, shape, data: f });
  }
  return out;
}

/**
 * Writes float32 tensors as a safetensors file (for interchange and tests).
 * @throws ConfigError (`ERR_CONFIG`) for a tensor that is not `{ shape, data: Float32Array }` with as many
 * values as its shape, or metadata that is not string to string; CheckpointError (`ERR_CHECKPOINT`) when the
 * file cannot be written.
 */
export async function writeSafetensors(
  file: string,
  tensors: Record<string, { shape: number[]; data: Float32Array }>,
  metadata?: Record<string, string>,
): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) throw invalidArg('file', 'a file path', file);
  if (!is.plainObject(tensors)) throw invalidArg('tensors', 'an object of { shape, data } by name', tensors);
  for (const [name, t] of Object.entries(tensors)) {
    if (name === '__metadata__') throw invalidArg('tensors', 'no tensor named __metadata__', name);
    if (!is.plainObject(t)) throw invalidArg(`tensors.${name}`, '{ shape, data: Float32Array }', t);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => is.integer(d) && d >= 0))
      throw invalidArg(`tensors.${name}.shape`, 'an array of integers >= 0', t.shape);
    if (!is.float32Array(t.data)) throw invalidArg(`tensors.${name}.data`, 'Float32Array', t.data);
    const count = (t.shape as number[]).reduce((a, b) => a * b, 1);
    if (t.data.length !== count)
      throw invalidArg(
        `tensors.${name}.data`,
        `${count} values for shape [${(t.shape as number[]).join(', ')}]`,
        t.data,
      );
  }
  if (metadata !== undefined && (!is.plainObject(metadata) || !Object.values(metadata).every(is.string)))
    throw invalidArg('metadata', 'an object of strings', metadata);
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8); // the format pads the header to 8 bytes
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const body = Object.values(tensors).map((t) => {
    const b = Buffer.alloc(t.data.byteLength);
    t.data.forEach((v, i) => b.writeFloatLE(v, 4 * i));
    return b;
  });
  try {
    await fsp.writeFile(file, Buffer.concat([len, Buffer.from(json), ...body]));
  } catch (err) {
    throw err instanceof OneForwardError
      ? err
      : new CheckpointError(`${file}: cannot write (${(err as Error)?.message ?? String(err)})`, { cause: err });
  }
}
