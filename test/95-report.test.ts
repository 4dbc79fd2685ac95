// HTML reports: self-contained (Chart.js inlined, no network at view time), data embedded safely, written by
// the CLI; rendered in headless Chromium when the machine has it (skipped otherwise).
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { execFile, execFileSync } from 'child_process';
import { promisify } from 'util';
import * as of from '../lib/index';

const epochs = (acc: number[]): of.EpochLog[] =>
  acc.map((a, i) => ({
    epoch: i + 1,
    loss: 1 / (i + 1),
    accuracy: a,
    valAccuracy: a,
    valLoss: 1,
    seconds: 0.1,
    steps: 10,
  }));
const data: of.ReportData = {
  title: 'ULR vs BP </script><b>x</b>',
  runs: [
    { name: 'bp', epochs: epochs([0.9, 0.92]) },
    { name: 'ulr K=32', epochs: epochs([0.85, 0.89]) },
  ],
  variance: [
    { copies: 4, variance: 100 },
    { copies: 8, variance: 50 },
  ],
  timeCurves: [
    {
      name: 'bp',
      points: [
        { seconds: 0.1, accuracy: 0.9 },
        { seconds: 0.2, accuracy: 0.92 },
      ],
    },
  ],
  charts: [
    {
      title: 'cosine vs K',
      xLabel: 'K',
      yLabel: 'cosine',
      logX: true,
      series: [
        {
          name: 'all',
          points: [
            { x: 8, y: 0.5 },
            { x: 32, y: 0.8 },
          ],
        },
      ],
    },
  ],
};

t.test('the report is one self-contained HTML file', async (t) => {
  const html = of.report.render(data);
  t.notMatch(html, /<script[^>]+src=|<link[^>]+href=|@import/i, 'no external scripts, styles or imports');
  t.match(html, /Chart\.js v4/, 'Chart.js is inlined');
  t.match(html, /&lt;\/script&gt;&lt;b&gt;x&lt;\/b&gt;/, 'the title is escaped');
  const json = /<script type="application\/json" id="data">([\s\S]*?)<\/script>/.exec(html);
  t.same(JSON.parse(json![1]!), data, 'the embedded data round-trips (no early </script>)');
  t.match(html, /id="var"/, 'the variance chart is there');
  t.match(html, /id="time"/, 'the accuracy-vs-time chart is there');
  t.match(html, /id="chart0"/, 'and the extra line chart');
  t.notMatch(
    of.report.render({ title: 'x', runs: [{ name: 'bp', epochs: epochs([0.5]) }] }),
    /id="var"/,
    'and only when measured',
  );
  t.throws(() => of.report.render({ title: 'x', runs: [] }), { code: 'ERR_CONFIG' });
});

t.test('train --report writes a report', async (t) => {
  const file = path.join(os.tmpdir(), `of-report-${process.pid}.html`);
  await promisify(execFile)(process.execPath, [
    path.resolve(__dirname, '..', '..', 'bin', 'oneforward.js'),
    'train',
    '--estimator',
    'bp',
    '--epochs',
    '2',
    '--layers',
    '784-16-10',
    '--no-progress',
    '--report',
    file,
  ]);
  const html = fs.readFileSync(file, 'utf8');
  t.match(html, /<td>bp<\/td><td>2<\/td>/, 'the run is in the summary table');
  fs.rmSync(file);
});

const chromium = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => fs.existsSync(p));
t.test(
  'the report renders in headless Chromium',
  { skip: chromium ? false : 'Chromium is not installed' },
  async (t) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-chromium-'));
    const shot = (name: string, html: string) => {
      const file = path.join(dir, `${name}.html`);
      const png = path.join(dir, `${name}.png`);
      fs.writeFileSync(file, html);
      execFileSync(
        chromium!,
        [
          '--headless',
          '--no-sandbox',
          '--disable-gpu',
          '--disable-quic',
          '--no-first-run',
          '--disable-background-networking',
          '--disable-component-update',
          '--disable-sync',
          `--user-data-dir=${path.join(dir, 'profile')}`,
          '--window-size=1300,1000',
          `--screenshot=${png}`,
          `file://${file}`,
        ],
        { stdio: 'ignore', timeout: 60000 },
      );
      return fs.statSync(png).size;
    };
    const html = of.report.render(data);
    const full = shot('report', html);
    // The same page with the charting script removed: title, table and empty cards only.
    const bare = shot('bare', html.replace(/<script>[\s\S]*?<\/script>/g, ''));
    t.ok(full > 1.5 * bare, `the charts draw: screenshot ${full} bytes vs ${bare} without them`);
    fs.rmSync(dir, { recursive: true, force: true });
  },
);
