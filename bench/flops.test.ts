import { describe, expect, it } from 'vitest';
import { attachLora } from '../adapters/lora.ts';
import { disposeLlama } from '../model/llama.ts';
import { parameterCount } from '../model/init.ts';
import { randomLlama, tinyConfig } from '../test/random-llama.ts';
import { cpuPeak, flopsPerCycle, trainFlopsPerToken } from './flops.ts';
import { BENCH_LORA, benchConfig } from './train-configs.ts';

describe('trainFlopsPerToken', () => {
  it('counts the stories15M shape as llama2.c: 15.19M matmul weights (tied lm_head), the rest norms', () => {
    const c = benchConfig('stories15M').model;
    const f = trainFlopsPerToken(c, 8, 256);
    // blocks 6·(4·288² + 3·288·768) + lm_head 32000·288
    expect(f.matmulParams).toBe(6 * (4 * 288 * 288 + 3 * 288 * 768) + 32000 * 288);
    expect(parameterCount(c) - f.matmulParams).toBe(6 * 2 * 288 + 288); // the RMSNorm weights, not in any matmul
  });

  it('counts the LoRA factors the adapter actually creates', () => {
    const c = tinyConfig({ numHiddenLayers: 3 });
    const w = randomLlama(c, 1);
    const adapter = attachLora(w, BENCH_LORA, 0);
    expect(trainFlopsPerToken(c, BENCH_LORA.r, 16).loraParams).toBe(adapter.numParams());
    adapter.detach();
    disposeLlama(w);
  });

  it('counts causal attention as the sum over positions of QK^T and PV products with the keys before each query', () => {
    const c = tinyConfig();
    const T = 37;
    let perSequence = 0;
    for (let t = 1; t <= T; t++) perSequence += c.numHiddenLayers * c.numAttentionHeads * 2 * (2 * t * c.headDim); // t keys, two products
    expect(trainFlopsPerToken(c, 8, T).attentionFlops).toBeCloseTo(perSequence / T, 6);
  });

  it('makes a frozen-base training step 2x the base forward, 3x attention and LoRA', () => {
    const c = tinyConfig();
    const f = trainFlopsPerToken(c, 4, 64);
    expect(f.forward).toBe(2 * f.matmulParams + f.attentionFlops + 2 * f.loraParams);
    expect(f.train).toBe(4 * f.matmulParams + 3 * f.attentionFlops + 6 * f.loraParams);
  });
});

describe('cpuPeak', () => {
  const cpuinfo = (flags: string) =>
    `processor\t: 0\nmodel name\t: Test CPU\ncpu MHz\t\t: 2500.000\nflags\t\t: fpu sse sse2 ${flags}\n\nprocessor\t: 1\ncpu MHz\t\t: 1200.000\n`;

  it('is cores × the first cpu MHz × FLOPs/cycle of the widest FMA in the flags', () => {
    expect(cpuPeak(1, cpuinfo('avx fma avx2')).gflops).toBeCloseTo(2.5 * 32, 9);
    expect(cpuPeak(2, cpuinfo('avx fma avx2 avx512f')).gflops).toBeCloseTo(2 * 2.5 * 64, 9);
    expect(cpuPeak(1, cpuinfo('avx')).gflops).toBeCloseTo(2.5 * 16, 9);
    expect(cpuPeak(1, cpuinfo('avx fma avx2')).formula).toContain('= 80.0 GFLOP/s');
  });

  it('needs FMA for the AVX2 figure', () => {
    expect(flopsPerCycle(new Set(['avx', 'avx2'])).flopsPerCycle).toBe(16);
  });

  it('refuses a cpuinfo without a clock', () => {
    expect(() => cpuPeak(1, 'model name\t: x\n')).toThrow(/cpu MHz/);
  });
});
