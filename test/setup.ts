// Tests run on wasm unless FT_BACKEND says otherwise (cpu is far slower; tensorflow needs the native package), on one
// thread unless FT_TEST_THREADS says more: vitest runs test files side by side, one per core already. The CLI tests'
// child processes take ft's own default, every core.
import { initBackend, type BackendChoice } from '../engine/backend.ts';

await initBackend(
  (process.env.FT_BACKEND as BackendChoice | undefined) ?? 'wasm',
  Number(process.env.FT_TEST_THREADS ?? 1),
);
