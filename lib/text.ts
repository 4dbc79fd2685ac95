/**
 * Text for character-level language models: the shipped corpus, a character vocabulary (text <-> token ids) and
 * token data sets (windows of a token stream with next-token labels at every position). Sampling from a trained
 * model is in generate.ts.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { ConfigError, DataError, ShapeError } from './errors';
import type { Dataset } from './data';
import { invalidArg, is, optionsObject } from './validate';

/** The corpora {@link corpus} ships (data/README.md names each one's source and licence). */
export const CORPORA = ['moby-dick'] as const;
/** One of {@link CORPORA}. */
export type CorpusName = (typeof CORPORA)[number];

const corpusCache = new Map<CorpusName, string>();

/**
 * A shipped text (nothing is downloaded). `'moby-dick'`: chapters 1–30 of Herman Melville's *Moby-Dick* (1851,
 * public domain), 263,407 characters of 80 distinct ones, hard-wrapped lines. Read once, then cached.
 * @throws ConfigError (`ERR_CONFIG`) for a name not in {@link CORPORA}; DataError (`ERR_DATA`) when the file
 * cannot be read.
 */
export function corpus(name: CorpusName): string {
  if (!(CORPORA as readonly unknown[]).includes(name)) throw invalidArg('name', CORPORA.join(' | '), name);
  const cached = corpusCache.get(name);
  if (cached !== undefined) return cached;
  const file = path.join(__dirname, '..', '..', 'data', `${name}.txt.gz`);
  let text: string;
  try {
    text = zlib.gunzipSync(fs.readFileSync(file)).toString('utf8');
  } catch (err) {
    throw new DataError(`cannot read the corpus ${file}: ${(err as Error).message}`);
  }
  corpusCache.set(name, text);
  return text;
}

/** What {@link CharVocab.toJSON} gives and {@link CharVocab.fromJSON} reads. */
export type CharVocabJSON = {
  /** Always `'charVocab'`. */
  type: 'charVocab';
  /** The characters (Unicode code points) by id, sorted by code point. */
  chars: string[];
  /** Whether the vocabulary has an `unk` id (the last) for characters it does not hold. */
  unk: boolean;
};

const byCodePoint = (a: string, b: string) => a.codePointAt(0)! - b.codePointAt(0)!;
const hex = (ch: string) => 'U+' + ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0');

/**
 * A character vocabulary: one id per distinct Unicode code point, in code-point order (so the same characters
 * always give the same ids), and optionally one more id, the last, for unknown characters. Build it with
 * {@link charVocab}; save it with `JSON.stringify(vocab)` and read it back with {@link CharVocab.fromJSON}, so
 * that a saved model can be used with the ids it was trained on.
 */
export class CharVocab {
  /** The character of each id (an `unk` id has none). */
  readonly chars: readonly string[];
  /** Number of ids: the characters, plus one with `unk`. A model's output per position has this many logits. */
  readonly size: number;
  /** The id that unknown characters encode to (the last id), or `undefined` when they are an error. */
  readonly unk: number | undefined;
  /** @internal */
  private readonly ids: Map<string, number>;

  /** @internal Use {@link charVocab} or {@link CharVocab.fromJSON}. */
  constructor(chars: string[], unk: boolean) {
    this.chars = Object.freeze([...chars]);
    this.ids = new Map(chars.map((c, i) => [c, i]));
    this.size = chars.length + (unk ? 1 : 0);
    this.unk = unk ? chars.length : undefined;
  }

  /**
   * The ids of a text's characters (code points, not UTF-16 units).
   * @throws ConfigError (`ERR_CONFIG`) when `text` is not a string; DataError (`ERR_DATA`) for a character the
   * vocabulary does not hold, unless it has an `unk` id.
   */
  encode(text: string): Int32Array {
    if (!is.string(text)) throw invalidArg('text', 'string', text);
    const out = new Int32Array(text.length); // code points <= UTF-16 units
    let n = 0;
    for (const ch of text) {
      const id = this.ids.get(ch) ?? this.unk;
      if (id === undefined)
        throw new DataError(
          `character ${JSON.stringify(ch)} (${hex(ch)}) at index ${n} is not in the vocabulary of ${this.size}; ` +
            'build it from a text that holds it, or with charVocab(text, { unk: true })',
        );
      out[n++] = id;
    }
    return n === out.length ? out : out.slice(0, n);
  }

  /**
   * The text of a sequence of ids; the `unk` id gives U+FFFD (the replacement character).
   * @throws ConfigError (`ERR_CONFIG`) when `ids` is not an array or typed array; DataError (`ERR_DATA`) for an id
   * that is not an integer in [0, size).
   */
  decode(ids: ArrayLike<number>): string {
    if (!Array.isArray(ids) && !(ArrayBuffer.isView(ids) && !(ids instanceof DataView)))
      throw invalidArg('ids', 'an array or typed array of token ids', ids);
    let s = '';
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || (id as number) < 0 || (id as number) >= this.size)
        throw new DataError(`id ${String(id)} at index ${i} is not an integer in [0, ${this.size})`);
      s += id === this.unk ? '\uFFFD' : this.chars[id as number]!;
    }
    return s;
  }

  /** The vocabulary as plain JSON ({@link CharVocabJSON}); `JSON.stringify(vocab)` calls it. */
  toJSON(): CharVocabJSON {
    return { type: 'charVocab', chars: [...this.chars], unk: this.unk !== undefined };
  }

  /**
   * A vocabulary from what {@link toJSON} gave (parsed: `CharVocab.fromJSON(JSON.parse(s))`): the same ids.
   * @throws ConfigError (`ERR_CONFIG`) for anything else: a wrong type tag, characters that are not single code
   * points, repeated or out of code-point order.
   */
  static fromJSON(json: unknown): CharVocab {
    if (!is.plainObject(json) || json.type !== 'charVocab')
      throw invalidArg('json', "a vocabulary's JSON { type: 'charVocab', chars, unk }", json);
    const { chars, unk } = json;
    if (!Array.isArray(chars) || chars.length === 0 || !chars.every((c) => is.string(c) && [...c].length === 1))
      throw invalidArg('json.chars', 'a non-empty array of single characters', chars);
    for (let i = 1; i < chars.length; i++)
      if (byCodePoint(chars[i - 1] as string, chars[i] as string) >= 0)
        throw new ConfigError(`json.chars must be distinct and in code-point order; see index ${i}`);
    if (!is.bool(unk)) throw invalidArg('json.unk', 'boolean', unk);
    return new CharVocab(chars as string[], unk);
  }
}

/**
 * The character vocabulary of a text: its distinct code points in code-point order (deterministic). With
 * `unk: true` one more id, the last, stands for every character the text does not hold, so {@link CharVocab.encode}
 * maps such characters to it instead of throwing.
 * @example
 * const text = of.datasets.corpus('moby-dick');
 * const vocab = of.text.charVocab(text);
 * const ids = vocab.encode(text); // Int32Array, one id per character
 * vocab.decode(ids.subarray(0, 20)); // 'CHAPTER 1. Loomings.'
 * @throws ConfigError (`ERR_CONFIG`) for a `text` that is not a non-empty string or a bad option.
 */
export function charVocab(text: string, options?: { unk?: boolean }): CharVocab {
  const o = optionsObject('charVocab', options, ['unk']);
  if (!is.string(text) || text.length === 0) throw invalidArg('text', 'non-empty string', text);
  if (o.unk !== undefined && !is.bool(o.unk)) throw invalidArg('unk', 'boolean', o.unk);
  return new CharVocab([...new Set(text)].sort(byCodePoint), (o.unk as boolean | undefined) ?? false);
}

/** Options of {@link tokens}. */
export type TokenOptions = {
  /** T, the positions per window (the model's context), an integer in [1, 65536]. */
  context: number;
  /**
   * Tokens between the starts of consecutive windows, an integer in [1, 2^30] (above `context`, the tokens
   * between windows are skipped). Defaults to `context`: windows that do not overlap, each token in one window,
   * about 8 bytes a token (x float32, y int32). Stride s takes T / s times as much.
   */
  stride?: number;
  /**
   * A fraction in (0, 1) of the stream held out for validation: its last `ceil(n · split)` tokens. The two parts
   * are cut before windowing, so no window (inputs or labels) crosses the cut. Defaults to none.
   */
  split?: number;
  /**
   * V, the vocabulary size: each input id becomes a one-hot row of V values (`x` of shape [T, V]), for models
   * without an embedding layer (a recurrent layer then sees each token as its own input direction, not as one
   * number). Ids must be below V. x then takes 4 · V bytes a position. Defaults to none: ids as they are.
   */
  oneHot?: number;
};

/** The most input values (rows × context, × V one-hot) of a data set from {@link tokens}: 2^26 (256 MiB). */
export const MAX_TOKEN_VALUES = 2 ** 26;
/** The largest token id {@link tokens} takes: 2^24, the last integer float32 holds exactly (ids are model inputs). */
export const MAX_TOKEN_ID = 2 ** 24;

// Windows of ids[from, to): row i holds the T ids from from + i·stride as inputs (each as one value, or one-hot
// over V) and the T ids one further on as labels. The last window ends where its labels still lie inside the part.
function windows(
  ids: ArrayLike<number>,
  from: number,
  to: number,
  T: number,
  stride: number,
  V: number | undefined,
  what: string,
): Dataset {
  if (to - from < T + 1)
    throw new ShapeError(`the ${what} has ${to - from} tokens; a window of context ${T} needs ${T + 1} (its labels)`);
  const rows = Math.floor((to - from - T - 1) / stride) + 1,
    F = V ?? 1;
  if (rows * T * F > MAX_TOKEN_VALUES)
    throw new ConfigError(
      `${rows} windows of ${T} tokens × ${F} inputs exceed ${MAX_TOKEN_VALUES} values; ` +
        `raise stride (now ${stride}) or use fewer tokens`,
    );
  const x = new Float32Array(rows * T * F),
    y = new Int32Array(rows * T);
  for (let r = 0; r < rows; r++) {
    const s = from + r * stride;
    for (let t = 0; t < T; t++) {
      if (V === undefined) x[r * T + t] = ids[s + t]!;
      else x[(r * T + t) * V + ids[s + t]!] = 1;
      y[r * T + t] = ids[s + t + 1]!;
    }
  }
  return { x, y, rows, shape: [T, F] };
}

/** What {@link tokens} returns. */
export type TokenData = {
  /** The windows of the stream (with `split`, of its first part). */
  train: Dataset;
  /** With `split`: the windows of the stream's last part. */
  validation?: Dataset;
};
/** What {@link tokens} returns with `split`. */
export type TokenSplit = {
  /** The windows of the stream's first part. */
  train: Dataset;
  /** The windows of the stream's last part. */
  validation: Dataset;
};

/**
 * Next-token data sets from a token stream: windows x of T ids (shape [T, 1]: one input per position, the id as a
 * float; [T, V] one-hot rows with `oneHot: V`) and labels y of the T ids that follow each position (one label per
 * position: a model whose output is (T, vocab) trains with per-position cross-entropy, `model.groups` = T). `fit`
 * shuffles the windows as usual.
 * With `split`, the end of the stream is the validation set, cut from the stream before windowing.
 * @example
 * const ids = vocab.encode(of.datasets.corpus('moby-dick'));
 * const { train, validation } = of.data.tokens(ids, { context: 64, split: 0.1 });
 * await model.fit(train, { validation, epochs: 5 }); // History.history.valPerplexity
 * @throws ConfigError (`ERR_CONFIG`) for a bad option, or windows above 2^26 values in all; DataError
 * (`ERR_DATA`) for an id that is not an integer in [0, 2^24] (in [0, V) with `oneHot`); ShapeError (`ERR_SHAPE`)
 * for a stream (or part) shorter than context + 1.
 */
export function tokens(ids: ArrayLike<number>, options: TokenOptions & { split: number }): TokenSplit;
export function tokens(ids: ArrayLike<number>, options: TokenOptions): TokenData;
export function tokens(ids: ArrayLike<number>, options: TokenOptions): TokenData {
  if (!Array.isArray(ids) && !(ArrayBuffer.isView(ids) && !(ids instanceof DataView)))
    throw invalidArg('ids', 'an array or typed array of token ids', ids);
  const o = optionsObject('tokens', options, ['context', 'stride', 'split', 'oneHot']);
  const T = o.context as number;
  if (!is.positiveInteger(T) || T > 65536) throw invalidArg('context', 'integer in [1, 65536]', T);
  const stride = (o.stride as number | undefined) ?? T;
  if (!is.positiveInteger(stride) || stride > 2 ** 30) throw invalidArg('stride', 'integer in [1, 2^30]', stride);
  const split = o.split as number | undefined;
  if (split !== undefined && !(is.number(split) && split > 0 && split < 1))
    throw invalidArg('split', 'number in (0, 1)', split);
  const V = o.oneHot as number | undefined;
  if (V !== undefined && !(is.integer(V) && V >= 2 && V <= MAX_TOKEN_ID))
    throw invalidArg('oneHot', 'integer in [2, 2^24] (the vocabulary size)', V);
  const top = V === undefined ? MAX_TOKEN_ID : V - 1;
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    if (!Number.isInteger(v) || (v as number) < 0 || (v as number) > top)
      throw new DataError(`token id ${String(v)} at index ${i} is not an integer in [0, ${top}]`);
  }
  const n = ids.length;
  if (split === undefined) return { train: windows(ids, 0, n, T, stride, V, 'token stream') };
  const cut = n - Math.ceil(n * split);
  return {
    train: windows(ids, 0, cut, T, stride, V, `training part (the first ${cut} of ${n} tokens)`),
    validation: windows(ids, cut, n, T, stride, V, `validation part (the last ${n - cut} of ${n} tokens)`),
  };
}
