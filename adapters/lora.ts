// LoRA (Hu et al. 2021, arXiv:2106.09685): y = base(x) + scale · B(A(dropout(x))) around any frozen Linear,
// attached to a model's projections by name as Hugging Face PEFT does, and merged back into dense weights.
import * as tf from '@tensorflow/tfjs';
import { addLowRank } from '../engine/low-rank.ts';
import type { Linear } from '../model/linear.ts';
import { LINEAR_NAMES, hfModuleName, type LinearName, type LlamaWeights } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { Rng, type RngState } from '../util/rng.ts';

/** What to adapt and how; the fields of PEFT's LoraConfig that ft supports. */
export interface LoraConfig {
  r: number;
  alpha: number;
  dropout: number;
  /** Projection names, or 'all-linear' for every projection in every decoder block (never lm_head, as in PEFT). */
  targetModules: LinearName[] | 'all-linear';
  /** Decoder block indices to adapt; all blocks when absent. */
  layersToTransform?: number[];
  /** rsLoRA (Kalajdzievski 2023): scale alpha/sqrt(r) instead of alpha/r. */
  useRslora: boolean;
}

/**
 * Checks a config against a model with `numLayers` decoder blocks; throws a one-line FtError naming the field.
 * `source` names where the config came from (a recipe path, an adapter_config.json) for the message.
 */
export function validateLoraConfig(cfg: LoraConfig, numLayers: number, source = 'LoRA config'): void {
  if (!Number.isInteger(cfg.r) || cfg.r <= 0)
    throw new FtError(`${source}: r must be a positive integer, got ${cfg.r}`);
  if (!(Number.isFinite(cfg.alpha) && cfg.alpha > 0))
    throw new FtError(`${source}: alpha (lora_alpha) must be > 0, got ${cfg.alpha}`);
  if (!(Number.isFinite(cfg.dropout) && cfg.dropout >= 0 && cfg.dropout < 1)) {
    throw new FtError(`${source}: dropout (lora_dropout) must be in [0, 1), got ${cfg.dropout}`);
  }
  if (cfg.targetModules !== 'all-linear') {
    if (!Array.isArray(cfg.targetModules) || cfg.targetModules.length === 0) {
      throw new FtError(
        `${source}: target_modules must be 'all-linear' or a non-empty list of ${LINEAR_NAMES.join(', ')}`,
      );
    }
    const unknown = cfg.targetModules.filter((m) => !(LINEAR_NAMES as readonly string[]).includes(m));
    if (unknown.length) {
      throw new FtError(
        `${source}: unknown target module(s) ${unknown.join(', ')}: the model has ${LINEAR_NAMES.join(', ')} (or 'all-linear')`,
      );
    }
  }
  for (const i of cfg.layersToTransform ?? []) {
    if (!Number.isInteger(i) || i < 0 || i >= numLayers) {
      throw new FtError(
        `${source}: layers_to_transform has ${i}, expected ${Number.isFinite(numLayers) ? `block indices 0..${numLayers - 1}` : 'non-negative block indices'}`,
      );
    }
  }
}

/** alpha/r, or alpha/sqrt(r) with rsLoRA. */
export function loraScale(cfg: Pick<LoraConfig, 'r' | 'alpha' | 'useRslora'>): number {
  return cfg.useRslora ? cfg.alpha / Math.sqrt(cfg.r) : cfg.alpha / cfg.r;
}

/** The projection names a config targets, in model order. */
export function targetNames(cfg: LoraConfig): LinearName[] {
  const wanted = cfg.targetModules === 'all-linear' ? LINEAR_NAMES : cfg.targetModules;
  return LINEAR_NAMES.filter((n) => wanted.includes(n));
}

/** PEFT's module path: `base_model.model.model.layers.{i}.self_attn.q_proj`. */
export function peftModuleName(layer: number, proj: LinearName): string {
  return `base_model.model.${hfModuleName(layer, proj)}`;
}

/** W [out, in] + scale · B [out, r] · A [r, in] as a new row-major float32 array; W is not modified. */
export function mergeFactors(
  w: Float32Array,
  out: number,
  inp: number,
  a: tf.Tensor2D,
  b: tf.Tensor2D,
  scale: number,
): Float32Array {
  const merged = tf.tidy(() => tf.add(tf.tensor2d(w, [out, inp]), tf.mul(tf.matMul(b, a), scale)));
  // read outside the tidy: on wasm a dataSync inside tf.tidy measured ~100x slower (5 s vs 50 ms at 2048x2048)
  const data = merged.dataSync() as Float32Array;
  merged.dispose();
  return data;
}

/** A frozen base Linear plus trainable low-rank factors A [r, in] and B [out, r]. */
export class LoraLinear implements Linear {
  readonly A: tf.Variable<tf.Rank.R2>; // [r, in]
  readonly B: tf.Variable<tf.Rank.R2>; // [out, r]
  /** Dropout on the adapter input is active only while training. */
  training = false;

  constructor(
    readonly base: Linear,
    readonly r: number,
    readonly scale: number,
    readonly dropout: number,
    a: Float32Array,
    b: Float32Array,
    /** Seed for the next dropout mask (shared by all layers of one adapter). */
    private readonly nextDropoutSeed: () => number,
  ) {
    // tidy: tf.variable copies its initial value, which would otherwise stay allocated
    [this.A, this.B] = tf.tidy(() => [
      tf.variable(tf.tensor2d(a, [r, base.inFeatures]), true),
      tf.variable(tf.tensor2d(b, [base.outFeatures, r]), true),
    ]);
  }

  get inFeatures(): number {
    return this.base.inFeatures;
  }
  get outFeatures(): number {
    return this.base.outFeatures;
  }
  get bias(): Float32Array | null {
    return this.base.bias;
  }

  apply(x: tf.Tensor2D): tf.Tensor2D {
    return tf.tidy(() => {
      const y = this.base.apply(x); // [n, out]
      const h =
        this.training && this.dropout > 0
          ? (tf.dropout(x, this.dropout, undefined, this.nextDropoutSeed()) as tf.Tensor2D)
          : x;
      // x A^T then B^T: two thin matmuls, never the [out, in] product B·A; the scale applied on the thin side
      return addLowRank(y, h, this.A, this.B, this.scale);
    });
  }

  trainableVariables(): tf.Variable[] {
    return [this.A, this.B];
  }

  /** The frozen base weight [out, in]; the adapter's contribution is in `mergedWeight()`. */
  denseWeight(): Float32Array {
    return this.base.denseWeight();
  }

  /** W + scale · B·A, row-major [out, in] float32 (W dequantized when the base is quantized). */
  mergedWeight(): Float32Array {
    return mergeFactors(this.base.denseWeight(), this.outFeatures, this.inFeatures, this.A, this.B, this.scale);
  }

  bytes(): number {
    return this.base.bytes();
  }

  /** Frees the LoRA factors only; the base layer belongs to the model again after detach. */
  disposeFactors(): void {
    this.A.dispose();
    this.B.dispose();
  }

  dispose(): void {
    this.disposeFactors();
    this.base.dispose();
  }
}

export interface LoraModule {
  layer: number;
  proj: LinearName;
  /** PEFT module path, e.g. `base_model.model.model.layers.0.self_attn.q_proj`. */
  name: string;
  linear: LoraLinear;
}

/** A merged projection, computed when `weight()` is called so an export holds one at a time. */
export interface MergedWeight {
  /** Hugging Face tensor name, e.g. `model.layers.0.self_attn.q_proj.weight`. */
  name: string;
  shape: [number, number]; // [out, in]
  weight(): Float32Array;
}

/** The LoRA layers attached to one model: their variables by PEFT key, training mode, detach and merge. */
export class Adapter {
  /** `{module}.lora_A.weight` / `{module}.lora_B.weight` (PEFT keys, no adapter name) -> variable. */
  readonly variables = new Map<string, tf.Variable>();

  constructor(
    readonly config: LoraConfig,
    readonly modules: LoraModule[],
    private readonly weights: LlamaWeights,
    private readonly dropout: { rng: Rng },
  ) {
    for (const m of modules) {
      this.variables.set(`${m.name}.lora_A.weight`, m.linear.A);
      this.variables.set(`${m.name}.lora_B.weight`, m.linear.B);
    }
  }

  get scale(): number {
    return loraScale(this.config);
  }

  trainableVariables(): tf.Variable[] {
    return [...this.variables.values()];
  }

  /** Number of trainable parameters: r·(in + out) per adapted projection. */
  numParams(): number {
    return this.modules.reduce((s, m) => s + m.linear.r * (m.linear.inFeatures + m.linear.outFeatures), 0);
  }

  setTraining(training: boolean): void {
    for (const m of this.modules) m.linear.training = training;
  }

  /** Dropout stream state, so a resumed run draws the same masks. */
  dropoutState(): RngState {
    return this.dropout.rng.state();
  }

  setDropoutState(state: RngState): void {
    this.dropout.rng = new Rng(state);
  }

  /** Puts the base layers back into the model and frees the factors; the adapter is unusable afterwards. */
  detach(): void {
    for (const m of this.modules) {
      const layer = this.weights.layers[m.layer];
      if (layer.proj[m.proj] !== m.linear) throw new Error(`${m.name} was replaced while the adapter was attached`);
      layer.proj[m.proj] = m.linear.base;
      m.linear.disposeFactors();
    }
    this.variables.clear();
  }

  /** W + scale·B·A for every adapted projection, lazily, in model order. */
  merge(): MergedWeight[] {
    return this.modules.map((m) => ({
      name: `${hfModuleName(m.layer, m.proj)}.weight`,
      shape: [m.linear.outFeatures, m.linear.inFeatures],
      weight: () => m.linear.mergedWeight(),
    }));
  }
}

/**
 * Wraps the targeted projections of `w` in place with fresh LoRA layers, initialized as PEFT's
 * `reset_lora_parameters` does: A ~ kaiming_uniform_(a=sqrt(5)) = U(-1/sqrt(in), 1/sqrt(in)), B = 0,
 * so the model's output is unchanged until B trains. Same seed, same A and the same dropout masks.
 * `source` names where `cfg` came from in error messages.
 */
export function attachLora(w: LlamaWeights, cfg: LoraConfig, seed: number, source = 'LoRA config'): Adapter {
  const numLayers = w.layers.length;
  validateLoraConfig(cfg, numLayers, source);
  for (const [i, layer] of w.layers.entries()) {
    for (const p of LINEAR_NAMES) {
      if (layer.proj[p] instanceof LoraLinear)
        throw new FtError(`${hfModuleName(i, p)} already has a LoRA adapter attached`);
    }
  }
  const rng = new Rng(seed);
  const dropout = { rng: rng.fork() };
  const nextDropoutSeed = () => dropout.rng.nextU32();
  const scale = loraScale(cfg);
  const layers = cfg.layersToTransform ?? [...Array(numLayers).keys()];
  const modules: LoraModule[] = [];
  for (const i of [...new Set(layers)].sort((a, b) => a - b)) {
    for (const proj of targetNames(cfg)) {
      const base = w.layers[i].proj[proj];
      const bound = 1 / Math.sqrt(base.inFeatures);
      const a = new Float32Array(cfg.r * base.inFeatures);
      for (let k = 0; k < a.length; k++) a[k] = (2 * rng.next() - 1) * bound;
      const b = new Float32Array(base.outFeatures * cfg.r);
      const linear = new LoraLinear(base, cfg.r, scale, cfg.dropout, a, b, nextDropoutSeed);
      w.layers[i].proj[proj] = linear;
      modules.push({ layer: i, proj, name: peftModuleName(i, proj), linear });
    }
  }
  return new Adapter(cfg, modules, w, dropout);
}

/**
 * Parameter counts like PEFT's `print_trainable_parameters`:
 * `trainable params: 1,234 || all params: 5,678 || trainable%: 21.7330`.
 * All params = embeddings + norms + every projection's out·in (+ bias) + lm_head (untied) + the LoRA factors.
 * A quantized projection counts its original out·in weights, which is what PEFT's "packed params × 2" for a
 * bitsandbytes 4-bit layer amounts to; quantization constants (absmax, code) are not parameters.
 */
export function countParams(w: LlamaWeights, adapter: Adapter): { trainable: number; all: number } {
  const linear = (l: Linear) => l.inFeatures * l.outFeatures + (l.bias?.length ?? 0);
  let all = w.embedTokens.size + w.norm.size + (w.lmHead ? linear(w.lmHead) : 0);
  for (const layer of w.layers) {
    all += layer.inputLayernorm.size + layer.postAttentionLayernorm.size;
    for (const p of LINEAR_NAMES) all += linear(layer.proj[p]); // a LoraLinear reports its base's shape and bias
  }
  const trainable = adapter.numParams();
  return { trainable, all: all + trainable };
}

export function formatTrainableParams(w: LlamaWeights, adapter: Adapter): string {
  const { trainable, all } = countParams(w, adapter);
  const n = (x: number) => x.toLocaleString('en-US');
  return `trainable params: ${n(trainable)} || all params: ${n(all)} || trainable%: ${((100 * trainable) / all).toFixed(4)}`;
}
