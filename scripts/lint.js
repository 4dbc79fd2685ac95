// `npm run lint`: clang-format (native/), prettier (the TypeScript and scripts) and ESLint (lib/) check, and
// kind-spread.js holds every layer kind to at most 5 source files (CONTRIBUTING.md); each tool runs, and the exit status
// is 1 when any fails. `npm run format` (--fix) applies the three formatters instead.
// The configs: .clang-format, .prettierrc.json, eslint.config.mjs. The tools are dev dependencies, run from node_modules.
'use strict';
const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const fix = process.argv.includes('--fix');

// The script a package installs as its command `name`.
function bin(pkg, name) {
  const dir = path.dirname(require.resolve(`${pkg}/package.json`));
  const b = require(path.join(dir, 'package.json')).bin;
  return path.join(dir, typeof b === 'string' ? b : b[name]);
}

const nativeFiles = fs
  .readdirSync(path.join(root, 'native'), { recursive: true })
  .filter((f) => /\.(h|cpp|cu)$/.test(f))
  .map((f) => path.join('native', f))
  .sort();
const tools = [
  [
    'clang-format',
    bin('clang-format', 'clang-format'),
    [...(fix ? ['-i'] : ['--dry-run', '-Werror', '--ferror-limit=1']), ...nativeFiles],
  ],
  [
    'prettier',
    bin('prettier', 'prettier'),
    [fix ? '--write' : '--check', '{lib,test,bench,scripts,examples}/**/*.{ts,js,mjs}'],
  ],
  ['eslint', bin('eslint', 'eslint'), [...(fix ? ['--fix'] : []), 'lib']],
  ['kind-spread', path.join(__dirname, 'kind-spread.js'), ['--max', '5']],
];

let failed = 0;
for (const [name, script, args] of tools) {
  const r = spawnSync(process.execPath, [script, ...args], { cwd: root, stdio: 'inherit' });
  const ok = r.status === 0;
  if (!ok) failed++;
  console.log(`${name}: ${ok ? 'ok' : 'failed'}`);
}
process.exit(failed ? 1 : 0);
