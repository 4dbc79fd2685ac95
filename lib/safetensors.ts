/**
 * Reading and writing safetensors files (the common interchange format: an 8-byte little-endian header
 * length, a JSON header of { name: { dtype, shape, data_offsets } } plus optional __metadata__, then the raw
 * little-endian tensor bytes). F32, F16, BF16 and F64 tensors are read as Float32Array; the header is checked
 * against the file size before any tensor is copied. `model.loadWeights` maps names onto a model.
 */
import { promises as fsp } from 'fs';
import { CheckpointError } from './errors';

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
const MAX_HEADER = 100 << 20;

function f16(h: number): number {
  const s = h & 0x8000 ? -1 : 1, e = (h >> 10) & 0x1f, m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** Reads every tensor of a safetensors file. */
export async function readSafetensors(file: string): Promise<Map<string, Tensor>> {
  const fail = (why: string) => new CheckpointError(`${file}: ${why}`);
  let buf: Buffer;
  try {
    buf = await fsp.readFile(file);
  } catch (err) {
    throw fail(`cannot read: ${(err as Error).message}`);
  }
  if (buf.length < 8) throw fail('too short for a safetensors header');
  const n = Number(buf.readBigUInt64LE(0));
  if (n < 2 || n > MAX_HEADER || 8 + n > buf.length) throw fail(`bad header length ${n}`);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8')) as Record<string, unknown>;
  } catch {
    throw fail('header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) throw fail('header is not an object');
  const data = buf.subarray(8 + n);
  const out = new Map<string, Tensor>();
  for (const [name, v] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const t = v as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    const size = SIZES[String(t?.dtype)];
    if (!size) throw fail(`tensor ${name}: unsupported dtype ${String(t?.dtype)} (F32, F16, BF16, F64)`);
    if (!Array.isArray(t.shape) || !t.shape.every((d) => Number.isInteger(d) && d >= 0 && d <= 2 ** 31)) throw fail(`tensor ${name}: bad shape`);
    const count = (t.shape as number[]).reduce((a, b) => a * b, 1);
    const off = t.data_offsets as unknown;
    if (!Array.isArray(off) || off.length !== 2 || !off.every((o) => Number.isInteger(o) && o >= 0)) throw fail(`tensor ${name}: bad data_offsets`);
    const [begin, end] = off as [number, number];
    if (end < begin || end > data.length || end - begin !== count * size) {
      throw fail(`tensor ${name}: data_offsets [${begin}, ${end}] do not fit ${count} x ${size} bytes in ${data.length}`);
    }
    const f = new Float32Array(count);
    const dtype = String(t.dtype);
    for (let i = 0; i < count; i++) {
      const p = begin + i * size;
      f[i] = dtype === 'F32' ? data.readFloatLE(p) : dtype === 'F64' ? data.readDoubleLE(p)
        : dtype === 'F16' ? f16(data.readUInt16LE(p)) : new Float32Array(new Uint32Array([data.readUInt16LE(p) << 16]).buffer)[0]!;
    }
    out.set(name, { dtype, shape: [...(t.shape as number[])], data: f });
  }
  return out;
}

/** Writes float32 tensors as a safetensors file (for interchange and tests). */
export async function writeSafetensors(file: string, tensors: Record<string, { shape: number[]; data: Float32Array }>, metadata?: Record<string, string>): Promise<void> {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const [name, t] of Object.entries(tensors)) {
    header[name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.data.byteLength] };
    offset += t.data.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);  // the format pads the header to 8 bytes
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const body = Object.values(tensors).map((t) => {
    const b = Buffer.alloc(t.data.byteLength);
    t.data.forEach((v, i) => b.writeFloatLE(v, 4 * i));
    return b;
  });
  await fsp.writeFile(file, Buffer.concat([len, Buffer.from(json), ...body]));
}
