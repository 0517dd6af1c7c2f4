// `ft train recipes/alpaca.yaml` as a user runs it against the local Hub: the base model and the dataset come by
// their Hub ids into a fresh Hugging Face cache, one step trains, the adapter names the base by its id; a second run
// asks for no model or data file again, and a third works with HF_HUB_OFFLINE=1 and no Hub at all.
// (HF_HUB_OFFLINE=1 with an empty cache: hub/download.test.ts.)
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadRecipe } from '../recipes/recipe.ts';
import { train as trainRecipe } from '../recipes/train.ts';
import { DEMO_MODEL, seedAlpacaDemo } from './hub-fixtures.ts';
import { startHubServer, type HubServer } from './hub-server.ts';
import { runFt } from './run-ft.ts';

const RECIPE = fileURLToPath(new URL('../recipes/alpaca.yaml', import.meta.url));
const tmp = mkdtempSync(path.join(tmpdir(), 'ft-hub-train-'));
const hfHome = path.join(tmp, 'hf');
let hub: HubServer;

const ft = (args: string[], env: Record<string, string>) =>
  runFt(args, { env: { PATH: process.env.PATH, HOME: tmp, HF_HOME: hfHome, ...env } });
// the shipped recipe, one step, kept small and quick for a test (its eval section is covered elsewhere)
const QUICK = { max_steps: '1', gradient_accumulation_steps: '1', sequence_len: '256', eval: 'null' };
const train = (out: string, env: Record<string, string>) =>
  ft(
    [
      'train',
      RECIPE,
      ...Object.entries({ ...QUICK, output_dir: path.join(tmp, out) }).flatMap(([k, v]) => [`--${k}`, v]),
    ],
    env,
  );
const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

beforeAll(async () => {
  hub = await startHubServer([]);
  await seedAlpacaDemo(hub, tmp);
});
const savedEnv = { ...process.env };
afterAll(async () => {
  process.env = savedEnv;
  await hub.close();
  rmSync(tmp, { recursive: true, force: true });
});

describe('ft train on Hub ids (recipes/alpaca.yaml against the local Hub)', () => {
  it('downloads model and dataset, trains one step; then trains from the cache, then with HF_HUB_OFFLINE=1', {
    timeout: 120_000,
  }, async () => {
    const first = await train('run1', { HF_ENDPOINT: hub.url });
    expect(first.stderr).toContain(`ft: downloading 5 file(s)`);
    expect(first.code, first.stderr).toBe(0);
    const adapter = first.stdout.trim();
    expect(adapter).toBe(path.join(tmp, 'run1', 'adapter'));
    expect(existsSync(path.join(adapter, 'adapter_model.safetensors'))).toBe(true);
    expect(JSON.parse(readFileSync(path.join(adapter, 'adapter_config.json'), 'utf8')).base_model_name_or_path).toBe(
      DEMO_MODEL,
    );
    expect(readFileSync(path.join(adapter, 'README.md'), 'utf8')).toMatch(
      /base_model: TinyLlama\/TinyLlama-1\.1B-Chat-v1\.0\n[\s\S]*datasets:\n {2}- tatsu-lab\/alpaca\n/,
    );
    const model = path.join(hfHome, 'hub', 'models--TinyLlama--TinyLlama-1.1B-Chat-v1.0');
    expect(readFileSync(path.join(model, 'refs', 'main'), 'utf8')).toBe(hub.repos.get(DEMO_MODEL)!.heads.get('main'));
    expect(existsSync(path.join(hfHome, 'hub', 'datasets--tatsu-lab--alpaca', 'refs', 'main'))).toBe(true);

    // again, in this process as the CLI runs it (a third of the time of a new process)
    const recipe = loadRecipe(RECIPE, { ...QUICK, output_dir: path.join(tmp, 'run2') });
    hub.log.length = 0;
    Object.assign(process.env, { HF_HOME: hfHome, HF_ENDPOINT: hub.url });
    const second = await trainRecipe(recipe, { recipeFile: RECIPE });
    expect(second.steps).toBe(1);
    expect(hub.log.filter((r) => r.path.includes('/resolve/') || r.host === 'cdn')).toEqual([]);
    expect(hub.log.map((r) => r.path)).toEqual([
      `/api/models/${DEMO_MODEL}/revision/main`,
      `/api/models/${DEMO_MODEL}/tree/${hub.repos.get(DEMO_MODEL)!.heads.get('main')}`,
      '/api/datasets/tatsu-lab/alpaca/revision/main',
      `/api/datasets/tatsu-lab/alpaca/tree/${hub.repos.get('datasets/tatsu-lab/alpaca')!.heads.get('main')}`,
    ]);

    hub.log.length = 0;
    Object.assign(process.env, { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_OFFLINE: '1' });
    const offline = await trainRecipe({ ...recipe, output_dir: path.join(tmp, 'run3') }, { recipeFile: RECIPE });
    expect(offline.steps).toBe(1);
    expect(hub.log).toEqual([]);
    // the same seed, data and one step: the same adapter as the first run
    expect(sha256(readFileSync(path.join(offline.adapterDir, 'adapter_model.safetensors')))).toBe(
      sha256(readFileSync(path.join(adapter, 'adapter_model.safetensors'))),
    );
  });
});
