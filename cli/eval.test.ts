import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { attachLora } from '../adapters/lora.ts';
import { savePeftAdapter } from '../adapters/peft.ts';
import { adapterLabels, baseNameWarning } from '../eval/run.ts';
import { initModel } from '../model/init.ts';
import { disposeLlama } from '../model/llama.ts';
import { loadLlama } from '../model/load.ts';
import { randomLlama, tinyConfig } from '../test/random-llama.ts';
import { metricsTable, runEvalCommand, type EvalArgs } from './eval.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-eval-cli-'));
const model = path.join(tmp, 'tiny');
const data = path.join(tmp, 'eval.jsonl');
const lora = { r: 2, alpha: 4, dropout: 0, targetModules: ['q_proj', 'v_proj'] as const, useRslora: false };

beforeAll(async () => {
  await initModel(model, {
    corpus: ['Name a color. Red is a color.', 'What is two plus two? Four.'],
    vocabSize: 300,
    seed: 1,
  });
  writeFileSync(
    data,
    [
      { instruction: 'Name a color.', input: '', output: 'Red.' },
      { instruction: 'What is two plus two?', input: '', output: 'Four.' },
    ]
      .map((r) => JSON.stringify(r))
      .join('\n'),
  );
  const w = await loadLlama(model);
  await savePeftAdapter(
    path.join(tmp, 'other-base'),
    attachLora(w, { ...lora, targetModules: [...lora.targetModules] }, 1),
    'someone/llama-7b',
  );
  disposeLlama(w);
  const small = randomLlama(tinyConfig(), 2); // hidden 32 where the model has 64
  await savePeftAdapter(
    path.join(tmp, 'wrong-shape'),
    attachLora(small, { ...lora, targetModules: [...lora.targetModules] }, 1),
    model,
  );
  disposeLlama(small);
}, 60_000);
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const args = (over: Partial<EvalArgs>): EvalArgs => ({
  backend: 'wasm',
  quiet: true,
  model,
  adapter: [],
  data,
  dataType: 'alpaca',
  base: true,
  maxNewTokens: 4,
  temperature: 0,
  topK: 0,
  topP: 1,
  seed: 0,
  batchSize: 8,
  allowOverlap: false,
  loadIn4bit: false,
  reportExamples: 10,
  ...over,
});

describe('ft eval bad input, refused before generation', () => {
  it('an adapter whose shapes do not fit the model names the tensor and both shapes', async () => {
    const out = path.join(tmp, 'out-shape');
    await expect(runEvalCommand(args({ adapter: [path.join(tmp, 'wrong-shape')], out }))).rejects.toThrow(
      /wrong-shape\/adapter_model\.safetensors: tensor 'base_model\.model\.model\.layers\.0\.self_attn\.q_proj\.lora_A\.weight' has shape \[2,32\], but the model's model\.layers\.0\.self_attn\.q_proj \[64, 64\] needs \[2,64\]/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('a missing adapter folder, an empty data file, --no-base alone and a bad metric module are one-line errors', async () => {
    await expect(runEvalCommand(args({ adapter: [path.join(tmp, 'nope')] }))).rejects.toThrow(
      /nope: no adapter_config\.json/,
    );
    const empty = path.join(tmp, 'empty.jsonl');
    writeFileSync(empty, '');
    await expect(runEvalCommand(args({ data: empty }))).rejects.toThrow(/empty\.jsonl: no rows/);
    await expect(runEvalCommand(args({ base: false }))).rejects.toThrow('--no-base needs at least one --adapter');
    const bad = path.join(tmp, 'bad-metric.mjs');
    writeFileSync(bad, 'export const score = 1;\n');
    await expect(runEvalCommand(args({ metric: bad }))).rejects.toThrow(
      /--metric .*bad-metric\.mjs: expected a default export/,
    );
    await expect(runEvalCommand(args({ topP: 0 }))).rejects.toThrow('--top-p must be in (0, 1], got 0');
  });

  it('a metric that throws is tried on one example before generating, and named with the row', async () => {
    const throws = path.join(tmp, 'throws-metric.mjs');
    writeFileSync(throws, "export default () => { throw new Error('boom'); };\n");
    const out = path.join(tmp, 'out-throws');
    await expect(runEvalCommand(args({ metric: throws, out }))).rejects.toThrow(
      /^--metric .*throws-metric\.mjs: failed on .*eval\.jsonl line 1 \(boom\)$/,
    );
    expect(existsSync(out)).toBe(false);
  });

  it('a metric that fails on a generated answer keeps the generations in results.jsonl', async () => {
    const picky = path.join(tmp, 'picky-metric.mjs'); // passes the reference itself, fails on anything else
    writeFileSync(
      picky,
      "export default (p, r) => { if (p !== r) throw new Error('not the reference'); return 1; };\n",
    );
    const out = path.join(tmp, 'out-picky');
    await expect(runEvalCommand(args({ metric: picky, out }))).rejects.toThrow(
      new RegExp(
        `^--metric .*picky-metric\\.mjs: failed on .*eval\\.jsonl line 1 \\(not the reference\\); the generations are kept in ${out}/results\\.jsonl$`,
      ),
    );
    const lines = readFileSync(path.join(out, 'results.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(lines.map((l) => l.reference)).toEqual(['Red.', 'Four.']);
    expect(typeof lines[0].outputs.base).toBe('string');
  });

  it('an adapter made for a differently named base is evaluated with a warning (shapes match)', async () => {
    const lines: string[] = [];
    const r = await runEvalCommand(
      args({ adapter: [path.join(tmp, 'other-base')], out: path.join(tmp, 'out-warn') }),
      (l) => lines.push(l),
    );
    expect(lines.filter((l) => l.startsWith('ft: warning:'))).toEqual([
      `ft: warning: adapter ${path.join(tmp, 'other-base')} was trained on base_model_name_or_path 'someone/llama-7b', not on ${model} (shapes match; scores may mean little)`,
    ]);
    expect(r.models.map((m) => m.name)).toEqual(['base', 'other-base']);
    expect(metricsTable(r).split('\n')[0]).toMatch(/^model\s+loss\s+ppl\s+exact_match\s+f1\s+rougeL$/);
    // B = 0 at init: the untrained adapter changes nothing
    expect(r.models[1].outputs).toEqual(r.models[0].outputs);
    expect(r.models[1].loss.loss).toBeCloseTo(r.models[0].loss.loss, 5);
  }, 60_000);
});

describe('model names', () => {
  it('labels adapters by folder, with the parent when the name is generic or shared', () => {
    expect(adapterLabels(['/runs/a/adapter', '/x/lora-1', '/y/ckpt', '/z/ckpt'])).toEqual([
      'a/adapter',
      'lora-1',
      'y/ckpt',
      'z/ckpt',
    ]);
  });

  it('base_model_name_or_path matches the folder, its name, or the Hub id of a cache snapshot', () => {
    expect(baseNameWarning('a', null, '/m/tiny', [])).toBeNull();
    expect(baseNameWarning('a', '/m/tiny', '/m/tiny', [])).toBeNull();
    expect(baseNameWarning('a', 'meta-llama/Llama-2-7b-hf', '/models/Llama-2-7b-hf', [])).toBeNull();
    expect(baseNameWarning('a', 'org/name', '/hf/hub/models--org--name/snapshots/abc123', [])).toBeNull();
    expect(baseNameWarning('a', 'org/other', '/m/tiny', [])).toMatch(/trained on base_model_name_or_path 'org\/other'/);
  });
});
