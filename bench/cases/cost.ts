// Multiply-adds of one training step of an MLP (widths[0] -> ... -> widths[L]) on B samples: the nominal work the
// benches divide by time. BP = forward + weight gradients + input gradients of all but the first layer. ULR with the
// shared prefix = the first layer's forward and gradient on B rows, later layers' forward and gradient on B K rows
// (docs/method.md 3.5, the cost model). Layer-wise ULR: a clean forward and one gradient GEMM per layer on B rows, and
// group l runs the layers after l on B K rows.
export function stepMacs(
  widths: number[],
  B: number,
  estimator: 'bp' | 'ulr',
  K: number,
  injection: 'all' | 'layerwise' = 'all',
): number {
  const io = widths.slice(0, -1).map((w, l) => w * widths[l + 1]!);
  let macs = 0;
  if (estimator === 'ulr' && injection === 'layerwise') {
    io.forEach((x, l) => (macs += 2 * B * x + B * K * io.slice(l + 1).reduce((a, b) => a + b, 0)));
    return macs;
  }
  io.forEach((x, l) => (macs += estimator === 'bp' ? B * x * (l === 0 ? 2 : 3) : (l === 0 ? B : B * K) * x * 2));
  return macs;
}

// The speed suite's cost model (docs/performance.md, one place for it). A layer with parameters is described by its
// forward FLOPs per sample, the part of them a first noisy layer computes once per sample (the shared prefix: all of
// a dense or conv layer; a GRU's input projections X·Wᵀ only, since its recurrence sees the noisy state), and its
// noise width (pre-activations perturbed per sample copy).
export type NoisyLayer = { name: string; flops: number; sharedFlops: number; noise: number };

export const denseFlops = (I: number, O: number): NoisyLayer => ({
  name: `dense ${I}→${O}`,
  flops: 2 * I * O,
  sharedFlops: 2 * I * O,
  noise: O,
});

// Conv kh × kw over C channels to Co channels at output size Ho × Wo: 2·Ho·Wo·Co·kh·kw·C.
export function convFlops(Ho: number, Wo: number, C: number, Co: number, k: number): NoisyLayer {
  const f = 2 * Ho * Wo * Co * k * k * C;
  return { name: `conv ${C}→${Co} ${k}×${k} at ${Ho}×${Wo}`, flops: f, sharedFlops: f, noise: Ho * Wo * Co };
}

// GRU of H units over T steps of F features: 3 gates, each x_t·W (F inputs) and h·U (H inputs): 2·T·3H·(F + H).
export function gruFlops(T: number, F: number, H: number): NoisyLayer {
  return {
    name: `gru ${H} over ${T}×${F}`,
    flops: 2 * T * 3 * H * (F + H),
    sharedFlops: 2 * T * 3 * H * F,
    noise: T * 3 * H,
  };
}

/** A BP step: forward, input gradient and weight gradient, each about one forward. */
export const BP_STEP_OVER_FORWARD = 3;

// ulr-bf16: ULR with the copies' products in bfloat16 (the same FLOPs as ulr).
export type SpeedEstimator = 'bp' | 'ulr' | 'ulr-bf16' | 'ulr-layerwise';

/**
 * FLOPs and normals of one training step on B samples with K copies. ULR ('all'): the first noisy layer's shared
 * part forward once per sample, everything else on B·K rows; each layer's LR reduction grad W = (1/σ)(diag(w)E)ᵀA costs
 * its forward again over the same rows (the first layer's over B rows: its E is summed over the copies first).
 * Layer-wise: a clean forward on B rows, then per layer l a group of B·K rows with only l perturbed, running the
 * layers after l (and l's non-shared part) and reducing l alone. Normals: B·K per noise value in either.
 */
export function stepCost(
  layers: NoisyLayer[],
  B: number,
  estimator: SpeedEstimator,
  K: number,
): { flops: number; normals: number } {
  const sum = (ls: NoisyLayer[]) => ls.reduce((a, l) => a + l.flops, 0);
  const normals = estimator === 'bp' ? 0 : B * K * layers.reduce((a, l) => a + l.noise, 0);
  if (estimator === 'bp') return { flops: BP_STEP_OVER_FORWARD * B * sum(layers), normals };
  // one noisy layer given a clean input: its shared part on B rows, the rest on B·K rows
  const firstNoisy = (l: NoisyLayer) => B * l.sharedFlops + B * K * (l.flops - l.sharedFlops);
  if (estimator === 'ulr' || estimator === 'ulr-bf16') {
    const [first, ...later] = layers;
    return { flops: 2 * (firstNoisy(first!) + B * K * sum(later)), normals };
  }
  const groups = layers.map((l, i) => 2 * firstNoisy(l) - B * l.sharedFlops + B * K * sum(layers.slice(i + 1)));
  return { flops: B * sum(layers) + groups.reduce((a, b) => a + b, 0), normals };
}
