// `npm run build:gyp`: builds the CPU-only addon with node-gyp from binding.gyp, into build-gyp/ so it never
// touches cmake-js's build/. node-gyp always writes ./build under its working directory, so it runs in
// build-gyp/ on a one-line binding.gyp that includes the real one.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const dir = path.join(root, 'build-gyp');
fs.mkdirSync(dir, { recursive: true });
fs.writeFileSync(path.join(dir, 'binding.gyp'), JSON.stringify({ includes: ['../binding.gyp'] }) + '\n');
const gyp = require.resolve('node-gyp/bin/node-gyp.js');
execFileSync(process.execPath, [gyp, 'rebuild', '-j', 'max'], { cwd: dir, stdio: 'inherit' });
console.log('oneforward: node-gyp build at', path.join(dir, 'build', 'Release', 'oneforward.node'));
