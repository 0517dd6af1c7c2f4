// FLOP accounting for the training benchmark: model FLOPs per trained token of a LoRA step on a frozen base,
// and this machine's fp32 peak from /proc/cpuinfo, so MFU = achieved model FLOP/s / peak.
import { readFileSync } from 'node:fs';
import type { LlamaConfig } from '../model/types.ts';
import { projectionShapes } from '../quant/memory.ts';

export interface TrainFlops {
  /** weights a token is multiplied by: every projection of every block + lm_head (tied or not); the embedding lookup is no matmul */
  matmulParams: number;
  /** LoRA factor parameters, r·(in + out) per adapted projection (all projections of all blocks) */
  loraParams: number;
  /** causal attention products per token: QK^T and PV over (T+1)/2 keys on average, 2·L·H·d·(T+1) */
  attentionFlops: number;
  /** model FLOPs of one forward pass per token: 2·matmulParams + attention + 2·loraParams */
  forward: number;
  /**
   * model FLOPs of forward + backward per trained token with a frozen base:
   * base matmuls 2× forward (forward + input gradient; no weight gradient is computed for a frozen weight),
   * attention 3× (both products have two input gradients), LoRA 3× (forward, input and weight gradients).
   */
  train: number;
}

/** FLOPs per token of a LoRA training step of rank `r` on all linear layers at sequence length `T` (see TrainFlops). */
export function trainFlopsPerToken(c: LlamaConfig, r: number, T: number): TrainFlops {
  const shapes = Object.values(projectionShapes(c));
  const L = c.numHiddenLayers;
  const matmulParams = L * shapes.reduce((s, [o, i]) => s + o * i, 0) + c.vocabSize * c.hiddenSize;
  const loraParams = L * shapes.reduce((s, [o, i]) => s + r * (o + i), 0);
  const attentionFlops = 2 * L * c.numAttentionHeads * c.headDim * (T + 1);
  const base = 2 * matmulParams;
  const lora = 2 * loraParams;
  return {
    matmulParams,
    loraParams,
    attentionFlops,
    forward: base + attentionFlops + lora,
    train: 2 * base + 3 * attentionFlops + 3 * lora,
  };
}

export interface CpuPeak {
  model: string;
  ghz: number;
  /** fp32 FLOPs per cycle per core from the widest FMA the flags show */
  flopsPerCycle: number;
  simd: string;
  cores: number;
  /** cores · GHz · FLOPs/cycle */
  gflops: number;
  formula: string;
}

/** fp32 FLOPs/cycle/core: two FMA pipes × lanes × 2 (multiply + add); AVX-512 16 lanes, AVX2 8, SSE 4 (no FMA: mul + add pipes). */
export function flopsPerCycle(flags: Set<string>): { simd: string; flopsPerCycle: number } {
  if (flags.has('avx512f')) return { simd: 'AVX-512: 2 FMA pipes × 16 lanes × 2', flopsPerCycle: 2 * 16 * 2 };
  if (flags.has('avx2') && flags.has('fma'))
    return { simd: 'AVX2: 2 FMA pipes × 8 lanes × 2', flopsPerCycle: 2 * 8 * 2 };
  if (flags.has('avx')) return { simd: 'AVX: mul + add pipes × 8 lanes', flopsPerCycle: 2 * 8 };
  return { simd: 'SSE: mul + add pipes × 4 lanes', flopsPerCycle: 2 * 4 };
}

/**
 * The fp32 peak of `cores` cores, from /proc/cpuinfo: clock = the first "cpu MHz" (a VM reports its nominal clock;
 * turbo can run above it, which would make MFU read high), FLOPs/cycle from the flags.
 */
export function cpuPeak(cores: number, cpuinfo = readFileSync('/proc/cpuinfo', 'utf8')): CpuPeak {
  const field = (name: string) => cpuinfo.match(new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm'))?.[1].trim();
  const mhz = Number(field('cpu MHz'));
  if (!(mhz > 0)) throw new Error('/proc/cpuinfo: no "cpu MHz" line; cannot compute the fp32 peak');
  const { simd, flopsPerCycle: fpc } = flopsPerCycle(new Set((field('flags') ?? '').split(/\s+/)));
  const ghz = mhz / 1000;
  const gflops = cores * ghz * fpc;
  return {
    model: field('model name') ?? 'unknown CPU',
    ghz,
    flopsPerCycle: fpc,
    simd,
    cores,
    gflops,
    formula: `${cores} core(s) × ${ghz.toFixed(3)} GHz × ${fpc} FLOPs/cycle (${simd}) = ${gflops.toFixed(1)} GFLOP/s`,
  };
}
