// Per-channel ULR sigma from the data, for the arch-options bench case: sigma_c = sigma * s_c / mean(s), with s_c the
// standard deviation of channel c's clean pre-activation over one batch (its rows, and positions or time steps), at
// the model's current weights. Each layer keeps the scalar setting's mean sigma; a channel that varies more gets more
// noise, so the noise is about the same fraction of every channel's spread. Conv and dense layers are measured by a
// clean forward of the model cut after the layer (its weights copied); a gru's gate pre-activations are computed here
// from its weights. Other layer kinds with parameters are not supported.
import * as of from '../../lib/index';

const WITH_PARAMETERS = new Set([
  'dense',
  'conv2d',
  'rnn',
  'gru',
  'lstm',
  'lif',
  'graphConv',
  'layerNorm',
  'batchNorm',
  'groupNorm',
]);
// A channel whose spread is under FLOOR × the layer's mean is measured as FLOOR × the mean (keeps sigma_c > 0).
const FLOOR = 0.05;

/** Each layer with parameters, in the order ULR numbers them, with the layers before it (blocks unwrapped). */
function prefixes(layers: readonly of.Layer[]): of.Layer[][] {
  const out: of.Layer[][] = [];
  layers.forEach((l, i) => {
    const before = layers.slice(0, i);
    if (l.type === 'residual')
      l.layers.forEach(
        (inner, j) => WITH_PARAMETERS.has(inner.type) && out.push([...before, ...l.layers.slice(0, j + 1)]),
      );
    else if (WITH_PARAMETERS.has(l.type)) out.push([...before, l]);
  });
  return out;
}

const flat = (layers: readonly of.Layer[]): of.Layer[] =>
  layers.flatMap((l) => (l.type === 'residual' ? flat(l.layers) : [l]));

/** Population standard deviation of each of `C` channels in `v`, channels last; float64 sums. */
function channelStd(v: ArrayLike<number>, C: number): number[] {
  const sum = new Float64Array(C),
    sq = new Float64Array(C);
  for (let i = 0; i < v.length; i++) {
    const c = i % C;
    sum[c] = sum[c]! + v[i]!;
    sq[c] = sq[c]! + v[i]! * v[i]!;
  }
  const n = v.length / C;
  return Array.from(sum, (s, c) => Math.sqrt(Math.max(0, sq[c]! / n - (s / n) ** 2)));
}

/**
 * A gru's gate pre-activations over `rows` sequences x (rows, T, F): P_z, P_r = W x_t + U h + b and
 * P_n = W_n x_t + U_n (r * h) + b_n (units/recurrent.cpp), gates z r n; returns (rows T, 3H), channels last.
 */
export function gruGates(
  W: Float32Array,
  U: Float32Array,
  b: Float32Array,
  x: Float32Array,
  rows: number,
  T: number,
  F: number,
  H: number,
): Float32Array {
  const GH = 3 * H;
  const out = new Float32Array(rows * T * GH);
  const h = new Float64Array(H),
    rh = new Float64Array(H);
  for (let r = 0; r < rows; r++) {
    h.fill(0);
    for (let t = 0; t < T; t++) {
      const xt = x.subarray((r * T + t) * F, (r * T + t + 1) * F);
      const P = out.subarray((r * T + t) * GH, (r * T + t + 1) * GH);
      for (let j = 0; j < GH; j++) {
        let s = b[j]!;
        for (let f = 0; f < F; f++) s += W[j * F + f]! * xt[f]!;
        if (j < 2 * H) for (let k = 0; k < H; k++) s += U[j * H + k]! * h[k]!;
        P[j] = s;
      }
      for (let k = 0; k < H; k++) rh[k] = h[k]! / (1 + Math.exp(-P[H + k]!));
      for (let j = 0; j < H; j++) {
        for (let k = 0; k < H; k++) P[2 * H + j] = P[2 * H + j]! + U[(2 * H + j) * H + k]! * rh[k]!;
        const z = 1 / (1 + Math.exp(-P[j]!));
        h[j] = z * h[j]! + (1 - z) * Math.tanh(P[2 * H + j]!);
      }
    }
  }
  return out;
}

/**
 * The clean output of the model cut to `layers` (a prefix of `model`'s), its weights copied from `model`; an image
 * output is flattened (a model cannot end in one), channels staying last.
 */
async function cutForward(model: of.Model, layers: of.Layer[], x: Float32Array, rows: number): Promise<Float32Array> {
  const cut = of.sequential(layers[layers.length - 1]!.type === 'conv2d' ? [...layers, of.flatten()] : layers, {
    loss: 'mse',
  });
  try {
    await cut.loadWeights(
      new Map(model.parameters().map((p) => [p.name, { dtype: 'F32', shape: p.shape, data: p.data }])),
    );
    return cut.predict(x, rows);
  } finally {
    cut.dispose();
  }
}

/** One sigma per channel (a gru: per gate and unit) of every layer with parameters, from the first `rows` of `data`. */
export async function channelSigma(
  model: of.Model,
  data: of.Dataset,
  rows: number,
  sigma: number,
): Promise<number[][]> {
  const x = data.x.subarray(0, rows * (data.x.length / data.rows));
  const out: number[][] = [];
  for (const layers of prefixes(model.layers)) {
    const layer = layers[layers.length - 1]!;
    let std: number[];
    if (layer.type === 'conv2d' || layer.type === 'dense') {
      std = channelStd(await cutForward(model, layers, x, rows), layer.type === 'conv2d' ? layer.filters : layer.units);
    } else if (layer.type === 'gru') {
      const input = layers.length > 1 ? await cutForward(model, layers.slice(0, -1), x, rows) : x;
      const index = flat(layers).filter((l) => l.type === 'gru').length - 1; // parameters are named gru<index>.*
      const [W, U, b] = model.parameters().filter((p) => p.name.startsWith(`gru${index}.`));
      const H = layer.units,
        F = W!.shape[1]!,
        T = input.length / (rows * F);
      std = channelStd(gruGates(W!.data, U!.data, b!.data, input, rows, T, F, H), 3 * H);
    } else {
      throw new Error(`channelSigma measures conv2d, dense and gru layers, not ${layer.type}`);
    }
    const mean = std.reduce((a, s) => a + s, 0) / std.length;
    out.push(std.map((s) => (sigma * Math.max(s, FLOOR * mean)) / mean));
  }
  return out;
}
