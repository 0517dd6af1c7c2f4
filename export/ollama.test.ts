import { Template } from '@huggingface/jinja';
import { describe, expect, it } from 'vitest';
import { renderInstruction, TEMPLATES } from '../data/templates.ts';
import { FtError } from '../util/errors.ts';
import { modelfile, ollamaPrompt } from './ollama.ts';

// a tokenizer with <s> = 1 and </s> = 2, adding BOS itself
const tok = {
  addBos: true,
  bosId: 1,
  eosId: 2,
  decode: (ids: number[]) => ids.map((i) => ['<unk>', '<s>', '</s>'][i]).join(''),
};

/** Ollama's Go template for one turn without a system prompt, evaluated for these values. */
function fill(template: string, prompt: string, response: string): string {
  return template
    .replace(/\{\{ if \.System \}\}.*?\{\{ else \}\}(.*?)\{\{ end \}\}/s, '$1')
    .replaceAll('{{ .Prompt }}', prompt)
    .replaceAll('{{ .Response }}', response)
    .replaceAll('{{ "{{" }}', '{{');
}

const CHATML =
  "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>' + '\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

describe('ollamaPrompt', () => {
  it("turns the run's Alpaca template into the prompt ft trained on, stopping at the next instruction and at eos", () => {
    const p = ollamaPrompt({ kind: 'instruction', template: TEMPLATES.alpaca }, tok);
    const { prompt } = renderInstruction(
      { kind: 'instruction', instruction: 'Name a color.', input: '', output: '' },
      TEMPLATES.alpaca,
    );
    expect(fill(p.template, 'Name a color.', '')).toBe(prompt);
    expect(p.template.endsWith('### Response:\n{{ .Response }}')).toBe(true);
    expect(p.stops).toEqual(['### Instruction:', '</s>']);
  });

  it('renders a chat template into one Go-template turn equal to its Jinja rendering, with a system branch and its end-of-turn stop', () => {
    const p = ollamaPrompt({ kind: 'chat', chatTemplate: CHATML, rolesToTrain: ['assistant'] }, tok);
    expect(p.template).toBe(
      '{{ if .System }}<|im_start|>system\n{{ .System }}<|im_end|>\n<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n' +
        '{{ else }}<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n{{ end }}{{ .Response }}<|im_end|>\n',
    );
    const messages = [
      { role: 'user', content: 'Hi {{ there }}' },
      { role: 'assistant', content: 'Hello.' },
    ];
    const jinja = new Template(CHATML).render({ messages, add_generation_prompt: false });
    expect(fill(p.template, 'Hi {{ there }}', 'Hello.')).toBe(jinja);
    expect(p.stops).toEqual(['<|im_end|>', '</s>']);
  });

  it('leaves out bos_token when the tokenizer adds BOS itself (llama.cpp adds it too), keeps it otherwise', () => {
    const withBos =
      "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}>{% elif m.role == 'assistant' %}{{ m.content + eos_token }}{% endif %}{% endfor %}";
    const spec = { kind: 'chat', chatTemplate: withBos, rolesToTrain: ['assistant'] } as const;
    expect(ollamaPrompt(spec, tok)).toEqual({ template: '{{ .Prompt }}>{{ .Response }}</s>', stops: ['</s>'] });
    expect(ollamaPrompt(spec, { ...tok, addBos: false }).template).toBe('<s>{{ .Prompt }}>{{ .Response }}</s>');
  });

  it('escapes {{ in literal text and refuses a template a Modelfile cannot quote', () => {
    const t = { ...TEMPLATES.alpaca, noInput: 'Q {{x}}: {instruction}\nA: ' };
    const p = ollamaPrompt({ kind: 'instruction', template: t }, tok);
    expect(p.template).toBe('Q {{ "{{" }}x}}: {{ .Prompt }}\nA: {{ .Response }}');
    expect(() => modelfile('model.gguf', { template: 'a """ b', stops: [] })).toThrow(FtError);
  });
});

describe('modelfile', () => {
  it('writes FROM, the TEMPLATE as a raw string and one quoted stop parameter per stop', () => {
    expect(
      modelfile('model.gguf', { template: '{{ .Prompt }}\n{{ .Response }}', stops: ['### Instruction:', '</s>'] }),
    ).toBe(
      'FROM ./model.gguf\nTEMPLATE """{{ .Prompt }}\n{{ .Response }}"""\nPARAMETER stop "### Instruction:"\nPARAMETER stop "</s>"\n',
    );
    expect(modelfile('model.gguf', null)).toBe('FROM ./model.gguf\n');
  });
});
