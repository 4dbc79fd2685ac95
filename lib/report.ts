/**
 * Reports people look at: one self-contained HTML file (Chart.js from npm inlined, no network at view time)
 * with loss and accuracy curves per epoch for each run side by side (e.g. ULR vs BP), and optionally the
 * gradient variance of ULR against the number of copies K. `oneforward report` and `train --report` write it.
 */
import * as fs from 'fs';
import * as path from 'path';
import type { EpochLog } from './native';
import { ConfigError } from './errors';
import { invalidArg, is } from './validate';

/** One training run in a report. */
export type ReportRun = {
  /** The run's label in the legend and the table. */
  name: string;
  /** The run's per-epoch log, as `History.epochs` holds it. */
  epochs: EpochLog[];
};
/** What {@link writeReport} draws. */
export type ReportData = {
  /** The page title. */
  title: string;
  /** Free text under the title (task, settings). */
  subtitle?: string;
  /** The runs drawn side by side (at least one). */
  runs: ReportRun[];
  /** Total variance of the ULR gradient estimate per number of copies (log-log plot). */
  variance?: {
    /** Copies K. */
    copies: number;
    /** Total variance of the estimate at that K. */
    variance: number;
  }[];
  /** Test accuracy against wall-clock training time, per run. */
  timeCurves?: {
    /** The curve's label. */
    name: string;
    /** Its points, in time order. */
    points: {
      /** Training time so far, in seconds. */
      seconds: number;
      /** Test accuracy at that time, in [0, 1]. */
      accuracy: number;
    }[];
  }[];
  /** Any other line charts (e.g. gradient cosine vs K per estimator option). */
  charts?: {
    /** The chart's title. */
    title: string;
    /** The x axis label. */
    xLabel: string;
    /** The y axis label. */
    yLabel: string;
    /** Whether the x axis is logarithmic. Defaults to `false`. */
    logX?: boolean;
    /** One line per series. */
    series: {
      /** The series label. */
      name: string;
      /** Its points. */
      points: {
        /** x value. */
        x: number;
        /** y value. */
        y: number;
      }[];
    }[];
  }[];
};

const escape = (s: string) =>
  s.replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' })[c]!);

type Fields = Record<string, 'string' | 'number' | 'boolean' | 'string?' | 'boolean?'>;

// One object of the report: an object with exactly the listed fields of the listed types (unknown ones dropped).
function record(name: string, v: unknown, fields: Fields): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw invalidArg(name, 'an object', v);
  const o = v as Record<string, unknown>,
    out: Record<string, unknown> = {};
  for (const [k, type] of Object.entries(fields)) {
    const optional = type.endsWith('?'),
      want = type.replace('?', '');
    if (o[k] === undefined && optional) continue;
    if (typeof o[k] !== want) throw invalidArg(`${name}.${k}`, want, o[k]);
    out[k] = o[k];
  }
  return out;
}

function list<T>(name: string, v: unknown, item: (x: unknown, name: string) => T, optional = true): T[] | undefined {
  if (v === undefined && optional) return undefined;
  if (!Array.isArray(v)) throw invalidArg(name, 'an array', v);
  return v.map((x, i) => item(x, `${name}[${i}]`));
}

/**
 * The report data checked and copied with only the fields the page draws (numbers of an epoch log, strings,
 * points), so a malformed run is an `ERR_CONFIG` naming the field, and nothing else reaches the page's JSON.
 */
function checkReport(data: unknown): ReportData {
  const top = record('report', data, { title: 'string', subtitle: 'string?' });
  const d = data as Record<string, unknown>;
  const epoch = (e: unknown, name: string) => {
    const out = record(name, e, { epoch: 'number', loss: 'number', seconds: 'number' });
    for (const [k, v] of Object.entries(e as object)) if (typeof v === 'number') out[k] = v; // accuracy, valLoss, ...
    return out as EpochLog;
  };
  const runs = list(
    'runs',
    d.runs,
    (r, name) => ({
      ...(record(name, r, { name: 'string' }) as { name: string }),
      epochs: list(`${name}.epochs`, (r as ReportRun).epochs, epoch, false)!,
    }),
    false,
  )!;
  if (runs.length === 0) throw new ConfigError('a report needs at least one run');
  const point = (fields: Fields) => (p: unknown, name: string) => record(name, p, fields);
  const out = { ...top, runs } as ReportData;
  const variance = list('variance', d.variance, point({ copies: 'number', variance: 'number' }));
  if (variance) out.variance = variance as ReportData['variance'];
  const timeCurves = list('timeCurves', d.timeCurves, (c, name) => ({
    ...record(name, c, { name: 'string' }),
    points: list(
      `${name}.points`,
      (c as { points: unknown }).points,
      point({ seconds: 'number', accuracy: 'number' }),
      false,
    ),
  }));
  if (timeCurves) out.timeCurves = timeCurves as ReportData['timeCurves'];
  const charts = list('charts', d.charts, (c, name) => ({
    ...record(name, c, { title: 'string', xLabel: 'string', yLabel: 'string', logX: 'boolean?' }),
    series: list(
      `${name}.series`,
      (c as { series: unknown }).series,
      (s, sname) => ({
        ...record(sname, s, { name: 'string' }),
        points: list(`${sname}.points`, (s as { points: unknown }).points, point({ x: 'number', y: 'number' }), false),
      }),
      false,
    ),
  }));
  if (charts) out.charts = charts as ReportData['charts'];
  return out;
}

/**
 * Renders the report as one HTML string.
 * @throws ConfigError (`ERR_CONFIG`) for malformed data (the message names the field), or no runs.
 */
export function renderReport(report: ReportData): string {
  const data = checkReport(report);
  const chartjs = fs.readFileSync(path.join(path.dirname(require.resolve('chart.js')), 'chart.umd.js'), 'utf8');
  // The JSON goes into a <script type="application/json"> block: only "</" could end it early.
  const json = JSON.stringify(data).replace(/<\//g, '<\\/');
  const rows = data.runs
    .map((r) => {
      const last = r.epochs[r.epochs.length - 1];
      const secs = r.epochs.reduce((a, e) => a + e.seconds, 0);
      const acc = last?.valAccuracy !== undefined ? `${(100 * last.valAccuracy).toFixed(2)}%` : '—';
      return `<tr><td>${escape(r.name)}</td><td>${r.epochs.length}</td><td>${last ? last.loss.toFixed(4) : '—'}</td><td>${acc}</td><td>${secs.toFixed(2)} s</td></tr>`;
    })
    .join('\n');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${escape(data.title)}</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; background: #fff; }
h1 { font-size: 20px; margin: 0 0 4px; } p.sub { color: #666; margin: 0 0 16px; }
.grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(420px, 1fr)); gap: 20px; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 12px; } .card h2 { font-size: 15px; margin: 0 0 8px; }
table { border-collapse: collapse; margin: 12px 0 20px; } td, th { border-bottom: 1px solid #eee; padding: 4px 12px; text-align: left; }
canvas { width: 100% !important; height: 280px !important; }
</style></head><body>
<h1>${escape(data.title)}</h1>${data.subtitle ? `<p class="sub">${escape(data.subtitle)}</p>` : ''}
<table><tr><th>run</th><th>epochs</th><th>final train loss</th><th>final test accuracy</th><th>training time</th></tr>
${rows}
</table>
<div class="grid">
<div class="card"><h2>Training loss per epoch</h2><canvas id="loss"></canvas></div>
<div class="card"><h2>Test accuracy per epoch</h2><canvas id="acc"></canvas></div>
${data.variance?.length ? '<div class="card"><h2>ULR gradient variance vs copies K</h2><canvas id="var"></canvas></div>' : ''}
${data.timeCurves?.length ? '<div class="card"><h2>Test accuracy vs training time</h2><canvas id="time"></canvas></div>' : ''}
${(data.charts ?? []).map((c, i) => `<div class="card"><h2>${escape(c.title)}</h2><canvas id="chart${i}"></canvas></div>`).join('\n')}
</div>
<script type="application/json" id="data">${json}</script>
<script>${chartjs}</script>
<script>
const data = JSON.parse(document.getElementById('data').textContent);
const colors = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#17becf', '#e377c2', '#bcbd22', '#7f7f7f'];
const line = (id, key, yTitle) => new Chart(document.getElementById(id), {
  type: 'line',
  data: { datasets: data.runs.map((r, i) => ({ label: r.name, borderColor: colors[i % colors.length], backgroundColor: colors[i % colors.length],
    data: r.epochs.filter((e) => e[key] !== undefined).map((e) => ({ x: e.epoch, y: key === 'valAccuracy' ? 100 * e[key] : e[key] })) })) },
  options: { animation: false, parsing: false, scales: { x: { type: 'linear', title: { display: true, text: 'epoch' }, ticks: { stepSize: 1 } }, y: { title: { display: true, text: yTitle } } } },
});
line('loss', 'loss', 'training loss');
line('acc', 'valAccuracy', 'test accuracy (%)');
if (data.timeCurves && data.timeCurves.length) new Chart(document.getElementById('time'), {
  type: 'line',
  data: { datasets: data.timeCurves.map((c, i) => ({ label: c.name, borderColor: colors[i % colors.length], backgroundColor: colors[i % colors.length],
    data: c.points.map((p) => ({ x: p.seconds, y: 100 * p.accuracy })) })) },
  options: { animation: false, parsing: false, scales: { x: { type: 'logarithmic', title: { display: true, text: 'training seconds (log)' } }, y: { title: { display: true, text: 'test accuracy (%)' } } } },
});
(data.charts || []).forEach((c, i) => new Chart(document.getElementById('chart' + i), {
  type: 'line',
  data: { datasets: c.series.map((s, j) => ({ label: s.name, borderColor: colors[j % colors.length], backgroundColor: colors[j % colors.length], data: s.points })) },
  options: { animation: false, parsing: false, scales: { x: { type: c.logX ? 'logarithmic' : 'linear', title: { display: true, text: c.xLabel } }, y: { title: { display: true, text: c.yLabel } } } },
}));
if (data.variance && data.variance.length) new Chart(document.getElementById('var'), {
  type: 'line',
  data: { datasets: [
    { label: 'measured', borderColor: '#1f77b4', backgroundColor: '#1f77b4', data: data.variance.map((v) => ({ x: v.copies, y: v.variance })) },
    { label: '1/K from the first point', borderColor: '#999', borderDash: [4, 4], pointRadius: 0,
      data: data.variance.map((v) => ({ x: v.copies, y: data.variance[0].variance * data.variance[0].copies / v.copies })) },
  ] },
  options: { animation: false, parsing: false, scales: { x: { type: 'logarithmic', title: { display: true, text: 'copies K' } }, y: { type: 'logarithmic', title: { display: true, text: 'total variance' } } } },
});
</script>
</body></html>
`;
}

/**
 * Writes the report to `file` (self-contained HTML).
 * @throws ConfigError (`ERR_CONFIG`) for malformed data, a path that is not a string, or a file that cannot be
 * written (the system error is its `cause`).
 */
export function writeReport(data: ReportData, file: string): void {
  if (!is.string(file) || file === '') throw invalidArg('file', 'a file path', file);
  const html = renderReport(data);
  try {
    fs.writeFileSync(file, html);
  } catch (err) {
    throw new ConfigError(`cannot write the report to ${file}: ${(err as Error)?.message ?? String(err)}`, {
      cause: err,
    });
  }
}
