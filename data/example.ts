// Records -> tokenized examples with the loss mask: prompt tokens -100 (unless train_on_inputs), response + eos trained.
import { IGNORE_INDEX } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import { chatRenderer, tokenText, type ChatRenderer, type TextPiece } from './chat.ts';
import type { DatasetEntry } from './spec.ts';
import { customTemplate, renderInstruction, TEMPLATES, type PromptTemplate } from './templates.ts';
import type { BuildResult, ChatRole, DataRecord, DataTokenizer } from './types.ts';

type InstructionFormat = { kind: 'instruction'; template: PromptTemplate };
/** `templateFrom` names where the template came from, in errors */
type ChatFormat = { kind: 'chat'; chatTemplate: string; rolesToTrain: readonly ChatRole[]; templateFrom?: string };

/** A RecordFormat as plain data (it crosses to worker threads); recordFormat() adds the chat renderer. */
export type FormatSpec = InstructionFormat | ChatFormat;

/** How records become text: a prompt template for instruction data, or the chat template for conversations. */
export type RecordFormat = InstructionFormat | (ChatFormat & { renderer: ChatRenderer });

/** The format a dataset entry asks for; a chat entry takes its own chat_template or else the tokenizer's. */
export function formatSpec(entry: DatasetEntry, tok: Pick<DataTokenizer, 'chatTemplate' | 'origin'>): FormatSpec {
  if (entry.type === 'chat') {
    const chatTemplate = entry.chat_template ?? tok.chatTemplate;
    if (!chatTemplate)
      throw new FtError(
        `dataset '${entry.path}': type chat needs a chat template; the tokenizer has none (set chat_template in the dataset entry)`,
      );
    const templateFrom = entry.chat_template
      ? `the chat_template of dataset '${entry.path}'`
      : `the chat template of ${tok.origin?.source ?? 'the tokenizer'}`;
    return { kind: 'chat', chatTemplate, rolesToTrain: entry.roles_to_train, templateFrom };
  }
  if (entry.type === 'custom')
    return { kind: 'instruction', template: customTemplate(entry.format!, entry.no_input_format) };
  return { kind: 'instruction', template: TEMPLATES[entry.type] };
}

/** A spec ready to render records (the chat template parsed once). */
export function recordFormat(spec: FormatSpec, tok: Pick<DataTokenizer, 'decode' | 'bosId' | 'eosId'>): RecordFormat {
  return spec.kind === 'chat' ? { ...spec, renderer: chatRenderer(spec.chatTemplate, tok, spec.templateFrom) } : spec;
}

export interface ExampleOptions {
  sequenceLen: number;
  trainOnInputs: boolean;
  /** what to do when the tokenized example is longer than sequenceLen */
  excessLength: 'drop' | 'truncate' | 'error';
}

/** The record as text pieces, each marked trained or not (before train_on_inputs). */
export function recordPieces(record: DataRecord, format: RecordFormat, where: string): TextPiece[] {
  if (record.kind === 'instruction') {
    if (format.kind !== 'instruction') throw new FtError(`${where}: an instruction row in a chat dataset`);
    const { prompt, response } = renderInstruction(record, format.template);
    return [
      { text: prompt, train: false },
      { text: response, train: true },
    ];
  }
  if (format.kind !== 'chat') throw new FtError(`${where}: a chat row in an instruction dataset`);
  return format.renderer.pieces(record.messages, format.rolesToTrain, where);
}

/**
 * Tokenizes the pieces separately and concatenates them (as axolotl does), so the prompt/response boundary
 * is exact: [bos] prompt response eos, labels = -100 over bos and prompt. Instruction data gets eos appended;
 * chat data ends as its template ends it (e.g. `<|eot_id|>`). A bos the chat template renders itself is not doubled.
 */
export function buildExample(
  record: DataRecord,
  format: RecordFormat,
  tok: DataTokenizer,
  opts: ExampleOptions,
  where: string,
): BuildResult {
  const pieces = recordPieces(record, format, where);
  const ids: number[] = [];
  const labels: number[] = [];
  const bosToken = tokenText(tok, tok.bosId);
  const startsWithBos = bosToken !== '' && pieces.length > 0 && pieces[0].text.startsWith(bosToken);
  if (tok.addBos && tok.bosId !== null && !startsWithBos) {
    ids.push(tok.bosId);
    labels.push(IGNORE_INDEX);
  }
  for (const p of pieces) {
    if (p.text === '') continue;
    const train = p.train || opts.trainOnInputs;
    for (const id of tok.encode(p.text, { addSpecialTokens: false })) {
      ids.push(id);
      labels.push(train ? id : IGNORE_INDEX);
    }
  }
  if (record.kind === 'instruction') {
    ids.push(tok.eosId);
    labels.push(tok.eosId);
  }
  let truncated = false;
  if (ids.length > opts.sequenceLen) {
    if (opts.excessLength === 'drop')
      return {
        ok: false,
        reason: 'too_long',
        detail: `${where}: ${ids.length} tokens > sequence_len ${opts.sequenceLen}`,
      };
    if (opts.excessLength === 'error')
      throw new FtError(
        `${where}: ${ids.length} tokens, longer than sequence_len ${opts.sequenceLen} (set excess_length_strategy: truncate or drop)`,
      );
    ids.length = opts.sequenceLen;
    labels.length = opts.sequenceLen;
    truncated = true;
  }
  // position 0 is never predicted, so a target must sit at 1 or later
  if (!labels.some((l, i) => i > 0 && l !== IGNORE_INDEX)) {
    return {
      ok: false,
      reason: 'no_trainable_tokens',
      detail: `${where}: no response tokens left${truncated ? ' after truncation' : ''}`,
    };
  }
  return { ok: true, example: { ids: Int32Array.from(ids), labels: Int32Array.from(labels) }, truncated };
}
