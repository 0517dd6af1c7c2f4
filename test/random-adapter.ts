// A random PEFT LoRA adapter for a model config: every projection of every block, A and B both nonzero (so it changes
// the model's outputs, unlike a freshly initialized one whose B is 0), seeded.
import { peftKey, writePeftAdapter } from '../adapters/peft.ts';
import type { TensorData } from '../model/safetensors.ts';
import { hfModuleName, LINEAR_NAMES, type LlamaConfig } from '../model/types.ts';
import { expectedTensors } from '../model/load.ts';
import { Rng } from '../util/rng.ts';

export async function writeRandomAdapter(
  dir: string,
  c: LlamaConfig,
  opts: { seed: number; stdB: number; r?: number; baseModel?: string | null },
): Promise<void> {
  const r = opts.r ?? 4;
  const rng = new Rng(opts.seed);
  const shapes = new Map(expectedTensors(c).map((t) => [t.name, t.shape]));
  const tensors = new Map<string, TensorData>();
  for (let i = 0; i < c.numHiddenLayers; i++) {
    for (const p of LINEAR_NAMES) {
      const [out, inp] = shapes.get(`${hfModuleName(i, p)}.weight`)!;
      tensors.set(peftKey(i, p, 'lora_A'), {
        shape: [r, inp],
        data: Float32Array.from({ length: r * inp }, () => 0.15 * rng.normal()),
      });
      tensors.set(peftKey(i, p, 'lora_B'), {
        shape: [out, r],
        data: Float32Array.from({ length: out * r }, () => opts.stdB * rng.normal()),
      });
    }
  }
  await writePeftAdapter(
    dir,
    { r, alpha: 2 * r, dropout: 0, targetModules: 'all-linear', useRslora: false },
    opts.baseModel ?? null,
    tensors,
  );
}
