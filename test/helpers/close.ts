// Test helper: element-wise closeness assertion (one tap assertion per call, with a
// diagnostic message) and small vector utilities (cosine, relative error, concat).
// Comparison rule: |got - want| <= atol + rtol * |want| for every element.

/** Structural type of the part of tap's Test object used here. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type TapLike = { ok(value: any, ...rest: any[]): boolean };

export type CloseOptions = { atol?: number; rtol?: number; label?: string };

function fmt(v: number): string {
  return Number.isFinite(v) ? v.toPrecision(8) : String(v);
}

/**
 * Asserts (exactly one t.ok) that got and want have equal length and that for every i
 * |got[i] - want[i]| <= atol + rtol * |want[i]| (identical values, e.g. equal infinities,
 * also pass; NaN never passes). Defaults: atol 1e-6, rtol 1e-3.
 */
export function assertClose(
  t: TapLike,
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  opts: CloseOptions = {},
): boolean {
  const atol = opts.atol ?? 1e-6;
  const rtol = opts.rtol ?? 1e-3;
  const label = opts.label ?? 'assertClose';
  if (got.length !== want.length) {
    return t.ok(false, `${label}: length mismatch, got ${got.length}, want ${want.length}`);
  }
  let maxAbs = 0;
  let maxRel = 0;
  let nBad = 0;
  let nNaN = 0; // elements where got or want is NaN (excluded from the max diffs)
  const firstBad: string[] = [];
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const diff = g === w ? 0 : Math.abs(g - w); // NaN if either is NaN
    const rel = diff === 0 ? 0 : Number.isFinite(w) ? diff / Math.abs(w) : Infinity; // Infinity if want is 0
    if (Number.isNaN(diff)) {
      nNaN++;
    } else {
      maxAbs = Math.max(maxAbs, diff);
      maxRel = Math.max(maxRel, rel);
    }
    const ok = g === w || diff <= atol + rtol * Math.abs(w); // false for NaN
    if (!ok) {
      nBad++;
      if (firstBad.length < 5) firstBad.push(`[${i}] got ${fmt(g)} want ${fmt(w)}`);
    }
  }
  const pass = nBad === 0;
  let msg = `${label}: n=${got.length} maxAbsDiff=${fmt(maxAbs)} maxRelDiff=${fmt(maxRel)} (atol=${atol}, rtol=${rtol})`;
  if (nNaN > 0) msg += `; NaN at ${nNaN} elements`;
  if (!pass) msg += `; ${nBad} mismatches, first: ${firstBad.join(', ')}`;
  return t.ok(pass, msg);
}

function checkLengths(a: ArrayLike<number>, b: ArrayLike<number>, who: string): void {
  if (a.length !== b.length) throw new Error(`${who}: length mismatch ${a.length} vs ${b.length}`);
}

function norm(a: ArrayLike<number>): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) s += a[i]! * a[i]!;
  return Math.sqrt(s);
}

/** Cosine similarity a.b / (|a| |b|). Two zero vectors give 1; one zero vector gives 0. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  checkLengths(a, b, 'cosine');
  let dot = 0;
  for (let i = 0; i < a.length; i++) dot += a[i]! * b[i]!;
  const na = norm(a);
  const nb = norm(b);
  if (na === 0 && nb === 0) return 1;
  if (na === 0 || nb === 0) return 0;
  return dot / (na * nb);
}

/** ||a - b|| / ||b|| (Euclidean). If ||b|| = 0: 0 when a is also zero, else Infinity. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  checkLengths(a, b, 'relErr');
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  const num = Math.sqrt(s);
  const den = norm(b);
  if (den === 0) return num === 0 ? 0 : Infinity;
  return num / den;
}

/** Concatenate arrays into one Float64Array. */
export function concat(arrays: ArrayLike<number>[]): Float64Array {
  let n = 0;
  for (const a of arrays) n += a.length;
  const out = new Float64Array(n);
  let off = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) out[off + i] = a[i]!;
    off += a.length;
  }
  return out;
}
