// Bench case "robustness" (issue 6): are ULR-trained models more robust than BP-trained ones of equal clean
// accuracy? Digits, MLP 784-256-10, trained on 6,996 rows with 1,000 random rows held out for validation. Each ULR variant
// trains 5 epochs; its BP twin trains on the same rows, batch by batch, until its validation accuracy reaches
// the ULR model's (checked every 10 steps), so the two start from equal clean accuracy. The control: a BP twin
// trained with the same Gaussian noise injection (`bp({ sigma })`: noise on every pre-activation, no likelihood
// ratio), matched the same way, says whether ULR's robustness goes beyond what its noise alone gives. A fully
// trained BP model (5 epochs) is reported too. Attacks on the 2,004 test rows: FGSM and PGD (white-box, input gradients by
// backprop through the engine) and Gaussian / salt-and-pepper corruption. Prints one JSON line.
import * as of from '../../lib/index';

const ATTACKS: of.Attack[] = [
  { kind: 'fgsm', eps: 0.05 },
  { kind: 'fgsm', eps: 0.1 },
  { kind: 'fgsm', eps: 0.13 },
  { kind: 'fgsm', eps: 0.2 },
  { kind: 'pgd', eps: 0.1, steps: 10 },
  { kind: 'gaussian', std: 0.3 },
  { kind: 'gaussian', std: 0.5 },
  { kind: 'saltPepper', p: 0.1 },
  { kind: 'saltPepper', p: 0.2 },
];

const net = (seed: number) => of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed });

async function bpMatching(
  train: of.Dataset,
  val: of.Dataset,
  target: number,
  seed: number,
  estimator: of.Estimator = of.bp(),
) {
  const m = net(seed);
  const opt = of.adam({ lr: 1e-3 });
  const batch = 64;
  let steps = 0,
    acc = 0;
  for (let epoch = 0; epoch < 20 && acc < target; epoch++) {
    const order = of.data.permutation(train.rows, seed * 1000 + epoch);
    for (let r0 = 0; r0 < train.rows && acc < target; r0 += batch) {
      const b = of.data.take(train, Array.from(order.subarray(r0, Math.min(train.rows, r0 + batch))));
      m.trainStep(b, { estimator, optimizer: opt });
      if (++steps % 10 === 0) acc = m.evaluate(val).accuracy;
    }
  }
  return { model: m, steps, valAccuracy: acc };
}

async function main() {
  const { train: all, test } = of.datasets.digits();
  const order = Array.from(of.data.permutation(all.rows, 7)); // the digits rows come grouped by class
  const train = of.data.take(all, order.slice(1000)),
    val = of.data.take(all, order.slice(0, 1000));
  const seed = 1;
  // [name, estimator, sigma of its noise in every layer (the control's), or undefined: no control]
  const variants: [string, of.Estimator, number | undefined][] = [
    ['ulr K=32, sigma 0.1', of.ulr({ copies: 32 }), 0.1],
    ['ulr K=32, sigma 0.3', of.ulr({ copies: 32, sigma: 0.3 }), 0.3],
    ['ulr K=32, sigma 1', of.ulr({ copies: 32, sigma: 1 }), 1],
    [
      'ulr modules [[0,2]] (noise on the logits), sigma 0.3',
      of.ulr({ copies: 32, sigma: 0.3, modules: [[0, 2]] }),
      undefined,
    ],
  ];
  const rows: Record<string, unknown>[] = [];
  const attack = (m: of.Model) =>
    of.robustness.evaluate(m, test, { attacks: ATTACKS }).map((r) => ({ attack: r.attack, accuracy: r.accuracy }));
  for (const [name, estimator, sigma] of variants) {
    const m = net(seed);
    await m.fit(train, { estimator, optimizer: of.adam({ lr: 1e-3 }), epochs: 5, batchSize: 64 });
    const target = m.evaluate(val).accuracy;
    const twin = await bpMatching(train, val, target, seed);
    rows.push({ pair: name, model: name, valAccuracy: target, results: attack(m) });
    rows.push({
      pair: name,
      model: `bp, stopped at ${twin.steps} steps`,
      valAccuracy: twin.valAccuracy,
      results: attack(twin.model),
    });
    (m.dispose(), twin.model.dispose());
    if (sigma === undefined) continue;
    const control = await bpMatching(train, val, target, seed, of.bp({ sigma }));
    rows.push({
      pair: name,
      model: `bp + noise sigma ${sigma}, stopped at ${control.steps} steps`,
      valAccuracy: control.valAccuracy,
      results: attack(control.model),
    });
    control.model.dispose();
  }
  const full = net(seed);
  await full.fit(train, { estimator: of.bp(), optimizer: of.adam({ lr: 1e-3 }), epochs: 5, batchSize: 64 });
  rows.push({
    pair: 'reference',
    model: 'bp, 5 epochs',
    valAccuracy: full.evaluate(val).accuracy,
    results: attack(full),
  });
  full.dispose();
  process.stdout.write(JSON.stringify({ attacks: ATTACKS, rows }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
