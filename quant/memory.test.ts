import { describe, expect, test } from 'vitest';
import { parseConfig } from '../model/config.ts';
import { LINEAR_NAMES } from '../model/types.ts';
import { memoryTable, type MemoryArgs } from '../cli/memory.ts';
import { estimateMemory, humanBytes, projectionShapes } from './memory.ts';

// Llama-2-7B's config.json
const llama7b = parseConfig(
  {
    architectures: ['LlamaForCausalLM'],
    hidden_size: 4096,
    intermediate_size: 11008,
    num_hidden_layers: 32,
    num_attention_heads: 32,
    num_key_value_heads: 32,
    rms_norm_eps: 1e-5,
    vocab_size: 32000,
    max_position_embeddings: 4096,
  },
  'config.json',
);
const opts = {
  quant: 'nf4',
  doubleQuant: true,
  loraR: 8,
  targetModules: LINEAR_NAMES,
  microBatchSize: 1,
  sequenceLen: 512,
  optimizer: 'adamw',
} as const;

describe('estimateMemory', () => {
  test('Llama-2-7B: 6.48e9 projection weights at 4.127 bits plus float32 embeddings, head and norms', () => {
    const e = estimateMemory(llama7b, opts);
    const proj = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008);
    expect(proj).toBe(6_476_005_376);
    const float = 2 * 32000 * 4096 + 4096 + 32 * 2 * 4096;
    expect(e.baseBytes).toBe(Math.ceil((proj * (4 + 8 / 64 + 32 / (64 * 256))) / 8) + 4 * float);
    const dense = estimateMemory(llama7b, { ...opts, quant: 'none' });
    expect(dense.baseBytes).toBe(4 * (proj + float));
  });

  test('LoRA r=8 on all seven projections: 19.99M parameters, one gradient and two AdamW moments each', () => {
    const e = estimateMemory(llama7b, opts);
    const params = 32 * 8 * (4 * (4096 + 4096) + 3 * (11008 + 4096));
    expect(params).toBe(19_988_480);
    expect(e.adapterBytes).toBe(4 * params);
    expect(e.gradBytes).toBe(e.adapterBytes);
    expect(e.optimizerBytes).toBe(2 * e.adapterBytes);
    expect(e.totalBytes).toBe(
      e.baseBytes + e.adapterBytes + e.gradBytes + e.optimizerBytes + e.activationBytes + e.dequantBytes,
    );
    expect(e.dequantBytes).toBe(2 * 4 * 4096 * 11008); // the MLP projections, twice
    expect(estimateMemory(llama7b, { ...opts, quant: 'none' }).dequantBytes).toBe(0);
  });

  test('activations grow linearly with batch and faster than linearly with sequence length (attention scores)', () => {
    const a = (b: number, t: number) =>
      estimateMemory(llama7b, { ...opts, microBatchSize: b, sequenceLen: t }).activationBytes;
    // each row adds the same; the backward pass's attention temporaries are a group of pairs of at most 2^22 scores
    // (16 pairs of 512 x 512 here), whatever the batch
    expect(a(4, 512) - a(3, 512)).toBe(a(2, 512) - a(1, 512));
    expect(a(4, 512)).toBeLessThan(4 * a(1, 512));
    // past 2048 tokens one pair's scores exceed the group's budget and grow with the square of the length
    expect(a(1, 4096)).toBeGreaterThan(2 * a(1, 2048));
    expect(a(1, 1024) - 2 * a(1, 512)).toBe(0 - 4 * 5 * 2 ** 22); // both hold 5 x 2^22 scores; the layers double
  });

  test('a tiny model at 8 x 256 tokens: twice its forward tensors (what tfjs holds until the backward pass ends)', () => {
    const tiny = parseConfig(
      {
        architectures: ['LlamaForCausalLM'],
        hidden_size: 64,
        intermediate_size: 176,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        vocab_size: 1024,
        rms_norm_eps: 1e-5,
        max_position_embeddings: 1024,
      },
      'config.json',
    );
    const e = estimateMemory(tiny, { ...opts, quant: 'none', microBatchSize: 8, sequenceLen: 256 });
    // per token and layer: 6h + sum(out) + LoRA 2·out + 2r per target + 10q + 9kv + 3m + 2h, with h = q = 64, kv = 32, m = 176
    const perLayer = 6 * 64 + 608 + (2 * 608 + 14 * 8) + 10 * 64 + 9 * 32 + 3 * 176 + 2 * 64;
    const forward = 2048 * (4 * perLayer + 4 * 64 + 2 * 1024);
    // attention: one group of 16 pairs (8 rows x 2 kv heads) of [2 x 256, 256] scores, 5 temporaries of it
    expect(e.activationBytes).toBe(4 * (2 * forward + 5 * 16 * 2 * 256 * 256));
  });

  test('gradient checkpointing keeps each layer input and one layer of activations instead of every layer', () => {
    const plain = estimateMemory(llama7b, opts);
    const ckpt = estimateMemory(llama7b, { ...opts, gradientCheckpointing: true });
    const attention = 4 * 5 * 16 * 512 * 512; // a group of 16 pairs of [512, 512] scores
    const outside = 4 * 2 * 512 * (4 * 4096 + 2 * 32000) + attention;
    // layers: 32 inputs of [512, 4096] against 32 layers' tensors and gradients; the head: 256 rows of logits, not 512
    const outsideCkpt = 4 * 2 * (512 * 4 * 4096 + 256 * 2 * 32000) + attention;
    expect(ckpt.activationBytes - outsideCkpt).toBe(4 * 512 * 32 * 4096 + (plain.activationBytes - outside) / 32);
    expect(ckpt.activationBytes).toBeLessThan(plain.activationBytes / 5);
  });

  test('the wasm heap: all but the packed 4-bit weights, which live in JS memory', () => {
    const proj = 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008);
    const nf4 = estimateMemory(llama7b, opts);
    const packed = Math.ceil((proj * 4.127) / 8);
    expect(Math.abs(nf4.heapBytes - (nf4.totalBytes - packed))).toBeLessThan(proj * 0.001);
    const dense = estimateMemory(llama7b, { ...opts, quant: 'none' });
    expect(dense.heapBytes).toBe(dense.totalBytes);
  });

  test('GQA shrinks k/v projections', () => {
    const gqa = parseConfig({ ...(llama7b.raw as object), num_key_value_heads: 8 }, 'config.json');
    expect(projectionShapes(gqa).k_proj).toEqual([1024, 4096]);
    expect(estimateMemory(gqa, opts).baseBytes).toBeLessThan(estimateMemory(llama7b, opts).baseBytes);
  });

  test('bad sizes are clear errors', () => {
    expect(() => estimateMemory(llama7b, { ...opts, sequenceLen: 0 })).toThrow(
      /sequenceLen must be a positive integer, got 0/,
    );
  });

  test('humanBytes', () => {
    expect(humanBytes(512)).toBe('512 B');
    expect(humanBytes(1536)).toBe('1.50 KiB');
    expect(humanBytes(4.09 * 2 ** 30)).toBe('4.09 GiB');
  });
});

describe('ft memory', () => {
  test('prints the table for a config.json and rejects unknown target modules', async () => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const dir = await mkdtemp(path.join(tmpdir(), 'ft-mem-'));
    const file = path.join(dir, 'config.json');
    await writeFile(file, JSON.stringify(llama7b.raw));
    const args: MemoryArgs = {
      backend: 'auto',
      quiet: true,
      config: file,
      loadIn4bit: true,
      doubleQuant: true,
      loraR: 8,
      targetModules: [...LINEAR_NAMES],
      microBatchSize: 1,
      sequenceLen: 512,
      gradientCheckpointing: false,
    };
    const out = await memoryTable(args);
    expect(out).toMatch(/base weights \(nf4 \+ double quant\)\s+4\.09 GiB/);
    expect(out).toMatch(/LoRA adapters \(r=8, 7 modules\)\s+76\.3 MiB/);
    expect(await memoryTable({ ...args, gradientCheckpointing: true })).toMatch(
      /activations \(batch 1 x 512 tokens, checkpointed\)/,
    );
    await expect(memoryTable({ ...args, targetModules: ['qkv'] })).rejects.toThrow(
      /--target-modules: unknown module qkv/,
    );
    await expect(memoryTable({ ...args, model: dir })).rejects.toThrow(/exactly one of --model DIR or --config/);
  });
});
