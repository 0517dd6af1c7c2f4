// Conversations rendered through the model's jinja chat template (as transformers' apply_chat_template does).
import { Template } from '@huggingface/jinja';
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

/** A renderer for `source` (a jinja chat template), with the tokenizer's bos/eos strings in scope. */
export function chatRenderer(source: string, tok: Pick<DataTokenizer, 'decode' | 'bosId' | 'eosId'>): ChatRenderer {
  let template: Template;
  try {
    template = new Template(source);
  } catch (e) {
    throw new FtError(`chat template does not parse: ${(e as Error).message}`);
  }
  const bosToken = tokenText(tok, tok.bosId);
  const eosToken = tokenText(tok, tok.eosId);
  const render = (messages: ChatMessage[], addGenerationPrompt: boolean, where: string): string => {
    try {
      return template.render({ messages, add_generation_prompt: addGenerationPrompt, bos_token: bosToken, eos_token: eosToken });
    } catch (e) {
      throw new FtError(`${where}: chat template failed (${(e as Error).message})`);
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
        if (!upTo.startsWith(done)) throw new FtError(`${where}: chat template output is not prefix-stable at message ${i}, cannot tell which tokens belong to which turn`);
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
