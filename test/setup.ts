// Tests run on wasm unless FT_BACKEND says otherwise (cpu is far slower; tensorflow needs the native package).
import { initBackend, type BackendChoice } from '../engine/backend.ts';

await initBackend((process.env.FT_BACKEND as BackendChoice | undefined) ?? 'wasm');
