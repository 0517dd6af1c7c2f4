// Model card (README.md) for an adapter or a merged model: the YAML front matter the Hub reads
// (library_name, base_model, tags, license, datasets, pipeline_tag), then the recipe, data, numbers and how to load it.
import * as path from 'node:path';
import { stringify } from 'yaml';
import { writeFileAtomic } from '../util/fs.ts';

/** What the trainer knows at the end of a run; everything but `kind` and `baseModel` is optional. */
export interface CardInput {
  kind: 'adapter' | 'merged';
  /** Hub id (`meta-llama/Llama-3.2-1B`) or local path of the base model. */
  baseModel: string;
  /** Hub id this card will live at, for the loading snippets; a placeholder is used when absent. */
  repoId?: string;
  license?: string;
  /** Hub dataset ids (go in the front matter) or local names (described in the body). */
  datasets?: string[];
  /** A sentence or two on the data: size, template, split. */
  datasetDescription?: string;
  /** The recipe as YAML text, shown verbatim. */
  recipe?: string;
  lora?: { r: number; alpha: number; dropout?: number; targetModules: string[] | 'all-linear'; useRslora?: boolean };
  metrics?: {
    trainLoss?: number;
    evalLoss?: number;
    steps?: number;
    epochs?: number;
    tokens?: number;
    runtimeSeconds?: number;
  };
  /** Evaluation results by metric name, e.g. { exact_match: 41.2, rougeL: 0.53 }; a base model column when known. */
  evaluation?: { name: string; value: number; base?: number }[];
  /** A GGUF LoRA file shipped in the repo (from `ft export gguf`), for the llama.cpp snippet. */
  ggufFile?: string;
  tags?: string[];
}

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/;

/** True when `s` is a Hub repo id rather than a local path. */
export function isHubId(s: string): boolean {
  return HUB_ID.test(s) && !s.startsWith('.') && !path.isAbsolute(s);
}

/** The card's front matter as the Hub reads it (only fields that are known; base_model only when it is a Hub id). */
export function cardMetadata(c: CardInput): Record<string, unknown> {
  const adapter = c.kind === 'adapter';
  const tags = [...new Set(['ft', 'lora', ...(adapter ? ['peft'] : []), 'text-generation', ...(c.tags ?? [])])];
  const hubDatasets = (c.datasets ?? []).filter(isHubId);
  return {
    library_name: adapter ? 'peft' : 'transformers',
    ...(isHubId(c.baseModel) && { base_model: c.baseModel }),
    ...(!adapter && isHubId(c.baseModel) && { base_model_relation: 'finetune' }),
    ...(c.license && { license: c.license }),
    ...(hubDatasets.length && { datasets: hubDatasets }),
    pipeline_tag: 'text-generation',
    tags,
  };
}

/** A fenced block that survives backticks inside `text`. */
function fenced(lang: string, text: string): string {
  const longest = Math.max(2, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = '`'.repeat(longest + 1);
  return `${fence}${lang}\n${text.replace(/\n+$/, '')}\n${fence}`;
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4));

/** README.md text for the run. */
export function modelCard(c: CardInput): string {
  const adapter = c.kind === 'adapter';
  const repo = c.repoId ?? (adapter ? 'your-name/your-adapter' : 'your-name/your-model');
  const baseLink = isHubId(c.baseModel)
    ? `[${c.baseModel}](https://huggingface.co/${c.baseModel})`
    : `\`${c.baseModel}\``;
  const out: string[] = [`---\n${stringify(cardMetadata(c)).trimEnd()}\n---`, ''];

  out.push(`# ${c.repoId ? c.repoId.split('/')[1] : adapter ? 'LoRA adapter' : 'Fine-tuned model'}`, '');
  out.push(
    adapter
      ? `A LoRA adapter for ${baseLink}, trained with ft (LoRA/QLoRA fine-tuning in TypeScript). It is a PEFT adapter folder: \`adapter_config.json\` + \`adapter_model.safetensors\`.`
      : `${baseLink} fine-tuned with LoRA by ft and merged back into full weights; it loads like any Llama-family checkpoint.`,
    '',
  );

  if (c.lora) {
    const t = c.lora.targetModules === 'all-linear' ? 'all-linear' : c.lora.targetModules.join(', ');
    out.push(
      `LoRA: r = ${c.lora.r}, alpha = ${c.lora.alpha}${c.lora.dropout !== undefined ? `, dropout = ${c.lora.dropout}` : ''}${c.lora.useRslora ? ', rsLoRA' : ''}, target modules: ${t}.`,
      '',
    );
  }

  if (c.datasets?.length || c.datasetDescription) {
    out.push('## Training data', '');
    if (c.datasets?.length)
      out.push(
        c.datasets.map((d) => (isHubId(d) ? `- [${d}](https://huggingface.co/datasets/${d})` : `- ${d}`)).join('\n'),
        '',
      );
    if (c.datasetDescription) out.push(c.datasetDescription, '');
  }

  if (c.recipe) out.push('## Recipe', '', fenced('yaml', c.recipe), '');

  const m = c.metrics ?? {};
  const rows: [string, number][] = [];
  if (m.trainLoss !== undefined) rows.push(['final training loss', m.trainLoss]);
  if (m.evalLoss !== undefined) rows.push(['eval loss', m.evalLoss], ['eval perplexity', Math.exp(m.evalLoss)]);
  if (m.steps !== undefined) rows.push(['optimizer steps', m.steps]);
  if (m.epochs !== undefined) rows.push(['epochs', m.epochs]);
  if (m.tokens !== undefined) rows.push(['training tokens', m.tokens]);
  if (m.runtimeSeconds !== undefined) rows.push(['training time (s)', m.runtimeSeconds]);
  if (rows.length || c.evaluation?.length) {
    out.push('## Results', '');
    if (rows.length) out.push('| | value |', '|---|---|', ...rows.map(([k, v]) => `| ${k} | ${fmt(v)} |`), '');
    if (c.evaluation?.length) {
      const withBase = c.evaluation.some((e) => e.base !== undefined);
      out.push(
        withBase ? '| metric | base | fine-tuned |' : '| metric | value |',
        withBase ? '|---|---|---|' : '|---|---|',
      );
      for (const e of c.evaluation)
        out.push(
          withBase
            ? `| ${e.name} | ${e.base !== undefined ? fmt(e.base) : '-'} | ${fmt(e.value)} |`
            : `| ${e.name} | ${fmt(e.value)} |`,
        );
      out.push('');
    }
  }

  out.push('## How to use', '', '### Transformers / PEFT', '');
  out.push(
    fenced(
      'python',
      adapter
        ? [
            'from peft import PeftModel',
            'from transformers import AutoModelForCausalLM, AutoTokenizer',
            '',
            `base = AutoModelForCausalLM.from_pretrained("${c.baseModel}")`,
            `model = PeftModel.from_pretrained(base, "${repo}")`,
            `tokenizer = AutoTokenizer.from_pretrained("${c.baseModel}")`,
            '# optional: fold the adapter into the weights',
            'model = model.merge_and_unload()',
          ].join('\n')
        : [
            'from transformers import AutoModelForCausalLM, AutoTokenizer',
            '',
            `model = AutoModelForCausalLM.from_pretrained("${repo}")`,
            `tokenizer = AutoTokenizer.from_pretrained("${repo}")`,
          ].join('\n'),
    ),
    '',
    '### llama.cpp',
    '',
  );
  if (adapter) {
    const gguf = c.ggufFile ?? 'adapter.gguf';
    out.push(
      `The base model as GGUF (\`convert_hf_to_gguf.py\`) plus this adapter as a GGUF LoRA${c.ggufFile ? ` (\`${c.ggufFile}\` in this repo)` : ` (\`ft export gguf --adapter . --base BASE_MODEL_DIR --out ${gguf}\`)`}:`,
      '',
      fenced('sh', `llama-cli -m base-model-f16.gguf --lora ${gguf} -p "Hello"`),
      '',
    );
  } else {
    out.push(
      fenced(
        'sh',
        [
          `python convert_hf_to_gguf.py ${repo.split('/')[1]} --outfile model-f16.gguf --outtype f16`,
          'llama-cli -m model-f16.gguf -p "Hello"',
        ].join('\n'),
      ),
      '',
    );
  }
  return out.join('\n');
}

/** Writes `dir/README.md` atomically. */
export async function writeModelCard(dir: string, c: CardInput): Promise<string> {
  const file = path.join(dir, 'README.md');
  await writeFileAtomic(file, modelCard(c));
  return file;
}
