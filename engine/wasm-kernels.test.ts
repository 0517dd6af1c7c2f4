import * as tf from '@tensorflow/tfjs';
import { describe, expect, it } from 'vitest';

// test/setup.ts starts the backend through initBackend, which installs the replacement kernels on wasm.
const shape = [3, 4, 5, 6];
const data = Float32Array.from({ length: 3 * 4 * 5 * 6 }, (_, i) => i);
const at = (i: number, j: number, k: number, l: number) => ((i * 4 + j) * 5 + k) * 6 + l;

/** The box [begin, begin + size) of `data`, element by element. */
function expectedBox(begin: number[], size: number[]): number[] {
  const out: number[] = [];
  for (let i = 0; i < size[0]; i++)
    for (let j = 0; j < size[1]; j++)
      for (let k = 0; k < size[2]; k++)
        for (let l = 0; l < size[3]; l++) out.push(data[at(begin[0] + i, begin[1] + j, begin[2] + k, begin[3] + l)]);
  return out;
}

describe('wasm slice kernels', () => {
  const x = tf.tensor4d(data, shape as [number, number, number, number]);

  it.runIf(tf.getBackend() === 'wasm')('is installed on the wasm backend', () => {
    for (const name of ['Slice', 'SplitV', 'Unpack'])
      expect((tf.getKernel(name, 'wasm')?.kernelFunc as { ft?: boolean }).ft).toBe(true);
  });

  it('slice gives every box of a 4-d tensor, contiguous or strided', () => {
    const boxes: [number[], number[]][] = [
      [
        [1, 0, 0, 0],
        [1, 4, 5, 6],
      ],
      [
        [0, 1, 2, 3],
        [3, 2, 3, 3],
      ],
      [
        [2, 3, 4, 5],
        [1, 1, 1, 1],
      ],
      [
        [0, 0, 0, 0],
        [3, 4, 5, 6],
      ],
      [
        [1, 2, 0, 0],
        [2, 0, 5, 6],
      ],
    ];
    for (const [begin, size] of boxes) {
      const s = tf.slice(x, begin, size);
      expect(s.shape).toEqual(size);
      expect(Array.from(s.dataSync())).toEqual(expectedBox(begin, size));
      s.dispose();
    }
  });

  it('split and unstack give the same pieces as slicing, on every axis', () => {
    for (let axis = 0; axis < 4; axis++) {
      const pieces = tf.split(x, [1, shape[axis] - 1], axis);
      const begin = [0, 0, 0, 0];
      pieces.forEach((p, n) => {
        const size = [...shape];
        size[axis] = n === 0 ? 1 : shape[axis] - 1;
        begin[axis] = n === 0 ? 0 : 1;
        expect(Array.from(p.dataSync())).toEqual(expectedBox(begin, size));
      });
      const rows = tf.unstack(x, axis);
      expect(rows).toHaveLength(shape[axis]);
      rows.forEach((r, i) => {
        const b = [0, 0, 0, 0];
        b[axis] = i;
        const size = [...shape];
        size[axis] = 1;
        expect(r.shape).toEqual(shape.filter((_, a) => a !== axis));
        expect(Array.from(r.dataSync())).toEqual(expectedBox(b, size));
      });
      tf.dispose([...pieces, ...rows]);
    }
  });

  it('int32 and bool tensors slice too', () => {
    const ints = tf.tensor2d([1, 2, 3, 4, 5, 6], [2, 3], 'int32');
    expect(Array.from(tf.slice(ints, [1, 1], [1, 2]).dataSync())).toEqual([5, 6]);
    const bools = tf.tensor1d([true, false, true], 'bool');
    expect(Array.from(tf.slice(bools, [1], [2]).dataSync())).toEqual([0, 1]);
  });
});

describe('wasm gather kernel', () => {
  const x = tf.tensor4d(data, shape as [number, number, number, number]);

  it.runIf(tf.getBackend() === 'wasm')('is installed on the wasm backend', () => {
    expect((tf.getKernel('GatherV2', 'wasm')?.kernelFunc as { ft?: boolean }).ft).toBe(true);
  });

  it('gathers slices along every axis with 2-d indices, repeated and out of order', () => {
    for (let axis = 0; axis < 4; axis++) {
      const ids = [
        [2, 0, 2],
        [1, 1, 0],
      ].map((row) => row.map((i) => i % shape[axis]));
      const g = tf.gather(x, tf.tensor2d(ids, [2, 3], 'int32'), axis);
      expect(g.shape).toEqual([...shape.slice(0, axis), 2, 3, ...shape.slice(axis + 1)]);
      // value by value: out[..., r, c, ...] = x[..., ids[r][c], ...]
      const want: number[] = [];
      const outShape = g.shape;
      const index = new Array(outShape.length).fill(0);
      for (let n = 0; n < g.size; n++) {
        const src = [...index.slice(0, axis), ids[index[axis]][index[axis + 1]], ...index.slice(axis + 2)];
        want.push(data[at(src[0], src[1], src[2], src[3])]);
        for (let a = outShape.length - 1; a >= 0 && ++index[a] === outShape[a]; a--) index[a] = 0;
      }
      expect(Array.from(g.dataSync())).toEqual(want);
      g.dispose();
    }
  });

  it('gathers int32 rows and names an index out of range', () => {
    const ints = tf.tensor2d([1, 2, 3, 4, 5, 6], [3, 2], 'int32');
    expect(Array.from(tf.gather(ints, [2, 0]).dataSync())).toEqual([5, 6, 1, 2]);
    expect(() => tf.gather(ints, [3])).toThrow('GatherV2: the index value 3 is not in [0, 2]');
  });
});

describe('wasm cast kernel', () => {
  it('shares the data of a cast to the same dtype and still converts between dtypes', () => {
    const x = tf.tensor1d([1.5, -2.25, 3]);
    const same = tf.cast(x, 'float32');
    if (tf.getBackend() === 'wasm') expect(same.dataId).toBe(x.dataId); // no copy
    x.dispose(); // the cast keeps the data alive
    expect(Array.from(same.dataSync())).toEqual([1.5, -2.25, 3]);
    expect(Array.from(tf.cast(same, 'int32').dataSync())).toEqual([1, -2, 3]);
    same.dispose();
  });
});
