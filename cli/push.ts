// ft push DIR --repo user/name: upload an adapter or model folder to the Hugging Face Hub.
import type { CommandModule } from 'yargs';
import { pushToHub } from '../hub/push.ts';
import { setQuiet } from '../util/progress.ts';
import type { GlobalArgs } from './common.ts';

interface PushArgs extends GlobalArgs {
  dir: string;
  repo: string;
  private: boolean;
  revision: string;
  'commit-message'?: string;
}

export const pushCommand: CommandModule<GlobalArgs, PushArgs> = {
  command: 'push <dir>',
  describe:
    'upload a folder to a Hugging Face Hub model repo (token: HF_TOKEN or the huggingface-cli token file; endpoint: HF_ENDPOINT)',
  builder: (y) =>
    y
      .positional('dir', { type: 'string', demandOption: true, describe: 'folder to upload (adapter, merged model)' })
      .option('repo', {
        type: 'string',
        demandOption: true,
        describe: 'namespace/name of the model repo (created if missing)',
      })
      .option('private', { type: 'boolean', default: false, describe: 'create the repo private' })
      .option('revision', {
        type: 'string',
        default: 'main',
        describe: 'branch to commit to (created from main if missing)',
      })
      .option('commit-message', { type: 'string', describe: 'commit title' }),
  handler: async (args) => {
    setQuiet(args.quiet);
    const res = await pushToHub({
      dir: args.dir,
      repo: args.repo,
      private: args.private || undefined,
      revision: args.revision,
      commitMessage: args['commit-message'],
      log: (line) => args.quiet || process.stderr.write(line + '\n'),
    });
    const mb = (res.bytes / 1e6).toFixed(1);
    process.stdout.write(
      `${res.created ? 'created' : 'updated'} ${res.url} (${res.revision}): ${res.files.length} files, ${mb} MB, commit ${res.commitOid}\n`,
    );
  },
};
