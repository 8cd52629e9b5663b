/**
 * The GPU side of `wideep bench moe`: one MoeLayer on this rank (its EP
 * buffer on a process group of one, or on the launcher's group of N ranks),
 * random DeepSeek-V3 weights made on the GPU, timed at prefill (normal mode)
 * and decode (low-latency mode, eager and replayed as a CUDA graph), each
 * with two-batch overlap on and off, and the stages of each step from a
 * Timeline in runs of their own. Every rank runs the same sequence of calls.
 */
import type { Communicator } from '../../comm/communicator.js';
import type { GraphShape } from '../../native/index.js';
import { Stream } from '../../cuda/stream.js';
import { trimMemoryPool } from '../../cuda/device.js';
import { Timeline, type TimelineSpan } from '../../cuda/timeline.js';
import { EpBuffer } from '../../ep/buffer.js';
import { MoeLayer, deviceWeightTensors, type MoeForwardOptions } from '../../moe/layer.js';
import { randomLayerWeights } from '../../moe/layer-weights.js';
import { initProcessGroup } from '../../runtime/process-group.js';
import type { ProcessGroup } from '../../runtime/types.js';
import { fillRandom } from '../../tensor/fill.js';
import { Tensor } from '../../tensor/tensor.js';
import { layerConfig, type MoeShape } from './moe-cases.js';
import { medianStages, stageTotals, type StageTimes } from './moe-stages.js';
import { GpuTimer } from './gpu-timer.js';
import { median, round } from './stats.js';

export interface Timing {
  /** Median GPU time per step, CUDA events around it, the stream kept busy while the host enqueues (µs). */
  gpuUs: number;
  /**
   * Median wall time of the enqueuing call (µs), one call per run, the host
   * woken from waiting for the previous run; absent where the call waits for
   * the GPU (a normal-mode dispatch).
   */
  hostUs?: number;
  /** Median host µs per call with calls back to back on a busy host (graph replays). */
  hostBackToBackUs?: number;
  /** A replayed graph's nodes (what each launch submits). */
  graphShape?: GraphShape;
}

export interface LayerResult {
  prefill: { step: Timing; tbo: Timing; stages: StageTimes; tboSpans: TimelineSpan[] };
  decode: { eager: Timing; tbo: Timing; graph: Timing; stages: StageTimes; hostStages: StageTimes };
}

export interface LayerMeasureOptions {
  iters: number;
  warmup: number;
  show: (text: string) => void;
  /** The ranks the layer's experts spread over (default: a group of one, made and closed here). */
  group?: ProcessGroup;
  /** Lines the ranks up on the GPU before each timed run (ranks on GPUs of their own). */
  comm?: Communicator;
}

/** Runs with a Timeline per step: its events cost a little, so they are not the timed runs. */
export const TIMELINE_RUNS = 5;

/** Graph replays per round of the back-to-back host timing. */
const BACK_TO_BACK_REPLAYS = 20;

/** Bound on every wait of the EP buffer: a stuck kernel fails the bench instead of hanging it. */
const EP_TIMEOUT_MS = 60_000;

export async function measureLayer(shape: MoeShape, o: LayerMeasureOptions): Promise<LayerResult> {
  const config = layerConfig(shape);
  // A group of one, whatever launcher variables the environment holds.
  const pg = o.group ?? (await initProcessGroup({ rank: 0, worldSize: 1, env: {} }));
  const device = pg.device!;
  const stream = new Stream(device);
  const on = { device: `cuda:${device}` as const, stream };
  const owned: { close(stream?: Stream): void }[] = [];
  const keep = <T extends { close(stream?: Stream): void }>(t: T): T => (owned.push(t), t);
  let ep: EpBuffer | undefined;
  try {
    ep = await EpBuffer.create(pg, {
      backend: 'cuda',
      hidden: shape.hidden,
      numExperts: shape.experts,
      maxTokensPerRank: shape.prefillTokens,
      maxTopk: shape.topk,
      lowLatency: { maxTokensPerRank: shape.decodeTokens },
      timeoutMs: EP_TIMEOUT_MS,
    });
    o.show('bench moe: random weights on the GPU');
    const w = randomLayerWeights(ep, config, { seed: 1, device, stream, expertDType: shape.dtype });
    for (const t of deviceWeightTensors(w)) keep(t);
    const layer = keep(new MoeLayer(ep, config, w, { expertGemm: shape.expertGemm }));
    const timer = keep(new GpuTimer(stream, { flushL2: true, comm: o.comm }));
    const tokens = (T: number, seed: number) => keep(fillRandom(Tensor.empty([T, shape.hidden], 'bf16', on), seed + 101 * pg.rank, { kind: 'normal', std: 1 }, stream));

    const time = async (op: () => Promise<Tensor>, release: boolean, withHost: boolean): Promise<Timing> => {
      const s = await timer.time({ iters: o.iters, warmup: o.warmup, op, after: (y) => (release ? y.close(stream) : undefined) });
      return { gpuUs: round(median(s.kernelUs), 1), ...(withHost ? { hostUs: round(median(s.wallUs), 2) } : {}) };
    };
    const timeline = async (x: Tensor, f: Omit<MoeForwardOptions, 'timeline'>, release: boolean): Promise<TimelineSpan[][]> => {
      const runs: TimelineSpan[][] = [];
      for (let i = 0; i < TIMELINE_RUNS; i++) {
        const tl = new Timeline();
        try {
          timer.prepare(i);
          const y = await layer.forward(x, { ...f, timeline: tl });
          runs.push(await tl.read());
          if (release) y.close(stream);
        } finally {
          tl.clear();
        }
      }
      return runs;
    };

    const x = tokens(shape.prefillTokens, 11);
    const normal = { mode: 'normal', stream } as const;
    o.show(`bench moe: prefill, ${shape.prefillTokens} tokens`);
    const step = await time(() => layer.forward(x, normal), true, false);
    o.show('bench moe: prefill, two-batch overlap');
    const tbo = await time(() => layer.forward(x, { ...normal, tbo: {} }), true, false);
    o.show('bench moe: prefill timelines');
    const prefillStages = medianStages((await timeline(x, normal, true)).map((r) => stageTotals(r)));
    const tboSpans = (await timeline(x, { ...normal, tbo: {} }, true)).at(-1)!;

    const xd = tokens(shape.decodeTokens, 12);
    const out = keep(Tensor.empty([shape.decodeTokens, shape.hidden], 'bf16', on));
    const lowLatency = { mode: 'low-latency', stream, out } as const;
    o.show(`bench moe: decode, ${shape.decodeTokens} tokens`);
    const eager = await time(() => layer.forward(xd, lowLatency), false, true);
    const decodeTbo = await time(() => layer.forward(xd, { ...lowLatency, tbo: {} }), false, true);
    const decodeRuns = await timeline(xd, lowLatency, false);
    const decodeStages = medianStages(decodeRuns.map((r) => stageTotals(r)));
    const decodeHostStages = medianStages(decodeRuns.map((r) => stageTotals(r, 'host')));
    o.show('bench moe: decode replayed as a CUDA graph');
    const g = keep(await layer.captureDecode(xd, out, { stream }));
    const graph: Timing = await time(async () => (g.launch(stream), out), false, true);
    graph.hostBackToBackUs = round(median(await timer.hostBackToBack(() => g.launch(stream), { calls: BACK_TO_BACK_REPLAYS, rounds: 7 })), 2);
    graph.graphShape = g.describe();
    await stream.synchronize();
    return {
      prefill: { step, tbo, stages: prefillStages, tboSpans },
      decode: { eager, tbo: decodeTbo, graph, stages: decodeStages, hostStages: decodeHostStages },
    };
  } finally {
    // Freed before PyTorch's run on the same GPU, which needs as much memory again.
    for (const t of owned.reverse()) t.close(stream);
    await ep?.close();
    await stream.synchronize();
    stream.close();
    trimMemoryPool(device);
    if (!o.group) await pg.close();
  }
}
