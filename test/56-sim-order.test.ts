// The device tests again with the simulation running every kernel's indices from the end of each chunk
// (ONEFORWARD_SIM_ORDER=reverse). A GPU runs a launch's indices in any order; a kernel body that reads what another
// index of its launch writes would pass test/55 in one order and fail here (or the other way round).
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';
import t from 'tap';

// test/55, 63 and 64 are the device tests; each runs here in a child of its own
for (const name of ['55-device', '63-device-estimators', '64-device-kinds'])
  t.test(`test/${name.slice(0, 2)} passes with the simulation in reverse index order`, (t) => {
    const file = path.join(__dirname, `${name}.test.js`);
    const r = spawnSync(process.execPath, [file], {
      env: { ...process.env, ONEFORWARD_SIM_ORDER: 'reverse' },
      encoding: 'utf8',
      maxBuffer: 64 << 20,
    });
    const out = `${r.stdout}${r.stderr}`;
    const passed = (out.match(/^\s*ok \d+/gm) ?? []).length,
      failed = out.match(/^\s*not ok \d+.*$/gm) ?? [];
    t.equal(
      r.status,
      0,
      `exit status ${r.status}${failed.length ? `; first failures: ${failed.slice(0, 5).join(' | ')}` : ''}`,
    );
    t.equal(failed.length, 0, 'no failed check');
    t.ok(passed > 100, `${passed} checks passed`);
    t.end();
  });
