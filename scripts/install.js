// The package's install script, and `npm run rebuild` / `npx oneforward rebuild` (with --rebuild). In order:
//   1. the prebuilt addon in prebuilds/<platform>-<arch>/ when it was made for this libc and N-API version and
//      loads here (a source checkout, --rebuild and ONEFORWARD_BUILD_FROM_SOURCE=1 skip it); where an MPI is
//      found, the small MPI addon is still built from source with cmake (it links that MPI);
//   2. else cmake-js (CPU, CUDA where nvcc is found, the MPI addon where an MPI is found) into build/;
//   3. else, without cmake, node-gyp (CPU only) into build-gyp/;
//   4. else an error naming the missing tools.
// Prints one line saying which. lib/native.ts loads build/, then build-gyp/, then prebuilds/.
'use strict';
const { execFileSync, spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const { buildGyp, dir: gypDir } = require('./build-gyp');

const root = path.join(__dirname, '..');
const target = `${process.platform}-${process.arch}`;
const prebuiltDir = path.join(root, 'prebuilds', target);
const buildDir = path.join(root, 'build');
const cmakeOutput = path.join(buildDir, 'Release', 'oneforward.node');
const mpiOutput = path.join(buildDir, 'Release', 'oneforward_mpi.node');
const checkout = fs.existsSync(path.join(root, '.git'));

const log = (line) => console.log(`oneforward: ${line}`);

/** The path of executable `name` on PATH, or undefined. */
function which(name) {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = path.join(dir || '.', name);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      if (fs.statSync(file).isFile()) return file;
    } catch {}
  }
  return undefined;
}

/** Whether cmake is on PATH and runs (a broken or missing one sends the build to node-gyp). */
function hasCmake() {
  return which('cmake') !== undefined && spawnSync('cmake', ['--version'], { stdio: 'ignore' }).status === 0;
}

/** Whether an MPI is installed (its compiler wrapper is on PATH) and wanted (ONEFORWARD_MPI=0 turns it off). */
function hasMpi() {
  return process.env.ONEFORWARD_MPI !== '0' && (which('mpicxx') !== undefined || which('mpicc') !== undefined);
}

/** The C library: `glibc` or `musl` on Linux, '' elsewhere (node reports the glibc version it runs on). */
function libc() {
  if (process.platform !== 'linux') return '';
  return process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
}

/** Loads `file` in a child process (a failed dlopen must not take this one down). Returns '' or the error. */
function loadError(file) {
  const r = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(file)}).backendInfo()`], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  if (r.status === 0) return '';
  const lines = `${r.stderr ?? ''}${r.error ? r.error.message : ''}`.split('\n').filter((l) => /error/i.test(l));
  return lines[0]?.trim() ?? `exit code ${r.status}`;
}

/** Why the prebuilt addon cannot be used here, or '' when it can. */
function prebuiltProblem() {
  const file = path.join(prebuiltDir, 'oneforward.node');
  if (!fs.existsSync(file)) return `no prebuilt binary for ${target}`;
  let meta;
  try {
    meta = JSON.parse(fs.readFileSync(path.join(prebuiltDir, 'oneforward.json'), 'utf8'));
  } catch {
    return `${path.join(prebuiltDir, 'oneforward.json')} is missing or unreadable`;
  }
  if (meta.libc !== libc()) return `the prebuilt binary is for ${meta.libc}, this system has ${libc()}`;
  if (Number(process.versions.napi) < meta.napi)
    return `the prebuilt binary needs N-API ${meta.napi}, node has ${process.versions.napi}`;
  const err = loadError(file);
  return err ? `the prebuilt binary does not load here (${err})` : '';
}

/** The tools a source build lacks (cmake: a compiler and make or ninja; node-gyp: a compiler, make, python3). */
function missingTools(cmake) {
  const missing = [];
  const cxx = process.env.CXX?.split(' ')[0];
  if (!(cxx ? (which(cxx) ?? (fs.existsSync(cxx) && cxx)) : ['g++', 'c++', 'clang++'].find(which)))
    missing.push(cxx ?? 'g++ (a C++17 compiler)');
  if (!which('make') && !(cmake && which('ninja'))) missing.push('make');
  if (!cmake && !process.env.PYTHON && !which('python3') && !which('python')) missing.push('python3');
  return missing;
}

function runCmakeJs(args, env = process.env) {
  execFileSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), ...args, '--out', 'build'], {
    cwd: root,
    stdio: 'inherit',
    env,
  });
}

/** Drops the cached configure (and compiler detection) so CUDA and MPI are looked for again; objects stay. */
function clearConfigure() {
  fs.rmSync(path.join(buildDir, 'CMakeCache.txt'), { force: true });
  const files = path.join(buildDir, 'CMakeFiles');
  if (!fs.existsSync(files)) return;
  for (const entry of fs.readdirSync(files))
    if (/^\d+\.\d+/.test(entry)) fs.rmSync(path.join(files, entry), { recursive: true, force: true });
}

/** The backends compiled into an addon, in words (`CPU + CUDA`). */
function backends(file) {
  const r = spawnSync(process.execPath, ['-p', `require(${JSON.stringify(file)}).backendInfo().compiled.join(' + ')`], {
    encoding: 'utf8',
  });
  return r.status === 0 ? r.stdout.trim().toUpperCase() : 'CPU';
}

function usePrebuilt() {
  // Outputs of an earlier source install would load first (lib/native.ts); a checkout never gets here.
  fs.rmSync(buildDir, { recursive: true, force: true });
  fs.rmSync(gypDir, { recursive: true, force: true });
  const what = `the prebuilt ${target} binary (${backends(path.join(prebuiltDir, 'oneforward.node'))}`;
  if (!hasMpi()) return log(`using ${what})`);
  if (!hasCmake())
    return log(
      `using ${what}); an MPI was found, but its addon needs cmake: install cmake, then npx oneforward rebuild`,
    );
  try {
    runCmakeJs(['compile', '--target', 'oneforward_mpi'], { ...process.env, ONEFORWARD_CUDA: '0' });
  } catch {
    // The main addon works without it; a broken MPI must not fail the install.
    return log(`using ${what}); the MPI addon failed to build (see above), so MPI stays off`);
  }
  log(`using ${what}) with the MPI addon built from source (cmake)`);
}

function buildFromSource(why, rebuild) {
  const cmake = hasCmake();
  const missing = missingTools(cmake);
  if (missing.length) {
    throw new Error(
      `cannot build the native addon (${why}): ${missing.join(', ')} not found.\n` +
        `  Install a C++17 compiler, make and python3 (cmake is optional; it adds CUDA and MPI), then run npm install again:\n` +
        `    Debian/Ubuntu: apt-get install cmake g++ make python3\n    Fedora/RHEL:   dnf install cmake gcc-c++ make python3\n` +
        `    Alpine:        apk add cmake g++ make python3\n    macOS:         xcode-select --install`,
    );
  }
  if (cmake) {
    // A fresh configure each time, so `npm install` again after installing nvcc or an MPI finds them.
    clearConfigure();
    runCmakeJs(['compile']);
    if (!checkout) fs.rmSync(gypDir, { recursive: true, force: true });
    return log(
      `built from source with cmake (${why}): ${backends(cmakeOutput)}, MPI ${fs.existsSync(mpiOutput) ? 'on' : 'off'}`,
    );
  }
  if (!checkout) fs.rmSync(cmakeOutput, { force: true });
  buildGyp({ incremental: !rebuild });
  log(`built from source with node-gyp, CPU only (${why}; cmake not found, and CUDA and MPI need it)`);
}

function main(argv) {
  // `npm rebuild oneforward` runs this script too: there, as with --rebuild, the user asks for a source build.
  const rebuild = argv.includes('--rebuild') || process.env.npm_command === 'rebuild';
  const forced = rebuild
    ? 'rebuild'
    : process.env.ONEFORWARD_BUILD_FROM_SOURCE === '1'
      ? 'ONEFORWARD_BUILD_FROM_SOURCE=1'
      : checkout
        ? 'a source checkout'
        : '';
  const why = forced || prebuiltProblem();
  if (!why) return usePrebuilt();
  buildFromSource(why, rebuild);
}

module.exports = { hasCmake, missingTools, libc, loadError, target };

if (require.main === module) {
  try {
    main(process.argv.slice(2));
  } catch (err) {
    // execFileSync's error repeats the command; the build's own output above says what failed.
    const msg =
      err.status !== undefined
        ? `the native build failed (exit code ${err.status}); see the output above`
        : err.message;
    console.error(`oneforward: ${msg}`);
    process.exitCode = 1;
  }
}
