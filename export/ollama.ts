// An Ollama model folder: the GGUF file and a Modelfile (FROM, TEMPLATE, stop parameters) for
// `ollama create NAME -f Modelfile`. The TEMPLATE is the prompt format the adapter was trained with: the run's
// instruction template (Alpaca, ChatML, custom), or a chat template rendered once with marker messages, so one
// turn becomes a Go template with {{ .System }}, {{ .Prompt }} and {{ .Response }} in the places the markers land.
import { promises as fsp } from 'node:fs';
import * as path from 'node:path';
import { Template } from '@huggingface/jinja';
import type { FormatSpec } from '../data/example.ts';
import type { Tokenizer } from '../model/tokenizer.ts';
import { FtError } from '../util/errors.ts';
import { writeDirAtomic } from '../util/fs.ts';
import { exportModelGguf, type GgufModelOptions, type GgufModelResult } from './gguf-model.ts';

/** One turn of the prompt format as Ollama's Go template, and the texts that end a response. */
export interface OllamaPrompt {
  template: string;
  stops: string[];
}

/** Literal text inside a Go template: `{{` would open an action. */
function goLiteral(text: string): string {
  return text.replaceAll('{{', '{{ "{{" }}');
}

const MARK = { system: '\u0001SYSTEM\u0001', prompt: '\u0001PROMPT\u0001', response: '\u0001RESPONSE\u0001' };

/** The Go template of a rendered turn: markers become Ollama's variables, everything else stays literal. */
function fromRendered(text: string): string {
  return text
    .split(/(\u0001(?:SYSTEM|PROMPT|RESPONSE)\u0001)/)
    .map((part) =>
      part === MARK.system
        ? '{{ .System }}'
        : part === MARK.prompt
          ? '{{ .Prompt }}'
          : part === MARK.response
            ? '{{ .Response }}'
            : goLiteral(part),
    )
    .join('');
}

/** Non-blank lines of a response suffix, each a stop text (e.g. `<|im_end|>`). */
const stopsOf = (suffix: string) =>
  suffix
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean);

/**
 * The prompt format of `format` for Ollama. A chat template is rendered with bos_token empty when the tokenizer
 * adds BOS itself (llama.cpp adds it too, so it must not appear twice).
 */
export function ollamaPrompt(
  format: FormatSpec,
  tok: Pick<Tokenizer, 'addBos' | 'bosId' | 'eosId' | 'decode'>,
): OllamaPrompt {
  const eos = tok.decode([tok.eosId]);
  if (format.kind === 'instruction') {
    const t = format.template;
    const [before, after] = t.noInput.split('{instruction}');
    const response = '{{ .Response }}' + goLiteral(t.responseSuffix);
    // the next instruction's header is where a model that missed eos would go on
    const header = before.split('\n').filter(Boolean).at(-1);
    return {
      template: goLiteral(before) + '{{ .Prompt }}' + goLiteral(after ?? '') + response,
      stops: [...new Set([...stopsOf(t.responseSuffix), ...(header ? [header.trim()] : []), eos])],
    };
  }
  let template: Template;
  try {
    template = new Template(format.chatTemplate);
  } catch (e) {
    throw new FtError(`chat template does not parse: ${(e as Error).message}`);
  }
  const bos = tok.addBos || tok.bosId === null ? '' : tok.decode([tok.bosId]);
  const render = (messages: { role: string; content: string }[], addGenerationPrompt: boolean) =>
    template.render({ messages, add_generation_prompt: addGenerationPrompt, bos_token: bos, eos_token: eos });
  const user = { role: 'user', content: MARK.prompt };
  const turn = (system: boolean) => {
    const msgs = [...(system ? [{ role: 'system', content: MARK.system }] : []), user];
    const open = render(msgs, true);
    const full = render([...msgs, { role: 'assistant', content: MARK.response }], false);
    if (!full.startsWith(open) || !full.includes(MARK.response))
      throw new FtError(
        'chat template: a reply does not follow the generation prompt, so it cannot become an Ollama template',
      );
    return { open, suffix: full.slice(full.indexOf(MARK.response) + MARK.response.length) };
  };
  const plain = turn(false);
  let withSystem: ReturnType<typeof turn> | null = null;
  try {
    withSystem = turn(true);
    if (!withSystem.open.includes(MARK.system)) withSystem = null;
  } catch {
    withSystem = null; // templates that reject a system message
  }
  const open = withSystem
    ? `{{ if .System }}${fromRendered(withSystem.open)}{{ else }}${fromRendered(plain.open)}{{ end }}`
    : fromRendered(plain.open);
  return {
    template: open + '{{ .Response }}' + goLiteral(plain.suffix),
    stops: [...new Set([...stopsOf(plain.suffix), eos])],
  };
}

/** A Modelfile: FROM the GGUF beside it, the TEMPLATE (a raw string), one stop PARAMETER per stop text. */
export function modelfile(gguf: string, prompt: OllamaPrompt | null): string {
  const lines = [`FROM ./${gguf}`];
  if (prompt) {
    if (prompt.template.includes('"""'))
      throw new FtError('the prompt template contains """, which a Modelfile cannot quote');
    lines.push(`TEMPLATE """${prompt.template}"""`);
    for (const s of prompt.stops) lines.push(`PARAMETER stop ${JSON.stringify(s)}`);
  }
  return lines.join('\n') + '\n';
}

export const OLLAMA_GGUF = 'model.gguf';
export const MODELFILE = 'Modelfile';

/** `ft export ollama`: `out/model.gguf` (the merged model) and `out/Modelfile`, written as one folder atomically. */
export async function exportOllama(
  opts: Omit<GgufModelOptions, 'out'> & { out: string; prompt: OllamaPrompt | null; overwrite?: boolean },
): Promise<GgufModelResult> {
  let result: GgufModelResult | null = null;
  await writeDirAtomic(
    opts.out,
    async (tmp) => {
      result = await exportModelGguf({
        ...opts,
        out: path.join(tmp, OLLAMA_GGUF),
        name: opts.name ?? path.basename(path.resolve(opts.out)),
      });
      await fsp.writeFile(path.join(tmp, MODELFILE), modelfile(OLLAMA_GGUF, opts.prompt));
    },
    { kind: 'model', overwrite: opts.overwrite },
  );
  return { ...result!, file: path.join(opts.out, OLLAMA_GGUF) };
}
