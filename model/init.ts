// A deterministic random Llama in Hugging Face layout: the tiny model every test, example and benchmark can start from.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { FtError } from '../util/errors.ts';
import { writeDirAtomic } from '../util/fs.ts';
import { assertReplaceable } from '../util/owned-dir.ts';
import { Rng } from '../util/rng.ts';
import { tokenizerJson, trainBpe } from './bpe.ts';
import { configJson } from './config.ts';
import { expectedTensors } from './load.ts';
import { writeSafetensors, type SafetensorsEntry } from './safetensors.ts';
import type { LlamaConfig } from './types.ts';

/** Std of the normal init of embeddings and projections (transformers' initializer_range). */
export const INITIALIZER_RANGE = 0.02;

export type ModelShape = Omit<LlamaConfig, 'raw'>;

/** ~0.32M parameters; 2 kv heads for 4 query heads exercises GQA. */
const TINY: ModelShape = {
  architecture: 'LlamaForCausalLM',
  hiddenSize: 64,
  intermediateSize: 176,
  numHiddenLayers: 4,
  numAttentionHeads: 4,
  numKeyValueHeads: 2,
  headDim: 16,
  rmsNormEps: 1e-5,
  ropeTheta: 10000,
  ropeScaling: null,
  vocabSize: 1024,
  maxPositionEmbeddings: 1024,
  tieWordEmbeddings: false,
  attentionBias: false,
  bosTokenId: 1,
  eosTokenIds: [2],
};

export const PRESETS = {
  tiny: TINY,
  /**
   * The tiny shape with lm_head tied to the embeddings (the default recipe's): a head that copies an input token's
   * embedding raises that token's logit, where an untied random head needs LoRA to fit a map from one to the other.
   */
  'tiny-tied': { ...TINY, tieWordEmbeddings: true },
} satisfies Record<string, ModelShape>;
export type PresetName = keyof typeof PRESETS;

/** Llama-2 layout of special tokens: unk 0, bos 1, eos 2; plus a real pad token 3. */
export const SPECIAL_TOKENS = { unk: '<unk>', bos: '<s>', eos: '</s>', pad: '<pad>' } as const;
const SPECIAL_LIST = [SPECIAL_TOKENS.unk, SPECIAL_TOKENS.bos, SPECIAL_TOKENS.eos, SPECIAL_TOKENS.pad];

/** A chat template in the Alpaca format the tokenizer was trained on. */
const CHAT_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] }}\n\n" +
  "{% elif m['role'] == 'user' %}### Instruction:\n{{ m['content'] }}\n\n" +
  "{% elif m['role'] == 'assistant' %}### Response:\n{{ m['content'] }}{{ eos_token }}\n\n{% endif %}{% endfor %}" +
  '{% if add_generation_prompt %}### Response:\n{% endif %}';

/**
 * Every tensor of `config` as lazily generated F32 entries: RMSNorm weights 1, biases 0, the rest normal(0, initializer_range).
 * Each tensor draws from its own generator seeded in order from `seed`, so its values do not depend on when (or how often) they are produced.
 */
export function randomTensors(config: LlamaConfig, seed: number, std = INITIALIZER_RANGE): SafetensorsEntry[] {
  const rng = new Rng(seed);
  return expectedTensors(config).map(({ name, shape }) => {
    const tensorSeed = rng.nextU32();
    const n = shape.reduce((a, b) => a * b, 1);
    const data = name.endsWith('norm.weight')
      ? () => new Float32Array(n).fill(1)
      : name.endsWith('.bias')
        ? () => new Float32Array(n)
        : () => {
            const own = new Rng(tensorSeed);
            return Float32Array.from({ length: n }, () => std * own.normal());
          };
    return { name, dtype: 'F32' as const, shape, data };
  });
}

export interface InitOptions {
  preset?: PresetName;
  seed?: number;
  /** Overrides the preset's vocabulary size (specials included); fewer when the corpus runs out of merges first. */
  vocabSize?: number;
  /** Tokenizer training corpus (ft's default model learns it from its synth tasks: data/synth.ts synthCorpus). */
  corpus: string[];
  /**
   * Standard deviation of the random weights (default 0.02, transformers' initializer_range). A larger one
   * (~0.1) gives a random model whose frozen lm_head can express peaked distributions, so LoRA visibly learns.
   */
  initStd?: number;
  /** Replace `out` even when it is not a model folder ft wrote. */
  overwrite?: boolean;
}

/** Writes a random model folder (config, weights, tokenizer, generation config) atomically to `out`; same options -> same bytes. */
export async function initModel(out: string, opts: InitOptions): Promise<LlamaConfig> {
  const presetName = opts.preset ?? 'tiny';
  const preset: ModelShape | undefined = PRESETS[presetName];
  if (!preset) throw new FtError(`unknown preset '${presetName}' (expected one of ${Object.keys(PRESETS).join(', ')})`);
  let vocabSize = opts.vocabSize ?? preset.vocabSize;
  if (!Number.isInteger(vocabSize) || vocabSize < 256 + SPECIAL_LIST.length) {
    throw new FtError(
      `--vocab-size ${vocabSize} is too small (expected an integer >= ${256 + SPECIAL_LIST.length}: ${SPECIAL_LIST.length} specials + 256 bytes)`,
    );
  }
  const seed = opts.seed ?? 0;
  const std = opts.initStd ?? INITIALIZER_RANGE;
  if (!(Number.isFinite(std) && std > 0)) throw new FtError(`--init-std ${std}: expected a number > 0`);
  // before the tokenizer trains: `out` is replaced whole, so it must be absent, empty or a model ft wrote
  if (!opts.overwrite) await assertReplaceable(out, 'model', 'pass --overwrite to replace it');
  const bpe = trainBpe(opts.corpus, { vocabSize, specialTokens: SPECIAL_LIST });
  // a small corpus can run out of merges first: the model's vocabulary is the tokenizer's, so every id decodes
  vocabSize = bpe.vocab.length;
  const id = (tok: string) => bpe.vocab.indexOf(tok);
  const raw = configJson(
    { ...preset, vocabSize, bosTokenId: id(SPECIAL_TOKENS.bos), eosTokenIds: [id(SPECIAL_TOKENS.eos)] },
    { pad_token_id: id(SPECIAL_TOKENS.pad), initializer_range: std, torch_dtype: 'float32', use_cache: true },
  );
  const config: LlamaConfig = {
    ...preset,
    vocabSize,
    bosTokenId: id(SPECIAL_TOKENS.bos),
    eosTokenIds: [id(SPECIAL_TOKENS.eos)],
    raw,
  };
  const tokenizerConfig = {
    tokenizer_class: 'PreTrainedTokenizerFast',
    add_bos_token: true,
    add_eos_token: false,
    bos_token: SPECIAL_TOKENS.bos,
    eos_token: SPECIAL_TOKENS.eos,
    unk_token: SPECIAL_TOKENS.unk,
    pad_token: SPECIAL_TOKENS.pad,
    model_max_length: preset.maxPositionEmbeddings,
    clean_up_tokenization_spaces: false,
    added_tokens_decoder: Object.fromEntries(
      SPECIAL_LIST.map((t) => [
        String(id(t)),
        { content: t, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true },
      ]),
    ),
    chat_template: CHAT_TEMPLATE,
  };
  const generationConfig = {
    bos_token_id: id(SPECIAL_TOKENS.bos),
    eos_token_id: id(SPECIAL_TOKENS.eos),
    pad_token_id: id(SPECIAL_TOKENS.pad),
  };
  const json = (v: unknown) => JSON.stringify(v, null, 2) + '\n';

  await writeDirAtomic(
    out,
    async (dir) => {
      await fsp.writeFile(path.join(dir, 'config.json'), json(raw));
      await fsp.writeFile(path.join(dir, 'generation_config.json'), json(generationConfig));
      await fsp.writeFile(path.join(dir, 'tokenizer.json'), json(tokenizerJson(bpe, { bos: SPECIAL_TOKENS.bos })));
      await fsp.writeFile(path.join(dir, 'tokenizer_config.json'), json(tokenizerConfig));
      await writeSafetensors(path.join(dir, 'model.safetensors'), randomTensors(config, seed, std));
    },
    { kind: 'model', overwrite: opts.overwrite },
  );
  return config;
}

/** Parameter count of a model shape. */
export function parameterCount(config: LlamaConfig): number {
  return expectedTensors(config).reduce((n, t) => n + t.shape.reduce((a, b) => a * b, 1), 0);
}
