// Shared by data tests and bench/data.ts: the Alpaca seed tasks as flat records, and a real BPE tokenizer trained on them.
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tokenizerJson, trainBpe } from '../model/bpe.ts';
import { tokenizerFromJson, type Tokenizer } from '../model/tokenizer.ts';

export const SEED_TASKS = path.join(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../shared/data/alpaca-seed/seed_tasks.jsonl',
);

export interface AlpacaRow {
  instruction: string;
  input: string;
  output: string;
}

/** The 175 seed tasks flattened over their `instances` into Alpaca rows {instruction, input, output}. */
export function seedRows(): AlpacaRow[] {
  return readFileSync(SEED_TASKS, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .flatMap((l) => {
      const t = JSON.parse(l) as { instruction: string; instances: { input: string; output: string }[] };
      return t.instances.map((i) => ({ instruction: t.instruction, input: i.input, output: i.output }));
    });
}

/** ChatML as Qwen2 / many chat models ship it. */
export const CHATML_TEMPLATE =
  "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
  "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

let cached: Tokenizer | null = null;

/** A byte-level BPE (512 tokens, Llama-style `<s>` prepended, `</s>` eos, ChatML specials) trained on the seed tasks. */
export function seedTokenizer(): Tokenizer {
  if (cached) return cached;
  const texts = seedRows().flatMap((r) => [r.instruction, r.input, r.output]);
  const model = trainBpe(texts, {
    vocabSize: 512,
    specialTokens: ['<unk>', '<s>', '</s>', '<|im_start|>', '<|im_end|>'],
  });
  cached = tokenizerFromJson(
    tokenizerJson(model, { bos: '<s>' }),
    { bos_token: '<s>', eos_token: '</s>', chat_template: CHATML_TEMPLATE },
    null,
    'seed-bpe',
  );
  return cached;
}
