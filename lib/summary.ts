/**
 * Model.summary(): a Keras-like table of a layer list, one row per layer (blocks, then their inner layers
 * indented), with each kind's label, the output shapes and parameter counts of `topology` (the native layout of
 * the layers, not of a built model), then the totals. Formatting only: a disposed model still has its summary.
 */
import './layers/index'; // every kind registered
import { type Layer, kindOf } from './layers/kind';
import { topology } from './layers/topology';

const FLOAT32_BYTES = 4;

const count = (n: number): string => n.toLocaleString('en-US');

/** "1.2 KiB": binary units, one decimal above bytes. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = bytes;
  while (v >= 1024 && i < units.length - 1) ((v /= 1024), i++);
  return i === 0 ? `${v} B` : `${v.toFixed(1)} ${units[i]}`;
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
    const kind = kindOf(r.layer.type)!;
    const block = kind.inner !== undefined;
    const first = block ? next : (next += r.tensors) - r.tensors;
    const params = sizes.slice(first, first + r.tensors).reduce((a, b) => a + b, 0);
    let trainable = ''; // blank for layers without parameters, and for blocks (their inner rows say)
    if (!block && r.tensors > 0) {
      const isFrozen = withParams++ < frozen;
      const fixed = isFrozen ? params : (kind.frozenParams?.(r.layer) ?? 0); // an adapter's frozen base
      frozenParams += fixed;
      trainable = isFrozen ? 'frozen' : fixed > 0 ? 'partly' : 'yes';
    }
    index.length = r.depth + 1;
    index[r.depth] = (index[r.depth] ?? -1) + 1;
    return [
      index.join('.'),
      `${'  '.repeat(r.depth)}${kind.label(r.layer)}`,
      `[${r.output.join(', ')}]`,
      count(params),
      trainable,
    ];
  });
  const head = ['#', 'Layer', 'Output shape', 'Params', 'Trainable'];
  const widths = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (cells: string[]) =>
    cells
      .map((v, c) => (c === 3 ? v.padStart(widths[c]!) : v.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  const rule = '─'.repeat(widths.reduce((a, b) => a + b, 0) + 2 * (widths.length - 1));
  const total = sizes.reduce((a, b) => a + b, 0);
  const amount = (n: number) => `${count(n)} (${formatBytes(n * FLOAT32_BYTES)})`;
  const input = topo.inputShape
    ? `[${topo.inputShape.join(', ')}] (${count(topo.inputs)} values per row)`
    : `[${topo.inputs}]`;
  return [
    title,
    `Input: ${input}`,
    rule,
    line(head),
    rule,
    ...rows.map(line),
    rule,
    `Total params: ${amount(total)}`,
    `Trainable params: ${amount(total - frozenParams)}`,
    `Frozen params: ${amount(frozenParams)}`,
  ].join('\n');
}
