/**
 * Bounded reads of user-named files for the loaders (checkpoints, safetensors, IDX, CSV). Only regular files
 * are read: a device (/dev/zero), a FIFO, a socket or a directory is refused before a byte is read, and a file
 * larger than the caller's maximum is refused from its size. A loader may check the file's first bytes (its
 * magic and header) before the rest is allocated and read. Opening uses O_NONBLOCK, so a FIFO with no writer
 * never blocks; errors keep the system error (ENOENT, EACCES...) as `cause`.
 */
import { constants as bufferConstants } from 'buffer';
import { constants, promises as fsp, type Stats } from 'fs';
import * as fs from 'fs';
import { OneForwardError } from './errors';

type Fail = (why: string, cause?: unknown) => OneForwardError;

/** @internal The largest file a loader reads whole: the largest Buffer Node allocates (4 GiB on 64-bit). */
export const MAX_FILE = bufferConstants.MAX_LENGTH;

/**
 * @internal A check of a file's first `bytes` bytes (fewer when the file is shorter) and its size, run before
 * the rest of the file is allocated and read: a file without the loader's magic is refused without reading it.
 */
export type HeadCheck = { bytes: number; check: (head: Buffer, size: number) => void };

// One read call asks for at most 1 GiB: Node refuses (or, for FileHandle.read, aborts the process on) a length
// beyond int32, and files of 2-4 GiB are within the largest Buffer.
const CHUNK = 2 ** 30;

// O_NONBLOCK is POSIX; Windows has no FIFOs to block on (the flag is undefined there).
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

function kind(st: Stats): string {
  return st.isDirectory()
    ? 'a directory'
    : st.isFIFO()
      ? 'a FIFO'
      : st.isSocket()
        ? 'a socket'
        : st.isCharacterDevice()
          ? 'a character device'
          : st.isBlockDevice()
            ? 'a block device'
            : 'not a regular file';
}

function checkStats(st: Stats, maxBytes: number, fail: Fail): number {
  if (!st.isFile()) throw fail(`not a regular file (${kind(st)})`);
  if (st.size > maxBytes) throw fail(`file of ${st.size} bytes exceeds the maximum of ${maxBytes} bytes`);
  return st.size;
}

function openError(err: unknown, fail: Fail): OneForwardError {
  const message = (err as Error)?.message ?? String(err);
  // ENXIO: a socket cannot be opened as a file.
  return fail(
    (err as NodeJS.ErrnoException)?.code === 'ENXIO' ? `not a regular file (${message})` : `cannot read: ${message}`,
    err,
  );
}

// Reads and checks the head (sync path); an empty buffer when there is no check.
function checkHead(size: number, head: HeadCheck | undefined, read: (b: Buffer) => void): Buffer {
  if (!head) return Buffer.alloc(0);
  const first = Buffer.allocUnsafe(Math.min(head.bytes, size));
  read(first);
  head.check(first, size);
  return first;
}

/** @internal Reads a whole regular file of at most `maxBytes` bytes; anything else is `fail(...)`. */
export function readRegularFileSync(file: string, maxBytes: number, fail: Fail, head?: HeadCheck): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, OPEN_FLAGS);
  } catch (err) {
    throw openError(err, fail);
  }
  try {
    const size = checkStats(fs.fstatSync(fd), maxBytes, fail);
    const read = (buf: Buffer, from: number, to: number) => {
      let got = from;
      while (got < to) {
        const n = fs.readSync(fd, buf, got, Math.min(CHUNK, to - got), got);
        if (n === 0) break; // the file shrank while we read it
        got += n;
      }
      if (got !== to) throw fail(`file changed while reading (${got} of ${size} bytes)`);
    };
    const first = checkHead(size, head, (b) => read(b, 0, b.length));
    const buf = Buffer.allocUnsafe(size);
    first.copy(buf);
    read(buf, first.length, size);
    return buf;
  } catch (err) {
    throw err instanceof OneForwardError ? err : fail(`cannot read (${(err as Error)?.message ?? String(err)})`, err);
  } finally {
    fs.closeSync(fd);
  }
}

/** @internal Like {@link readRegularFileSync}, without blocking the event loop. */
export async function readRegularFile(file: string, maxBytes: number, fail: Fail, head?: HeadCheck): Promise<Buffer> {
  let fh: fsp.FileHandle;
  try {
    fh = await fsp.open(file, OPEN_FLAGS);
  } catch (err) {
    throw openError(err, fail);
  }
  try {
    const size = checkStats(await fh.stat(), maxBytes, fail);
    const read = async (buf: Buffer, from: number, to: number) => {
      let got = from;
      while (got < to) {
        const { bytesRead } = await fh.read(buf, got, Math.min(CHUNK, to - got), got);
        if (bytesRead === 0) break; // the file shrank while we read it
        got += bytesRead;
      }
      if (got !== to) throw fail(`file changed while reading (${got} of ${size} bytes)`);
    };
    let first = Buffer.alloc(0);
    if (head) {
      first = Buffer.allocUnsafe(Math.min(head.bytes, size));
      await read(first, 0, first.length);
      head.check(first, size);
    }
    const buf = Buffer.allocUnsafe(size);
    first.copy(buf);
    await read(buf, first.length, size);
    return buf;
  } catch (err) {
    throw err instanceof OneForwardError ? err : fail(`cannot read (${(err as Error)?.message ?? String(err)})`, err);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

/**
 * @internal JSON.parse of a file header after a scan of its nesting depth: JSON.parse itself copes with deep
 * nesting, but every walk over the result (checks, JSON.stringify) recurses, so a header nested 200,000 deep
 * would overflow the stack there. Brackets inside strings do not count.
 */
export function parseHeader(text: string, maxDepth: number, fail: Fail): unknown {
  let depth = 0,
    inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > maxDepth) throw fail(`header nested deeper than ${maxDepth} levels`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw fail('header is not valid JSON', err);
  }
}
