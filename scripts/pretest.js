// Before tests and benches: builds what is missing, incrementally, so `npm test` also works after
// `npm install --ignore-scripts`. The native addon is (re)built by cmake-js, or by node-gyp (CPU only, into
// build-gyp/) where cmake is absent; the TypeScript by tsc.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { hasCmake } = require('./install');
const { buildGyp } = require('./build-gyp');
const root = path.join(__dirname, '..');
const run = (file, args) => execFileSync(process.execPath, [file, ...args], { cwd: root, stdio: 'inherit' });
if (!process.env.ONEFORWARD_NATIVE) {
  if (hasCmake()) {
    const built = fs.existsSync(path.join(root, 'build', 'CMakeCache.txt'));
    run(require.resolve('cmake-js/bin/cmake-js'), [built ? 'build' : 'compile', '--out', 'build']);
  } else {
    buildGyp({ incremental: true });
  }
}
run(require.resolve('typescript/bin/tsc'), ['-p', 'tsconfig.json']);
run(path.join(__dirname, 'esm-wrapper.js'), []);
