// ft download REPO: a model or dataset repo into the Hugging Face cache (or --local-dir), printing the snapshot folder.
import type { CommandModule } from 'yargs';
import { downloadSnapshot, patternSelector } from '../hub/download.ts';
import { setQuiet } from '../util/progress.ts';
import type { GlobalArgs } from './common.ts';

interface DownloadArgs extends GlobalArgs {
  repo: string;
  'repo-type': 'model' | 'dataset';
  revision: string;
  include?: string[];
  exclude?: string[];
  'local-dir'?: string;
}

export const downloadCommand: CommandModule<GlobalArgs, DownloadArgs> = {
  command: 'download <repo>',
  describe:
    'download a Hub repo into the Hugging Face cache, as huggingface-cli does (resumable, verified; token: HF_TOKEN or the token file; HF_ENDPOINT, HF_HUB_CACHE, HF_HUB_OFFLINE) and print its snapshot folder',
  builder: (y) =>
    y
      .positional('repo', { type: 'string', demandOption: true, describe: 'namespace/name' })
      .option('repo-type', {
        choices: ['model', 'dataset'] as const,
        default: 'model' as const,
        describe: 'kind of repo',
      })
      .option('revision', { type: 'string', default: 'main', describe: 'branch, tag or commit' })
      .option('include', {
        type: 'string',
        array: true,
        describe: 'only files matching these globs (fnmatch, as huggingface-cli --include)',
      })
      .option('exclude', { type: 'string', array: true, describe: 'skip files matching these globs' })
      .option('local-dir', { type: 'string', describe: 'also copy the files into this folder and print it instead' }),
  handler: async (args) => {
    setQuiet(args.quiet);
    const snap = await downloadSnapshot({
      repo: args.repo,
      repoType: args['repo-type'],
      revision: args.revision,
      select: patternSelector(args.include, args.exclude),
      localDir: args['local-dir'],
      log: (line) => args.quiet || process.stderr.write(line + '\n'),
    });
    process.stdout.write(`${snap.dir}\n`);
  },
};
