/**
 * Model.generate: token-by-token sampling from a model that reads T token ids and gives (T, vocab) logits per
 * position. Greedy (arg-max) or temperature sampling with an optional top-k cut, seeded by the engine's Philox
 * generator. Each token is one async prediction, so the event loop stays free between and during them.
 */
import { ConfigError, DataError, withCallerStack } from './errors';
import type { Model } from './model';
import { native } from './native';
import { invalidArg, is, optionsObject } from './validate';

/** Options of {@link Model.generate}. */
export type GenerateOptions = {
  /** New tokens to generate, an integer in [1, 2^20]. */
  maxTokens: number;
  /**
   * T in softmax(logits / T), a finite number >= 0. `0` is greedy: the arg-max (the first on ties), no randomness.
   * Defaults to `0`.
   */
  temperature?: number;
  /** Sample among the k largest logits only (ties: the lower id), an integer in [1, vocab]. Defaults to all. */
  topK?: number;
  /** Seed of the sampling, an integer in [0, 2^53]: same seed, model and prompt, same tokens. Defaults to `0`. */
  seed?: number;
};

// Philox stream of the sampling draws (the engine's own streams are 1–5, shuffling's permutation takes 4).
const SAMPLE_STREAM = 6;

// The model's context T, vocabulary V and input encoding, or a ConfigError: it must give T groups of V logits and
// read T inputs (an id per position) or T × V (a one-hot row per position, as of.data.tokens' `oneHot` gives).
function lmShape(model: Model): { T: number; V: number; oneHot: boolean } {
  const T = model.groups,
    V = model.outputs / T;
  if (model.loss === 'mse' || T < 2 || (model.inputs !== T && model.inputs !== T * V))
    throw new ConfigError(
      `generate needs a model that reads T token ids (one input, or a one-hot row of vocab inputs, per position) ` +
        `and gives (T, vocab) logits per position (cross-entropy); this one reads ${model.inputs} inputs and ` +
        `gives ${model.outputs} outputs in ${T} group(s) with ${model.loss} loss`,
    );
  return { T, V, oneHot: model.inputs !== T };
}

// The id drawn from logits[0, V): arg-max at temperature 0, else from softmax(logits / temperature) over the topK
// largest, with one uniform u in [0, 1). In float64, max-subtracted so that no exp overflows.
function pick(logits: Float32Array, temperature: number, topK: number, u: number): number {
  const V = logits.length;
  let best = 0;
  for (let j = 1; j < V; j++) if (logits[j]! > logits[best]!) best = j;
  if (temperature === 0) return best;
  let ids = Array.from({ length: V }, (_, j) => j);
  if (topK < V)
    ids = ids
      .sort((a, b) => logits[b]! - logits[a]! || a - b)
      .slice(0, topK)
      .sort((a, b) => a - b);
  const w = ids.map((j) => Math.exp((logits[j]! - logits[best]!) / temperature));
  let target = u * w.reduce((a, b) => a + b, 0);
  for (let k = 0; k < ids.length; k++) if ((target -= w[k]!) < 0) return ids[k]!;
  return best; // u·sum rounded up to the sum: the mode, whose weight is 1, is always a candidate
}

/** @internal {@link Model.generate}; `stack` is the caller's (a rejection keeps it). */
export async function generate(
  model: Model,
  prompt: ArrayLike<number>,
  options: GenerateOptions,
  stack: string | undefined,
): Promise<Int32Array> {
  const o = optionsObject('generate', options, ['maxTokens', 'temperature', 'topK', 'seed']);
  const { T, V, oneHot } = lmShape(model);
  const maxTokens = o.maxTokens;
  if (!is.positiveInteger(maxTokens) || maxTokens > 2 ** 20)
    throw invalidArg('maxTokens', 'integer in [1, 2^20]', maxTokens);
  const temperature = (o.temperature as number | undefined) ?? 0;
  if (!is.number(temperature) || temperature < 0) throw invalidArg('temperature', 'finite number >= 0', temperature);
  const topK = (o.topK as number | undefined) ?? V;
  if (!is.positiveInteger(topK) || topK > V) throw invalidArg('topK', `integer in [1, ${V}]`, topK);
  const seed = (o.seed as number | undefined) ?? 0;
  if (!is.integer(seed) || seed < 0 || seed > 2 ** 53) throw invalidArg('seed', 'integer in [0, 2^53]', seed);
  if (!Array.isArray(prompt) && !(ArrayBuffer.isView(prompt) && !(prompt instanceof DataView)))
    throw invalidArg('prompt', 'an array or typed array of token ids', prompt);
  if (prompt.length === 0) throw new DataError('generate needs a prompt of at least one token');
  for (let i = 0; i < prompt.length; i++) {
    const id = prompt[i];
    if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= V)
      throw new DataError(
        `prompt id ${String(id)} at index ${i} is not an integer in [0, ${V}) (the model's vocabulary)`,
      );
  }
  // the prompt's last T ids (all a window can hold), then the new ones; the draw of seq[i] is counter skip + i
  const kept = Math.min(prompt.length, T),
    skip = prompt.length - kept;
  const seq = new Int32Array(kept + maxTokens);
  for (let i = 0; i < kept; i++) seq[i] = prompt[skip + i]!;
  const k0 = seed % 2 ** 32,
    k1 = Math.floor(seed / 2 ** 32);
  const window = new Float32Array(oneHot ? T * V : T);
  for (let i = kept; i < seq.length; i++) {
    // The last T tokens; a shorter sequence is right-padded (id 0, or one-hot rows of zeros), and the logits are
    // read at its last real position, which a causal model computes from the positions up to it only.
    const start = Math.max(0, i - T),
      last = i - start - 1;
    window.fill(0);
    for (let t = 0; t < i - start; t++)
      if (oneHot) window[t * V + seq[start + t]!] = 1;
      else window[t] = seq[start + t]!;
    let out: Float32Array;
    try {
      out = await model.predictAsync(window, 1);
    } catch (err) {
      throw withCallerStack(err, stack);
    }
    const r = temperature === 0 ? undefined : native().philox(skip + i, 0, SAMPLE_STREAM, 0, k0, k1);
    const u = r ? (r[0]! + r[1]! / 2 ** 32) / 2 ** 32 : 0; // 64 random bits -> [0, 1)
    seq[i] = pick(out.subarray(last * V, (last + 1) * V), temperature, topK, u);
  }
  return seq.slice(kept);
}
