// Bench case "finetune" (issue 6 scenario): pretrain an MLP 784-256-10 with BP on digits 0-4, then fine-tune on
// digits 5-9 with BP or ULR, the whole network or only the head (first layer frozen). Reports test accuracy on
// 5-9, what is left on 0-4, and seconds per epoch. Prints one JSON line.
import * as of from '../../lib/index';

function byClass(d: of.Dataset, keep: (c: number) => boolean): of.Dataset {
  const rows = Array.from(d.y).flatMap((c, i) => (keep(c) ? [i] : []));
  return of.data.take(d, rows);
}

async function main() {
  const { train, test } = of.datasets.digits();
  const lowTrain = byClass(train, (c) => c < 5),
    highTrain = byClass(train, (c) => c >= 5);
  const lowTest = byClass(test, (c) => c < 5),
    highTest = byClass(test, (c) => c >= 5);
  const net = () => of.sequential([of.dense(784, 256), of.relu(), of.dense(256, 10)], { seed: 1 });
  const pre = net();
  await pre.fit(lowTrain, { estimator: of.bp(), optimizer: of.adam({ lr: 1e-3 }), epochs: 3, batchSize: 64 });
  const weights = pre.parameters().map((p) => Float32Array.from(p.data));
  const pretrained = { lowAccuracy: pre.evaluate(lowTest).accuracy, highAccuracy: pre.evaluate(highTest).accuracy };
  pre.dispose();
  const runs: Record<string, unknown>[] = [];
  for (const [name, estimator] of [
    ['bp', of.bp()],
    ['ulr K=32', of.ulr({ copies: 32 })],
    ['ulr K=32 layer-wise', of.ulr({ copies: 32, injection: 'layerwise' })],
  ] as const) {
    for (const headOnly of [false, true]) {
      const m = net();
      m.parameters().forEach((p, i) => p.data.set(weights[i]!));
      if (headOnly) m.freeze(1);
      const h = await m.fit(highTrain, { estimator, optimizer: of.adam({ lr: 1e-3 }), epochs: 3, batchSize: 64 });
      runs.push({
        name: `${name}, ${headOnly ? 'head only' : 'full'}`,
        highAccuracy: m.evaluate(highTest).accuracy,
        lowAccuracy: m.evaluate(lowTest).accuracy,
        secondsPerEpoch: h.epochs.reduce((a, e) => a + e.seconds, 0) / h.epochs.length,
      });
      m.dispose();
    }
  }
  process.stdout.write(JSON.stringify({ pretrained, runs }) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
