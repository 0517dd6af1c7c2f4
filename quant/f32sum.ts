// torch's float32 sum of a contiguous vector, in the exact order its CPU kernel adds (aten SumKernel.cpp
// cascade_sum, AVX2: 8-lane vectors, 4 interleaved accumulators, up to 4 cascade levels), so that
// bitsandbytes' `absmax.mean()` offset for double quantization comes out bit for bit. Checked against
// torch 1.13 for sizes 1 .. 300000 (test/fixtures/quant/make_reference.py).

const LANES = 8;
const ILP = 4;
const LEVELS = 4;

/** Adds b into a lane by lane, rounding to float32 (Float32Array stores round). */
function addInto(a: Float32Array, b: Float32Array | ArrayLike<number>, bOffset = 0): void {
  for (let l = 0; l < a.length; l++) a[l] += b[bOffset + l];
}

/** multi_row_sum: `size` rows of ILP vectors, accumulated with a cascade so long sums stay accurate. */
function multiRowSum(x: Float32Array, size: number): Float32Array[] {
  const levelPower = Math.max(4, Math.floor((size > 1 ? Math.ceil(Math.log2(size)) : 0) / LEVELS));
  const levelStep = 2 ** levelPower;
  const levelMask = levelStep - 1;
  const acc = Array.from({ length: LEVELS }, () => Array.from({ length: ILP }, () => new Float32Array(LANES)));
  const addRow = (i: number) => {
    for (let k = 0; k < ILP; k++) addInto(acc[0][k], x, (i * ILP + k) * LANES);
  };
  let i = 0;
  while (i + levelStep <= size) {
    for (let j = 0; j < levelStep; j++, i++) addRow(i);
    for (let j = 1; j < LEVELS; j++) {
      for (let k = 0; k < ILP; k++) {
        addInto(acc[j][k], acc[j - 1][k]);
        acc[j - 1][k].fill(0);
      }
      if ((i & (levelMask * 2 ** (j * levelPower))) !== 0) break;
    }
  }
  for (; i < size; i++) addRow(i);
  for (let j = 1; j < LEVELS; j++) for (let k = 0; k < ILP; k++) addInto(acc[0][k], acc[j][k]);
  return acc[0];
}

/** torch.sum(x) for a float32 vector on CPU, bit for bit. */
export function torchSumF32(x: Float32Array): number {
  const n = x.length;
  const acc = new Float32Array(1);
  const vectors = Math.floor(n / LANES);
  if (vectors === 0) {
    // scalar row_sum: 4 interleaved scalar accumulators
    const p = new Float32Array(ILP);
    const rows = Math.floor(n / ILP);
    for (let i = 0; i < rows * ILP; i++) p[i % ILP] += x[i];
    for (let i = rows * ILP; i < n; i++) p[0] += x[i];
    for (let k = 1; k < ILP; k++) p[0] += p[k];
    return p[0];
  }
  const rows = Math.floor(vectors / ILP);
  const partial = rows > 0 ? multiRowSum(x, rows) : [new Float32Array(LANES)];
  for (let v = rows * ILP; v < vectors; v++) addInto(partial[0], x, v * LANES);
  for (let k = 1; k < partial.length; k++) addInto(partial[0], partial[k]);
  for (let i = vectors * LANES; i < n; i++) acc[0] += x[i];
  for (let l = 0; l < LANES; l++) acc[0] += partial[0][l];
  return acc[0];
}
