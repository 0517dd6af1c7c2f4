// `ft train [RECIPE] [--resume [DIR]] [--<recipe_key> value ...]`
import type { CommandModule } from 'yargs';
import type { HubOptions } from '../hub/download.ts';
import { DEFAULT_RECIPE, loadRecipe, parseOverrideArgs, type Recipe } from '../train/recipe.ts';
import { resolveHubDatasets } from '../hub/dataset.ts';
import { resolveBaseModelDir } from '../hub/model.ts';
import { train, type TrainOptions, type TrainResult } from '../train/loop.ts';
import { startRun, type GlobalArgs } from './common.ts';

interface TrainArgs extends GlobalArgs {
  resume?: string | boolean;
  _: (string | number)[];
}

/**
 * Downloads the recipe's Hub ids (base_model, datasets) into the Hugging Face cache, or finds them there, then
 * trains on the local paths (train/ never reaches the Hub).
 */
export async function trainWithHub(recipe: Recipe, opts: TrainOptions, hub: HubOptions = {}): Promise<TrainResult> {
  const withLog = { log: opts.log, ...hub };
  const modelDir = (await resolveBaseModelDir(recipe.base_model, recipe.base_model_revision, withLog)) ?? undefined;
  const datasets = await resolveHubDatasets(recipe.datasets, withLog);
  return train({ ...recipe, datasets }, { ...opts, modelDir });
}

export const trainCommand: CommandModule<GlobalArgs, TrainArgs> = {
  command: 'train',
  describe:
    'fine-tune a LoRA/QLoRA adapter as a YAML recipe says (default: recipes/alpaca-tiny.yaml); any recipe key can be overridden: --lora_r 16. ' +
    'Ctrl-C (SIGINT) or SIGTERM saves a checkpoint after the current step and exits 130 or 143; --resume continues from it',
  builder: (y) =>
    y
      .strict(false)
      .parserConfiguration({ 'unknown-options-as-args': true })
      .usage('ft train [RECIPE] [--resume [CHECKPOINT]] [--<recipe_key> value ...]')
      .option('resume', { describe: 'continue from the newest checkpoint in output_dir, or from the checkpoint folder given' }) as never,
  handler: async (argv) => {
    // Unknown options arrive as plain tokens after the command: [recipe] then --key value pairs.
    const tokens = argv._.slice(1).map(String);
    const file = tokens.length > 0 && !tokens[0].startsWith('--') ? tokens.shift()! : DEFAULT_RECIPE;
    // Recipe errors surface before the model loads.
    const recipe = loadRecipe(file, parseOverrideArgs(tokens));
    await startRun({ ...argv, backend: argv.backend === 'auto' ? recipe.backend : argv.backend });
    const log = (line: string) => argv.quiet || process.stderr.write(line + '\n');
    const resume = argv.resume === '' || argv.resume === true ? true : (argv.resume as string | undefined);
    const result = await trainWithHub(recipe, { recipeFile: file, resume, log, handleSignals: true });
    process.stdout.write(`${result.adapterDir}\n`);
    // 128 + signal number, as a shell reports a command stopped by that signal (the checkpoint is written)
    if (result.signal) process.exitCode = result.signal === 'SIGINT' ? 130 : 143;
  },
};
