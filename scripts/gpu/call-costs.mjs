// Host cost of single library calls on one GPU, for finding enqueue
// overhead (run under `wideep launch --nproc-per-node 1`, optionally with
// node --cpu-prof). The GPU is kept busy by a sleep kernel while the calls
// are enqueued, so the wall times below are host work only. Prints one JSON
// line of median microseconds per call.
import { Communicator, EpBuffer, Event, Stream, Tensor, initProcessGroup } from '../../dist/index.js';
import { requireCuda } from '../../dist/native.js';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';

// CPU_PROFILE=FILE writes a V8 CPU profile of the measured calls there.
const profileFile = process.env.CPU_PROFILE;
const inspector = profileFile ? new Session() : undefined;

const ROUNDS = 10;
const PER_ROUND = 50;
const pg = await initProcessGroup();
const dev = pg.device;
const stream = new Stream(dev);
const cuda = requireCuda('call-costs');
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
function add(name, us) {
  (costs[name] ??= []).push(us);
}
async function measure(name, fn) {
  for (let r = 0; r < ROUNDS; r++) {
    cuda.sleep(20_000_000, stream.native);
    const t0 = performance.now();
    for (let i = 0; i < PER_ROUND; i++) await fn();
    add(name, ((performance.now() - t0) * 1e3) / PER_ROUND);
    await stream.synchronize();
  }
}
const dispatchArgs = { x, topkIdx, maxTokensPerRank: T, numExperts: 256, stream };
await measure('event.record', () => ev.record(stream));
await measure('stream.isCapturing', () => stream.isCapturing());
await measure('comm.allReduce(1 f32)', () => comm.allReduce(one, { stream }));
await measure('ll dispatch+combine pair', async () => {
  const d = await buffer.lowLatencyDispatch(dispatchArgs);
  await buffer.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out, stream });
});
for (let r = 0; r < ROUNDS; r++) {
  cuda.sleep(20_000_000, stream.native);
  let a = 0;
  let b = 0;
  for (let i = 0; i < PER_ROUND; i++) {
    const t0 = performance.now();
    const d = await buffer.lowLatencyDispatch(dispatchArgs);
    const t1 = performance.now();
    await buffer.lowLatencyCombine({ y, topkIdx, topkWeights, handle: d.handle, out, stream });
    b += performance.now() - t1;
    a += t1 - t0;
  }
  add('ll dispatch', (a * 1e3) / PER_ROUND);
  add('ll combine', (b * 1e3) / PER_ROUND);
  await stream.synchronize();
}
if (inspector) {
  const { profile } = await inspector.post('Profiler.stop');
  writeFileSync(profileFile, JSON.stringify(profile));
}
const median = (v) => [...v].sort((p, q) => p - q)[Math.floor(v.length / 2)];
console.log(JSON.stringify({ rank: pg.rank, worldSize: pg.worldSize, medianUs: Object.fromEntries(Object.entries(costs).map(([n, v]) => [n, +median(v).toFixed(2)])) }));
comm.close();
await buffer.close();
stream.close();
await pg.close();
