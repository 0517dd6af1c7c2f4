// Training recipes: YAML files with axolotl-style keys (recipes/schema.ts), validated strictly, with command-line
// overrides (recipes/overrides.ts); errors point at the recipe line or the --flag that is wrong (recipes/recipe-errors.ts).
import { existsSync, readFileSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LineCounter, parseDocument, stringify } from 'yaml';
import type { z } from 'zod';
import type { LoraConfig } from '../adapters/lora.ts';
import { FtError } from '../util/errors.ts';
import type { AdamWConfig } from '../train/optimizer.ts';
import { warmupSteps, type ScheduleSpec } from '../train/schedule.ts';
import { applyOverrides, type Overrides } from './overrides.ts';
import { describeIssue, locate, plainMessage } from './recipe-errors.ts';
import { RecipeSchema, type Key, type Recipe } from './schema.ts';

/** The recipe ft trains with when none is given: a tiny model on the Alpaca seed tasks. */
export const DEFAULT_RECIPE = fileURLToPath(new URL('./alpaca-tiny.yaml', import.meta.url));

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
      const where = locate(
        src,
        i.code === 'unrecognized_keys' ? [...(i.path as Key[]), i.keys[0]] : (i.path as Key[]),
        true,
      );
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
  return {
    r: r.lora_r,
    alpha: r.lora_alpha,
    dropout: r.lora_dropout,
    targetModules: r.lora_target_modules,
    layersToTransform: r.layers_to_transform,
    useRslora: r.peft_use_rslora,
  };
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
    datasets: r.datasets.map((d) => ({
      ...d,
      path: /\.(arrow|json|jsonl|parquet)$/.test(d.path) ? at(d.path) : resolveModelRef(d.path, dir),
    })),
    output_dir: at(r.output_dir),
    dataset_prepared_path: r.dataset_prepared_path === undefined ? undefined : at(r.dataset_prepared_path),
    resume_from_checkpoint: r.resume_from_checkpoint === undefined ? undefined : at(r.resume_from_checkpoint),
    eval: r.eval && { ...r.eval, data: r.eval.data === undefined ? undefined : at(r.eval.data) },
  };
}
