// The end of a finished run, after the training model is freed: the recipe's eval section (base against the
// new adapter on held-out prompts), the model card in the adapter folder, the push to the Hub, a summary.
import * as path from 'node:path';
import { writeModelCard, type CardInput } from '../export/card.ts';
import { evaluateRecipe } from './eval.ts';
import type { EvalResult } from '../eval/types.ts';
import { pushToHub, type PushResult } from '../hub/push.ts';
import { FtError } from '../util/errors.ts';
import { recipeToYaml } from './recipe.ts';
import type { Recipe } from './schema.ts';

/** What the loop knows when the last step is done. */
export interface RunFigures {
  steps: number;
  epochs: number;
  /** non-padding tokens seen in training */
  tokens: number;
  seconds: number;
  finalLoss: number | null;
  finalEvalLoss: number | null;
  /** the data pipeline's one-line account of kept and dropped rows */
  dataSummary: string;
}

export interface Finished {
  eval: EvalResult | null;
  card: string;
  pushed: PushResult | null;
}

/** Base and adapter side by side, for the card's results table: each aggregate metric, then loss and perplexity. */
function evaluationRows(result: EvalResult): CardInput['evaluation'] {
  const [base, tuned] = result.models;
  const rows = Object.entries(tuned.metrics).map(([name, value]) => ({ name, value, base: base.metrics[name] }));
  if (tuned.loss.tokens > 0) {
    rows.push({ name: 'held-out loss', value: tuned.loss.loss, base: base.loss.loss });
    rows.push({ name: 'held-out perplexity', value: tuned.loss.perplexity, base: base.loss.perplexity });
  }
  return rows;
}

/**
 * Runs the recipe's eval section, writes the card, pushes. The adapter is saved before this runs, so a failing
 * eval (bad eval data, say) is reported and skipped rather than failing the run; a failing push fails it.
 */
export async function finishRun(
  recipe: Recipe,
  recipeFile: string,
  adapterDir: string,
  run: RunFigures,
  log: (line: string) => void,
): Promise<Finished> {
  let evalResult: EvalResult | null = null;
  if (recipe.eval) {
    try {
      evalResult = await evaluateRecipe(recipe, adapterDir, { recipeFile, log });
    } catch (e) {
      if (!(e instanceof FtError)) throw e;
      log(
        `ft: warning: the recipe's eval section did not run: ${e.message} (the adapter is saved; rerun it with ft eval)`,
      );
    }
  }

  const card = await writeModelCard(adapterDir, {
    kind: 'adapter',
    baseModel: recipe.base_model,
    repoId: recipe.hub_model_id,
    datasets: recipe.datasets.map((d) => (path.isAbsolute(d.path) ? path.basename(d.path) : d.path)), // a Hub id as it is
    datasetDescription: `${recipe.datasets.map((d) => `\`${path.basename(d.path)}\` (${d.type})`).join(', ')}: ${run.dataSummary}.`,
    recipe: recipeToYaml(recipe, `recipe of this run (${path.basename(recipeFile)}), paths resolved`),
    lora: {
      r: recipe.lora_r,
      alpha: recipe.lora_alpha,
      dropout: recipe.lora_dropout,
      targetModules: recipe.lora_target_linear ? 'all-linear' : recipe.lora_target_modules,
      useRslora: recipe.peft_use_rslora,
    },
    metrics: {
      trainLoss: run.finalLoss ?? undefined,
      evalLoss: run.finalEvalLoss ?? undefined,
      steps: run.steps,
      epochs: run.epochs,
      tokens: run.tokens,
      runtimeSeconds: Math.round(run.seconds),
    },
    evaluation: evalResult ? evaluationRows(evalResult) : undefined,
    tags: [recipe.adapter],
  });

  let pushed: PushResult | null = null;
  if (recipe.hub_model_id) {
    log(`ft: pushing ${adapterDir} to ${recipe.hub_model_id}`);
    pushed = await pushToHub({
      dir: adapterDir,
      repo: recipe.hub_model_id,
      commitMessage: `ft train ${path.basename(recipeFile)}: ${run.steps} steps`,
      log,
    });
    log(`ft: pushed ${pushed.files.length} files to ${pushed.url} (${pushed.commitUrl})`);
  }
  return { eval: evalResult, card, pushed };
}

/** The lines printed when a run is done. */
export function summaryLines(run: RunFigures, outputDir: string, adapterDir: string, finished: Finished): string[] {
  const f = (x: number | null) => (x === null ? '-' : x.toFixed(4));
  const lines = [
    `ft: done: ${run.steps} steps (${run.epochs.toFixed(2)} epochs) in ${run.seconds.toFixed(1)} s, ${run.tokens} tokens (${(run.tokens / Math.max(run.seconds, 1e-9)).toFixed(0)} tokens/s)`,
    `ft: final loss ${f(run.finalLoss)}${run.finalEvalLoss !== null ? `, eval loss ${f(run.finalEvalLoss)} (perplexity ${Math.exp(run.finalEvalLoss).toFixed(2)})` : ''}`,
  ];
  if (finished.eval) {
    const [base, tuned] = finished.eval.models;
    const cols = Object.keys(tuned.metrics)
      .map((k) => `${k} ${base.metrics[k].toFixed(3)} -> ${tuned.metrics[k].toFixed(3)}`)
      .join(', ');
    lines.push(
      `ft: eval base -> adapter on ${finished.eval.items.length} held-out prompts: ${cols}; ${finished.eval.files.markdown}`,
    );
  }
  lines.push(
    `ft: adapter ${adapterDir} (PEFT, with README.md); ${path.join(outputDir, 'metrics.jsonl')}; ${path.join(outputDir, 'loss.svg')}`,
  );
  if (finished.pushed) lines.push(`ft: on the Hub: ${finished.pushed.url}`);
  return lines;
}
