// The command line as a user meets it: --version, train --resume, output paths and data files checked before
// training with the real problem named, bench --help naming every suite; and the server example importing the
// package by name and getting this checkout's build.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFile } from 'child_process';
import { promisify } from 'util';
import * as of from '../lib/index';
import { benchSuites } from '../lib/cli';

const root = path.resolve(__dirname, '..', '..');
const cli = path.join(root, 'bin', 'oneforward.js');
const run = (...args: string[]) => promisify(execFile)(process.execPath, [cli, ...args]);
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-cli-'));
t.teardown(() => fs.rmSync(dir, { recursive: true, force: true }));
const file = (name: string, text: string) => (fs.writeFileSync(path.join(dir, name), text), path.join(dir, name));
const small = ['--estimator', 'bp', '--layers', '784-16-10', '--no-progress'];

t.test('--version and -V print the package version', async (t) => {
  const { version } = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) t.equal((await run(flag)).stdout.trim(), version, flag);
});

t.test('--save, --report and report --out are checked before training', async (t) => {
  const cases: [string[], RegExp][] = [
    [
      ['--save', path.join(dir, 'missing', 'm.ofm')],
      /\[ERR_CONFIG\] --save '.*m\.ofm': the folder .*missing does not exist/,
    ],
    [['--save', dir], /\[ERR_CONFIG\] --save '.*' is a directory; give a file name/],
    [['--report', dir], /\[ERR_CONFIG\] --report '.*' is a directory/],
    [['--report', path.join(dir, 'missing', 'r.html')], /\[ERR_CONFIG\] --report .* does not exist/],
    // a file where the folder should be (`touch f; --save f/x.ofm`): named, not a raw ENOTDIR
    [['--save', path.join(file('f', ''), 'x.ofm')], /\[ERR_CONFIG\] --save '.*f\/x\.ofm': .*f is not a folder/],
    [['--report', path.join(file('g', ''), 'r.html')], /\[ERR_CONFIG\] --report '.*g\/r\.html': .*g is not a folder/],
    [
      ['--save', path.join(file('h', ''), 'sub', 'x.ofm')],
      /\[ERR_CONFIG\] --save '.*x\.ofm': the folder .*h\/sub does not exist/,
    ],
  ];
  await Promise.all(
    cases.map(async ([args, message]) => {
      // 1000 epochs: a check that ran only after training would not come back within the test's time
      const r = run('train', ...small, '--epochs', '1000', ...args);
      await t.rejects(r, { code: 1, stderr: message }, args.join(' '));
      await r.catch((e: { stderr: string }) => t.notMatch(e.stderr, /epoch 1:/, 'no training happened'));
    }),
  );
  await t.rejects(run('report', '--out', path.join(dir, 'missing', 'r.html')), {
    code: 1,
    stderr: /--out .* does not exist/,
  });
  await t.rejects(run('report', '--out', path.join(dir, 'f', 'r.html')), {
    code: 1,
    stderr: /\[ERR_CONFIG\] --out .* is not a folder/,
  });
  if (process.getuid?.() !== 0) {
    const ro = path.join(dir, 'ro');
    fs.mkdirSync(ro, { mode: 0o555 });
    await t.rejects(run('train', ...small, '--save', path.join(ro, 'm.ofm')), { code: 1, stderr: /is not writable/ });
  }
});

t.test('a bad CSV is reported as what it is', async (t) => {
  const cases: [string, string, RegExp][] = [
    ['header.csv', 'label,a,b\n', /\[ERR_DATA\] .*header\.csv: no data rows/],
    ['columns.csv', 'label,a,b\n1,0.5,0.2\n0,0.1\n', /\[ERR_DATA\] .*columns\.csv: line 3 has 2 columns, expected 3/],
    ['text.csv', 'x,y\nfoo,bar\n', /\[ERR_DATA\] .*text\.csv: line 2, column 1 is .*not a (finite )?number/],
    ['labels.csv', '0\n1\n', /\[ERR_DATA\] .*labels\.csv: no feature columns/],
    ['oneclass.csv', '0,1,2\n0,2,3\n', /\[ERR_DATA\] every label in the training data is 0/],
  ];
  await Promise.all(
    cases.map(async ([name, text, message]) => {
      const r = run('train', '--csv', file(name, text), '--epochs', '1', '--no-progress');
      await t.rejects(r, { code: 1, stderr: message }, name);
      await r.catch((e: { stderr: string }) =>
        t.notMatch(e.stderr, /--layers 'undefined'/, `${name}: not blamed on --layers`),
      );
    }),
  );
  await t.rejects(run('train', '--csv', file('ok.csv', '0,1,2\n1,2,3\n'), '--layers', '3-4-2', '--no-progress'), {
    code: 1,
    stderr: /\[ERR_SHAPE\] --layers '3-4-2' starts at 3 inputs, but the data has 2 features per row/,
  });
});

t.test('train --resume continues a checkpoint, bit-identical to an uninterrupted run', async (t) => {
  const [one, resumed, straight] = ['one', 'resumed', 'straight'].map((n) => path.join(dir, `${n}.ofm`)) as [
    string,
    string,
    string,
  ];
  await run('train', ...small, '--epochs', '1', '--save', one);
  const r = await run(
    'train',
    '--estimator',
    'bp',
    '--no-progress',
    '--epochs',
    '2',
    '--resume',
    one,
    '--save',
    resumed,
  );
  t.match(r.stderr, /one\.ofm \(epoch 1, step 125\)/, 'says where it resumes');
  t.match(r.stderr, /^epoch 2: loss/m, 'runs epoch 2 only');
  t.notMatch(r.stderr, /^epoch 1:/m);
  await run('train', ...small, '--epochs', '2', '--save', straight);
  const [a, b] = await Promise.all([of.load(resumed), of.load(straight)]);
  const bits = (m: of.Model) =>
    Buffer.concat(m.parameters().map((p) => Buffer.from(p.data.buffer, p.data.byteOffset, p.data.byteLength)));
  t.ok(bits(a).equals(bits(b)), 'same parameters as 2 uninterrupted epochs');
  t.equal(a.step, b.step, 'same step count');
  (a.dispose(), b.dispose());
  await t.rejects(run('train', '--resume', one, '--epochs', '1', '--no-progress'), {
    code: 1,
    stderr: /has trained 1 epochs already; --epochs is the total/,
  });
  await t.rejects(run('train', '--resume', one, '--layers', '784-16-10'), { code: 1, stderr: /leave out --layers/ });
  await t.rejects(run('train', '--resume', one, '--epochs', '3', '--csv', file('two.csv', '0,1,2\n1,2,3\n')), {
    code: 1,
    stderr: /\[ERR_SHAPE\] .* takes 784 features per row, but the data has 2/,
  });
  await t.rejects(run('train', '--resume', path.join(dir, 'none.ofm')), { code: 1, stderr: /\[ERR_CHECKPOINT\]/ });
});

t.test('bench --help names every suite; bench refuses unknown suites and --update with --out', async (t) => {
  const help = (await run('bench', '--help')).stdout;
  t.ok(benchSuites.length >= 9, 'the suites bench/run.ts implements (its table is typed by this list)');
  for (const s of benchSuites)
    t.match(
      help,
      new RegExp(`^  ${s.byDefault ? '\\*' : ' '} ${s.name} +\\S`, 'm'),
      `${s.name}${s.byDefault ? ' (default)' : ''}`,
    );
  t.match(help, /--update/);
  t.match(help, /--out <dir>/);
  await t.rejects(run('bench', 'nope'), { code: 1, stderr: /Allowed choices are cpu-digits/ });
  await t.rejects(run('bench', 'gpu', '--update', '--out', dir), { code: 1, stderr: /leave out --out/ });
});

t.test('the server example imports the package by name and gets this build', async (t) => {
  const example = path.join(root, 'dist', 'examples', 'server');
  t.equal(
    require.resolve('oneforward', { paths: [example] }),
    require.resolve('../lib/index'),
    "'oneforward' is dist/lib/index.js",
  );
  for (const f of ['server.ts', 'load.ts']) {
    const src = fs.readFileSync(path.join(root, 'examples', 'server', f), 'utf8');
    t.match(src, /from 'oneforward'/, `${f} imports 'oneforward'`);
    t.notMatch(src, /from '\.\.\/\.\.\//, `${f} reaches into no repository folder`);
  }
});
