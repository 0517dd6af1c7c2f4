// `ft generate`: continue a prompt with a model folder, streaming the text to stdout as tokens are chosen.
import type { Argv, CommandModule } from 'yargs';
import { loadPeftAdapter } from '../adapters/peft.ts';
import { generate } from '../model/generate.ts';
import { disposeLlama } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { DecodeStream, loadTokenizer, type Tokenizer } from '../model/tokenizer.ts';
import type { LlamaWeights } from '../model/types.ts';
import { denseLinear } from '../model/linear.ts';
import { quantizedLinear } from '../quant/linear.ts';
import { FtError } from '../util/errors.ts';
import { requireModelDir, startRun, type GlobalArgs } from './common.ts';

export interface GenerateArgs extends GlobalArgs {
  model: string;
  adapter?: string;
  loadIn4bit: boolean;
  prompt: string;
  maxNewTokens: number;
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  bos: boolean;
}

/** What generation runs on. Options that change the model (an adapter, quantization) hook in here. */
export async function loadGenerator(args: GenerateArgs): Promise<{ weights: LlamaWeights; tokenizer: Tokenizer }> {
  requireModelDir(args.model);
  const tokenizer = await loadTokenizer(args.model);
  const weights = await loadLlama(args.model, { linear: args.loadIn4bit ? quantizedLinear('nf4') : denseLinear });
  if (args.adapter) {
    try {
      await loadPeftAdapter(args.adapter, weights);
    } catch (e) {
      disposeLlama(weights);
      throw e;
    }
  }
  return { weights, tokenizer };
}

function checkArgs(a: GenerateArgs): void {
  if (!Number.isInteger(a.maxNewTokens) || a.maxNewTokens < 1)
    throw new FtError(`--max-new-tokens must be a positive integer, got ${a.maxNewTokens}`);
  if (!(a.temperature >= 0)) throw new FtError(`--temperature must be >= 0 (0 = greedy), got ${a.temperature}`);
  if (!Number.isInteger(a.topK) || a.topK < 0)
    throw new FtError(`--top-k must be an integer >= 0 (0 = off), got ${a.topK}`);
  if (!(a.topP > 0 && a.topP <= 1)) throw new FtError(`--top-p must be in (0, 1], got ${a.topP}`);
  if (!Number.isInteger(a.seed)) throw new FtError(`--seed must be an integer, got ${a.seed}`);
}

/** Prompt ids: the text without the tokenizer's automatic specials, then BOS in front unless --no-bos. */
export function promptIds(tokenizer: Tokenizer, text: string, bos: boolean): number[] {
  const ids = tokenizer.encode(text, { addSpecialTokens: false });
  if (bos && tokenizer.bosId !== null) ids.unshift(tokenizer.bosId);
  return ids;
}

/** Generates for one prompt, writing decoded text to `out` as it comes; returns the new token ids and timings. */
export async function runGenerate(args: GenerateArgs, out: (text: string) => void = (t) => process.stdout.write(t)) {
  checkArgs(args);
  const { weights, tokenizer } = await loadGenerator(args);
  try {
    const prompt = promptIds(tokenizer, args.prompt, args.bos);
    if (prompt.length === 0) throw new FtError('--prompt is empty and there is no BOS token to start from');
    const stream = new DecodeStream(tokenizer, { skipSpecialTokens: true });
    const eosIds = [...new Set([...weights.config.eosTokenIds, tokenizer.eosId])];
    const start = performance.now();
    let firstTokenAt = 0;
    const [tokens] = await generate(weights, [prompt], {
      maxNewTokens: args.maxNewTokens,
      temperature: args.temperature,
      topK: args.topK,
      topP: args.topP,
      seed: args.seed,
      eosIds,
      onToken: (_row, id) => {
        firstTokenAt ||= performance.now();
        out(stream.push(id));
      },
    });
    const end = performance.now();
    out(stream.flush() + '\n');
    const context = weights.config.maxPositionEmbeddings;
    return {
      promptTokens: prompt.length,
      tokens,
      /** the one line saying generation ended at the model's context before --max-new-tokens, else null */
      contextNote:
        tokens.length < args.maxNewTokens && prompt.length + tokens.length >= context
          ? `ft: stopped at the model's context of ${context} tokens (max_position_embeddings): ${prompt.length} prompt + ${tokens.length} generated`
          : null,
      /** prompt tokens per second of the prefill (up to the first sampled token) */
      prefillTokensPerSec: firstTokenAt ? prompt.length / ((firstTokenAt - start) / 1000) : 0,
      /** one-token decode steps per second after the first token */
      decodeTokensPerSec: tokens.length > 1 ? (tokens.length - 1) / ((end - firstTokenAt) / 1000) : 0,
    };
  } finally {
    disposeLlama(weights);
  }
}

export const generateCommand: CommandModule<GlobalArgs, GenerateArgs> = {
  command: 'generate',
  describe: 'continue a prompt with a model, streaming the text',
  builder: (y: Argv<GlobalArgs>) =>
    y
      .option('model', {
        type: 'string',
        demandOption: true,
        describe: 'model folder (config.json, *.safetensors, tokenizer.json)',
      })
      .option('adapter', { type: 'string', describe: 'PEFT LoRA adapter folder to apply to the model' })
      .option('load-in-4bit', {
        type: 'boolean',
        default: false,
        describe: 'load the base quantized to NF4 (as QLoRA trained it)',
      })
      .option('prompt', { type: 'string', demandOption: true, describe: 'text to continue' })
      .option('max-new-tokens', { type: 'number', default: 64, describe: 'tokens to generate at most' })
      .option('temperature', { type: 'number', default: 0, describe: 'sampling temperature (0 = greedy)' })
      .option('top-k', { type: 'number', default: 0, describe: 'sample among the k most likely tokens (0 = all)' })
      .option('top-p', {
        type: 'number',
        default: 1,
        describe: 'nucleus sampling: smallest set of tokens reaching probability p',
      })
      .option('seed', { type: 'number', default: 0, describe: 'sampling seed' })
      .option('bos', {
        type: 'boolean',
        default: true,
        describe: 'start the prompt with BOS (--no-bos to leave it out)',
      }) as unknown as Argv<GenerateArgs>,
  async handler(args) {
    await startRun(args);
    const r = await runGenerate(args);
    if (r.contextNote) process.stderr.write(r.contextNote + '\n');
    if (!args.quiet) {
      process.stderr.write(
        `ft: ${r.promptTokens} prompt tokens, ${r.tokens.length} generated; prefill ${r.prefillTokensPerSec.toFixed(1)} tok/s, decode ${r.decodeTokensPerSec.toFixed(1)} tok/s\n`,
      );
    }
  },
};
