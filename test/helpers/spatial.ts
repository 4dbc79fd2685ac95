// A float64 reference for models with spatial and sequence layers: plain loops over each image (channels-last), written from
// the definitions (no im2row, no GEMM), for the engine's conv / pooling kernels to be checked against. Parameters
// in the model's tensor order; conv weights (filters, kh, kw, C).
import * as of from '../../lib/index';
import { topology } from '../../lib/layers/topology';
import { activate } from './reference';

type Shape = [number, number, number];

function pad(n: number, k: number, s: number, d: number, p: of.Padding, axis: 0 | 1): { out: number; before: number } {
  const eff = d * (k - 1) + 1;
  if (p === 'same') {
    const out = Math.ceil(n / s);
    return { out, before: Math.floor(Math.max((out - 1) * s + eff - n, 0) / 2) };
  }
  const before = p === 'valid' ? 0 : p[axis];
  return { out: Math.floor((n + 2 * before - eff) / s) + 1, before };
}

const tensorCount = (l: of.Layer): number =>
  l.type === 'dense' || l.type === 'conv2d'
    ? l.bias
      ? 2
      : 1
    : l.type === 'rnn' || l.type === 'gru' || l.type === 'lstm'
      ? 3
      : l.type === 'lif' ||
          l.type === 'graphConv' ||
          l.type === 'layerNorm' ||
          l.type === 'batchNorm' ||
          l.type === 'groupNorm'
        ? 2
        : l.type === 'residual' || l.type === 'concat'
          ? l.layers.reduce((a, m) => a + tensorCount(m), 0)
          : 0;

/** Forward of one row (an image, a sequence or a vector) through the layers; returns the output vector. */
export function forwardRow(
  layers: readonly of.Layer[],
  params: ArrayLike<number>[],
  x: ArrayLike<number>,
  state?: { shape?: Shape; seqF?: number },
): Float64Array {
  let v = Float64Array.from(x);
  let shape: Shape | undefined = state?.shape;
  let seqF: number | undefined = state?.seqF; // features per step while the value is a sequence
  let p = 0;
  for (const l of layers) {
    if (l.type === 'residual') {
      // x + f(x); a following activation applies to the sum
      const n = tensorCount(l);
      const f = forwardRow(l.layers, params.slice(p, p + n), v, { shape, seqF });
      v = v.map((z, i) => z + f[i]!);
      p += n;
      continue;
    }
    if (l.type === 'concat') {
      // [x, f(x)] per position
      const n = tensorCount(l);
      const f = forwardRow(l.layers, params.slice(p, p + n), v, { shape, seqF });
      const P = shape ? shape[0] * shape[1] : seqF ? v.length / seqF : 1;
      const a = v.length / P,
        b = f.length / P;
      const out = new Float64Array(v.length + f.length);
      for (let q = 0; q < P; q++) {
        out.set(v.subarray(q * a, (q + 1) * a), q * (a + b));
        out.set(f.subarray(q * b, (q + 1) * b), q * (a + b) + a);
      }
      if (shape) shape = [shape[0], shape[1], shape[2] + b];
      if (seqF) seqF += b;
      v = out;
      p += n;
      continue;
    }
    if (l.type === 'conv2d' || l.type === 'maxPool2d' || l.type === 'avgPool2d' || l.type === 'globalAvgPool') {
      if (!shape) shape = (l as of.Conv2dLayer).inputShape!;
      const [H, W, C] = shape;
      if (l.type === 'globalAvgPool') {
        const out = new Float64Array(C);
        for (let i = 0; i < H * W; i++) for (let c = 0; c < C; c++) out[c]! += v[i * C + c]! / (H * W);
        v = out;
        shape = undefined;
        continue;
      }
      const py = pad(H, l.kernel[0], l.strides[0], l.dilation[0], l.padding, 0),
        px = pad(W, l.kernel[1], l.strides[1], l.dilation[1], l.padding, 1);
      const Co = l.type === 'conv2d' ? l.filters : C;
      const out = new Float64Array(py.out * px.out * Co);
      const Wt = l.type === 'conv2d' ? params[p]! : undefined,
        b = l.type === 'conv2d' && l.bias ? params[p + 1]! : undefined;
      for (let oy = 0; oy < py.out; oy++)
        for (let ox = 0; ox < px.out; ox++)
          for (let co = 0; co < Co; co++) {
            let acc = l.type === 'conv2d' ? (b ? b[co]! : 0) : l.type === 'maxPool2d' ? -Infinity : 0;
            let taps = 0;
            for (let ky = 0; ky < l.kernel[0]; ky++)
              for (let kx = 0; kx < l.kernel[1]; kx++) {
                const iy = oy * l.strides[0] - py.before + ky * l.dilation[0],
                  ix = ox * l.strides[1] - px.before + kx * l.dilation[1];
                if (iy < 0 || iy >= H || ix < 0 || ix >= W) continue;
                taps++;
                if (l.type === 'conv2d') {
                  for (let c = 0; c < C; c++)
                    acc += Wt![((co * l.kernel[0] + ky) * l.kernel[1] + kx) * C + c]! * v[(iy * W + ix) * C + c]!;
                } else if (l.type === 'maxPool2d') {
                  acc = Math.max(acc, v[(iy * W + ix) * C + co]!);
                } else {
                  acc += v[(iy * W + ix) * C + co]!;
                }
              }
            out[(oy * px.out + ox) * Co + co] = l.type === 'avgPool2d' ? acc / taps : acc;
          }
      if (l.type === 'conv2d') p += l.bias ? 2 : 1;
      v = out;
      shape = [py.out, px.out, Co];
    } else if (l.type === 'rnn' || l.type === 'gru' || l.type === 'lstm' || l.type === 'lif') {
      const H = l.units;
      const F = seqF ?? l.inputShape![1];
      const T = v.length / F;
      const W = params[p]!,
        U = l.type === 'lif' ? undefined : params[p + 1]!,
        b = params[l.type === 'lif' ? p + 1 : p + 2]!;
      p += l.type === 'lif' ? 2 : 3;
      const pre = (g: number, j: number, t: number, hh: ArrayLike<number>) => {
        let acc = b[g * H + j]!;
        for (let f = 0; f < F; f++) acc += W[(g * H + j) * F + f]! * v[t * F + f]!;
        if (U) for (let k = 0; k < H; k++) acc += U[(g * H + j) * H + k]! * hh[k]!;
        return acc;
      };
      const sig = (z: number) => 1 / (1 + Math.exp(-z));
      let h = new Float64Array(H),
        c = new Float64Array(H),
        s = new Float64Array(H);
      const outs: Float64Array[] = [];
      for (let t = 0; t < T; t++) {
        const nh = new Float64Array(H);
        if (l.type === 'rnn') for (let j = 0; j < H; j++) nh[j] = Math.tanh(pre(0, j, t, h));
        if (l.type === 'gru') {
          const z = Array.from({ length: H }, (_, j) => sig(pre(0, j, t, h))),
            r = Array.from({ length: H }, (_, j) => sig(pre(1, j, t, h)));
          const rh = h.map((x, k) => r[k]! * x);
          for (let j = 0; j < H; j++) nh[j] = z[j]! * h[j]! + (1 - z[j]!) * Math.tanh(pre(2, j, t, rh));
        }
        if (l.type === 'lstm') {
          const nc = new Float64Array(H);
          for (let j = 0; j < H; j++) {
            const i = sig(pre(0, j, t, h)),
              f = sig(pre(1, j, t, h)),
              g = Math.tanh(pre(2, j, t, h)),
              o = sig(pre(3, j, t, h));
            nc[j] = f * c[j]! + i * g;
            nh[j] = o * Math.tanh(nc[j]!);
          }
          c = nc;
        }
        if (l.type === 'lif') {
          const beta = l.beta ?? 0.9,
            thr = l.threshold ?? 1;
          const ns = new Float64Array(H);
          for (let j = 0; j < H; j++) {
            nh[j] = beta * h[j]! * (1 - s[j]!) + pre(0, j, t, h); // h holds the membrane
            ns[j] = nh[j]! > thr ? 1 : 0;
          }
          s = ns;
        }
        h = nh;
        outs.push(l.type === 'lif' ? s : h);
      }
      v = l.returnSequences ? Float64Array.from(outs.flatMap((o) => Array.from(o))) : Float64Array.from(outs[T - 1]!);
      seqF = l.returnSequences ? H : undefined;
    } else if (l.type === 'graphConv') {
      // Â X Wᵀ + b, Â = D^-1/2 (A + I) D^-1/2 from the edge list
      const N = l.graph.nodes,
        F = v.length / N,
        H = l.units;
      const adj = Array.from({ length: N }, (_, i) => new Set([i]));
      for (const [a, b] of l.graph.edges) (adj[a]!.add(b), adj[b]!.add(a));
      const agg = new Float64Array(N * F);
      for (let i = 0; i < N; i++)
        for (const j of adj[i]!)
          for (let f = 0; f < F; f++) agg[i * F + f]! += v[j * F + f]! / Math.sqrt(adj[i]!.size * adj[j]!.size);
      const W = params[p]!,
        b = params[p + 1]!;
      p += 2;
      const out = new Float64Array(N * H);
      for (let i = 0; i < N; i++)
        for (let h = 0; h < H; h++) {
          let acc = b[h]!;
          for (let f = 0; f < F; f++) acc += W[h * F + f]! * agg[i * F + f]!;
          out[i * H + h] = acc;
        }
      v = out;
      seqF = H;
    } else if (l.type === 'dropout') {
      // inference: the identity
    } else if (l.type === 'batchNorm') {
      // inference: running statistics (given in state.bn, else mean 0, variance 1)
      const C = shape ? shape[2] : (seqF ?? v.length);
      const gain = params[p]!,
        bias = params[p + 1]!;
      p += 2;
      v = v.map((z, i) => (gain[i % C]! * z) / Math.sqrt(1 + 1e-5) + bias[i % C]!);
    } else if (l.type === 'groupNorm') {
      // per group of channels over all positions
      const C = shape ? shape[2] : (seqF ?? v.length),
        Cg = C / l.groups,
        P = v.length / C;
      const gain = params[p]!,
        bias = params[p + 1]!;
      p += 2;
      const out = new Float64Array(v.length);
      for (let g = 0; g < l.groups; g++) {
        const idx: number[] = [];
        for (let q = 0; q < P; q++) for (let c = 0; c < Cg; c++) idx.push(q * C + g * Cg + c);
        const mu = idx.reduce((a, i) => a + v[i]!, 0) / idx.length;
        const vr = idx.reduce((a, i) => a + (v[i]! - mu) ** 2, 0) / idx.length;
        for (const i of idx) out[i] = (gain[i % C]! * (v[i]! - mu)) / Math.sqrt(vr + 1e-5) + bias[i % C]!;
      }
      v = out;
    } else if (l.type === 'layerNorm') {
      const C = shape ? shape[2] : (seqF ?? v.length);
      const gain = params[p]!,
        bias = params[p + 1]!;
      p += 2;
      const out = new Float64Array(v.length);
      for (let q = 0; q < v.length / C; q++) {
        const xs = Array.from(v.subarray(q * C, (q + 1) * C));
        const mu = xs.reduce((a, z) => a + z, 0) / C;
        const vr = xs.reduce((a, z) => a + (z - mu) ** 2, 0) / C;
        for (let c = 0; c < C; c++) out[q * C + c] = (gain[c]! * (xs[c]! - mu)) / Math.sqrt(vr + 1e-5) + bias[c]!;
      }
      v = out;
    } else if (l.type === 'repeat') {
      const F = v.length;
      v = Float64Array.from({ length: l.steps * F }, (_, i) => v[i % F]!);
      seqF = F;
    } else if (l.type === 'timeMean') {
      const F = seqF!,
        T = v.length / F;
      v = Float64Array.from(
        { length: F },
        (_, f) => Array.from({ length: T }, (_, t) => v[t * F + f]!).reduce((a, z) => a + z, 0) / T,
      );
      seqF = undefined;
    } else if (l.type === 'flatten') {
      shape = undefined;
      seqF = undefined;
    } else if (l.type === 'dense') {
      const Wt = params[p]!,
        b = l.bias ? params[p + 1]! : undefined;
      const out = new Float64Array(l.units);
      for (let o = 0; o < l.units; o++) {
        let acc = b ? b[o]! : 0;
        for (let i = 0; i < l.inputs; i++) acc += Wt[o * l.inputs + i]! * v[i]!;
        out[o] = acc;
      }
      p += l.bias ? 2 : 1;
      v = out;
    } else {
      const a = l as of.ActivationLayer;
      v = v.map((z) => activate(a.activation, z, a.activation === 'quantize' ? (a.levels ?? 4) : (a.alpha ?? 0.01)));
    }
  }
  return v;
}

/** Mean softmax cross-entropy over the rows; with several labels per row (positions), each row's loss is the mean over its labeled positions (label -1: none). */
export function meanLoss(
  layers: readonly of.Layer[],
  params: ArrayLike<number>[],
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  rows: number,
): number {
  const cols = x.length / rows,
    P = y.length / rows;
  let sum = 0;
  for (let r = 0; r < rows; r++) {
    const out = forwardRow(layers, params, Array.prototype.slice.call(x, r * cols, (r + 1) * cols));
    const C = out.length / P;
    let row = 0,
      n = 0;
    for (let g = 0; g < P; g++) {
      const label = y[r * P + g]!;
      if (label < 0) continue;
      const o = Array.from(out.subarray(g * C, (g + 1) * C));
      const mx = Math.max(...o);
      row += mx + Math.log(o.reduce((s, z) => s + Math.exp(z - mx), 0)) - o[label]!;
      n++;
    }
    sum += n > 0 ? row / n : 0;
  }
  return sum / rows;
}

/** Central finite differences of meanLoss in float64, per tensor. */
export function finiteDifferences(
  layers: readonly of.Layer[],
  params: ArrayLike<number>[],
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  rows: number,
  h = 1e-6,
): Float64Array[] {
  const p64 = params.map((t) => Float64Array.from(t));
  return p64.map((t) => {
    const g = new Float64Array(t.length);
    for (let i = 0; i < t.length; i++) {
      const v = t[i]!;
      t[i] = v + h;
      const a = meanLoss(layers, p64, x, y, rows);
      t[i] = v - h;
      const b = meanLoss(layers, p64, x, y, rows);
      t[i] = v;
      g[i] = (a - b) / (2 * h);
    }
    return g;
  });
}

// Small spatial models with odd shapes (strides, 'same' and explicit padding, dilation, non-square kernels).
// Flat width of a spatial stack (ends with flatten or globalAvgPool).
export const widthOf = (layers: of.Layer[]) => topology(layers).outputs;

export function configA(): of.Layer[] {
  const spatial: of.Layer[] = [
    of.conv2d({ inputShape: [7, 6, 3], filters: 5, kernel: 3, strides: 2, padding: 'same' }),
    of.relu(),
    of.avgPool2d({ size: 2, strides: 1, padding: 'same' }),
    of.conv2d({ filters: 4, kernel: [2, 3], dilation: [2, 1], padding: [1, 0] }),
    of.tanh(),
    of.maxPool2d({ size: [2, 1] }),
    of.flatten(),
  ];
  return [...spatial, of.dense(widthOf(spatial), 3)];
}
export function configB(): of.Layer[] {
  const spatial: of.Layer[] = [
    of.maxPool2d({ inputShape: [9, 8, 2], size: 3, strides: 2, padding: 'same' }),
    of.conv2d({ filters: 6, kernel: [3, 2], bias: false, strides: [1, 2] }),
    of.sigmoid(),
    of.globalAvgPool(),
  ];
  return [...spatial, of.dense(widthOf(spatial), 4), of.tanh(), of.dense(4, 3)];
}
export function configD(): of.Layer[] {
  // wider shapes for the direct convolution's tiles (kernels/cpu/conv_direct.cpp): 13 output columns (two row
  // blocks), 18 filters (a two-vector strip, the second masked), dilation across (one run per tap), padding beyond
  // the window; 65 filters (two strips and a one-column remainder); 65 input channels give a 260-wide patch
  const spatial: of.Layer[] = [
    of.conv2d({ inputShape: [2, 15, 2], filters: 18, kernel: [2, 3], dilation: [1, 2], padding: [2, 1] }),
    of.tanh(),
    of.conv2d({ filters: 65, kernel: 1, strides: [3, 4], bias: false }),
    of.tanh(),
    of.conv2d({ filters: 2, kernel: 2, padding: 'same' }),
    of.globalAvgPool(),
  ];
  return [...spatial, of.dense(widthOf(spatial), 3)];
}
export function configE(): of.Layer[] {
  // at most 8 channels (two rows a register in conv_direct.cpp, window pairs in the max pools): odd output widths
  // (a last half pair), odd weight-gradient runs (kw C = 9), 5 filters, overlapping pool windows; no dense head and
  // only relu, so every kernel of the model keeps its bits at every SIMD level
  return [
    of.conv2d({ inputShape: [9, 11, 3], filters: 8, kernel: 3, padding: 'same' }),
    of.relu(),
    of.maxPool2d({ size: 2 }),
    of.conv2d({ filters: 5, kernel: 2 }),
    of.relu(),
    of.maxPool2d({ size: [2, 3], strides: 1 }),
    of.conv2d({ filters: 3, kernel: 1 }),
    of.globalAvgPool(),
  ];
}
export function configC(): of.Layer[] {
  // smooth units only: for the ULR check
  const spatial: of.Layer[] = [
    of.conv2d({ inputShape: [6, 5, 2], filters: 3, kernel: 3, padding: 'same' }),
    of.tanh(),
    of.avgPool2d({ size: 2 }),
    of.conv2d({ filters: 4, kernel: 2 }),
    of.tanh(),
    of.flatten(),
  ];
  return [...spatial, of.dense(widthOf(spatial), 3)];
}
