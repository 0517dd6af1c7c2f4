// engine/wasm-asm.ts writes the same bytes as wabt (the WebAssembly Binary Toolkit's assembler) for the same program,
// and the GEMM and rows kernel modules it writes are ones wabt reads back and V8 compiles.
import wabtInit from 'wabt';
import { describe, expect, test } from 'vitest';
import { gemmKernelBytes, relaxedSimd } from './gemm-kernel.ts';
import { rowsKernelBytes } from './rows-kernel.ts';
import { F32, I32, op, V128, wasmModule } from './wasm-asm.ts';

const FEATURES = { simd: true, relaxed_simd: true, threads: true };

// Every instruction of the writer, in three functions of one signature and one of another.
const WAT = `(module
  (import "env" "mem" (memory $m 1 65536 shared))
  (func (export "sum") (param $p i32) (param $n i32) (param $acc i32) (local $a v128) (local $b v128) (local $t i32)
    (if (local.get $acc) (then (local.set $a (v128.load offset=16 (local.get $p)))))
    (if (local.get $n) (then (local.set $b (v128.const i32x4 0 0 0 0))) (else (local.set $t (i32.const 3))))
    (block $out (loop $next
      (br_if $out (i32.eqz (local.get $n)))
      (local.set $b (v128.load32_splat offset=4 (local.get $p)))
      (local.set $a (f32x4.add (local.get $a) (f32x4.mul (local.get $b) (local.get $b))))
      (local.set $a (f32x4.relaxed_madd (local.get $a) (local.get $b) (local.get $a)))
      (local.set $p (i32.add (local.get $p) (i32.const 200)))
      (local.set $n (i32.sub (local.get $n) (i32.const -70)))
      (br $next)))
    (v128.store offset=32 (local.get $p) (local.get $a)))
  (func (export "copy") (param $s i32) (param $d i32) (param $k i32)
    (f32.store offset=8 (local.get $d) (f32.load (local.get $s))))
  (func (export "one") (param $x i32))
  (func (export "lanes") (param $p i32) (param $n i32) (param $q i32) (local $v v128) (local $s f32)
    (local.set $n (i32.shr_u (i32.and (local.get $n) (i32.const -4)) (i32.const 2)))
    (local.set $n (i32.shl (i32.load8_u offset=3 (local.get $p)) (i32.lt_u (local.get $n) (i32.const 3))))
    (f32.store (local.get $p) (f32.mul (f32.load (local.get $q)) (local.get $s)))
    (local.set $s (f32.max (f32.div (f32.add (f32.const 1.5) (local.get $s)) (f32.const -0.25)) (f32.const 3)))
    (local.set $s (f32.sqrt (f32.add (f32.convert_i32_s (local.get $n)) (f32.reinterpret_i32 (local.get $q)))))
    (local.set $v (f32x4.pmax (f32x4.sub (v128.const f32x4 0.5 0.5 0.5 0.5) (f32x4.splat (local.get $s))) (local.get $v)))
    (local.set $v (f32x4.pmin (f32x4.div (local.get $v) (local.get $v)) (local.get $v)))
    (local.set $v (i32x4.shl (i32x4.add (local.get $v) (v128.const i32x4 -7 -7 -7 -7)) (i32.const 23)))
    (local.set $v (v128.and (local.get $v) (f32x4.ge (local.get $v) (local.get $v))))
    (local.set $v (v128.load64_lane offset=8 1 (local.get $p) (v128.load64_zero offset=16 (local.get $q))))
    (f32.store (local.get $p) (f32x4.extract_lane 3 (local.get $v)))))`;

function ours(): Uint8Array {
  const get = op.localGet;
  const [p, n, acc, a, b] = [0, 1, 2, 3, 4];
  return wasmModule(
    [
      {
        name: 'sum',
        params: [I32, I32, I32],
        locals: [V128, V128, I32],
        body: [
          op.if(get(acc), op.localSet(a, op.v128Load(get(p), 16))),
          op.ifElse(get(n), [op.localSet(b, op.v128Zero())], [op.localSet(5, op.i32Const(3))]),
          op.block(
            op.loop(
              op.brIf(1, op.i32Eqz(get(n))),
              op.localSet(b, op.v128Load32Splat(get(p), 4)),
              op.localSet(a, op.f32x4Add(get(a), op.f32x4Mul(get(b), get(b)))),
              op.localSet(a, op.f32x4RelaxedMadd(get(a), get(b), get(a))),
              op.localSet(p, op.i32Add(get(p), op.i32Const(200))),
              op.localSet(n, op.i32Sub(get(n), op.i32Const(-70))),
              op.br(0),
            ),
          ),
          op.v128Store(get(p), get(a), 32),
        ].flat(),
      },
      { name: 'copy', params: [I32, I32, I32], locals: [], body: op.f32Store(get(1), op.f32Load(get(0)), 8) },
      { name: 'one', params: [I32], locals: [], body: [] },
      {
        name: 'lanes',
        params: [I32, I32, I32],
        locals: [V128, F32],
        body: [
          op.localSet(n, op.i32ShrU(op.i32And(get(n), op.i32Const(-4)), op.i32Const(2))),
          op.localSet(n, op.i32Shl(op.i32Load8U(get(p), 3), op.i32LtU(get(n), op.i32Const(3)))),
          op.f32Store(get(p), op.f32Mul(op.f32Load(get(2)), get(4))),
          op.localSet(4, op.f32Max(op.f32Div(op.f32Add(op.f32Const(1.5), get(4)), op.f32Const(-0.25)), op.f32Const(3))),
          op.localSet(4, op.f32Sqrt(op.f32Add(op.f32ConvertI32S(get(n)), op.f32ReinterpretI32(get(2))))),
          op.localSet(3, op.f32x4Pmax(op.f32x4Sub(op.f32x4Const(0.5), op.f32x4Splat(get(4))), get(3))),
          op.localSet(3, op.f32x4Pmin(op.f32x4Div(get(3), get(3)), get(3))),
          op.localSet(3, op.i32x4Shl(op.i32x4Add(get(3), op.i32x4Const(-7)), op.i32Const(23))),
          op.localSet(3, op.v128And(get(3), op.f32x4Ge(get(3), get(3)))),
          op.localSet(3, op.v128Load64Lane(get(p), op.v128Load64Zero(get(2), 16), 1, 8)),
          op.f32Store(get(p), op.f32x4ExtractLane(get(3), 3)),
        ].flat(),
      },
    ],
    { shared: true },
  );
}

describe('wasm-asm', () => {
  test("writes wabt's bytes for a program with every instruction it has", async () => {
    const wabt = await wabtInit();
    const theirs = wabt.parseWat('test.wat', WAT, FEATURES).toBinary({}).buffer;
    expect(Buffer.from(ours())).toEqual(Buffer.from(theirs));
  });

  test('the GEMM kernel module, shared or not and fused or not, reads back in wabt and compiles in V8', async () => {
    const wabt = await wabtInit();
    relaxedSimd(); // sets V8's relaxed-SIMD flag where it needs one
    for (const shared of [false, true])
      for (const fused of [false, true]) {
        const bytes = gemmKernelBytes({ shared }, fused);
        const text = wabt.readWasm(bytes, FEATURES).toText({});
        expect(text).toContain('(export "tiles"');
        expect(text.includes('f32x4.relaxed_madd')).toBe(fused);
        expect(WebAssembly.validate(bytes)).toBe(true);
      }
  });

  test('the rows kernel module, shared or not, reads back in wabt and compiles in V8', async () => {
    const wabt = await wabtInit();
    for (const shared of [false, true]) {
      const bytes = rowsKernelBytes({ shared });
      expect(wabt.readWasm(bytes, FEATURES).toText({})).toContain('(export "maskedSoftmax"');
      expect(WebAssembly.validate(bytes)).toBe(true);
    }
  });
});
