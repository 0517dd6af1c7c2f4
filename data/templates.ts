// Prompt templates for instruction records: the prompt part (not trained unless train_on_inputs) and the response part.
import { FtError } from '../util/errors.ts';
import type { InstructionRecord } from './types.ts';

/**
 * `withInput` / `noInput` are prompts with {instruction} and {input} placeholders; the response is
 * the record's output followed by `responseSuffix` (both trained on), then eos.
 */
export interface PromptTemplate {
  name: string;
  withInput: string;
  noInput: string;
  responseSuffix: string;
}

/** Named templates. `alpaca` is exactly as published in the Stanford Alpaca README (with and without input). */
export const TEMPLATES: Record<string, PromptTemplate> = {
  alpaca: {
    name: 'alpaca',
    withInput:
      'Below is an instruction that describes a task, paired with an input that provides further context. ' +
      'Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n',
    noInput:
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n',
    responseSuffix: '',
  },
  // ChatML turn layout for instruction data (as axolotl's chatml prompt style)
  chatml: {
    name: 'chatml',
    withInput: '<|im_start|>user\n{instruction}\n{input}<|im_end|>\n<|im_start|>assistant\n',
    noInput: '<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n',
    responseSuffix: '<|im_end|>\n',
  },
};
export const TEMPLATE_NAMES = Object.keys(TEMPLATES);

const FIELD = /\{(\w+)\}/g;

function checkFields(text: string, allowed: string[], what: string): void {
  for (const m of text.matchAll(FIELD)) {
    if (!allowed.includes(m[1]))
      throw new FtError(`${what}: unknown field {${m[1]}}; expected ${allowed.map((a) => `{${a}}`).join(', ')}`);
  }
}

/**
 * A custom template from recipe text: `format` holds {instruction} and {input} (and optionally {output},
 * after which any text is part of the response); `noInputFormat` is used for rows with an empty input.
 */
export function customTemplate(format: string, noInputFormat?: string): PromptTemplate {
  const split = (text: string, what: string): [string, string] => {
    checkFields(text, ['instruction', 'input', 'output'], what);
    const parts = text.split('{output}');
    if (parts.length > 2) throw new FtError(`${what}: {output} may appear once`);
    if (!text.includes('{instruction}')) throw new FtError(`${what}: needs an {instruction} field`);
    return [parts[0], parts[1] ?? ''];
  };
  const [withInput, suffix] = split(format, 'format');
  const [noInput, noInputSuffix] =
    noInputFormat === undefined ? [withInput, suffix] : split(noInputFormat, 'no_input_format');
  if (noInputFormat !== undefined && noInput.includes('{input}'))
    throw new FtError('no_input_format: must not use {input}');
  if (suffix !== noInputSuffix)
    throw new FtError('format and no_input_format: the text after {output} must be the same');
  return { name: 'custom', withInput, noInput, responseSuffix: suffix };
}

/** Prompt and response text of a record (fields substituted in one pass, so braces in the data stay as they are). */
export function renderInstruction(r: InstructionRecord, t: PromptTemplate): { prompt: string; response: string } {
  const tpl = r.input === '' ? t.noInput : t.withInput;
  const prompt = tpl.replace(FIELD, (m, k: string) =>
    k === 'instruction' ? r.instruction : k === 'input' ? r.input : m,
  );
  return { prompt, response: r.output + t.responseSuffix };
}
