// Where the Hugging Face cache is, by huggingface_hub's precedence (constants.py: HF_HUB_CACHE, HUGGINGFACE_HUB_CACHE,
// HF_HOME/hub, XDG_CACHE_HOME/huggingface/hub, ~/.cache/huggingface/hub), and what HF_HUB_OFFLINE values mean.
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { hubCacheDir, isOffline, RepoCache } from './cache.ts';

describe('the Hugging Face cache location', () => {
  it('follows huggingface_hub: HF_HUB_CACHE, then HF_HOME/hub, then XDG_CACHE_HOME, then ~/.cache', () => {
    expect(hubCacheDir({ HF_HUB_CACHE: '/c', HF_HOME: '/h' })).toBe('/c');
    expect(hubCacheDir({ HUGGINGFACE_HUB_CACHE: '/old', HF_HOME: '/h' })).toBe('/old');
    expect(hubCacheDir({ HF_HOME: '/h', XDG_CACHE_HOME: '/x' })).toBe('/h/hub');
    expect(hubCacheDir({ XDG_CACHE_HOME: '/x' })).toBe('/x/huggingface/hub');
    expect(hubCacheDir({})).toBe(path.join(os.homedir(), '.cache', 'huggingface', 'hub'));
  });

  it('names repo folders as huggingface_hub does and reads HF_HUB_OFFLINE as it does', () => {
    expect(new RepoCache('/c', 'model', 'TinyLlama/TinyLlama-1.1B-Chat-v1.0').dir).toBe(
      '/c/models--TinyLlama--TinyLlama-1.1B-Chat-v1.0',
    );
    expect(new RepoCache('/c', 'dataset', 'tatsu-lab/alpaca').dir).toBe('/c/datasets--tatsu-lab--alpaca');
    expect(['1', 'ON', 'yes', 'True'].map((v) => isOffline({ HF_HUB_OFFLINE: v }))).toEqual([true, true, true, true]);
    expect(['0', '', 'off'].map((v) => isOffline({ HF_HUB_OFFLINE: v }))).toEqual([false, false, false]);
  });
});
