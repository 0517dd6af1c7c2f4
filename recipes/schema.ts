// The recipe schema: every key with its type, default and the message a user sees after `key: `, the cross-field
// rules, and a walk of zod's schema graph by key path (for command-line overrides and "did you mean").
import { z } from 'zod';
import { DatasetEntrySchema, dataRecipeShape } from '../data/spec.ts';
import { BACKENDS } from '../engine/backend.ts';
import { PRESETS, type PresetName } from '../model/init.ts';
import { LINEAR_NAMES, type LinearName } from '../model/types.ts';
import { LR_SCHEDULERS } from '../train/schedule.ts';

// ---- field types, each with the message a user sees after `key: ` ----
const posInt = (what = 'a positive integer') =>
  z.int({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });
const nonNegInt = (what = 'a non-negative integer') =>
  z.int({ error: `expected ${what}` }).min(0, { error: `expected ${what}` });
const posNum = (what = 'a positive number') =>
  z.number({ error: `expected ${what}` }).positive({ error: `expected ${what}` });
const nonNegNum = (what = 'a number >= 0') =>
  z.number({ error: `expected ${what}` }).min(0, { error: `expected ${what}` });
const unit = (what: string) =>
  z
    .number({ error: `expected ${what}` })
    .min(0, { error: `expected ${what}` })
    .max(1, { error: `expected ${what}` });
const below1 = () =>
  z
    .number({ error: 'expected a number in [0, 1)' })
    .min(0, { error: 'expected a number in [0, 1)' })
    .lt(1, { error: 'expected a number in [0, 1)' });
const bool = () => z.boolean({ error: 'expected true or false' });
const str = (what = 'a string') => z.string({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) =>
  z.enum(values, { error: `expected one of ${values.join(', ')}` });

/** End-of-training generation eval. */
export const EvalSectionSchema = z.strictObject({
  /** a prompts file (same formats as datasets); default: the validation split */
  data: str('a file path').optional(),
  /** how to read `data`: as a datasets entry's type (alpaca, chatml, chat, ...) */
  data_type: DatasetEntrySchema.shape.type,
  max_new_tokens: posInt().default(128),
  /** 0 = greedy */
  temperature: nonNegNum().default(0),
  top_p: unit('a number in [0, 1]').default(1),
  max_samples: posInt().optional(),
});

const targetModules = z.union([z.literal('all-linear'), z.array(oneOf(LINEAR_NAMES)).min(1)], {
  error: `expected all-linear or a list of ${LINEAR_NAMES.join(', ')}`,
});

/** Every recipe key with axolotl / Hugging Face Trainer defaults; data keys come from data/spec.ts. */
export const RecipeFields = z.strictObject({
  // model
  base_model: str('a model folder or a Hugging Face id'),
  base_model_revision: str('a branch, tag or commit of the Hub repo').optional(), // default main
  base_model_init: z
    .strictObject({
      preset: oneOf(Object.keys(PRESETS) as [PresetName]),
      seed: nonNegInt().default(0),
      init_std: posNum().optional(),
    })
    .optional(),
  load_in_4bit: bool().optional(), // default: true for qlora, false for lora
  backend: oneOf(['auto', ...BACKENDS]).default('auto'),
  num_threads: posInt().optional(), // default: every core the process may use (engine/backend.ts)
  allow_longer_sequence_len: bool().default(false), // sequence_len past the model's max_position_embeddings (recipes/context.ts)
  // adapter (PEFT LoraConfig defaults)
  adapter: oneOf(['lora', 'qlora']).default('lora'),
  lora_r: posInt().default(8),
  lora_alpha: posNum().default(8),
  lora_dropout: below1().default(0),
  lora_target_modules: targetModules.default(['q_proj', 'v_proj']),
  lora_target_linear: bool().default(false),
  peft_use_rslora: bool().default(false),
  layers_to_transform: z
    .union([nonNegInt(), z.array(nonNegInt()).min(1)], { error: 'expected a layer index or a list of layer indices' })
    .optional(),
  // data: datasets, sequence_len, sample_packing, train_on_inputs, micro_batch_size, seed, val_set_size, ... (owned by data/)
  ...dataRecipeShape,
  // batches and length of training
  gradient_accumulation_steps: posInt().default(1),
  gradient_checkpointing: bool().default(false), // recompute each decoder layer in backward: one layer's activations held, ~1/3 more compute
  num_epochs: posNum().optional(),
  max_steps: posInt().optional(), // wins over num_epochs, as in HF Trainer
  // optimization
  learning_rate: posNum().default(5e-5),
  lr_scheduler: oneOf(LR_SCHEDULERS).default('cosine'),
  warmup_steps: nonNegInt().optional(),
  warmup_ratio: unit('a number in [0, 1]').optional(),
  optimizer: oneOf(['adamw_torch', 'adamw']).default('adamw_torch'),
  adam_beta1: below1().default(0.9),
  adam_beta2: below1().default(0.999),
  adam_epsilon: posNum().default(1e-8),
  weight_decay: nonNegNum().default(0),
  max_grad_norm: nonNegNum('a number >= 0 (0 disables clipping)').default(1),
  // outputs
  output_dir: str('a folder path').default('./model-out'),
  save_steps: posInt().optional(), // default: save at the end only
  save_total_limit: posInt().optional(),
  eval_steps: posInt().optional(), // default: evaluate at the end only
  logging_steps: posInt().default(10),
  hub_model_id: str('a Hugging Face repo id such as user/name').optional(),
  resume_from_checkpoint: str('a checkpoint folder path').optional(),
  eval: EvalSectionSchema.optional(),
});

/** Cross-field rules, reported at the key that has to change. */
export const RecipeSchema = RecipeFields.superRefine((r, ctx) => {
  const issue = (key: string, message: string) =>
    ctx.addIssue({ code: 'custom', path: [key], message, params: { crossField: true } });
  if (r.num_epochs === undefined && r.max_steps === undefined) issue('num_epochs', 'set num_epochs or max_steps');
  if (r.warmup_steps !== undefined && r.warmup_ratio !== undefined)
    issue('warmup_ratio', 'set warmup_steps or warmup_ratio, not both');
  if (r.adapter === 'qlora' && r.load_in_4bit === false)
    issue('load_in_4bit', 'adapter qlora needs load_in_4bit true (or use adapter lora)');
  if (r.val_set_size >= 1 && !Number.isInteger(r.val_set_size))
    issue('val_set_size', 'expected a fraction in [0, 1) or a whole number of examples');
}).transform((r) => ({
  ...r,
  load_in_4bit: r.load_in_4bit ?? r.adapter === 'qlora',
  /** resolved: lora_target_linear or all-linear expand to every projection */
  lora_target_modules: (r.lora_target_linear || r.lora_target_modules === 'all-linear'
    ? [...LINEAR_NAMES]
    : r.lora_target_modules) as LinearName[],
  layers_to_transform: typeof r.layers_to_transform === 'number' ? [r.layers_to_transform] : r.layers_to_transform,
}));

/** A validated recipe: defaults filled in, target modules expanded, local paths absolute. */
export type Recipe = z.output<typeof RecipeSchema>;

export type Key = string | number;

/** zod's schema graph, read through its public `def` to find the field under a key path. */
export type AnySchema = z.ZodType;

export function fieldSchema(schema: AnySchema, keys: Key[]): AnySchema | null {
  let s: AnySchema = schema;
  for (const key of keys) {
    s = unwrap(s);
    const def = (s as unknown as { def: { type: string; shape?: Record<string, AnySchema>; element?: AnySchema } }).def;
    if (def.type === 'object' && typeof key === 'string' && def.shape && key in def.shape) s = def.shape[key];
    else if (def.type === 'array' && typeof key === 'number' && def.element) s = def.element;
    else return null;
  }
  return unwrap(s);
}

export function unwrap(s: AnySchema): AnySchema {
  for (;;) {
    const def = (s as unknown as { def: { type: string; innerType?: AnySchema } }).def;
    if ((def.type === 'optional' || def.type === 'default') && def.innerType) s = def.innerType;
    else return s;
  }
}

export function kindOf(s: AnySchema): string {
  return (s as unknown as { def: { type: string } }).def.type;
}

/** Keys an object schema accepts, for "did you mean". */
export function knownKeys(keys: Key[]): string[] {
  const s = fieldSchema(RecipeFields, keys);
  const shape = s && (s as unknown as { def: { shape?: Record<string, unknown> } }).def.shape;
  return shape ? Object.keys(shape) : [];
}
