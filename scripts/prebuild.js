// `prepack`: builds the addon for this platform into prebuilds/<platform>-<arch>/ (with oneforward.json saying
// for which libc and N-API version), so `npm pack` ships it and scripts/install.js can skip the compile. cmake-js
// in its own build-prebuild/ (never a developer's build/). CUDA where nvcc is found: cudart is linked statically
// and cuBLAS is loaded at run time, so that build loads (and runs on the CPU) where there is no driver or GPU.
// The MPI addon is never prebuilt: it links one particular MPI, so the install builds it where an MPI is found.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { hasCmake, libc, loadError, target } = require('./install');

const root = path.join(__dirname, '..');
const out = path.join(root, 'build-prebuild');
const dest = path.join(root, 'prebuilds', target);

if (!hasCmake())
  throw new Error('oneforward: the prebuild needs cmake (it builds the CUDA backend where nvcc is found)');
// A fresh configure, so the prebuild matches this machine's nvcc now; objects with an unchanged command stay.
fs.rmSync(path.join(out, 'CMakeCache.txt'), { force: true });
execFileSync(
  process.execPath,
  [require.resolve('cmake-js/bin/cmake-js'), 'compile', '--out', out, '--target', 'oneforward'],
  {
    cwd: root,
    stdio: 'inherit',
    env: { ...process.env, ONEFORWARD_MPI: '0' },
  },
);
fs.rmSync(dest, { recursive: true, force: true });
fs.mkdirSync(dest, { recursive: true });
const file = path.join(dest, 'oneforward.node');
fs.copyFileSync(path.join(out, 'Release', 'oneforward.node'), file);
const err = loadError(file);
if (err) throw new Error(`oneforward: the prebuilt binary does not load: ${err}`);
const binding = require(file);
const meta = {
  platform: process.platform,
  arch: process.arch,
  libc: libc(),
  napi: require('../package.json').binary.napi_versions[0],
  backends: binding.backendInfo().compiled,
  builtWith: { node: process.version, glibc: process.report.getReport().header.glibcVersionRuntime ?? null },
};
fs.writeFileSync(path.join(dest, 'oneforward.json'), JSON.stringify(meta, null, 2) + '\n');
console.log(
  `oneforward: prebuilt ${path.relative(root, file)} (${meta.backends.join(' + ')}, ${(fs.statSync(file).size / 2 ** 20).toFixed(1)} MiB)`,
);
