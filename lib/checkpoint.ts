/**
 * Checkpoints: one file, a JSON header followed by raw little-endian float32 tensors (safetensors-like, never
 * executable). Layout: 8-byte magic "OFCKPT01", u32 header length, u32 reserved, the header, zero padding to a
 * 64-byte boundary, then the data. The header holds the format version, the model spec, the training counters
 * and optimizer kind, each tensor's name/shape/offset, and a SHA-256 of the data. Writes go to a temp file
 * that is fsynced and renamed, so a crash mid-save leaves the previous file intact; saves to one file land in the
 * order of the calls (each snapshot is taken when save is called). Loading checks every field
 * against the model spec and the file size before allocating anything, then verifies the checksum.
 */
import { createHash, randomBytes } from 'crypto';
import { promises as fsp } from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CheckpointError, NumericError, OneForwardError } from './errors';
import { MAX_FILE, parseHeader, readRegularFile } from './files';
import './layers/index'; // every kind registered
import { type Layer, kindOf } from './layers/kind';
import { type Topology, topology } from './layers/topology';
import { LOSSES, type LossName, type Model, sequential } from './model';

const MAGIC = Buffer.from('OFCKPT01', 'ascii');
const VERSION = 1;
const MAX_HEADER = 16 << 20;
// JSON nesting of a header: a residual block inside a residual block adds 2 levels; 64 leaves room for 29.
const MAX_DEPTH = 64;
const OPTIMIZERS = ['sgd', 'adam', 'adamw'] as const;

type TensorEntry = { name: string; shape: number[]; offset: number };
type Header = {
  format: 'oneforward';
  version: number;
  dtype: 'float32';
  model: { layers: Layer[]; loss: LossName; seed: number };
  state: {
    step: number;
    epochsRun: number;
    epochStep: number;
    optimizer: { kind: string; t: number } | null;
    runningLoss?: number | null;
    logSigma?: number[] | null;
    layerVar?: number[] | null;
    frozen?: number; // leading layers with parameters that are frozen (also in dense layers' trainable flags)
    bnRunning?: number[] | null; // batchNorm running statistics
  };
  tensors: TensorEntry[];
  dataBytes: number;
  checksum: string;
};

const fail = (file: string, why: string) => new CheckpointError(`${file}: ${why}`);

// What load() would refuse is refused before a byte is written: a checkpoint must never replace a good file
// with one that cannot be loaded (non-finite weights or optimizer moments, a negative second moment, non-finite
// sigma, variances or batchNorm statistics).
// The one rule save and load share: the index of the first value that is not finite (or negative, where it must
// not be), else -1.
function badIndex(values: ArrayLike<number>, nonNegative: boolean): number {
  for (let j = 0; j < values.length; j++) {
    const v = values[j]!;
    if (!Number.isFinite(v) || (nonNegative && v < 0)) return j;
  }
  return -1;
}

function checkFinite(file: string, name: string, values: ArrayLike<number>, nonNegative = false): void {
  const j = badIndex(values, nonNegative);
  if (j >= 0) {
    throw new NumericError(
      `${file}: not saved: ${name} holds ${values[j]} at index ${j} (a checkpoint holds finite ${nonNegative ? 'non-negative ' : ''}values only; the file was left as it was)`,
    );
  }
}

// Saves to one file land in call order (several can be in flight, e.g. one per epoch from onEpochEnd): an older
// snapshot never replaces a newer one. Keyed by absolute path; an entry settles when its write has.
const writing = new Map<string, Promise<void>>();

/**
 * Saves a model (parameters, optimizer state, training counters) to `file`, atomically.
 * @throws NumericError (`ERR_NUMERIC`) when a parameter or the optimizer state holds NaN or ±Infinity (nothing
 * is written, an existing file is left intact); CheckpointError (`ERR_CHECKPOINT`) for a path that is not a
 * string or a file that cannot be written.
 */
export async function save(model: Model, file: string): Promise<void> {
  if (typeof file !== 'string' || file.length === 0) throw new CheckpointError('Expected a file path for save');
  const nat = model._native;
  if (!nat) throw fail(file, 'the model has been disposed');
  const st = nat.exportState();
  const params = nat.parameters();
  const tensors: TensorEntry[] = [];
  const chunks: Buffer[] = [];
  let offset = 0;
  const add = (name: string, shape: number[], data: Float32Array) => {
    tensors.push({ name, shape, offset });
    chunks.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    offset += data.byteLength;
  };
  for (const p of params) add(p.name, p.shape, p.data);
  const n = params.reduce((a, p) => a + p.data.length, 0);
  if (st.m && st.v) (add('optimizer.m', [n], st.m), add('optimizer.v', [n], st.v));
  for (const p of params) checkFinite(file, p.name, p.data);
  if (st.m && st.v) (checkFinite(file, 'optimizer.m', st.m), checkFinite(file, 'optimizer.v', st.v, true));
  if (st.runningLoss !== undefined && st.runningLoss !== null)
    checkFinite(file, 'the running loss baseline', [st.runningLoss]);
  if (st.logSigma) checkFinite(file, 'the learned sigma', st.logSigma);
  if (st.layerVar) checkFinite(file, 'the layer variances', st.layerVar, true);
  if (st.bnRunning) checkFinite(file, 'the batchNorm statistics', st.bnRunning);
  const data = Buffer.concat(chunks);
  const header: Header = {
    format: 'oneforward',
    version: VERSION,
    dtype: 'float32',
    model: { layers: model.layers.map((l) => ({ ...l })), loss: model.loss, seed: model.seed },
    state: {
      step: st.step,
      epochsRun: st.epochsRun,
      epochStep: st.epochStep,
      optimizer: st.optKind >= 0 ? { kind: OPTIMIZERS[st.optKind]!, t: st.optT } : null,
      runningLoss: st.runningLoss,
      logSigma: st.logSigma,
      layerVar: st.layerVar,
      frozen: model.frozen,
      bnRunning: st.bnRunning ?? null,
    },
    tensors,
    dataBytes: data.length,
    checksum: 'sha256:' + createHash('sha256').update(data).digest('hex'),
  };
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const pre = Buffer.alloc(16);
  MAGIC.copy(pre, 0);
  pre.writeUInt32LE(json.length, 8);
  const dataOffset = Math.ceil((16 + json.length) / 64) * 64;
  const pad = Buffer.alloc(dataOffset - 16 - json.length);
  // The snapshot above is taken before the first await; its write waits for the saves to this file before it.
  const key = path.resolve(file);
  const written = (writing.get(key) ?? Promise.resolve()).then(() =>
    write(file, [pre, json, pad, os.endianness() === 'LE' ? data : swap32(data)]),
  );
  const settled = written.then(
    () => undefined,
    () => undefined,
  );
  writing.set(key, settled);
  void settled.then(() => {
    if (writing.get(key) === settled) writing.delete(key);
  });
  await written;
}

// The atomic write: a temp file, fsync, rename, fsync of the directory.
async function write(file: string, parts: Buffer[]): Promise<void> {
  const tmp = path.join(
    path.dirname(file),
    `.${path.basename(file)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`,
  );
  let fh: fsp.FileHandle | undefined;
  try {
    fh = await fsp.open(tmp, 'wx', 0o644);
    await fh.writev(parts);
    await fh.sync();
    await fh.close();
    fh = undefined;
    await fsp.rename(tmp, file);
    await syncDir(path.dirname(file));
  } catch (err) {
    await fh?.close().catch(() => undefined);
    await fsp.rm(tmp, { force: true }).catch(() => undefined);
    throw err instanceof OneForwardError ? err : fail(file, `cannot write: ${(err as Error).message}`);
  }
}

async function syncDir(dir: string) {
  try {
    const d = await fsp.open(dir, 'r');
    await d.sync().catch(() => undefined);
    await d.close();
  } catch {
    // Directories cannot be opened for sync on every platform; the rename is still atomic.
  }
}

function swap32(b: Buffer): Buffer {
  const out = Buffer.from(b);
  out.swap32();
  return out;
}

const isInt = (v: unknown, lo: number, hi: number): v is number =>
  Number.isInteger(v) && (v as number) >= lo && (v as number) <= hi;

// The layer list of a header, checked as strictly as the public constructors would.
function checkLayers(file: string, layers: unknown): Layer[] {
  if (!Array.isArray(layers) || layers.length === 0 || layers.length > 4096)
    throw fail(file, 'model.layers must be a non-empty array');
  return layers.map((l, i) => {
    const o = l as Record<string, unknown>;
    if (typeof o !== 'object' || o === null) throw fail(file, `model.layers[${i}] is not an object`);
    const kind = kindOf(o.type);
    if (!kind) throw fail(file, `model.layers[${i}]: unknown layer`);
    try {
      // rebuilt by the public factories, so a header can hold nothing they would refuse
      return kind.revive(o, (inner) => checkLayers(file, inner));
    } catch (err) {
      if (err instanceof CheckpointError) throw err; // from a block's inner layers, already located
      throw fail(file, `model.layers[${i}]: bad ${String(o.type)} layer (${(err as Error).message})`);
    }
  });
}

/**
 * Loads a checkpoint written by {@link Model.save}: a new model with its parameters, optimizer state and counters.
 * Only a regular file is read (a device, FIFO, socket or directory is refused before a byte is read); its header
 * is bounded (16 MiB, nested at most 64 levels) and checked against the file size before anything is allocated,
 * and every tensor must be finite.
 * @throws CheckpointError (`ERR_CHECKPOINT`) for anything else: an unreadable path (the system error is its
 * `cause`), a file that is not a checkpoint, a corrupt, truncated or mismatched header, a bad checksum, or
 * non-finite weights.
 */
export async function load(file: string): Promise<Model> {
  if (typeof file !== 'string' || file.length === 0) throw new CheckpointError('Expected a file path for load');
  // The magic and header length are checked before the rest of the file is read.
  const checkHead = (head: Buffer, size: number) => {
    if (size < 16 || !head.subarray(0, 8).equals(MAGIC)) throw fail(file, 'not a oneforward checkpoint (bad magic)');
    const len = head.readUInt32LE(8);
    if (len === 0 || len > MAX_HEADER || 16 + len > size)
      throw fail(file, `truncated or corrupt header (length ${len})`);
  };
  const failWith = (why: string, cause?: unknown) => new CheckpointError(`${file}: ${why}`, { cause });
  const buf = await readRegularFile(file, MAX_FILE, failWith, { bytes: 16, check: checkHead });
  const headerLen = buf.readUInt32LE(8);
  const h = parseHeader(buf.subarray(16, 16 + headerLen).toString('utf8'), MAX_DEPTH, failWith) as Header;
  if (typeof h !== 'object' || h === null || h.format !== 'oneforward') throw fail(file, 'not a oneforward checkpoint');
  if (h.version !== VERSION)
    throw fail(file, `unsupported format version ${String(h.version)} (this build reads version ${VERSION})`);
  if (h.dtype !== 'float32') throw fail(file, `unsupported dtype ${String(h.dtype)}`);
  const m = h.model as Record<string, unknown> | undefined;
  if (!m || !(LOSSES as readonly unknown[]).includes(m.loss) || !isInt(m.seed, 0, 2 ** 53))
    throw fail(file, 'bad model section');
  const layers = checkLayers(file, m.layers);
  // Expected tensors from the layout of the spec (nothing allocated): names, shapes, contiguous offsets.
  let topo: Topology;
  try {
    topo = topology(layers);
  } catch (err) {
    throw fail(file, `model.layers make no model: ${(err as Error).message}`);
  }
  const expected: { name: string; shape: number[] }[] = topo.tensors.map((t) => ({
    name: t.name,
    shape: [...t.shape],
  }));
  const total = expected.reduce((a, t) => a + t.shape.reduce((p, v) => p * v, 1), 0);
  const d = expected.filter((t) => t.name.endsWith('.weight')).length; // layers with parameters
  const s = h.state as Header['state'] | undefined;
  if (
    !s ||
    !isInt(s.step, 0, 2 ** 32 - 1) ||
    !isInt(s.epochsRun, 0, 2 ** 32 - 1) ||
    !isInt(s.epochStep, 0, 2 ** 32 - 1)
  )
    throw fail(file, 'bad state section');
  if (s.runningLoss !== undefined && s.runningLoss !== null && !Number.isFinite(s.runningLoss))
    throw fail(file, 'bad running baseline');
  if (
    s.logSigma !== undefined &&
    s.logSigma !== null &&
    (!Array.isArray(s.logSigma) || s.logSigma.length !== d || !s.logSigma.every(Number.isFinite))
  ) {
    throw fail(file, 'bad learned sigma');
  }
  if (
    s.layerVar !== undefined &&
    s.layerVar !== null &&
    (!Array.isArray(s.layerVar) || s.layerVar.length !== d || !s.layerVar.every((v) => Number.isFinite(v) && v >= 0))
  ) {
    throw fail(file, 'bad layer variances');
  }
  let optKind = -1;
  if (s.optimizer !== null) {
    optKind = OPTIMIZERS.indexOf(s.optimizer?.kind as (typeof OPTIMIZERS)[number]);
    if (optKind < 0 || !isInt(s.optimizer?.t, 0, 2 ** 52)) throw fail(file, 'bad optimizer state');
    expected.push({ name: 'optimizer.m', shape: [total] }, { name: 'optimizer.v', shape: [total] });
  }
  if (!Array.isArray(h.tensors) || h.tensors.length !== expected.length)
    throw fail(file, 'tensor list does not match the model');
  let offset = 0;
  h.tensors.forEach((t, i) => {
    const e = expected[i]!;
    if (
      typeof t !== 'object' ||
      t === null ||
      t.name !== e.name ||
      !Array.isArray(t.shape) ||
      t.shape.length !== e.shape.length ||
      t.shape.some((v, j) => v !== e.shape[j]) ||
      t.offset !== offset
    ) {
      throw fail(
        file,
        `tensor ${i} (${String(t?.name)}) does not match the model: expected ${e.name} [${e.shape.join(', ')}] at ${offset}`,
      );
    }
    offset += 4 * e.shape.reduce((a, b) => a * b, 1);
  });
  const dataOffset = Math.ceil((16 + headerLen) / 64) * 64;
  if (h.dataBytes !== offset || buf.length !== dataOffset + offset) {
    throw fail(
      file,
      `size mismatch: the header describes ${offset} data bytes, the file holds ${buf.length - dataOffset}`,
    );
  }
  const data = buf.subarray(dataOffset);
  const sum = 'sha256:' + createHash('sha256').update(data).digest('hex');
  if (h.checksum !== sum) throw fail(file, 'checksum mismatch: the file is corrupted');

  // Only now: build the model and fill it.
  const floats = (i: number) => {
    const t = h.tensors[i]!;
    const n = t.shape.reduce((a, b) => a * b, 1);
    const out = new Float32Array(n);
    const bytes = Buffer.from(out.buffer);
    data.copy(bytes, 0, t.offset, t.offset + 4 * n);
    if (os.endianness() !== 'LE') bytes.swap32();
    return out;
  };
  if (s.frozen !== undefined && !isInt(s.frozen, 0, d - 1)) throw fail(file, 'bad frozen count');
  if (
    s.bnRunning !== undefined &&
    s.bnRunning !== null &&
    (!Array.isArray(s.bnRunning) || !s.bnRunning.every(Number.isFinite))
  )
    throw fail(file, 'bad batchNorm statistics');
  // Every tensor is converted and checked before the model is touched: non-finite weights (or optimizer moments)
  // would load silently and predict NaN. Adam's second moment is never negative.
  const values = h.tensors.map((t, i) => {
    const f = floats(i);
    const j = badIndex(f, t.name === 'optimizer.v');
    if (j >= 0) throw fail(file, `tensor ${t.name} holds ${f[j]} at index ${j} (weights must be finite)`);
    return f;
  });
  const model = sequential(layers, { loss: m.loss as LossName, seed: m.seed as number });
  try {
    if (s.frozen !== undefined && s.frozen !== model.frozen) model.freeze(s.frozen);
    model.parameters().forEach((p, i) => p.data.set(values[i]!));
    importState(model, s, optKind, values);
  } catch (err) {
    model.dispose();
    throw err instanceof OneForwardError
      ? err
      : fail(file, `cannot restore the state: ${(err as Error)?.message ?? String(err)}`);
  }
  return model;
}

function importState(model: Model, s: Header['state'], optKind: number, values: Float32Array[]): void {
  const np = model.parameters().length;
  model._native!.importState({
    step: s.step,
    epochsRun: s.epochsRun,
    epochStep: s.epochStep,
    optKind,
    optT: s.optimizer?.t ?? 0,
    runningLoss: s.runningLoss ?? null,
    logSigma: s.logSigma ?? null,
    layerVar: s.layerVar ?? null,
    bnRunning: s.bnRunning ?? null,
    m: optKind >= 0 ? values[np]! : null,
    v: optKind >= 0 ? values[np + 1]! : null,
  });
}
