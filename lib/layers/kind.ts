/**
 * The contract of a layer kind, and the table of kinds. Each kind's file holds its factory, its types and its
 * LayerKind, adds its layer types to `LayerTypes` (declaration merging) and registers itself here; topology.ts, the
 * summary and checkpoints read the table and never switch on a layer's type.
 */
import type { NativeLayer } from '../native';
import type { AdapterOptions } from './dense';

/** Every layer type, by its `type` name: each kind's file adds its own (`declare module './kind'`). */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type -- filled by declaration merging
export interface LayerTypes {}

/** Any layer. */
export type Layer = LayerTypes[keyof LayerTypes];

/** @internal */
export type LayerKind<L extends Layer> = {
  /** The layer as the native spec takes it; `inner` converts a block's layers. */
  toNative(l: L, inner: (layers: readonly Layer[]) => NativeLayer[]): NativeLayer[];
  /** The input shape the layer declares, if any: [inputs] (flat), [H, W, C] or [steps, features]. */
  declared(l: L): readonly number[] | undefined;
  /** Whether a declared [F] also accepts a sequence [steps, F]: the layer then acts per position (dense). */
  perPosition?: true;
  /**
   * Why a model cannot start with this layer when it declares no input shape. Absent: it always declares one, or
   * (flatten) it needs none and passes a flat input on unchanged.
   */
  first?: string;
  /** The layers with parameters it makes, as freeze() and per-layer ULR options count them (absent: 1). */
  parameterLayers?: number;
  /** A block's inner layers (absent for every other kind). */
  inner?(l: L): readonly Layer[];
  /** The summary's label: the kind and the options that change what it computes (defaults left out). */
  label(l: L): string;
  /**
   * Marks the layer frozen or trainable in its own description (it then goes into checkpoints), where the kind
   * carries such a flag. Model.freeze uses it when every layer with parameters has one.
   */
  setTrainable?(l: L, trainable: boolean): void;
  /** Parameters of the layer that never train while the rest does (a dense layer's base under an adapter). */
  frozenParams?(l: L): number;
  /** The layer with a low-rank adapter, where the kind takes one (dense): what withAdapters() makes of it. */
  withAdapter?(l: L, adapter: AdapterOptions): L;
  /** A checkpoint's copy of the layer, rebuilt by its public factory (which throws on whatever it would refuse). */
  revive(stored: Record<string, unknown>, inner: (layers: unknown) => Layer[]): L;
};

/** @internal "conv2d(8 filters, 3×3)": a name and the parts given (falsy parts left out). */
export function label(name: string, ...parts: (string | false | undefined)[]): string {
  const kept = parts.filter((x): x is string => !!x);
  return kept.length ? `${name}(${kept.join(', ')})` : name;
}

/** @internal The stored fields among `keys` that are present, as a factory's options. */
export function present(stored: Record<string, unknown>, keys: readonly string[]): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  for (const k of keys) if (stored[k] !== undefined) o[k] = stored[k];
  return o;
}

/** @internal A layer that declares no input shape and is its own native spec. */
export const noDeclaredInput = (): undefined => undefined;

const KINDS = new Map<string, LayerKind<Layer>>();

/** @internal Adds a kind to the table under its layer types (each kind's file calls it once). */
export function registerKind<T extends keyof LayerTypes>(types: readonly T[], kind: LayerKind<LayerTypes[T]>): void {
  for (const t of types) KINDS.set(t, kind as unknown as LayerKind<Layer>);
}

/** @internal The kind of a layer `type`, or undefined for anything else (never a prototype key). */
export function kindOf(type: unknown): LayerKind<Layer> | undefined {
  return typeof type === 'string' ? KINDS.get(type) : undefined;
}
