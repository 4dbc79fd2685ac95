// The package as a user gets it: `npm pack`, install the tarball into a fresh app under /tmp (the addon builds
// from source unless the package carries a prebuilt one), then
//   - README links: every relative link and image of the packed README exists in the package;
//   - types: the README quick starts (the blocks marked `<!-- consumer-check: NAME -->`, as written) and import
//     probes compile strictly, without skipLibCheck, under nodenext, node16 and bundler resolution, as ES
//     modules (.mts, and .ts in a "type": "module" package) and as CommonJS (.cts); the probes also with lib
//     es2022 only (no esnext.disposable), and a `using model = ...` probe with a lib that has Symbol.dispose;
//   - the server example, copied into an app with the tsconfig of examples/server/README.md, compiles;
//   - runs: both quick starts and the `using` probe run, compiled by tsc, on a few hundred rows (the only edit
//     for the run).
// Prints one line per check and its time; exits 1 if any failed. KEEP=1 keeps the temporary directory;
// ONEFORWARD_BUILD_FROM_SOURCE=1 makes the install compile the addon even where the package carries a prebuilt one.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const root = path.join(__dirname, '..');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const started = Date.now();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'oneforward-consumer-'));
const app = path.join(tmp, 'app');
const env = { ...process.env };
delete env.ONEFORWARD_NATIVE; // the installed package must find its own addon
const failures = [];

const seconds = (t0) => `${((Date.now() - t0) / 1000).toFixed(1)} s`;
function run(cmd, args, cwd, timeoutMs = 600_000) {
  const r = spawnSync(cmd, args, { cwd, env, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 << 20 });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}${r.error ? r.error.message : ''}` };
}
/** Runs one named check; a failed check prints its output's tail and the run goes on. */
function check(name, fn) {
  const t0 = Date.now();
  let error = null;
  try {
    error = fn();
  } catch (err) {
    error = err.stack ?? String(err);
  }
  console.log(`${error ? 'FAIL' : 'ok  '} ${name} (${seconds(t0)})`);
  if (error) {
    console.log(
      String(error)
        .trimEnd()
        .split('\n')
        .slice(-40)
        .map((l) => `    ${l}`)
        .join('\n'),
    );
    failures.push(name);
  }
  return !error;
}
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const write = (file, text) => {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
};

/** The README's code blocks marked `<!-- consumer-check: NAME -->`, by NAME. */
function quickStarts(readme) {
  const blocks = {};
  for (const m of readme.matchAll(/<!-- consumer-check: (\S+) -->\s*\n```\w*\n([\s\S]*?)\n```/g))
    blocks[m[1]] = `${m[2]}\n`;
  for (const name of ['esm.mts', 'cjs.cts'])
    if (!blocks[name]) throw new Error(`README.md has no block marked <!-- consumer-check: ${name} -->`);
  return blocks;
}

// Imports every way a user may write them; `@ts-expect-error` fails the check if the types degrade to `any`.
const probe = (importLines) => `${importLines}
import type { Model, Dataset } from 'oneforward';
const model: Model = sequential([dense(4, 8), of.relu(), ns.dense(8, 2)], { seed: 1 });
const d: Dataset = { x: new Float32Array(8).fill(0.5), y: Int32Array.from([0, 1]), rows: 2, shape: [4] };
const r: { loss: number; accuracy: number } = model.evaluate(d);
// @ts-expect-error evaluate() is typed, not any
const wrong: string = model.evaluate(d);
if (of.sequential !== ns.sequential || !(new ns.ConfigError('x') instanceof of.OneForwardError) || !Number.isFinite(r.loss) || !wrong) {
  throw new Error('the default, namespace and named imports disagree');
}
console.log('imports ok', r.loss);
`;
const esmProbe = probe(
  `import of from 'oneforward';\nimport * as ns from 'oneforward';\nimport { sequential, dense } from 'oneforward';`,
);
const cjsProbe = probe(
  `import of = require('oneforward');\nimport * as ns from 'oneforward';\nimport { sequential, dense } from 'oneforward';`,
);
// docs/from-tfjs.md's `using model = of.sequential(...)`: it type-checks only if Model's .d.ts has [Symbol.dispose].
const usingProbe = `import * as of from 'oneforward';
let kept: of.Model | undefined;
{
  using model = of.sequential([of.dense(2, 2)], { seed: 1 });
  kept = model;
}
try {
  kept.parameters();
  console.log('still alive after its scope');
} catch (err) {
  console.log('disposed at scope end', (err as of.OneForwardError).code);
}
`;

let tarball;
let blocks;
const tsc = () => path.join(app, 'node_modules', 'typescript', 'bin', 'tsc');
// Strict, and stricter; no skipLibCheck: the package's .d.ts files are checked too.
const strict = [
  '--strict',
  '--noUncheckedIndexedAccess',
  '--exactOptionalPropertyTypes',
  '--types',
  'node',
  '--target',
  'es2022',
];

const packed = check('npm pack', () => {
  const r = run(npm, ['pack', '--pack-destination', tmp], root);
  tarball = fs.readdirSync(tmp).find((f) => f.endsWith('.tgz'));
  return r.ok && tarball ? null : r.out;
});
const installed =
  packed &&
  check('npm install of the tarball (builds the addon unless prebuilt)', () => {
    write(path.join(app, 'package.json'), JSON.stringify({ name: 'oneforward-consumer', private: true }, null, 2));
    const dev = pkg.devDependencies;
    const r = run(
      npm,
      [
        'install',
        '--no-audit',
        '--no-fund',
        path.join(tmp, tarball),
        `typescript@${dev.typescript}`,
        `@types/node@${dev['@types/node']}`,
        `fastify@${dev.fastify}`,
      ],
      app,
    );
    return r.ok ? null : r.out;
  });
if (installed) {
  const installedRoot = path.join(app, 'node_modules', 'oneforward');
  check('README links and images exist in the package', () => {
    const readme = fs.readFileSync(path.join(installedRoot, 'README.md'), 'utf8');
    const missing = [...readme.matchAll(/!?\[[^\]]*\]\(([^)\s]+)[^)]*\)/g)]
      .map((m) => m[1])
      .filter((href) => !/^[a-z][a-z0-9+.-]*:|^#/i.test(href))
      .filter((href) => !fs.existsSync(path.join(installedRoot, decodeURI(href.split('#')[0]))));
    return missing.length ? `not in the package: ${missing.join(', ')}` : null;
  });
  check('README quick starts found', () => {
    blocks = quickStarts(fs.readFileSync(path.join(installedRoot, 'README.md'), 'utf8'));
    write(path.join(app, 'esm.mts'), blocks['esm.mts']);
    write(path.join(app, 'cjs.cts'), blocks['cjs.cts']);
    write(path.join(app, 'module', 'package.json'), JSON.stringify({ type: 'module' }));
    write(path.join(app, 'module', 'esm.ts'), blocks['esm.mts']);
    write(path.join(app, 'probe.mts'), esmProbe);
    write(path.join(app, 'probe.cts'), cjsProbe);
    write(path.join(app, 'using.mts'), usingProbe);
    return null;
  });
  check('the server example compiles in an app with the tsconfig of its README', () => {
    const example = path.join(installedRoot, 'examples', 'server');
    const config = fs
      .readFileSync(path.join(example, 'README.md'), 'utf8')
      .match(/with a `tsconfig\.json` such as\s*```json\n([\s\S]*?)\n```/);
    if (!config) return 'examples/server/README.md has no tsconfig.json block after "with a `tsconfig.json` such as"';
    const dir = path.join(app, 'server-app');
    write(path.join(dir, 'tsconfig.json'), config[1]);
    write(path.join(dir, 'src', 'server.ts'), fs.readFileSync(path.join(example, 'server.ts'), 'utf8'));
    const r = run(process.execPath, [tsc(), '-p', dir], app);
    return r.ok ? null : r.out;
  });
}
if (blocks) {
  // The runs: the same code on 300 training and 100 test rows, so each takes seconds.
  const tiny = 'of.data.take(of.datasets.digits().train, Array.from({ length: 300 }, (_, i) => i * 25))';
  const tinyTest = 'of.data.take(of.datasets.digits().test, Array.from({ length: 100 }, (_, i) => i * 20))';
  const small = (code) => {
    const out = code.replace('of.datasets.digits()', `{ train: ${tiny}, test: ${tinyTest} }`);
    if (out === code)
      throw new Error(
        'the quick start no longer calls of.datasets.digits(): update the run in scripts/consumer-check.js',
      );
    return out;
  };
  write(path.join(app, 'run', 'esm.mts'), small(blocks['esm.mts']));
  write(path.join(app, 'run', 'cjs.cts'), small(blocks['cjs.cts']));
  const files = ['esm.mts', 'cjs.cts', 'module/esm.ts', 'probe.mts', 'probe.cts', 'run/esm.mts', 'run/cjs.cts'];
  let compiled = false;
  for (const [module, resolution] of [
    ['nodenext', 'nodenext'],
    ['node16', 'node16'],
    ['preserve', 'bundler'],
  ]) {
    // nodenext also emits what runs (into out/, as .mjs and .cjs).
    const emit = module === 'nodenext' ? ['--outDir', 'out'] : ['--noEmit'];
    const ok = check(`tsc --module ${module} --moduleResolution ${resolution} (strict, no skipLibCheck)`, () => {
      const r = run(
        process.execPath,
        [tsc(), ...strict, ...emit, '--module', module, '--moduleResolution', resolution, ...files],
        app,
      );
      return r.ok ? null : r.out;
    });
    if (module === 'nodenext') compiled = ok;
  }
  check('tsc --lib es2022 only (no esnext.disposable): the probes compile', () => {
    const r = run(
      process.execPath,
      [
        tsc(),
        ...strict,
        '--noEmit',
        '--lib',
        'es2022',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        'probe.mts',
        'probe.cts',
      ],
      app,
    );
    return r.ok ? null : r.out;
  });
  const usingCompiled = check('tsc --lib es2022,esnext.disposable: `using model = of.sequential(...)` compiles', () => {
    const r = run(
      process.execPath,
      [
        tsc(),
        ...strict,
        '--outDir',
        'out',
        '--lib',
        'es2022,esnext.disposable',
        '--module',
        'nodenext',
        '--moduleResolution',
        'nodenext',
        'using.mts',
      ],
      app,
    );
    return r.ok ? null : r.out;
  });
  if (usingCompiled) {
    check('run the `using` probe: the model is disposed at scope end', () => {
      const r = run(process.execPath, [path.join('out', 'using.mjs')], app, 120_000);
      return r.ok && /disposed at scope end ERR_DISPOSED/.test(r.out) ? null : r.out || 'no output';
    });
  }
  if (compiled) {
    for (const [name, file, expect] of [
      ['run the ES module quick start', 'run/esm.mjs', /accuracy/],
      ['run the CommonJS quick start', 'run/cjs.cjs', /accuracy/],
      ['run the import probes (ESM)', 'probe.mjs', /imports ok/],
      ['run the import probes (CommonJS)', 'probe.cjs', /imports ok/],
    ]) {
      check(name, () => {
        const r = run(process.execPath, [path.join('out', file)], app, 120_000);
        return r.ok && expect.test(r.out) ? null : r.out || `no output matching ${expect}`;
      });
    }
  }
}

if (process.env.KEEP) console.log(`kept ${tmp}`);
else fs.rmSync(tmp, { recursive: true, force: true });
console.log(`consumer check: ${failures.length ? `${failures.length} failed` : 'all passed'} in ${seconds(started)}`);
process.exit(failures.length ? 1 : 0);
