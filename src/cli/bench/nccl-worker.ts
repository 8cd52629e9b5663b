/**
 * One rank of `wideep bench nccl`, started by `launch()` (one process per GPU).
 * argv[2] is the JSON WorkerConfig. Rank 0 prints progress on stderr and
 * writes every rank's medians to `resultFile`; every rank exits non-zero on
 * any failure, and on its own after `deadlineMs` so that nothing hangs.
 */
import { randomInt } from 'node:crypto';
import { realpathSync, writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

import { formatNcclVersion } from '../../capabilities.js';
import { Communicator } from '../../comm/communicator.js';
import { loadNccl } from '../../comm/nccl-library.js';
import { cudaProbe } from '../../cuda/device.js';
import { Event } from '../../cuda/event.js';
import { Stream } from '../../cuda/stream.js';
import { initProcessGroup } from '../../runtime/process-group.js';
import type { ProcessGroup } from '../../runtime/types.js';
import { WideepError } from '../../errors.js';
import { Tensor } from '../../tensor/tensor.js';
import { GpuTimer } from './gpu-timer.js';
import type { CaseSpec, RawCase } from './nccl-metrics.js';
import { median } from './stats.js';

export interface WorkerConfig {
  cases: CaseSpec[];
  resultFile: string;
  /** The whole worker's limit; past it the process exits with code 124. */
  deadlineMs: number;
  /** The communicator's bound on init and on every operation. */
  commTimeoutMs: number;
}

export interface WorkerResult {
  worldSize: number;
  ncclVersion: string;
  ncclPath: string;
  gpus: string[];
  cases: RawCase[];
}

interface RankCase {
  id: string;
  medianUs: number;
  minUs: number;
}

interface RankReport {
  rank: number;
  gpu: string;
  cases: RankCase[];
}

const KEY = 'wideep/bench/nccl';
const FILL_BLOCK = 1 << 22; // elements of the random block tiled over each input (8 MiB of bf16)
/** Long enough for the host to enqueue every timed op of a case behind it. */
const ENQUEUE_COVER_NS = 20_000_000;

/** xorshift32 from a seed: fast and good enough for benchmark inputs. */
function rng(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s;
  };
}

/**
 * Fills `t` (bf16) with random values of magnitude below 2^scaleLog2 (never
 * zero, never NaN): random sign, mantissa and one of the 8 binades below
 * the bound. A random block is uploaded once and tiled with device copies.
 */
async function fillRandomBf16(t: Tensor, scaleLog2: number, seed: number, stream: Stream): Promise<void> {
  const flat = t.reshape([t.numel]);
  const len = Math.min(flat.numel, FILL_BLOCK);
  const host = Tensor.empty([len], 'bf16');
  const bits = host.data as Uint16Array;
  const expHi = Math.max(8, Math.min(254, 126 + scaleLog2));
  const next = rng(seed);
  for (let i = 0; i < len; i++) {
    const r = next();
    bits[i] = ((r >>> 31) << 15) | ((expHi - ((r >>> 7) & 7)) << 7) | (r & 0x7f);
  }
  const block = Tensor.empty([len], 'bf16', { device: t.device, stream });
  try {
    await block.copyFrom(host, { stream });
    for (let off = 0; off < flat.numel; off += len) {
      const n = Math.min(len, flat.numel - off);
      await flat.narrow(off, n).copyFrom(block.narrow(0, n), { stream });
    }
    await stream.synchronize();
  } finally {
    block.close();
  }
}

/**
 * Warm-up, then `iters` ops each between two timing events; returns µs per op.
 * The ranks are lined up on the GPU (an all-reduce) and the stream is then
 * kept busy (a sleep kernel) while the timed ops are enqueued, so the events
 * time NCCL's GPU work, not the host's enqueue rate (torch_nccl.py does the same).
 */
async function timeOp(comm: Communicator, stream: Stream, timer: GpuTimer, spec: CaseSpec, op: () => void): Promise<number[]> {
  await comm.barrier({ stream });
  for (let i = 0; i < spec.warmup; i++) op();
  await comm.wait({ stream });
  const events: [Event, Event][] = [];
  try {
    for (let i = 0; i < spec.iters; i++) {
      events.push([new Event(comm.device, { timing: true }), new Event(comm.device, { timing: true })]);
    }
    timer.prepare(0);
    for (const [start, end] of events) {
      start.record(stream);
      op();
      end.record(stream);
    }
    await comm.wait({ stream });
    return events.map(([start, end]) => start.elapsedMs(end) * 1000);
  } finally {
    for (const [a, b] of events) {
      a.close();
      b.close();
    }
  }
}

async function runCase(comm: Communicator, stream: Stream, timer: GpuTimer, spec: CaseSpec, seed: number): Promise<number[]> {
  const device = `cuda:${comm.device}` as const;
  if (spec.op === 'all-reduce') {
    const x = Tensor.empty([spec.bytes! / 2], 'bf16', { device, stream });
    try {
      await fillRandomBf16(x, spec.scaleLog2, seed, stream);
      // In place, as torch.distributed.all_reduce does.
      return await timeOp(comm, stream, timer, spec, () => comm.allReduce(x, { op: 'sum', stream }));
    } finally {
      x.close();
    }
  }
  const rows = spec.rowsPerPeer! * comm.size;
  const hidden = spec.hidden!;
  const input = Tensor.empty([rows, hidden], 'bf16', { device, stream });
  const output = Tensor.empty([rows, hidden], 'bf16', { device, stream });
  try {
    await fillRandomBf16(input, spec.scaleLog2, seed, stream);
    output.fillBytes(0, stream);
    return await timeOp(comm, stream, timer, spec, () => comm.allToAll(input, output, { stream }));
  } finally {
    input.close();
    output.close();
  }
}

async function gather(pg: ProcessGroup, mine: RankReport): Promise<RankReport[] | undefined> {
  await pg.store.set(`${KEY}/rank/${pg.rank}`, JSON.stringify(mine));
  if (pg.rank !== 0) return undefined;
  const all: RankReport[] = [];
  for (let r = 0; r < pg.worldSize; r++) {
    const bytes = await pg.store.get(`${KEY}/rank/${r}`, { timeoutMs: 120_000 });
    all.push(JSON.parse(Buffer.from(bytes).toString('utf8')) as RankReport);
  }
  return all;
}

export async function runWorker(config: WorkerConfig): Promise<void> {
  const pg = await initProcessGroup({ timeoutMs: 120_000 });
  const say = (text: string) => {
    if (pg.rank === 0) process.stderr.write(`[bench nccl] ${text}\n`);
  };
  try {
    if (pg.device === undefined) {
      throw new WideepError('ERR_NO_GPU', `rank ${pg.rank} (local rank ${pg.localRank}) has no GPU: ${cudaProbe().deviceCount} visible`);
    }
    const gpu = cudaProbe().devices[pg.device]?.name ?? `cuda:${pg.device}`;
    say(`creating the NCCL communicator over ${pg.worldSize} ranks`);
    const comm = await Communicator.create(pg, { timeoutMs: config.commTimeoutMs, name: 'bench' });
    const stream = new Stream(pg.device);
    // Covers a whole case's timed ops, not one run as in bench ep.
    const timer = new GpuTimer(stream, { flushL2: false, comm, coverNs: ENQUEUE_COVER_NS });
    const nccl = loadNccl();
    const cases: RankCase[] = [];
    try {
      for (const spec of config.cases) {
        say(`${spec.label} (${spec.warmup} warm-up, ${spec.iters} timed) ...`);
        const seed = randomInt(1, 0x7fffffff) ^ (pg.rank * 0x01000193);
        const times = await runCase(comm, stream, timer, spec, seed);
        cases.push({ id: spec.id, medianUs: median(times), minUs: Math.min(...times) });
        say(`${spec.label}: ${median(times).toFixed(1)} µs median on rank 0`);
      }
    } finally {
      timer.close();
      comm.close();
      stream.close();
    }
    const all = await gather(pg, { rank: pg.rank, gpu, cases });
    if (all) {
      const result: WorkerResult = {
        worldSize: pg.worldSize,
        ncclVersion: formatNcclVersion(nccl.version),
        ncclPath: nccl.path,
        gpus: all.map((r) => r.gpu),
        cases: config.cases.map((spec) => ({
          id: spec.id,
          perRankMedianUs: all.map((r) => r.cases.find((c) => c.id === spec.id)?.medianUs ?? Number.NaN),
          perRankMinUs: all.map((r) => r.cases.find((c) => c.id === spec.id)?.minUs ?? Number.NaN),
        })),
      };
      writeFileSync(config.resultFile, JSON.stringify(result) + '\n');
    }
    await pg.store.barrier(`${KEY}/done`, { timeoutMs: 120_000 });
  } finally {
    await pg.close();
  }
}

function parseConfig(text: string | undefined): WorkerConfig {
  if (!text) throw new WideepError('ERR_INVALID_ARG', 'nccl-worker: expected the JSON config as the first argument');
  const c = JSON.parse(text) as WorkerConfig;
  if (!Array.isArray(c.cases) || typeof c.resultFile !== 'string') {
    throw new WideepError('ERR_INVALID_ARG', 'nccl-worker: the config needs cases and resultFile');
  }
  return c;
}

/** Entry point when run as a script (not when imported). */
async function main(): Promise<void> {
  let config: WorkerConfig;
  try {
    config = parseConfig(process.argv[2]);
  } catch (e) {
    process.stderr.write(`nccl-worker: ${(e as Error).message}\n`);
    process.exit(2);
  }
  const deadline = setTimeout(() => {
    process.stderr.write(`nccl-worker: still running after ${config.deadlineMs} ms; giving up\n`);
    process.exit(124);
  }, config.deadlineMs);
  deadline.unref();
  try {
    await runWorker(config);
    clearTimeout(deadline);
    // Native threads (NCCL's, the communicator watchdog) never hold the loop, but be sure.
    process.exit(0);
  } catch (e) {
    const err = e as WideepError;
    process.stderr.write(`nccl-worker: ${err.code ? `${err.code}: ` : ''}${err.stack ?? String(e)}\n`);
    process.exit(1);
  }
}

function isEntry(): boolean {
  const script = process.argv[1];
  if (!script) return false;
  try {
    return pathToFileURL(realpathSync(script)).href === import.meta.url;
  } catch {
    return false;
  }
}

if (isEntry()) await main();
