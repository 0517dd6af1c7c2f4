// Recipe-facing data options, named as in axolotl: `datasets: [{ path, type, field_* }]`, sequence_len, sample_packing, ...
import { z } from 'zod';
import { TEMPLATE_NAMES } from './templates.ts';

/** One entry of a recipe's `datasets:` list. */
export const DatasetEntrySchema = z
  .object({
    /** a file, a glob of shards (`data/train-*.arrow`), or a `datasets` save_to_disk folder; relative to the recipe; or a Hub dataset id (`tatsu-lab/alpaca`) */
    path: z.string().min(1),
    /** Hub datasets: a config (README `configs:` name, or a folder of the Parquet conversion) */
    name: z.string().min(1).optional(),
    /** Hub datasets: the split to read (default train) */
    split: z.string().min(1).optional(),
    /** files to read, globs relative to `path` (a folder or a Hub dataset); wins over name and split */
    data_files: z
      .union([z.string().min(1), z.array(z.string().min(1)).min(1)], { error: 'expected a glob or a list of globs' })
      .optional(),
    /** Hub datasets: a branch, tag or commit (default main) */
    revision: z.string().min(1).optional(),
    /** a named prompt template (alpaca, chatml), `custom` (format / no_input_format below), or `chat` (the tokenizer's chat template) */
    type: z
      .string()
      .refine((t) => [...TEMPLATE_NAMES, 'custom', 'chat'].includes(t), {
        message: `expected one of ${[...TEMPLATE_NAMES, 'custom', 'chat'].join(', ')}`,
      })
      .default('alpaca'),
    field_instruction: z.string().default('instruction'),
    field_input: z.string().default('input'),
    field_output: z.string().default('output'),
    /** chat column; default `messages`, or ShareGPT `conversations` when the rows have that instead */
    field_messages: z.string().optional(),
    /** custom prompt with {instruction} and {input}; an optional {output} marks where the response goes (text after it is trained too) */
    format: z.string().optional(),
    /** custom prompt for rows with an empty input; defaults to `format` */
    no_input_format: z.string().optional(),
    /** jinja chat template overriding the tokenizer's */
    chat_template: z.string().optional(),
    /** chat roles whose messages are trained on (unless train_on_inputs) */
    roles_to_train: z.array(z.enum(['system', 'user', 'assistant', 'tool'])).default(['assistant']),
    /** generate ft's synth tasks at `path` (a save_to_disk folder with train and test splits) when it is absent */
    synth: z
      .strictObject({
        rows: z.number().int().min(1).default(3000),
        held_out: z.number().int().min(0).default(200),
        seed: z.number().int().min(0).default(0),
      })
      .optional(),
  })
  .strict()
  .superRefine((d, ctx) => {
    if (d.type === 'custom' && !d.format)
      ctx.addIssue({
        code: 'custom',
        path: ['format'],
        message: "type 'custom' needs a format with {instruction} (and {input})",
      });
  });
export type DatasetEntry = z.output<typeof DatasetEntrySchema>;

/** The top-level recipe keys the data pipeline reads; the recipe schema spreads this shape. */
export const dataRecipeShape = {
  datasets: z.array(DatasetEntrySchema).min(1),
  sequence_len: z.number().int().min(2).default(512),
  sample_packing: z.boolean().default(false),
  train_on_inputs: z.boolean().default(false),
  micro_batch_size: z.number().int().min(1).default(1),
  seed: z.number().int().default(42),
  /** held-out rows: a fraction in (0, 1) or a count >= 1; 0 = none */
  val_set_size: z.number().min(0).default(0),
  /** a tokenized example longer than sequence_len: drop it (counted), truncate it, or stop with an error */
  excess_length_strategy: z.enum(['drop', 'truncate', 'error']).default('drop'),
  /** a row with a null or non-string field: stop with an error naming it, or skip it (counted) */
  on_bad_row: z.enum(['error', 'skip']).default('error'),
  /** rows held by the streaming shuffle; 0 = keep file order */
  shuffle_buffer_size: z.number().int().min(0).default(10_000),
  /** threads that tokenize (a pass's first rows are tokenized in-process); default: one per core; 1 = none */
  dataset_processes: z.number().int().min(1).optional(),
  /** folder of prepared (tokenized once) datasets, one subfolder per data key hash; default output_dir/last_run_prepared */
  dataset_prepared_path: z.string().min(1).optional(),
};
export const DataRecipeSchema = z.object(dataRecipeShape);
export type DataRecipe = z.output<typeof DataRecipeSchema>;
