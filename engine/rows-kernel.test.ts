// engine/rows-kernel.ts on a plain WebAssembly memory, against float64 math: its exp over the whole range a softmax
// feeds it, and each function on rows whose length leaves every remainder of 4.
import { describe, expect, test } from 'vitest';
import { Rng } from '../util/rng.ts';
import { rowsKernel } from './rows-kernel.ts';

const memory = new WebAssembly.Memory({ initial: 64 }); // 4 MiB
const kernel = rowsKernel(memory);
const heap = new Float32Array(memory.buffer);

/** Places arrays one after another from byte 64, 16-byte aligned; returns each one's byte address. */
function place(...arrays: Float32Array[]): number[] {
  let at = 16;
  return arrays.map((a) => {
    heap.set(a, at);
    const address = 4 * at;
    at += Math.ceil((a.length + 4) / 4) * 4;
    return address;
  });
}
const read = (address: number, length: number) => heap.slice(address / 4, address / 4 + length);

const f = Math.fround;

/**
 * Softmax of each row of x + mask in float64 from the float32 arguments x + mask - max any float32 softmax exps (their
 * rounding, ~|argument| ulp, is not the kernel's).
 */
function softmax64(x: Float32Array, mask: Float32Array, rows: number, cols: number): Float64Array {
  const out = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const args = Array.from({ length: cols }, (_, c) => f(x[r * cols + c] + mask[r * cols + c]));
    const top = Math.max(...args);
    const sum = args.reduce((s, a) => s + Math.exp(f(a - top)), 0);
    args.forEach((a, c) => {
      out[r * cols + c] = Math.exp(f(a - top)) / sum;
    });
  }
  return out;
}

function randomRows(seed: number, n: number, scale: number): Float32Array {
  const r = new Rng(seed);
  return Float32Array.from({ length: n }, () => r.normal() * scale);
}

describe('rows kernel', () => {
  test('exp is within 2 ulp of float64 from -87.3 to 0, and exactly 0 below', () => {
    const n = 1 << 16;
    const x = Float32Array.from({ length: n }, (_, i) => -100 + (100 * i) / (n - 1));
    const [at, out, shiftScale] = place(x, new Float32Array(n), Float32Array.of(0, 1));
    kernel.expShifted(at, out, shiftScale, 1, n);
    const e = read(out, n);
    let worst = 0;
    for (let i = 0; i < n; i++) {
      if (x[i] < f(-87.33654)) {
        expect(e[i]).toBe(0);
        continue;
      }
      const want = Math.exp(x[i]);
      const ulp = 2 ** (Math.floor(Math.log2(want)) - 23);
      worst = Math.max(worst, Math.abs(e[i] - want) / ulp);
    }
    expect(worst).toBeLessThanOrEqual(2);
  });

  test.each([1, 2, 3, 4, 5, 7, 256, 1001])(
    'maskedSoftmax and softmax match float64 on rows of %i, masked entries 0',
    (cols) => {
      const rows = 5;
      const x = randomRows(cols, rows * cols, 8);
      const r = new Rng(cols + 1);
      const mask = Float32Array.from({ length: rows * cols }, (_, i) => (i % cols === 0 || r.next() > 0.3 ? 0 : -1e9));
      const [xAt, maskAt, yAt, plainAt] = place(x, mask, new Float32Array(rows * cols), new Float32Array(rows * cols));
      kernel.maskedSoftmax(xAt, maskAt, yAt, rows, cols);
      kernel.softmax(xAt, plainAt, rows, cols);
      const [masked, plain] = [read(yAt, rows * cols), read(plainAt, rows * cols)];
      const [want, wantPlain] = [
        softmax64(x, mask, rows, cols),
        softmax64(x, new Float32Array(rows * cols), rows, cols),
      ];
      for (let i = 0; i < rows * cols; i++) {
        if (mask[i] < 0) expect(masked[i]).toBe(0);
        expect(Math.abs(masked[i] - want[i])).toBeLessThanOrEqual(1e-6 * want[i] + 1e-37);
        expect(Math.abs(plain[i] - wantPlain[i])).toBeLessThanOrEqual(1e-6 * wantPlain[i] + 1e-37);
      }
    },
  );

  test.each([3, 8, 1030])('softmaxGrad, maxSumExp and expShifted match float64 on rows of %i', (cols) => {
    const rows = 4;
    const p = Float32Array.from(softmax64(randomRows(1, rows * cols, 3), new Float32Array(rows * cols), rows, cols));
    const dp = randomRows(2, rows * cols, 1);
    const z = randomRows(3, rows * cols, 5);
    const shiftScale = Float32Array.from({ length: 2 * rows }, (_, i) => (i % 2 ? 0.25 * (i + 1) : 2 + i));
    const [pAt, dpAt, dxAt, zAt, statsAt, ssAt, gAt] = place(
      p,
      dp,
      new Float32Array(rows * cols),
      z,
      new Float32Array(2 * rows),
      shiftScale,
      new Float32Array(rows * cols),
    );
    kernel.softmaxGrad(pAt, dpAt, dxAt, rows, cols);
    kernel.maxSumExp(zAt, statsAt, rows, cols);
    kernel.expShifted(zAt, gAt, ssAt, rows, cols);
    const [dx, stats, g] = [read(dxAt, rows * cols), read(statsAt, 2 * rows), read(gAt, rows * cols)];
    // a row's sum runs in 4 lanes of float32, each adding cols / 4 terms: relative error up to that many half-ulps
    const sumError = (cols / 4 + 2) * 2 ** -24;
    for (let r = 0; r < rows; r++) {
      const row = (a: ArrayLike<number>) => Array.from({ length: cols }, (_, c) => a[r * cols + c]);
      const dot = row(p).reduce((s, v, c) => s + v * dp[r * cols + c], 0);
      row(p).forEach((v, c) => {
        expect(Math.abs(dx[r * cols + c] - v * (dp[r * cols + c] - dot))).toBeLessThan(1e-6 + v * sumError);
      });
      const top = Math.max(...row(z));
      const sum = row(z).reduce((s, v) => s + Math.exp(f(v - top)), 0);
      expect(stats[2 * r]).toBe(top);
      expect(Math.abs(stats[2 * r + 1] - sum) / sum).toBeLessThan(sumError);
      row(z).forEach((v, c) => {
        const want = Math.exp(f(v - shiftScale[2 * r])) * shiftScale[2 * r + 1];
        expect(Math.abs(g[r * cols + c] - want)).toBeLessThanOrEqual(3e-7 * want);
      });
    }
  });
});
