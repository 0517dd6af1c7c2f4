import { execFile } from 'node:child_process';
import { promises as fsp } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { writeSafetensors } from '../model/safetensors.ts';

const FT = fileURLToPath(new URL('./ft.js', import.meta.url));
const fixtures = new URL('../test/fixtures/gguf/', import.meta.url);

function ft(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [FT, ...args], { timeout: 60_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }));
  });
}

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
        ref.tensors.map((t: { name: string; shape: number[]; data: number[] }) => ({ name: t.name, dtype: 'F32', shape: t.shape, data: Float32Array.from(t.data) })),
      );
      const out = path.join(root, 'a.gguf');
      const r = await ft(['export', 'gguf', '--adapter', adapter, '--base', path.join(root, 'base'), '--out', out, '--outtype', 'f16']);
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^wrote .*a\.gguf: llama LoRA, 28 tensors \(f16\), alpha 4, 0\.00 MB\n$/);
      expect((await fsp.readFile(out)).equals(await fsp.readFile(new URL('reference-f16.gguf', fixtures)))).toBe(true);

    } finally {
      await fsp.rm(root, { recursive: true, force: true });
    }
  });
});
