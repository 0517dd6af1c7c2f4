// `ft export <format>`: turn a training result into something other tools load. One subcommand per format,
// listed in `exportFormats` (add a new format there).
import { existsSync } from 'node:fs';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { ADAPTER_CONFIG, readPeftAdapter, writePeftAdapter } from '../adapters/peft.ts';
import { exportLoraGguf, type GgufOutType } from '../export/gguf.ts';
import { EXPORT_DTYPES, exportMerged, parseShardSize, type ExportDtype } from '../export/merge.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { QUANT_KINDS, type QuantKind } from '../quant/nf4.ts';
import { listCheckpoints } from '../train/checkpoint.ts';
import { assertOutsideInputs } from '../util/owned-dir.ts';
import { requireModelDir, startRun, type GlobalArgs } from './common.ts';

const OUT_HELP = 'folder to write (replaced atomically; only a folder of the same kind ft wrote, or an empty one, unless --overwrite)';
const OVERWRITE_HELP = 'replace --out even when ft did not write it (never a folder being read)';

/** An adapter folder as given, or the newest checkpoint-N of a training output folder. */
export async function resolveAdapterDir(dir: string): Promise<string> {
  if (existsSync(path.join(dir, ADAPTER_CONFIG))) return dir;
  const all = await listCheckpoints(dir);
  if (all.length === 0) return dir; // readPeftAdapter says what is missing
  const latest = all[all.length - 1].dir;
  process.stderr.write(`ft: using ${latest} (newest checkpoint of ${dir})\n`);
  return latest;
}

interface PeftArgs extends GlobalArgs {
  checkpoint: string;
  out: string;
  overwrite: boolean;
  baseModel?: string;
}

/** Copies an adapter (a training checkpoint or any PEFT LoRA folder) to a clean, canonical PEFT folder. */
const peftFormat: CommandModule<GlobalArgs, PeftArgs> = {
  command: 'peft',
  describe: 'write a standalone PEFT LoRA adapter (adapter_config.json + adapter_model.safetensors)',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('checkpoint', { type: 'string', demandOption: true, describe: 'adapter or checkpoint folder (adapter_config.json + adapter_model.safetensors), or a training output folder (its newest checkpoint-N)' })
      .option('out', { type: 'string', demandOption: true, describe: OUT_HELP })
      .option('overwrite', { type: 'boolean', default: false, describe: OVERWRITE_HELP })
      .option('base-model', { type: 'string', describe: 'set base_model_name_or_path (e.g. the Hub id of the base)' }) as unknown as Argv<PeftArgs>,
  async handler(args) {
    const from = await resolveAdapterDir(args.checkpoint);
    assertOutsideInputs({ flag: '--out', path: args.out }, [{ flag: '--checkpoint', path: args.checkpoint }, { flag: '--checkpoint', path: from }]);
    const a = await readPeftAdapter(from);
    const baseModel = args.baseModel ?? a.baseModel;
    await writePeftAdapter(args.out, a.config, baseModel, a.tensors, { overwrite: args.overwrite });
    const params = [...a.tensors.values()].reduce((s, t) => s + t.data.length, 0);
    process.stdout.write(`wrote ${args.out}: LoRA r=${a.config.r} alpha=${a.config.alpha}, ${a.tensors.size / 2} modules, ${params.toLocaleString('en-US')} params${baseModel ? `, base ${baseModel}` : ''}\n`);
  },
};

interface MergedArgs extends GlobalArgs {
  model: string;
  adapter: string;
  out: string;
  overwrite: boolean;
  dtype?: ExportDtype;
  maxShardSize: string;
  quant?: QuantKind;
}

const mergedFormat: CommandModule<GlobalArgs, MergedArgs> = {
  command: 'merged',
  describe: 'merge a LoRA adapter into its base and write a Hugging Face model folder',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'base model folder' })
      .option('adapter', { type: 'string', demandOption: true, describe: 'PEFT adapter or checkpoint folder, or a training output folder (its newest checkpoint-N)' })
      .option('out', { type: 'string', demandOption: true, describe: OUT_HELP })
      .option('overwrite', { type: 'boolean', default: false, describe: OVERWRITE_HELP })
      .option('dtype', { choices: Object.keys(EXPORT_DTYPES) as ExportDtype[], describe: "weight dtype of the merged model (default: the base's torch_dtype)" })
      .option('max-shard-size', { type: 'string', default: '5GB', describe: 'largest safetensors shard (e.g. 2GB, 500MB), as save_pretrained' })
      .option('quant', { choices: QUANT_KINDS, describe: 'quantize the base as in QLoRA training and merge into its dequantized weights' }) as unknown as Argv<MergedArgs>,
  async handler(args) {
    const maxShardSize = parseShardSize(args.maxShardSize);
    requireModelDir(args.model);
    // --adapter may be a training output folder holding the adapter used: --out must not be or hold either
    assertOutsideInputs({ flag: '--out', path: args.out }, [{ flag: '--adapter', path: args.adapter }]);
    await startRun(args);
    const plan = await exportMerged({
      model: args.model,
      adapter: await resolveAdapterDir(args.adapter),
      out: args.out,
      overwrite: args.overwrite,
      dtype: args.dtype,
      maxShardSize,
      ...(args.quant ? { linear: quantizedLinear(args.quant), quantized: args.quant } : {}),
    });
    process.stdout.write(`wrote ${args.out}: ${plan.dtype}, ${plan.shards.length} shard${plan.shards.length > 1 ? 's' : ''}, ${(plan.totalSize / 1e6).toFixed(1)} MB of weights\n`);
  },
};

interface GgufArgs extends GlobalArgs {
  adapter: string;
  out: string;
  outtype: GgufOutType;
  base?: string;
}

/** A GGUF LoRA adapter for llama.cpp (`llama-cli -m base.gguf --lora adapter.gguf`), as convert_lora_to_gguf.py writes it. */
const ggufFormat: CommandModule<GlobalArgs, GgufArgs> = {
  command: 'gguf',
  describe: 'write a GGUF LoRA adapter that llama.cpp loads with --lora',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('adapter', { type: 'string', demandOption: true, describe: 'PEFT adapter or checkpoint folder, or a training output folder (its newest checkpoint-N)' })
      .option('out', { type: 'string', demandOption: true, describe: 'GGUF file to write' })
      .option('outtype', { choices: ['f32', 'f16'] as GgufOutType[], default: 'f32' as GgufOutType, describe: 'tensor type in the file' })
      .option('base', { type: 'string', describe: "base model folder with config.json (default: the adapter's base_model_name_or_path)" }) as unknown as Argv<GgufArgs>,
  async handler(args) {
    if (args.base) requireModelDir(args.base, '--base');
    const r = await exportLoraGguf({ adapterDir: args.adapter, out: args.out, outType: args.outtype, baseDir: args.base });
    process.stdout.write(`wrote ${args.out}: ${r.arch} LoRA, ${r.tensors} tensors (${args.outtype}), alpha ${r.alpha}, ${(r.bytes / 1e6).toFixed(2)} MB\n`);
  },
};

export const exportFormats: CommandModule<GlobalArgs, any>[] = [peftFormat, mergedFormat, ggufFormat];

export const exportCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'export',
  describe: `export an adapter or merged model (${exportFormats.map((f) => f.command).join(', ')})`,
  builder: (y: Argv<GlobalArgs>) => {
    for (const f of exportFormats) y = y.command(f);
    return y.demandCommand(1, `name an export format: ${exportFormats.map((f) => f.command).join(', ')}`);
  },
  handler() {},
};
