/**
 * Model.summary(): a Keras-like table of a layer list, one row per layer (blocks, then their inner layers
 * indented), with output shapes and parameter counts from `topology` (the one shape walk of lib/), then the
 * totals. Pure formatting: it reads the layers and the frozen count, never the native model.
 */
import { type Layer, topology } from './layers';

const FLOAT32_BYTES = 4;

const count = (n: number): string => n.toLocaleString('en-US');
const pair = (p: [number, number]): string => `${p[0]}×${p[1]}`;

/** "1.2 KiB": binary units, one decimal above bytes. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < units.length - 1) v /= 1024, i++;
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
}

// The kind and the options that change what a layer computes; defaults are left out.
function describe(l: Layer): string {
  const name = l.type === 'activation' ? l.activation : l.type;
  const args = (...a: (string | false | undefined)[]) => {
    const kept = a.filter((x): x is string => !!x);
    return kept.length ? `${name}(${kept.join(', ')})` : name;
  };
  const padding = (p: 'valid' | 'same' | [number, number]) => (p === 'valid' ? undefined : p === 'same' ? 'same' : `pad ${pair(p)}`);
  const weights = (w: string | undefined) => w && `${w} weights`;
  switch (l.type) {
    case 'dense': return args(`${l.inputs}→${l.units}`, !l.bias && 'no bias', weights(l.weights));
    case 'activation': return args(l.alpha !== undefined && `α=${l.alpha}`, l.levels !== undefined && `${l.levels} levels`);
    case 'conv2d':
      return args(`${l.filters} filters`, pair(l.kernel), (l.strides[0] !== 1 || l.strides[1] !== 1) && `stride ${pair(l.strides)}`, padding(l.padding),
        (l.dilation[0] !== 1 || l.dilation[1] !== 1) && `dilation ${pair(l.dilation)}`, !l.bias && 'no bias', weights(l.weights));
    case 'maxPool2d':
    case 'avgPool2d':
      return args(pair(l.kernel), (l.strides[0] !== l.kernel[0] || l.strides[1] !== l.kernel[1]) && `stride ${pair(l.strides)}`, padding(l.padding));
    case 'rnn':
    case 'gru':
    case 'lstm':
    case 'lif':
      return args(`${l.units} units`, l.returnSequences && 'sequences', l.beta !== undefined && `β=${l.beta}`, l.threshold !== undefined && `threshold ${l.threshold}`);
    case 'repeat': return args(`${l.steps} steps`);
    case 'graphConv': return args(`${l.units} units`, `${l.graph.nodes} nodes`, `${l.graph.edges.length} edges`);
    case 'residual':
    case 'concat': return args(`${l.layers.length} layers`);
    case 'dropout': return args(`${l.rate}`);
    case 'groupNorm': return args(`${l.groups} groups`);
    default: return l.type;
  }
}

/**
 * The summary table of a layer list whose first `frozen` layers with parameters are frozen. `title` is the first
 * line (the model's loss, backend, ...).
 * @internal
 */
export function summarize(layers: readonly Layer[], frozen: number, title: string): string {
  const topo = topology(layers);
  const sizes = topo.tensors.map((t) => t.shape.reduce((a, b) => a * b, 1));
  // Each row's parameter count from its span of tensors (a block's span covers its inner layers).
  let next = 0;
  let withParams = 0;
  let frozenParams = 0;
  const index: number[] = [];
  const rows = topo.perLayer.map((r) => {
    const block = r.layer.type === 'residual' || r.layer.type === 'concat';
    const first = block ? next : (next += r.tensors) - r.tensors;
    const params = sizes.slice(first, first + r.tensors).reduce((a, b) => a + b, 0);
    let trainable = '';  // blank for layers without parameters, and for blocks (their inner rows say)
    if (!block && r.tensors > 0) {
      const isFrozen = withParams++ < frozen;
      if (isFrozen) frozenParams += params;
      trainable = isFrozen ? 'frozen' : 'yes';
    }
    index.length = r.depth + 1;
    index[r.depth] = (index[r.depth] ?? -1) + 1;
    return [index.join('.'), `${'  '.repeat(r.depth)}${describe(r.layer)}`, `[${r.output.join(', ')}]`, count(params), trainable];
  });
  const head = ['#', 'Layer', 'Output shape', 'Params', 'Trainable'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) => cells.map((v, c) => (c === 3 ? v.padStart(widths[c]!) : v.padEnd(widths[c]!))).join('  ').trimEnd();
  const rule = '─'.repeat(widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  const amount = (n: number) => `${count(n)} (${formatBytes(n * FLOAT32_BYTES)})`;
  const input = topo.inputShape ? `[${topo.inputShape.join(', ')}] (${count(topo.inputs)} values per row)` : `[${topo.inputs}]`;
  return [
    title,
    `Input: ${input}`,
    rule, line(head), rule, ...rows.map(line), rule,
    `Total params: ${amount(total)}`,
    `Trainable params: ${amount(total - frozenParams)}`,
    `Frozen params: ${amount(frozenParams)}`,
  ].join('\n');
}
