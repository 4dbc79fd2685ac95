// The install's choices that can be checked in seconds (scripts/install.js, lib/native.ts): a source build
// without its tools fails naming them and how to install them, also through `oneforward rebuild`; the loader
// takes the prebuilt addon when no source build is there, and backend.info says which file runs.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { spawnSync } from 'child_process';
import * as of from '../lib/index';

const root = path.resolve(__dirname, '..', '..');

// An empty PATH: no cmake, compiler, make or python. The script fails before it builds or deletes anything.
function withoutTools(args: string[]) {
  const env: NodeJS.ProcessEnv = { ...process.env, PATH: fs.mkdtempSync(path.join(os.tmpdir(), 'of-nopath-')) };
  delete env.CXX;
  delete env.PYTHON;
  return spawnSync(process.execPath, args, { cwd: root, env, encoding: 'utf8' });
}

t.test('a source build without a compiler, make and python3 fails naming them and how to install them', async (t) => {
  for (const [label, args, why] of [
    ['npm install', [path.join(root, 'scripts', 'install.js')], /\(a source checkout\)|\(no prebuilt binary for /],
    ['npx oneforward rebuild', [path.join(root, 'bin', 'oneforward.js'), 'rebuild'], /\(rebuild\)/],
  ] as const) {
    const r = withoutTools([...args]);
    t.equal(r.status, 1, `${label} exits 1`);
    t.match(r.stderr, /oneforward: cannot build the native addon/, label);
    t.match(r.stderr, why, `${label} says why it builds from source`);
    t.match(r.stderr, /g\+\+ \(a C\+\+17 compiler\), make, python3 not found/, `${label} names the missing tools`);
    t.match(r.stderr, /Debian\/Ubuntu: apt-get install cmake g\+\+ make python3/, `${label} says how to install them`);
    t.equal(r.stdout, '', `${label} built nothing`);
  }
});

t.test('backend.info says which addon file runs', async (t) => {
  const info = of.backend.info();
  const expected = {
    custom: process.env.ONEFORWARD_NATIVE,
    cmake: path.join(root, 'build', 'Release', 'oneforward.node'),
    'node-gyp': path.join(root, 'build-gyp', 'build', 'Release', 'oneforward.node'),
    prebuilt: path.join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'oneforward.node'),
  };
  t.equal(info.binaryPath, expected[info.binary], info.binary);
  t.ok(fs.existsSync(info.binaryPath));
});

t.test('without a source build the loader takes prebuilds/<platform>-<arch>/oneforward.node', async (t) => {
  // A package as installed from a tarball with its prebuilt addon: dist/lib and prebuilds/, no build/.
  const pkg = fs.mkdtempSync(path.join(os.tmpdir(), 'of-prebuilt-'));
  t.teardown(() => fs.rmSync(pkg, { recursive: true, force: true }));
  fs.cpSync(path.join(root, 'dist', 'lib'), path.join(pkg, 'dist', 'lib'), { recursive: true });
  fs.symlinkSync(path.join(root, 'node_modules'), path.join(pkg, 'node_modules'));
  const prebuilt = path.join(pkg, 'prebuilds', `${process.platform}-${process.arch}`, 'oneforward.node');
  fs.mkdirSync(path.dirname(prebuilt), { recursive: true });
  fs.copyFileSync(of.backend.info().binaryPath, prebuilt);
  const env: NodeJS.ProcessEnv = { ...process.env };
  delete env.ONEFORWARD_NATIVE;
  const script =
    'const i = require(process.argv[1]).backend.info(); console.log(JSON.stringify([i.binary, i.binaryPath, i.compiled[0]]))';
  const r = spawnSync(process.execPath, ['-e', script, path.join(pkg, 'dist', 'lib', 'index.js')], {
    env,
    encoding: 'utf8',
  });
  t.equal(r.status, 0, r.stderr);
  t.same(JSON.parse(r.stdout), ['prebuilt', prebuilt, 'cpu']);
});
