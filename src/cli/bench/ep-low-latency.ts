/**
 * Low-latency measurements (docs/performance.md): dispatch (FP8) and combine kernel
 * times, send and receive times with hooks, a dispatch→combine step under
 * CUDA-graph replay, and the JS cost of each call.
 */
import { Graph } from '../../cuda/graph.js';
import type { Stream } from '../../cuda/stream.js';
import type { EpBuffer } from '../../ep/buffer.js';
import type { LowLatencyDispatchResult } from '../../ep/types.js';
import { requireCuda } from '../../native/index.js';
import { Tensor } from '../../tensor/tensor.js';
import type { EpInputs } from './ep-inputs.js';
import { randomBf16 } from './ep-inputs.js';
import { median } from './stats.js';
import type { RankMeasurement } from './ep-normal.js';
import type { GpuTimer, Samples } from './gpu-timer.js';

/** Eager dispatch → combine steps per timed run of the back-to-back loop. */
const ENQUEUE_LOOP_STEPS = 20;

const noSamples = (): Samples => ({ kernelUs: [], wallUs: [] });

/** Valid (token, k) selections of this rank: what DeepEP's LL metric counts. */
export function countSelections(topk: Int32Array): number {
  let n = 0;
  for (const e of topk) if (e >= 0) n++;
  return n;
}

export async function measureLowLatency(o: {
  buffer: EpBuffer;
  inputs: EpInputs;
  stream: Stream;
  timer: GpuTimer;
  iters: number;
  warmup: number;
  graphReplays: number;
  seed: number;
}): Promise<RankMeasurement[]> {
  const { buffer, inputs, stream, timer, iters, warmup } = o;
  const [T, H] = inputs.x.shape as [number, number];
  const M = buffer.config.lowLatency!.maxTokensPerRank;
  const L = buffer.numLocalExperts;
  const R = buffer.worldSize;
  const selections = countSelections(inputs.topkHost);
  const dispatchBytes = selections * (H + (H / 128) * 4 + 16);
  const combineBytes = selections * H * 2;
  const device = inputs.x.device;
  const y = await Tensor.from(randomBf16(L * R * M * H, o.seed), { shape: [L, R * M, H], dtype: 'bf16' }).to(device);
  const out = Tensor.empty([T, H], 'bf16', { device, stream });
  const dispatchArgs = { x: inputs.x, topkIdx: inputs.topkIdx, maxTokensPerRank: M, numExperts: buffer.numExperts, stream };
  const combineArgs = (d: LowLatencyDispatchResult) => ({ y, topkIdx: inputs.topkIdx, topkWeights: inputs.topkWeights, handle: d.handle, out, stream });
  const results: RankMeasurement[] = [];
  const push = (op: string, bytes: number, samples: Samples) => results.push({ op, bytes, samples });

  push('ll-dispatch', dispatchBytes, await timer.time({ iters, warmup, op: () => buffer.lowLatencyDispatch(dispatchArgs), after: (r) => r.release() }));
  push(
    'll-combine',
    combineBytes,
    await timer.time({ iters, warmup, before: () => buffer.lowLatencyDispatch(dispatchArgs), op: (d) => buffer.lowLatencyCombine(combineArgs(d)) }),
  );

  // Hooks: the send kernel, then the receive kernel, timed apart.
  const send = noSamples();
  const recv = noSamples();
  const combineSend = noSamples();
  const combineRecv = noSamples();
  for (let i = 0; i < warmup + iters; i++) {
    timer.prepare(i);
    const e0 = stream.record({ timing: true });
    const w0 = performance.now();
    const d = await buffer.lowLatencyDispatch({ ...dispatchArgs, returnRecvHook: true });
    const w1 = performance.now();
    const e1 = stream.record({ timing: true });
    await d.hook!();
    const e2 = stream.record({ timing: true });
    const c = await buffer.lowLatencyCombine({ ...combineArgs(d), returnRecvHook: true });
    const e3 = stream.record({ timing: true });
    await c.hook!();
    const e4 = stream.record({ timing: true });
    await e4.done();
    if (i >= warmup) {
      send.kernelUs.push(e0.elapsedMs(e1) * 1e3);
      send.wallUs.push((w1 - w0) * 1e3);
      recv.kernelUs.push(e1.elapsedMs(e2) * 1e3);
      combineSend.kernelUs.push(e2.elapsedMs(e3) * 1e3);
      combineRecv.kernelUs.push(e3.elapsedMs(e4) * 1e3);
    }
    for (const e of [e0, e1, e2, e3, e4]) e.close();
  }
  push('ll-dispatch-send', dispatchBytes, send);
  push('ll-dispatch-recv-hook', dispatchBytes, recv);
  push('ll-combine-send', combineBytes, combineSend);
  push('ll-combine-recv-hook', combineBytes, combineRecv);

  // Eager decode steps back to back, as a serving loop calls them: the host
  // time of each call while the GPU is busy (so the host never waits), and the
  // GPU time per step. The same loop of empty-kernel launches gives the host
  // cost of one bare launch through the addon; the difference is what the
  // library adds to the launch.
  const gpu = requireCuda('bench ep');
  const loopStep = noSamples();
  const dispatchHost = noSamples();
  const combineHost = noSamples();
  const launchHost = noSamples();
  for (let i = 0; i < warmup + iters; i++) {
    timer.prepare(i);
    const e0 = stream.record({ timing: true });
    const dispatchWall: number[] = [];
    const combineWall: number[] = [];
    const launchWall: number[] = [];
    const w0 = performance.now();
    for (let s = 0; s < ENQUEUE_LOOP_STEPS; s++) {
      const t0 = performance.now();
      const d = await buffer.lowLatencyDispatch(dispatchArgs);
      const t1 = performance.now();
      await buffer.lowLatencyCombine(combineArgs(d));
      dispatchWall.push((t1 - t0) * 1e3);
      combineWall.push((performance.now() - t1) * 1e3);
    }
    const w1 = performance.now();
    const e1 = stream.record({ timing: true });
    for (let s = 0; s < ENQUEUE_LOOP_STEPS; s++) {
      const t0 = performance.now();
      gpu.sleep(0, stream.native);
      launchWall.push((performance.now() - t0) * 1e3);
    }
    const e2 = stream.record({ timing: true });
    await e2.done();
    if (i >= warmup) {
      loopStep.kernelUs.push((e0.elapsedMs(e1) * 1e3) / ENQUEUE_LOOP_STEPS);
      loopStep.wallUs.push(((w1 - w0) * 1e3) / ENQUEUE_LOOP_STEPS);
      dispatchHost.wallUs.push(median(dispatchWall));
      combineHost.wallUs.push(median(combineWall));
      launchHost.wallUs.push(median(launchWall));
    }
    for (const e of [e0, e1, e2]) e.close();
  }
  push('ll-step-eager-loop', dispatchBytes + combineBytes, loopStep);
  push('ll-dispatch-host', 0, dispatchHost);
  push('ll-combine-host', 0, combineHost);
  push('launch-floor-host', 0, launchHost);

  // One decode step (dispatch → combine) captured once and replayed.
  const graph = await Graph.capture(stream, async () => {
    const d = await buffer.lowLatencyDispatch(dispatchArgs);
    await buffer.lowLatencyCombine(combineArgs(d));
  });
  const replay = noSamples();
  for (let i = 0; i < warmup + iters; i++) {
    timer.prepare(i);
    const e0 = stream.record({ timing: true });
    const w0 = performance.now();
    for (let r = 0; r < o.graphReplays; r++) graph.launch(stream);
    const w1 = performance.now();
    const e1 = stream.record({ timing: true });
    await e1.done();
    if (i >= warmup) {
      replay.kernelUs.push((e0.elapsedMs(e1) * 1e3) / o.graphReplays);
      replay.wallUs.push(((w1 - w0) * 1e3) / o.graphReplays);
    }
    e0.close();
    e1.close();
  }
  push('ll-step-graph-replay', dispatchBytes + combineBytes, replay);

  // What the event bracket itself costs: an empty kernel timed the same way.
  // DeepEP's figures are profiler kernel durations, which do not include it.
  push('event-floor', 0, await timer.time({ iters, warmup, op: async () => gpu.sleep(0, stream.native) }));
  graph.close();
  y.close();
  out.close();
  return results;
}
