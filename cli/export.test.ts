import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ADAPTER_CONFIG, ADAPTER_WEIGHTS } from '../adapters/peft.ts';
import { INDEX_FILE, loadLlama } from '../model/load.ts';
import { SafetensorsFile, writeSafetensors, type SafetensorsEntry } from '../model/safetensors.ts';
import { randn, SMALL, writeRandomModel } from '../test/random-llama.ts';
import { Rng } from '../util/rng.ts';
import { writeOutputMarker } from '../util/owned-dir.ts';
import { exportFormats, resolveAdapterDir } from './export.ts';
import { runFt } from '../test/run-ft.ts';

const ft = (args: string[]) => runFt(args);

let root: string;
let base: string;
let foreign: string;

beforeAll(async () => {
  root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-cli-export-'));
  base = path.join(root, 'base');
  await writeRandomModel(base);
  // an adapter as another tool might leave it: adapter-named keys, bf16, a partial config
  foreign = path.join(root, 'checkpoint-10');
  await fsp.mkdir(foreign);
  await fsp.writeFile(
    path.join(foreign, ADAPTER_CONFIG),
    JSON.stringify({
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      r: 2,
      lora_alpha: 8,
      target_modules: ['v_proj', 'up_proj'],
    }),
  );
  const rng = new Rng(3);
  const kv = SMALL.numKeyValueHeads * SMALL.headDim;
  const entries: SafetensorsEntry[] = [];
  for (let i = 0; i < SMALL.numHiddenLayers; i++) {
    for (const [mod, out] of [
      ['self_attn.v_proj', kv],
      ['mlp.up_proj', SMALL.intermediateSize],
    ] as const) {
      entries.push({
        name: `base_model.model.model.layers.${i}.${mod}.lora_A.default.weight`,
        dtype: 'BF16',
        shape: [2, SMALL.hiddenSize],
        data: randn(rng, 2 * SMALL.hiddenSize, 0.3),
      });
      entries.push({
        name: `base_model.model.model.layers.${i}.${mod}.lora_B.default.weight`,
        dtype: 'BF16',
        shape: [out, 2],
        data: randn(rng, out * 2, 0.3),
      });
    }
  }
  await writeSafetensors(path.join(foreign, ADAPTER_WEIGHTS), entries);
});
afterAll(async () => {
  await fsp.rm(root, { recursive: true, force: true });
});

describe('ft export', () => {
  it('peft: normalizes a checkpoint to canonical PEFT keys and a full config', async () => {
    const out = path.join(root, 'adapter');
    const r = await ft(['export', 'peft', '--checkpoint', foreign, '--out', out, '--base-model', 'org/tiny']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`wrote ${out}: LoRA r=2 alpha=8, 4 modules, 256 params, base org/tiny\n`);
    const config = JSON.parse(await fsp.readFile(path.join(out, ADAPTER_CONFIG), 'utf8'));
    expect(config).toMatchObject({
      peft_type: 'LORA',
      r: 2,
      lora_alpha: 8,
      target_modules: ['v_proj', 'up_proj'],
      base_model_name_or_path: 'org/tiny',
      inference_mode: true,
    });
    const st = await SafetensorsFile.open(path.join(out, ADAPTER_WEIGHTS));
    expect(st.names()).toContain('base_model.model.model.layers.1.mlp.up_proj.lora_B.weight');
    expect(st.names().some((n) => n.includes('.default.'))).toBe(false);
    expect(st.info('base_model.model.model.layers.1.mlp.up_proj.lora_B.weight').dtype).toBe('F32');
    await st.close();
  });

  it('merged: sharded float16 model from a 4-bit base, with the QLoRA warning', async () => {
    const out = path.join(root, 'merged');
    const r = await ft([
      'export',
      'merged',
      '--model',
      base,
      '--adapter',
      foreign,
      '--out',
      out,
      '--dtype',
      'float16',
      '--max-shard-size',
      '4KB',
      '--quant',
      'nf4',
      '--backend',
      'wasm',
      '--quiet',
    ]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(
      /^warning: the base is nf4-quantized, so the adapter is merged into the dequantized nf4 weights\. .*\n$/,
    );
    expect(r.stdout).toMatch(/^wrote .*merged: float16, \d+ shards, 0\.0 MB of weights\n$/);
    const index = JSON.parse(await fsp.readFile(path.join(out, INDEX_FILE), 'utf8'));
    expect(Object.keys(index.weight_map)).toContain('model.layers.1.mlp.up_proj.weight');
    const w = await loadLlama(out);
    expect(w.config.raw.torch_dtype).toBe('float16');
  });

  it('fails with one line when the adapter folder is missing', async () => {
    const missing = await ft([
      'export',
      'peft',
      '--checkpoint',
      path.join(root, 'nope'),
      '--out',
      path.join(root, 'y'),
    ]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      `ft: ${path.join(root, 'nope')}: no adapter_config.json (expected a PEFT adapter folder)\n`,
    );
  });

  it('takes the newest checkpoint-N of a training output folder', async () => {
    const run = path.join(root, 'run');
    for (const step of [5, 12]) {
      const dir = path.join(run, `checkpoint-${step}`);
      await fsp.mkdir(dir, { recursive: true });
      await fsp.writeFile(path.join(dir, 'trainer_state.json'), '{}');
      await fsp.writeFile(path.join(dir, ADAPTER_CONFIG), '{}');
      await writeOutputMarker(dir, 'checkpoint');
    }
    expect(await resolveAdapterDir(run)).toBe(path.join(run, 'checkpoint-12'));
    expect(await resolveAdapterDir(foreign)).toBe(foreign);
  });
});

/** Every file under `dir` with its bytes, to prove a refused export left it as it was. */
async function contents(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const ent of await fsp.readdir(dir, { recursive: true, withFileTypes: true })) {
    if (ent.isFile())
      out[path.relative(dir, path.join(ent.parentPath, ent.name))] = (
        await fsp.readFile(path.join(ent.parentPath, ent.name))
      ).toString('base64');
  }
  return out;
}

const [peftExport, mergedExport] = exportFormats;
const common = { backend: 'wasm', quiet: true, maxShardSize: '5GB', overwrite: false, _: [], $0: 'ft' };

describe('ft export never replaces a folder it did not write, nor one it reads', () => {
  let runs: string;
  beforeAll(async () => {
    // two training runs: the adapter of one is exported
    runs = path.join(root, 'runs');
    for (const r of ['a', 'b']) await fsp.cp(foreign, path.join(runs, r, 'adapter'), { recursive: true });
    await fsp.writeFile(path.join(runs, 'b', 'metrics.jsonl'), '{"step":1,"epoch":0.1,"loss":2}\n');
  });

  it('merged --out runs (the folder holding --adapter runs/a/adapter) is refused and both runs stay', async () => {
    const before = await contents(runs);
    const adapter = path.join(runs, 'a', 'adapter');
    await expect(mergedExport.handler({ ...common, model: base, adapter, out: runs } as never)).rejects.toThrow(
      `--out ${runs}: holds the --adapter folder ${adapter} being read, and would replace it; write somewhere else`,
    );
    // --overwrite forces a foreign folder, never a folder being read
    await expect(
      mergedExport.handler({ ...common, model: base, adapter, out: runs, overwrite: true } as never),
    ).rejects.toThrow(/holds the --adapter folder/);
    expect(await contents(runs)).toEqual(before);
  });

  it('merged --out equal to --model is refused and the base weights stay', async () => {
    const before = await contents(base);
    await expect(
      mergedExport.handler({ ...common, model: base, adapter: foreign, out: base, overwrite: true } as never),
    ).rejects.toThrow(`--out ${base}: is the --model folder ${base} being read; write somewhere else`);
    expect(await contents(base)).toEqual(before);
  });

  it('merged --out over a model folder ft did not write is refused before any weight is read, and --overwrite replaces it', async () => {
    const theirs = path.join(root, 'their-model');
    await writeRandomModel(theirs);
    const before = await contents(theirs);
    await expect(
      mergedExport.handler({ ...common, model: base, adapter: foreign, out: theirs } as never),
    ).rejects.toThrow(
      `${theirs}: is not empty and was not written by ft (no .ft-output); pass --overwrite to replace it`,
    );
    expect(await contents(theirs)).toEqual(before);
    await mergedExport.handler({ ...common, model: base, adapter: foreign, out: theirs, overwrite: true } as never);
    expect(Object.keys(await contents(theirs))).toContain('.ft-output');
    // ft's own merged model is replaced without --overwrite
    await mergedExport.handler({ ...common, model: base, adapter: foreign, out: theirs } as never);
  });

  it('peft --out over a folder ft did not write is refused; --out inside --checkpoint too', async () => {
    const notes = path.join(root, 'notes');
    await fsp.mkdir(notes);
    await fsp.writeFile(path.join(notes, 'todo.md'), 'keep');
    await expect(peftExport.handler({ ...common, checkpoint: foreign, out: notes } as never)).rejects.toThrow(
      `${notes}: is not empty and was not written by ft (no .ft-output); pass --overwrite to replace it`,
    );
    expect(await fsp.readFile(path.join(notes, 'todo.md'), 'utf8')).toBe('keep');
    await expect(
      peftExport.handler({ ...common, checkpoint: foreign, out: path.join(foreign, 'clean') } as never),
    ).rejects.toThrow(/is inside the --checkpoint folder/);
    await peftExport.handler({ ...common, checkpoint: foreign, out: notes, overwrite: true } as never);
    expect((await fsp.readdir(notes)).sort()).toEqual(['.ft-output', ADAPTER_CONFIG, ADAPTER_WEIGHTS]);
  });
});
