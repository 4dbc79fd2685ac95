// Character-level language modelling: the shipped corpus, the character vocabulary (round trips, JSON, unknown
// characters), next-token data sets (shapes, labels shifted by one, a split no window crosses), perplexity in
// evaluate and fit, model.generate (greedy = the arg-max chain of predict, seeded sampling, typed errors), and a
// GRU that learns a repetitive text with BP and with ULR.
import t from 'tap';
import * as crypto from 'crypto';
import * as of from '../lib/index';

const config = { name: 'ConfigError', code: 'ERR_CONFIG' };
const data = { name: 'DataError', code: 'ERR_DATA' };
const shape = { name: 'ShapeError', code: 'ERR_SHAPE' };

// A per-position model over T token ids: GRU(16) then GRU(V), both returning every step: (T, V) logits.
const lm = (T: number, V: number, seed = 1) =>
  of.sequential(
    [of.gru({ inputShape: [T, 1], units: 16, returnSequences: true }), of.gru({ units: V, returnSequences: true })],
    { seed },
  );
const argmax = (a: Float32Array) => a.reduce((best, v, j) => (v > a[best]! ? j : best), 0);

t.test('the corpus: chapters 1-30 of Moby-Dick, as data/README.md describes them, read once', async (t) => {
  const text = of.datasets.corpus('moby-dick');
  t.equal(text.length, 263407);
  t.ok(text.startsWith('CHAPTER 1. Loomings.\n\nCall me Ishmael.'));
  t.equal(
    crypto.createHash('sha256').update(text, 'utf8').digest('hex'),
    'af2cb9fbe1cac4b7e8e98f5f5548e5b66ced3743debfd6bd28ac2b656d685e00',
  );
  t.equal(of.datasets.corpus('moby-dick'), text, 'cached');
  t.same(of.CORPORA, ['moby-dick']);
  t.throws(() => of.datasets.corpus('shakespeare' as never), config);
});

t.test('charVocab: sorted code points, encode/decode round trip, JSON round trip', async (t) => {
  const text = of.datasets.corpus('moby-dick');
  const vocab = of.text.charVocab(text);
  t.equal(vocab.size, 80);
  t.same(
    vocab.chars,
    [...vocab.chars].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!),
    'in code-point order',
  );
  t.equal(vocab.chars[0], '\n');
  t.equal(vocab.unk, undefined);
  const ids = vocab.encode(text);
  t.ok(ids instanceof Int32Array);
  t.equal(ids.length, text.length, 'one id per character');
  t.equal(vocab.decode(ids), text, 'decode(encode(text)) is the text');
  t.equal(vocab.decode(Array.from(ids.subarray(0, 20))), 'CHAPTER 1. Loomings.', 'a plain array decodes too');
  t.same(of.text.charVocab(text).chars, vocab.chars, 'the same text gives the same ids');
  t.same(of.text.charVocab([...text].reverse().join('')).chars, vocab.chars, 'whatever the order of the text');

  const saved = JSON.stringify(vocab);
  const back = of.text.vocabFromJSON(JSON.parse(saved));
  t.ok(back instanceof of.CharVocab);
  t.ok(
    Buffer.from(back.encode(text).buffer).equals(Buffer.from(ids.buffer)),
    'a vocabulary read back from JSON gives the same ids',
  );
  t.same(of.CharVocab.fromJSON(JSON.parse(saved)).chars, vocab.chars);

  // code points, not UTF-16 units: an astral character is one id
  const astral = of.text.charVocab('a\u{1F40B}b');
  t.same(astral.chars, ['a', 'b', '\u{1F40B}']);
  t.same(astral.encode('\u{1F40B}a'), Int32Array.from([2, 0]));
  t.equal(astral.decode([2, 1]), '\u{1F40B}b');
});

t.test('charVocab: unknown characters are a DataError, or the unk id with { unk: true }', async (t) => {
  const vocab = of.text.charVocab('abc');
  t.throws(() => vocab.encode('abd'), { ...data, message: /"d" \(U\+0064\) at index 2 is not in the vocabulary/ });
  const withUnk = of.text.charVocab('abc', { unk: true });
  t.equal(withUnk.size, 4);
  t.equal(withUnk.unk, 3, 'the last id');
  t.same(withUnk.encode('adc'), Int32Array.from([0, 3, 2]));
  t.equal(withUnk.decode([0, 3, 2]), 'a\uFFFDc');
  t.same(of.text.vocabFromJSON(JSON.parse(JSON.stringify(withUnk))).encode('xa'), Int32Array.from([3, 0]));

  t.throws(() => vocab.decode([0, 3]), { ...data, message: /id 3 at index 1/ });
  t.throws(() => vocab.decode([0.5]), data);
  t.throws(() => vocab.decode('ab' as never), config);
  t.throws(() => vocab.encode(3 as never), config);
  t.throws(() => of.text.charVocab(''), config);
  t.throws(() => of.text.charVocab('ab', { unk: 1 as never }), config);
  t.throws(() => of.text.charVocab('ab', { unknown: true } as never), config);
  for (const bad of [
    null,
    { type: 'wordVocab', chars: ['a'], unk: false },
    { type: 'charVocab', chars: [], unk: false },
    { type: 'charVocab', chars: ['ab'], unk: false },
    { type: 'charVocab', chars: ['b', 'a'], unk: false },
    { type: 'charVocab', chars: ['a', 'a'], unk: false },
    { type: 'charVocab', chars: ['a'], unk: 'no' },
  ])
    t.throws(() => of.text.vocabFromJSON(bad), config, JSON.stringify(bad));
});

t.test('tokens: windows of T ids, labels the next ids, stride defaults to T', async (t) => {
  const ids = Int32Array.from({ length: 103 }, (_, i) => (i * 7) % 11);
  const T = 10;
  const { train, validation } = of.data.tokens(ids, { context: T });
  t.equal(validation, undefined, 'no split, no validation');
  t.equal(train.rows, 10, 'floor((103 - 11) / 10) + 1 windows that do not overlap');
  t.same(train.shape, [T, 1]);
  t.ok(train.x instanceof Float32Array && train.y instanceof Int32Array);
  t.equal(train.x.length, train.rows * T);
  t.equal(train.y.length, train.rows * T, 'one label per position');
  let ok = true;
  for (let r = 0; r < train.rows; r++)
    for (let p = 0; p < T; p++) {
      ok &&= train.x[r * T + p] === ids[r * T + p];
      ok &&= train.y[r * T + p] === ids[r * T + p + 1];
      if (p + 1 < T) ok &&= train.y[r * T + p] === train.x[r * T + p + 1]; // labels are the inputs shifted by one
    }
  t.ok(ok, 'x[r, p] = ids[r T + p] and y[r, p] = ids[r T + p + 1]');

  const dense = of.data.tokens(ids, { context: T, stride: 1 }).train;
  t.equal(dense.rows, 103 - T, 'stride 1: every start whose labels fit');
  t.equal(dense.y[(dense.rows - 1) * T + T - 1], ids[102], 'the last label is the last token');
  t.equal(of.data.tokens(Array.from(ids), { context: T, stride: 25 }).train.rows, 4, 'a plain array, stride > T');

  const m = lm(T, 11);
  t.equal(m.groups, T, 'the model classifies each of the T positions');
  t.ok(Number.isFinite(m.evaluate(train).loss), 'the windows fit a (T, V) model as they are');
  m.dispose();
});

t.test('tokens: oneHot gives [T, V] rows with a single 1 at each input id, the same labels', async (t) => {
  const ids = Int32Array.from({ length: 50 }, (_, i) => (i * 3) % 7);
  const plain = of.data.tokens(ids, { context: 6, stride: 2 }).train;
  const hot = of.data.tokens(ids, { context: 6, stride: 2, oneHot: 7 }).train;
  t.same(hot.shape, [6, 7]);
  t.equal(hot.rows, plain.rows);
  t.same(hot.y, plain.y, 'the same labels');
  let ok = true;
  for (let i = 0; i < plain.rows * 6; i++)
    for (let v = 0; v < 7; v++) ok &&= hot.x[i * 7 + v] === (v === plain.x[i] ? 1 : 0);
  t.ok(ok, 'x[r, p, v] = 1 where v is the id at (r, p), else 0');
  t.throws(() => of.data.tokens(ids, { context: 6, oneHot: 6 }), { ...data, message: /6 at index 2 .*\[0, 5\]/ });
  t.throws(() => of.data.tokens(ids, { context: 6, oneHot: 1 }), config);
  t.throws(() => of.data.tokens(new Int32Array(70000), { context: 64, oneHot: 1024 }), config);
});

t.test('tokens: split cuts the stream before windowing, so no window crosses it', async (t) => {
  // ids = positions in the stream, so each window's values say where it came from
  const n = 1000;
  const ids = Int32Array.from({ length: n }, (_, i) => i);
  for (const stride of [1, 3, 8]) {
    const { train, validation } = of.data.tokens(ids, { context: 8, stride, split: 0.1 });
    const cut = n - Math.ceil(n * 0.1);
    const maxTrain = Math.max(...train.x, ...train.y),
      minVal = Math.min(...validation.x, ...validation.y);
    t.ok(maxTrain < cut && minVal >= cut, `stride ${stride}: train ids <= ${maxTrain}, validation ids >= ${minVal}`);
    if (stride === 1) t.equal(maxTrain, cut - 1, 'stride 1 uses the training part to its last token');
    t.equal(minVal, cut, 'the validation part starts at the cut');
  }
  const a = of.data.tokens(ids, { context: 8, split: 0.25 }),
    b = of.data.tokens(ids, { context: 8, split: 0.25 });
  t.same(a, b, 'deterministic');
});

t.test('tokens: typed errors', async (t) => {
  const ids = new Int32Array(100);
  t.throws(() => of.data.tokens(ids, undefined as never), config);
  t.throws(() => of.data.tokens(ids, { context: 0 }), config);
  t.throws(() => of.data.tokens(ids, { context: 1.5 }), config);
  t.throws(() => of.data.tokens(ids, { context: 8, stride: 0 }), config);
  t.throws(() => of.data.tokens(ids, { context: 8, split: 0 }), config);
  t.throws(() => of.data.tokens(ids, { context: 8, split: 1 }), config);
  t.throws(() => of.data.tokens(ids, { context: 8, window: 8 } as never), config);
  t.throws(() => of.data.tokens('abc' as never, { context: 2 }), config);
  t.throws(() => of.data.tokens(ids, { context: 100 }), { ...shape, message: /needs 101/ });
  t.throws(() => of.data.tokens(ids, { context: 8, split: 0.05 }), { ...shape, message: /validation part/ });
  t.throws(() => of.data.tokens([0, 1, -1, 2], { context: 1 }), { ...data, message: /-1 at index 2/ });
  t.throws(() => of.data.tokens([0, 1, 0.5, 2], { context: 1 }), data);
  t.throws(() => of.data.tokens([0, 1, NaN, 2], { context: 1 }), data);
  t.throws(() => of.data.tokens([0, 1, 2 ** 24 + 1], { context: 1 }), data);
  // 68,977 windows of 1,024: above 2^26 values, refused before anything is allocated
  t.throws(() => of.data.tokens(new Int32Array(70000), { context: 1024, stride: 1 }), {
    ...config,
    message: /raise stride/,
  });
});

t.test('perplexity = exp(loss) in evaluate and in the fit history; V for a model with zero weights', async (t) => {
  const T = 6,
    V = 5;
  const ids = Int32Array.from({ length: 400 }, (_, i) => (i * i) % V);
  const { train, validation } = of.data.tokens(ids, { context: T, stride: 2, split: 0.2 });
  const m = lm(T, V);
  for (const p of m.parameters()) p.data.fill(0); // every logit 0: p = 1/V at every position
  const e = m.evaluate(validation);
  t.ok(Math.abs(e.loss - Math.log(V)) < 1e-6, `zero weights: loss ${e.loss} = log ${V}`);
  t.ok(Math.abs(e.perplexity! - V) < 1e-5, `perplexity ${e.perplexity} = ${V}`);
  t.same(await m.evaluateAsync(validation), e, 'evaluateAsync gives the same');

  const h = await m.fit(train, { validation, epochs: 2, estimator: of.bp(), optimizer: of.adam({ lr: 0.01 }) });
  t.equal(h.history.perplexity.length, 2);
  t.same(
    h.history.perplexity,
    h.history.loss.map((l) => Math.exp(l)),
  );
  t.same(
    h.history.valPerplexity,
    h.history.valLoss.map((l) => Math.exp(l)),
  );
  t.equal(h.epochs[1]!.valPerplexity, h.history.valPerplexity[1]);
  const after = m.evaluate(validation);
  t.equal(after.perplexity, Math.exp(after.loss));
  // fit's validation may run on a device, evaluate on the CPU: equal up to the order of the float sums
  t.ok(Math.abs(after.loss - h.history.valLoss[1]!) < 1e-5, 'evaluate after fit is the last validation loss');
  m.dispose();

  const mse = of.sequential([of.dense(3, 2)], { loss: 'mse' });
  const r = mse.evaluate({ x: new Float32Array(6), y: new Float32Array(4), rows: 2, shape: [3] });
  t.equal(r.perplexity, undefined, 'no perplexity without cross-entropy');
  const hm = await mse.fit({ x: new Float32Array(6), y: new Float32Array(4), rows: 2, shape: [3] }, { epochs: 1 });
  t.same(hm.history.perplexity, []);
  mse.dispose();
});

t.test("fit's training accuracy of a per-position model is over its labeled positions", async (t) => {
  const T = 6,
    V = 5;
  const ids = Int32Array.from({ length: 300 }, (_, i) => (i * i + 3 * i) % V);
  const { train } = of.data.tokens(ids, { context: T, stride: 2 });
  const d = { ...train, y: Int32Array.from(train.y, (l, i) => (i % 3 === 0 ? -1 : l)) }; // a third unlabeled
  const m = lm(T, V);
  const before = m.evaluate(d);
  const batches: number[] = [];
  // one step over every row: BP's training forward is the clean one, before the step's update
  const h = await m.fit(d, {
    epochs: 1,
    batchSize: d.rows,
    estimator: of.bp(),
    onBatchEnd: (b) => void batches.push(b.accuracy),
  });
  t.equal(h.history.accuracy[0], before.accuracy, `training accuracy ${before.accuracy} = evaluate's, per position`);
  t.same(batches, [before.accuracy], 'the batch log too');
  const u = await m.fit(train, { epochs: 2, estimator: of.ulr({ copies: 4 }), batchSize: 8 });
  t.ok(
    u.history.accuracy.every((a) => a >= 0 && a <= 1),
    `ULR (noisy copies): ${u.history.accuracy.map((a) => a.toFixed(3)).join(', ')} in [0, 1]`,
  );
  m.dispose();
});

t.test('generate: greedy is the arg-max chain of predict, sliding a window of T', async (t) => {
  const T = 5,
    V = 4;
  const m = lm(T, V, 3);
  const prompt = [1, 2];
  const got = await m.generate(prompt, { maxTokens: 12 });
  t.ok(got instanceof Int32Array);
  t.equal(got.length, 12);
  // the same chain by hand: the last T ids, right-padded with 0 while shorter, read at the last real position
  const seq = [...prompt];
  for (let k = 0; k < 12; k++) {
    const start = Math.max(0, seq.length - T),
      win = seq.slice(start);
    const x = new Float32Array(T);
    x.set(win);
    const logits = m.predict(x, 1);
    seq.push(argmax(logits.subarray((win.length - 1) * V, win.length * V)));
  }
  t.same(Array.from(got), seq.slice(prompt.length), 'greedy tokens = arg-max of predict at each step');
  t.same(await m.generate(Int32Array.from(prompt), { maxTokens: 12, temperature: 0, seed: 9 }), got, 'seed unused');

  // a model of one-hot inputs: the window holds a one-hot row per id (rows of zeros as padding)
  const hot = of.sequential(
    [of.gru({ inputShape: [T, V], units: 8, returnSequences: true }), of.gru({ units: V, returnSequences: true })],
    { seed: 5 },
  );
  const hotSeq = [...prompt];
  for (let k = 0; k < 6; k++) {
    const win = hotSeq.slice(Math.max(0, hotSeq.length - T));
    const x = new Float32Array(T * V);
    win.forEach((id, p) => (x[p * V + id] = 1));
    hotSeq.push(argmax(hot.predict(x, 1).subarray((win.length - 1) * V, win.length * V)));
  }
  t.same(Array.from(await hot.generate(prompt, { maxTokens: 6 })), hotSeq.slice(prompt.length), 'one-hot inputs');
  hot.dispose();

  const long = [3, 0, 1, 2, 3, 0, 1, 2]; // longer than T: only its last T ids matter to a GRU of T steps
  t.same(await m.generate(long, { maxTokens: 4 }), await m.generate(long.slice(-T), { maxTokens: 4 }));
  m.dispose();
});

t.test('generate: seeded sampling is deterministic; temperature -> 0 and topK 1 are greedy', async (t) => {
  const T = 5,
    V = 6;
  const m = lm(T, V, 4);
  for (const p of m.parameters()) for (let i = 0; i < p.data.length; i++) p.data[i] = 3 * Math.sin(i + p.data.length);
  const prompt = [0, 5, 2];
  const greedy = await m.generate(prompt, { maxTokens: 30 });
  const a = await m.generate(prompt, { maxTokens: 30, temperature: 1, seed: 11 });
  t.same(await m.generate(prompt, { maxTokens: 30, temperature: 1, seed: 11 }), a, 'same seed, same tokens');
  const b = await m.generate(prompt, { maxTokens: 30, temperature: 1, seed: 12 });
  t.not(Buffer.from(a.buffer).toString('hex'), Buffer.from(b.buffer).toString('hex'), 'another seed, other tokens');
  t.not(Buffer.from(a.buffer).toString('hex'), Buffer.from(greedy.buffer).toString('hex'), 'not greedy at T = 1');
  t.same(await m.generate(prompt, { maxTokens: 30, temperature: 1e-6, seed: 11 }), greedy, 'temperature 1e-6');
  t.same(await m.generate(prompt, { maxTokens: 30, temperature: 5, topK: 1, seed: 11 }), greedy, 'topK 1');
  const top2 = await m.generate(prompt, { maxTokens: 30, temperature: 100, topK: 2, seed: 1 });
  t.ok(
    top2.every((id) => id >= 0 && id < V),
    'ids in range',
  );

  // The first token's frequencies over 600 seeds match softmax(logits / 2) (the logits at the prompt's last id).
  const x = new Float32Array(T);
  x.set(prompt);
  const logits = m.predict(x, 1).subarray(2 * V, 3 * V);
  const w = Array.from(logits, (l) => Math.exp((l - Math.max(...logits)) / 2));
  const p = w.map((v) => v / w.reduce((s, u) => s + u, 0));
  const counts = new Array(V).fill(0);
  const N = 600;
  for (let seed = 0; seed < N; seed++) counts[(await m.generate(prompt, { maxTokens: 1, temperature: 2, seed }))[0]!]++;
  // tolerance: 4.5 binomial standard deviations per id (a false alarm about once in 10^4 runs of V ids)
  counts.forEach((c, j) => {
    const sd = Math.sqrt(N * p[j]! * (1 - p[j]!));
    t.ok(Math.abs(c - N * p[j]!) <= 4.5 * sd + 1, `id ${j}: ${c} draws, expected ${(N * p[j]!).toFixed(1)}`);
  });
  // topK 2: only the two largest logits are ever drawn
  const top = Array.from(logits.keys())
    .sort((i, j) => logits[j]! - logits[i]! || i - j)
    .slice(0, 2);
  let inTop = true;
  for (let seed = 0; seed < 100; seed++)
    inTop &&= top.includes((await m.generate(prompt, { maxTokens: 1, temperature: 10, topK: 2, seed }))[0]!);
  t.ok(inTop, `topK 2 draws only ids ${top.join(', ')}`);
  m.dispose();
});

t.test('generate: runs off the event loop, typed errors for models, prompts and options', async (t) => {
  const T = 4,
    V = 3;
  const m = lm(T, V);
  let ticked = false;
  setImmediate(() => (ticked = true));
  const pending = m.generate([0], { maxTokens: 8 });
  t.ok(pending instanceof Promise);
  await pending;
  t.ok(ticked, 'the event loop ran while tokens were generated');

  await t.rejects(m.generate([], { maxTokens: 1 }), { ...data, message: /at least one token/ });
  await t.rejects(m.generate([0, 3], { maxTokens: 1 }), { ...data, message: /id 3 at index 1 .*\[0, 3\)/ });
  await t.rejects(m.generate([0, -1], { maxTokens: 1 }), data);
  await t.rejects(m.generate([0.5], { maxTokens: 1 }), data);
  await t.rejects(m.generate('ab' as never, { maxTokens: 1 }), config);
  await t.rejects(m.generate([0], undefined as never), config);
  for (const bad of [0, -1, 1.5, 2 ** 20 + 1]) await t.rejects(m.generate([0], { maxTokens: bad }), config);
  for (const bad of [-0.1, NaN, Infinity]) await t.rejects(m.generate([0], { maxTokens: 1, temperature: bad }), config);
  for (const bad of [0, V + 1, 1.5])
    await t.rejects(m.generate([0], { maxTokens: 1, temperature: 1, topK: bad }), config);
  await t.rejects(m.generate([0], { maxTokens: 1, seed: -1 }), config);
  await t.rejects(m.generate([0], { maxTokens: 1, temp: 1 } as never), config);
  m.dispose();
  await t.rejects(m.generate([0], { maxTokens: 1 }), { code: 'ERR_DISPOSED' });

  const notLm = [
    of.sequential([of.dense(4, 3)]), // one label per row
    of.sequential([of.gru({ inputShape: [4, 2], units: 3, returnSequences: true })]), // 2 inputs a position, not 1 or 3
    of.sequential([of.gru({ inputShape: [4, 1], units: 3, returnSequences: true }), of.timeMean(), of.dense(3, 3)]),
  ];
  for (const n of notLm) {
    await t.rejects(n.generate([0], { maxTokens: 1 }), { ...config, message: /\(T, vocab\) logits per position/ });
    n.dispose();
  }
});

t.test(
  'a GRU learns a repetitive text: validation loss far below log V in 5 epochs (BP and ULR, seed 1)',
  async (t) => {
    const text = 'the cat sat on the mat. '.repeat(200);
    const vocab = of.text.charVocab(text);
    const V = vocab.size,
      T = 16;
    t.equal(V, 11);
    const { train, validation } = of.data.tokens(vocab.encode(text), { context: T, stride: 4, split: 0.2, oneHot: V });
    // Measured at seed 1 (validation loss after 5 epochs, against log V = 2.398): BP 0.010, ULR (K = 8) 0.109, both
    // 100% of next characters right. layerNorm's gain lets the logits leave the GRU's tanh range [-1, 1].
    for (const [name, estimator, bound] of [
      ['bp', of.bp(), 0.1],
      ['ulr', of.ulr({ copies: 8 }), 0.4],
    ] as const) {
      const m = of.sequential(
        [
          of.gru({ inputShape: [T, V], units: 32, returnSequences: true }),
          of.gru({ units: V, returnSequences: true }),
          of.layerNorm(),
        ],
        { seed: 1 },
      );
      const before = m.evaluate(validation);
      t.ok(Math.abs(before.loss - Math.log(V)) < 0.5, `${name} untrained: ${before.loss.toFixed(3)} near log V`);
      const h = await m.fit(train, {
        validation,
        epochs: 5,
        batchSize: 16,
        estimator,
        optimizer: of.adam({ lr: 0.01 }),
      });
      const last = h.epochs.at(-1)!;
      t.ok(last.valLoss! < bound, `${name}: validation loss ${last.valLoss!.toFixed(3)} < ${bound}`);
      t.ok(
        last.valPerplexity! < Math.exp(bound),
        `${name}: perplexity ${last.valPerplexity!.toFixed(3)} (11 untrained)`,
      );
      t.ok(last.valAccuracy! > 0.9, `${name}: validation accuracy ${last.valAccuracy!.toFixed(3)}`);
      const sample = vocab.decode(await m.generate(vocab.encode('the '), { maxTokens: 40 }));
      t.ok(text.includes('the ' + sample), `${name}: greedy continuation of "the ": ${JSON.stringify(sample)}`);
      m.dispose();
    }
  },
);
