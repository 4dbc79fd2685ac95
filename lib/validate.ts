/**
 * Argument checks used by every public entry point: `is.*` predicates and one message shape
 * (sharp's is.mjs): "Expected positive integer for units but received 0 of type number".
 */
import { types } from 'util';
import { ConfigError, DataError } from './errors';

/** @internal */
export const is = {
  defined: (v: unknown): boolean => v !== undefined && v !== null,
  number: (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v),
  integer: (v: unknown): v is number => Number.isInteger(v),
  positiveInteger: (v: unknown): v is number => Number.isInteger(v) && (v as number) > 0,
  positive: (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v > 0,
  bool: (v: unknown): v is boolean => typeof v === 'boolean',
  string: (v: unknown): v is string => typeof v === 'string',
  fn: (v: unknown): v is (...args: never[]) => unknown => typeof v === 'function',
  // util.types sees through nothing: a Proxy of a typed array is refused (the native side could not read it).
  float32Array: (v: unknown): v is Float32Array => types.isFloat32Array(v),
  int32Array: (v: unknown): v is Int32Array => types.isInt32Array(v),
  map: (v: unknown): v is Map<unknown, unknown> => types.isMap(v),
  plainObject: (v: unknown): v is Record<string, unknown> =>
    typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype,
  inRange: (v: number, lo: number, hi: number): boolean => v >= lo && v <= hi,
};

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (typeof v === 'symbol') return `${v.toString()} of type symbol`;
  if (typeof v === 'function') return 'a function';
  if (types.isProxy(v)) return 'a Proxy';
  if (typeof v === 'string') return `"${v.length > 40 ? v.slice(0, 40) + '…' : v}" of type string`;
  if (ArrayBuffer.isView(v)) return `a ${v.constructor.name}`;
  if (Array.isArray(v)) return `an array of length ${v.length}`;
  if (typeof v === 'object') return `an object`;
  return `${String(v)} of type ${typeof v}`;
}

/** @internal ConfigError: "Expected <expected> for <name> but received <actual>". */
export function invalidArg(name: string, expected: string, actual: unknown): ConfigError {
  return new ConfigError(`Expected ${expected} for ${name} but received ${describe(actual)}`);
}

/** @internal Rejects option keys that are not in `allowed` (catches misspellings such as `copys`). */
export function checkKeys(what: string, options: object, allowed: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!allowed.includes(key)) {
      throw new ConfigError(`Unknown option '${key}' for ${what}; valid options: ${allowed.join(', ')}`);
    }
  }
}

/** @internal Validates an options argument that may be omitted. */
export function optionsObject(what: string, options: unknown, allowed: readonly string[]): Record<string, unknown> {
  if (options === undefined) return {};
  if (!is.plainObject(options)) throw invalidArg(`${what} options`, 'a plain object', options);
  checkKeys(what, options, allowed);
  return options;
}

/**
 * @internal DataError unless every value of `x` is finite: names the first bad index (and its row and column
 * when `cols` is given). One pass, no allocation.
 */
export function checkFinite(name: string, x: Float32Array, cols?: number): void {
  for (let i = 0; i < x.length; i++) {
    const v = x[i]!;
    if (v - v !== 0) {
      // NaN and ±Infinity (1e39 is Infinity in float32)
      const at = cols ? ` (row ${Math.floor(i / cols)}, column ${i % cols})` : '';
      throw new DataError(`${name} has a non-finite value (${v}) at index ${i}${at}`);
    }
  }
}
