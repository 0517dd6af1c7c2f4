// A minimal WebAssembly binary writer: one module of exported functions over one imported memory, with the handful of
// instructions engine/gemm-kernel.ts and engine/rows-kernel.ts need. Encodings follow the WebAssembly core spec (binary format, chapter 5) and
// its SIMD and relaxed-SIMD extensions; engine/wasm-asm.test.ts checks them against wabt's assembler.

/** Value types: i32, f32 and v128. */
export const I32 = 0x7f;
export const F32 = 0x7d;
export const V128 = 0x7b;
export type ValType = typeof I32 | typeof F32 | typeof V128;

/** Unsigned LEB128. */
function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

/** Signed LEB128 of a 32-bit integer. */
function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return out;
  }
}

const name = (s: string): number[] => [...uleb(s.length), ...Buffer.from(s, 'utf8')];
const vec = (items: number[][]): number[] => [...uleb(items.length), ...items.flat()];
const section = (id: number, body: number[]): number[] => [id, ...uleb(body.length), ...body];

/** One instruction's bytes (or several in a row). */
export type Code = number[];
const simd = (op: number, ...rest: number[]): Code => [0xfd, ...uleb(op), ...rest];
/** 16 bytes of four 32-bit lanes, little-endian, as written by `set` */
function lanes(set: (view: DataView, lane: number) => void): number[] {
  const view = new DataView(new ArrayBuffer(16));
  for (let lane = 0; lane < 4; lane++) set(view, lane);
  return [...new Uint8Array(view.buffer)];
}
/** memarg: alignment as log2 bytes, then the constant byte offset */
const memarg = (alignLog2: number, offset: number): number[] => [...uleb(alignLog2), ...uleb(offset)];

/** The instructions, named as in the text format (`local.get` is `op.localGet`). */
export const op = {
  block: (...body: Code[]): Code => [0x02, 0x40, ...body.flat(), 0x0b],
  loop: (...body: Code[]): Code => [0x03, 0x40, ...body.flat(), 0x0b],
  /** if without else, producing nothing */
  if: (cond: Code, ...body: Code[]): Code => [...cond, 0x04, 0x40, ...body.flat(), 0x0b],
  ifElse: (cond: Code, then: Code[], otherwise: Code[]): Code => [
    ...cond,
    0x04,
    0x40,
    ...then.flat(),
    0x05,
    ...otherwise.flat(),
    0x0b,
  ],
  br: (depth: number): Code => [0x0c, ...uleb(depth)],
  brIf: (depth: number, cond: Code): Code => [...cond, 0x0d, ...uleb(depth)],
  call: (func: number, ...args: Code[]): Code => [...args.flat(), 0x10, ...uleb(func)],
  localGet: (i: number): Code => [0x20, ...uleb(i)],
  localSet: (i: number, value: Code): Code => [...value, 0x21, ...uleb(i)],
  i32Const: (n: number): Code => [0x41, ...sleb(n)],
  i32Add: (a: Code, b: Code): Code => [...a, ...b, 0x6a],
  i32Sub: (a: Code, b: Code): Code => [...a, ...b, 0x6b],
  i32Mul: (a: Code, b: Code): Code => [...a, ...b, 0x6c],
  i32Eqz: (a: Code): Code => [...a, 0x45],
  i32LtU: (a: Code, b: Code): Code => [...a, ...b, 0x49],
  i32And: (a: Code, b: Code): Code => [...a, ...b, 0x71],
  i32ShrU: (a: Code, b: Code): Code => [...a, ...b, 0x76],
  i32Shl: (a: Code, b: Code): Code => [...a, ...b, 0x74],
  i32Load8U: (addr: Code, offset = 0): Code => [...addr, 0x2d, ...memarg(0, offset)],
  f32Const: (x: number): Code => [0x43, ...lanes((v) => v.setFloat32(0, x, true)).slice(0, 4)],
  f32Add: (a: Code, b: Code): Code => [...a, ...b, 0x92],
  f32Mul: (a: Code, b: Code): Code => [...a, ...b, 0x94],
  f32Div: (a: Code, b: Code): Code => [...a, ...b, 0x95],
  f32Sqrt: (a: Code): Code => [...a, 0x91],
  f32ConvertI32S: (a: Code): Code => [...a, 0xb2],
  f32ReinterpretI32: (a: Code): Code => [...a, 0xbe],
  f32Max: (a: Code, b: Code): Code => [...a, ...b, 0x97],
  f32Load: (addr: Code, offset = 0): Code => [...addr, 0x2a, ...memarg(2, offset)],
  f32Store: (addr: Code, value: Code, offset = 0): Code => [...addr, ...value, 0x38, ...memarg(2, offset)],
  v128Zero: (): Code => simd(0x0c, ...new Array(16).fill(0)),
  /** v128.const f32x4 x x x x */
  f32x4Const: (x: number): Code => simd(0x0c, ...lanes((v, i) => v.setFloat32(4 * i, x, true))),
  /** v128.const i32x4 n n n n */
  i32x4Const: (n: number): Code => simd(0x0c, ...lanes((v, i) => v.setInt32(4 * i, n, true))),
  v128Load: (addr: Code, offset = 0): Code => [...addr, ...simd(0x00, ...memarg(4, offset))],
  v128Load32Splat: (addr: Code, offset = 0): Code => [...addr, ...simd(0x09, ...memarg(2, offset))],
  v128Store: (addr: Code, value: Code, offset = 0): Code => [...addr, ...value, ...simd(0x0b, ...memarg(4, offset))],
  /** 8 bytes into the low lanes (two f32), the high lanes zero */
  v128Load64Zero: (addr: Code, offset = 0): Code => [...addr, ...simd(0x5d, ...memarg(3, offset))],
  /** 8 bytes into 64-bit lane `lane` (0 or 1) of v, its other lane kept */
  v128Load64Lane: (addr: Code, v: Code, lane: number, offset = 0): Code => [
    ...addr,
    ...v,
    ...simd(0x57, ...memarg(3, offset), lane),
  ],
  f32x4Splat: (x: Code): Code => [...x, ...simd(0x13)],
  f32x4ExtractLane: (v: Code, lane: number): Code => [...v, ...simd(0x1f, lane)],
  f32x4Ge: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x46)],
  v128And: (a: Code, b: Code): Code => [...a, ...b, ...simd(0x4e)],
  i32x4Shl: (a: Code, by: Code): Code => [...a, ...by, ...simd(0xab)],
  i32x4Add: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xae)],
  f32x4Add: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe4)],
  f32x4Sub: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe5)],
  f32x4Mul: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe6)],
  f32x4Div: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xe7)],
  /** b < a ? b : a per lane (one minps on x64) */
  f32x4Pmin: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xea)],
  /** b < a ? a : b per lane (one maxps on x64, where f32x4.max's NaN and -0 rules take several instructions) */
  f32x4Pmax: (a: Code, b: Code): Code => [...a, ...b, ...simd(0xeb)],
  /** a * b + c, fused where the machine has FMA (relaxed SIMD) */
  f32x4RelaxedMadd: (a: Code, b: Code, c: Code): Code => [...a, ...b, ...c, ...simd(0x105)],
};

/**
 * A loop of `count` steps (count: an i32 local, counted down to 0) running `body`, then adding to each local of
 * `advance` its step: another local, or a constant number of bytes.
 */
export function countedLoop(count: number, body: Code[], advance: [number, number | { bytes: number }][]): Code {
  const get = op.localGet;
  return op.block(
    op.loop(
      op.brIf(1, op.i32Eqz(get(count))),
      ...body,
      ...advance.map(([p, by]) =>
        op.localSet(p, op.i32Add(get(p), typeof by === 'number' ? get(by) : op.i32Const(by.bytes))),
      ),
      op.localSet(count, op.i32Sub(get(count), op.i32Const(1))),
      op.br(0),
    ),
  );
}

/** Consecutive equal types as [type, count], the form of a function's local declarations. */
function runs(types: ValType[]): [ValType, number][] {
  const out: [ValType, number][] = [];
  for (const t of types) {
    const last = out[out.length - 1];
    if (last && last[0] === t) last[1]++;
    else out.push([t, 1]);
  }
  return out;
}

export interface WasmFunction {
  name: string;
  params: ValType[];
  /** locals after the params */
  locals: ValType[];
  body: Code;
}

/**
 * The bytes of a module that imports its memory as env.mem (shared memory must declare a maximum, here 4 GiB) and
 * exports `functions`, none of which returns a value.
 */
export function wasmModule(functions: WasmFunction[], memory: { shared: boolean }): Uint8Array<ArrayBuffer> {
  // one type per distinct signature, in order of first use
  const signatures = functions.map((f) => f.params.join());
  const distinct = [...new Set(signatures)];
  const types = distinct.map((sig) => {
    const params = functions[signatures.indexOf(sig)].params;
    return [0x60, ...vec(params.map((t) => [t])), 0x00];
  });
  const limits = memory.shared ? [0x03, ...uleb(1), ...uleb(65536)] : [0x00, ...uleb(1)];
  const imports = vec([[...name('env'), ...name('mem'), 0x02, ...limits]]);
  const exports = vec(functions.map((f, i) => [...name(f.name), 0x00, ...uleb(i)]));
  const bodies = functions.map((f) => {
    const locals = vec(runs(f.locals).map(([t, n]) => [...uleb(n), t]));
    const body = [...locals, ...f.body, 0x0b];
    return [...uleb(body.length), ...body];
  });
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(types)),
    ...section(2, imports),
    ...section(3, vec(signatures.map((sig) => uleb(distinct.indexOf(sig))))),
    ...section(7, exports),
    ...section(10, vec(bodies)),
  ]);
}
