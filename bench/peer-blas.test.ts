import { describe, expect, it } from 'vitest';
import { blasKind, openblasCoreOf } from './peer-blas.ts';

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

  it('reads the core OpenBLAS runs from its OPENBLAS_VERBOSE line', () => {
    expect(openblasCoreOf(['Unable to detect', 'Core: SkylakeX'])).toBe('SkylakeX');
  });
});
