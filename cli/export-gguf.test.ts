import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { gguf } from '@huggingface/gguf';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { configJson, readConfig } from '../model/config.ts';
import { writeSafetensors } from '../model/safetensors.ts';
import { loadTokenizer } from '../model/tokenizer.ts';
import { greedy, llamaCpp, loadGguf } from '../test/llama-cpp.ts';
import { writeRandomAdapter } from '../test/random-adapter.ts';
import { FtError } from '../util/errors.ts';
import { writeOutputMarker } from '../util/owned-dir.ts';
import { exportFormats } from './export.ts';
import { runFt } from '../test/run-ft.ts';

const fixtures = new URL('../test/fixtures/gguf/', import.meta.url);
const llama = await llamaCpp();
/** The real pretrained llama2.c model (read-only shared data). */
const STORIES = path.resolve(import.meta.dirname, '../../shared/data/stories260K');

const ft = (args: string[]) => runFt(args, { timeoutMs: 60_000 });

describe('ft export gguf', () => {
  it('converts a PEFT folder to the same bytes gguf-py writes', async () => {
    const ref = JSON.parse(await fsp.readFile(new URL('reference_adapter.json', fixtures), 'utf8'));
    const root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-cli-gguf-'));
    try {
      await fsp.mkdir(path.join(root, 'base'));
      await fsp.writeFile(path.join(root, 'base', 'config.json'), JSON.stringify(ref.base_config));
      const adapter = path.join(root, 'tiny-adapter');
      await fsp.mkdir(adapter);
      await fsp.writeFile(path.join(adapter, 'adapter_config.json'), JSON.stringify(ref.adapter_config));
      await writeSafetensors(
        path.join(adapter, 'adapter_model.safetensors'),
        ref.tensors.map((t: { name: string; shape: number[]; data: number[] }) => ({
          name: t.name,
          dtype: 'F32',
          shape: t.shape,
          data: Float32Array.from(t.data),
        })),
      );
      const out = path.join(root, 'a.gguf');
      const r = await ft([
        'export',
        'gguf',
        '--adapter',
        adapter,
        '--base',
        path.join(root, 'base'),
        '--out',
        out,
        '--outtype',
        'f16',
      ]);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^wrote .*a\.gguf: llama LoRA, 28 tensors \(f16\), alpha 4, 0\.00 MB\n$/);
      expect((await fsp.readFile(out)).equals(await fsp.readFile(new URL('reference-f16.gguf', fixtures)))).toBe(true);
    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});

describe('ft export gguf: adapters as export merged takes them, checked against the base', () => {
  let root: string;
  let base: string;
  let run: string;
  beforeAll(async () => {
    root = await fsp.mkdtemp(path.join(os.tmpdir(), 'ft-cli-gguf-run-'));
    base = STORIES;
    // a training output folder: checkpoints, the newest one taken
    run = path.join(root, 'run');
    const c = await readConfig(base);
    await writeRandomAdapter(path.join(run, 'checkpoint-2'), c, { seed: 1, stdB: 0.04, baseModel: base });
    await writeRandomAdapter(path.join(run, 'checkpoint-10'), c, { seed: 2, stdB: 0.04, baseModel: base });
    // ft's own checkpoints (its marker): another tool's checkpoint-N would not be taken
    for (const n of ['checkpoint-2', 'checkpoint-10']) {
      await fsp.writeFile(path.join(run, n, 'trainer_state.json'), '{}');
      await writeOutputMarker(path.join(run, n), 'checkpoint');
    }
    await fsp.copyFile(
      fileURLToPath(new URL('../recipes/alpaca-tiny.yaml', import.meta.url)),
      path.join(run, 'recipe.yaml'),
    );
  });
  afterAll(async () => {
    await fsp.rm(root, { recursive: true, force: true });
  });

  /** `ft export gguf` run in this process (no child process: these checks need no backend), its stdout and stderr kept. */
  async function exportGguf(
    args: Record<string, unknown>,
  ): Promise<{ stdout: string; stderr: string; error: unknown }> {
    const cmd = exportFormats.find((f) => f.command === 'gguf')!;
    const out = { stdout: '', stderr: '', error: null as unknown };
    const so = vi.spyOn(process.stdout, 'write').mockImplementation((t) => ((out.stdout += String(t)), true));
    const se = vi.spyOn(process.stderr, 'write').mockImplementation((t) => ((out.stderr += String(t)), true));
    try {
      await cmd.handler({ backend: 'auto', quiet: true, lora: false, ...args } as never);
    } catch (e) {
      out.error = e;
    } finally {
      so.mockRestore();
      se.mockRestore();
    }
    return out;
  }

  it('takes a training output folder (its newest checkpoint) and writes no local path into the metadata', async () => {
    const out = path.join(root, 'lora.gguf');
    const r = await exportGguf({ adapter: run, out });
    expect(r.error).toBe(null);
    expect(r.stderr).toContain(`using ${path.join(run, 'checkpoint-10')}`);
    const parsed = await gguf(out, { allowLocalFile: true });
    expect(Object.keys(parsed.metadata).filter((k) => k.startsWith('general.base_model'))).toEqual([]);
    expect(JSON.stringify(parsed.metadata, (_k, v) => (typeof v === 'bigint' ? Number(v) : v))).not.toContain(root);
    expect(parsed.tensorInfos).toHaveLength(5 * 7 * 2);
  });

  it('refuses an adapter whose shapes do not fit --base, naming the tensor, and writes nothing', async () => {
    const other = path.join(root, 'other');
    await fsp.mkdir(other, { recursive: true });
    const { raw: _raw, ...c } = await readConfig(base);
    await fsp.writeFile(
      path.join(other, 'config.json'),
      JSON.stringify(configJson({ ...c, numHiddenLayers: 2, hiddenSize: 128 })),
    );
    const out = path.join(root, 'bad.gguf');
    const r = await exportGguf({ adapter: path.join(run, 'checkpoint-2'), base: other, out });
    expect(r.error).toBeInstanceOf(FtError);
    const message = (r.error as FtError).message;
    expect(message).toMatch(
      /adapter_model\.safetensors: tensor 'base_model\.model\.model\.layers\.\d+\.\w+\.\w+_proj\.lora_[AB]\.weight' (is for block|has shape)/,
    );
    expect(message).not.toContain('\n');
    await expect(fsp.stat(out)).rejects.toThrow();
  });

  it.skipIf(typeof llama === 'string')(
    '--model --adapter RUN --outtype q8_0: a file llama.cpp loads that generates what ft generate does',
    async () => {
      const out = path.join(root, 'tiny.gguf');
      const r = await ft(['export', 'gguf', '--model', base, '--adapter', run, '--out', out, '--outtype', 'q8_0']);
      expect(r.stdout).toMatch(
        /^wrote .*tiny\.gguf: llama model with the adapter merged, 47 tensors \(q8_0; 5 in f16, their rows not a multiple of 32\), [\d.]+ MB\n$/,
      );
      const prompt = 'Once upon a time, there was';
      const gen = await ft([
        'generate',
        '--model',
        base,
        '--adapter',
        path.join(run, 'checkpoint-10'),
        '--prompt',
        prompt,
        '--max-new-tokens',
        '8',
        '--quiet',
      ]);
      expect(gen.code).toBe(0);
      const tok = await loadTokenizer(base);
      const model = await loadGguf(llama as Exclude<typeof llama, string>, out);
      const ids = [tok.bosId!, ...tok.encode(prompt, { addSpecialTokens: false })];
      const { tokens } = await greedy(model, ids, 8, tok.vocabSize);
      await model.dispose();
      const end = tokens.indexOf(tok.eosId);
      expect(gen.stdout).toBe(tok.decode(end < 0 ? tokens : tokens.slice(0, end), { skipSpecialTokens: true }) + '\n');
    },
  );

  it('ft export ollama: model.gguf and a Modelfile with the Alpaca template the run trained with', async () => {
    const out = path.join(root, 'ollama');
    const r = await ft(['export', 'ollama', '--model', base, '--adapter', run, '--out', out]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('template from');
    const mf = await fsp.readFile(path.join(out, 'Modelfile'), 'utf8');
    expect(mf.split('\n')[0]).toBe('FROM ./model.gguf');
    expect(mf).toContain(
      'TEMPLATE """Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{{ .Prompt }}\n\n### Response:\n{{ .Response }}"""',
    );
    expect(mf).toContain('PARAMETER stop "### Instruction:"');
    expect(mf).toContain('PARAMETER stop "</s>"');
    const parsed = await gguf(path.join(out, 'model.gguf'), { allowLocalFile: true });
    expect(parsed.metadata['general.file_type' as never]).toBe(7); // MOSTLY_Q8_0
  });
});
