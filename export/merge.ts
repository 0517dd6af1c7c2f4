// A merged model: every projection W + scale·B·A, written as a Hugging Face model folder exactly as
// transformers' `save_pretrained` lays it out (config.json, tokenizer files, safetensors shards + index).
// Tensors come from an in-memory model (`modelTensors`) or stream from the base folder (`mergedTensorsFromDir`).
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { loraScale, mergeFactors, type Adapter } from '../adapters/lora.ts';
import { checkAgainstModel, readPeftAdapter, type PeftAdapterFiles } from '../adapters/peft.ts';
import type { LinearFactory } from '../model/linear.ts';
import { expectedTensors, INDEX_FILE, openModelDir, SINGLE_FILE, type ModelDir } from '../model/load.ts';
import { DTYPE_BYTES, numel, writeSafetensors, type FloatDtype } from '../model/safetensors.ts';
import { LINEAR_NAMES, hfModuleName, type LlamaConfig, type LlamaWeights } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { writeDirAtomic, writeFileAtomic } from '../util/fs.ts';
import { assertOutsideInputs, assertReplaceable } from '../util/owned-dir.ts';
import { progress } from '../util/progress.ts';

/** config.json `torch_dtype` -> safetensors dtype. */
export const EXPORT_DTYPES = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' } as const satisfies Record<
  string,
  FloatDtype
>;
export type ExportDtype = keyof typeof EXPORT_DTYPES;

/** Files of a model folder that travel with the weights unchanged. */
export const TOKENIZER_FILES = [
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'added_tokens.json',
  'vocab.json',
  'merges.txt',
  'chat_template.jinja',
  'generation_config.json',
];

/** huggingface_hub's units (decimal, as `save_pretrained(max_shard_size="2GB")`), plus plain byte counts. */
const SIZE_UNITS: Record<string, number> = { TB: 1e12, GB: 1e9, MB: 1e6, KB: 1e3 };

/** "2GB" -> 2_000_000_000; "500MB", "1.5GB", "4096" (bytes). */
export function parseShardSize(s: string | number, field = '--max-shard-size'): number {
  if (typeof s === 'number' || /^\d+$/.test(s.trim())) {
    const n = Number(s);
    if (Number.isSafeInteger(n) && n > 0) return n;
  } else {
    const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGT]B)\s*$/i.exec(s);
    if (m) {
      const n = Math.floor(Number(m[1]) * SIZE_UNITS[m[2].toUpperCase()]);
      if (n > 0) return n;
    }
  }
  throw new FtError(
    `${field}: ${JSON.stringify(s)} is not a size: expected a byte count or a number with KB, MB, GB or TB (e.g. 2GB)`,
  );
}

export interface ShardPlan {
  /** Shard file -> tensor names, in write order. */
  shards: { file: string; names: string[] }[];
  /** Tensor name -> shard file (the index's weight_map). */
  weightMap: Record<string, string>;
  /** Sum of all tensor bytes (the index's metadata.total_size). */
  totalSize: number;
}

/**
 * huggingface_hub's `split_state_dict_into_shards_factory`: walk tensors in order, start a new shard when the
 * next tensor would tip the current one over the limit; a tensor larger than the limit gets a shard of its own.
 * One shard is `model.safetensors`; more are `model-00001-of-0000N.safetensors`.
 */
export function planShards(tensors: { name: string; bytes: number }[], maxShardSize: number): ShardPlan {
  const groups: string[][] = [];
  let current: string[] = [];
  let currentSize = 0;
  let totalSize = 0;
  for (const t of tensors) {
    totalSize += t.bytes;
    if (t.bytes > maxShardSize) {
      groups.push([t.name]);
      continue;
    }
    if (currentSize + t.bytes > maxShardSize) {
      groups.push(current);
      current = [];
      currentSize = 0;
    }
    current.push(t.name);
    currentSize += t.bytes;
  }
  if (current.length) groups.push(current);
  const n = groups.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const shards = groups.map((names, i) => ({
    file: n === 1 ? SINGLE_FILE : `model-${pad(i + 1)}-of-${pad(n)}.safetensors`,
    names,
  }));
  const weightMap: Record<string, string> = {};
  for (const s of shards) for (const name of s.names) weightMap[name] = s.file;
  return { shards, weightMap, totalSize };
}

/** A tensor of the exported model, produced when the writer reaches it. */
export interface ExportTensor {
  name: string;
  shape: number[];
  data: () => Float32Array | Promise<Float32Array>;
}

/**
 * Every tensor of `w` under its Hugging Face name, in checkpoint order, adapted projections replaced by
 * W + scale·B·A. Quantized projections are dequantized (Linear.denseWeight). Nothing is computed until read.
 */
export function modelTensors(w: LlamaWeights, adapter: Adapter | null): ExportTensor[] {
  const merged = new Map((adapter?.merge() ?? []).map((m) => [m.name, m.weight]));
  const sources = new Map<string, () => Float32Array>();
  const read = (t: { dataSync(): unknown }) => () => t.dataSync() as Float32Array;
  sources.set('model.embed_tokens.weight', read(w.embedTokens));
  sources.set('model.norm.weight', read(w.norm));
  w.layers.forEach((layer, i) => {
    sources.set(`model.layers.${i}.input_layernorm.weight`, read(layer.inputLayernorm));
    sources.set(`model.layers.${i}.post_attention_layernorm.weight`, read(layer.postAttentionLayernorm));
    for (const p of LINEAR_NAMES) {
      const prefix = hfModuleName(i, p);
      // a LoraLinear's denseWeight is its frozen base, so an unmerged export would silently drop the adapter
      sources.set(`${prefix}.weight`, merged.get(`${prefix}.weight`) ?? (() => layer.proj[p].denseWeight()));
      const bias = layer.proj[p].bias;
      if (bias) sources.set(`${prefix}.bias`, () => bias);
    }
  });
  if (w.lmHead) {
    const head = w.lmHead;
    sources.set('lm_head.weight', () => head.denseWeight());
  }
  return expectedTensors(w.config).map(({ name, shape }) => {
    const data = sources.get(name);
    if (!data) throw new Error(`no source for ${name}`);
    return { name, shape, data };
  });
}

/** Tensors a model load builds through its LinearFactory (as weightsFromTensors does): the projections (lm_head stays float). */
const isLinearWeight = (name: string) => name.endsWith('_proj.weight');

/**
 * The merged model streamed from a model folder, one tensor in memory at a time: each linear weight optionally
 * goes through `linear` and back to float (so a quantized factory yields exactly the dequantized weight a
 * quantized load trains against), then targeted projections get + scale·B·A from `adapter` (none: the base as it is).
 */
export function mergedTensorsFromDir(
  model: ModelDir,
  adapter: PeftAdapterFiles | null,
  linear?: LinearFactory,
): ExportTensor[] {
  const scale = adapter ? loraScale(adapter.config) : 0;
  return expectedTensors(model.config).map(({ name, shape }) => ({
    name,
    shape,
    data: async () => {
      let w = (await model.read(name)).data;
      if (!isLinearWeight(name)) return w;
      const [out, inp] = shape;
      if (linear) {
        const l = linear(name, w, out, inp, null);
        w = l.denseWeight();
        l.dispose();
      }
      const prefix = `base_model.model.${name.slice(0, -'.weight'.length)}`;
      const a = adapter?.tensors.get(`${prefix}.lora_A.weight`);
      const b = adapter?.tensors.get(`${prefix}.lora_B.weight`);
      if (!a || !b) return w;
      const [A, B] = [
        tf.tensor2d(a.data, a.shape as [number, number]),
        tf.tensor2d(b.data, b.shape as [number, number]),
      ];
      try {
        return mergeFactors(w, out, inp, A, B, scale);
      } finally {
        tf.dispose([A, B]);
      }
    },
  }));
}

export interface SaveOptions {
  dtype: ExportDtype;
  /** Bytes per shard (see parseShardSize). */
  maxShardSize: number;
  /** A model folder whose tokenizer and generation files are copied. */
  copyFrom?: string;
  /** Replace `out` even when it is not a model folder ft wrote. */
  overwrite?: boolean;
}

/**
 * Writes `tensors` as a Hugging Face model folder, atomically: `rawConfig` as config.json with torch_dtype set,
 * tokenizer files copied, weights converted and sharded one tensor at a time, with an index when sharded.
 */
export async function saveHfModel(
  out: string,
  tensors: ExportTensor[],
  rawConfig: Record<string, unknown>,
  opts: SaveOptions,
): Promise<ShardPlan> {
  const st = EXPORT_DTYPES[opts.dtype];
  if (!st)
    throw new FtError(`--dtype: ${JSON.stringify(opts.dtype)} is not one of ${Object.keys(EXPORT_DTYPES).join(', ')}`);
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const plan = planShards(
    tensors.map((t) => ({ name: t.name, bytes: numel(t.shape) * DTYPE_BYTES[st] })),
    opts.maxShardSize,
  );
  const config: Record<string, unknown> = { ...rawConfig, torch_dtype: opts.dtype };
  if ('dtype' in rawConfig) config.dtype = opts.dtype; // transformers >= 4.56 writes `dtype`
  await writeDirAtomic(
    out,
    async (tmp) => {
      await writeFileAtomic(path.join(tmp, 'config.json'), JSON.stringify(config, null, 2) + '\n');
      if (opts.copyFrom) {
        for (const f of TOKENIZER_FILES) {
          await fsp.copyFile(path.join(opts.copyFrom, f), path.join(tmp, f)).catch((e: NodeJS.ErrnoException) => {
            if (e.code !== 'ENOENT') throw e;
          });
        }
      }
      const bar = progress('writing', tensors.length, 'tensors');
      let done = 0;
      for (const shard of plan.shards) {
        const entries = shard.names.map((name) => {
          const t = byName.get(name)!;
          return { name, dtype: st, shape: t.shape, data: () => (bar.update(++done), t.data()) };
        });
        await writeSafetensors(path.join(tmp, shard.file), entries, { format: 'pt' });
      }
      bar.stop();
      if (plan.shards.length > 1) {
        const index = { metadata: { total_size: plan.totalSize }, weight_map: sortKeys(plan.weightMap) };
        await writeFileAtomic(path.join(tmp, INDEX_FILE), JSON.stringify(index, null, 2) + '\n');
      }
    },
    { kind: 'model', overwrite: opts.overwrite },
  );
  return plan;
}

function sortKeys<T>(o: Record<string, T>): Record<string, T> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** An adapter's factors against a base config: block indices and A/B shapes of every projection (errors name the tensor). */
export function checkAdapterFits(adapter: PeftAdapterFiles, config: LlamaConfig): void {
  const shapes = new Map(expectedTensors(config).map((t) => [t.name, t.shape]));
  checkAgainstModel(
    adapter,
    config.numHiddenLayers,
    (i, p) => shapes.get(`${hfModuleName(i, p)}.weight`) as [number, number],
  );
}

export interface MergeOptions extends Omit<SaveOptions, 'dtype'> {
  model: string;
  out: string;
  /** Default: the base's own torch_dtype when it is one of EXPORT_DTYPES, else float32. */
  dtype?: ExportDtype;
  adapter: string;
  /** Builds the base's projections; a quantized factory makes the merge go into dequantized weights. */
  linear?: LinearFactory;
  /** Name of the base's quantization (e.g. 'nf4') when `linear` quantizes, for the warning. */
  quantized?: string;
  warn?: (msg: string) => void;
}

/** The QLoRA merge trap, said once whenever the base was quantized. */
export function quantizedMergeWarning(kind: string, dtype: ExportDtype): string {
  return (
    `warning: the base is ${kind}-quantized, so the adapter is merged into the dequantized ${kind} weights. ` +
    `The ${dtype} model written equals base(${kind}) + adapter as trained, not the original full-precision base + adapter, ` +
    `and quantizing the merged model again (e.g. loading it in 4-bit) changes its outputs: evaluate the merged model before shipping it.`
  );
}

/** The dtype a config.json declares (`torch_dtype`, or `dtype` in newer transformers), if ft can write it. */
export function declaredDtype(raw: Record<string, unknown>): ExportDtype | null {
  const d = raw.torch_dtype ?? raw.dtype;
  return typeof d === 'string' && d in EXPORT_DTYPES ? (d as ExportDtype) : null;
}

/**
 * `ft export merged`: base model folder + PEFT adapter folder -> merged Hugging Face model folder, streamed
 * tensor by tensor (the base is never fully in memory). With a quantizing `linear`, the merge goes into the
 * dequantized weights and `warn` is told why that matters.
 */
export async function exportMerged(opts: MergeOptions): Promise<ShardPlan & { dtype: ExportDtype }> {
  const warn = opts.warn ?? ((m: string) => process.stderr.write(m + '\n'));
  const inputs = [
    { flag: '--model', path: opts.model },
    { flag: '--adapter', path: opts.adapter },
  ];
  assertOutsideInputs(
    { flag: '--out', path: opts.out },
    opts.copyFrom ? [...inputs, { flag: 'tokenizer', path: opts.copyFrom }] : inputs,
  );
  // before any weight is read: `out` is replaced whole
  if (!opts.overwrite) await assertReplaceable(opts.out, 'model', 'pass --overwrite to replace it');
  const adapter = await readPeftAdapter(opts.adapter);
  const model = await openModelDir(opts.model);
  try {
    checkAdapterFits(adapter, model.config);
    const dtype = opts.dtype ?? declaredDtype(model.config.raw) ?? 'float32';
    if (opts.quantized) warn(quantizedMergeWarning(opts.quantized, dtype));
    const tensors = mergedTensorsFromDir(model, adapter, opts.linear);
    const plan = await saveHfModel(opts.out, tensors, model.config.raw, {
      dtype,
      maxShardSize: opts.maxShardSize,
      copyFrom: opts.copyFrom ?? opts.model,
      overwrite: opts.overwrite,
    });
    return { ...plan, dtype };
  } finally {
    await model.close();
  }
}
