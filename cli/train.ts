// `ft train [RECIPE] [--resume [DIR]] [--<recipe_key> value ...]`
import type { CommandModule } from 'yargs';
import { DEFAULT_RECIPE, loadRecipe } from '../recipes/recipe.ts';
import { parseOverrideArgs } from '../recipes/overrides.ts';
import { train } from '../recipes/train.ts';
import { startRun, type GlobalArgs } from './common.ts';

interface TrainArgs extends GlobalArgs {
  resume?: string | boolean;
  'resume-force'?: boolean;
  _: (string | number)[];
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
      .usage('ft train [RECIPE] [--resume [CHECKPOINT] [--resume-force]] [--<recipe_key> value ...]')
      .option('resume', {
        describe: 'continue from the newest checkpoint in output_dir, or from the checkpoint folder given',
      })
      .option('resume-force', {
        type: 'boolean',
        describe:
          'resume even when the recipe changed keys that break an exact continuation (learning rate, batch size, data, ...)',
      }) as never,
  handler: async (argv) => {
    // Unknown options arrive as plain tokens after the command: [recipe] then --key value pairs.
    const tokens = argv._.slice(1).map(String);
    const file = tokens.length > 0 && !tokens[0].startsWith('--') ? tokens.shift()! : DEFAULT_RECIPE;
    // Recipe errors surface before the model loads.
    const recipe = loadRecipe(file, parseOverrideArgs(tokens));
    await startRun({
      ...argv,
      backend: argv.backend === 'auto' ? recipe.backend : argv.backend,
      threads: argv.threads ?? recipe.num_threads,
    });
    const log = (line: string) => argv.quiet || process.stderr.write(line + '\n');
    const resume = argv.resume === '' || argv.resume === true ? true : (argv.resume as string | undefined);
    const result = await train(recipe, {
      recipeFile: file,
      resume,
      resumeForce: argv['resume-force'],
      log,
      handleSignals: true,
    });
    process.stdout.write(`${result.adapterDir}\n`);
    // 128 + signal number, as a shell reports a command stopped by that signal (the checkpoint is written)
    if (result.signal) process.exitCode = result.signal === 'SIGINT' ? 130 : 143;
  },
};
