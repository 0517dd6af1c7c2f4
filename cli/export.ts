// `ft export <format>`: turn a training result into something other tools load. One subcommand per format,
// listed in `exportFormats` (add a new format there).
import { existsSync, readFileSync, statSync } from 'node:fs';
import * as path from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { ADAPTER_CONFIG, readPeftAdapter, writePeftAdapter } from '../adapters/peft.ts';
import { formatSpec, type FormatSpec } from '../data/example.ts';
import { exportModelGguf } from '../export/gguf-model.ts';
import { GGUF_OUT_TYPES, type GgufModelType } from '../export/gguf-quant.ts';
import { exportLoraGguf } from '../export/gguf.ts';
import { exportOllama, MODELFILE, OLLAMA_GGUF, ollamaPrompt } from '../export/ollama.ts';
import { EXPORT_DTYPES, exportMerged, parseShardSize, type ExportDtype } from '../export/merge.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { QUANT_KINDS, type QuantKind } from '../quant/nf4.ts';
import { loadTokenizer, type Tokenizer } from '../model/tokenizer.ts';
import { listCheckpoints } from '../train/checkpoint.ts';
import { parseRecipe } from '../recipes/recipe.ts';
import { FtError } from '../util/errors.ts';
import { assertOutsideInputs } from '../util/owned-dir.ts';
import { requireModelDir, startRun, type GlobalArgs } from './common.ts';

const OUT_HELP =
  'folder to write (replaced atomically; only a folder of the same kind ft wrote, or an empty one, unless --overwrite)';
const OVERWRITE_HELP = 'replace --out even when ft did not write it (never a folder being read)';

/** The resolved recipe a training run writes into its output folder. */
const RUN_RECIPE = 'recipe.yaml';

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
      .option('checkpoint', {
        type: 'string',
        demandOption: true,
        describe:
          'adapter or checkpoint folder (adapter_config.json + adapter_model.safetensors), or a training output folder (its newest checkpoint-N)',
      })
      .option('out', { type: 'string', demandOption: true, describe: OUT_HELP })
      .option('overwrite', { type: 'boolean', default: false, describe: OVERWRITE_HELP })
      .option('base-model', {
        type: 'string',
        describe: 'set base_model_name_or_path (e.g. the Hub id of the base)',
      }) as unknown as Argv<PeftArgs>,
  async handler(args) {
    const from = await resolveAdapterDir(args.checkpoint);
    assertOutsideInputs({ flag: '--out', path: args.out }, [
      { flag: '--checkpoint', path: args.checkpoint },
      { flag: '--checkpoint', path: from },
    ]);
    const a = await readPeftAdapter(from);
    const baseModel = args.baseModel ?? a.baseModel;
    await writePeftAdapter(args.out, a.config, baseModel, a.tensors, { overwrite: args.overwrite });
    const params = [...a.tensors.values()].reduce((s, t) => s + t.data.length, 0);
    process.stdout.write(
      `wrote ${args.out}: LoRA r=${a.config.r} alpha=${a.config.alpha}, ${a.tensors.size / 2} modules, ${params.toLocaleString('en-US')} params${baseModel ? `, base ${baseModel}` : ''}\n`,
    );
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
      .option('adapter', {
        type: 'string',
        demandOption: true,
        describe: 'PEFT adapter or checkpoint folder, or a training output folder (its newest checkpoint-N)',
      })
      .option('out', { type: 'string', demandOption: true, describe: OUT_HELP })
      .option('overwrite', { type: 'boolean', default: false, describe: OVERWRITE_HELP })
      .option('dtype', {
        choices: Object.keys(EXPORT_DTYPES) as ExportDtype[],
        describe: "weight dtype of the merged model (default: the base's torch_dtype)",
      })
      .option('max-shard-size', {
        type: 'string',
        default: '5GB',
        describe: 'largest safetensors shard (e.g. 2GB, 500MB), as save_pretrained',
      })
      .option('quant', {
        choices: QUANT_KINDS,
        describe: 'quantize the base as in QLoRA training and merge into its dequantized weights',
      }) as unknown as Argv<MergedArgs>,
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
    process.stdout.write(
      `wrote ${args.out}: ${plan.dtype}, ${plan.shards.length} shard${plan.shards.length > 1 ? 's' : ''}, ${(plan.totalSize / 1e6).toFixed(1)} MB of weights\n`,
    );
  },
};

interface GgufArgs extends GlobalArgs {
  model?: string;
  adapter?: string;
  out: string;
  outtype?: GgufModelType;
  base?: string;
  lora: boolean;
}

/**
 * A GGUF for llama.cpp: with --model the whole model (the adapter merged in when given); with --adapter alone, or
 * --lora, the adapter as a GGUF LoRA (`llama-cli -m base.gguf --lora adapter.gguf`), as convert_lora_to_gguf.py writes it.
 */
const ggufFormat: CommandModule<GlobalArgs, GgufArgs> = {
  command: 'gguf',
  describe: 'write a GGUF model (--model [--adapter]) or a GGUF LoRA adapter (--adapter [--base]) for llama.cpp',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('model', {
        type: 'string',
        describe: 'base model folder: write the whole model, with --adapter merged in',
      })
      .option('adapter', {
        type: 'string',
        describe: 'PEFT adapter or checkpoint folder, or a training output folder (its newest checkpoint-N)',
      })
      .option('out', { type: 'string', demandOption: true, describe: 'GGUF file to write' })
      .option('outtype', {
        choices: GGUF_OUT_TYPES,
        describe:
          'tensor type: f32, f16 (default for a model), bf16, q8_0, q4_0; a LoRA adapter takes f32 (default) or f16',
      })
      .option('lora', {
        type: 'boolean',
        default: false,
        describe: 'write only the adapter as a GGUF LoRA, even with --model (then its base)',
      })
      .option('base', {
        type: 'string',
        describe:
          "for a GGUF LoRA: base model folder with config.json (default: --model, else the adapter's base_model_name_or_path)",
      }) as unknown as Argv<GgufArgs>,
  async handler(args) {
    if (args.base) requireModelDir(args.base, '--base');
    if (args.model) requireModelDir(args.model, '--model');
    if (existsSync(args.out) && statSync(args.out).isDirectory())
      throw new FtError(`--out ${path.resolve(args.out)} is a folder: name the .gguf file to write`);
    if (!args.model && !args.adapter)
      throw new FtError(
        'ft export gguf: give --model (a whole model, optionally with --adapter) or --adapter (a GGUF LoRA adapter)',
      );
    const adapter = args.adapter ? await resolveAdapterDir(args.adapter) : null;
    if (args.model && !args.lora) {
      if (adapter) await startRun(args);
      const r = await exportModelGguf({ model: args.model, adapter, out: args.out, outType: args.outtype });
      process.stdout.write(
        `wrote ${args.out}: ${r.arch} model${adapter ? ' with the adapter merged' : ''}, ${r.tensors} tensors (${r.outType}${fallbackNote(r.f16Fallbacks)}), ${(r.bytes / 1e6).toFixed(2)} MB\n`,
      );
      return;
    }
    if (!adapter) throw new FtError('ft export gguf --lora: give --adapter');
    const outType = args.outtype ?? 'f32';
    if (outType !== 'f32' && outType !== 'f16')
      throw new FtError(`--outtype ${outType}: a GGUF LoRA adapter is written as f32 or f16`);
    const r = await exportLoraGguf({ adapterDir: adapter, out: args.out, outType, baseDir: args.base ?? args.model });
    process.stdout.write(
      `wrote ${args.out}: ${r.arch} LoRA, ${r.tensors} tensors (${outType}), alpha ${r.alpha}, ${(r.bytes / 1e6).toFixed(2)} MB\n`,
    );
  },
};

const fallbackNote = (names: string[]) =>
  names.length ? `; ${names.length} in f16, their rows not a multiple of 32` : '';

interface OllamaArgs extends GlobalArgs {
  model: string;
  adapter?: string;
  out: string;
  outtype: GgufModelType;
  overwrite: boolean;
}

/** The prompt format the adapter's run trained with (its recipe.yaml), else the tokenizer's chat template. */
async function runPromptFormat(
  adapter: string | null,
  tokenizer: Tokenizer,
): Promise<{ format: FormatSpec | null; from: string }> {
  for (const file of adapter
    ? [path.join(adapter, RUN_RECIPE), path.join(path.dirname(path.resolve(adapter)), RUN_RECIPE)]
    : []) {
    if (!existsSync(file)) continue;
    const recipe = parseRecipe(readFileSync(file, 'utf8'), file);
    return {
      format: formatSpec(recipe.datasets[0], tokenizer),
      from: `${file} (datasets[0] type ${recipe.datasets[0].type})`,
    };
  }
  if (tokenizer.chatTemplate)
    return {
      format: { kind: 'chat', chatTemplate: tokenizer.chatTemplate, rolesToTrain: ['assistant'] },
      from: "the tokenizer's chat template",
    };
  return {
    format: null,
    from: 'nothing (no recipe.yaml beside the adapter, no chat template): Ollama will pass prompts as they are',
  };
}

const ollamaFormat: CommandModule<GlobalArgs, OllamaArgs> = {
  command: 'ollama',
  describe: 'write a folder for `ollama create NAME -f Modelfile`: model.gguf (adapter merged) + Modelfile',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('model', { type: 'string', demandOption: true, describe: 'base model folder' })
      .option('adapter', {
        type: 'string',
        describe: 'PEFT adapter or checkpoint folder, or a training output folder (its newest checkpoint-N), merged in',
      })
      .option('out', { type: 'string', demandOption: true, describe: OUT_HELP })
      .option('overwrite', { type: 'boolean', default: false, describe: OVERWRITE_HELP })
      .option('outtype', {
        choices: GGUF_OUT_TYPES,
        default: 'q8_0' as GgufModelType,
        describe: 'tensor type of model.gguf',
      }) as unknown as Argv<OllamaArgs>,
  async handler(args) {
    requireModelDir(args.model, '--model');
    assertOutsideInputs({ flag: '--out', path: args.out }, [
      { flag: '--model', path: args.model },
      ...(args.adapter ? [{ flag: '--adapter', path: args.adapter }] : []),
    ]);
    const adapter = args.adapter ? await resolveAdapterDir(args.adapter) : null;
    const tokenizer = await loadTokenizer(args.model);
    const { format, from } = await runPromptFormat(adapter, tokenizer);
    const prompt = format ? ollamaPrompt(format, tokenizer) : null;
    if (adapter) await startRun(args);
    const r = await exportOllama({
      model: args.model,
      adapter,
      out: args.out,
      outType: args.outtype,
      prompt,
      overwrite: args.overwrite,
    });
    process.stdout.write(
      `wrote ${args.out}: ${MODELFILE} (template from ${from}) + ${OLLAMA_GGUF} (${r.outType}${fallbackNote(r.f16Fallbacks)}, ${(r.bytes / 1e6).toFixed(2)} MB); run: ollama create NAME -f ${path.join(args.out, MODELFILE)}\n`,
    );
  },
};

export const exportFormats: CommandModule<GlobalArgs, any>[] = [peftFormat, mergedFormat, ggufFormat, ollamaFormat];

export const exportCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'export',
  describe: `export an adapter or merged model (${exportFormats.map((f) => f.command).join(', ')})`,
  builder: (y: Argv<GlobalArgs>) => {
    for (const f of exportFormats) y = y.command(f);
    return y.demandCommand(1, `name an export format: ${exportFormats.map((f) => f.command).join(', ')}`);
  },
  handler() {},
};
