// Host cost of library calls, for finding enqueue overhead. Run it under
// `wideep launch --nproc-per-node N` (one process per GPU). Each experiment
// enqueues calls behind a sleep kernel (or on an idle GPU), so the wall times
// are host work only; every native method is timed on its own. Prints, per
// rank, one JSON line of median microseconds per call and, on rank 0, one of
// each experiment's mean microseconds per native method.
import { Communicator, EpBuffer, Event, Stream, Tensor, initProcessGroup } from '../../dist/index.js';
import { median } from '../../dist/cli/bench/stats.js';
import { clearNativeTimes, nativeMeans, timeNativeCalls } from './native-timing.mjs';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

// CPU_PROFILE=FILE writes rank 0's V8 CPU profile of the measured calls there.
const profileFile = process.env.RANK === '0' ? process.env.CPU_PROFILE : undefined;
const inspector = profileFile ? new Session() : undefined;

const ROUNDS = 10;
const PER_ROUND = 50;
const cuda = timeNativeCalls('call-costs');
const pg = await initProcessGroup();
const dev = pg.device;
const stream = new Stream(dev);
const comm = await Communicator.create(pg);
const T = 128;
const H = 7168;
const k = 8;
const buffer = await EpBuffer.create(pg, { backend: 'cuda', hidden: H, numExperts: 256, maxTokensPerRank: 128, maxTopk: k, lowLatency: { maxTokensPerRank: T } });
const on = { device: `cuda:${dev}`, stream };
const x = Tensor.zeros([T, H], 'bf16', on);
const idx = new Int32Array(T * k).map((_, i) => (i * 37) % 256);
const topkIdx = await Tensor.from(idx, { shape: [T, k], dtype: 'i32' }).to(`cuda:${dev}`);
const topkWeights = Tensor.zeros([T, k], 'f32', on);
const y = Tensor.zeros([buffer.numLocalExperts, T * pg.worldSize, H], 'bf16', on);
const out = Tensor.empty([T, H], 'bf16', on);
const one = Tensor.zeros([1], 'f32', on);
const ev = new Event(dev);
await stream.synchronize();

if (inspector) {
  inspector.connect();
  await inspector.post('Profiler.enable');
  await inspector.post('Profiler.setSamplingInterval', { interval: 20 });
  await inspector.post('Profiler.start');
}
const costs = {};
const breakdown = {};
function add(name, us) {
  (costs[name] ??= []).push(us);
}
// Each experiment: `perRound` calls enqueued behind a 20 ms sleep kernel
// (or, with idle, each call on an idle GPU), median over rounds, plus the
// mean time of every native method it called.
async function measure(name, fn, { perRound = PER_ROUND, idle = false } = {}) {
  clearNativeTimes();
  for (let r = 0; r < ROUNDS; r++) {
    if (!idle) cuda.sleep(20_000_000, stream.native);
    let us = 0;
    for (let i = 0; i < perRound; i++) {
      if (idle) await stream.synchronize();
      const t0 = performance.now();
      await fn();
      us += (performance.now() - t0) * 1e3;
    }
    add(name, us / perRound);
    await stream.synchronize();
  }
  breakdown[name] = nativeMeans();
}
const dispatchArgs = { x, topkIdx, maxTokensPerRank: T, numExperts: 256, stream };
const pair = async () => {
  const d = await buffer.lowLatencyDispatch(dispatchArgs);
  await buffer.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out, stream });
};
await measure('empty async call', async () => {});
await measure('performance.now', () => performance.now());
await measure('event.record', () => ev.record(stream));
await measure('stream.isCapturing', () => stream.isCapturing());
await measure('comm.allReduce(1 f32)', () => comm.allReduce(one, { stream }));
await measure('comm.allReduce x5', () => comm.allReduce(one, { stream }), { perRound: 5 });
await measure('comm.allReduce idle', () => comm.allReduce(one, { stream }), { perRound: 5, idle: true });
await measure('ll pair', pair);
await measure('ll pair x5', pair, { perRound: 5 });
await measure('ll pair idle', pair, { perRound: 5, idle: true });
// As the benchmark's timer does it: an all-reduce and a 2 ms sleep, then one timed call.
for (const [name, prep] of [
  ['dispatch after all-reduce+sleep', () => { comm.allReduce(one, { stream }); cuda.sleep(2_000_000, stream.native); }],
  ['dispatch after sleep', () => cuda.sleep(2_000_000, stream.native)],
  // Whether a cold host (the event loop just woke from idle) is what costs: spin 1 ms first.
  ['dispatch after sleep + 1 ms host spin', () => { cuda.sleep(2_000_000, stream.native); const e = performance.now() + 1; while (performance.now() < e); }],
]) {
  clearNativeTimes();
  const us = [];
  for (let i = 0; i < 30; i++) {
    prep();
    const t0 = performance.now();
    const d = await buffer.lowLatencyDispatch(dispatchArgs);
    us.push((performance.now() - t0) * 1e3);
    await buffer.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out, stream });
    await stream.synchronize();
  }
  costs[name] = us;
  breakdown[name] = nativeMeans();
}
if (inspector) {
  const { profile } = await inspector.post('Profiler.stop');
  writeFileSync(profileFile, JSON.stringify(profile));
}
console.log(JSON.stringify({ rank: pg.rank, worldSize: pg.worldSize, medianUs: Object.fromEntries(Object.entries(costs).map(([n, v]) => [n, +median(v).toFixed(2)])) }));
if (pg.rank === 0) console.log(JSON.stringify({ rank: pg.rank, nativeMeanUs: breakdown }));
comm.close();
await buffer.close();
stream.close();
await pg.close();
