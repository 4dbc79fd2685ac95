/**
 * The contract of a layer kind: what each kind's file tells the rest of lib/ besides its factory. index.ts holds
 * the one table of kinds; topology.ts, the summary and checkpoints read it and never switch on a layer's type.
 */
import type { NativeLayer } from '../native';
import type { Layer } from './index';

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
  /** A block's inner layers (absent for every other kind). */
  inner?(l: L): readonly Layer[];
  /** The summary's label: the kind and the options that change what it computes (defaults left out). */
  label(l: L): string;
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
