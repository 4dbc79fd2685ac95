// The whole exported surface against hostile arguments: every exported function (namespaces included) and every
// Model method and getter, enumerated from the module and the prototype so that new exports are covered without
// editing this file, is called with undefined, null, 42, NaN, -1, 2^31, '', 'x', {}, [], a symbol, a Proxy of a
// Float32Array, a detached view, an object nested 100,000 deep and a function that throws, alone and after valid
// leading arguments. Every synchronous throw and every rejection must be a OneForwardError with a listed code;
// promises are time-boxed (a hang fails), generators are pulled. Runs in this process: a crash fails the file.
import t from 'tap';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as of from '../lib/index';

// Hostile paths such as 'x' may be written (model.save('x')): they land in a temporary directory.
const cwd = process.cwd();
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'of-hostile-'));
process.chdir(dir);
t.teardown(() => {
  process.chdir(cwd);
  fs.rmSync(dir, { recursive: true, force: true });
});

function hostile(): [string, unknown][] {
  const buffer = new ArrayBuffer(16);
  const detached = new Float32Array(buffer);
  structuredClone(buffer, { transfer: [buffer] });
  let deep: Record<string, unknown> = {};
  for (let i = 0; i < 100000; i++) deep = { a: deep };
  return [
    ['undefined', undefined],
    ['null', null],
    ['42', 42],
    ['NaN', NaN],
    ['-1', -1],
    ['2^31', 2 ** 31],
    ["''", ''],
    ["'x'", 'x'],
    ['{}', {}],
    ['[]', []],
    ['a symbol', Symbol('hostile')],
    ['a Proxy of a Float32Array', new Proxy(new Float32Array(8), {})],
    ['a detached Float32Array', detached],
    ['an object nested 100,000 deep', deep],
    [
      'a function that throws',
      () => {
        throw new Error('thrown by a hostile argument');
      },
    ],
    ...seededHostile(EXTRA, EXTRA_SEED),
  ];
}

// ONEFORWARD_HOSTILE more values drawn from seed ONEFORWARD_HOSTILE_SEED (`npm run bench -- adversarial` adds
// hundreds): odd numbers, bigints, typed arrays of every kind and length, data-set and options look-alikes with
// hostile fields, revoked proxies, throwing getters, sparse arrays. No strings with '/' (a path may be written).
// What an argument throws on access (its getter's error, a revoked proxy's TypeError) may come back unchanged, as
// from any library; what counts is that nothing crashes or hangs.
const EXTRA = Number(process.env.ONEFORWARD_HOSTILE ?? 0);
const EXTRA_SEED = Number(process.env.ONEFORWARD_HOSTILE_SEED ?? 51);

const HOSTILE_THROWN = new Error('thrown by a hostile getter');
const ownError = (err: unknown) =>
  err === HOSTILE_THROWN || (err instanceof TypeError && /on a proxy that has been revoked/.test(err.message));

function seededHostile(count: number, seed: number): [string, unknown][] {
  let s = seed >>> 0;
  const r = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 2 ** 32;
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const number = () =>
    pick([
      -0,
      2 ** 53,
      -(2 ** 31),
      2 ** 32,
      Number.MAX_VALUE,
      Number.MIN_VALUE,
      1e-320,
      -Infinity,
      NaN,
      0.5,
      1 + Math.floor(r() * 8),
      Math.floor((r() - 0.5) * 2e9),
      (r() - 0.5) * 1e6,
    ]);
  const kinds = [Float32Array, Float64Array, Int32Array, Uint8Array, Int8Array, Uint16Array, Uint32Array] as const;
  const array = (): [string, unknown] => {
    const n = pick([0, 1, 3, 8, 12, 64, 1000]);
    if (r() < 0.1) return [`BigInt64Array(${n})`, new BigInt64Array(n)];
    if (r() < 0.15)
      return [`Float32Array(${n}) on a SharedArrayBuffer`, new Float32Array(new SharedArrayBuffer(4 * n))];
    const Kind = pick(kinds);
    const a = new Kind(n);
    for (let i = 0; i < n; i++) a[i] = r() < 0.05 ? NaN : (r() - 0.5) * 10;
    return r() < 0.2 && n > 1 ? [`${Kind.name}(${n}).subarray(1)`, a.subarray(1)] : [`${Kind.name}(${n})`, a];
  };
  const string = () =>
    Array.from({ length: pick([0, 1, 5, 300]) }, () =>
      pick(['a', 'Z', '0', ' ', '\0', '\u00e9', '\ud800', '.', ',', '\n', '{', '"']),
    ).join('');
  const field = (): [string, unknown] => {
    const k = r();
    if (k < 0.3) return [`${number()}`, number()];
    if (k < 0.6) return array();
    if (k < 0.7) return [`'${string().slice(0, 20)}'`, string()];
    return pick<[string, unknown]>([
      ['null', null],
      ['undefined', undefined],
      ['{}', {}],
      ['[]', []],
      ['true', true],
      ['10n', 10n],
    ]);
  };
  const revoked = Proxy.revocable({}, {});
  revoked.revoke();
  const out: [string, unknown][] = [];
  for (let i = 0; i < count; i++) {
    const k = r();
    let v: [string, unknown];
    if (k < 0.15) {
      const n = number();
      v = [`${Object.is(n, -0) ? '-0' : n}`, n];
    } else if (k < 0.2)
      v = pick<[string, unknown]>([
        ['-1n', -1n],
        ['2n ** 64n', 2n ** 64n],
        ['true', true],
        ['new Date(NaN)', new Date(NaN)],
        ['/x/', /x/],
        ['new Map()', new Map()],
      ]);
    else if (k < 0.3) {
      const str = string();
      v = [`a string of ${str.length}`, str];
    } else if (k < 0.5) v = array();
    else if (k < 0.7) {
      const x = field(),
        y = field(),
        rows = field(),
        shape = field();
      v = [
        `{ x: ${x[0]}, y: ${y[0]}, rows: ${rows[0]}, shape: [${shape[0]}] }`,
        { x: x[1], y: y[1], rows: rows[1], shape: [shape[1]] },
      ];
    } else if (k < 0.8) {
      const key = pick([
        'epochs',
        'batchSize',
        'estimator',
        'optimizer',
        'copies',
        'sigma',
        'lr',
        'seed',
        'signal',
        'loss',
        'units',
        'threads',
      ]);
      const f = field();
      v = [`{ ${key}: ${f[0]} }`, { [key]: f[1] }];
    } else if (k < 0.85) v = ['a revoked Proxy', revoked.proxy];
    else if (k < 0.9)
      v = [
        'an object whose getters throw',
        new Proxy(
          {},
          {
            get: () => {
              throw HOSTILE_THROWN;
            },
            has: () => true,
            ownKeys: () => {
              throw HOSTILE_THROWN;
            },
          },
        ),
      ];
    else if (k < 0.95) {
      const n = pick([5, 1e6]);
      v = [`a sparse array of ${n}`, new Array(n)];
    } else {
      const n = number();
      v = [`a function returning ${n}`, () => n];
    }
    out.push([`#${i} ${v[0]}`, v[1]]);
  }
  return out;
}

const isClass = (f: unknown) => typeof f === 'function' && /^class\b/.test(Function.prototype.toString.call(f));

// Every exported function, by its public name ('of.data.loadCsv'), one level into namespace objects.
function exportedFunctions(): [string, (...a: unknown[]) => unknown][] {
  const out: [string, (...a: unknown[]) => unknown][] = [];
  for (const [name, v] of Object.entries(of)) {
    if (typeof v === 'function' && !isClass(v)) out.push([`of.${name}`, v as (...a: unknown[]) => unknown]);
    else if (typeof v === 'object' && v !== null && !Array.isArray(v)) {
      for (const [inner, f] of Object.entries(v))
        if (typeof f === 'function' && !isClass(f))
          out.push([`of.${name}.${inner}`, f as (...a: unknown[]) => unknown]);
    }
  }
  // mpi() initializes MPI in this process where the addon is built: its own tests run it under mpirun.
  return out.filter(([name]) => !(name === 'of.distributed.mpi' && of.distributed.mpiAvailable()));
}

const newModel = () => of.sequential([of.dense(4, 6), of.relu(), of.dense(6, 3)], { seed: 1 });
const dataset = () => ({
  x: Float32Array.from({ length: 8 }, (_, i) => (i % 5) / 5),
  y: Int32Array.from([0, 2]),
  rows: 2,
  shape: [4],
});
const TIMEOUT_MS = 10000;

type Failure = string;

// Calls f(...args); returns a failure line if it threw or rejected with anything but a typed error, or hung.
async function probe(label: string, call: () => unknown): Promise<Failure | undefined> {
  const check = (err: unknown): Failure | undefined =>
    (err instanceof of.OneForwardError && (of.ERROR_CODES as readonly string[]).includes(err.code)) || ownError(err)
      ? undefined
      : `${label}: ${err instanceof Error ? `${err.constructor.name} ${(err as { code?: unknown }).code ?? ''} ${err.message}` : `non-Error ${String(err)}`}`.slice(
          0,
          300,
        );
  let result: unknown;
  try {
    result = call();
  } catch (err) {
    return check(err);
  }
  if (result instanceof Promise) {
    let timer: NodeJS.Timeout | undefined;
    const hang = new Promise<'hang'>((resolve) => (timer = setTimeout(() => resolve('hang'), TIMEOUT_MS)));
    try {
      const r = await Promise.race([result, hang]);
      if (r === 'hang') return `${label}: no answer within ${TIMEOUT_MS} ms`;
    } catch (err) {
      return check(err);
    } finally {
      clearTimeout(timer);
    }
  } else if (
    result &&
    typeof (result as Iterator<unknown>).next === 'function' &&
    typeof (result as Iterable<unknown>)[Symbol.iterator] === 'function'
  ) {
    try {
      for (let i = 0, it = result as Iterator<unknown>; i < 3 && !it.next().done; i++);
    } catch (err) {
      return check(err);
    }
  }
  return undefined;
}

t.test('every exported function: hostile arguments give typed errors only', async (t) => {
  const fns = exportedFunctions();
  t.ok(fns.length >= 40, `${fns.length} exported functions found`);
  const threads = of.backend.info().threads;
  const failures: Failure[] = [];
  let calls = 0;
  const model = newModel();
  try {
    for (const [name, fn] of fns) {
      for (const [hName, h] of hostile()) {
        const lists: [string, () => unknown[]][] = [
          [`${name}(${hName})`, () => [h]],
          [`${name}(${hName}, ${hName}, ${hName})`, () => [h, h, h]],
          [`${name}(model, ${hName})`, () => [model, h]],
          [`${name}(dataset, ${hName})`, () => [dataset(), h]],
          [`${name}(model, dataset, ${hName})`, () => [model, dataset(), h]],
        ];
        for (const [label, args] of lists) {
          calls++;
          const f = await probe(label, () => fn(...args()));
          if (f) failures.push(f);
        }
      }
    }
  } finally {
    of.backend.setThreads(threads);
    if (model._native) model.dispose();
  }
  t.same(failures, [], `${calls} calls: every failure a OneForwardError with a listed code`);
});

t.test('every Model method and getter: hostile arguments give typed errors only', async (t) => {
  const proto = of.Model.prototype as unknown as Record<string | symbol, unknown>;
  // TypeScript-private helpers: on the prototype, but not part of the surface (their callers check first).
  const internal = new Set(['constructor', 'nat', 'checkBatch', 'checkInputs', 'checkData']);
  const keys = [...Object.getOwnPropertyNames(proto), ...Object.getOwnPropertySymbols(proto)].filter(
    (k) => !internal.has(k as string),
  );
  const methods = keys.filter((k) => typeof Object.getOwnPropertyDescriptor(proto, k)!.value === 'function');
  const getters = keys.filter((k) => Object.getOwnPropertyDescriptor(proto, k)!.get !== undefined);
  t.ok(
    methods.length >= 15 && getters.length >= 4,
    `${methods.length} methods, ${getters.length} getters: ${keys.map(String).join(', ')}`,
  );
  const failures: Failure[] = [];
  let calls = 0;
  for (const key of methods) {
    let model = newModel();
    for (const [hName, h] of hostile()) {
      const batch = dataset();
      for (const [label, args] of [
        [`model.${String(key)}(${hName})`, [h]],
        [`model.${String(key)}(${hName}, ${hName})`, [h, h]],
        [`model.${String(key)}(dataset, ${hName})`, [batch, h]],
        [`model.${String(key)}(${hName}, dataset)`, [h, batch]],
        ...(['x', 'y', 'rows', 'shape'] as const).map((field) => [
          `model.${String(key)}({ ...dataset, ${field}: ${hName} })`,
          [{ ...batch, [field]: h }],
        ]),
      ] as [string, unknown[]][]) {
        if (!model._native) model = newModel(); // dispose() and [Symbol.dispose]() end a model: use a fresh one
        calls++;
        const m = model;
        const f = await probe(label, () =>
          (m as unknown as Record<string | symbol, (...a: unknown[]) => unknown>)[key]!(...args),
        );
        if (f) failures.push(f);
      }
    }
    if (model._native) model.dispose();
  }
  const model = newModel();
  for (const key of getters) {
    calls++;
    const f = await probe(`model.${String(key)}`, () => (model as unknown as Record<string | symbol, unknown>)[key]);
    if (f) failures.push(f);
  }
  model.dispose();
  for (const key of getters) {
    const f = await probe(
      `disposed model.${String(key)}`,
      () => (model as unknown as Record<string | symbol, unknown>)[key],
    );
    if (f) failures.push(f);
  }
  t.same(failures, [], `${calls} calls: every failure a OneForwardError with a listed code`);
});

t.test('a communicator that throws anything fails as ERR_BACKEND, keeping what it threw as the cause', async (t) => {
  const model = newModel();
  const thrown: unknown[] = [
    'a string',
    Object.assign(new Error('MPI_ERR_TRUNCATE'), { code: 15 }),
    Object.assign(new TypeError('plain'), { code: 'ERR_SOMETHING' }),
  ];
  for (const value of thrown) {
    const comm = {
      rank: 0,
      size: 1,
      allreduceSum: () => {
        throw value;
      },
    };
    t.throws(
      () => of.distributed.dataParallelStep(model, dataset(), { comm, estimator: of.bp() }),
      { name: 'BackendError', code: 'ERR_BACKEND', message: /the communicator's allreduceSum failed/, cause: value },
      `throws ${String(value)}`,
    );
  }
  await t.rejects(of.distributed.fit(model, dataset(), { comm: { rank: 0, size: 1 } as never }), {
    code: 'ERR_CONFIG',
    message: /comm.allreduceSum/,
  });
  await t.rejects(of.distributed.fit(model, dataset(), { comm: { rank: 1, size: 1, allreduceSum: () => undefined } }), {
    code: 'ERR_CONFIG',
    message: /rank/,
  });
  model.dispose();
});
