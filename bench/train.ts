// Training and generation throughput, memory and MFU for fixed model shapes (bench/train-configs.ts), ft with a
// float and an NF4 base on 1 thread and on every core, and the same step in PyTorch as a peer
// (bench/peer/torch_lora.py) on 1 thread and on every core when /usr/bin/python3 has torch; nothing is installed
// here. Each measurement runs in its own process (bench/train-case.ts) so its peak RSS is its own.
// An ft/PyTorch ratio is printed only when torch ran on an optimized BLAS: against the reference BLAS (sgemm a few
// GFLOP/s) it would flatter ft several times over.
// Each ft case runs FT_BENCH_ROUNDS times (default 2), its thread counts in alternation, against the VM's drift.
// The all-thread process also takes turns within itself, one thread then all (BenchConfig.turns): the 2-thread
// targets are judged on those, with the separate processes' ratio beside.
// Run: npm run bench -- train            (all configs; or npx tsx bench/train.ts)
//      FT_BENCH_CONFIGS=tiny,stories15M    pick configs (tinyllama, ~20 minutes, only when named);  FT_BENCH_PEER=0  skip PyTorch;  FT_BACKEND=cpu  another backend
import { readFileSync } from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parameterCount } from '../model/init.ts';
import { cpuPeak, trainFlopsPerToken, type CpuPeak } from './flops.ts';
import { run } from './child.ts';
import { describeCeiling, describeStream, ftProducts, parallelCeilings } from './parallel-ceiling.ts';
import { PYTHON, peerEnv, peerMissing } from './peer-env.ts';
import { blasKind, openblasCoreOf } from './peer-blas.ts';
import { report, type Figures } from './report.ts';
import type { CaseResult, Turns } from './train-case.ts';
import { defaultThreads } from '../engine/backend.ts';
import {
  BENCH_CONFIGS,
  BENCH_LORA,
  BENCH_OPTIM,
  benchConfig,
  type BaseKind,
  type BenchConfig,
} from './train-configs.ts';

const here = path.dirname(fileURLToPath(import.meta.url));

interface PeerResult {
  torch: string;
  threads: number;
  blasInfo: string;
  blasLibrary: string[];
  sgemmGflops1024: number;
  trainableParams: number;
  stepSeconds: number[];
  tokensPerSecond: number;
  maxRssBytes: number;
}

/** The case's figures, or why it failed (the first telling stderr line, e.g. the wasm heap running out). */
async function runCase(cfg: BenchConfig, base: BaseKind, threads: number): Promise<CaseResult | { error: string }> {
  const args = [
    '--import',
    'tsx',
    path.join(here, 'train-case.ts'),
    cfg.name,
    base,
    '--backend',
    process.env.FT_BACKEND ?? 'auto',
    '--threads',
    String(threads),
  ];
  const { code, lines, errors } = await run(process.execPath, args);
  const line = lines.find((l) => l.startsWith('@result '));
  if (code === 0 && line) return JSON.parse(line.slice('@result '.length));
  const cause =
    errors.find((l) => /status|error|abort|memory|heap/i.test(l) && l.length < 300) ?? errors.at(-1) ?? 'no message';
  return { error: `exit ${code}: ${cause.trim()}` };
}

/**
 * The peer on `threads` threads, started as bench/peer-env.ts says; the core OpenBLAS ran is read back from its
 * OPENBLAS_VERBOSE line.
 */
async function runPeer(cfg: BenchConfig, threads: number): Promise<PeerResult & { openblasCore?: string }> {
  const spec = {
    model: cfg.model,
    batch: cfg.batch,
    seq: cfg.seq,
    warmupSteps: cfg.warmupSteps,
    timedSteps: cfg.timedSteps,
    threads,
    lora: { r: BENCH_LORA.r, alpha: BENCH_LORA.alpha },
    optim: BENCH_OPTIM,
  };
  const env = peerEnv(threads);
  const args = [...env, PYTHON, path.join(here, 'peer', 'torch_lora.py'), JSON.stringify(spec)];
  console.log(`  $ env ${args.slice(0, -1).join(' ')} '<spec>'`);
  const { code, lines, errors } = await run('env', args);
  const line = lines.find((l) => l.startsWith('@result '));
  if (code !== 0 || !line)
    throw new Error(`bench/peer/torch_lora.py ${cfg.name} (${threads} thread(s)) failed (exit ${code})`);
  const openblasCore = openblasCoreOf(errors);
  return { ...JSON.parse(line.slice('@result '.length)), openblasCore };
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const MiB = (bytes: number) => bytes / 2 ** 20;

/** Runs of each ft case, thread counts alternating (FT_BENCH_ROUNDS). */
const ROUNDS = Number(process.env.FT_BENCH_ROUNDS ?? 2);

/**
 * One result from several runs of a case: all their timed steps (tokens/s from the median of them), the largest
 * memory figures, the median decode rate; the rest (losses, memory after each step) from the first run.
 */
function mergeRuns(runs: CaseResult[]): CaseResult {
  const [first] = runs;
  const tokensPerStep = first.tokensPerSecond * median(first.stepSeconds);
  const stepSeconds = runs.flatMap((r) => r.stepSeconds);
  const most = (key: 'maxRssBytes' | 'wasmHeapBytes' | 'stepPeakTfBytes') => Math.max(...runs.map((r) => r[key]));
  return {
    ...first,
    stepSeconds,
    tokensPerSecond: tokensPerStep / median(stepSeconds),
    maxRssBytes: most('maxRssBytes'),
    wasmHeapBytes: most('wasmHeapBytes'),
    stepPeakTfBytes: most('stepPeakTfBytes'),
    decodeTokensPerSecond: median(runs.map((r) => r.decodeTokensPerSecond)),
    matmulGflops512: median(runs.map((r) => r.matmulGflops512)),
    turns: mergeTurns(runs.flatMap((r) => (r.turns ? [r.turns] : []))),
  };
}

/** Every run's turns together; none when no run took any. */
function mergeTurns(all: Turns[]): Turns | undefined {
  if (!all.length) return undefined;
  const joined = (key: keyof Turns) => all.flatMap((t) => t[key]);
  return {
    stepSecondsOneThread: joined('stepSecondsOneThread'),
    stepSecondsAll: joined('stepSecondsAll'),
    decodeOneThread: joined('decodeOneThread'),
    decodeAll: joined('decodeAll'),
  };
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');

const configs = process.env.FT_BENCH_CONFIGS
  ? process.env.FT_BENCH_CONFIGS.split(',').map((n) => benchConfig(n.trim()))
  : BENCH_CONFIGS.filter((c) => !c.optIn);
const missing = await peerMissing();
const peaks = new Map<number, CpuPeak>();
const peakOf = (cores: number) => peaks.get(cores) ?? peaks.set(cores, cpuPeak(cores)).get(cores)!;
console.log(`load average ${loadavg()} (other processes on these cores slow every figure)`);
console.log(`fp32 peak per core: ${peakOf(1).formula} on ${peakOf(1).model}`);
console.log(
  `model FLOPs per trained token, frozen base: 4·N_matmul (forward 2·N + input gradient 2·N; no base weight gradient) ` +
    `+ 3·2·L·H·d·(T+1) causal attention (QK^T and PV over (T+1)/2 keys; backward 2×) + 3·2·N_lora; MFU = tokens/s × that / peak`,
);
if (missing) console.log(`PyTorch peer skipped: ${missing}`);

const ALL = defaultThreads();
const threadCounts = ALL > 1 ? [1, ALL] : [1];
console.log(`threads: 1 and ${ALL} (every core this process may use), ft and PyTorch alike`);
// ft's products on OpenBLAS come from the same library as the peer's: the ratio then measures all that is not BLAS
console.log(`ft's products of 6 rows and more: ${ftProducts()} (FT_BLAS=off: ft's own wasm GEMM)`);

const figures: Figures = {
  load_average_start: loadavg(),
  fp32_peak_gflops_per_core: peakOf(1).gflops,
  fp32_peak_formula: peakOf(1).formula,
  threads_all: ALL,
  ft_products: ftProducts(),
};
// what the cores give independent one-thread jobs: the most an ALL-thread speedup can reach here
const ceilings = ALL > 1 ? await parallelCeilings(ALL) : null;
if (ceilings) {
  figures.parallel_ceiling_ft_kernel = ceilings.ft.ratio;
  console.log(
    `parallel ceiling, ${describeCeiling(`ft's kernel (${ftProducts()} 512³, 1 thread each)`, ALL, ceilings.ft)}`,
  );
  figures.parallel_ceiling_memory_stream = ceilings.stream.ratio;
  console.log(`parallel ceiling, ${describeStream(ALL, ceilings.stream)}`);
  if (ceilings.torch) {
    figures.parallel_ceiling_torch_kernel = ceilings.torch.ratio;
    console.log(`parallel ceiling, ${describeCeiling(`torch's kernel (512³, 1 thread each)`, ALL, ceilings.torch)}`);
  }
}
const ceilingNote = ceilings
  ? `; ${ALL} one-thread copies of ft's matMul reach ${ceilings.ft.ratio.toFixed(2)}x here`
  : '';
const streamNote = ceilings
  ? `; ${ALL} one-thread copies streaming a float weight from memory reach ${ceilings.stream.ratio.toFixed(2)}x here`
  : '';
const rows: string[][] = [];
const targets: string[] = [];
const target = (met: boolean, text: string) => targets.push(`${met ? 'met   ' : 'MISSED'} ${text}`);
for (const cfg of configs) {
  const flops = trainFlopsPerToken(cfg.model, BENCH_LORA.r, cfg.seq);
  const params = parameterCount(cfg.model);
  console.log(
    `\n== ${cfg.name}: ${cfg.note}; ${(params / 1e6).toFixed(1)}M parameters (${(flops.matmulParams / 1e6).toFixed(1)}M in matmuls, LoRA ${flops.loraParams.toLocaleString('en-US')}); ` +
      `batch ${cfg.batch} × seq ${cfg.seq}; ${cfg.warmupSteps} warm-up + ${cfg.timedSteps} timed steps per run, ${ROUNDS} runs per case with the thread counts alternating (median of all timed steps); ${(flops.train / 1e6).toFixed(1)} MFLOP/token`,
  );
  const p = `${cfg.name}.`;
  Object.assign(figures, {
    [p + 'params']: params,
    [p + 'train_mflop_per_token']: flops.train / 1e6,
    [p + 'tokens_per_step']: cfg.batch * cfg.seq,
  });
  /** ft's results by base and thread count */
  const ft = new Map<string, CaseResult>();
  for (const base of cfg.bases ?? (['float', 'nf4'] as const)) {
    // the thread counts in alternation, ROUNDS times: the VM's speed drifts over minutes, and a speedup should
    // compare runs made at the same time
    const runs = new Map<number, CaseResult[]>(threadCounts.map((t) => [t, []]));
    const failures = new Map<number, string>();
    for (let round = 0; round < ROUNDS; round++) {
      for (const threads of threadCounts) {
        if (failures.has(threads)) continue;
        const r = await runCase(cfg, base, threads);
        if ('error' in r) failures.set(threads, r.error);
        else runs.get(threads)!.push(r);
      }
    }
    for (const threads of threadCounts) {
      const label = `ft ${base} ${threads}t`;
      const q = `${p}${base}_${threads}t.`;
      const failure = failures.get(threads);
      if (failure) {
        console.log(`  ${label}: FAILED (${failure})`);
        figures[q + 'error'] = failure;
        rows.push([cfg.name, label, 'failed', '-', '-', '-']);
        target(false, `${cfg.name} ${base} ${threads} thread(s): the run failed (${failure})`);
        continue;
      }
      const r = mergeRuns(runs.get(threads)!);
      ft.set(`${base}_${threads}`, r);
      const peak = peakOf(r.threads);
      const gflops = (r.tokensPerSecond * flops.train) / 1e9;
      // growth over each run's timed steps, from its last warm-up step on; the largest of the runs
      const growth = runs.get(threads)!.map((run) => {
        const timed = run.memory.slice(run.memory.length - run.stepSeconds.length - 1);
        return {
          tensors: timed.at(-1)!.numTensors - timed[0].numTensors,
          bytes: timed.at(-1)!.numBytes - timed[0].numBytes,
          rss: timed.at(-1)!.rssBytes - timed[0].rssBytes,
        };
      });
      const largest = (key: 'tensors' | 'bytes' | 'rss') =>
        growth.map((g) => g[key]).reduce((a, b) => (Math.abs(b) > Math.abs(a) ? b : a));
      const [tensorGrowth, byteGrowth, rssGrowth] = [largest('tensors'), largest('bytes'), largest('rss')];
      const resident = r.memory.at(-1)!.numBytes;
      Object.assign(figures, {
        [q + 'train_tokens_per_s']: r.tokensPerSecond,
        [q + 'step_s_median']: median(r.stepSeconds),
        [q + 'model_gflops']: gflops,
        [q + 'mfu_pct']: (100 * gflops) / peak.gflops,
        [q + 'backend_matmul_gflops']: r.matmulGflops512,
        [q + 'threads']: r.threads,
        [q + 'peak_rss_mib']: MiB(r.maxRssBytes),
        [q + 'wasm_heap_mib']: MiB(r.wasmHeapBytes),
        [q + 'tfjs_resident_mib']: MiB(resident),
        [q + 'tfjs_step_peak_mib']: MiB(r.stepPeakTfBytes),
        [q + 'tensor_growth_per_run']: tensorGrowth,
        [q + 'tfjs_byte_growth_per_run']: byteGrowth,
        [q + 'rss_growth_mib_per_run']: MiB(rssGrowth),
        [q + 'generate_decode_tokens_per_s']: r.decodeTokensPerSecond,
        [q + 'generate_prefill_ms']: r.prefillSeconds * 1000,
      });
      console.log(
        `  ${label}: ${r.tokensPerSecond.toFixed(1)} tokens/s (${median(r.stepSeconds).toFixed(2)} s/step over ${r.stepSeconds.length} steps of ${ROUNDS} runs), ${gflops.toFixed(2)} model GFLOP/s = ` +
          `${((100 * gflops) / peak.gflops).toFixed(1)}% of ${peak.gflops.toFixed(1)} GFLOP/s (${r.threads} thread(s); ${r.backend} matMul 512³ reaches ${r.matmulGflops512.toFixed(1)}); ` +
          `peak RSS ${MiB(r.maxRssBytes).toFixed(0)} MiB, wasm heap ${MiB(r.wasmHeapBytes).toFixed(0)} MiB, tfjs ${MiB(resident).toFixed(1)} MiB resident / ${MiB(r.stepPeakTfBytes).toFixed(0)} MiB step peak; ` +
          `growth over the timed steps: ${tensorGrowth} tensors, ${byteGrowth} bytes, RSS ${MiB(rssGrowth).toFixed(1)} MiB; decode ${r.decodeTokensPerSecond.toFixed(1)} tokens/s`,
      );
      rows.push([
        cfg.name,
        `${label} (${r.backend})`,
        r.tokensPerSecond.toFixed(1),
        `${((100 * gflops) / peak.gflops).toFixed(1)}%`,
        MiB(r.maxRssBytes).toFixed(0),
        r.decodeTokensPerSecond.toFixed(1),
      ]);
      if (tensorGrowth !== 0 || byteGrowth !== 0)
        target(
          false,
          `${cfg.name} ${base} ${threads}t: tfjs memory grew over the timed steps (${tensorGrowth} tensors, ${byteGrowth} bytes)`,
        );
    }
    const one = ft.get(`${base}_1`);
    const all = ft.get(`${base}_${ALL}`);
    if (one && all && ALL > 1) {
      const speedup = all.tokensPerSecond / one.tokensPerSecond;
      const decode = all.decodeTokensPerSecond / one.decodeTokensPerSecond;
      const perThread = (all.maxRssBytes - one.maxRssBytes) / (ALL - 1);
      const t = all.turns;
      const turnSpeedup = t && median(t.stepSecondsOneThread) / median(t.stepSecondsAll);
      const turnDecode = t && median(t.decodeAll) / median(t.decodeOneThread);
      Object.assign(figures, {
        [`${p}${base}.train_speedup_all_over_1t`]: speedup,
        [`${p}${base}.peak_rss_mib_per_extra_thread`]: MiB(perThread),
        [`${p}${base}.decode_speedup_all_over_1t`]: decode,
        ...(t && {
          [`${p}${base}.turns_step_s_1t`]: t.stepSecondsOneThread,
          [`${p}${base}.turns_step_s_all`]: t.stepSecondsAll,
          [`${p}${base}.turns_decode_tokens_per_s_1t`]: t.decodeOneThread,
          [`${p}${base}.turns_decode_tokens_per_s_all`]: t.decodeAll,
          [`${p}${base}.turns_train_speedup_all_over_1t`]: turnSpeedup,
          [`${p}${base}.turns_decode_speedup_all_over_1t`]: turnDecode,
        }),
      });
      const seconds = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(' ');
      console.log(
        `  ${base}: ${ALL} threads train ${speedup.toFixed(2)}x 1 thread, decode ${decode.toFixed(2)}x (separate processes); peak RSS ${MiB(perThread).toFixed(0)} MiB per extra thread; ` +
          `the frozen base is held once: wasm heap ${MiB(one.wasmHeapBytes).toFixed(0)} MiB on 1 thread, ${MiB(all.wasmHeapBytes).toFixed(0)} MiB on ${ALL} (one heap shared by the pool)`,
      );
      if (t)
        console.log(
          `  ${base}, one process taking turns (${t.stepSecondsAll.length} rounds; ft's kernels on the calling thread alone, then on the pool): ` +
            `train ${turnSpeedup!.toFixed(2)}x (step s, 1 thread: ${seconds(t.stepSecondsOneThread)}; ${ALL}: ${seconds(t.stepSecondsAll)}), ` +
            `decode ${turnDecode!.toFixed(2)}x (tokens/s, 1 thread: ${seconds(t.decodeOneThread)}; ${ALL}: ${seconds(t.decodeAll)})`,
        );
      // judged on the turns when there are some: separate processes minutes apart differ by up to half here
      const how = t ? 'one process taking turns' : 'separate processes';
      if (cfg.name !== 'tiny')
        target(
          (turnSpeedup ?? speedup) >= 1.7,
          `${cfg.name} ${base}: ${ALL} threads train ${(turnSpeedup ?? speedup).toFixed(2)}x 1 thread, ${how} (separate processes ${speedup.toFixed(2)}x; target >= 1.7x${ceilingNote})`,
        );
      if (cfg.name === 'stories15M')
        target(
          (turnDecode ?? decode) >= 1.5,
          `${cfg.name} ${base}: ${ALL}-thread decode ${all.decodeTokensPerSecond.toFixed(1)} tokens/s = ${(turnDecode ?? decode).toFixed(2)}x 1 thread, ${how} (separate processes ${decode.toFixed(2)}x; target >= 1.5x${streamNote})`,
        );
    }
  }
  const floatAll = ft.get(`float_${ALL}`);
  const nf4All = ft.get(`nf4_${ALL}`);
  if (floatAll && nf4All) {
    const nf4Ratio = median(nf4All.stepSeconds) / median(floatAll.stepSeconds);
    figures[`${p}nf4_over_float_step_time`] = nf4Ratio;
    target(
      nf4Ratio <= 1.3,
      `${cfg.name}: NF4 step time ${nf4Ratio.toFixed(2)}x float on ${ALL} threads (target <= 1.3x)`,
    );
  }
  if (cfg.name === 'tinyllama' && nf4All)
    target(
      nf4All.tokensPerSecond >= 4.8,
      `tinyllama NF4: ${nf4All.tokensPerSecond.toFixed(2)} tokens/s on ${ALL} threads (target >= 2x the 2.4 of one thread before threads)`,
    );

  if (missing) continue;
  for (const threads of threadCounts) {
    const t = await runPeer(cfg, threads);
    const peak = peakOf(t.threads);
    const gflops = (t.tokensPerSecond * flops.train) / 1e9;
    const blas = blasKind(t.blasLibrary, t.blasInfo);
    const q = `${p}torch_${threads}t.`;
    Object.assign(figures, {
      [q + 'train_tokens_per_s']: t.tokensPerSecond,
      [q + 'mfu_pct']: (100 * gflops) / peak.gflops,
      [q + 'peak_rss_mib']: MiB(t.maxRssBytes),
      [q + 'sgemm_gflops']: t.sgemmGflops1024,
      [q + 'blas']: t.blasLibrary.join(' ') || t.blasInfo,
      [q + 'blas_kind']: blas,
      [q + 'openblas_core']: t.openblasCore ?? 'n/a',
    });
    if (t.trainableParams !== flops.loraParams)
      throw new Error(`peer trains ${t.trainableParams} LoRA parameters, ft ${flops.loraParams}: not the same model`);
    console.log(
      `  torch ${t.torch}, ${t.threads} thread(s), BLAS ${blas}${t.openblasCore ? ` (OpenBLAS core ${t.openblasCore})` : ''}: ${t.blasLibrary.join(', ') || 'none mapped'} (BLAS_INFO=${t.blasInfo}; sgemm 1024³ ${t.sgemmGflops1024.toFixed(1)} GFLOP/s): ` +
        `${t.tokensPerSecond.toFixed(1)} tokens/s, ${((100 * gflops) / peak.gflops).toFixed(1)}% of ${peak.gflops.toFixed(1)} GFLOP/s; peak RSS ${MiB(t.maxRssBytes).toFixed(0)} MiB`,
    );
    rows.push([
      cfg.name,
      `torch ${t.threads}t (${blas})`,
      t.tokensPerSecond.toFixed(1),
      `${((100 * gflops) / peak.gflops).toFixed(1)}%`,
      MiB(t.maxRssBytes).toFixed(0),
      '-',
    ]);
    if (blas === 'reference') {
      console.log(
        `  no ft/PyTorch ratio: torch ran on the reference BLAS, which is not a peer (install OpenBLAS: apt-get install libopenblas0-pthread)`,
      );
      if (threads === ALL) target(false, `${cfg.name}: no fair PyTorch peer (reference BLAS)`);
      continue;
    }
    const ratios = (['float', 'nf4'] as const).flatMap((base) => {
      const r = ft.get(`${base}_${threads}`);
      if (!r) return [];
      const ratio = r.tokensPerSecond / t.tokensPerSecond;
      figures[`${p}ft_${base}_over_torch_${threads}t`] = ratio;
      if (threads === ALL && cfg.name !== 'tiny')
        target(
          ratio >= 0.6,
          `${cfg.name} ${base}: ft ${ratio.toFixed(2)}x PyTorch+${blas} on ${ALL} threads, same shape and LoRA (target >= 0.6x)`,
        );
      return [`${ratio.toFixed(2)} (${base})`];
    });
    console.log(`  ft/torch on ${threads} thread(s): ${ratios.join(', ') || 'n/a'}`);
  }
}

figures.load_average_end = loadavg();
console.log('\nconfig       | run                      | train tok/s | MFU    | peak RSS MiB | decode tok/s');
for (const r of rows)
  console.log(
    `${r[0].padEnd(12)} | ${r[1].padEnd(24)} | ${r[2].padStart(11)} | ${r[3].padStart(6)} | ${r[4].padStart(12)} | ${r[5].padStart(12)}`,
  );
console.log(`\ntargets (${ALL} cores):`);
for (const t of targets) console.log(`  ${t}`);
console.log('');
await report(figures);
