// The micro-kernel of engine/gemm.ts and its packing loops, written as WebAssembly SIMD and compiled over
// tfjs-backend-wasm's own memory, so they read and write tensors where they are. A 6 x 8 tile of C is computed from
// a packed panel of A (k steps of 6 values) and one of B (k steps of 8): twelve 4-lane accumulators, fifteen of the
// sixteen xmm registers V8 gives wasm on x64, the sixteenth is its scratch. With relaxed SIMD each step is a fused
// multiply-add (vfmadd on x64 with FMA); without it, a multiply and an add, as tfjs's XNNPACK build does.
// Measured against XNNPACK (one thread, same process, [1020, 288] x [288, 32000]): 1583 ms, 697 ms with
// multiply-add, 543 ms fused; a 6 x 8 tile on data in L1 runs at 26-36 GFLOP/s fused, 16-23 unfused.
import * as v8 from 'node:v8';
import { type Code, countedLoop, I32, op, V128, type WasmFunction, wasmModule } from './wasm-asm.ts';

export const MR = 6; // rows of a tile
export const NR = 8; // columns of a tile (two f32x4)

/**
 * tile(pa, pb, pbStep, pc, k, ldc, accumulate): C[6, 8] at byte address pc, rows ldc bytes apart, gets (or with
 * accumulate, adds) the sum over k steps of A's 6 values at pa (then pa + 24, ...) times B's 8 at pb (then
 * pb + pbStep, ...: 32 for a packed panel, B's row stride for B read in place).
 */
function tileFunction(fused: boolean): WasmFunction {
  const [pa, pb, pbStep, pc, k, ldc, accumulate] = [0, 1, 2, 3, 4, 5, 6];
  const c = (r: number, v: number) => 7 + r * 2 + v; // the accumulators, locals 7..18
  const [b0, b1, a, p] = [19, 20, 21, 22];
  const get = op.localGet;
  const rows = Array.from({ length: MR }, (_, r) => r);
  const stepRows = (f: (r: number) => Code[]): Code[] =>
    rows.flatMap((r) => [...f(r), op.localSet(p, op.i32Add(get(p), get(ldc)))]);
  const madd = (r: number, v: number): Code => {
    const bv = get(v === 0 ? b0 : b1);
    const sum = fused
      ? op.f32x4RelaxedMadd(get(a), bv, get(c(r, v)))
      : op.f32x4Add(get(c(r, v)), op.f32x4Mul(get(a), bv));
    return op.localSet(c(r, v), sum);
  };
  const body: Code[] = [
    op.if(
      get(accumulate),
      op.localSet(p, get(pc)),
      ...stepRows((r) => [0, 1].map((v) => op.localSet(c(r, v), op.v128Load(get(p), 16 * v)))),
    ),
    countedLoop(
      k,
      [
        op.localSet(b0, op.v128Load(get(pb))),
        op.localSet(b1, op.v128Load(get(pb), 16)),
        ...rows.flatMap((r) => [op.localSet(a, op.v128Load32Splat(get(pa), 4 * r)), madd(r, 0), madd(r, 1)]),
      ],
      [
        [pa, { bytes: 4 * MR }],
        [pb, pbStep],
      ],
    ),
    op.localSet(p, get(pc)),
    ...stepRows((r) => [0, 1].map((v) => op.v128Store(get(p), get(c(r, v)), 16 * v))),
  ];
  return {
    name: 'tile',
    params: [I32, I32, I32, I32, I32, I32, I32],
    locals: [...Array(2 * MR).fill(V128), V128, V128, V128, I32],
    body: body.flat(),
  };
}

/**
 * tiles(pa, pb, pbStep, pc, k, ldc, accumulate, panels): tile for each of `panels` A panels in a row (k steps of 6
 * values each, from pa), the next panel's tile of C 6 rows below. One call per column of tiles, since calls from JS
 * cost ~50 ns each; tile stays its own function (an outer loop around its body made V8 allocate its registers worse:
 * 20-50% slower).
 */
function tilesFunction(tileIndex: number): WasmFunction {
  const [pa, pb, pbStep, pc, k, ldc, accumulate, panels] = [0, 1, 2, 3, 4, 5, 6, 7];
  const get = op.localGet;
  const call = op.call(tileIndex, ...[pa, pb, pbStep, pc, k, ldc, accumulate].map(get));
  const panelBytes = 4 * MR; // times k: one panel
  return {
    name: 'tiles',
    params: [I32, I32, I32, I32, I32, I32, I32, I32],
    locals: [I32, I32], // bytes per A panel, per 6 rows of C
    body: [
      op.localSet(8, op.i32Mul(get(k), op.i32Const(panelBytes))),
      op.localSet(9, op.i32Mul(get(ldc), op.i32Const(MR))),
      countedLoop(
        panels,
        [call],
        [
          [pa, 8],
          [pc, 9],
        ],
      ),
    ].flat(),
  };
}

/**
 * packR(src, lineStride, stepStride, dst, k): a panel of R lines (A's rows, or B's columns when B is stored
 * transposed) over k steps: dst gets, step by step, the R values at src + r * lineStride, then src + stepStride, ...
 * R loads from R streams and R contiguous stores per step; one call per panel.
 */
function packFunction(lines: number): WasmFunction {
  const [src, lineStride, stepStride, dst, k] = [0, 1, 2, 3, 4];
  const line = (r: number) => 5 + r; // each line's cursor, locals 5 ..
  const get = op.localGet;
  const starts = Array.from({ length: lines }, (_, r) =>
    op.localSet(line(r), r === 0 ? get(src) : op.i32Add(get(line(r - 1)), get(lineStride))),
  );
  const moves = Array.from({ length: lines }, (_, r) => op.f32Store(get(dst), op.f32Load(get(line(r))), 4 * r));
  const advance: [number, number | { bytes: number }][] = [
    ...Array.from({ length: lines }, (_, r): [number, number] => [line(r), stepStride]),
    [dst, { bytes: 4 * lines }],
  ];
  return {
    name: `pack${lines}`,
    params: [I32, I32, I32, I32, I32],
    locals: Array(lines).fill(I32),
    body: [...starts, countedLoop(k, moves, advance)].flat(),
  };
}

/** copy8(src, srcStep, dst, count): count runs of 8 floats from src (srcStep bytes apart) to dst, packed. */
function copy8Function(): WasmFunction {
  const [src, srcStep, dst, count] = [0, 1, 2, 3];
  const moves = [0, 16].map((o) => op.v128Store(op.localGet(dst), op.v128Load(op.localGet(src), o), o));
  return {
    name: 'copy8',
    params: [I32, I32, I32, I32],
    locals: [],
    body: countedLoop(count, moves, [
      [src, srcStep],
      [dst, { bytes: 32 }],
    ]),
  };
}

type Pack = (src: number, lineStride: number, stepStride: number, dst: number, k: number) => void;

/** The module's functions, addresses and strides in bytes. */
export interface GemmKernel {
  tiles(
    pa: number,
    pb: number,
    pbStep: number,
    pc: number,
    k: number,
    ldc: number,
    accumulate: number,
    panels: number,
  ): void;
  /** a panel of A (6 rows) */
  pack6: Pack;
  /** a panel of B stored transposed (8 columns) */
  pack8: Pack;
  copy8(src: number, srcStep: number, dst: number, count: number): void;
}

/** The kernel module's bytes, for a shared (threaded build) or unshared memory, fused or not. */
export function gemmKernelBytes(memory: { shared: boolean }, fused: boolean): Uint8Array<ArrayBuffer> {
  return wasmModule(
    [tileFunction(fused), tilesFunction(0), packFunction(MR), packFunction(NR), copy8Function()],
    memory,
  );
}

/** Whether this Node compiles relaxed SIMD (V8 12 does by default; V8 11, Node 20's, behind the flag set here). */
export function relaxedSimd(): boolean {
  const probe = gemmKernelBytes({ shared: false }, true);
  if (WebAssembly.validate(probe)) return true;
  v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
  return WebAssembly.validate(probe);
}

/** The kernel module compiled over `memory` (tfjs-backend-wasm's heap). */
export function gemmKernel(memory: WebAssembly.Memory, fused = relaxedSimd()): GemmKernel {
  const shared = memory.buffer instanceof SharedArrayBuffer;
  const module = new WebAssembly.Module(gemmKernelBytes({ shared }, fused));
  return new WebAssembly.Instance(module, { env: { mem: memory } }).exports as unknown as GemmKernel;
}
