// Products on the machine's OpenBLAS, where it is installed (Debian: apt-get install libopenblas0-pthread): its
// cblas_sgemm called through koffi (a C FFI, an optional dependency) on tfjs-backend-wasm's heap, where the tensors
// already are. OpenBLAS's AVX-512 kernels reach 150 GFLOP/s on one core here, where wasm's 128-bit SIMD tops out at
// ~40 (engine/gemm-kernel.ts). OpenBLAS runs on one thread, whichever calls it: on several, ft's kernel pool hands
// each thread boxes of C, as it does for its own GEMM. With OpenBLAS's own pool as well, its threads spun on the cores
// the kernel pool's needed (a stories15M step on 2 threads scaled 1.25-1.37x, its products alone ~1.85x).
// FT_BLAS=off keeps every product on ft's own kernels; FT_BLAS=<file> loads that library instead.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { FtError } from '../util/errors.ts';
import type { GemmProblem, Operand } from './gemm.ts';

/** cblas_sgemm over a heap, on the calling thread. */
export interface Blas {
  /** what was loaded, e.g. "OpenBLAS 0.3.21 SkylakeX (libopenblas.so.0)" */
  name: string;
  /** the file asked for, as blas() takes it */
  file: string;
  /** C = A B for `g`, offsets in values of `heap` */
  sgemm(heap: Float32Array, g: GemmProblem): void;
}

/** The library tried when FT_BLAS does not name one: libopenblas0-pthread's (or -openmp's, -serial's) soname. */
const DEFAULT_LIBRARY = 'libopenblas.so.0';

const [ROW_MAJOR, NO_TRANS, TRANS] = [101, 111, 112];

/**
 * The OpenBLAS kernel family for a CPU from its /proc/cpuinfo flags. OpenBLAS 0.3.21 (Debian 12) names cores by CPU
 * model, and on a model it does not know (a newer Xeon, or a VM's generic "Intel Xeon Processor") it falls back to
 * Prescott's SSE3 kernels: sgemm 18 GFLOP/s where SkylakeX's reach 135 on one core here. Flags it has no family for:
 * undefined, and OpenBLAS detects alone.
 */
export function openblasCoretype(cpuinfo: string): 'SkylakeX' | 'Haswell' | undefined {
  const flags = new Set(/^flags\s*:(.*)$/m.exec(cpuinfo)?.[1].trim().split(/\s+/));
  if (flags.has('avx512f') && flags.has('avx512bw') && flags.has('avx512vl')) return 'SkylakeX';
  if (flags.has('avx2') && flags.has('fma')) return 'Haswell';
  return undefined;
}

/**
 * An operand as CBLAS takes it: not transposed when its rows are contiguous (leading dimension its row stride),
 * transposed when its columns are. A single row or column may have either stride; the leading dimension is then at
 * least the stored row's length, as CBLAS requires.
 */
export function cblasOperand(o: Operand, rows: number, cols: number): { trans: number; ld: number } {
  if (o.colStride === 1) return { trans: NO_TRANS, ld: Math.max(o.rowStride, cols, 1) };
  if (o.rowStride === 1) return { trans: TRANS, ld: Math.max(o.colStride, rows, 1) };
  throw new Error(`operand with strides ${o.rowStride}, ${o.colStride}: neither rows nor columns are contiguous`);
}

/** /proc/cpuinfo, or nothing where there is none (not Linux). */
function cpuinfo(): string {
  try {
    return readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return '';
  }
}

interface Koffi {
  load(file: string): { func(signature: string): (...args: unknown[]) => unknown };
}

function loadKoffi(): Koffi | null {
  try {
    return createRequire(import.meta.url)('koffi') as Koffi;
  } catch {
    return null;
  }
}

const loaded = new Map<string, Blas | null>();

/**
 * OpenBLAS (`file`, default FT_BLAS or libopenblas.so.0), or null when it or koffi is not installed, or FT_BLAS is
 * off. A library FT_BLAS names that cannot load is an error. Loaded once per file.
 */
export function blas(file = process.env.FT_BLAS): Blas | null {
  const key = file ?? '';
  if (!loaded.has(key)) loaded.set(key, loadBlas(file));
  return loaded.get(key) ?? null;
}

function loadBlas(file: string | undefined): Blas | null {
  if (file === 'off' || file === '0') return null;
  const koffi = loadKoffi();
  if (!koffi) {
    if (file) throw new FtError(`FT_BLAS=${file}: the optional dependency koffi is not installed (npm install koffi)`);
    return null;
  }
  // read when the library loads: without it, OpenBLAS 0.3.21 runs SSE3 kernels on CPUs newer than it knows
  const coretype = openblasCoretype(cpuinfo());
  if (coretype) process.env.OPENBLAS_CORETYPE ??= coretype;
  process.env.OPENBLAS_NUM_THREADS ??= '1'; // its own pool would only sleep: ft's threads call it one box each
  const named = (why: string) => new FtError(`FT_BLAS=${file}: ${why}`);
  let lib: ReturnType<Koffi['load']>;
  try {
    lib = koffi.load(file ?? DEFAULT_LIBRARY);
  } catch (e) {
    if (file) throw named(`cannot load it (${String(e).split('\n')[0]})`);
    return null;
  }
  let sgemm: (...args: unknown[]) => unknown;
  let name: string;
  try {
    sgemm = lib.func(
      'void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, float *a, int lda, ' +
        'float *b, int ldb, float beta, float *c, int ldc)',
    );
    lib.func('void openblas_set_num_threads(int n)')(1);
    const config = lib.func('const char *openblas_get_config()')() as string;
    const core = lib.func('const char *openblas_get_corename()')() as string;
    name = `${config.split(' ').slice(0, 2).join(' ')} ${core} (${file ?? DEFAULT_LIBRARY})`;
  } catch (e) {
    if (file) throw named(`not OpenBLAS (${String(e).split('\n')[0]})`);
    return null;
  }
  return {
    name,
    file: file ?? DEFAULT_LIBRARY,
    sgemm(heap, g) {
      const a = cblasOperand(g.a, g.m, g.k);
      const b = cblasOperand(g.b, g.k, g.n);
      const [pa, pb, pc] = [g.a.offset, g.b.offset, g.c].map((at) => heap.subarray(at));
      sgemm(ROW_MAJOR, a.trans, b.trans, g.m, g.n, g.k, 1, pa, a.ld, pb, b.ld, 0, pc, Math.max(g.ldc, g.n, 1));
    },
  };
}
