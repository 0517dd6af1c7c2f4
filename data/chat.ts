// Conversations rendered through the model's jinja chat template (as transformers' apply_chat_template does).
import { Environment, Interpreter, Template } from '@huggingface/jinja';
import { FtError } from '../util/errors.ts';
import type { ChatMessage, ChatRole, DataTokenizer } from './types.ts';

/** A run of rendered text and whether its tokens are trained on. */
export interface TextPiece {
  text: string;
  train: boolean;
}

export interface ChatRenderer {
  /** the conversation as text pieces; concatenated they equal the full rendered conversation */
  pieces(messages: ChatMessage[], rolesToTrain: readonly ChatRole[], where: string): TextPiece[];
}

/** The text of a special token, as chat templates see `bos_token` / `eos_token`. */
export function tokenText(tok: Pick<DataTokenizer, 'decode'>, id: number | null): string {
  return id === null ? '' : tok.decode([id]);
}

/** Items all range() calls of one render may make: real templates loop over messages, not millions of numbers. */
export const MAX_RANGE_ITEMS = 100_000;

/** strftime_now as @huggingface/jinja defines it, reached through a template of its own. */
const strftimeTemplate = new Template('{{ strftime_now(f) }}');

/**
 * The globals @huggingface/jinja gives a template, with range() counting the items of every call against
 * MAX_RANGE_ITEMS (its own range builds any length, and range(1e8) runs the process out of memory).
 */
function boundedGlobals(): Record<string, unknown> {
  let made = 0;
  const range = (start: number, stop?: number, step = 1): number[] => {
    if (stop === undefined) [start, stop] = [0, start];
    if (step === 0) throw new Error('range() step must not be zero');
    const n = Math.max(0, Math.ceil((stop - start) / step));
    made += n;
    if (made > MAX_RANGE_ITEMS)
      throw new Error(`range() would make ${n} items; a render may make ${MAX_RANGE_ITEMS} in all`);
    return Array.from({ length: n }, (_, i) => start + i * step);
  };
  const raise_exception = (message: string) => {
    throw new Error(message);
  };
  const strftime_now = (f: string) => strftimeTemplate.render({ f });
  return {
    false: false,
    true: true,
    none: null,
    False: false,
    True: true,
    None: null,
    raise_exception,
    range,
    strftime_now,
  };
}

/**
 * A renderer for `source` (a jinja chat template), with the tokenizer's bos/eos strings in scope; `from` names the
 * template in errors (e.g. "the chat template in <model folder>").
 */
export function chatRenderer(
  source: string,
  tok: Pick<DataTokenizer, 'decode' | 'bosId' | 'eosId'>,
  from = 'chat template',
): ChatRenderer {
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw new FtError(`${from} does not parse: ${(e as Error).message}`);
  }
  const bosToken = tokenText(tok, tok.bosId);
  const eosToken = tokenText(tok, tok.eosId);
  const render = (messages: ChatMessage[], addGenerationPrompt: boolean, where: string): string => {
    try {
      const env = new Environment();
      const scope = {
        ...boundedGlobals(),
        messages,
        add_generation_prompt: addGenerationPrompt,
        bos_token: bosToken,
        eos_token: eosToken,
      };
      for (const [name, value] of Object.entries(scope)) env.set(name, value);
      return new Interpreter(env).run(template.parsed).value as string;
    } catch (e) {
      throw new FtError(`${where}: ${from} failed (${(e as Error).message})`);
    }
  };
  return {
    /**
     * Message i's text is render(messages[0..i]) minus render(messages[0..i-1]); a trained message's header
     * (what add_generation_prompt emits, e.g. `<|im_start|>assistant\n`) stays in the prompt.
     */
    pieces(messages, rolesToTrain, where) {
      const out: TextPiece[] = [];
      let done = '';
      for (let i = 0; i < messages.length; i++) {
        const upTo = render(messages.slice(0, i + 1), false, where);
        if (!upTo.startsWith(done))
          throw new FtError(
            `${where}: chat template output is not prefix-stable at message ${i}, cannot tell which tokens belong to which turn`,
          );
        const train = rolesToTrain.includes(messages[i].role);
        let headerEnd = done.length;
        if (train && messages[i].role === 'assistant') {
          const header = render(messages.slice(0, i), true, where);
          if (header.startsWith(done) && upTo.startsWith(header)) headerEnd = header.length;
        }
        if (headerEnd > done.length) out.push({ text: upTo.slice(done.length, headerEnd), train: false });
        if (upTo.length > headerEnd) out.push({ text: upTo.slice(headerEnd), train });
        done = upTo;
      }
      return out;
    },
  };
}
