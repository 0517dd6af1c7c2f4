// How bench/train.ts starts its PyTorch peer: Debian's python3 with python3-torch, on an optimized BLAS when there is one.
import { existsSync, readFileSync } from 'node:fs';
import * as path from 'node:path';
import { run } from './child.ts';
import { openblasCoretype } from '../engine/blas.ts';

export const PYTHON = '/usr/bin/python3'; // Debian's python3-torch lives only here (the python3 on PATH has no torch)
const OPENBLAS_DIR = '/usr/lib/x86_64-linux-gnu/openblas-pthread'; // libopenblas0-pthread's libblas.so.3

/** Why the peer cannot run here, or null when /usr/bin/python3 imports torch. */
export async function peerMissing(): Promise<string | null> {
  if (process.env.FT_BENCH_PEER === '0') return 'FT_BENCH_PEER=0';
  if (!existsSync(PYTHON)) return `${PYTHON} not found (apt-get install python3-torch)`;
  const { code } = await run(PYTHON, ['-c', 'import torch']);
  return code === 0 ? null : `${PYTHON} has no torch (apt-get install python3-torch)`;
}

/**
 * `env` arguments that run torch on `threads` threads as a peer: OPENBLAS_CORETYPE from the CPU's flags
 * (openblasCoretype), OPENBLAS_VERBOSE so the core OpenBLAS runs can be read back, OpenBLAS's own pool on the same
 * thread count, torch's OpenMP threads sleeping rather than spinning between regions, and libopenblas0-pthread's
 * libblas.so.3 first on the library path when installed (Debian's default may be the unoptimized reference BLAS).
 */
export function peerEnv(threads: number): string[] {
  const coretype = openblasCoretype(readFileSync('/proc/cpuinfo', 'utf8'));
  const env = [
    ...['-u', 'OPENBLAS_L2_SIZE', '-u', 'OPENBLAS_CORETYPE'], // options first, then the assignments
    ...(coretype ? [`OPENBLAS_CORETYPE=${coretype}`] : []),
    'OPENBLAS_VERBOSE=2',
    `OPENBLAS_NUM_THREADS=${threads}`,
    // GNU OpenMP's threads spin after each parallel region and starve OpenBLAS's own pool on the same cores:
    // stories15M on 2 threads ran 550-625 tokens/s spinning, 1138 passive (1 thread: 686)
    'OMP_WAIT_POLICY=PASSIVE',
  ];
  if (existsSync(path.join(OPENBLAS_DIR, 'libblas.so.3')))
    env.push(`LD_LIBRARY_PATH=${OPENBLAS_DIR}${process.env.LD_LIBRARY_PATH ? ':' + process.env.LD_LIBRARY_PATH : ''}`);
  return env;
}
