// Scratch files for the hostile-file tests (test/81, test/84): a temporary folder removed at the end, and small
// checkpoints and safetensors files to corrupt.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../../lib/index';

type Tap = { teardown(f: () => void): void };

export function scratchFiles(t: Tap, prefix: string) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, data: string | Buffer) => (
    fs.writeFileSync(path.join(dir, name), data),
    path.join(dir, name)
  );
  // A checkpoint of a small model, and its parts.
  async function checkpoint(name: string) {
    const m = of.sequential([of.dense(4, 8), of.relu(), of.dense(8, 3)], { seed: 1 });
    const p = path.join(dir, name);
    await m.save(p);
    m.dispose();
    const buf = fs.readFileSync(p);
    const len = buf.readUInt32LE(8);
    return {
      p,
      buf,
      header: JSON.parse(buf.subarray(16, 16 + len).toString()) as Record<string, unknown>,
      dataOffset: Math.ceil((16 + len) / 64) * 64,
    };
  }
  function writeCheckpoint(name: string, header: string, data: Buffer) {
    const json = Buffer.from(header);
    const pre = Buffer.alloc(16);
    pre.write('OFCKPT01', 0, 'ascii');
    pre.writeUInt32LE(json.length, 8);
    const pad = Buffer.alloc(Math.ceil((16 + json.length) / 64) * 64 - 16 - json.length);
    return file(name, Buffer.concat([pre, json, pad, data]));
  }
  function safetensors(name: string, header: unknown, data: Buffer) {
    const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
    const len = Buffer.alloc(8);
    len.writeBigUInt64LE(BigInt(json.length));
    return file(name, Buffer.concat([len, json, data]));
  }
  return { dir, file, checkpoint, writeCheckpoint, safetensors };
}
