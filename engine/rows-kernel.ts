// ft's kernels other than the GEMM's, over float32 matrices in tfjs-backend-wasm's heap, written as WebAssembly SIMD
// (by engine/wasm-asm.ts) like the GEMM kernel and run on the same pool: the row-wise ops of a training step
// (softmaxes, cross-entropy, RMSNorm, SwiGLU), whose [tokens, vocab] and [pairs, queries, keys] tensors tfjs would
// walk once per element-wise kernel and on one thread; products of fewer than 6 rows, against float weights or
// straight from 4-bit codes; 4-bit codes unpacked, and their double-quantized block scales resolved. Each row is
// read in 4-lane vectors, then its last cols % 4 values one at a time (splat into all lanes).
// exp is Cody and Waite's range reduction x = n ln2 + r, |r| <= ln2 / 2, then a degree-7 polynomial in r (Cephes'
// expf coefficients) times 2^n built in the exponent bits; inputs below -87.33 (where 2^n would leave the normal
// range) give 0. Its error is ~2 ulp of float32 (engine/rows-kernel.test.ts bounds it against float64).
import { type Code, countedLoop, F32, I32, op, V128, type ValType, type WasmFunction, wasmModule } from './wasm-asm.ts';

const get = op.localGet;
const set = op.localSet;

/** Locals of one function being written: its params first, then each local as it is asked for. */
class Locals {
  readonly types: ValType[] = [];
  constructor(private readonly params: number) {}
  add(type: ValType): number {
    this.types.push(type);
    return this.params + this.types.length - 1;
  }
}

/** Below this, exp's 2^n is not a normal float32; those inputs give 0. */
const EXP_MIN = -87.33654;
/** 1.5 * 2^23: y + ROUNDER rounds y (|y| < 2^22) to an integer held in the float's low mantissa bits. */
const ROUNDER = 12582912;
/** Cephes expf's polynomial, highest power first. */
const EXP_POLY = [1.98756915e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1];

/**
 * The constants exp4 reads, each a v128 local set once per call: V8 builds a v128.const with several instructions
 * each time it runs, which in the loop cost more than exp's arithmetic.
 */
interface ExpConstants {
  log2e: number;
  rounder: number;
  ln2Hi: number;
  ln2Lo: number;
  poly: number[];
  one: number;
  /** 127 - ROUNDER's bits: the float's bits plus this are n + 127, the exponent field of 2^n */
  bias: number;
  min: number;
}

function expConstants(L: Locals): { k: ExpConstants; init: Code[] } {
  const k: ExpConstants = {
    log2e: L.add(V128),
    rounder: L.add(V128),
    ln2Hi: L.add(V128),
    ln2Lo: L.add(V128),
    poly: EXP_POLY.map(() => L.add(V128)),
    one: L.add(V128),
    bias: L.add(V128),
    min: L.add(V128),
  };
  const f = op.f32x4Const;
  const init = [
    set(k.log2e, f(Math.LOG2E)),
    set(k.rounder, f(ROUNDER)),
    // ln2 in two parts: 0.693359375 has few bits, so n times it is exact
    set(k.ln2Hi, f(0.693359375)),
    set(k.ln2Lo, f(-2.1219444e-4)),
    ...EXP_POLY.map((c, i) => set(k.poly[i], f(c))),
    set(k.one, f(1)),
    set(k.bias, op.i32x4Const(127 - 0x4b400000)),
    set(k.min, f(EXP_MIN)),
  ];
  return { k, init };
}

/** exp of each lane of the v128 `x` into local `out` (v128 locals x, t, r as scratch). */
function exp4(x: Code, out: number, s: { x: number; t: number; r: number; k: ExpConstants }): Code[] {
  const { k } = s;
  const [add, sub, mul] = [op.f32x4Add, op.f32x4Sub, op.f32x4Mul];
  let p: Code = get(k.poly[0]);
  for (const c of k.poly.slice(1)) p = add(mul(p, get(s.r)), get(c));
  const n = sub(get(s.t), get(k.rounder)); // round(x log2 e), as a float
  return [
    set(s.x, x),
    set(s.t, add(mul(get(s.x), get(k.log2e)), get(k.rounder))),
    set(s.r, sub(sub(get(s.x), mul(n, get(k.ln2Hi))), mul(n, get(k.ln2Lo)))),
    // e^r = 1 + r + r^2 p(r), times 2^n from n's bits
    set(out, add(add(mul(mul(p, get(s.r)), get(s.r)), get(s.r)), get(k.one))),
    set(out, mul(get(out), op.i32x4Shl(op.i32x4Add(get(s.t), get(k.bias)), op.i32Const(23)))),
    set(out, op.v128And(get(out), op.f32x4Ge(get(s.x), get(k.min)))),
  ];
}

/** How a pass reads and writes one step of a row: a vector of 4 values, or one value splat into all lanes. */
interface Step {
  load(cursor: number): Code;
  store(cursor: number, value: Code): Code;
  /** the accumulator this step adds into (sums must not count a splat value four times) */
  acc: number;
}

/** Per-row state every function shares: its vector and tail counts and the scratch locals of exp4. */
interface RowShape {
  vecs: number;
  tail: number;
  count: number;
  exp: { x: number; t: number; r: number; k: ExpConstants };
  accVec: number;
  accTail: number;
  /** the function's cols param */
  cols: number;
}

/** vecs = count / 4 and tail = count % 4: the steps of 4 lanes, then of one, that cover `count` values. */
const byFours = (vecs: number, tail: number, count: number): Code[] => [
  set(vecs, op.i32ShrU(get(count), op.i32Const(2))),
  set(tail, op.i32And(get(count), op.i32Const(3))),
];

function rowShape(L: Locals, cols: number): { shape: RowShape; init: Code[] } {
  const constants = expConstants(L);
  const shape: RowShape = {
    vecs: L.add(I32),
    tail: L.add(I32),
    count: L.add(I32),
    exp: { x: L.add(V128), t: L.add(V128), r: L.add(V128), k: constants.k },
    accVec: L.add(V128),
    accTail: L.add(V128),
    cols,
  };
  const init = [...constants.init, ...byFours(shape.vecs, shape.tail, cols)];
  return { shape, init };
}

const VEC: Omit<Step, 'acc'> = {
  load: (cursor) => op.v128Load(get(cursor)),
  store: (cursor, value) => op.v128Store(get(cursor), value),
};
const ONE: Omit<Step, 'acc'> = {
  load: (cursor) => op.v128Load32Splat(get(cursor)),
  store: (cursor, value) => op.f32Store(get(cursor), op.f32x4ExtractLane(value, 0)),
};

/**
 * One pass over a row: each of `cursors` ([cursor, start] locals) starts at its start and moves 16 bytes per vector
 * step, then 4 per tail step; `body` is one step. The accumulators start at `init`.
 */
function pass(s: RowShape, cursors: [number, number][], init: Code, body: (step: Step) => Code[]): Code[] {
  const steps = (count: number, step: Step, bytes: number) => [
    set(s.count, get(count)),
    countedLoop(
      s.count,
      body(step),
      cursors.map(([cursor]): [number, { bytes: number }] => [cursor, { bytes }]),
    ),
  ];
  return [
    ...cursors.map(([cursor, start]) => set(cursor, get(start))),
    set(s.accVec, init),
    set(s.accTail, init),
    ...steps(s.vecs, { ...VEC, acc: s.accVec }, 16),
    ...steps(s.tail, { ...ONE, acc: s.accTail }, 4),
  ];
}

const lane = (v: number, i: number): Code => op.f32x4ExtractLane(get(v), i);
/** The largest lane of accVec and lane 0 of accTail, as f32. */
const rowMax = (s: RowShape): Code =>
  op.f32Max(
    op.f32Max(op.f32Max(lane(s.accVec, 0), lane(s.accVec, 1)), op.f32Max(lane(s.accVec, 2), lane(s.accVec, 3))),
    lane(s.accTail, 0),
  );
/**
 * The sum of v128 local vec's lanes, (0 + 1) + (2 + 3), plus lane 0 of tail, as f32: the one order every row sum and
 * dot product here ends in, so the few-row products from float weights and from 4-bit codes give the same bits.
 */
const laneSum = (vec: number, tail: number): Code =>
  op.f32Add(op.f32Add(op.f32Add(lane(vec, 0), lane(vec, 1)), op.f32Add(lane(vec, 2), lane(vec, 3))), lane(tail, 0));
/** The sum of accVec's lanes and lane 0 of accTail, as f32. */
const rowSum = (s: RowShape): Code => laneSum(s.accVec, s.accTail);

/** A function of the module before it is named (WRITERS names it). */
type RowsFunction = Omit<WasmFunction, 'name'>;

/**
 * A function over `rows` rows: params (matrices' addresses..., extras..., rows, cols). Each matrix moves a row on per
 * row; each extra param by its step in `extraSteps` (bytes; 0 for one that stays, a row vector or a value).
 */
function rowsFunction(
  matrices: number,
  extraSteps: number[],
  row: (L: Locals, s: RowShape, m: number[], p: number[]) => Code[],
): RowsFunction {
  const params = matrices + extraSteps.length + 2;
  const [rows, cols] = [params - 2, params - 1];
  const L = new Locals(params);
  const { shape, init } = rowShape(L, cols);
  const rowBytes = L.add(I32);
  const m = Array.from({ length: matrices }, (_, i) => i);
  const p = extraSteps.map((_, i) => matrices + i);
  return {
    params: Array(params).fill(I32),
    locals: L.types,
    body: [
      ...init,
      set(rowBytes, op.i32Mul(get(cols), op.i32Const(4))),
      countedLoop(rows, row(L, shape, m, p), [
        ...m.map((i): [number, number] => [i, rowBytes]),
        ...p
          .filter((_, j) => extraSteps[j] > 0)
          .map((i): [number, { bytes: number }] => [i, { bytes: extraSteps[i - matrices] }]),
      ]),
    ].flat(),
  };
}

const NEG_INF = op.f32x4Const(-Infinity);
const ZERO = op.v128Zero();

/** softmax(x, y, rows, cols) or, masked, softmax(x, mask, y, rows, cols): each row of y = softmax(x (+ mask)). */
function softmaxFunction(masked: boolean): RowsFunction {
  return rowsFunction(masked ? 3 : 2, [], (L, s, m) => {
    const [x, mask, y] = masked ? m : [m[0], -1, m[1]];
    const [cx, cm, cy, top, e] = [L.add(I32), L.add(I32), L.add(I32), L.add(V128), L.add(V128)];
    const inputs: [number, number][] = masked
      ? [
          [cx, x],
          [cm, mask],
        ]
      : [[cx, x]];
    const score = (step: Step) => (masked ? op.f32x4Add(step.load(cx), step.load(cm)) : step.load(cx));
    return [
      ...pass(s, inputs, NEG_INF, (step) => [set(step.acc, op.f32x4Pmax(get(step.acc), score(step)))]),
      set(top, op.f32x4Splat(rowMax(s))),
      ...pass(s, [...inputs, [cy, y]], ZERO, (step) => [
        ...exp4(op.f32x4Sub(score(step), get(top)), e, s.exp),
        step.store(cy, get(e)),
        set(step.acc, op.f32x4Add(get(step.acc), get(e))),
      ]),
      set(top, op.f32x4Splat(op.f32Div(op.f32Const(1), rowSum(s)))),
      ...pass(s, [[cy, y]], ZERO, (step) => [step.store(cy, op.f32x4Mul(step.load(cy), get(top)))]),
    ];
  });
}

/** softmaxGrad(p, dp, dx, rows, cols): dx = p (dp - sum(dp p)) per row, softmax's backward pass. */
function softmaxGradFunction(): RowsFunction {
  return rowsFunction(3, [], (L, s, [p, dp, dx]) => {
    const [cp, cd, cx, dot] = [L.add(I32), L.add(I32), L.add(I32), L.add(V128)];
    return [
      ...pass(
        s,
        [
          [cp, p],
          [cd, dp],
        ],
        ZERO,
        (step) => [set(step.acc, op.f32x4Add(get(step.acc), op.f32x4Mul(step.load(cp), step.load(cd))))],
      ),
      set(dot, op.f32x4Splat(rowSum(s))),
      ...pass(
        s,
        [
          [cp, p],
          [cd, dp],
          [cx, dx],
        ],
        ZERO,
        (step) => [step.store(cx, op.f32x4Mul(step.load(cp), op.f32x4Sub(step.load(cd), get(dot))))],
      ),
    ];
  });
}

/** maxSumExp(z, out, rows, cols): out[2r] = max of row r, out[2r + 1] = sum of exp(z - that max) over the row. */
function maxSumExpFunction(): RowsFunction {
  return rowsFunction(1, [8], (L, s, [z], [out]) => {
    const [cz, top, e] = [L.add(I32), L.add(V128), L.add(V128)];
    return [
      ...pass(s, [[cz, z]], NEG_INF, (step) => [set(step.acc, op.f32x4Pmax(get(step.acc), step.load(cz)))]),
      op.f32Store(get(out), rowMax(s)),
      set(top, op.f32x4Splat(rowMax(s))),
      ...pass(s, [[cz, z]], ZERO, (step) => [
        ...exp4(op.f32x4Sub(step.load(cz), get(top)), e, s.exp),
        set(step.acc, op.f32x4Add(get(step.acc), get(e))),
      ]),
      op.f32Store(get(out), rowSum(s), 4),
    ];
  });
}

/** expShifted(z, g, shiftScale, rows, cols): g = exp(z - shiftScale[2r]) * shiftScale[2r + 1] on row r. */
function expShiftedFunction(): RowsFunction {
  return rowsFunction(2, [8], (L, s, [z, g], [shiftScale]) => {
    const [cz, cg, shift, scale, e] = [L.add(I32), L.add(I32), L.add(V128), L.add(V128), L.add(V128)];
    return [
      set(shift, op.v128Load32Splat(get(shiftScale))),
      set(scale, op.v128Load32Splat(get(shiftScale), 4)),
      ...pass(
        s,
        [
          [cz, z],
          [cg, g],
        ],
        ZERO,
        (step) => [
          ...exp4(op.f32x4Sub(step.load(cz), get(shift)), e, s.exp),
          step.store(cg, op.f32x4Mul(get(e), get(scale))),
        ],
      ),
    ];
  });
}

/** The mean of the row's squares (accumulated in accVec / accTail), as f32: sum / cols. */
const rowMean = (s: RowShape): Code => op.f32Div(rowSum(s), op.f32ConvertI32S(get(s.cols)));

/**
 * rmsNorm(x, y, w, r, epsBits, rows, cols): y = x r w per row, r = 1 / sqrt(mean(x^2) + eps) stored at r (one f32 per
 * row) for the backward pass; w a row vector [cols], eps given as its float32 bits.
 */
function rmsNormFunction(): RowsFunction {
  return rowsFunction(2, [0, 4, 0], (L, s, [x, y], [w, r, epsBits]) => {
    const [cx, cy, cw, scale] = [L.add(I32), L.add(I32), L.add(I32), L.add(V128)];
    return [
      ...pass(s, [[cx, x]], ZERO, (step) => [
        set(step.acc, op.f32x4Add(get(step.acc), op.f32x4Mul(step.load(cx), step.load(cx)))),
      ]),
      op.f32Store(
        get(r),
        op.f32Div(op.f32Const(1), op.f32Sqrt(op.f32Add(rowMean(s), op.f32ReinterpretI32(get(epsBits))))),
      ),
      set(scale, op.v128Load32Splat(get(r))),
      ...pass(
        s,
        [
          [cx, x],
          [cy, y],
          [cw, w],
        ],
        ZERO,
        (step) => [step.store(cy, op.f32x4Mul(op.f32x4Mul(step.load(cx), get(scale)), step.load(cw)))],
      ),
    ];
  });
}

/**
 * rmsNormGrad(x, dy, dx, w, r, rows, cols): rmsNorm's backward pass in x, with r as its forward pass stored it:
 * dx = r (dy w) - x r^3 mean(dy w x) per row.
 */
function rmsNormGradFunction(): RowsFunction {
  return rowsFunction(3, [0, 4], (L, s, [x, dy, dx], [w, r]) => {
    const [cx, cd, co, cw, rr, coef] = [L.add(I32), L.add(I32), L.add(I32), L.add(I32), L.add(V128), L.add(V128)];
    const g = (step: Step) => op.f32x4Mul(step.load(cd), step.load(cw)); // dy w
    return [
      ...pass(
        s,
        [
          [cx, x],
          [cd, dy],
          [cw, w],
        ],
        ZERO,
        (step) => [set(step.acc, op.f32x4Add(get(step.acc), op.f32x4Mul(g(step), step.load(cx))))],
      ),
      set(rr, op.v128Load32Splat(get(r))),
      set(coef, op.f32x4Mul(op.f32x4Mul(op.f32x4Mul(get(rr), get(rr)), get(rr)), op.f32x4Splat(rowMean(s)))),
      ...pass(
        s,
        [
          [cx, x],
          [cd, dy],
          [co, dx],
          [cw, w],
        ],
        ZERO,
        (step) => [step.store(co, op.f32x4Sub(op.f32x4Mul(get(rr), g(step)), op.f32x4Mul(step.load(cx), get(coef))))],
      ),
    ];
  });
}

/** exp(-g) is taken of at most this (e^88 is a normal float32): for g below -88, sigmoid(g) is ~0 either way. */
const NEG_GATE_MAX = 88;

/** sigmoid(g) of the v128 local g into local `out`: 1 / (1 + exp(-g)), with exp4's scratch. */
function sigmoid4(g: number, out: number, limit: number, s: RowShape): Code[] {
  return [
    ...exp4(op.f32x4Pmin(op.f32x4Sub(op.v128Zero(), get(g)), get(limit)), out, s.exp),
    set(out, op.f32x4Div(get(s.exp.k.one), op.f32x4Add(get(s.exp.k.one), get(out)))),
  ];
}

/**
 * One pass over the rows of `matrices` (g first) with g's value (gv) and sigmoid(g) (sg) at hand in each step;
 * `body` gets the step, each matrix's cursor, and those two locals.
 */
function gatedPass(
  L: Locals,
  s: RowShape,
  matrices: number[],
  body: (step: Step, cursors: number[], gv: number, sg: number) => Code[],
): Code[] {
  const cursors = matrices.map(() => L.add(I32));
  const [limit, gv, sg] = [L.add(V128), L.add(V128), L.add(V128)];
  const starts = matrices.map((m, i): [number, number] => [cursors[i], m]);
  return [
    set(limit, op.f32x4Const(NEG_GATE_MAX)),
    ...pass(s, starts, ZERO, (step) => [
      set(gv, step.load(cursors[0])),
      ...sigmoid4(gv, sg, limit, s),
      ...body(step, cursors, gv, sg),
    ]),
  ];
}

/** swiglu(g, u, y, rows, cols): y = silu(g) u = g sigmoid(g) u, the SwiGLU MLP's gating. */
function swigluFunction(): RowsFunction {
  return rowsFunction(3, [], (L, s, matrices) =>
    gatedPass(L, s, matrices, (step, [, cu, cy], gv, sg) => [
      step.store(cy, op.f32x4Mul(op.f32x4Mul(get(gv), get(sg)), step.load(cu))),
    ]),
  );
}

/**
 * swigluGrad(g, u, dy, dg, du, rows, cols): swiglu's backward pass, with s = sigmoid(g) recomputed:
 * du = dy g s, dg = dy u s (1 + g (1 - s)).
 */
function swigluGradFunction(): RowsFunction {
  return rowsFunction(5, [], (L, s, matrices) => {
    const d = L.add(V128);
    const { one } = s.exp.k;
    return gatedPass(L, s, matrices, (step, [, cu, cd, cdg, cdu], gv, sg) => [
      set(d, op.f32x4Mul(step.load(cd), get(sg))), // dy s
      step.store(cdu, op.f32x4Mul(get(d), get(gv))),
      step.store(
        cdg,
        op.f32x4Mul(
          op.f32x4Mul(get(d), step.load(cu)),
          op.f32x4Add(get(one), op.f32x4Mul(get(gv), op.f32x4Sub(get(one), get(sg)))),
        ),
      ),
    ]);
  });
}

/** Most rows of A the few-row products take (engine/wasm-matmul.ts sends them fewer than the GEMM's 6). */
export const FEW_ROWS_MAX = 5;

/** The address of row i of a matrix at local `base` with rows local `stride` bytes apart. */
const rowAt = (base: number, stride: number, i: number): Code =>
  i === 0 ? get(base) : op.i32Add(get(base), op.i32Mul(get(stride), op.i32Const(i)));

/**
 * fewRows{m}(pa, lda, pb, ldb, pc, ldc, k, n): C [m, n] = A [m, k] B [k, n] for B row-major (rows ldb bytes apart),
 * A row-major (rows lda bytes apart), C rows ldc bytes apart; m = 1 .. 5 fixed per function. C is zeroed, then each
 * of B's rows in turn, read once and in order, is added into C's m rows times their A value (the last n % 4
 * columns one at a time, splat). Walking down B's columns instead ran 3-4x slower than XNNPACK: rows 3 KiB apart
 * fell into 4 of L1's 64 sets.
 */
function fewRowsFunction(m: number): RowsFunction {
  const [pa, lda, pb, ldb, pc, ldc, k, n] = [0, 1, 2, 3, 4, 5, 6, 7];
  const L = new Locals(8);
  const [vecs, tail, count, cb] = [L.add(I32), L.add(I32), L.add(I32), L.add(I32)];
  const cc = Array.from({ length: m }, () => L.add(I32));
  const a = Array.from({ length: m }, () => L.add(V128));
  const b = L.add(V128);
  const rows = Array.from({ length: m }, (_, i) => i);
  const startRows = rows.map((i) => set(cc[i], rowAt(pc, ldc, i)));
  /** over C's columns (vectors of 4, then one at a time): `step` with B's cursor cb and C's cursors cc */
  const overColumns = (step: (wide: boolean) => Code[]): Code[] =>
    [true, false].flatMap((wide) => [
      set(count, get(wide ? vecs : tail)),
      countedLoop(
        count,
        step(wide),
        [cb, ...cc].map((c): [number, { bytes: number }] => [c, { bytes: wide ? 16 : 4 }]),
      ),
    ]);
  const load = (wide: boolean, at: Code) => (wide ? op.v128Load(at) : op.v128Load32Splat(at));
  const store = (wide: boolean, at: Code, v: Code) =>
    wide ? op.v128Store(at, v) : op.f32Store(at, op.f32x4ExtractLane(v, 0));
  return {
    params: Array(8).fill(I32),
    locals: L.types,
    body: [
      ...byFours(vecs, tail, n),
      ...startRows,
      ...overColumns((wide) => rows.map((i) => store(wide, get(cc[i]), op.v128Zero()))),
      countedLoop(
        k,
        [
          ...rows.map((i) => set(a[i], op.v128Load32Splat(rowAt(pa, lda, i)))),
          set(cb, get(pb)),
          ...startRows,
          ...overColumns((wide) => [
            set(b, load(wide, get(cb))),
            ...rows.map((i) =>
              store(wide, get(cc[i]), op.f32x4Add(load(wide, get(cc[i])), op.f32x4Mul(get(a[i]), get(b)))),
            ),
          ]),
        ],
        [
          [pa, { bytes: 4 }],
          [pb, ldb],
        ],
      ),
    ].flat(),
  };
}

/**
 * fewRowsT{m}(pa, lda, pw, ldw, pc, ldc, k, n): C [m, n] = A [m, k] W^T for W [n, k] row-major (rows ldw bytes
 * apart): each value of C a dot product of two contiguous rows, 4 lanes at a time, then k % 4 steps one at a time.
 */
function fewRowsTFunction(m: number): RowsFunction {
  const [pa, lda, pw, ldw, pc, ldc, k, n] = [0, 1, 2, 3, 4, 5, 6, 7];
  const L = new Locals(8);
  const [vecs, tail, steps, ca, cw, cc] = [L.add(I32), L.add(I32), L.add(I32), L.add(I32), L.add(I32), L.add(I32)];
  const accVec = Array.from({ length: m }, () => L.add(V128));
  const accTail = Array.from({ length: m }, () => L.add(V128));
  const w = L.add(V128);
  const rows = Array.from({ length: m }, (_, i) => i);
  const dot = (wide: boolean, count: number): Code[] => {
    const load = (at: Code) => (wide ? op.v128Load(at) : op.v128Load32Splat(at));
    const into = wide ? accVec : accTail;
    return [
      set(steps, get(count)),
      countedLoop(
        steps,
        [
          set(w, load(get(cw))),
          ...rows.map((i) => set(into[i], op.f32x4Add(get(into[i]), op.f32x4Mul(load(rowAt(ca, lda, i)), get(w))))),
        ],
        [
          [ca, { bytes: wide ? 16 : 4 }],
          [cw, { bytes: wide ? 16 : 4 }],
        ],
      ),
    ];
  };
  return {
    params: Array(8).fill(I32),
    locals: L.types,
    body: [
      ...byFours(vecs, tail, k),
      set(cc, get(pc)),
      countedLoop(
        n,
        [
          ...rows.flatMap((i) => [set(accVec[i], op.v128Zero()), set(accTail[i], op.v128Zero())]),
          set(ca, get(pa)),
          set(cw, get(pw)),
          ...dot(true, vecs),
          ...dot(false, tail),
          ...rows.map((i) => op.f32Store(rowAt(cc, ldc, i), laneSum(accVec[i], accTail[i]))),
          set(pw, op.i32Add(get(pw), get(ldw))),
          set(cc, op.i32Add(get(cc), op.i32Const(4))),
        ],
        [],
      ),
    ].flat(),
  };
}

/** Where one walk over a 4-bit weight's rows stands: its code byte, block scale (address and value) and C column. */
interface FourBitWalk {
  codes: number;
  scales: number;
  /** values left in the current block */
  left: number;
  /** C's column, as a byte address in C's first row */
  pc: number;
  scale: number;
  w: number;
  acc: number[];
}

/**
 * fourBitT{m}(pa, lda, pairs, ldc, k, blockSize, rows, codes, scales, left, pc, codes2, scales2, left2): C [m, rows]
 * = A [m, k] W^T for `rows` rows of W [., k] held as 4-bit codes (two per byte, row after row; a weight's values in
 * blocks of blockSize, each with its f32 scale): fewRowsT{m} with each 4-value vector of W unpacked in registers as
 * it is read, never written out. Each vector's two bytes pick their pairs from `pairs` (unpack4's table), times the
 * block's scale. The rows go as two walks side by side, so that two rows' sums are in flight at once: the first
 * from (codes, scales, left) into C column pc, ceil(rows / 2) rows, the second from (codes2, scales2, left2), the
 * rest. `scales` points at the scale of the block holding a walk's first value, `left` counts that block's values
 * from there. k and blockSize are multiples of 4, so no vector straddles two blocks. The same f32 values, summed in
 * fewRowsT{m}'s order: the same bits as unpack4, then fewRowsT{m}.
 */
function fourBitTFunction(m: number): RowsFunction {
  const [pa, lda, pairs, ldc, k, blockSize, rows] = [0, 1, 2, 3, 4, 5, 6];
  const L = new Locals(14);
  const walk = (codes: number): FourBitWalk => ({
    codes,
    scales: codes + 1,
    left: codes + 2,
    pc: codes === 7 ? 10 : L.add(I32),
    scale: L.add(V128),
    w: L.add(V128),
    acc: Array.from({ length: m }, () => L.add(V128)),
  });
  const [first, second] = [walk(7), walk(11)]; // params 7-10 and 11-13
  const [steps, ca, paired, zero] = [L.add(I32), L.add(I32), L.add(I32), L.add(V128)];
  const aRows = Array.from({ length: m }, (_, i) => i);
  const pairAt = (t: FourBitWalk, offset: number): Code =>
    op.i32Add(get(pairs), op.i32Shl(op.i32Load8U(get(t.codes), offset), op.i32Const(3)));
  const loadScale = (t: FourBitWalk) => set(t.scale, op.f32x4Splat(op.f32Load(get(t.scales))));
  /** one row of W for each walk of `walks`, all in one pass over A's columns */
  const rowsOf = (walks: FourBitWalk[]): Code[] => [
    ...walks.flatMap((t) => aRows.map((i) => set(t.acc[i], op.v128Zero()))),
    set(ca, get(pa)),
    set(steps, op.i32ShrU(get(k), op.i32Const(2))),
    countedLoop(
      steps,
      [
        ...walks.flatMap((t) => [
          op.if(
            op.i32Eqz(get(t.left)),
            set(t.scales, op.i32Add(get(t.scales), op.i32Const(4))),
            loadScale(t),
            set(t.left, get(blockSize)),
          ),
          set(t.w, op.f32x4Mul(op.v128Load64Lane(pairAt(t, 1), op.v128Load64Zero(pairAt(t, 0)), 1), get(t.scale))),
          set(t.left, op.i32Sub(get(t.left), op.i32Const(4))),
          set(t.codes, op.i32Add(get(t.codes), op.i32Const(2))),
        ]),
        ...aRows.flatMap((i) =>
          walks.map((t) =>
            set(t.acc[i], op.f32x4Add(get(t.acc[i]), op.f32x4Mul(op.v128Load(rowAt(ca, lda, i)), get(t.w)))),
          ),
        ),
      ],
      [[ca, { bytes: 16 }]],
    ),
    // as fewRowsT: the lanes' sum, plus its (here empty) one-at-a-time tail's
    ...walks.flatMap((t) => [
      ...aRows.map((i) => op.f32Store(rowAt(t.pc, ldc, i), laneSum(t.acc[i], zero))),
      set(t.pc, op.i32Add(get(t.pc), op.i32Const(4))),
    ]),
  ];
  return {
    params: Array(14).fill(I32),
    locals: L.types,
    body: [
      set(zero, op.v128Zero()),
      loadScale(first),
      loadScale(second),
      set(paired, op.i32ShrU(get(rows), op.i32Const(1))),
      // the second walk's C columns follow the first's ceil(rows / 2)
      set(second.pc, op.i32Add(get(first.pc), op.i32Shl(op.i32Sub(get(rows), get(paired)), op.i32Const(2)))),
      countedLoop(paired, rowsOf([first, second]), []),
      op.if(op.i32And(get(rows), op.i32Const(1)), ...rowsOf([first])),
    ].flat(),
  };
}

/**
 * A loop over `count` values a block of `blockSize` at a time, the last perhaps partial: local inBlock holds each
 * block's count (min(blockSize, what is left)) when `body` runs.
 */
function blockwise(count: number, blockSize: number, inBlock: number, body: Code[]): Code {
  return op.block(
    op.loop(
      op.brIf(1, op.i32Eqz(get(count))),
      set(inBlock, get(blockSize)),
      op.if(op.i32LtU(get(count), get(blockSize)), set(inBlock, get(count))),
      set(count, op.i32Sub(get(count), get(inBlock))),
      ...body,
      op.br(0),
    ),
  );
}

/**
 * unpack4(codes, pairs, scales, out, count, blockSize): `count` values from 4-bit codes, two per byte from `codes`,
 * each pair read from the 256 x 2 table `pairs` (a byte's two code values, even index first) and times its block's
 * scale (one f32 per blockSize values, from `scales`). count may be odd (the last byte's first value alone);
 * blockSize is even. f32 products of the same table and scales as quant/nf4.ts's, so the same bits.
 */
function unpack4Function(): RowsFunction {
  const [codes, pairs, scales, out, count, blockSize] = [0, 1, 2, 3, 4, 5];
  const L = new Locals(6);
  const [inBlock, odd, pair, scale] = [L.add(I32), L.add(I32), L.add(I32), L.add(F32)];
  const readPair = set(pair, op.i32Add(get(pairs), op.i32Shl(op.i32Load8U(get(codes)), op.i32Const(3))));
  const one = (offset: number) => op.f32Store(get(out), op.f32Mul(op.f32Load(get(pair), offset), get(scale)), offset);
  return {
    params: Array(6).fill(I32),
    locals: L.types,
    body: blockwise(count, blockSize, inBlock, [
      set(scale, op.f32Load(get(scales))),
      set(scales, op.i32Add(get(scales), op.i32Const(4))),
      // the block's values as whole pairs and perhaps one more
      set(odd, op.i32And(get(inBlock), op.i32Const(1))),
      set(inBlock, op.i32ShrU(get(inBlock), op.i32Const(1))),
      countedLoop(
        inBlock,
        [readPair, one(0), one(4)],
        [
          [codes, { bytes: 1 }],
          [out, { bytes: 8 }],
        ],
      ),
      op.if(get(odd), readPair, one(0)),
    ]),
  };
}

/**
 * nestedScales(codes, table, nested, out, count, nestedBlock, offsetBits): `count` double-quantized block scales,
 * out[b] = f32(f32(table[codes[b]] * nested[b / nestedBlock]) + offset), offset given as its f32 bits: quant/nf4.ts's
 * float32 arithmetic, so the same bits.
 */
function nestedScalesFunction(): RowsFunction {
  const [codes, table, nested, out, count, nestedBlock, offsetBits] = [0, 1, 2, 3, 4, 5, 6];
  const L = new Locals(7);
  const [inBlock, scale, offset] = [L.add(I32), L.add(F32), L.add(F32)];
  const code = op.f32Load(op.i32Add(get(table), op.i32Shl(op.i32Load8U(get(codes)), op.i32Const(2))));
  return {
    params: Array(7).fill(I32),
    locals: L.types,
    body: [
      set(offset, op.f32ReinterpretI32(get(offsetBits))),
      blockwise(count, nestedBlock, inBlock, [
        set(scale, op.f32Load(get(nested))),
        set(nested, op.i32Add(get(nested), op.i32Const(4))),
        countedLoop(
          inBlock,
          [op.f32Store(get(out), op.f32Add(op.f32Mul(code, get(scale)), get(offset)))],
          [
            [codes, { bytes: 1 }],
            [out, { bytes: 4 }],
          ],
        ),
      ]),
    ].flat(),
  };
}

/** The module's functions; addresses in bytes, matrices [rows, cols] row-major. */
export interface RowsKernel {
  softmax(x: number, y: number, rows: number, cols: number): void;
  maskedSoftmax(x: number, mask: number, y: number, rows: number, cols: number): void;
  softmaxGrad(p: number, dp: number, dx: number, rows: number, cols: number): void;
  maxSumExp(z: number, out: number, rows: number, cols: number): void;
  expShifted(z: number, g: number, shiftScale: number, rows: number, cols: number): void;
  rmsNorm(x: number, y: number, w: number, r: number, epsBits: number, rows: number, cols: number): void;
  rmsNormGrad(x: number, dy: number, dx: number, w: number, r: number, rows: number, cols: number): void;
  swiglu(g: number, u: number, y: number, rows: number, cols: number): void;
  swigluGrad(g: number, u: number, dy: number, dg: number, du: number, rows: number, cols: number): void;
  fewRows1: FewRows;
  fewRows2: FewRows;
  fewRows3: FewRows;
  fewRows4: FewRows;
  fewRows5: FewRows;
  fewRowsT1: FewRows;
  fewRowsT2: FewRows;
  fewRowsT3: FewRows;
  fewRowsT4: FewRows;
  fewRowsT5: FewRows;
  unpack4(codes: number, pairs: number, scales: number, out: number, count: number, blockSize: number): void;
  nestedScales(
    codes: number,
    table: number,
    nested: number,
    out: number,
    count: number,
    nestedBlock: number,
    offsetBits: number,
  ): void;
  fourBitT1: FourBitT;
  fourBitT2: FourBitT;
  fourBitT3: FourBitT;
  fourBitT4: FourBitT;
  fourBitT5: FourBitT;
}

/**
 * A few-row product against a 4-bit W^T:
 * (pa, lda, pairs, ldc, k, blockSize, rows, codes, scales, left, pc, codes2, scales2, left2).
 */
type FourBitT = (...args: number[]) => void;

/** A few-row product's function: (pa, lda, pb, ldb, pc, ldc, k, n), addresses and row strides in bytes. */
type FewRows = (
  pa: number,
  lda: number,
  pb: number,
  ldb: number,
  pc: number,
  ldc: number,
  k: number,
  n: number,
) => void;
export type RowsFunctionName = keyof RowsKernel;

/** Each function's writer, one for every name of RowsKernel (the type checker sees to that). */
const WRITERS: Record<RowsFunctionName, () => RowsFunction> = {
  softmax: () => softmaxFunction(false),
  maskedSoftmax: () => softmaxFunction(true),
  softmaxGrad: softmaxGradFunction,
  maxSumExp: maxSumExpFunction,
  expShifted: expShiftedFunction,
  rmsNorm: rmsNormFunction,
  rmsNormGrad: rmsNormGradFunction,
  swiglu: swigluFunction,
  swigluGrad: swigluGradFunction,
  fewRows1: () => fewRowsFunction(1),
  fewRows2: () => fewRowsFunction(2),
  fewRows3: () => fewRowsFunction(3),
  fewRows4: () => fewRowsFunction(4),
  fewRows5: () => fewRowsFunction(5),
  fewRowsT1: () => fewRowsTFunction(1),
  fewRowsT2: () => fewRowsTFunction(2),
  fewRowsT3: () => fewRowsTFunction(3),
  fewRowsT4: () => fewRowsTFunction(4),
  fewRowsT5: () => fewRowsTFunction(5),
  unpack4: unpack4Function,
  nestedScales: nestedScalesFunction,
  fourBitT1: () => fourBitTFunction(1),
  fourBitT2: () => fourBitTFunction(2),
  fourBitT3: () => fourBitTFunction(3),
  fourBitT4: () => fourBitTFunction(4),
  fourBitT5: () => fourBitTFunction(5),
};

/** The functions in module order (a pool job names one by its index here). */
export const ROWS_FUNCTIONS = Object.keys(WRITERS) as RowsFunctionName[];

/** The kernel module's bytes, for a shared (threaded build) or unshared memory. */
export function rowsKernelBytes(memory: { shared: boolean }): Uint8Array<ArrayBuffer> {
  return wasmModule(
    ROWS_FUNCTIONS.map((name) => ({ ...WRITERS[name](), name })),
    memory,
  );
}

/** The kernel module compiled over `memory` (tfjs-backend-wasm's heap). */
export function rowsKernel(memory: WebAssembly.Memory): RowsKernel {
  const shared = memory.buffer instanceof SharedArrayBuffer;
  const module = new WebAssembly.Module(rowsKernelBytes({ shared }));
  return new WebAssembly.Instance(module, { env: { mem: memory } }).exports as unknown as RowsKernel;
}
