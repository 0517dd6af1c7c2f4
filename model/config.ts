// config.json of a Hugging Face Llama-family checkpoint -> LlamaConfig, validated with one clear error per bad field.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { z } from 'zod';
import { FtError } from '../util/errors.ts';
import type { Architecture, LlamaConfig, RopeScaling } from './types.ts';

export const ARCHITECTURES: Record<Architecture, string> = {
  LlamaForCausalLM: 'llama',
  MistralForCausalLM: 'mistral',
  Qwen2ForCausalLM: 'qwen2',
};

const posInt = () => z.number().int().positive();
const tokenId = () => z.number().int().nonnegative();

// Each field's description is what the error message says was expected.
const ConfigJson = z.object({
  hidden_size: posInt().describe('a positive integer'),
  intermediate_size: posInt().describe('a positive integer'),
  num_hidden_layers: posInt().describe('a positive integer'),
  num_attention_heads: posInt().describe('a positive integer'),
  num_key_value_heads: posInt().optional().describe('a positive integer dividing num_attention_heads'),
  head_dim: posInt().optional().describe('a positive integer'),
  rms_norm_eps: z.number().positive().describe('a positive number'),
  rope_theta: z.number().positive().optional().describe('a positive number'),
  rope_scaling: z.record(z.string(), z.unknown()).nullable().optional().describe('an object or null'),
  vocab_size: posInt().describe('a positive integer'),
  max_position_embeddings: posInt().describe('a positive integer'),
  tie_word_embeddings: z.boolean().optional().describe('true or false'),
  attention_bias: z.boolean().optional().describe('true or false'),
  bos_token_id: tokenId().nullable().optional().describe('a token id or null'),
  eos_token_id: z
    .union([tokenId(), z.array(tokenId())])
    .nullable()
    .optional()
    .describe('a token id or a list of token ids'),
});

const Llama3RopeJson = z.object({
  factor: z.number().positive().describe('a positive number'),
  low_freq_factor: z.number().positive().describe('a positive number'),
  high_freq_factor: z.number().positive().describe('a positive number'),
  original_max_position_embeddings: posInt().describe('a positive integer'),
});

/** Parses with `schema`, turning the first issue into `file: missing field 'x' (expected ...)` or `file: field 'x' is V (expected ...)`. */
function parseFields<S extends z.ZodObject>(
  schema: S,
  json: Record<string, unknown>,
  file: string,
  prefix = '',
): z.infer<S> {
  const r = schema.safeParse(json);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  const key = String(issue.path[0]);
  const expected = (schema.shape[key] as z.ZodType | undefined)?.description ?? issue.message;
  const value = json[key];
  if (value === undefined) throw new FtError(`${file}: missing field '${prefix}${key}' (expected ${expected})`);
  throw new FtError(`${file}: field '${prefix}${key}' is ${short(value)} (expected ${expected})`);
}

function short(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function architectureOf(json: Record<string, unknown>, file: string): Architecture {
  const supported = Object.keys(ARCHITECTURES) as Architecture[];
  const archs = json.architectures;
  if (archs !== undefined) {
    if (!Array.isArray(archs) || archs.length === 0 || !archs.every((a) => typeof a === 'string')) {
      throw new FtError(`${file}: field 'architectures' is ${short(archs)} (expected a non-empty list of names)`);
    }
    const found = archs.find((a): a is Architecture => supported.includes(a as Architecture));
    if (!found)
      throw new FtError(
        `${file}: architecture '${archs.join("', '")}' is not supported (expected one of ${supported.join(', ')})`,
      );
    return found;
  }
  // Some configs name only model_type
  const byType = supported.find((a) => ARCHITECTURES[a] === json.model_type);
  if (!byType) {
    throw new FtError(
      `${file}: neither 'architectures' nor a supported 'model_type' (got ${short(json.model_type)}; expected one of ${supported.join(', ')})`,
    );
  }
  return byType;
}

function ropeScalingOf(raw: Record<string, unknown> | null | undefined, file: string): RopeScaling | null {
  if (!raw) return null;
  const type = raw.rope_type ?? raw.type;
  if (type === 'default') return null;
  if (type !== 'llama3')
    throw new FtError(
      `${file}: rope_scaling type ${short(type)} is not supported (expected 'llama3', 'default' or null)`,
    );
  const r = parseFields(Llama3RopeJson, raw, file, 'rope_scaling.');
  return {
    type: 'llama3',
    factor: r.factor,
    lowFreqFactor: r.low_freq_factor,
    highFreqFactor: r.high_freq_factor,
    originalMaxPositionEmbeddings: r.original_max_position_embeddings,
  };
}

/** Validates a parsed config.json; `file` names it in errors. */
export function parseConfig(json: unknown, file: string): LlamaConfig {
  if (!isObject(json)) throw new FtError(`${file}: expected a JSON object`);
  const architecture = architectureOf(json, file);
  const c = parseFields(ConfigJson, json, file);
  const numKeyValueHeads = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % numKeyValueHeads !== 0) {
    throw new FtError(
      `${file}: num_key_value_heads ${numKeyValueHeads} does not divide num_attention_heads ${c.num_attention_heads}`,
    );
  }
  const headDim = c.head_dim ?? c.hidden_size / c.num_attention_heads;
  if (!Number.isInteger(headDim)) {
    throw new FtError(
      `${file}: hidden_size ${c.hidden_size} is not a multiple of num_attention_heads ${c.num_attention_heads} (give head_dim)`,
    );
  }
  if (headDim % 2 !== 0) throw new FtError(`${file}: head dimension ${headDim} must be even for rotary embeddings`);
  const eos = c.eos_token_id;
  return {
    architecture,
    hiddenSize: c.hidden_size,
    intermediateSize: c.intermediate_size,
    numHiddenLayers: c.num_hidden_layers,
    numAttentionHeads: c.num_attention_heads,
    numKeyValueHeads,
    headDim,
    rmsNormEps: c.rms_norm_eps,
    ropeTheta: c.rope_theta ?? 10000,
    ropeScaling: ropeScalingOf(c.rope_scaling, file),
    vocabSize: c.vocab_size,
    maxPositionEmbeddings: c.max_position_embeddings,
    tieWordEmbeddings: c.tie_word_embeddings ?? false,
    attentionBias: architecture === 'Qwen2ForCausalLM' ? true : (c.attention_bias ?? false),
    bosTokenId: c.bos_token_id ?? null,
    eosTokenIds: eos == null ? [] : Array.isArray(eos) ? eos : [eos],
    raw: json,
  };
}

/** Reads and validates `dir/config.json`. */
export async function readConfig(dir: string): Promise<LlamaConfig> {
  const file = path.join(dir, 'config.json');
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new FtError(
      `${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message}); expected a Hugging Face model folder`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new FtError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const config = parseConfig(json, file);
  const stops = await generationEosIds(dir);
  return stops.length ? { ...config, eosTokenIds: [...new Set([...config.eosTokenIds, ...stops])] } : config;
}

/**
 * `eos_token_id` of `dir/generation_config.json` (an id or a list, as transformers' GenerationConfig takes it);
 * [] when the file is absent. Generation stops at any of these as well as at config.json's.
 */
export async function generationEosIds(dir: string): Promise<number[]> {
  const file = path.join(dir, 'generation_config.json');
  const text = await fsp.readFile(file, 'utf8').catch(() => null);
  if (text === null) return [];
  let eos: unknown;
  try {
    eos = (JSON.parse(text) as { eos_token_id?: unknown }).eos_token_id;
  } catch (e) {
    throw new FtError(`${file}: not valid JSON (${(e as Error).message})`);
  }
  const ids = eos == null ? [] : Array.isArray(eos) ? eos : [eos];
  if (!ids.every((id) => Number.isInteger(id) && id >= 0))
    throw new FtError(`${file}: eos_token_id: expected a token id or a list of token ids, got ${JSON.stringify(eos)}`);
  return ids as number[];
}

/** The config.json object for `c` in Hugging Face's snake_case (what init-model writes). */
export function configJson(c: Omit<LlamaConfig, 'raw'>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    architectures: [c.architecture],
    model_type: ARCHITECTURES[c.architecture],
    hidden_size: c.hiddenSize,
    intermediate_size: c.intermediateSize,
    num_hidden_layers: c.numHiddenLayers,
    num_attention_heads: c.numAttentionHeads,
    num_key_value_heads: c.numKeyValueHeads,
    head_dim: c.headDim,
    hidden_act: 'silu',
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeTheta,
    rope_scaling: c.ropeScaling && {
      rope_type: 'llama3',
      factor: c.ropeScaling.factor,
      low_freq_factor: c.ropeScaling.lowFreqFactor,
      high_freq_factor: c.ropeScaling.highFreqFactor,
      original_max_position_embeddings: c.ropeScaling.originalMaxPositionEmbeddings,
    },
    vocab_size: c.vocabSize,
    max_position_embeddings: c.maxPositionEmbeddings,
    tie_word_embeddings: c.tieWordEmbeddings,
    attention_bias: c.attentionBias,
    bos_token_id: c.bosTokenId,
    eos_token_id: c.eosTokenIds.length === 1 ? c.eosTokenIds[0] : c.eosTokenIds,
    ...extra,
  };
}
