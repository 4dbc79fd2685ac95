// The package loads both ways (CJS, ESM), reports its backend, and the two build descriptions agree.
import t from 'tap';
import * as fs from 'fs';
import * as path from 'path';
import { execFileSync, spawnSync } from 'child_process';
import * as of from '../lib/index';

const root = path.resolve(__dirname, '..', '..');

t.test('backend.info reports the backends and why', async (t) => {
  const info = of.backend.info();
  t.equal(info.compiled[0], 'cpu', 'the CPU is always compiled');
  // CI's machines have nvcc (and no GPU): there the CUDA sources must have compiled into the addon.
  const nvcc = spawnSync('nvcc', ['--version']).status === 0;
  // node-gyp (the build where cmake is absent) makes the CPU backend only.
  if (nvcc && process.env.ONEFORWARD_CUDA !== '0' && !process.env.ONEFORWARD_NATIVE && info.binary !== 'node-gyp')
    t.ok(info.compiled.includes('cuda'), 'nvcc is here, so CUDA is compiled in');
  t.ok(info.threads >= 1);
  t.match(info.simd, /^(avx512|avx2|scalar)$/);
  t.equal(info.devices.cpu, 1);
  t.equal(info.devices.cuda, info.cudaDevices);
  if (info.cudaDevices === 0) {
    t.equal(info.active, 'cpu');
    t.match(info.reason, /CUDA/, `says why not CUDA: ${info.reason}`);
  } else {
    t.equal(info.active, 'cuda');
  }
});

t.test(
  'backend: cuda where none can run is a BackendError',
  { skip: of.backend.info().cudaDevices > 0 ? 'a GPU answers here' : false },
  async (t) => {
    t.throws(() => of.sequential([of.dense(2, 2)], { backend: 'cuda' }), {
      name: 'BackendError',
      code: 'ERR_BACKEND',
      message: /not available/,
    });
    const m = of.sequential([of.dense(2, 2)], { backend: 'auto' });
    t.equal(m.backend, 'cpu');
    m.dispose();
  },
);

t.test('CommonJS and ESM entry points export the same API', async (t) => {
  const cjs = execFileSync(
    process.execPath,
    ['-e', "const of=require(process.argv[1]);console.log(Object.keys(of).sort().join(','))", root],
    { encoding: 'utf8' },
  );
  const esm = execFileSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      "const of=await import(process.argv[1]);console.log(Object.keys(of).sort().join(','))",
      path.join(root, 'dist', 'lib', 'index.mjs'),
    ],
    { encoding: 'utf8' },
  );
  t.equal(esm, cjs);
  // The default export is the whole API in both: `import of from 'oneforward'` and CommonJS's `.default`.
  const cjsDefault = execFileSync(
    process.execPath,
    ['-e', 'const of=require(process.argv[1]);console.log(of.default===of)', root],
    { encoding: 'utf8' },
  );
  const esmDefault = execFileSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      'const of=await import(process.argv[1]);console.log(of.default.sequential===of.sequential&&of.default===of.default.default)',
      path.join(root, 'dist', 'lib', 'index.mjs'),
    ],
    { encoding: 'utf8' },
  );
  t.equal(cjsDefault.trim(), 'true', 'require(...).default is the module');
  t.equal(esmDefault.trim(), 'true', 'the ES module default is the CommonJS module');
  for (const name of [
    'sequential',
    'dense',
    'relu',
    'ulr',
    'bp',
    'adam',
    'adamw',
    'sgd',
    'datasets',
    'backend',
    'OneForwardError',
  ]) {
    t.ok(
      cjs
        .split(',')
        .map((s) => s.trim())
        .includes(name),
      `exports ${name}`,
    );
  }
});

t.test('binding.gyp lists exactly the CPU sources of CMakeLists.txt', async (t) => {
  const cmake = fs.readFileSync(path.join(root, 'CMakeLists.txt'), 'utf8');
  const block = /set\(ONEFORWARD_CPU_SOURCES([^)]*)\)/.exec(cmake);
  t.ok(block, 'CMake source list found');
  const cmakeSources = block![1]!.split(/\s+/).filter(Boolean);
  const gyp = JSON.parse(fs.readFileSync(path.join(root, 'binding.gyp'), 'utf8')) as {
    targets: { sources: string[] }[];
  };
  t.same([...gyp.targets[0]!.sources].sort(), [...cmakeSources].sort());
  for (const s of cmakeSources) t.ok(fs.existsSync(path.join(root, s)), `${s} exists`);
});

t.test(
  'package.json installs through scripts/install.js, cmake-js with node-api-headers, and ships prebuilds/',
  async (t) => {
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    t.same(pkg.binary, { napi_versions: [8] }, 'cmake-js takes the N-API headers from node-api-headers (offline)');
    t.equal(pkg.scripts.install, 'node scripts/install.js');
    t.equal(pkg.scripts.rebuild, 'node scripts/install.js --rebuild');
    t.equal(
      pkg.scripts.prepack,
      'node scripts/prebuild.js && npm run docs',
      'npm pack carries the prebuilt addon and the API reference',
    );
    t.ok(pkg.files.includes('prebuilds'), 'npm pack includes prebuilds/');
    t.ok(
      pkg.dependencies['node-gyp'] && pkg.dependencies['cmake-js'],
      'both builders are dependencies of the installed package',
    );
  },
);
