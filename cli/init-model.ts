// ft init-model: writes a deterministic random Llama (weights, config, BPE tokenizer trained on ft's synth tasks) in Hugging Face layout.
import type { CommandModule } from 'yargs';
import { synthCorpus } from '../data/synth.ts';
import { PRESETS, initModel, parameterCount, type PresetName } from '../model/init.ts';
import { setQuiet } from '../util/progress.ts';
import type { GlobalArgs } from './common.ts';

interface Args extends GlobalArgs {
  out: string;
  overwrite: boolean;
  preset: PresetName;
  seed: number;
  'vocab-size'?: number;
  'init-std'?: number;
}

export const initModelCommand: CommandModule<GlobalArgs, Args> = {
  command: 'init-model',
  describe: 'write a random Llama model folder (config.json, model.safetensors, tokenizer) for tests and examples',
  builder: (y) =>
    y
      .option('out', {
        type: 'string',
        demandOption: true,
        describe:
          'output folder (replaced atomically; only a model folder ft wrote, or an empty one, unless --overwrite)',
      })
      .option('overwrite', { type: 'boolean', default: false, describe: 'replace --out even when ft did not write it' })
      .option('preset', {
        choices: Object.keys(PRESETS) as PresetName[],
        default: 'tiny' as PresetName,
        describe: 'model size',
      })
      .option('seed', { type: 'number', default: 0, describe: 'seed of the random weights' })
      .option('vocab-size', {
        type: 'number',
        describe: "vocabulary size incl. special tokens (default: the preset's)",
      })
      .option('init-std', { type: 'number', describe: 'standard deviation of the random weights (default 0.02)' }),
  handler: async (argv) => {
    setQuiet(argv.quiet);
    const config = await initModel(argv.out, {
      preset: argv.preset,
      seed: argv.seed,
      vocabSize: argv['vocab-size'],
      initStd: argv['init-std'],
      corpus: synthCorpus(),
      overwrite: argv.overwrite,
    });
    const params = parameterCount(config);
    process.stdout.write(
      `wrote ${argv.out}: ${config.architecture}, ${config.numHiddenLayers} layers, hidden ${config.hiddenSize}, ` +
        `${config.numAttentionHeads} heads / ${config.numKeyValueHeads} kv, vocab ${config.vocabSize}, ${(params / 1e6).toFixed(2)}M parameters\n`,
    );
  },
};
