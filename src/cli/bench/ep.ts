/**
 * `wideep bench ep`: dispatch/combine throughput (normal mode) or latency
 * (low-latency mode) with docs/performance.md's metrics, per rank, against DeepEP's
 * figures for the rank count (ep-anchors.ts) and an NCCL baseline measured
 * in the run.
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { toJson, type CliCommand, type CliIo } from '../command.js';
import { deviceCount } from '../../cuda/device.js';
import { launch } from '../../runtime/launcher.js';
import { WideepError, assertInteger } from '../../errors.js';
import { ANCHOR_SHAPES, deepEpAnchors, type AnchorShape } from './ep-anchors.js';
import { EP_BENCH_CONFIG_VAR, type EpBenchConfig, type EpBenchMode, type EpRankResult, type EpRankRow } from './ep-config.js';
import type { RoutingKind } from './ep-inputs.js';
import { gbps, median, round } from './stats.js';

const USAGE = `usage: wideep bench ep --mode normal|low-latency [options]

  --nproc-per-node N   ranks, one per GPU (default: every visible GPU; one rank
                       measures the kernels without NVLink, and the host cost)
  --tokens T           tokens per rank (default 4096 normal, 128 low-latency)
  --hidden H           row width (default 7168)
  --topk K             experts per token (default 8)
  --experts E          routed experts (default 256)
  --routing R          uniform | zipf | both (default both)
  --num-sms LIST       normal mode: SM budgets, e.g. 24 or 24,48,80,128 (default 24)
  --send-sms LIST      normal mode: of each budget, the SMs the combine sends with,
                       e.g. 16 or 8,12,16,20 (default: the library's share,
                       min((R-1)/R, 2/3)); a list measures the combine at each
  --no-baseline        skip the NCCL all-to-all-v baseline
  --iters N            timed runs per measurement (default 30)
  --warmup N           untimed runs first (default 5)
  --json               print one JSON object
  --out FILE           also write the JSON there

Times are CUDA-event medians per rank, then the median over ranks; bandwidth
follows docs/performance.md (normal: bytes received per rank; low-latency: bytes per
valid top-k selection sent). JS µs is the wall time of the API call; a
dispatch without a handle waits there for its receive counts, which come
after the 2 ms for which each timed run keeps the GPU busy first.
Low-latency mode also runs eager dispatch → combine steps back to back with
the GPU kept busy: ll-step-eager-loop gives the GPU time and host time per
step, ll-*-host the host time of each call, and launch-floor-host that of
one empty kernel launched through the addon; the difference between the two
is what the library adds to a launch.`;

export interface EpBenchRow {
  routing: RoutingKind;
  numSms?: number;
  /** The combine's sending SMs, where --send-sms set them. */
  sendSms?: number;
  op: string;
  /** Median over ranks of each rank's median. */
  kernelUs: number;
  wallUs: number;
  gbps: number;
  perRank: { rank: number; kernelUs: number; wallUs: number; gbps: number; bytes: number }[];
  /** DeepEP's figure for this op, SM budget and rank count, where ep-anchors.ts has one. */
  deepep?: { value: number; unit: 'GB/s' | 'us'; ratio: number; goal?: number };
}

export interface EpBenchReport {
  suite: 'ep';
  mode: EpBenchMode;
  worldSize: number;
  config: Omit<EpBenchConfig, 'out'>;
  /** Where the DeepEP figures beside the rows come from (none at other rank counts). */
  deepepSource?: string;
  rows: EpBenchRow[];
}

function list(v: string, what: string): string[] {
  const items = v.split(',').map((s) => s.trim()).filter(Boolean);
  if (items.length === 0) throw new WideepError('ERR_INVALID_ARG', `${what}: expected a comma-separated list, got ${JSON.stringify(v)}`);
  return items;
}

function int(v: string | undefined, what: string, fallback: number, min = 1): number {
  if (v === undefined) return fallback;
  return assertInteger(what, Number(v), min);
}

/** The DeepEP comparison of one row at `worldSize` ranks (src/cli/bench/ep-anchors.ts). */
export function compareWithDeepEp(
  mode: EpBenchMode,
  op: string,
  numSms: number | undefined,
  row: { gbps: number; kernelUs: number },
  worldSize: number,
  shape: AnchorShape,
): EpBenchRow['deepep'] {
  const anchors = deepEpAnchors(worldSize);
  const at = ANCHOR_SHAPES[mode];
  const sameShape = shape.tokens === at.tokens && shape.hidden === at.hidden && shape.topk === at.topk && shape.experts === at.experts;
  if (!anchors || !sameShape) return undefined;
  if (mode === 'low-latency') {
    const ref = op === 'll-dispatch' ? anchors.lowLatency.dispatchUs : op === 'll-combine' ? anchors.lowLatency.combineUs : undefined;
    if (ref === undefined) return undefined;
    return withGoal({ value: ref, unit: 'us', ratio: round(row.kernelUs / ref, 3) }, anchors.goals?.lowLatency);
  }
  const anchor = numSms === undefined ? undefined : anchors.normal[numSms];
  const field = op.startsWith('dispatch-bf16') ? 'dispatchBf16' : op.startsWith('dispatch-fp8') ? 'dispatchFp8' : op === 'combine-bf16' ? 'combineBf16' : undefined;
  const value = anchor && field ? anchor[field] : undefined;
  if (value === undefined) return undefined;
  const goals = anchors.goals?.normalAt24Sms;
  const goal = numSms === 24 && goals ? (field === 'combineBf16' ? goals.combine : goals.dispatch) : undefined;
  return withGoal({ value, unit: 'GB/s', ratio: round(row.gbps / value, 3) }, goal);
}

function withGoal(d: NonNullable<EpBenchRow['deepep']>, goal: number | undefined): EpBenchRow['deepep'] {
  return goal === undefined ? d : { ...d, goal };
}

/** Folds every rank's samples into rows: per-rank medians, then medians over ranks. */
export function summarise(mode: EpBenchMode, ranks: EpRankResult[], shape: AnchorShape): EpBenchRow[] {
  const worldSize = ranks.length;
  const keyOf = (row: EpRankRow) => `${row.routing}|${row.numSms ?? ''}|${row.sendSms ?? ''}|${row.op}`;
  const keys = new Map<string, EpRankRow>();
  for (const r of ranks) for (const row of r.rows) keys.set(keyOf(row), row);
  const out: EpBenchRow[] = [];
  for (const [key, k] of keys) {
    const perRank = ranks.flatMap((r) =>
      r.rows
        .filter((row) => keyOf(row) === key)
        .map((row) => {
          const us = median(row.samples.kernelUs);
          return { rank: r.rank, kernelUs: round(us), wallUs: round(median(row.samples.wallUs)), gbps: round(gbps(row.bytes, us), 1), bytes: row.bytes };
        }),
    );
    const summary = {
      kernelUs: round(median(perRank.map((p) => p.kernelUs))),
      wallUs: round(median(perRank.map((p) => p.wallUs))),
      gbps: round(median(perRank.map((p) => p.gbps)), 1),
    };
    const row: EpBenchRow = { routing: k.routing, op: k.op, ...summary, perRank };
    if (k.numSms !== undefined) row.numSms = k.numSms;
    if (k.sendSms !== undefined) row.sendSms = k.sendSms;
    const deepep = compareWithDeepEp(mode, k.op, k.numSms, summary, worldSize, shape);
    if (deepep) row.deepep = deepep;
    out.push(row);
  }
  return out;
}

export function renderEpTable(report: EpBenchReport): string {
  const head = ['routing', 'SMs', 'op', 'kernel µs', 'GB/s', 'DeepEP', 'ratio', 'goal', 'JS µs'];
  const body = report.rows.map((r) => [
    r.routing,
    r.numSms === undefined ? '-' : r.sendSms === undefined ? String(r.numSms) : `${r.numSms} (${r.sendSms} send)`,
    r.op,
    Number.isFinite(r.kernelUs) ? r.kernelUs.toFixed(1) : '-', // host-only rows
    Number.isFinite(r.gbps) && r.gbps > 0 ? r.gbps.toFixed(0) : '-', // no bytes: e.g. the event floor
    r.deepep ? `${r.deepep.value} ${r.deepep.unit}` : '-',
    r.deepep ? r.deepep.ratio.toFixed(2) : '-',
    r.deepep?.goal !== undefined ? `${r.deepep.unit === 'us' ? '<=' : '>='}${r.deepep.goal}` : '-',
    r.wallUs.toFixed(1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [
    `wideep bench ep --mode ${report.mode}: ${report.worldSize} ranks, ${report.config.tokens} tokens/rank, hidden ${report.config.hidden}, top-${report.config.topk} of ${report.config.experts}`,
    `DeepEP: ${report.deepepSource ?? `no figures for ${report.worldSize} ranks`}`,
    line(head),
    ...body.map(line),
  ].join('\n');
}

async function runWorkers(config: EpBenchConfig, nproc: number, io: CliIo): Promise<EpRankResult[]> {
  const script = join(dirname(fileURLToPath(import.meta.url)), 'ep-worker.js');
  const result = await launch({
    script,
    nprocPerNode: nproc,
    env: { ...process.env, [EP_BENCH_CONFIG_VAR]: JSON.stringify(config) },
    stdout: (t) => io.err(t),
    stderr: (t) => io.err(t),
  });
  if (!result.ok) throw new WideepError('ERR_PEER', 'bench ep workers failed; see their output above');
  return JSON.parse(readFileSync(config.out, 'utf8')) as EpRankResult[];
}

export const command: CliCommand = {
  name: 'bench ep',
  summary: 'EP dispatch/combine benchmark',
  usage: USAGE,
  async run(argv, io) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        mode: { type: 'string' },
        'nproc-per-node': { type: 'string' },
        tokens: { type: 'string' },
        hidden: { type: 'string' },
        topk: { type: 'string' },
        experts: { type: 'string' },
        routing: { type: 'string', default: 'both' },
        'num-sms': { type: 'string', default: '24' },
        'send-sms': { type: 'string' },
        'no-baseline': { type: 'boolean', default: false },
        iters: { type: 'string' },
        warmup: { type: 'string' },
        json: { type: 'boolean', default: false },
        out: { type: 'string' },
      },
    });
    const mode = values.mode as EpBenchMode | undefined;
    if (mode !== 'normal' && mode !== 'low-latency') {
      throw new WideepError('ERR_INVALID_ARG', `--mode: expected normal or low-latency, got ${JSON.stringify(values.mode ?? null)}`);
    }
    const routing = values.routing === 'both' ? ['uniform', 'zipf'] : list(values.routing!, '--routing');
    for (const r of routing) if (r !== 'uniform' && r !== 'zipf') throw new WideepError('ERR_INVALID_ARG', `--routing: expected uniform, zipf or both, got ${r}`);
    const numSms = list(values['num-sms']!, '--num-sms').map((v) => int(v, '--num-sms', 24));
    const sendSms = values['send-sms'] === undefined ? undefined : list(values['send-sms'], '--send-sms').map((v) => int(v, '--send-sms', 0));
    for (const s of sendSms ?? []) {
      if (numSms.some((n) => s >= n)) {
        throw new WideepError('ERR_INVALID_ARG', `--send-sms: expected fewer than every --num-sms (${numSms}), got ${s}: the other SMs reduce`);
      }
    }
    const settings = {
      mode,
      tokens: int(values.tokens, '--tokens', mode === 'normal' ? 4096 : 128),
      hidden: int(values.hidden, '--hidden', 7168),
      topk: int(values.topk, '--topk', 8),
      experts: int(values.experts, '--experts', 256),
      routings: routing as RoutingKind[],
      numSms,
      sendSms,
      iters: int(values.iters, '--iters', 30),
      warmup: int(values.warmup, '--warmup', 5, 0),
      graphReplays: 20,
      baseline: !values['no-baseline'],
      seed: Date.now() % 1_000_000,
    };
    const gpus = deviceCount();
    if (gpus === 0) throw new WideepError('ERR_NO_GPU', 'bench ep needs GPUs, and none is visible (see wideep doctor)');
    const nproc = int(values['nproc-per-node'], '--nproc-per-node', gpus, 1);
    const dir = mkdtempSync(join(tmpdir(), 'wideep-bench-ep-'));
    const config: EpBenchConfig = { ...settings, out: join(dir, 'ranks.json') };
    try {
      const rows = summarise(mode, await runWorkers(config, nproc, io), settings);
      const { out: _out, ...rest } = config;
      const report: EpBenchReport = { suite: 'ep', mode, worldSize: nproc, config: rest, rows };
      const source = deepEpAnchors(nproc)?.source;
      if (source) report.deepepSource = source;
      if (values.out) writeFileSync(values.out, toJson(report));
      io.out(values.json ? toJson(report) : renderEpTable(report));
      return 0;
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  },
};
