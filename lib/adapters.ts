/**
 * Fine-tuning with low-rank adapters (LoRA): a copy of a pretrained model whose dense layers carry adapters, the
 * pretrained weights frozen underneath (see {@link AdapterOptions}).
 */
import { ConfigError } from './errors';
import type { AdapterOptions } from './layers/dense';
import type { Layer } from './layers/index';
import { kindOf, present } from './layers/kind';
import { Model, sequential } from './model';
import { invalidArg, is, optionsObject } from './validate';

/** Options of {@link withAdapters}. */
export type WithAdaptersOptions = AdapterOptions & {
  /** Indices into `model.layers` of the dense layers to adapt. Defaults to every dense layer that is not frozen. */
  layers?: number[];
};

/**
 * A new model with the layers and seed of `model`, its dense layers given low-rank adapters, and every parameter
 * of `model` copied in by name (`dense0.weight`, ...): it computes what `model` computes until the adapters train.
 * `model` is left unchanged. Dense layers inside residual or concat blocks are not adapted.
 * @example
 * const tuned = of.withAdapters(pretrained, { rank: 4 });
 * await tuned.fit(newTask, { estimator: of.ulr(), epochs: 5 }); // only the adapters train
 * @throws ConfigError (`ERR_CONFIG`) for a bad rank or alpha (the rank must fit every adapted layer), a listed
 * layer that is not dense, or a dense layer with binary or ternary weights; `ERR_DISPOSED` for a disposed model.
 */
export function withAdapters(model: Model, options: WithAdaptersOptions): Model {
  if (!(model instanceof Model)) throw invalidArg('model', 'a Model', model);
  const o = optionsObject('withAdapters', options, ['rank', 'alpha', 'layers']);
  const adapter = present(o, ['rank', 'alpha']) as AdapterOptions;
  const adapt = (l: Layer) => kindOf(l.type)?.withAdapter;
  const frozen = (l: Layer) => 'trainable' in l && l.trainable === false;
  const all = model.layers.map((l, i) => (adapt(l) && !frozen(l) ? i : -1)).filter((i) => i >= 0);
  const chosen = (o.layers as unknown) ?? all;
  if (!Array.isArray(chosen) || !chosen.every((i) => is.integer(i) && i >= 0 && i < model.layers.length))
    throw invalidArg('layers', `an array of layer indices in [0, ${model.layers.length - 1}]`, chosen);
  for (const i of chosen as number[])
    if (!adapt(model.layers[i]!)) throw new ConfigError(`layer ${i} is ${model.layers[i]!.type}, not dense`);
  const layers: Layer[] = model.layers.map((l, i) => ((chosen as number[]).includes(i) ? adapt(l)!(l, adapter) : l));
  const source = new Map(model.parameters().map((p) => [p.name, p.data]));
  const tuned = sequential(layers, { seed: model.seed, loss: model.loss, backend: model.backend });
  for (const p of tuned.parameters()) {
    const data = source.get(p.name);
    if (data) p.data.set(data);
  }
  if (model.frozen > 0) tuned.freeze(model.frozen);
  return tuned;
}
