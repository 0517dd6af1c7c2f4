// What a resume may change: keys that only steer outputs, logging or where work runs may differ from the
// checkpoint's run; any other change breaks the exact continuation and is refused unless forced.
import type { Recipe } from './schema.ts';

/**
 * Recipe keys a resume may change: they leave the steps already taken as they were (max_steps and num_epochs
 * lengthen or shorten the run, and the schedule follows the new length; that is said, not refused).
 */
const FREE_KEYS = new Set([
  'max_steps',
  'num_epochs',
  'output_dir',
  'logging_steps',
  'eval_steps',
  'save_steps',
  'save_total_limit',
  'eval',
  'hub_model_id',
  'dataset_processes',
  'backend',
  'num_threads',
  'resume_from_checkpoint',
  'base_model_init',
  'dataset_prepared_path',
]);

/** The recipe as JSON-safe values, as checkpoints record it. */
export function trainingSettings(recipe: Recipe): Record<string, unknown> {
  return JSON.parse(JSON.stringify(recipe)) as Record<string, unknown>;
}

export interface SettingsChange {
  key: string;
  was: unknown;
  now: unknown;
  /** the change breaks an exact resume */
  breaking: boolean;
}

const show = (v: unknown) => (v === undefined ? '(unset)' : JSON.stringify(v));

/** Keys whose value differs between the checkpoint's settings and the recipe's, in the recipe's key order. */
export function settingsChanges(saved: Record<string, unknown>, now: Record<string, unknown>): SettingsChange[] {
  const keys = [...new Set([...Object.keys(now), ...Object.keys(saved)])];
  return keys
    .filter((k) => JSON.stringify(saved[k]) !== JSON.stringify(now[k]))
    .map((key) => ({ key, was: saved[key], now: now[key], breaking: !FREE_KEYS.has(key) }));
}

/** `learning_rate 0.001 -> 0.01, micro_batch_size 2 -> 4` */
export function describeChanges(changes: SettingsChange[]): string {
  return changes.map((c) => `${c.key} ${show(c.was)} -> ${show(c.now)}`).join(', ');
}
