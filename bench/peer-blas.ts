// Which BLAS the PyTorch peer of bench/train.ts runs on, and which OpenBLAS kernels: a peer on the reference BLAS, or
// on OpenBLAS kernels for a CPU generation older than this one, is not a peer, and its figures would flatter ft.

export type BlasKind = 'openblas' | 'mkl' | 'reference' | 'unknown';

/** The BLAS behind torch's products, from the libraries mapped into its process and torch's BLAS_INFO. */
export function blasKind(libraries: string[], blasInfo: string): BlasKind {
  const libs = libraries.join(' ');
  if (libs.includes('openblas')) return 'openblas';
  if (/mkl/i.test(libs) || /mkl/i.test(blasInfo)) return 'mkl';
  if (libs.includes('/blas/libblas')) return 'reference'; // Debian's libblas3, the netlib reference
  return 'unknown';
}

/** The core OpenBLAS says it runs with OPENBLAS_VERBOSE=2 (its "Core: Haswell" line on stderr). */
export function openblasCoreOf(stderrLines: string[]): string | undefined {
  return stderrLines.map((l) => /^\s*Core: (\S+)/.exec(l)?.[1]).find(Boolean);
}
