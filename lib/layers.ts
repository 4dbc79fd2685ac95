/**
 * Layers: plain, serializable descriptions (tfjs-layers style) that stay data until a model is built.
 * A dense layer may be followed by one activation; noise for ULR goes into every dense pre-activation.
 */
import { ConfigError, ShapeError } from './errors';
import { invalidArg, is, optionsObject } from './validate';

/** Activation functions. `step` and `sign` have no useful derivative: only `ulr()` can train them. */
export const ACTIVATIONS = ['identity', 'relu', 'leakyRelu', 'tanh', 'sigmoid', 'gelu', 'step', 'sign', 'quantize'] as const;
/** One of {@link ACTIVATIONS}. */
export type ActivationName = (typeof ACTIVATIONS)[number];

/** A fully connected layer: `y = x Wᵀ + b`, W of shape (units, inputs). */
export type DenseLayer = {
  /** The layer kind. */
  type: 'dense';
  /** In-features I. */
  inputs: number;
  /** Out-features O. */
  units: number;
  /** Whether the layer has a bias vector. */
  bias: boolean;
  /** `false` when the layer is frozen (no gradient, no update); absent means trainable. */
  trainable?: boolean;
  /** Binary or ternary forward weights; absent means real weights. */
  weights?: QuantizedWeights;
};
/**
 * Weights the forward computes with, from the real ones kept for training: `'binary'`: sign(W)·mean|W| per output
 * (XNOR-Net's scaling); `'ternary'`: the same with the values |W| <= 0.7·mean|W| set to 0 (TWN). No derivative:
 * `ulr()` trains them (its estimate is for the quantized weights and updates the real ones); `bp()` refuses.
 */
export type QuantizedWeights = 'binary' | 'ternary';
/** An elementwise activation. */
export type ActivationLayer = {
  /** The layer kind. */
  type: 'activation';
  /** Which function. */
  activation: ActivationName;
  /** The negative slope of `leakyRelu`. */
  alpha?: number;
  /** The number of output levels of `quantize` (2^bits). */
  levels?: number;
};
/** Height, width and channels of an image; images are channels-last (each row of x is H·W·C values). */
export type ImageShape = [number, number, number];
/** Zero padding: `'valid'` (none), `'same'` (output = ceil(input / stride), TensorFlow's rule), or [top, left]. */
export type Padding = 'valid' | 'same' | [number, number];
/** A 2-D convolution over channels-last images: kernel (filters, kh, kw, channels), one bias per filter. */
export type Conv2dLayer = {
  /** The layer kind. */
  type: 'conv2d';
  /** Output channels. */
  filters: number;
  /** Kernel height and width. */
  kernel: [number, number];
  /** Vertical and horizontal stride. */
  strides: [number, number];
  /** Zero padding. */
  padding: Padding;
  /** Vertical and horizontal dilation (1: dense kernel). */
  dilation: [number, number];
  /** Whether each filter has a bias. */
  bias: boolean;
  /** [H, W, C] of the input images, when given (required on a model's first layer). */
  inputShape?: ImageShape;
  /** Binary or ternary forward weights; absent means real weights. */
  weights?: QuantizedWeights;
};
/** Max or average pooling over windows, per channel. */
export type Pool2dLayer = {
  /** The layer kind: max or average. */
  type: 'maxPool2d' | 'avgPool2d';
  /** Window height and width. */
  kernel: [number, number];
  /** Vertical and horizontal stride. */
  strides: [number, number];
  /** Zero padding (padding taps never count). */
  padding: Padding;
  /** Always [1, 1]: pooling windows are dense. */
  dilation: [1, 1];
  /** [H, W, C] of the input images, when given (required on a model's first layer). */
  inputShape?: ImageShape;
};
/** The mean over all positions of each channel: an image (H, W, C) becomes C values. */
export type GlobalAvgPoolLayer = {
  /** The layer kind. */
  type: 'globalAvgPool';
};
/** Turns an image into a flat vector (channels-last order: no data moves). */
export type FlattenLayer = {
  /** The layer kind. */
  type: 'flatten';
};
/** Steps and features per step of a sequence input (each row of x is steps·features values, step-major). */
export type SequenceShape = [number, number];
/** A recurrent layer over a sequence: Elman `rnn`, `gru`, `lstm`, or leaky integrate-and-fire `lif` neurons. */
export type RecurrentLayer = {
  /** The layer kind: which cell. */
  type: 'rnn' | 'gru' | 'lstm' | 'lif';
  /** Hidden units (state size). */
  units: number;
  /** Whether the output is every step's state (a sequence) or only the last step's. */
  returnSequences: boolean;
  /** [steps, features] of the input sequences, when given (required on a model's first layer). */
  inputShape?: SequenceShape;
  /** `lif` only: membrane decay per step, in [0, 1]. */
  beta?: number;
  /** `lif` only: the membrane potential at which a neuron spikes. */
  threshold?: number;
  /** `lif` only: the steepness of the surrogate derivative `bp()` uses. */
  slope?: number;
};
/** Repeats a flat input for `steps` steps (a sequence of identical steps: the input current of a spiking net). */
export type RepeatLayer = {
  /** The layer kind. */
  type: 'repeat';
  /** Steps of the output sequence. */
  steps: number;
  /** Size of the flat input, when given (required on a model's first layer). */
  inputs?: number;
};
/** The mean over the steps of a sequence (spike rates of a spiking layer). */
export type TimeMeanLayer = {
  /** The layer kind. */
  type: 'timeMean';
};
/** An undirected graph on nodes 0..nodes-1. */
export type Graph = {
  /** Number of nodes. */
  nodes: number;
  /** Undirected edges as [i, j] pairs of node indices. */
  edges: [number, number][];
};
/**
 * A graph convolution (Kipf & Welling 2017): node features (nodes, F) -> Â X Wᵀ + b, (nodes, units), with
 * Â = D^-1/2 (A + I) D^-1/2. A row of x holds every node's features (the whole graph is one sample).
 */
export type GraphConvLayer = {
  /** The layer kind. */
  type: 'graphConv';
  /** Output features per node. */
  units: number;
  /** The graph whose normalized adjacency Â mixes the nodes. */
  graph: Graph;
  /** [nodes, features] of the input, when given (required on a model's first layer). */
  inputShape?: SequenceShape;
};
/**
 * A residual block: out = x + f(x), f the inner layers (whose output has the input's shape). An activation layer
 * right after the block applies to the sum (ResNet's relu(x + f(x))).
 */
export type ResidualLayer = {
  /** The layer kind. */
  type: 'residual';
  /** The inner layers f. */
  layers: Layer[];
};
/**
 * A concatenation block: out = [x, f(x)] along the last axis (features; channels of an image; features of each
 * step), as in DenseNet. f must keep the positions (image size, steps).
 */
export type ConcatLayer = {
  /** The layer kind. */
  type: 'concat';
  /** The inner layers f. */
  layers: Layer[];
};
/** Dropout: in training (every estimator's step), each value is zeroed with probability `rate` and the rest scaled by 1 / (1 − rate); the identity in inference. */
export type DropoutLayer = {
  /** The layer kind. */
  type: 'dropout';
  /** Probability of zeroing a value, in [0, 1). */
  rate: number;
};
/** Layer normalization over the last axis of each position (features; an image's channels; a step's features), with a learned gain and bias per value of that axis. */
export type LayerNormLayer = {
  /** The layer kind. */
  type: 'layerNorm';
};
/**
 * Batch normalization per channel (the last axis) over a batch's rows and positions, with a learned gain and bias.
 * Training uses the batch's statistics (ULR: the clean batch's, for every noisy copy) and moves running statistics
 * by momentum 0.1; inference uses the running statistics (kept in checkpoints).
 */
export type BatchNormLayer = {
  /** The layer kind. */
  type: 'batchNorm';
};
/** Group normalization: channels in `groups` groups, each normalized over all positions of a sample (Wu & He 2018). */
export type GroupNormLayer = {
  /** The layer kind. */
  type: 'groupNorm';
  /** Number of channel groups (divides the channels). */
  groups: number;
};
/** Any layer. */
export type Layer = DenseLayer | ActivationLayer | Conv2dLayer | Pool2dLayer | GlobalAvgPoolLayer | FlattenLayer | RecurrentLayer | RepeatLayer | TimeMeanLayer | GraphConvLayer | ResidualLayer | ConcatLayer | DropoutLayer | LayerNormLayer | BatchNormLayer | GroupNormLayer;

/** Options of {@link dense}. */
export type DenseOptions = {
  /** Whether the layer has a bias vector. Defaults to `true`. */
  bias?: boolean;
  /**
   * `false` freezes the layer (fine-tuning): no gradient, no update. Only a leading run of dense layers can be
   * frozen; their clean forward then runs once per sample. Defaults to `true`.
   */
  trainable?: boolean;
  /** Binary or ternary weights in the forward (see {@link QuantizedWeights}). Defaults to real weights. */
  weights?: QuantizedWeights;
};

function weightsOf(v: unknown): QuantizedWeights | undefined {
  if (v === undefined || v === 'real') return undefined;
  if (v === 'binary' || v === 'ternary') return v;
  throw invalidArg('weights', "'real', 'binary' or 'ternary'", v);
}

/**
 * A dense (fully connected) layer with `inputs` in-features and `units` out-features.
 * Weights are Glorot-uniform from the model seed, biases zero.
 */
export function dense(inputs: number, units: number, options?: DenseOptions): DenseLayer {
  if (!is.positiveInteger(inputs)) throw invalidArg('inputs', 'positive integer', inputs);
  if (!is.positiveInteger(units)) throw invalidArg('units', 'positive integer', units);
  const o = optionsObject('dense', options, ['bias', 'trainable', 'weights']);
  if (o.bias !== undefined && !is.bool(o.bias)) throw invalidArg('bias', 'boolean', o.bias);
  if (o.trainable !== undefined && !is.bool(o.trainable)) throw invalidArg('trainable', 'boolean', o.trainable);
  const layer: DenseLayer = { type: 'dense', inputs, units, bias: (o.bias as boolean | undefined) ?? true };
  if (o.trainable === false) layer.trainable = false;
  const q = weightsOf(o.weights);
  if (q) layer.weights = q;
  return layer;
}

/** An activation layer by name. */
export function activation(name: ActivationName, options?: { alpha?: number }): ActivationLayer {
  if (!(ACTIVATIONS as readonly string[]).includes(name)) {
    throw invalidArg('activation', `one of ${ACTIVATIONS.join(', ')}`, name);
  }
  const o = optionsObject(name, options, ['alpha']);
  if (o.alpha !== undefined) {
    if (name !== 'leakyRelu') throw new ConfigError(`option 'alpha' applies to leakyRelu only, not ${name}`);
    if (!is.number(o.alpha)) throw invalidArg('alpha', 'finite number', o.alpha);
    return { type: 'activation', activation: name, alpha: o.alpha };
  }
  return { type: 'activation', activation: name };
}

/** max(0, x). */
export const relu = (): ActivationLayer => activation('relu');
/** x for x > 0, alpha·x otherwise. `alpha` defaults to `0.01`. */
export const leakyRelu = (options?: { alpha?: number }): ActivationLayer =>
  activation('leakyRelu', { alpha: options?.alpha ?? 0.01 });
/** Hyperbolic tangent. */
export const tanh = (): ActivationLayer => activation('tanh');
/** Logistic sigmoid 1 / (1 + e^-x). */
export const sigmoid = (): ActivationLayer => activation('sigmoid');
/** GELU, exact erf form: x·Φ(x). */
export const gelu = (): ActivationLayer => activation('gelu');
/** The identity (no-op), for explicitness. */
export const identity = (): ActivationLayer => activation('identity');
/** Heaviside step: 1 for x > 0, else 0. Not differentiable: train with `ulr()`. */
export const step = (): ActivationLayer => activation('step');
/** Sign: -1, 0 or 1. Not differentiable: train with `ulr()`. */
export const sign = (): ActivationLayer => activation('sign');
/**
 * Quantized activation: clamps to [0, 1] and rounds to 2^bits levels (a `bits`-bit unsigned activation, as in
 * quantized networks). Not differentiable: train with `ulr()`. `bits` defaults to 2.
 */
export function quantize(options?: { bits?: number }): ActivationLayer {
  const o = optionsObject('quantize', options, ['bits']);
  const bits = o.bits ?? 2;
  if (!is.integer(bits) || (bits as number) < 1 || (bits as number) > 16) throw invalidArg('bits', 'integer in [1, 16]', bits);
  return { type: 'activation', activation: 'quantize', levels: 2 ** (bits as number) };
}

const pairOf = (name: string, v: unknown, min: number): [number, number] => {
  const p = typeof v === 'number' ? [v, v] : v;
  if (!Array.isArray(p) || p.length !== 2 || !p.every((x) => is.integer(x) && (x as number) >= min && (x as number) <= 65536)) {
    throw invalidArg(name, `integer >= ${min} or a pair of them`, v);
  }
  return [p[0] as number, p[1] as number];
};

function paddingOf(v: unknown): Padding {
  if (v === undefined || v === 'valid') return 'valid';
  if (v === 'same') return 'same';
  return pairOf('padding', v, 0);
}

function imageShapeOf(v: unknown): ImageShape | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 3 || !v.every((x) => is.positiveInteger(x) && (x as number) <= 65536)) {
    throw invalidArg('inputShape', '[height, width, channels] of positive integers', v);
  }
  return [v[0], v[1], v[2]] as ImageShape;
}

/** Options of {@link conv2d}. */
export type Conv2dOptions = {
  /** Output channels. */
  filters: number;
  /** Kernel height and width (one number: square). */
  kernel: number | [number, number];
  /** Defaults to `1`. */
  strides?: number | [number, number];
  /** `'valid'` (default), `'same'`, or explicit [top, left] zero padding (the same at bottom/right). */
  padding?: 'valid' | 'same' | number | [number, number];
  /** Defaults to `1`. */
  dilation?: number | [number, number];
  /** Defaults to `true`. */
  bias?: boolean;
  /** [H, W, C] of the input images; required on the first layer of a model. */
  inputShape?: ImageShape;
  /** Binary or ternary weights in the forward (see {@link QuantizedWeights}). Defaults to real weights. */
  weights?: QuantizedWeights;
};

/**
 * A 2-D convolution on channels-last images, computed as im2row patches times the kernel in one GEMM.
 * Weights are Glorot-uniform (fans kh·kw·C and kh·kw·filters), biases zero. ULR puts its noise on every output
 * (position, channel) of the pre-activation.
 * @example
 * of.conv2d({ inputShape: [28, 28, 1], filters: 8, kernel: 3, padding: 'same' })
 */
export function conv2d(options: Conv2dOptions): Conv2dLayer {
  const o = optionsObject('conv2d', options, ['filters', 'kernel', 'strides', 'padding', 'dilation', 'bias', 'inputShape', 'weights']);
  if (!is.positiveInteger(o.filters) || (o.filters as number) > 1 << 20) throw invalidArg('filters', 'positive integer', o.filters);
  if (o.bias !== undefined && !is.bool(o.bias)) throw invalidArg('bias', 'boolean', o.bias);
  const layer: Conv2dLayer = {
    type: 'conv2d', filters: o.filters as number, kernel: pairOf('kernel', o.kernel, 1), strides: pairOf('strides', o.strides ?? 1, 1),
    padding: paddingOf(o.padding), dilation: pairOf('dilation', o.dilation ?? 1, 1), bias: (o.bias as boolean | undefined) ?? true,
  };
  const shape = imageShapeOf(o.inputShape);
  if (shape) layer.inputShape = shape;
  const q = weightsOf(o.weights);
  if (q) layer.weights = q;
  return layer;
}

/** Options of {@link maxPool2d} and {@link avgPool2d}. */
export type Pool2dOptions = {
  /** Window height and width. Defaults to `2`. */
  size?: number | [number, number];
  /** Defaults to the window size. */
  strides?: number | [number, number];
  /** `'valid'` (default), `'same'` or [top, left]; padding taps never count (max ignores them, avg divides by the taps inside). */
  padding?: 'valid' | 'same' | number | [number, number];
  /** [H, W, C] of the input images, when this is the first layer. */
  inputShape?: ImageShape;
};

function pool(type: 'maxPool2d' | 'avgPool2d', options?: Pool2dOptions): Pool2dLayer {
  const o = optionsObject(type, options, ['size', 'strides', 'padding', 'inputShape']);
  const kernel = pairOf('size', o.size ?? 2, 1);
  const layer: Pool2dLayer = { type, kernel, strides: pairOf('strides', o.strides ?? kernel, 1), padding: paddingOf(o.padding), dilation: [1, 1] };
  const shape = imageShapeOf(o.inputShape);
  if (shape) layer.inputShape = shape;
  return layer;
}

/** Max pooling per channel (BP routes the gradient to the first maximal tap). */
export const maxPool2d = (options?: Pool2dOptions): Pool2dLayer => pool('maxPool2d', options);
/** Average pooling per channel. */
export const avgPool2d = (options?: Pool2dOptions): Pool2dLayer => pool('avgPool2d', options);
/** Global average pooling: (H, W, C) -> C. */
export const globalAvgPool = (): GlobalAvgPoolLayer => ({ type: 'globalAvgPool' });
/** Flattens an image to a vector (channels-last order). */
export const flatten = (): FlattenLayer => ({ type: 'flatten' });

/** Options of the recurrent layers. */
export type RecurrentOptions = {
  /** Hidden units. */
  units: number;
  /** Output every step's state (a sequence) or only the last (a vector). Defaults to `false` (`lif`: `true`). */
  returnSequences?: boolean;
  /** [steps, features] of the input sequences; required on the first layer of a model. */
  inputShape?: SequenceShape;
};

function sequenceShapeOf(v: unknown): SequenceShape | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.length !== 2 || !v.every((x) => is.positiveInteger(x) && (x as number) <= 1 << 24)) {
    throw invalidArg('inputShape', '[steps, features] of positive integers', v);
  }
  return [v[0], v[1]] as SequenceShape;
}

function recurrent(type: RecurrentLayer['type'], options: RecurrentOptions & { beta?: number; threshold?: number; slope?: number }, keys: string[]): RecurrentLayer {
  const o = optionsObject(type, options, ['units', 'returnSequences', 'inputShape', ...keys]);
  if (!is.positiveInteger(o.units) || (o.units as number) > 1 << 20) throw invalidArg('units', 'positive integer', o.units);
  if (o.returnSequences !== undefined && !is.bool(o.returnSequences)) throw invalidArg('returnSequences', 'boolean', o.returnSequences);
  const layer: RecurrentLayer = { type, units: o.units as number, returnSequences: (o.returnSequences as boolean | undefined) ?? type === 'lif' };
  const shape = sequenceShapeOf(o.inputShape);
  if (shape) layer.inputShape = shape;
  if (o.beta !== undefined && !(is.number(o.beta) && (o.beta as number) >= 0 && (o.beta as number) <= 1)) throw invalidArg('beta', 'number in [0, 1]', o.beta);
  if (o.threshold !== undefined && !is.number(o.threshold)) throw invalidArg('threshold', 'finite number', o.threshold);
  if (o.slope !== undefined && !is.positive(o.slope)) throw invalidArg('slope', 'positive number', o.slope);
  for (const key of ['beta', 'threshold', 'slope'] as const) if (o[key] !== undefined) layer[key] = o[key] as number;
  return layer;
}

/** Elman recurrent layer: h_t = tanh(W x_t + U h_{t-1} + b). ULR puts noise on every step's pre-activation. */
export const rnn = (options: RecurrentOptions): RecurrentLayer => recurrent('rnn', options, []);
/** GRU (update z, reset r, candidate n = tanh(W x + U (r ⊙ h) + b); h = z ⊙ h_prev + (1 − z) ⊙ n). */
export const gru = (options: RecurrentOptions): RecurrentLayer => recurrent('gru', options, []);
/** LSTM (input, forget, cell, output gates; the forget bias starts at 1). */
export const lstm = (options: RecurrentOptions): RecurrentLayer => recurrent('lstm', options, []);
/**
 * Leaky integrate-and-fire neurons: membrane u_t = beta·u_{t-1}·(1 − s_{t-1}) + W x_t + b, spike
 * s_t = step(u_t − threshold), reset to 0 after a spike. The output is the spikes (a sequence by default).
 * ULR trains the Heaviside spike as it is; `bp()` uses the surrogate derivative 1 / (1 + slope·|u − threshold|)².
 * Defaults: beta 0.9, threshold 1, slope 5.
 */
export const lif = (options: RecurrentOptions & { beta?: number; threshold?: number; slope?: number }): RecurrentLayer =>
  recurrent('lif', options, ['beta', 'threshold', 'slope']);
/**
 * Dropout with probability `rate` in [0, 1). The mask comes from the seeded counter-based generator (seed, step,
 * layer, sample), so runs are reproducible, and under ULR all K copies of a sample share it.
 */
export function dropout(rate: number): DropoutLayer {
  if (!(is.number(rate) && rate >= 0 && rate < 1)) throw invalidArg('rate', 'number in [0, 1)', rate);
  return { type: 'dropout', rate };
}

/**
 * Layer normalization: each position's values along the last axis get mean 0 and variance 1 (eps 1e-5), then a
 * gain (starts at 1) and a bias (starts at 0) per value. Under ULR its output takes noise like any layer with
 * parameters, and the gain's LR gradient is Σ w·s(ε)·x̂ / σ.
 */
export const layerNorm = (): LayerNormLayer => ({ type: 'layerNorm' });
/**
 * Batch normalization: per channel over the batch (training) or with running statistics (inference); eps 1e-5,
 * momentum 0.1. Under ULR the noisy copies use the clean batch's statistics (the paper keeps batch norm in
 * evaluation mode in its noisy passes), computed by one clean pass over the batch.
 */
export const batchNorm = (): BatchNormLayer => ({ type: 'batchNorm' });
/**
 * Group normalization: the channels (last axis) split into `groups` groups; each group of a sample is normalized
 * over all its positions and channels (eps 1e-5), then a gain and a bias per channel. `groups` must divide the
 * channels; 1 group normalizes the whole sample.
 */
export function groupNorm(options: { groups: number }): GroupNormLayer {
  const o = optionsObject('groupNorm', options, ['groups']);
  if (!is.positiveInteger(o.groups)) throw invalidArg('groups', 'positive integer', o.groups);
  return { type: 'groupNorm', groups: o.groups as number };
}

/** Repeats a flat input for `steps` steps; `inputs` (its size) is needed when it is the first layer. */
export function repeat(steps: number, options?: { inputs?: number }): RepeatLayer {
  if (!is.positiveInteger(steps) || steps > 65536) throw invalidArg('steps', 'integer in [1, 65536]', steps);
  const o = optionsObject('repeat', options, ['inputs']);
  if (o.inputs !== undefined && !(is.positiveInteger(o.inputs) && (o.inputs as number) <= 1 << 24)) throw invalidArg('inputs', 'positive integer', o.inputs);
  return o.inputs === undefined ? { type: 'repeat', steps } : { type: 'repeat', steps, inputs: o.inputs as number };
}
/** The mean over a sequence's steps. */
export const timeMean = (): TimeMeanLayer => ({ type: 'timeMean' });

/**
 * A graph convolution layer on `graph`; `inputShape` [nodes, features] on the first layer. Train it with
 * per-node labels (crossEntropy; -1 = unlabeled): the model's output is every node's class scores.
 * @example
 * const k = of.datasets.karate();
 * of.sequential([of.graphConv({ graph: k.graph, units: 16, inputShape: [34, 34] }), of.relu(), of.graphConv({ graph: k.graph, units: 2 })])
 */
export function graphConv(options: { units: number; graph: Graph; inputShape?: SequenceShape }): GraphConvLayer {
  const o = optionsObject('graphConv', options, ['units', 'graph', 'inputShape']);
  if (!is.positiveInteger(o.units) || (o.units as number) > 1 << 20) throw invalidArg('units', 'positive integer', o.units);
  const g = o.graph as Graph | undefined;
  if (!is.plainObject(g) || !is.positiveInteger(g.nodes) || !Array.isArray(g.edges)) throw invalidArg('graph', '{ nodes, edges: [[i, j], ...] }', g);
  for (const e of g.edges) {
    if (!Array.isArray(e) || e.length !== 2 || !e.every((v) => is.integer(v) && v >= 0 && v < g.nodes)) {
      throw invalidArg('graph.edges', `[i, j] pairs of node indices in [0, ${g.nodes})`, e);
    }
  }
  const layer: GraphConvLayer = { type: 'graphConv', units: o.units as number, graph: { nodes: g.nodes, edges: g.edges.map((e) => [e[0], e[1]] as [number, number]) } };
  const shape = sequenceShapeOf(o.inputShape);
  if (shape) {
    if (shape[0] !== g.nodes) throw new ShapeError(`graphConv: inputShape has ${shape[0]} nodes, the graph ${g.nodes}`);
    layer.inputShape = shape;
  }
  return layer;
}

/**
 * A residual block around `layers` (out = x + f(x)); put an activation after it for relu(x + f(x)). Blocks do not
 * nest yet, and cannot be the first layer (the skip needs an input shape).
 * @example
 * of.residual([of.conv2d({ filters: 16, kernel: 3, padding: 'same' }), of.relu(), of.conv2d({ filters: 16, kernel: 3, padding: 'same' })])
 */
export function residual(layers: Layer[]): ResidualLayer {
  return { type: 'residual', layers: blockLayers('residual', layers) };
}

/**
 * A concatenation block around `layers`: out = [x, f(x)] along the last axis. Blocks do not nest yet.
 * @example
 * of.concat([of.conv2d({ filters: 8, kernel: 3, padding: 'same' }), of.relu()])  // channels C -> C + 8
 */
export function concat(layers: Layer[]): ConcatLayer {
  return { type: 'concat', layers: blockLayers('concat', layers) };
}

function blockLayers(kind: string, layers: Layer[]): Layer[] {
  if (!Array.isArray(layers) || layers.length === 0) throw invalidArg('layers', 'non-empty array of layers', layers);
  for (let i = 0; i < layers.length; i++) {  // an index loop: forEach would skip the holes of a sparse array
    const l = layers[i];
    if (!is.plainObject(l) || typeof l.type !== 'string') throw invalidArg(`${kind} layers[${i}]`, 'a layer', l);
    if (l.type === 'residual' || l.type === 'concat') throw new ConfigError(`${kind} blocks do not nest yet`);
  }
  if (layers[0]!.type === 'activation') throw new ConfigError(`a ${kind} block cannot start with an activation`);
  return [...layers];
}

/** What a layer list computes: input and output sizes and the parameter tensors. */
export type Topology = {
  inputs: number;
  inputShape?: ImageShape | SequenceShape;
  outputs: number;
  /** Labels per sample: > 1 when the output is a sequence or node set classified per position. */
  groups: number;
  tensors: { name: string; shape: number[] }[];
  /**
   * Every layer in walk order (a block before its inner layers, which have `depth` 1): the shape of its output
   * ([features], [H, W, C] or [steps, features]) and how many of `tensors` it (with its inner layers) owns.
   */
  perLayer: { layer: Layer; depth: number; output: number[]; tensors: number }[];
};

function windowOut(n: number, k: number, s: number, d: number, pad: Padding, axis: 0 | 1, where: string): number {
  const eff = d * (k - 1) + 1;
  if (pad === 'same') return Math.ceil(n / s);
  const p = pad === 'valid' ? 0 : pad[axis];
  if (n + 2 * p < eff) throw new ShapeError(`${where}: the window (${eff}) is larger than the padded input (${n + 2 * p})`);
  return Math.floor((n + 2 * p - eff) / s) + 1;
}

/**
 * Walks a layer list: checks that the layers chain (dense inputs, image shapes, activations after a layer) and
 * returns the sizes and parameter tensors (dense0.weight (units, inputs), conv0.weight (filters, kh, kw, C), ...).
 * @internal
 */
export function topology(layers: readonly Layer[]): Topology {
  let seq: SequenceShape | undefined;
  let shape: ImageShape | undefined;
  let width: number | undefined;
  let inputs: number | undefined;
  let inputShape: ImageShape | undefined;
  let sequenceInput: SequenceShape | undefined;
  let prev: Layer | undefined;
  let dense = 0, conv = 0;
  const counts: Record<string, number> = {};
  const tensors: Topology['tensors'] = [];
  const perLayer: Topology['perLayer'] = [];
  const visit = (list: readonly Layer[], prefix: string, depth = 0) => list.forEach((l, i) => {
    const where = `${prefix}[${i}]`;
    const row = { layer: l, depth, output: [] as number[], tensors: tensors.length };
    perLayer.push(row);
    switch (l.type) {
      case 'concat': {
        if (inputs === undefined || width === undefined) throw new ConfigError(`${where}: a concat block cannot be the first layer`);
        const before = { width, shape: shape && [...shape], seq: seq && [...seq] };
        prev = undefined;
        visit(l.layers, `${where}.layers`, depth + 1);
        if (before.shape) {
          if (!shape || shape[0] !== before.shape[0] || shape[1] !== before.shape[1]) throw new ShapeError(`${where}: the block must keep the image size`);
          shape = [shape[0], shape[1], shape[2] + before.shape[2]!];
        } else if (before.seq) {
          if (!seq || seq[0] !== before.seq[0]) throw new ShapeError(`${where}: the block must keep the steps`);
          seq = [seq[0], seq[1] + before.seq[1]!];
        } else if (shape || seq) {
          throw new ShapeError(`${where}: the block must give a flat output like its input`);
        }
        width += before.width;
        break;
      }
      case 'residual': {
        if (inputs === undefined || width === undefined) throw new ConfigError(`${where}: a residual block cannot be the first layer`);
        const before = { width, shape: shape && [...shape], seq: seq && [...seq] };
        prev = undefined;
        visit(l.layers, `${where}.layers`, depth + 1);
        const same = width === before.width && JSON.stringify(shape) === JSON.stringify(before.shape) && JSON.stringify(seq) === JSON.stringify(before.seq);
        if (!same) throw new ShapeError(`${where}: the block's output (${width} values) must have its input's shape (${before.width} values)`);
        break;
      }
      case 'activation':
        if (!prev || prev.type === 'flatten') throw new ConfigError('the first layer must be dense, conv2d or a pooling layer (an activation needs a layer before it)');
        if (prev.type === 'activation') throw new ConfigError(`${where}: two activations in a row are not supported`);
        break;
      case 'rnn':
      case 'gru':
      case 'lstm':
      case 'lif': {
        if (inputs === undefined) {
          if (!l.inputShape) throw new ConfigError(`${where}: the first recurrent layer needs inputShape [steps, features]`);
          seq = [...l.inputShape];
          inputs = seq[0] * seq[1];
          sequenceInput = [...l.inputShape];
        } else if (l.inputShape && seq && l.inputShape.some((v, j) => v !== seq![j])) {
          throw new ShapeError(`${where}: inputShape [${l.inputShape.join(', ')}] but the previous layer gives [${seq.join(', ')}]`);
        }
        if (!seq) throw new ConfigError(`${where}: ${l.type} needs a sequence input (inputShape [steps, features] on the first layer, or of.repeat())`);
        const G = l.type === 'gru' ? 3 : l.type === 'lstm' ? 4 : 1;
        const name = `${l.type}${counts[l.type] ?? 0}`;
        counts[l.type] = (counts[l.type] ?? 0) + 1;
        tensors.push({ name: `${name}.weight`, shape: [G * l.units, seq[1]] });
        if (l.type !== 'lif') tensors.push({ name: `${name}.recurrent`, shape: [G * l.units, l.units] });
        tensors.push({ name: `${name}.bias`, shape: [G * l.units] });
        if (l.returnSequences) seq = [seq[0], l.units], width = seq[0] * l.units;
        else seq = undefined, width = l.units;
        break;
      }
      case 'graphConv': {
        if (inputs === undefined) {
          if (!l.inputShape) throw new ConfigError(`${where}: the first graphConv needs inputShape [nodes, features]`);
          seq = [...l.inputShape];
          inputs = seq[0] * seq[1];
          sequenceInput = [...l.inputShape];
        }
        if (!seq || seq[0] !== l.graph.nodes) throw new ConfigError(`${where}: graphConv needs node features [${l.graph.nodes}, features]`);
        const name = `graph${counts.graph ?? 0}`;
        counts.graph = (counts.graph ?? 0) + 1;
        tensors.push({ name: `${name}.weight`, shape: [l.units, seq[1]] }, { name: `${name}.bias`, shape: [l.units] });
        seq = [seq[0], l.units];
        width = seq[0] * l.units;
        break;
      }
      case 'repeat':
        if (inputs === undefined) {
          if (l.inputs === undefined) throw new ConfigError(`${where}: a first repeat layer needs { inputs }`);
          inputs = width = l.inputs;
        } else if (l.inputs !== undefined && l.inputs !== width) {
          throw new ShapeError(`${where}: repeat expects ${l.inputs} inputs but the previous layer gives ${width}`);
        }
        if (width === undefined || shape || seq) throw new ConfigError(`${where}: repeat needs a flat input`);
        seq = [l.steps, width];
        width = l.steps * width;
        break;
      case 'dropout':
        if (width === undefined) throw new ConfigError(`${where}: dropout needs a layer before it`);
        break;
      case 'layerNorm':
      case 'batchNorm':
      case 'groupNorm': {
        if (width === undefined) throw new ConfigError(`${where}: ${l.type} needs a layer before it`);
        const last = shape ? shape[2] : seq ? seq[1] : width;
        if (l.type === 'groupNorm' && last % l.groups !== 0) throw new ConfigError(`${where}: groupNorm groups (${l.groups}) must divide the channels (${last})`);
        const kind = l.type === 'layerNorm' ? 'norm' : l.type === 'batchNorm' ? 'batchnorm' : 'groupnorm';
        const name = `${kind}${counts[kind] ?? 0}`;
        counts[kind] = (counts[kind] ?? 0) + 1;
        tensors.push({ name: `${name}.weight`, shape: [last] }, { name: `${name}.bias`, shape: [last] });
        break;
      }
      case 'timeMean':
        if (!seq) throw new ConfigError(`${where}: timeMean needs a sequence input`);
        width = seq[1];
        seq = undefined;
        break;
      case 'dense':
        if (shape) throw new ConfigError(`${where}: dense needs a flat input; add of.flatten() after the spatial layers`);
        if (seq) throw new ConfigError(`${where}: dense needs a flat input; add of.flatten(), of.timeMean() or returnSequences: false`);
        if (width !== undefined && l.inputs !== width) throw new ShapeError(`${where}: dense expects ${l.inputs} inputs but the previous layer gives ${width}`);
        if (inputs === undefined) inputs = l.inputs;
        tensors.push({ name: `dense${dense}.weight`, shape: [l.units, l.inputs] });
        if (l.bias) tensors.push({ name: `dense${dense}.bias`, shape: [l.units] });
        dense++;
        width = l.units;
        break;
      case 'flatten':
        if (shape) width = shape[0] * shape[1] * shape[2];
        if (seq) width = seq[0] * seq[1];
        shape = seq = undefined;
        break;
      case 'globalAvgPool':
      case 'conv2d':
      case 'maxPool2d':
      case 'avgPool2d': {
        const given = l.type === 'globalAvgPool' ? undefined : l.inputShape;
        if (inputs === undefined) {
          if (!given) throw new ConfigError(`${where}: the first spatial layer needs inputShape [height, width, channels]`);
          shape = [...given];
          inputShape = [...given];
          inputs = given[0] * given[1] * given[2];
        } else if (given && shape && given.some((v, j) => v !== shape![j])) {
          throw new ShapeError(`${where}: inputShape [${given.join(', ')}] but the previous layer gives [${shape.join(', ')}]`);
        }
        if (!shape) throw new ConfigError(`${where}: ${l.type} needs an image input, not a ${seq ? 'sequence' : 'flat one'}`);
        if (l.type === 'globalAvgPool') {
          width = shape[2];
          shape = undefined;
          break;
        }
        const ho = windowOut(shape[0], l.kernel[0], l.strides[0], l.dilation[0], l.padding, 0, where);
        const wo = windowOut(shape[1], l.kernel[1], l.strides[1], l.dilation[1], l.padding, 1, where);
        if (l.type === 'conv2d') {
          tensors.push({ name: `conv${conv}.weight`, shape: [l.filters, l.kernel[0], l.kernel[1], shape[2]] });
          if (l.bias) tensors.push({ name: `conv${conv}.bias`, shape: [l.filters] });
          conv++;
          shape = [ho, wo, l.filters];
        } else {
          shape = [ho, wo, shape[2]];
        }
        width = shape[0] * shape[1] * shape[2];
        break;
      }
      default:
        throw invalidArg(`layers[${i}]`, 'a layer (of.dense(), of.conv2d(), of.relu(), ...)', l);
    }
    row.output = shape ? [...shape] : seq ? [...seq] : [width!];
    row.tensors = tensors.length - row.tensors;
    prev = l;
  });
  visit(layers, 'layers');
  if (inputs === undefined || width === undefined) throw new ConfigError('a model needs at least one dense, conv2d, pooling or recurrent layer');
  if (shape) throw new ConfigError('the last layer gives an image; add of.flatten() and a dense layer (or of.globalAvgPool())');
  const t: Topology = { inputs, outputs: width, groups: seq ? seq[0] : 1, tensors, perLayer };
  if (inputShape) t.inputShape = inputShape;
  if (sequenceInput) t.inputShape = sequenceInput;
  return t;
}
