import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { blasKind, openblasCoreOf, openblasCoretype } from './peer-blas.ts';

describe('the PyTorch peer names its BLAS', () => {
  it('tells OpenBLAS, MKL and the reference BLAS apart by the libraries torch mapped', () => {
    const openblas = [
      '/usr/lib/x86_64-linux-gnu/openblas-pthread/libblas.so.3',
      '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblasp-r0.3.21.so',
    ];
    expect(blasKind(openblas, 'generic')).toBe('openblas'); // Debian's torch says "generic" for either
    expect(blasKind(['/usr/lib/x86_64-linux-gnu/blas/libblas.so.3'], 'generic')).toBe('reference');
    expect(blasKind(['/opt/intel/lib/libmkl_rt.so.2'], 'mkl')).toBe('mkl');
    expect(blasKind([], 'generic')).toBe('unknown');
  });

  it('picks OpenBLAS kernels from the CPU flags: AVX-512 SkylakeX, AVX2+FMA Haswell, else its own detection', () => {
    const cpuinfo = (flags: string) =>
      `processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Processor\nflags\t\t: ${flags}\n`;
    expect(openblasCoretype(cpuinfo('fpu sse2 avx fma avx2 avx512f avx512dq avx512bw avx512vl'))).toBe('SkylakeX');
    expect(openblasCoretype(cpuinfo('fpu sse2 avx fma avx2'))).toBe('Haswell');
    expect(openblasCoretype(cpuinfo('fpu sse2 ssse3'))).toBeUndefined();
    expect(openblasCoreOf(['Unable to detect', 'Core: SkylakeX'])).toBe('SkylakeX');
  });

  const OPENBLAS = '/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0';
  it.skipIf(!existsSync(OPENBLAS) || !existsSync('/usr/bin/python3'))(
    "this machine's flags give a kernel set the installed OpenBLAS itself accepts and reports",
    () => {
      const coretype = openblasCoretype(readFileSync('/proc/cpuinfo', 'utf8'));
      if (!coretype) return;
      // OpenBLAS prints the core it runs when it loads with OPENBLAS_VERBOSE=2 (ctypes loads it; torch is not needed)
      const r = spawnSync('/usr/bin/python3', ['-c', `import ctypes; ctypes.CDLL(${JSON.stringify(OPENBLAS)})`], {
        env: { PATH: process.env.PATH, OPENBLAS_VERBOSE: '2', OPENBLAS_CORETYPE: coretype },
        encoding: 'utf8',
      });
      expect(r.status).toBe(0);
      expect(openblasCoreOf(`${r.stdout}\n${r.stderr}`.split('\n'))?.toLowerCase()).toBe(coretype.toLowerCase());
    },
  );
});
