// A Hugging Face model folder: config.json + model.safetensors, or shards listed by model.safetensors.index.json.
// Tensors stream one at a time; loadLlama builds each projection through a LinearFactory as soon as it is read.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { FtError } from '../util/errors.ts';
import { isBareFileName } from '../util/fs.ts';
import { progress } from '../util/progress.ts';
import { readConfig } from './config.ts';
import { denseLinear, type Linear, type LinearFactory } from './linear.ts';
import { SafetensorsFile, type RawTensor, type TensorData } from './safetensors.ts';
import {
  LINEAR_NAMES,
  hfModuleName,
  type LinearName,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
} from './types.ts';

export const SINGLE_FILE = 'model.safetensors';
export const INDEX_FILE = 'model.safetensors.index.json';

export interface ModelDir {
  dir: string;
  config: LlamaConfig;
  /** Every tensor name across all shards. */
  names(): string[];
  has(name: string): boolean;
  /** The tensor as float32; errors name the tensor and the folder when absent. */
  read(name: string): Promise<TensorData>;
  /** The tensor's bytes as stored, for exact copies. */
  readRaw(name: string): Promise<RawTensor>;
  close(): Promise<void>;
}

async function exists(file: string): Promise<boolean> {
  return fsp.stat(file).then(
    (s) => s.isFile(),
    () => false,
  );
}

/** weight_map of the shard index: tensor name -> shard file name. */
async function readIndex(file: string): Promise<Map<string, string>> {
  let json: { weight_map?: unknown };
  try {
    json = JSON.parse(await fsp.readFile(file, 'utf8'));
  } catch (e) {
    throw new FtError(`${file}: cannot read as JSON (${(e as Error).message})`);
  }
  const map = json?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map) || !Object.values(map).every(isBareFileName)) {
    throw new FtError(`${file}: field 'weight_map' must map tensor names to shard file names in the same folder`);
  }
  return new Map(Object.entries(map as Record<string, string>));
}

/** Opens a model folder: validates config.json and every safetensors header, reads no tensor data yet. */
export async function openModelDir(dir: string): Promise<ModelDir> {
  const config = await readConfig(dir);
  const where = new Map<string, SafetensorsFile>(); // tensor name -> its file
  const files: SafetensorsFile[] = [];
  try {
    if (await exists(path.join(dir, SINGLE_FILE))) {
      const f = await SafetensorsFile.open(path.join(dir, SINGLE_FILE));
      files.push(f);
      for (const n of f.names()) where.set(n, f);
    } else if (await exists(path.join(dir, INDEX_FILE))) {
      const index = await readIndex(path.join(dir, INDEX_FILE));
      const shards = new Map<string, SafetensorsFile>();
      for (const [tensor, shard] of index) {
        let f = shards.get(shard);
        if (!f) {
          const file = path.join(dir, shard);
          if (!(await exists(file)))
            throw new FtError(
              `${path.join(dir, INDEX_FILE)} places '${tensor}' in shard '${shard}', but ${file} is absent`,
            );
          f = await SafetensorsFile.open(file);
          shards.set(shard, f);
          files.push(f);
        }
        if (!f.tensors.has(tensor))
          throw new FtError(
            `${path.join(dir, INDEX_FILE)} places '${tensor}' in shard '${shard}', but that shard has no such tensor`,
          );
        where.set(tensor, f);
      }
    } else {
      throw new FtError(
        `${dir}: no ${SINGLE_FILE} or ${INDEX_FILE} (expected safetensors weights; .bin/.pth checkpoints are not supported)`,
      );
    }
  } catch (e) {
    await Promise.all(files.map((f) => f.close()));
    throw e;
  }

  const fileOf = (name: string) => {
    const f = where.get(name);
    if (!f)
      throw new FtError(`${dir}: missing tensor '${name}' (not in ${files.length > 1 ? INDEX_FILE : SINGLE_FILE})`);
    return f;
  };
  return {
    dir,
    config,
    names: () => [...where.keys()],
    has: (name) => where.has(name),
    read: (name) => fileOf(name).read(name),
    readRaw: (name) => fileOf(name).readRaw(name),
    close: async () => {
      await Promise.all(files.map((f) => f.close()));
    },
  };
}

/** Expected shape of every tensor a Llama-family checkpoint holds, in load order. */
export function expectedTensors(c: LlamaConfig): { name: string; shape: number[] }[] {
  const q = c.numAttentionHeads * c.headDim;
  const kv = c.numKeyValueHeads * c.headDim;
  const out: Record<LinearName, number> = {
    q_proj: q,
    k_proj: kv,
    v_proj: kv,
    o_proj: c.hiddenSize,
    gate_proj: c.intermediateSize,
    up_proj: c.intermediateSize,
    down_proj: c.hiddenSize,
  };
  const inp: Record<LinearName, number> = {
    q_proj: c.hiddenSize,
    k_proj: c.hiddenSize,
    v_proj: c.hiddenSize,
    o_proj: q,
    gate_proj: c.hiddenSize,
    up_proj: c.hiddenSize,
    down_proj: c.intermediateSize,
  };
  const list = [{ name: 'model.embed_tokens.weight', shape: [c.vocabSize, c.hiddenSize] }];
  for (let i = 0; i < c.numHiddenLayers; i++) {
    list.push({ name: `model.layers.${i}.input_layernorm.weight`, shape: [c.hiddenSize] });
    list.push({ name: `model.layers.${i}.post_attention_layernorm.weight`, shape: [c.hiddenSize] });
    for (const p of LINEAR_NAMES) {
      list.push({ name: `${hfModuleName(i, p)}.weight`, shape: [out[p], inp[p]] });
      if (c.attentionBias && (p === 'q_proj' || p === 'k_proj' || p === 'v_proj'))
        list.push({ name: `${hfModuleName(i, p)}.bias`, shape: [out[p]] });
    }
  }
  list.push({ name: 'model.norm.weight', shape: [c.hiddenSize] });
  if (!c.tieWordEmbeddings) list.push({ name: 'lm_head.weight', shape: [c.vocabSize, c.hiddenSize] });
  return list;
}

export type TensorSource = (name: string) => TensorData | Promise<TensorData>;

/**
 * Builds LlamaWeights from named tensors (a folder, or an in-memory map in tests), checking each shape
 * against the config. Projections go through `linear` right after their weight (and bias) is read,
 * so at most one float tensor is in flight. On error every tensor built so far is disposed.
 */
export async function weightsFromTensors(
  config: LlamaConfig,
  get: TensorSource,
  linear: LinearFactory = denseLinear,
  opts: { onTensor?: (done: number, total: number) => void /** names the source in errors */; source?: string } = {},
): Promise<LlamaWeights> {
  const plan = expectedTensors(config);
  const shapes = new Map(plan.map((t) => [t.name, t.shape]));
  let done = 0;
  const owned: { dispose(): void }[] = [];
  const fetch = async (name: string): Promise<Float32Array> => {
    const t = await get(name);
    const want = shapes.get(name)!;
    if (t.shape.length !== want.length || t.shape.some((d, i) => d !== want[i])) {
      throw new FtError(
        `${opts.source ? opts.source + ': ' : ''}tensor '${name}' has shape [${t.shape.join(', ')}], but the config needs [${want.join(', ')}]`,
      );
    }
    opts.onTensor?.(++done, plan.length);
    return t.data;
  };
  const keep = <T extends { dispose(): void }>(x: T): T => (owned.push(x), x);
  const vector = async (name: string) => keep(tf.tensor1d(await fetch(name)));
  const project = async (prefix: string, name: string, withBias: boolean, factory = linear): Promise<Linear> => {
    const w = await fetch(`${prefix}.weight`);
    const b = withBias ? await fetch(`${prefix}.bias`) : null;
    const [out, inp] = shapes.get(`${prefix}.weight`)!;
    return keep(factory(name, w, out, inp, b));
  };

  try {
    const embedTokens = keep(
      tf.tensor2d(await fetch('model.embed_tokens.weight'), [config.vocabSize, config.hiddenSize]),
    );
    const layers: LlamaLayer[] = [];
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const inputLayernorm = await vector(`model.layers.${i}.input_layernorm.weight`);
      const postAttentionLayernorm = await vector(`model.layers.${i}.post_attention_layernorm.weight`);
      const proj = {} as Record<LinearName, Linear>;
      for (const p of LINEAR_NAMES) {
        const prefix = hfModuleName(i, p);
        proj[p] = await project(
          prefix,
          prefix,
          config.attentionBias && (p === 'q_proj' || p === 'k_proj' || p === 'v_proj'),
        );
      }
      layers.push({ inputLayernorm, postAttentionLayernorm, proj });
    }
    const norm = await vector('model.norm.weight');
    // lm_head stays float32 whatever `linear` does, as transformers leaves it out of bitsandbytes quantization
    const lmHead = config.tieWordEmbeddings ? null : await project('lm_head', 'lm_head', false, denseLinear);
    return { config, embedTokens, layers, norm, lmHead };
  } catch (e) {
    for (const x of owned) x.dispose();
    throw e;
  }
}

export interface LoadOptions {
  /** Builds each projection: float (default) or quantized. */
  linear?: LinearFactory;
  onTensor?: (done: number, total: number) => void;
}

/** Loads a Llama-family model folder, one tensor at a time, with a progress bar. */
export async function loadLlama(dir: string, opts: LoadOptions = {}): Promise<LlamaWeights> {
  const model = await openModelDir(dir);
  const bar = progress(`loading ${path.basename(path.resolve(dir))}`, expectedTensors(model.config).length, 'tensors');
  try {
    return await weightsFromTensors(model.config, (name) => model.read(name), opts.linear ?? denseLinear, {
      source: dir,
      onTensor: (done, total) => {
        bar.update(done);
        opts.onTensor?.(done, total);
      },
    });
  } finally {
    bar.stop();
    await model.close();
  }
}
