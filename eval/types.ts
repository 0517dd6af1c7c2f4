// What an eval produces: per-model results over the same held-out items, and the generation settings used.
import type { MetricsRecord } from '../util/metrics-log.ts';
import type { EvalItem } from './items.ts';
import type { LossResult } from './loss.ts';

export interface GenerationSettings {
  maxNewTokens: number;
  /** 0 = greedy */
  temperature: number;
  topK: number;
  topP: number;
  seed: number;
  /** prompts per generation batch */
  batchSize: number;
}

/** Per-task means of one model. */
export interface TaskScores {
  count: number;
  metrics: Record<string, number>;
}

export interface ModelResult {
  /** `base` or the adapter's label */
  name: string;
  /** adapter folder, null for the base */
  adapter: string | null;
  /** the adapter's base_model_name_or_path */
  baseModel: string | null;
  loss: LossResult;
  /** means over all examples: exact_match, f1, rougeL (+ user metrics) */
  metrics: Record<string, number>;
  byTask: Record<string, TaskScores>;
  outputs: string[];
  scores: Record<string, number>[];
  generationSeconds: number;
  /** the training run's metrics.jsonl records, when found beside the adapter */
  training: MetricsRecord[] | null;
}

export interface EvalResult {
  outDir: string;
  model: string;
  data: string;
  items: EvalItem[];
  models: ModelResult[];
  generation: GenerationSettings;
  overlap: { trainedOn: string; overlapping: number } | null;
  files: { results: string; summary: string; markdown: string; html: string };
}
