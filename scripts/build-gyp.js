// `npm run build:gyp`: builds the CPU-only addon with node-gyp from binding.gyp, into build-gyp/ so it never
// touches cmake-js's build/. node-gyp always writes ./build under its working directory, so it runs in
// build-gyp/ on a one-line binding.gyp that includes the real one. Also the install's fallback where cmake is
// absent (scripts/install.js) and pretest's (incremental there).
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const dir = path.join(root, 'build-gyp');
const output = path.join(dir, 'build', 'Release', 'oneforward.node');

// The headers of the running node where its installation ships them (official tarballs, nvm, NodeSource, Debian):
// node-gyp then downloads nothing. Elsewhere node-gyp fetches them once into its cache.
function localNodeDir() {
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  const inc = path.join(prefix, 'include', 'node');
  try {
    const h = fs.readFileSync(path.join(inc, 'node_version.h'), 'utf8');
    const v = ['MAJOR', 'MINOR', 'PATCH'].map((p) => h.match(new RegExp(`#define NODE_${p}_VERSION (\\d+)`))[1]);
    return `v${v.join('.')}` === process.version && fs.existsSync(path.join(inc, 'common.gypi')) ? prefix : undefined;
  } catch {
    return undefined;
  }
}

/** Builds build-gyp/build/Release/oneforward.node; `incremental` reuses an earlier configure. Returns its path. */
function buildGyp({ incremental = false, stdio = 'inherit' } = {}) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'binding.gyp'), JSON.stringify({ includes: ['../binding.gyp'] }) + '\n');
  const gyp = require.resolve('node-gyp/bin/node-gyp.js');
  const nodedir = localNodeDir();
  const configured =
    fs.existsSync(path.join(dir, 'build', 'Makefile')) || fs.existsSync(path.join(dir, 'build', 'config.gypi'));
  const command = incremental && configured ? 'build' : 'rebuild';
  const args = [gyp, command, '-j', 'max', ...(nodedir && command === 'rebuild' ? [`--nodedir=${nodedir}`] : [])];
  execFileSync(process.execPath, args, { cwd: dir, stdio });
  return output;
}

module.exports = { buildGyp, dir, output };

if (require.main === module) {
  buildGyp();
  console.log('oneforward: node-gyp build at', output);
}
