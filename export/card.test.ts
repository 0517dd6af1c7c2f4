import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { parse } from 'yaml';
import { describe, expect, it } from 'vitest';
import { modelCard, writeModelCard, type CardInput } from './card.ts';

/** Splits a card into its parsed front matter and the markdown body. */
function split(card: string): { meta: Record<string, unknown>; body: string } {
  const m = /^---\n([\s\S]*?)\n---\n([\s\S]*)$/.exec(card);
  if (!m) throw new Error('no front matter');
  return { meta: parse(m[1]), body: m[2] };
}

const recipe = 'base_model: meta-llama/Llama-3.2-1B\nlora:\n  r: 8\n  alpha: 16\nlr: 2.0e-4\n';
const adapter: CardInput = {
  kind: 'adapter',
  baseModel: 'meta-llama/Llama-3.2-1B',
  repoId: 'alice/llama-alpaca-lora',
  license: 'llama3.2',
  datasets: ['tatsu-lab/alpaca', 'seed_tasks.jsonl'],
  datasetDescription: '175 Alpaca seed tasks, alpaca template, 10% held out.',
  recipe,
  lora: { r: 8, alpha: 16, dropout: 0.05, targetModules: ['q_proj', 'v_proj'] },
  metrics: { trainLoss: 1.2345678, evalLoss: 1.5, steps: 120, epochs: 3 },
  evaluation: [
    { name: 'rougeL', value: 0.41, base: 0.22 },
    { name: 'exact_match', value: 12.5 },
  ],
  ggufFile: 'adapter-f16.gguf',
};

describe('modelCard', () => {
  it('writes the front matter the Hub reads for a PEFT adapter', () => {
    const { meta } = split(modelCard(adapter));
    expect(meta).toEqual({
      library_name: 'peft',
      base_model: 'meta-llama/Llama-3.2-1B',
      license: 'llama3.2',
      datasets: ['tatsu-lab/alpaca'],
      pipeline_tag: 'text-generation',
      tags: ['ft', 'lora', 'peft', 'text-generation'],
    });
  });

  it('shows the recipe verbatim, the data, the numbers, and PEFT and llama.cpp loading', () => {
    const { body } = split(modelCard(adapter));
    const yamlBlock = /```yaml\n([\s\S]*?)\n```/.exec(body)![1];
    expect(parse(yamlBlock)).toEqual(parse(recipe));
    expect(body).toContain('- [tatsu-lab/alpaca](https://huggingface.co/datasets/tatsu-lab/alpaca)');
    expect(body).toContain('- seed_tasks.jsonl');
    expect(body).toContain('175 Alpaca seed tasks');
    expect(body).toContain('| final training loss | 1.235 |');
    expect(body).toContain(`| eval perplexity | ${Math.exp(1.5).toPrecision(4)} |`);
    expect(body).toContain('| rougeL | 0.2200 | 0.4100 |');
    expect(body).toContain('| exact_match | - | 12.50 |');
    expect(body).toContain('LoRA: r = 8, alpha = 16, dropout = 0.05, target modules: q_proj, v_proj.');
    expect(body).toContain('PeftModel.from_pretrained(base, "alice/llama-alpaca-lora")');
    expect(body).toContain('llama-cli -m base-model-f16.gguf --lora adapter-f16.gguf');
  });

  it('describes a merged model as transformers with a finetune relation, and omits a local base path from the metadata', () => {
    const merged = split(modelCard({ kind: 'merged', baseModel: 'meta-llama/Llama-3.2-1B', repoId: 'alice/merged' }));
    expect(merged.meta.library_name).toBe('transformers');
    expect(merged.meta.base_model_relation).toBe('finetune');
    expect(merged.meta.tags).not.toContain('peft');
    expect(merged.body).toContain('AutoModelForCausalLM.from_pretrained("alice/merged")');
    expect(merged.body).not.toContain('PeftModel');

    const local = split(modelCard({ kind: 'adapter', baseModel: '/models/tiny-llama', tags: ['tiny'] }));
    expect(local.meta.base_model).toBeUndefined();
    expect(local.meta.license).toBeUndefined();
    expect(local.meta.tags).toEqual(['ft', 'lora', 'peft', 'text-generation', 'tiny']);
    expect(local.body).toContain('`/models/tiny-llama`');
  });

  it('keeps a recipe containing backticks inside its block, and writes README.md atomically', async () => {
    const dir = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-card-'));
    try {
      const tricky = 'note: "```not a fence```"\n';
      const file = await writeModelCard(dir, { kind: 'adapter', baseModel: 'a/b', recipe: tricky });
      expect(file).toBe(path.join(dir, 'README.md'));
      const { body } = split(await fsp.readFile(file, 'utf8'));
      expect(parse(/````yaml\n([\s\S]*?)\n````/.exec(body)![1])).toEqual(parse(tricky));
      expect(await fsp.readdir(dir)).toEqual(['README.md']);
    } finally {
      await fsp.rm(dir, { recursive: true, force: true });
    }
  });
});
