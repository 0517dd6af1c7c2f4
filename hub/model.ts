// A base model by Hub id: only what ft loads is fetched (config, generation config, tokenizer files, *.safetensors and
// their index). A repo with only pickled weights is refused before anything is downloaded: unpickling can run code.
import { FtError } from '../util/errors.ts';
import { downloadSnapshot, type HubOptions, type Snapshot } from './download.ts';
import type { RemoteFile } from './transfer.ts';

const MODEL_FILES = new Set([
  'config.json',
  'generation_config.json',
  'tokenizer.json',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'tokenizer.model',
  'chat_template.jinja',
  'model.safetensors.index.json',
]);
const PICKLE = /\.(bin|pt|pth|ckpt|pkl)$/;

/** The top-level files ft needs of a model repo; FtError when it has no safetensors weights or no config.json. */
function modelFiles(repo: string): (files: RemoteFile[]) => RemoteFile[] {
  return (files) => {
    const top = files.filter((f) => !f.path.includes('/'));
    const weights = top.filter((f) => f.path.endsWith('.safetensors'));
    if (weights.length === 0) {
      const pickles = files.filter((f) => PICKLE.test(f.path)).map((f) => f.path);
      throw new FtError(
        pickles.length > 0
          ? `${repo}: has only pickled weights (${pickles.slice(0, 3).join(', ')}); ft loads *.safetensors only, since loading a pickle can run code (convert the weights to safetensors, or use a repo that has them)`
          : `${repo}: holds no *.safetensors weights at the top level`,
      );
    }
    if (!top.some((f) => f.path === 'config.json'))
      throw new FtError(`${repo}: has no config.json, so it is not a transformers model ft can load`);
    return top.filter((f) => MODEL_FILES.has(f.path) || f.path.endsWith('.safetensors'));
  };
}

/** The snapshot folder of a model repo with the files ft loads, downloaded into the cache when missing. */
export function downloadModel(repo: string, revision: string | undefined, opts: HubOptions = {}): Promise<Snapshot> {
  return downloadSnapshot({ ...opts, repo, repoType: 'model', revision, select: modelFiles(repo) });
}
