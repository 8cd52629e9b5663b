/**
 * `wideep bench nccl`: the cases, the arithmetic and the report, with nothing
 * that needs a GPU (so unit tests cover it). Definitions follow docs/performance.md:
 *
 * - all-reduce: algbw = bytes / time, busbw = algbw × 2(n−1)/n (nccl-tests);
 * - equal all-to-all: every rank sends `rowsPerPeer` rows of `hidden` bf16 to
 *   every rank (itself included); "received per rank" counts all n blocks,
 *   "from other ranks" the n−1 that crossed NVLink.
 *
 * Times are per-op CUDA-event times in µs: the median over the timed
 * iterations on each rank, then the median across ranks.
 */
import { gbps, median } from './stats.js';

export type NcclOp = 'all-reduce' | 'all-to-all';

/** bf16 everywhere, as in docs/performance.md. */
export const BENCH_DTYPE = 'bf16';
export const BF16_BYTES = 2;
/** DeepSeek-V3's hidden size: the all-to-all row width. */
export const ALL_TO_ALL_HIDDEN = 7168;
export const ALL_REDUCE_SIZES = [8 << 20, 64 << 20, 512 << 20] as const;
export const ALL_TO_ALL_ROWS = [128, 4096, 8192] as const;

export interface CaseSpec {
  /** Stable key shared by our worker, the torch script and the ratios. */
  id: string;
  op: NcclOp;
  label: string;
  /** all-reduce: the buffer size in bytes. */
  bytes?: number;
  /** all-to-all: rows sent to every rank (and received from every rank). */
  rowsPerPeer?: number;
  hidden?: number;
  warmup: number;
  iters: number;
  /**
   * Inputs are uniform in (−2^scaleLog2, 2^scaleLog2). The all-reduce runs in
   * place, so its values grow by up to n× per iteration: the scale leaves room
   * for every warm-up and timed iteration without overflowing bf16.
   */
  scaleLog2: number;
}

/** What a worker (ours or torch's) reports for one case: each rank's median and minimum. */
export interface RawCase {
  id: string;
  perRankMedianUs: number[];
  perRankMinUs?: number[];
}

export interface CaseResult {
  id: string;
  op: NcclOp;
  label: string;
  dtype: typeof BENCH_DTYPE;
  warmup: number;
  iters: number;
  /** Median across ranks of each rank's median (µs). */
  timeUs: number;
  perRankUs: number[];
  /** Fastest single iteration seen on any rank (µs), where reported. */
  minUs?: number;
  // all-reduce
  bytes?: number;
  algbwGBs?: number;
  busbwGBs?: number;
  // all-to-all
  rowsPerPeer?: number;
  hidden?: number;
  recvBytes?: number;
  recvOthersBytes?: number;
  recvGBs?: number;
  recvOthersGBs?: number;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 1 << 30 && bytes % (1 << 30) === 0) return `${bytes / (1 << 30)} GiB`;
  if (bytes >= 1 << 20 && bytes % (1 << 20) === 0) return `${bytes / (1 << 20)} MiB`;
  if (bytes >= 1 << 10 && bytes % (1 << 10) === 0) return `${bytes / (1 << 10)} KiB`;
  return `${bytes} B`;
}

/** Room for `ops` in-place sums over n ranks in bf16 (max ≈ 2^127): values start below 2^scaleLog2. */
export function allReduceScaleLog2(worldSize: number, ops: number): number {
  const growth = Math.ceil(Math.log2(Math.max(2, worldSize)));
  return Math.max(-100, Math.min(0, 120 - growth * ops));
}

/** The cases of one run, in the order they run. */
export function planCases(worldSize: number, options: { warmup: number; iters: number }): CaseSpec[] {
  const { warmup, iters } = options;
  const cases: CaseSpec[] = [];
  for (const bytes of ALL_REDUCE_SIZES) {
    cases.push({
      id: `all_reduce_${formatBytes(bytes).replace(' ', '')}`,
      op: 'all-reduce',
      label: `all-reduce ${formatBytes(bytes)}`,
      bytes,
      warmup,
      iters,
      scaleLog2: allReduceScaleLog2(worldSize, warmup + iters),
    });
  }
  for (const rows of ALL_TO_ALL_ROWS) {
    cases.push({
      id: `all_to_all_${rows}`,
      op: 'all-to-all',
      label: `all-to-all ${rows} rows/peer`,
      rowsPerPeer: rows,
      hidden: ALL_TO_ALL_HIDDEN,
      warmup,
      iters,
      scaleLog2: 0,
    });
  }
  return cases;
}

/** nccl-tests' bus bandwidth factor for all-reduce: 2(n−1)/n. */
export function allReduceBusFactor(worldSize: number): number {
  return (2 * (worldSize - 1)) / worldSize;
}

/** Bytes one rank receives in an equal all-to-all: all blocks, and those from other ranks. */
export function allToAllRecvBytes(worldSize: number, rowsPerPeer: number, hidden: number, itemBytes = BF16_BYTES) {
  const block = rowsPerPeer * hidden * itemBytes;
  return { all: block * worldSize, others: block * (worldSize - 1) };
}

/** Turns per-rank medians into one result with its bandwidths. */
export function summarize(spec: CaseSpec, raw: RawCase, worldSize: number): CaseResult {
  const timeUs = median(raw.perRankMedianUs);
  const base: CaseResult = {
    id: spec.id,
    op: spec.op,
    label: spec.label,
    dtype: BENCH_DTYPE,
    warmup: spec.warmup,
    iters: spec.iters,
    timeUs,
    perRankUs: [...raw.perRankMedianUs],
  };
  if (raw.perRankMinUs && raw.perRankMinUs.length > 0) base.minUs = Math.min(...raw.perRankMinUs);
  if (spec.op === 'all-reduce') {
    const bytes = spec.bytes!;
    const algbw = gbps(bytes, timeUs);
    return { ...base, bytes, algbwGBs: algbw, busbwGBs: algbw * allReduceBusFactor(worldSize) };
  }
  const rows = spec.rowsPerPeer!;
  const hidden = spec.hidden ?? ALL_TO_ALL_HIDDEN;
  const recv = allToAllRecvBytes(worldSize, rows, hidden);
  return {
    ...base,
    rowsPerPeer: rows,
    hidden,
    recvBytes: recv.all,
    recvOthersBytes: recv.others,
    recvGBs: gbps(recv.all, timeUs),
    recvOthersGBs: gbps(recv.others, timeUs),
  };
}

/** Summarizes every planned case that `raw` reports (in plan order); missing ones are skipped. */
export function summarizeAll(plan: readonly CaseSpec[], raw: readonly RawCase[], worldSize: number): CaseResult[] {
  const byId = new Map(raw.map((r) => [r.id, r]));
  return plan.flatMap((spec) => {
    const r = byId.get(spec.id);
    return r && r.perRankMedianUs.length > 0 ? [summarize(spec, r, worldSize)] : [];
  });
}

/** The bandwidth a case is judged by: bus bandwidth for all-reduce, received per rank for all-to-all. */
export function headlineGBs(r: CaseResult): number {
  return (r.op === 'all-reduce' ? r.busbwGBs : r.recvGBs) ?? Number.NaN;
}

export interface Ratio {
  /** ours / torch time: below 1 means we are faster. */
  time: number;
  /** ours / torch bandwidth: above 1 means we are faster. */
  bandwidth: number;
}

export function ratios(ours: readonly CaseResult[], torch: readonly CaseResult[]): Record<string, Ratio> {
  const t = new Map(torch.map((r) => [r.id, r]));
  const out: Record<string, Ratio> = {};
  for (const o of ours) {
    const x = t.get(o.id);
    if (!x) continue;
    out[o.id] = { time: o.timeUs / x.timeUs, bandwidth: headlineGBs(o) / headlineGBs(x) };
  }
  return out;
}

// ---- the report ------------------------------------------------------------

export type TorchReport =
  | {
      available: true;
      torchVersion: string;
      ncclVersion: string;
      worldSize: number;
      results: CaseResult[];
    }
  | { available: false; reason: string };

export interface NcclBenchReport {
  suite: 'nccl';
  worldSize: number;
  /** Names of the GPUs the ranks used, in rank order. */
  gpus: string[];
  ncclVersion: string;
  ncclPath?: string;
  warmup: number;
  iters: number;
  results: CaseResult[];
  torch: TorchReport | null;
  ratios: Record<string, Ratio>;
}

function fmt(v: number | undefined, digits: number): string {
  if (v === undefined || !Number.isFinite(v)) return '-';
  return v.toFixed(digits);
}

/** A plain text table: first column left-aligned, the others right-aligned. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}

function gpuSummary(gpus: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const g of gpus) counts.set(g, (counts.get(g) ?? 0) + 1);
  return [...counts].map(([name, c]) => `${c}× ${name}`).join(', ') || 'unknown GPUs';
}

/** The human report: one table per op, with torch's columns beside ours when it ran. */
export function formatReport(report: NcclBenchReport): string {
  const torch = report.torch?.available ? report.torch : undefined;
  const byId = new Map((torch?.results ?? []).map((r) => [r.id, r]));
  const out: string[] = [
    `wideep bench nccl: ${report.worldSize} ranks on ${gpuSummary(report.gpus)}, NCCL ${report.ncclVersion}` +
      (torch ? `; torch ${torch.torchVersion} with NCCL ${torch.ncclVersion}` : ''),
    `bf16; CUDA-event time per op, median of ${report.iters} iterations after ${report.warmup} warm-up on each rank, median across ranks`,
  ];

  const ar = report.results.filter((r) => r.op === 'all-reduce');
  if (ar.length > 0) {
    const headers = ['all-reduce', 'time µs', 'algbw GB/s', 'busbw GB/s'];
    if (torch) headers.push('torch µs', 'torch busbw', 'busbw ours/torch');
    const rows = ar.map((r) => {
      const row = [formatBytes(r.bytes ?? 0), fmt(r.timeUs, 1), fmt(r.algbwGBs, 1), fmt(r.busbwGBs, 1)];
      if (torch) {
        const t = byId.get(r.id);
        row.push(fmt(t?.timeUs, 1), fmt(t?.busbwGBs, 1), t ? fmt(headlineGBs(r) / headlineGBs(t), 3) : '-');
      }
      return row;
    });
    out.push('', formatTable(headers, rows));
  }

  const a2a = report.results.filter((r) => r.op === 'all-to-all');
  if (a2a.length > 0) {
    const headers = ['all-to-all', 'MiB/rank', 'time µs', 'recv GB/s', 'from others GB/s'];
    if (torch) headers.push('torch µs', 'torch recv GB/s', 'recv ours/torch');
    const rows = a2a.map((r) => {
      const row = [
        `${r.rowsPerPeer} rows × ${r.hidden}`,
        fmt((r.recvBytes ?? 0) / (1 << 20), 1),
        fmt(r.timeUs, 1),
        fmt(r.recvGBs, 1),
        fmt(r.recvOthersGBs, 1),
      ];
      if (torch) {
        const t = byId.get(r.id);
        row.push(fmt(t?.timeUs, 1), fmt(t?.recvGBs, 1), t ? fmt(headlineGBs(r) / headlineGBs(t), 3) : '-');
      }
      return row;
    });
    out.push('', formatTable(headers, rows));
  }

  if (report.torch && !report.torch.available) out.push('', `torch baseline: not run (${report.torch.reason})`);
  return out.join('\n');
}
