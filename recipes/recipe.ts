// Training recipes: YAML files with axolotl-style keys, validated strictly by zod, with command-line overrides.
// Errors point at the recipe line (or the --flag) that is wrong: `recipes/x.yaml:12: lora_r: expected ...`.
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isMap, isScalar, LineCounter, parseDocument, stringify, type Document } from 'yaml';
import { z } from 'zod';
import type { LoraConfig } from '../adapters/lora.ts';
import { DatasetEntrySchema, dataRecipeShape } from '../data/spec.ts';
import { BACKENDS } from '../engine/backend.ts';
import { PRESETS, type PresetName } from '../model/init.ts';
import { LINEAR_NAMES, type LinearName } from '../model/types.ts';
import { FtError } from '../util/errors.ts';
import type { AdamWConfig } from '../train/optimizer.ts';
import { LR_SCHEDULERS, warmupSteps, type ScheduleSpec } from '../train/schedule.ts';

/** The recipe ft trains with when none is given: a tiny model on the Alpaca seed tasks. */
export const DEFAULT_RECIPE = fileURLToPath(new URL('./alpaca-tiny.yaml', import.meta.url));

// ---- field types, each with the message a user sees after `key: ` ----
const posInt = (what = 'a positive integer') => z.int({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });
const nonNegInt = (what = 'a non-negative integer') => z.int({ error: `expected ${what}` }).min(0, { error: `expected ${what}` });
const posNum = (what = 'a positive number') => z.number({ error: `expected ${what}` }).positive({ error: `expected ${what}` });
const nonNegNum = (what = 'a number >= 0') => z.number({ error: `expected ${what}` }).min(0, { error: `expected ${what}` });
const unit = (what: string) => z.number({ error: `expected ${what}` }).min(0, { error: `expected ${what}` }).max(1, { error: `expected ${what}` });
const below1 = () => z.number({ error: 'expected a number in [0, 1)' }).min(0, { error: 'expected a number in [0, 1)' }).lt(1, { error: 'expected a number in [0, 1)' });
const bool = () => z.boolean({ error: 'expected true or false' });
const str = (what = 'a string') => z.string({ error: `expected ${what}` }).min(1, { error: `expected ${what}` });
const oneOf = <const T extends readonly [string, ...string[]]>(values: T) => z.enum(values, { error: `expected one of ${values.join(', ')}` });

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
const RecipeFields = z.strictObject({
  // model
  base_model: str('a model folder or a Hugging Face id'),
  base_model_revision: str('a branch, tag or commit of the Hub repo').optional(), // default main
  base_model_init: z.strictObject({ preset: oneOf(Object.keys(PRESETS) as [PresetName]), seed: nonNegInt().default(0), init_std: posNum().optional() }).optional(),
  load_in_4bit: bool().optional(), // default: true for qlora, false for lora
  backend: oneOf(['auto', ...BACKENDS]).default('auto'),
  allow_longer_sequence_len: bool().default(false), // sequence_len past the model's max_position_embeddings (recipes/context.ts)
  // adapter (PEFT LoraConfig defaults)
  adapter: oneOf(['lora', 'qlora']).default('lora'),
  lora_r: posInt().default(8),
  lora_alpha: posNum().default(8),
  lora_dropout: below1().default(0),
  lora_target_modules: targetModules.default(['q_proj', 'v_proj']),
  lora_target_linear: bool().default(false),
  peft_use_rslora: bool().default(false),
  layers_to_transform: z.union([nonNegInt(), z.array(nonNegInt()).min(1)], { error: 'expected a layer index or a list of layer indices' }).optional(),
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
const RecipeSchema = RecipeFields.superRefine((r, ctx) => {
  const issue = (key: string, message: string) => ctx.addIssue({ code: 'custom', path: [key], message, params: { crossField: true } });
  if (r.num_epochs === undefined && r.max_steps === undefined) issue('num_epochs', 'set num_epochs or max_steps');
  if (r.warmup_steps !== undefined && r.warmup_ratio !== undefined) issue('warmup_ratio', 'set warmup_steps or warmup_ratio, not both');
  if (r.adapter === 'qlora' && r.load_in_4bit === false) issue('load_in_4bit', 'adapter qlora needs load_in_4bit true (or use adapter lora)');
  if (r.val_set_size >= 1 && !Number.isInteger(r.val_set_size)) issue('val_set_size', 'expected a fraction in [0, 1) or a whole number of examples');
}).transform((r) => ({
  ...r,
  load_in_4bit: r.load_in_4bit ?? r.adapter === 'qlora',
  /** resolved: lora_target_linear or all-linear expand to every projection */
  lora_target_modules: (r.lora_target_linear || r.lora_target_modules === 'all-linear' ? [...LINEAR_NAMES] : r.lora_target_modules) as LinearName[],
  layers_to_transform: typeof r.layers_to_transform === 'number' ? [r.layers_to_transform] : r.layers_to_transform,
}));

/** A validated recipe: defaults filled in, target modules expanded, local paths absolute. */
export type Recipe = z.output<typeof RecipeSchema>;

/** `--key value` pairs from the command line, keys as dotted paths (`lora_r`, `datasets.0.path`). */
export type Overrides = Record<string, string>;

/** Loads, overrides, validates and resolves a recipe file. Throws FtError naming the line or flag at fault. */
export function loadRecipe(file: string, overrides: Overrides = {}): Recipe {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new FtError(`${file}: cannot read recipe (${(e as NodeJS.ErrnoException).code ?? e})`);
  }
  return parseRecipe(text, file, overrides);
}

/** As loadRecipe, from YAML text; `file` names the source in errors and its folder anchors relative paths. */
export function parseRecipe(text: string, file: string, overrides: Overrides = {}): Recipe {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const err = doc.errors[0];
    throw new FtError(`${file}:${lines.linePos(err.pos[0]).line}: invalid YAML: ${err.message.split('\n')[0]}`);
  }
  const raw = doc.toJS() ?? {};
  if (typeof raw !== 'object' || Array.isArray(raw)) throw new FtError(`${file}: expected a mapping of recipe keys`);
  const overridden = applyOverrides(raw, overrides);
  const parsed = RecipeSchema.safeParse(raw, { error: plainMessage });
  if (!parsed.success) {
    // report the first problem in file order (command-line ones first)
    const src = { file, doc, lines, overridden };
    const order = (i: z.core.$ZodIssue) => {
      const where = locate(src, i.code === 'unrecognized_keys' ? [...(i.path as Key[]), i.keys[0]] : (i.path as Key[]), true);
      return where.startsWith('--') ? -1 : Number(where.slice(file.length + 1)) || Infinity;
    };
    const issues = [...parsed.error.issues].sort((a, b) => order(a) - order(b));
    const more = issues.length > 1 ? ` (and ${issues.length - 1} more)` : '';
    throw new FtError(describeIssue(issues[0], raw, src) + more);
  }
  return resolvePaths(parsed.data, path.dirname(path.resolve(file)), file);
}

/** The adapter a recipe asks for, as adapters/lora.ts takes it. */
export function loraConfigOf(r: Recipe): LoraConfig {
  return { r: r.lora_r, alpha: r.lora_alpha, dropout: r.lora_dropout, targetModules: r.lora_target_modules, layersToTransform: r.layers_to_transform, useRslora: r.peft_use_rslora };
}

export function adamWConfigOf(r: Recipe): AdamWConfig {
  return { beta1: r.adam_beta1, beta2: r.adam_beta2, eps: r.adam_epsilon, weightDecay: r.weight_decay };
}

/** The LR schedule over a run of `totalSteps` optimizer steps (see totalTrainingSteps). */
export function scheduleOf(r: Recipe, totalSteps: number): ScheduleSpec {
  return { name: r.lr_scheduler, totalSteps, warmupSteps: warmupSteps(totalSteps, r.warmup_steps, r.warmup_ratio) };
}

/** The resolved recipe as YAML, to save beside a run's outputs (loads back to the same Recipe). */
export function recipeToYaml(recipe: Recipe, header?: string): string {
  const body = stringify(recipe, { lineWidth: 0 });
  return header ? `${header.replace(/^/gm, '# ')}\n${body}` : body;
}

/**
 * Parses `--key value`, `--key=value` and bare `--flag` (= true) tokens, e.g. the arguments yargs leaves unparsed.
 * Values stay strings: loadRecipe parses each by its field's type; `null` removes the key (e.g. `--warmup_steps null
 * --warmup_ratio 0.1` when the recipe sets warmup_steps).
 */
export function parseOverrideArgs(tokens: string[]): Overrides {
  const out: Overrides = {};
  for (let i = 0; i < tokens.length; i++) {
    const t = tokens[i];
    if (!t.startsWith('--') || t.length < 3) throw new FtError(`unexpected argument '${t}': expected --key value`);
    const eq = t.indexOf('=');
    if (eq > 0) out[t.slice(2, eq)] = t.slice(eq + 1);
    else if (i + 1 < tokens.length && !tokens[i + 1].startsWith('--')) out[t.slice(2)] = tokens[++i];
    else out[t.slice(2)] = 'true';
  }
  return out;
}

// ---- internals ----

const HUB_ID = /^[A-Za-z0-9][\w.-]*\/[\w.-]+$/;

/** A path is local when it looks like one or exists; otherwise an `org/name` string is a Hub id (hub/ downloads it). */
function resolveModelRef(ref: string, dir: string): string {
  const expanded = ref.startsWith('~/') ? path.join(os.homedir(), ref.slice(2)) : ref;
  const local = path.resolve(dir, expanded);
  const looksLocal = /^(\.{1,2}\/|\/|~\/)/.test(ref) || !HUB_ID.test(ref) || existsSync(local);
  return looksLocal ? local : ref;
}

function resolvePaths(r: Recipe, dir: string, file: string): Recipe {
  const at = (p: string) => path.resolve(dir, p.startsWith('~/') ? path.join(os.homedir(), p.slice(2)) : p);
  const base_model = resolveModelRef(r.base_model, dir);
  if (r.base_model_init && !path.isAbsolute(base_model)) {
    throw new FtError(`${file}: base_model_init needs base_model to be a local folder, got Hub id '${r.base_model}'`);
  }
  return {
    ...r,
    base_model,
    // a Hub dataset id stays an id (a data file's extension marks a local path)
    datasets: r.datasets.map((d) => ({ ...d, path: /\.(arrow|json|jsonl|parquet)$/.test(d.path) ? at(d.path) : resolveModelRef(d.path, dir) })),
    output_dir: at(r.output_dir),
    dataset_prepared_path: r.dataset_prepared_path === undefined ? undefined : at(r.dataset_prepared_path),
    resume_from_checkpoint: r.resume_from_checkpoint === undefined ? undefined : at(r.resume_from_checkpoint),
    eval: r.eval && { ...r.eval, data: r.eval.data === undefined ? undefined : at(r.eval.data) },
  };
}

type Key = string | number;

/** zod's schema graph, read through its public `def` to find the field under a key path. */
type AnySchema = z.ZodType;
function fieldSchema(schema: AnySchema, keys: Key[]): AnySchema | null {
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

function unwrap(s: AnySchema): AnySchema {
  for (;;) {
    const def = (s as unknown as { def: { type: string; innerType?: AnySchema } }).def;
    if ((def.type === 'optional' || def.type === 'default') && def.innerType) s = def.innerType;
    else return s;
  }
}

function kindOf(s: AnySchema): string {
  return (s as unknown as { def: { type: string } }).def.type;
}

/** Keys an object schema accepts, for "did you mean". */
function knownKeys(keys: Key[]): string[] {
  const s = fieldSchema(RecipeFields, keys);
  const shape = s && (s as unknown as { def: { shape?: Record<string, unknown> } }).def.shape;
  return shape ? Object.keys(shape) : [];
}

function splitKey(dotted: string): Key[] {
  return dotted.split('.').map((k) => (/^\d+$/.test(k) ? Number(k) : k));
}

/** Converts a command-line string to the type of the field it sets (number, boolean, list, string). */
function parseOverrideValue(schema: AnySchema, value: string): unknown {
  switch (kindOf(schema)) {
    case 'number':
    case 'int': {
      const n = Number(value);
      return value.trim() !== '' && Number.isFinite(n) ? n : value;
    }
    case 'boolean':
      return value === 'true' ? true : value === 'false' ? false : value;
    case 'union': {
      // e.g. lora_target_modules: all-linear | list; layers_to_transform: index | list
      if (value === 'all-linear') return value;
      const items = value.split(',').map((v) => v.trim());
      const numbers = items.map(Number);
      const asList = items.every((v) => v !== '' && Number.isFinite(Number(v))) ? numbers : items;
      return items.length === 1 && typeof asList[0] === 'number' ? asList[0] : asList;
    }
    case 'array': {
      const element = unwrap((schema as unknown as { def: { element: AnySchema } }).def.element);
      return value.split(',').map((v) => parseOverrideValue(element, v.trim()));
    }
    default:
      return value;
  }
}

/** Sets each override into the raw recipe object; returns the dotted keys set (for error locations). */
function applyOverrides(raw: Record<string, unknown>, overrides: Overrides): Set<string> {
  const done = new Set<string>();
  for (const [dotted, value] of Object.entries(overrides)) {
    const keys = splitKey(dotted);
    const schema = fieldSchema(RecipeFields, keys);
    if (!schema) {
      const parentKeys = keys.slice(0, -1);
      const last = String(keys[keys.length - 1]);
      throw new FtError(`--${dotted}: unknown recipe key '${last}'${didYouMean(last, knownKeys(parentKeys))}`);
    }
    let obj: Record<Key, unknown> = raw;
    keys.forEach((k, i) => {
      if (i === keys.length - 1) {
        if (value === 'null') delete obj[k];
        else obj[k] = parseOverrideValue(schema, value);
      } else {
        if (typeof obj[k] !== 'object' || obj[k] === null) obj[k] = typeof keys[i + 1] === 'number' ? [] : {};
        obj = obj[k] as Record<Key, unknown>;
      }
    });
    done.add(dotted);
  }
  return done;
}

interface Source {
  file: string;
  doc: Document;
  lines: LineCounter;
  overridden: Set<string>;
}

/** "expected ..." for fields that set no message of their own (zod's defaults read "Invalid input: ..."). */
function plainMessage(iss: z.core.$ZodRawIssue): string | undefined {
  const a = (n: string) => ({ int: 'an integer', number: 'a number', string: 'a string', boolean: 'true or false', array: 'a list', object: 'a mapping' })[n] ?? n;
  switch (iss.code) {
    case 'invalid_type':
      return `expected ${a(String(iss.expected))}`;
    case 'too_small':
    case 'too_big': {
      const bound = iss.code === 'too_small' ? iss.minimum : iss.maximum;
      const op = iss.code === 'too_small' ? (iss.inclusive ? '>=' : '>') : iss.inclusive ? '<=' : '<';
      if (iss.origin === 'array') return `expected ${iss.code === 'too_small' ? 'at least' : 'at most'} ${bound} item(s)`;
      if (iss.origin === 'string') return iss.code === 'too_small' ? 'expected a non-empty string' : `expected at most ${bound} characters`;
      return `expected a number ${op} ${bound}`;
    }
    case 'invalid_value':
      return `expected one of ${iss.values.map(String).join(', ')}`;
    default:
      return undefined;
  }
}

/** `file:line: key: message, got value`, or `--key: ...` when the value came from the command line. */
function describeIssue(issue: z.core.$ZodIssue, raw: unknown, src: Source): string {
  const keys = issue.path as Key[];
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    const where = locate(src, [...keys, key], true);
    const name = keys.length ? `${keys.join('.')}.${key}` : key;
    return `${where}: unknown key '${name}'${didYouMean(key, knownKeys(keys))}`;
  }
  const value = valueAt(raw, keys);
  const name = keys.join('.');
  // a field's own check shows the value it got; a rule about several fields, or a missing one, speaks for itself
  const crossField = issue.code === 'custom' && issue.params?.crossField === true;
  const got = crossField ? '' : value !== undefined ? `, got ${show(value)}` : issue.code === 'custom' ? '' : ' (missing)';
  const where = locate(src, keys, false);
  return where === `--${name}` ? `${where}: ${issue.message}${got}` : `${where}: ${name}: ${issue.message}${got}`;
}

/** `--key` when set on the command line, else `file:line` of the key (or its nearest present parent), else `file`. */
function locate(src: Source, keys: Key[], keyNode: boolean): string {
  for (let n = keys.length; n > 0; n--) {
    if (src.overridden.has(keys.slice(0, n).join('.'))) return `--${keys.slice(0, n).join('.')}`;
  }
  for (let n = keys.length; n > 0; n--) {
    const offset = nodeOffset(src.doc, keys.slice(0, n), keyNode && n === keys.length);
    if (offset !== null) return `${src.file}:${src.lines.linePos(offset).line}`;
  }
  return src.file;
}

/** Source offset of the value at `keys` (or of its key, for unknown keys). */
function nodeOffset(doc: Document, keys: Key[], ofKey: boolean): number | null {
  const parent = keys.length === 1 ? doc.contents : doc.getIn(keys.slice(0, -1), true);
  const last = keys[keys.length - 1];
  if (isMap(parent)) {
    const pair = parent.items.find((p) => isScalar(p.key) && p.key.value === last);
    const node = pair && (ofKey || !pair.value ? pair.key : pair.value);
    const range = (node as { range?: [number, number, number] } | undefined)?.range;
    return range ? range[0] : null;
  }
  const node = doc.getIn(keys, true) as { range?: [number, number, number] } | undefined;
  return node?.range ? node.range[0] : null;
}

function valueAt(raw: unknown, keys: Key[]): unknown {
  let v = raw;
  for (const k of keys) v = v !== null && typeof v === 'object' ? (v as Record<Key, unknown>)[k] : undefined;
  return v;
}

function show(v: unknown): string {
  if (typeof v === 'number' && !Number.isFinite(v)) return Number.isNaN(v) ? '.nan (not a number)' : `${v < 0 ? '-' : ''}.inf (infinite)`;
  if (Array.isArray(v)) return `a list [${v.map(show).join(', ')}]`;
  if (v !== null && typeof v === 'object') return 'a mapping';
  return JSON.stringify(v);
}

function didYouMean(key: string, candidates: string[]): string {
  let best = '';
  let bestDist = Infinity;
  for (const c of candidates) {
    const d = editDistance(key, c);
    if (d < bestDist) [best, bestDist] = [c, d];
  }
  return best && bestDist <= Math.max(2, Math.floor(key.length / 3)) ? ` (did you mean '${best}'?)` : '';
}

// Levenshtein distance for "did you mean": a dozen lines, not worth a dependency.
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length];
}
