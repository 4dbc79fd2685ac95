// Before tests and benches: builds what is missing, incrementally, so `npm test` also works after
// `npm install --ignore-scripts`. The native addon is (re)built by cmake-js; the TypeScript by tsc.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const run = (cmd, args) => execFileSync(cmd, args, { cwd: root, stdio: 'inherit', shell: process.platform === 'win32' });
const bin = (name) => path.join(root, 'node_modules', '.bin', name);
if (!process.env.ONEFORWARD_NATIVE) {
  const built = fs.existsSync(path.join(root, 'build', 'CMakeCache.txt'));
  run(bin('cmake-js'), [built ? 'build' : 'compile', '--out', 'build']);
}
run(bin('tsc'), ['-p', 'tsconfig.json']);
run(process.execPath, [path.join(__dirname, 'esm-wrapper.js')]);
