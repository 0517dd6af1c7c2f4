// `ft memory`: how much memory fine-tuning a model takes (base weights, LoRA adapters, gradients, AdamW state,
// activations), from a model folder's or a standalone config.json. No tensors are created.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { parseConfig, readConfig } from '../model/config.ts';
import { LINEAR_NAMES, type LinearName } from '../model/types.ts';
import { WASM_HEAP_LIMIT } from '../engine/heap-compute.ts';
import { estimateMemory, humanBytes, type MemoryOptions } from '../quant/memory.ts';
import { FtError } from '../util/errors.ts';
import { requireModelDir, type GlobalArgs } from './common.ts';

export interface MemoryArgs extends GlobalArgs {
  model?: string;
  config?: string;
  loadIn4bit: boolean;
  quant?: MemoryOptions['quant'];
  doubleQuant: boolean;
  loraR: number;
  targetModules: string[];
  microBatchSize: number;
  sequenceLen: number;
  gradientCheckpointing: boolean;
}

async function readConfigFile(file: string) {
  let text: string;
  try {
    text = await fsp.readFile(file, 'utf8');
  } catch (e) {
    throw new FtError(`${file}: cannot read (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    return parseConfig(JSON.parse(text), file);
  } catch (e) {
    if (e instanceof SyntaxError) throw new FtError(`${file}: not valid JSON (${e.message})`);
    throw e;
  }
}

/** The table `ft memory` prints. */
export async function memoryTable(a: MemoryArgs): Promise<string> {
  if (!a.model === !a.config) throw new FtError('ft memory: give exactly one of --model DIR or --config config.json');
  if (a.model) requireModelDir(a.model);
  const config = a.model ? await readConfig(a.model) : await readConfigFile(a.config!);
  const unknown = a.targetModules.filter((m) => !(LINEAR_NAMES as readonly string[]).includes(m));
  if (unknown.length)
    throw new FtError(
      `--target-modules: unknown module ${unknown.join(', ')}: expected some of ${LINEAR_NAMES.join(', ')}`,
    );
  const quant = a.quant ?? (a.loadIn4bit ? 'nf4' : 'none');
  const e = estimateMemory(config, {
    quant,
    doubleQuant: a.doubleQuant,
    loraR: a.loraR,
    targetModules: a.targetModules as LinearName[],
    microBatchSize: a.microBatchSize,
    sequenceLen: a.sequenceLen,
    optimizer: 'adamw',
    gradientCheckpointing: a.gradientCheckpointing,
  });
  const source = a.model ? path.join(a.model, 'config.json') : a.config!;
  const rows: [string, number][] = [
    [`base weights (${quant === 'none' ? 'float32' : quant + (a.doubleQuant ? ' + double quant' : '')})`, e.baseBytes],
    [`LoRA adapters (r=${a.loraR}, ${a.targetModules.length} modules)`, e.adapterBytes],
    ['adapter gradients', e.gradBytes],
    ['AdamW state (m, v)', e.optimizerBytes],
    [
      `activations (batch ${a.microBatchSize} x ${a.sequenceLen} tokens${a.gradientCheckpointing ? ', checkpointed' : ''})`,
      e.activationBytes,
    ],
    ...(e.dequantBytes ? [['dequantized weight in flight', e.dequantBytes] as [string, number]] : []),
    ['total', e.totalBytes],
    [`wasm heap (at most ${humanBytes(WASM_HEAP_LIMIT)})`, e.heapBytes],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  return [
    `${source}: ${config.numHiddenLayers} layers, hidden ${config.hiddenSize}, vocab ${config.vocabSize}`,
    ...rows.map(([k, v]) => `${k.padEnd(width)}  ${humanBytes(v).padStart(10)}`),
  ].join('\n');
}

export const memoryCommand: CommandModule<GlobalArgs, MemoryArgs> = {
  command: 'memory',
  describe: 'estimate the memory a LoRA/QLoRA fine-tune needs',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('model', { type: 'string', describe: 'model folder with config.json' })
      .option('config', { type: 'string', describe: 'a config.json file' })
      .option('load-in-4bit', { type: 'boolean', default: false, describe: 'QLoRA: NF4 base weights' })
      .option('quant', {
        choices: ['none', 'nf4', 'fp4', 'int8'] as const,
        describe: 'base weight format (overrides --load-in-4bit)',
      })
      .option('double-quant', { type: 'boolean', default: true, describe: 'quantize the quantization constants too' })
      .option('lora-r', { type: 'number', default: 8, describe: 'LoRA rank' })
      .option('target-modules', {
        type: 'string',
        array: true,
        default: [...LINEAR_NAMES],
        describe: 'projections with adapters',
      })
      .option('micro-batch-size', { type: 'number', default: 1 })
      .option('sequence-len', { type: 'number', default: 512 })
      .option('gradient-checkpointing', {
        type: 'boolean',
        default: false,
        describe: 'recompute layers in the backward pass',
      }) as unknown as Argv<MemoryArgs>,
  handler: async (a) => {
    process.stdout.write((await memoryTable(a)) + '\n');
  },
};
