import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LINEAR_NAMES } from '../model/types.ts';
import {
  adamWConfigOf,
  DEFAULT_RECIPE,
  loadRecipe,
  loraConfigOf,
  parseRecipe,
  recipeToYaml,
  scheduleOf,
} from './recipe.ts';
import { parseOverrideArgs } from './overrides.ts';

const repo = path.resolve(import.meta.dirname, '..');
const minimal = 'base_model: ./m\ndatasets:\n  - path: d.jsonl\nmax_steps: 10\n';
const errorOf = (text: string, overrides = {}) => {
  try {
    parseRecipe(text, 'recipes/x.yaml', overrides);
  } catch (e) {
    return (e as Error).message;
  }
  throw new Error('expected the recipe to be rejected');
};

describe('shipped recipes', () => {
  it('alpaca-tiny (the default) validates and resolves its paths against the recipe folder', () => {
    const r = loadRecipe(DEFAULT_RECIPE);
    expect(r.base_model).toBe(path.join(repo, 'models/tiny-synth'));
    expect(r.base_model_init).toMatchObject({ seed: 0 });
    // everything it reads is generated inside the repository: ft's synth tasks, streamed from the Arrow train split
    expect(r.datasets[0]).toMatchObject({
      path: path.join(repo, 'datasets/synth-tasks'),
      type: 'alpaca',
      synth: { seed: 0 },
    });
    expect(r.eval?.data).toBe(path.join(repo, 'datasets/synth-tasks/test'));
    for (const p of [r.base_model, r.datasets[0].path, r.eval!.data!, r.output_dir])
      expect(path.relative(repo, p).startsWith('..'), p).toBe(false);
    expect(r.output_dir).toBe(path.join(repo, 'runs/alpaca-tiny'));
    expect(r.adapter).toBe('qlora');
    expect(r.load_in_4bit).toBe(true);
    expect(r.lora_target_modules).toEqual([...LINEAR_NAMES]);
  });

  it('alpaca (TinyLlama QLoRA) validates and keeps the Hub id', () => {
    const r = loadRecipe(path.join(repo, 'recipes/alpaca.yaml'));
    expect(r.base_model).toBe('TinyLlama/TinyLlama-1.1B-Chat-v1.0');
    expect(r.gradient_accumulation_steps * r.micro_batch_size).toBe(16);
    expect(r.lora_target_modules).toHaveLength(7);
  });
});

describe('defaults and normalization', () => {
  it('fills axolotl / HF Trainer / PEFT defaults', () => {
    const r = parseRecipe(minimal, '/tmp/r/x.yaml');
    expect(r).toMatchObject({
      adapter: 'lora',
      load_in_4bit: false,
      lora_r: 8,
      lora_alpha: 8,
      lora_dropout: 0,
      lora_target_modules: ['q_proj', 'v_proj'],
      sequence_len: 512,
      micro_batch_size: 1,
      gradient_accumulation_steps: 1,
      learning_rate: 5e-5,
      lr_scheduler: 'cosine',
      adam_beta1: 0.9,
      adam_beta2: 0.999,
      adam_epsilon: 1e-8,
      weight_decay: 0,
      max_grad_norm: 1,
      seed: 42,
      val_set_size: 0,
      output_dir: '/tmp/r/model-out',
      backend: 'auto',
    });
    expect(r.datasets[0]).toMatchObject({ path: '/tmp/r/d.jsonl', type: 'alpaca', field_instruction: 'instruction' });
  });

  it('qlora implies load_in_4bit; a single layer index becomes a list', () => {
    const r = parseRecipe(minimal + 'adapter: qlora\nlayers_to_transform: 3\n', 'x.yaml');
    expect(r.load_in_4bit).toBe(true);
    expect(r.layers_to_transform).toEqual([3]);
  });

  it('a Hub id stays an id, for a model and a dataset; a data file path stays local', () => {
    const r = parseRecipe(minimal.replace('./m', 'org/llama') + 'base_model_revision: v1\n', '/nowhere/x.yaml');
    expect(r.base_model).toBe('org/llama');
    expect(r.base_model_revision).toBe('v1');
    const d = parseRecipe(
      minimal.replace('  - path: d.jsonl\n', '  - path: tatsu-lab/alpaca\n    split: train\n  - path: data/x.jsonl\n'),
      '/nowhere/x.yaml',
    );
    expect(d.datasets.map((e) => e.path)).toEqual(['tatsu-lab/alpaca', '/nowhere/data/x.jsonl']);
  });

  it('recipeToYaml round-trips to the same recipe', () => {
    const r = loadRecipe(DEFAULT_RECIPE);
    expect(parseRecipe(recipeToYaml(r, 'resolved by ft'), '/elsewhere/x.yaml')).toEqual(r);
  });
});

describe('settings for the modules a run builds', () => {
  it('maps recipe keys to the LoRA, AdamW and schedule configs', () => {
    const r = parseRecipe(
      minimal +
        'lora_r: 4\nlora_alpha: 8\npeft_use_rslora: true\nlayers_to_transform: [1]\nweight_decay: 0.01\nwarmup_ratio: 0.1\nlr_scheduler: linear\n',
      'x.yaml',
    );
    expect(loraConfigOf(r)).toEqual({
      r: 4,
      alpha: 8,
      dropout: 0,
      targetModules: ['q_proj', 'v_proj'],
      layersToTransform: [1],
      useRslora: true,
    });
    expect(adamWConfigOf(r)).toEqual({ beta1: 0.9, beta2: 0.999, eps: 1e-8, weightDecay: 0.01 });
    expect(scheduleOf(r, 95)).toEqual({ name: 'linear', totalSteps: 95, warmupSteps: 10 });
  });
});

describe('command-line overrides', () => {
  it('parses --key value, --key=value and bare flags', () => {
    expect(
      parseOverrideArgs(['--lora_r', '16', '--learning_rate=1e-4', '--sample_packing', '--datasets.0.path', 'y.jsonl']),
    ).toEqual({
      lora_r: '16',
      learning_rate: '1e-4',
      sample_packing: 'true',
      'datasets.0.path': 'y.jsonl',
    });
  });

  it('converts each value by its field type, including lists and nested keys', () => {
    const r = parseRecipe(minimal, '/r/x.yaml', {
      lora_r: '16',
      learning_rate: '1e-4',
      sample_packing: 'true',
      lora_target_modules: 'q_proj,k_proj',
      layers_to_transform: '0,2',
      'datasets.0.path': 'other.jsonl',
      hub_model_id: 'me/123',
      'eval.max_new_tokens': '7',
    });
    expect(r).toMatchObject({
      lora_r: 16,
      learning_rate: 1e-4,
      sample_packing: true,
      lora_target_modules: ['q_proj', 'k_proj'],
      layers_to_transform: [0, 2],
      hub_model_id: 'me/123',
    });
    expect(r.datasets[0].path).toBe('/r/other.jsonl');
    expect(r.eval?.max_new_tokens).toBe(7);
  });

  it('null removes a key, so an exclusive pair can be switched', () => {
    const r = parseRecipe(minimal + 'warmup_steps: 5\n', 'x.yaml', { warmup_steps: 'null', warmup_ratio: '0.1' });
    expect(r.warmup_steps).toBeUndefined();
    expect(r.warmup_ratio).toBe(0.1);
  });

  it('names the flag in errors', () => {
    expect(errorOf(minimal, { lora_r: 'eight' })).toBe('--lora_r: expected a positive integer, got "eight"');
    expect(errorOf(minimal, { lora_rr: '8' })).toBe("--lora_rr: unknown recipe key 'lora_rr' (did you mean 'lora_r'?)");
  });
});

describe('errors name the file, line and key', () => {
  it('a wrong type', () => {
    expect(errorOf(minimal + 'lora_r: eight\n')).toBe(
      'recipes/x.yaml:5: lora_r: expected a positive integer, got "eight"',
    );
  });

  it('the first problem in file order, counting the rest', () => {
    expect(errorOf(minimal + 'lora_dropout: 1.5\nlora_r: 0\n')).toBe(
      'recipes/x.yaml:5: lora_dropout: expected a number in [0, 1), got 1.5 (and 1 more)',
    );
  });

  it('names infinite and not-a-number values as such (YAML .inf, -.inf, .nan)', () => {
    expect(errorOf(minimal + 'learning_rate: .inf\n')).toBe(
      'recipes/x.yaml:5: learning_rate: expected a positive number, got .inf (infinite)',
    );
    expect(errorOf(minimal + 'max_grad_norm: -.inf\n')).toBe(
      'recipes/x.yaml:5: max_grad_norm: expected a number >= 0 (0 disables clipping), got -.inf (infinite)',
    );
    expect(errorOf(minimal + 'lora_alpha: .nan\n')).toBe(
      'recipes/x.yaml:5: lora_alpha: expected a positive number, got .nan (not a number)',
    );
    expect(errorOf(minimal + 'lora_dropout: .NaN\n')).toBe(
      'recipes/x.yaml:5: lora_dropout: expected a number in [0, 1), got .nan (not a number)',
    );
  });

  it('data fields (schema from data/spec.ts) get the same plain messages', () => {
    expect(errorOf(minimal + 'sequence_len: 1\n')).toBe(
      'recipes/x.yaml:5: sequence_len: expected a number >= 2, got 1',
    );
    expect(errorOf(minimal + 'sample_packing: yes\n')).toBe(
      'recipes/x.yaml:5: sample_packing: expected true or false, got "yes"',
    );
    expect(errorOf(minimal + 'excess_length_strategy: cut\n')).toBe(
      'recipes/x.yaml:5: excess_length_strategy: expected one of drop, truncate, error, got "cut"',
    );
  });

  it('the eval section', () => {
    expect(errorOf(minimal + 'eval:\n  data: p.jsonl\n  data_type: alpacca\n')).toMatch(
      /^recipes\/x.yaml:7: eval.data_type: expected one of alpaca, .*got "alpacca"$/,
    );
    expect(parseRecipe(minimal + 'eval:\n  data: p.jsonl\n', '/r/x.yaml').eval).toEqual({
      data: '/r/p.jsonl',
      data_type: 'alpaca',
      max_new_tokens: 128,
      temperature: 0,
      top_p: 1,
    });
  });

  it('an unknown key, with a suggestion', () => {
    expect(errorOf(minimal + 'lora_rr: 8\n')).toBe("recipes/x.yaml:5: unknown key 'lora_rr' (did you mean 'lora_r'?)");
    expect(errorOf(minimal.replace('  - path: d.jsonl', '  - path: d.jsonl\n    feild_input: x'))).toBe(
      "recipes/x.yaml:4: unknown key 'datasets.0.feild_input' (did you mean 'field_input'?)",
    );
  });

  it('a bad enum inside a list', () => {
    expect(errorOf(minimal + 'lora_target_modules: [q_proj, qq_proj]\n')).toMatch(
      /^recipes\/x.yaml:5: lora_target_modules: expected all-linear or a list of q_proj/,
    );
    expect(errorOf(minimal + 'lr_scheduler: cosin\n')).toBe(
      'recipes/x.yaml:5: lr_scheduler: expected one of cosine, linear, constant, constant_with_warmup, got "cosin"',
    );
  });

  it('cross-field rules', () => {
    expect(errorOf(minimal.replace('max_steps: 10\n', ''))).toBe(
      'recipes/x.yaml: num_epochs: set num_epochs or max_steps',
    );
    expect(errorOf(minimal + 'warmup_steps: 5\nwarmup_ratio: 0.1\n')).toBe(
      'recipes/x.yaml:6: warmup_ratio: set warmup_steps or warmup_ratio, not both',
    );
    expect(errorOf(minimal + 'adapter: qlora\nload_in_4bit: false\n')).toBe(
      'recipes/x.yaml:6: load_in_4bit: adapter qlora needs load_in_4bit true (or use adapter lora)',
    );
    expect(errorOf(minimal.replace('d.jsonl', 'd.jsonl\n    type: custom'))).toBe(
      "recipes/x.yaml:3: datasets.0.format: type 'custom' needs a format with {instruction} (and {input})",
    );
  });

  it('missing required keys, broken YAML, and a non-mapping document', () => {
    expect(errorOf('base_model: x\nmax_steps: 3\n')).toBe('recipes/x.yaml: datasets: expected a list (missing)');
    expect(errorOf('base_model: x\nlora_r: [1,\n')).toMatch(/^recipes\/x.yaml:\d+: invalid YAML: /);
    expect(errorOf('- a\n- b\n')).toBe('recipes/x.yaml: expected a mapping of recipe keys');
  });

  it('base_model_init needs a local base model', () => {
    expect(errorOf(minimal.replace('./m', 'org/llama') + 'base_model_init: { preset: tiny }\n')).toBe(
      "recipes/x.yaml: base_model_init needs base_model to be a local folder, got Hub id 'org/llama'",
    );
  });
});
