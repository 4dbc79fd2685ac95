// Multiply-adds of one training step of an MLP (widths[0] -> ... -> widths[L]) on B samples: the nominal work the
// benches divide by time. BP = forward + weight gradients + input gradients of all but the first layer. ULR with the
// shared prefix = the first layer's forward and gradient on B rows, later layers' forward and gradient on B K rows
// (docs/method.md 3.5, the cost model). Layer-wise ULR: a clean forward and one gradient GEMM per layer on B rows, and
// group l runs the layers after l on B K rows.
export function stepMacs(widths: number[], B: number, estimator: 'bp' | 'ulr', K: number, injection: 'all' | 'layerwise' = 'all'): number {
  const io = widths.slice(0, -1).map((w, l) => w * widths[l + 1]!);
  let macs = 0;
  if (estimator === 'ulr' && injection === 'layerwise') {
    io.forEach((x, l) => (macs += 2 * B * x + B * K * io.slice(l + 1).reduce((a, b) => a + b, 0)));
    return macs;
  }
  io.forEach((x, l) => (macs += estimator === 'bp' ? B * x * (l === 0 ? 2 : 3) : (l === 0 ? B : B * K) * x * 2));
  return macs;
}
