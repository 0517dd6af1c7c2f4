// A --model folder that is not there is reported as such by every command that reads one, not as a missing
// tokenizer.json or config.json inside it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FtError } from '../util/errors.ts';
import { requireModelDir } from './common.ts';
import { runEvalCommand, type EvalArgs } from './eval.ts';
import { exportFormats } from './export.ts';
import { loadGenerator, type GenerateArgs } from './generate.ts';
import { memoryTable, type MemoryArgs } from './memory.ts';
import { runFt } from '../test/run-ft.ts';

const tmp = mkdtempSync(path.join(tmpdir(), 'ft-model-dir-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
const missing = path.join(tmp, 'no-such-model');
const said = `--model ${missing}: no such folder (expected a Hugging Face model folder)`;
const global = { backend: 'wasm' as const, quiet: true };

describe('a missing --model folder is named as a missing folder', () => {
  it('requireModelDir: absent, and a file where a folder belongs', () => {
    expect(() => requireModelDir(missing)).toThrow(new FtError(said));
    const file = path.join(tmp, 'model.gguf');
    writeFileSync(file, '');
    expect(() => requireModelDir(file, '--base')).toThrow(
      new FtError(`--base ${file}: is a file, expected a model folder`),
    );
  });

  it('ft generate', async () => {
    await expect(loadGenerator({ ...global, model: missing, prompt: 'hi' } as GenerateArgs)).rejects.toThrow(
      new FtError(said),
    );
  });

  it('ft eval', async () => {
    const args = {
      ...global,
      model: missing,
      adapter: [],
      data: 'x.jsonl',
      dataType: 'alpaca',
      base: true,
      maxNewTokens: 8,
      temperature: 0,
      topK: 0,
      topP: 1,
      seed: 0,
      batchSize: 1,
      allowOverlap: false,
      loadIn4bit: false,
      reportExamples: 0,
    };
    await expect(runEvalCommand(args as EvalArgs)).rejects.toThrow(new FtError(said));
  });

  it('ft memory', async () => {
    await expect(
      memoryTable({
        ...global,
        model: missing,
        loadIn4bit: false,
        doubleQuant: true,
        loraR: 8,
        targetModules: ['q_proj'],
        microBatchSize: 1,
        sequenceLen: 8,
        gradientCheckpointing: false,
      } as MemoryArgs),
    ).rejects.toThrow(new FtError(said));
  });

  it('ft export merged and ft export gguf --base', async () => {
    const [, merged, gguf] = exportFormats;
    await expect(
      merged.handler({
        ...global,
        model: missing,
        adapter: tmp,
        out: path.join(tmp, 'out'),
        maxShardSize: '5GB',
        overwrite: false,
      } as never),
    ).rejects.toThrow(new FtError(said));
    await expect(
      gguf.handler({ ...global, adapter: tmp, out: path.join(tmp, 'a.gguf'), outtype: 'f32', base: missing } as never),
    ).rejects.toThrow(new FtError(`--base ${missing}: no such folder (expected a Hugging Face model folder)`));
  });

  it('ft data inspect, through the real CLI: exit 1 and that one line', async () => {
    const data = path.join(tmp, 'd.jsonl');
    writeFileSync(data, '{"instruction":"a","input":"","output":"b"}\n');
    const r = await runFt(['data', 'inspect', data, '--model', missing]);
    expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 1, stderr: `ft: ${said}\n` });
  });
});
