import { describe, expect, it } from 'vitest';
import { FtError } from '../util/errors.ts';
import { configJson, parseConfig } from './config.ts';

// Abridged from meta-llama/Llama-3.2-1B config.json
const llama32 = {
  architectures: ['LlamaForCausalLM'],
  attention_bias: false,
  bos_token_id: 128000,
  eos_token_id: 128001,
  head_dim: 64,
  hidden_act: 'silu',
  hidden_size: 2048,
  intermediate_size: 8192,
  max_position_embeddings: 131072,
  model_type: 'llama',
  num_attention_heads: 32,
  num_hidden_layers: 16,
  num_key_value_heads: 8,
  rms_norm_eps: 1e-5,
  rope_scaling: {
    factor: 32.0,
    high_freq_factor: 4.0,
    low_freq_factor: 1.0,
    original_max_position_embeddings: 8192,
    rope_type: 'llama3',
  },
  rope_theta: 500000.0,
  tie_word_embeddings: true,
  torch_dtype: 'bfloat16',
  vocab_size: 128256,
};

// Abridged from Qwen/Qwen2.5-0.5B config.json
const qwen2 = {
  architectures: ['Qwen2ForCausalLM'],
  bos_token_id: 151643,
  eos_token_id: 151643,
  hidden_size: 896,
  intermediate_size: 4864,
  max_position_embeddings: 32768,
  model_type: 'qwen2',
  num_attention_heads: 14,
  num_hidden_layers: 24,
  num_key_value_heads: 2,
  rms_norm_eps: 1e-6,
  rope_theta: 1000000.0,
  tie_word_embeddings: true,
  vocab_size: 151936,
};

// TinyLlama-style Llama 2 config: no head_dim, no rope_theta, no tie_word_embeddings
const llama2 = {
  architectures: ['LlamaForCausalLM'],
  hidden_size: 2048,
  intermediate_size: 5632,
  max_position_embeddings: 2048,
  num_attention_heads: 32,
  num_hidden_layers: 22,
  num_key_value_heads: 4,
  rms_norm_eps: 1e-5,
  rope_scaling: null,
  vocab_size: 32000,
  bos_token_id: 1,
  eos_token_id: 2,
};

function errorOf(json: unknown): string {
  try {
    parseConfig(json, 'config.json');
  } catch (e) {
    expect(e).toBeInstanceOf(FtError);
    expect((e as Error).message).not.toContain('\n');
    return (e as Error).message;
  }
  throw new Error('expected parseConfig to fail');
}

describe('parseConfig', () => {
  it('reads a Llama 3.2 config with llama3 rope scaling, GQA and tied embeddings', () => {
    const c = parseConfig(llama32, 'config.json');
    expect(c).toMatchObject({
      architecture: 'LlamaForCausalLM',
      hiddenSize: 2048,
      numKeyValueHeads: 8,
      headDim: 64,
      ropeTheta: 500000,
      ropeScaling: {
        type: 'llama3',
        factor: 32,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 8192,
      },
      tieWordEmbeddings: true,
      attentionBias: false,
      bosTokenId: 128000,
      eosTokenIds: [128001],
    });
    expect(c.raw).toBe(llama32);
  });

  it('applies Llama defaults: kv heads = heads, head_dim = hidden/heads, rope_theta 10000, untied', () => {
    const c = parseConfig({ ...llama2, num_key_value_heads: undefined }, 'config.json');
    expect(c).toMatchObject({
      numKeyValueHeads: 32,
      headDim: 64,
      ropeTheta: 10000,
      ropeScaling: null,
      tieWordEmbeddings: false,
    });
  });

  it('gives Qwen2 q/k/v biases and Llama attention_bias when set', () => {
    expect(parseConfig(qwen2, 'config.json').attentionBias).toBe(true);
    expect(parseConfig({ ...llama2, attention_bias: true }, 'config.json').attentionBias).toBe(true);
    expect(parseConfig({ ...llama2, architectures: ['MistralForCausalLM'] }, 'config.json').architecture).toBe(
      'MistralForCausalLM',
    );
  });

  it('accepts eos as a list and rope scaling under the older key "type"', () => {
    const c = parseConfig(
      {
        ...llama32,
        eos_token_id: [128001, 128008, 128009],
        rope_scaling: { ...llama32.rope_scaling, rope_type: undefined, type: 'llama3' },
      },
      'config.json',
    );
    expect(c.eosTokenIds).toEqual([128001, 128008, 128009]);
    expect(c.ropeScaling?.factor).toBe(32);
  });

  it('falls back to model_type when architectures is absent', () => {
    expect(parseConfig({ ...llama2, architectures: undefined, model_type: 'llama' }, 'config.json').architecture).toBe(
      'LlamaForCausalLM',
    );
  });

  it('round trips through configJson', () => {
    const c = parseConfig(llama32, 'config.json');
    const { raw: _raw, ...rest } = c;
    expect(parseConfig(configJson(rest), 'config.json')).toEqual({ ...c, raw: configJson(rest) });
  });
});

describe('parseConfig errors name the field and what was expected', () => {
  it('a missing field', () => {
    const { hidden_size: _h, ...rest } = llama2;
    expect(errorOf(rest)).toBe("config.json: missing field 'hidden_size' (expected a positive integer)");
  });

  it('a wrongly typed field', () => {
    expect(errorOf({ ...llama2, num_hidden_layers: '22' })).toBe(
      `config.json: field 'num_hidden_layers' is "22" (expected a positive integer)`,
    );
    expect(errorOf({ ...llama2, rms_norm_eps: -1 })).toBe(
      "config.json: field 'rms_norm_eps' is -1 (expected a positive number)",
    );
    expect(errorOf({ ...llama2, eos_token_id: 'x' })).toBe(
      `config.json: field 'eos_token_id' is "x" (expected a token id or a list of token ids)`,
    );
  });

  it('an unsupported architecture', () => {
    expect(errorOf({ ...llama2, architectures: ['GPT2LMHeadModel'] })).toBe(
      "config.json: architecture 'GPT2LMHeadModel' is not supported (expected one of LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)",
    );
  });

  it('an unsupported rope scaling and a bad llama3 field', () => {
    expect(errorOf({ ...llama2, rope_scaling: { type: 'yarn', factor: 4 } })).toBe(
      `config.json: rope_scaling type "yarn" is not supported (expected 'llama3', 'default' or null)`,
    );
    const { factor: _f, ...noFactor } = llama32.rope_scaling;
    expect(errorOf({ ...llama32, rope_scaling: noFactor })).toBe(
      "config.json: missing field 'rope_scaling.factor' (expected a positive number)",
    );
  });

  it('inconsistent head counts', () => {
    expect(errorOf({ ...llama2, num_key_value_heads: 5 })).toBe(
      'config.json: num_key_value_heads 5 does not divide num_attention_heads 32',
    );
    expect(errorOf({ ...llama2, hidden_size: 2050 })).toMatch(
      /hidden_size 2050 is not a multiple of num_attention_heads 32/,
    );
  });

  it('not an object', () => {
    expect(errorOf([1, 2])).toBe('config.json: expected a JSON object');
  });
});
