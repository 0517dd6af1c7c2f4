import { defineConfig, type TestProjectInlineConfiguration } from 'vitest/config';

/** Tests that run the real CLI or whole training runs: the slow tier (`npm run test:e2e`). */
const E2E = [
  'cli/**/*.test.ts',
  'test/train-*.test.ts',
  'test/stories260k.test.ts',
  'recipes/train.test.ts',
  'eval/run.test.ts',
];

/**
 * The model, loss, LoRA, 4-bit and loop tests run again on the plain JS `cpu` backend (`npm run test:cpu`), so code
 * that only works on wasm's paths is caught: engine/ picks other tactics off wasm, as it does on tfjs-node.
 */
const ON_CPU = [
  'model/llama.test.ts',
  'model/recompute.test.ts',
  'model/generate.test.ts',
  'test/model-gradients.test.ts',
  'test/golden/*.test.ts',
  'adapters/lora.test.ts',
  'quant/linear.test.ts',
  'engine/matmul.test.ts',
  'train/loop.test.ts',
];

const common = { setupFiles: ['test/setup.ts'], pool: 'forks' as const, testTimeout: 300_000, hookTimeout: 300_000 };
const project = (
  name: string,
  include: string[],
  extra: Record<string, unknown> = {},
): TestProjectInlineConfiguration => ({
  test: { name, include, exclude: ['node_modules/**', 'models/**', 'runs/**'], ...common, ...extra },
});

// The unit tier shares one worker's modules across its files (isolate: false): each file no longer pays the wasm
// backend's start and the imports again (unit tier 108 s -> 45-60 s on 2 cores, the same 474 tests).
export default defineConfig({
  test: {
    projects: [
      project('unit', ['**/*.test.ts'], {
        exclude: ['node_modules/**', 'models/**', 'runs/**', ...E2E],
        isolate: false,
      }),
      project('e2e', E2E),
      project('cpu', ON_CPU, { env: { FT_BACKEND: 'cpu' } }),
    ],
  },
});
