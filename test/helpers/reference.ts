// Test oracle: a plain float64 reference MLP (forward, losses, exact backprop,
// finite differences, noisy forward, smoothed gradient and the likelihood-ratio
// (ULR) gradient estimator), plus tiny deterministic PRNGs (erf/erfc: ./erf).
// Written for clarity, not speed; every loop is the textbook formula.
import { erf } from './erf';

export { erf, erfc } from './erf';

export type Activation = 'identity' | 'relu' | 'leakyRelu' | 'tanh' | 'sigmoid' | 'gelu' | 'step' | 'sign' | 'quantize';
export type LossKind = 'crossEntropy' | 'mse';
export type RefLayer =
  | { kind: 'dense'; W: Float64Array; b: Float64Array; I: number; O: number }
  | { kind: 'act'; act: Activation; alpha?: number };
export type RefModel = { layers: RefLayer[]; loss: LossKind };
export type LayerSpec = { kind: 'dense'; I: number; O: number } | { kind: 'act'; act: Activation; alpha?: number };

type DenseLayer = Extract<RefLayer, { kind: 'dense' }>;
type ActLayer = Extract<RefLayer, { kind: 'act' }>;

// ---------------------------------------------------------------------------
// Activations
// ---------------------------------------------------------------------------

function leakyAlpha(l: ActLayer): number {
  return l.alpha ?? 0.01;
}

export function activate(act: Activation, v: number, alpha = 0.01): number {
  switch (act) {
    case 'identity':
      return v;
    case 'relu':
      return v > 0 ? v : 0;
    case 'leakyRelu':
      return v > 0 ? v : alpha * v;
    case 'tanh':
      return Math.tanh(v);
    case 'sigmoid':
      return 1 / (1 + Math.exp(-v));
    case 'gelu':
      return 0.5 * v * (1 + erf(v / Math.SQRT2));
    case 'step':
      return v > 0 ? 1 : 0;
    case 'sign':
      return v > 0 ? 1 : v < 0 ? -1 : 0;
    case 'quantize': {
      // alpha carries the levels here
      const top = (alpha >= 2 ? alpha : 4) - 1;
      return Math.round(Math.min(1, Math.max(0, v)) * top) / top;
    }
  }
}

/** d act(v) / dv. Throws for step/sign (zero almost everywhere, not a useful gradient). */
export function activateDerivative(act: Activation, v: number, alpha = 0.01): number {
  switch (act) {
    case 'identity':
      return 1;
    case 'relu':
      return v > 0 ? 1 : 0;
    case 'leakyRelu':
      return v > 0 ? 1 : alpha;
    case 'tanh': {
      const t = Math.tanh(v);
      return 1 - t * t;
    }
    case 'sigmoid': {
      const s = 1 / (1 + Math.exp(-v));
      return s * (1 - s);
    }
    case 'gelu': {
      const Phi = 0.5 * (1 + erf(v / Math.SQRT2));
      const phi = Math.exp(-0.5 * v * v) / Math.sqrt(2 * Math.PI);
      return Phi + v * phi;
    }
    case 'step':
    case 'sign':
    case 'quantize':
      throw new Error(`backprop: activation '${act}' has no usable derivative`);
  }
}

// ---------------------------------------------------------------------------
// Model construction and parameter access
// ---------------------------------------------------------------------------

/** Build a float64 model; params = [W0, b0, W1, b1, ...] in dense-layer order, W (O, I) row-major. */
export function fromParams(spec: LayerSpec[], params: ArrayLike<number>[], loss: LossKind): RefModel {
  const layers: RefLayer[] = [];
  let p = 0;
  for (const s of spec) {
    if (s.kind === 'dense') {
      const Wsrc = params[p];
      const bsrc = params[p + 1];
      if (Wsrc === undefined || bsrc === undefined)
        throw new Error(`fromParams: missing params for dense layer ${p / 2}`);
      if (Wsrc.length !== s.O * s.I)
        throw new Error(`fromParams: W${p / 2} has length ${Wsrc.length}, want ${s.O}*${s.I}`);
      if (bsrc.length !== s.O) throw new Error(`fromParams: b${p / 2} has length ${bsrc.length}, want ${s.O}`);
      layers.push({ kind: 'dense', W: Float64Array.from(Wsrc), b: Float64Array.from(bsrc), I: s.I, O: s.O });
      p += 2;
    } else {
      const l: ActLayer = { kind: 'act', act: s.act };
      if (s.alpha !== undefined) l.alpha = s.alpha;
      layers.push(l);
    }
  }
  if (p !== params.length) throw new Error(`fromParams: got ${params.length} params, spec uses ${p}`);
  return { layers, loss };
}

/** References (not copies) to the model's parameters, [W0, b0, W1, b1, ...]. */
export function paramsOf(m: RefModel): Float64Array[] {
  const out: Float64Array[] = [];
  for (const l of m.layers) if (l.kind === 'dense') out.push(l.W, l.b);
  return out;
}

/** Deep copy of a model. */
export function cloneModel(m: RefModel): RefModel {
  const layers: RefLayer[] = m.layers.map((l): RefLayer =>
    l.kind === 'dense'
      ? { kind: 'dense', W: Float64Array.from(l.W), b: Float64Array.from(l.b), I: l.I, O: l.O }
      : { ...l },
  );
  return { layers, loss: m.loss };
}

function denseLayers(m: RefModel): DenseLayer[] {
  return m.layers.filter((l): l is DenseLayer => l.kind === 'dense');
}

function inputWidth(m: RefModel): number {
  const d = denseLayers(m);
  if (d.length === 0) throw new Error('model has no dense layer');
  return d[0]!.I;
}

/** Number of output columns C (O of the last dense layer). */
export function outputWidth(m: RefModel): number {
  const d = denseLayers(m);
  if (d.length === 0) throw new Error('model has no dense layer');
  return d[d.length - 1]!.O;
}

// ---------------------------------------------------------------------------
// Forward pass (optionally with additive pre-activation noise), keeping a trace
// ---------------------------------------------------------------------------

type NoiseFn = (layer: number, row: number, unit: number) => number;

type Trace = {
  /** layerInputs[i] = input to m.layers[i] (rows x width); layerInputs[layers.length] = output */
  layerInputs: Float64Array[];
  /** per dense layer d: input (rows x I) and (noisy) pre-activation (rows x O) */
  denseInputs: Float64Array[];
  densePre: Float64Array[];
  rows: number;
};

function runForward(m: RefModel, x: ArrayLike<number>, rows: number, sigma?: number[], noise?: NoiseFn): Trace {
  let width = inputWidth(m);
  if (x.length !== rows * width) throw new Error(`forward: x has length ${x.length}, want ${rows}*${width}`);
  if (sigma !== undefined && sigma.length !== denseLayers(m).length) {
    throw new Error(`noisy forward: sigma has length ${sigma.length}, model has ${denseLayers(m).length} dense layers`);
  }
  let h = Float64Array.from(x);
  const layerInputs: Float64Array[] = [];
  const denseInputs: Float64Array[] = [];
  const densePre: Float64Array[] = [];
  let d = 0;
  for (const l of m.layers) {
    layerInputs.push(h);
    if (l.kind === 'dense') {
      if (l.I !== width) throw new Error(`forward: dense layer ${d} expects ${l.I} inputs, got ${width}`);
      const v = new Float64Array(rows * l.O);
      for (let r = 0; r < rows; r++) {
        for (let o = 0; o < l.O; o++) {
          let s = l.b[o]!;
          for (let i = 0; i < l.I; i++) s += h[r * l.I + i]! * l.W[o * l.I + i]!;
          if (sigma !== undefined && noise !== undefined) s += sigma[d]! * noise(d, r, o);
          v[r * l.O + o] = s;
        }
      }
      denseInputs.push(h);
      densePre.push(v);
      h = v;
      width = l.O;
      d++;
    } else {
      const a = leakyAlpha(l);
      const out = new Float64Array(h.length);
      for (let j = 0; j < h.length; j++) out[j] = activate(l.act, h[j]!, a);
      h = out;
    }
  }
  layerInputs.push(h);
  return { layerInputs, denseInputs, densePre, rows };
}

/** Clean forward; returns rows x C outputs. */
export function forward(m: RefModel, x: ArrayLike<number>, rows: number): Float64Array {
  const t = runForward(m, x, rows);
  return t.layerInputs[t.layerInputs.length - 1]!;
}

/**
 * Forward with pre-activation noise: after dense layer d, v += sigma[d] * noise(d, row, unit),
 * before the following activation(s). Returns the output, the noisy pre-activations of each
 * dense layer, and the input of each dense layer.
 */
export function noisyForward(
  m: RefModel,
  x: ArrayLike<number>,
  rows: number,
  sigma: number[],
  noise: NoiseFn,
): { out: Float64Array; pre: Float64Array[]; inputs: Float64Array[] } {
  const t = runForward(m, x, rows, sigma, noise);
  return { out: t.layerInputs[t.layerInputs.length - 1]!, pre: t.densePre, inputs: t.denseInputs };
}

// ---------------------------------------------------------------------------
// Losses
// ---------------------------------------------------------------------------

/** Per-row losses. y: int labels (length rows) for crossEntropy, rows*C floats for mse. */
export function rowLosses(m: RefModel, out: Float64Array, rows: number, y: ArrayLike<number>): Float64Array {
  const C = outputWidth(m);
  if (out.length !== rows * C) throw new Error(`rowLosses: out has length ${out.length}, want ${rows}*${C}`);
  const L = new Float64Array(rows);
  if (m.loss === 'crossEntropy') {
    if (y.length !== rows) throw new Error(`rowLosses: ${y.length} labels for ${rows} rows`);
    for (let r = 0; r < rows; r++) {
      const t = y[r]!;
      if (!Number.isInteger(t) || t < 0 || t >= C) throw new Error(`rowLosses: bad label ${t} at row ${r}`);
      let mx = -Infinity;
      for (let c = 0; c < C; c++) mx = Math.max(mx, out[r * C + c]!);
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(out[r * C + c]! - mx);
      // -log softmax(y)[t] = log(sum exp(y - mx)) - (y_t - mx)
      L[r] = Math.log(s) - (out[r * C + t]! - mx);
    }
  } else {
    if (y.length !== rows * C) throw new Error(`rowLosses: mse target has length ${y.length}, want ${rows}*${C}`);
    for (let r = 0; r < rows; r++) {
      let s = 0;
      for (let c = 0; c < C; c++) {
        const e = out[r * C + c]! - y[r * C + c]!;
        s += e * e;
      }
      L[r] = s / C;
    }
  }
  return L;
}

function meanOf(xs: Float64Array): number {
  let s = 0;
  for (let i = 0; i < xs.length; i++) s += xs[i]!;
  return s / xs.length;
}

/** Mean loss over the rows of a clean forward. */
export function loss(m: RefModel, x: ArrayLike<number>, rows: number, y: ArrayLike<number>): number {
  return meanOf(rowLosses(m, forward(m, x, rows), rows, y));
}

/** d(mean loss)/d(out), rows x C. */
function lossGradient(m: RefModel, out: Float64Array, rows: number, y: ArrayLike<number>): Float64Array {
  const C = outputWidth(m);
  const g = new Float64Array(rows * C);
  if (m.loss === 'crossEntropy') {
    for (let r = 0; r < rows; r++) {
      const t = y[r]!;
      let mx = -Infinity;
      for (let c = 0; c < C; c++) mx = Math.max(mx, out[r * C + c]!);
      let s = 0;
      for (let c = 0; c < C; c++) s += Math.exp(out[r * C + c]! - mx);
      for (let c = 0; c < C; c++) {
        const p = Math.exp(out[r * C + c]! - mx) / s;
        g[r * C + c] = (p - (c === t ? 1 : 0)) / rows;
      }
    }
  } else {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < C; c++) g[r * C + c] = (2 * (out[r * C + c]! - y[r * C + c]!)) / (C * rows);
    }
  }
  return g;
}

// ---------------------------------------------------------------------------
// Backpropagation
// ---------------------------------------------------------------------------

/** Backward pass through a recorded trace; additive noise does not change any formula. */
function backwardFromTrace(m: RefModel, t: Trace, y: ArrayLike<number>): Float64Array[] {
  const rows = t.rows;
  const out = t.layerInputs[t.layerInputs.length - 1]!;
  let g = lossGradient(m, out, rows, y); // d loss / d (output of current layer)
  const grads: Float64Array[] = [];
  for (const l of m.layers) if (l.kind === 'dense') grads.push(new Float64Array(l.O * l.I), new Float64Array(l.O));
  let d = denseLayers(m).length - 1;
  for (let li = m.layers.length - 1; li >= 0; li--) {
    const l = m.layers[li]!;
    const h = t.layerInputs[li]!; // input to this layer
    if (l.kind === 'act') {
      const a = leakyAlpha(l);
      const gin = new Float64Array(g.length);
      for (let j = 0; j < g.length; j++) gin[j] = g[j]! * activateDerivative(l.act, h[j]!, a);
      g = gin;
    } else {
      const gW = grads[2 * d]!;
      const gb = grads[2 * d + 1]!;
      const gin = new Float64Array(rows * l.I);
      for (let r = 0; r < rows; r++) {
        for (let o = 0; o < l.O; o++) {
          const go = g[r * l.O + o]!;
          gb[o] = gb[o]! + go;
          for (let i = 0; i < l.I; i++) {
            gW[o * l.I + i] = gW[o * l.I + i]! + go * h[r * l.I + i]!;
            gin[r * l.I + i] = gin[r * l.I + i]! + go * l.W[o * l.I + i]!;
          }
        }
      }
      g = gin;
      d--;
    }
  }
  return grads;
}

/** Exact gradient of the mean batch loss w.r.t. [W0, b0, W1, b1, ...]. Throws for step/sign. */
export function backprop(m: RefModel, x: ArrayLike<number>, rows: number, y: ArrayLike<number>): Float64Array[] {
  for (const l of m.layers) {
    if (l.kind === 'act' && (l.act === 'step' || l.act === 'sign')) {
      throw new Error(`backprop: activation '${l.act}' is not differentiable`);
    }
  }
  return backwardFromTrace(m, runForward(m, x, rows), y);
}

/**
 * Central differences (loss(p+eps) - loss(p-eps)) / (2 eps) per parameter coordinate.
 * If indices is given, indices[p] lists the coordinates of parameter p to compute
 * (a missing entry means none); all other coordinates are left 0.
 */
export function finiteDifferences(
  m: RefModel,
  x: ArrayLike<number>,
  rows: number,
  y: ArrayLike<number>,
  eps = 1e-3,
  indices?: number[][],
): Float64Array[] {
  const work = cloneModel(m);
  const params = paramsOf(work);
  const grads = params.map((p) => new Float64Array(p.length));
  for (let p = 0; p < params.length; p++) {
    const P = params[p]!;
    const which: number[] = indices !== undefined ? (indices[p] ?? []) : Array.from({ length: P.length }, (_, j) => j);
    for (const j of which) {
      if (j < 0 || j >= P.length) throw new Error(`finiteDifferences: index ${j} out of range for param ${p}`);
      const saved = P[j]!;
      P[j] = saved + eps;
      const lp = loss(work, x, rows, y);
      P[j] = saved - eps;
      const lm = loss(work, x, rows, y);
      P[j] = saved;
      grads[p]![j] = (lp - lm) / (2 * eps);
    }
  }
  return grads;
}

// ---------------------------------------------------------------------------
// Noise-based gradients
// ---------------------------------------------------------------------------

/**
 * Monte-Carlo gradient of E_eps[mean loss(noisy forward)]: the average over `samples`
 * draws of exact backprop through the noisy forward with the noise held fixed.
 * Draws come in antithetic pairs (eps, -eps); samples must be even.
 * Noise is drawn in order: dense layer d, row r, unit o.
 */
export function smoothedGradient(
  m: RefModel,
  x: ArrayLike<number>,
  rows: number,
  y: ArrayLike<number>,
  sigma: number[],
  samples: number,
  normal: () => number,
): Float64Array[] {
  if (!Number.isInteger(samples) || samples <= 0 || samples % 2 !== 0) {
    throw new Error(`smoothedGradient: samples must be a positive even integer, got ${samples}`);
  }
  for (const l of m.layers) {
    if (l.kind === 'act' && (l.act === 'step' || l.act === 'sign')) {
      throw new Error(`smoothedGradient: activation '${l.act}' is not differentiable`);
    }
  }
  const dense = denseLayers(m);
  const acc = paramsOf(m).map((p) => new Float64Array(p.length));
  for (let s = 0; s < samples / 2; s++) {
    const eps: Float64Array[] = dense.map((l) => {
      const e = new Float64Array(rows * l.O);
      for (let j = 0; j < e.length; j++) e[j] = normal();
      return e;
    });
    for (const sgn of [1, -1]) {
      const noise: NoiseFn = (d, r, o) => sgn * eps[d]![r * dense[d]!.O + o]!;
      const g = backwardFromTrace(m, runForward(m, x, rows, sigma, noise), y);
      for (let p = 0; p < acc.length; p++) {
        const a = acc[p]!;
        const gp = g[p]!;
        for (let j = 0; j < a.length; j++) a[j] = a[j]! + gp[j]!;
      }
    }
  }
  for (const a of acc) for (let j = 0; j < a.length; j++) a[j] = a[j]! / samples;
  return acc;
}

/**
 * Likelihood-ratio (ULR) gradient estimator. Every row r is run as K noisy copies k;
 * eps[d][r][k][unit] ~ N(0,1) drawn from normal() in order (d, r, k, unit), except that
 * with antithetic=true an odd copy k reuses -eps of copy k-1.
 *   l[r,k]    = per-row loss of the noisy output of copy (r,k)
 *   beta[r,k] = mean_{j != k} l[r,j]  ('loo'; with antithetic pairs j also != partner of k,
 *   since the partner's loss depends on -eps_k)  or 0  ('none')
 *   w[r,k]    = (l[r,k] - beta[r,k]) / (rows*K)
 *   grad W_d  = sum_{r,k} w[r,k]/sigma[d] * eps[d][r][k] (outer) input_d[r,k]
 *   grad b_d  = sum_{r,k} w[r,k]/sigma[d] * eps[d][r][k]
 * Every sigma[d] must be > 0. Returns [W0, b0, W1, b1, ...].
 */
export function lrGradient(
  m: RefModel,
  x: ArrayLike<number>,
  rows: number,
  y: ArrayLike<number>,
  sigma: number[],
  K: number,
  normal: () => number,
  opts: { antithetic: boolean; baseline: 'loo' | 'none' },
): Float64Array[] {
  const dense = denseLayers(m);
  const D = dense.length;
  if (sigma.length !== D) throw new Error(`lrGradient: sigma has length ${sigma.length}, model has ${D} dense layers`);
  for (let d = 0; d < D; d++)
    if (!(sigma[d]! > 0)) throw new Error(`lrGradient: sigma[${d}] = ${sigma[d]} must be > 0`);
  if (!Number.isInteger(K) || K < 1) throw new Error(`lrGradient: K must be a positive integer, got ${K}`);
  if (opts.baseline === 'loo' && K < 2) throw new Error('lrGradient: leave-one-out baseline needs K >= 2');

  const I0 = inputWidth(m);
  const C = outputWidth(m);
  const N = rows * K; // expanded batch, copy (r,k) is expanded row r*K + k

  // eps[d] is (N x O_d), expanded row n = r*K + k
  const eps: Float64Array[] = dense.map((l) => new Float64Array(N * l.O));
  for (let d = 0; d < D; d++) {
    const O = dense[d]!.O;
    const e = eps[d]!;
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < K; k++) {
        const n = r * K + k;
        for (let o = 0; o < O; o++) {
          e[n * O + o] = opts.antithetic && k % 2 === 1 ? -e[(n - 1) * O + o]! : normal();
        }
      }
    }
  }

  // replicate inputs and targets
  const xe = new Float64Array(N * I0);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < K; k++) {
      for (let i = 0; i < I0; i++) xe[(r * K + k) * I0 + i] = x[r * I0 + i]!;
    }
  }
  const ycols = m.loss === 'crossEntropy' ? 1 : C;
  if (y.length !== rows * ycols) throw new Error(`lrGradient: y has length ${y.length}, want ${rows}*${ycols}`);
  const ye = new Float64Array(N * ycols);
  for (let r = 0; r < rows; r++) {
    for (let k = 0; k < K; k++) {
      for (let c = 0; c < ycols; c++) ye[(r * K + k) * ycols + c] = y[r * ycols + c]!;
    }
  }

  const noise: NoiseFn = (d, n, o) => eps[d]![n * dense[d]!.O + o]!;
  const nf = noisyForward(m, xe, N, sigma, noise);
  const l = rowLosses(m, nf.out, N, ye);

  const w = new Float64Array(N);
  for (let r = 0; r < rows; r++) {
    let total = 0;
    for (let k = 0; k < K; k++) total += l[r * K + k]!;
    for (let k = 0; k < K; k++) {
      const n = r * K + k;
      const partner = n ^ 1;
      const beta =
        opts.baseline !== 'loo'
          ? 0
          : !opts.antithetic
            ? (total - l[n]!) / (K - 1)
            : K > 2
              ? (total - l[n]! - l[partner]!) / (K - 2)
              : 0;
      w[n] = (l[n]! - beta) / N;
    }
  }

  const grads: Float64Array[] = [];
  for (let d = 0; d < D; d++) {
    const { I, O } = dense[d]!;
    const input = nf.inputs[d]!;
    const e = eps[d]!;
    const gW = new Float64Array(O * I);
    const gb = new Float64Array(O);
    for (let n = 0; n < N; n++) {
      const c = w[n]! / sigma[d]!;
      for (let o = 0; o < O; o++) {
        const ce = c * e[n * O + o]!;
        gb[o] = gb[o]! + ce;
        for (let i = 0; i < I; i++) gW[o * I + i] = gW[o * I + i]! + ce * input[n * I + i]!;
      }
    }
    grads.push(gW, gb);
  }
  return grads;
}

// ---------------------------------------------------------------------------
// Deterministic random numbers for tests
// ---------------------------------------------------------------------------

/** mulberry32: uniform in [0, 1) with 2^-32 resolution, deterministic in seed. */
export function mulberry(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal via Box-Muller on mulberry(seed); both values of each pair are used. */
export function gaussian(seed: number): () => number {
  const u = mulberry(seed);
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u1 = 1 - u(); // in (0, 1], so log is finite
    const u2 = u();
    const rad = Math.sqrt(-2 * Math.log(u1));
    spare = rad * Math.sin(2 * Math.PI * u2);
    return rad * Math.cos(2 * Math.PI * u2);
  };
}
