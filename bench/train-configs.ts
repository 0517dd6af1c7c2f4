// The fixed model shapes and step settings of the training benchmark (bench/train.ts), shared with the PyTorch peer
// (bench/peer/torch_lora.py gets the shape as JSON), so ft and the peer time the same work.
import type { LoraConfig } from '../adapters/lora.ts';
import { PRESETS } from '../model/init.ts';
import type { LlamaConfig } from '../model/types.ts';

export interface BenchConfig {
  name: string;
  note: string;
  model: LlamaConfig;
  /** micro-batch rows × sequence length = tokens per step */
  batch: number;
  seq: number;
  /** untimed steps first (kernel setup, heap growth), then timed steps */
  warmupSteps: number;
  timedSteps: number;
  /** new tokens generated with the KV cache after a 16-token prompt */
  generateTokens: number;
  /** gradient checkpointing (recompute each decoder layer in the backward pass), as a recipe's gradient_checkpointing */
  checkpoint?: boolean;
  /** the base formats measured (default both) */
  bases?: BaseKind[];
  /**
   * Rounds of one step on one thread then one on every thread, and the same for a generation, inside the all-thread
   * case's process (default TURNS; 0 for none): a speedup measured at one time, apart from the VM's drift.
   */
  turns?: number;
  /** only when FT_BENCH_CONFIGS names it (minutes per step) */
  optIn?: boolean;
}

/** Same-process rounds of one thread against all (BenchConfig.turns) when a config names none. */
export const TURNS = 3;

/** LoRA r=8, alpha=16, no dropout, on every projection of every block (not lm_head), as PEFT's 'all-linear'. */
export const BENCH_LORA: LoraConfig = { r: 8, alpha: 16, dropout: 0, targetModules: 'all-linear', useRslora: false };

/** The optimizer settings of the timed step (HF Trainer's defaults): AdamW on the LoRA factors, global-norm clip 1.0. */
export const BENCH_OPTIM = { lr: 2e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0, maxGradNorm: 1.0 };

/** A llama2.c-shaped model (Karpathy's TinyStories checkpoints): MHA, tied embeddings, vocab 32000. */
function llama2c(dim: number, layers: number, heads: number, hidden: number): LlamaConfig {
  return {
    ...PRESETS.tiny,
    hiddenSize: dim,
    intermediateSize: hidden,
    numHiddenLayers: layers,
    numAttentionHeads: heads,
    numKeyValueHeads: heads,
    headDim: dim / heads,
    vocabSize: 32000,
    maxPositionEmbeddings: 1024,
    tieWordEmbeddings: true,
    raw: {},
  };
}

/** TinyLlama-1.1B's config.json: 1.1B parameters, the size QLoRA on one machine is for. */
const TINYLLAMA: LlamaConfig = {
  ...PRESETS.tiny,
  hiddenSize: 2048,
  intermediateSize: 5632,
  numHiddenLayers: 22,
  numAttentionHeads: 32,
  numKeyValueHeads: 4,
  headDim: 64,
  vocabSize: 32000,
  maxPositionEmbeddings: 2048,
  raw: {},
};

export const BENCH_CONFIGS: BenchConfig[] = [
  {
    name: 'tiny',
    note: 'ft init-model preset (GQA 4/2 heads, vocab 1024)',
    model: { ...PRESETS.tiny, raw: {} },
    batch: 8,
    seq: 256,
    warmupSteps: 2,
    timedSteps: 5,
    generateTokens: 64,
  },
  {
    name: 'stories15M',
    note: 'llama2.c stories15M shape',
    model: llama2c(288, 6, 6, 768),
    batch: 4,
    seq: 256,
    warmupSteps: 1,
    timedSteps: 3,
    generateTokens: 64,
  },
  {
    name: 'stories110M',
    note: 'llama2.c stories110M shape (the ~100M config)',
    model: llama2c(768, 12, 12, 2048),
    batch: 1,
    seq: 256,
    warmupSteps: 1,
    timedSteps: 2,
    generateTokens: 8,
  },
  // float32 weights of 1.1B parameters (4.4 GB) cannot fit the 4 GiB wasm heap: NF4 only, as QLoRA runs it
  {
    name: 'tinyllama',
    note: 'TinyLlama-1.1B shape (GQA 32/4 heads, untied head), gradient checkpointing',
    model: TINYLLAMA,
    batch: 1,
    seq: 256,
    warmupSteps: 1,
    timedSteps: 1,
    generateTokens: 4,
    checkpoint: true,
    bases: ['nf4'],
    turns: 0,
    optIn: true,
  },
];

export type BaseKind = 'float' | 'nf4';

export function benchConfig(name: string): BenchConfig {
  const c = BENCH_CONFIGS.find((x) => x.name === name);
  if (!c)
    throw new Error(`bench: unknown config '${name}': expected some of ${BENCH_CONFIGS.map((x) => x.name).join(', ')}`);
  return c;
}
